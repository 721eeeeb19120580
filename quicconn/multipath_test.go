// SPDX-License-Identifier: MIT

package quicconn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"
)

func TestMultipathModeString(t *testing.T) {
	tests := []struct {
		m    MultipathMode
		want string
	}{
		{MultipathFailover, "failover"},
		{MultipathRedundant, "redundant"},
		{MultipathAggregate, "aggregate"},
		{7, "mode(7)"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("MultipathMode(%d).String() = %q, want %q", uint8(tt.m), got, tt.want)
		}
	}
}

// TestMultipathAnnounced: both sides announce; the acceptor learns the
// dialer's instance and its mode for that peer, the dialer the acceptor's
// instance (and ignores its mode).
func TestMultipathAnnounced(t *testing.T) {
	var asked []key.Public
	p := newTestPair(t, func(cli, srv *Config) {
		cli.Multipath, srv.Multipath = true, true
		cli.MultipathMode = func(peer key.Public) (MultipathMode, bool) {
			asked = append(asked, peer) // one dial at a time in this test
			return MultipathAggregate, true
		}
		srv.MultipathMode = func(key.Public) (MultipathMode, bool) { return MultipathRedundant, true }
	})
	c, s := p.connect(t)
	exchange(t, c, s, []byte{0x45, 1})
	got, ok := s.Multipath()
	if want := (PeerMultipath{Instance: p.cli.Instance(), Mode: MultipathAggregate, RedundancyAll: true}); !ok || got != want {
		t.Errorf("acceptor Multipath() = %+v, %v; want %+v, true", got, ok, want)
	}
	got, ok = c.Multipath()
	if want := (PeerMultipath{Instance: p.srv.Instance()}); !ok || got != want {
		t.Errorf("dialer Multipath() = %+v, %v; want %+v, true (the acceptor's mode ignored)", got, ok, want)
	}
	if len(asked) != 1 || asked[0] != p.sk.pub {
		t.Errorf("MultipathMode asked for %d keys %v, want once for the server's key", len(asked), asked)
	}
	// A second connection of the same running Endpoints carries the same
	// instances. It is dialed in 0-RTT (the first left a ticket): its
	// hello exchange completes in the background.
	c2, s2 := p.connect(t)
	if !waitFor(5*time.Second, func() bool { _, ok1 := c2.Multipath(); _, ok2 := s2.Multipath(); return ok1 && ok2 }) {
		t.Fatalf("second conn: Multipath() not ok on both sides (%s)", c2.zeroRTTString())
	}
	if m, _ := s2.Multipath(); m.Instance != p.cli.Instance() {
		t.Errorf("second conn: acceptor sees instance %016x, want %016x", m.Instance, p.cli.Instance())
	}
	if m, _ := c2.Multipath(); m.Instance != p.srv.Instance() {
		t.Errorf("second conn: dialer sees instance %016x, want %016x", m.Instance, p.srv.Instance())
	}
}

// TestMultipathDefaultMode: without MultipathMode the dialer announces
// failover.
func TestMultipathDefaultMode(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) { cli.Multipath, srv.Multipath = true, true })
	_, s := p.connect(t)
	if got, ok := s.Multipath(); !ok || got.Mode != MultipathFailover || got.RedundancyAll || got.Instance != p.cli.Instance() {
		t.Errorf("acceptor Multipath() = %+v, %v; want failover from instance %016x", got, ok, p.cli.Instance())
	}
}

// TestMultipathWithOldPeer: one side without Config.Multipath (like a
// node from before the capability) sends no announcement and ignores the
// other's; the connection works and reports ok false on both sides.
func TestMultipathWithOldPeer(t *testing.T) {
	for _, tt := range []struct {
		name     string
		cli, srv bool
	}{
		{"old acceptor", true, false},
		{"old dialer", false, true},
		{"both old", false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newTestPair(t, func(cli, srv *Config) {
				cli.Multipath, srv.Multipath = tt.cli, tt.srv
				cli.MultipathMode = func(key.Public) (MultipathMode, bool) { return MultipathRedundant, false }
				for _, c := range []*Config{cli, srv} {
					c.Heartbeat = 50 * time.Millisecond
				}
			})
			c, s := p.connect(t)
			exchange(t, c, s, []byte{0x45, 1})
			exchange(t, s, c, []byte{0x45, 2})
			for _, conn := range []*Conn{c, s} {
				if m, ok := conn.Multipath(); ok || m != (PeerMultipath{}) {
					t.Errorf("Multipath() = %+v, %v; want zero, false", m, ok)
				}
			}
			// Heartbeats flow on the control stream after the hello: an
			// announcement left unread would have broken it.
			if !waitFor(5*time.Second, func() bool { return c.Stats().HeartbeatRTT > 0 && s.Stats().HeartbeatRTT > 0 }) {
				t.Errorf("no heartbeat RTT on both sides (client %v, server %v)", c.Stats().HeartbeatRTT, s.Stats().HeartbeatRTT)
			}
			if c.Err() != nil || s.Err() != nil {
				t.Errorf("conn died: client %v, server %v", c.Err(), s.Err())
			}
		})
	}
}

