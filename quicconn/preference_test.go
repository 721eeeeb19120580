// SPDX-License-Identifier: MIT

package quicconn

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// TestPreference: a dialer with Config.Preference tells the acceptor in its
// hello whether it prefers it, and later changes on the control stream;
// the acceptor's Leave reaches the dialer. Without Config.Preference
// nothing is announced.
func TestPreference(t *testing.T) {
	var preferred atomic.Bool
	var srvChanged, cliChanged atomic.Int32
	p := newTestPair(t, func(cli, srv *Config) {
		cli.Multipath, srv.Multipath = true, true
		cli.Preference = func(key.Public) bool { return preferred.Load() }
		srv.PreferenceChanged = func(*Conn) { srvChanged.Add(1) }
		cli.PreferenceChanged = func(*Conn) { cliChanged.Add(1) }
	})
	c, s := p.connect(t)
	if got, want := s.PeerPreference(), (PeerPreference{Announced: true}); got != want {
		t.Errorf("acceptor PeerPreference() after the hello = %+v, want %+v", got, want)
	}
	if got := c.PeerPreference(); got.Announced {
		t.Errorf("dialer PeerPreference() = %+v, want nothing announced by the acceptor", got)
	}
	if err := c.SetPreferred(true); err != nil {
		t.Fatalf("SetPreferred(true): %v", err)
	}
	if !waitFor(5*time.Second, func() bool { return s.PeerPreference().Preferred }) {
		t.Fatalf("acceptor never saw the preference: %+v", s.PeerPreference())
	}
	if n := srvChanged.Load(); n != 1 {
		t.Errorf("PreferenceChanged called %d times on the acceptor, want 1", n)
	}
	if err := s.Leave(); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if !waitFor(5*time.Second, func() bool { return c.PeerPreference().Leaving }) {
		t.Fatalf("dialer never saw Leave: %+v", c.PeerPreference())
	}
	if n := cliChanged.Load(); n != 1 {
		t.Errorf("PreferenceChanged called %d times on the dialer, want 1", n)
	}
	// A second connection (0-RTT: its hello completes in the background)
	// carries the state at dial time in its hello.
	preferred.Store(true)
	_, s2 := p.connect(t)
	if !waitFor(5*time.Second, func() bool { return s2.PeerPreference() == PeerPreference{Announced: true, Preferred: true} }) {
		t.Errorf("second conn: acceptor PeerPreference() = %+v, want announced and preferred", s2.PeerPreference())
	}
}

// TestPreferenceNotAnnounced: a dialer without Config.Preference sends
// nothing (an older site), so the acceptor sees nothing announced.
func TestPreferenceNotAnnounced(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) { cli.Multipath, srv.Multipath = true, true })
	c, s := p.connect(t)
	exchange(t, c, s, []byte{0x45, 1})
	if got := s.PeerPreference(); got.Announced {
		t.Errorf("acceptor PeerPreference() = %+v, want nothing announced", got)
	}
}