// TestMultipathZeroRTT: the announcement goes out with a 0-RTT Hello, and
// Multipath reports it once the hello exchange completed.
func TestMultipathZeroRTT(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) { srv.Multipath = true })
	dir := t.TempDir()
	primeTicket(t, p, dir)
	accepted := acceptAll(t, p.srv)
	cli := newEndpoint(t, Config{PrivateKey: p.ck.priv, NodeName: "boat-1", StateDir: dir, Multipath: true,
		MultipathMode: func(key.Public) (MultipathMode, bool) { return MultipathRedundant, false }})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cli.Dial(ctx, p.srv.LocalAddr().String(), p.sk.pub)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	s := nextConn(ctx, t, accepted)
	exchange(t, c, s, []byte{0x45, 1})
	if !waitFor(5*time.Second, func() bool { _, ok := c.Multipath(); return ok }) {
		t.Fatalf("dialer Multipath() not ok after the 0-RTT hello exchange (%s, err %v)", c.zeroRTTString(), c.Err())
	}
	if !waitFor(5*time.Second, func() bool { _, ok := s.Multipath(); return ok }) {
		t.Fatalf("acceptor Multipath() not ok")
	}
	if got, _ := s.Multipath(); got != (PeerMultipath{Instance: cli.Instance(), Mode: MultipathRedundant}) {
		t.Errorf("acceptor Multipath() = %+v, want redundant from %016x", got, cli.Instance())
	}
	if !waitFor(5*time.Second, func() bool { return c.Stats().Used0RTT }) {
		t.Errorf("dial with a ticket: Used0RTT false (%s), want the announcement sent in 0-RTT", c.zeroRTTString())
	}
}

func TestEndpointInstance(t *testing.T) {
	k := newKey(t)
	seen := map[uint64]bool{}
	for range 4 {
		e := newEndpoint(t, Config{PrivateKey: k.priv})
		id := e.Instance()
		if id == 0 {
			t.Fatal("Instance() = 0")
		}
		if e.Instance() != id {
			t.Fatal("Instance() changed between calls")
		}
		if seen[id] {
			t.Fatalf("two Endpoints share instance %016x", id)
		}
		seen[id] = true
	}
}

// TestReadMultipath checks what may follow a Hello with the capability.
func TestReadMultipath(t *testing.T) {
	mp := ctlmsg.Multipath{Instance: 5, Mode: ctlmsg.ModeAggregate, RedundancyAll: true}
	tests := []struct {
		name     string
		announce bool // this side's Config.Multipath
		dialer   bool
		in       []byte
		want     PeerMultipath
		wantOK   bool
		wantErr  error
	}{
		{"acceptor", true, false, ctlmsg.Append(nil, mp), PeerMultipath{Instance: 5, Mode: MultipathAggregate, RedundancyAll: true}, true, nil},
		{"dialer ignores mode", true, true, ctlmsg.Append(nil, mp), PeerMultipath{Instance: 5}, true, nil},
		{"not announcing: read, ignored", false, false, ctlmsg.Append(nil, mp), PeerMultipath{}, false, nil},
		{"heartbeat instead", true, false, ctlmsg.Append(nil, ctlmsg.Heartbeat{Seq: 1}), PeerMultipath{}, false, ctlmsg.ErrMalformed},
		{"unknown type instead", true, false, []byte{0x3f, 0}, PeerMultipath{}, false, ctlmsg.ErrMalformed},
		{"mode 3", true, false, []byte{0x04, 10, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0}, PeerMultipath{}, false, ctlmsg.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Endpoint{cfg: Config{Multipath: tt.announce}}
			got, ok, err := e.readMultipath(bufio.NewReader(bytes.NewReader(tt.in)), tt.dialer)
			if got != tt.want || ok != tt.wantOK || !errors.Is(err, tt.wantErr) {
				t.Errorf("readMultipath(%x) = %+v, %v, %v; want %+v, %v, %v", tt.in, got, ok, err, tt.want, tt.wantOK, tt.wantErr)
			}
		})
	}
}

// TestHelloBytes checks what each side opens its control stream with.
func TestHelloBytes(t *testing.T) {
	peer := newKey(t).pub
	e := &Endpoint{version: ctlmsg.Version, instance: 99, cfg: Config{NodeName: "n", Multipath: true,
		MultipathMode: func(key.Public) (MultipathMode, bool) { return 9, true }}}
	e.log = e.cfg.withDefaults().Logger
	decode := func(b []byte) []ctlmsg.Message {
		t.Helper()
		var ms []ctlmsg.Message
		r := bufio.NewReader(bytes.NewReader(b))
		for {
			m, err := ctlmsg.Read(r)
			if err != nil {
				return ms
			}
			ms = append(ms, m)
		}
	}
	hello := ctlmsg.Hello{Version: ctlmsg.Version, Capabilities: ctlmsg.CapMultipath, Name: "n"}
	// An unknown mode from MultipathMode is announced as failover.
	if got := decode(e.helloBytes(true, peer)); len(got) != 2 || got[0] != hello || got[1] != (ctlmsg.Multipath{Instance: 99}) {
		t.Errorf("dialer with an unknown mode sends %#v, want the hello and failover", got)
	}
	e.cfg.MultipathMode = func(key.Public) (MultipathMode, bool) { return MultipathRedundant, true }
	if got := decode(e.helloBytes(true, peer)); len(got) != 2 || got[1] != (ctlmsg.Multipath{Instance: 99, Mode: ctlmsg.ModeRedundant, RedundancyAll: true}) {
		t.Errorf("dialer sends %#v, want the hello and redundant/all", got)
	}
	if got := decode(e.helloBytes(false, peer)); len(got) != 2 || got[1] != (ctlmsg.Multipath{Instance: 99}) {
		t.Errorf("acceptor sends %#v, want the hello and failover", got)
	}
	e.cfg.Multipath = false
	if got := decode(e.helloBytes(true, peer)); len(got) != 1 || got[0] != (ctlmsg.Hello{Version: ctlmsg.Version, Name: "n"}) {
		t.Errorf("without Multipath sends %#v, want a plain hello", got)
	}
}
