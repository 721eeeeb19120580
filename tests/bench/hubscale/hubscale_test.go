// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
	"github.com/godwit-vpn/godwit/tests/bench/measure/measuretest"
	"github.com/godwit-vpn/godwit/tun/tuntest"
)

func TestParseFlags(t *testing.T) {
	measuretest.CheckFlags(t, parseFlags, [][]string{
		nil,
		{"-sites", "5", "-duration", "2s", "-json"},
		{"-conns", "8"},
	}, [][]string{
		{"-sites", "0"},
		{"-conns", "0"},
		{"-conns", "9"},
		{"-sites", "4001"},
		{"-duration", "100ms"},
		{"extra"},
	})
	if o, err := parseFlags(nil, io.Discard); err != nil || o.sites != 200 || o.duration != 30*time.Second || o.json || o.conns != 1 {
		t.Errorf("parseFlags(nil) = %+v, %v; want 200 sites, 30s, no JSON, 1 connection each", o, err)
	}
}

func TestSiteAddr(t *testing.T) {
	tests := []struct {
		i    int
		want string
	}{{0, "198.19.0.2"}, {253, "198.19.0.255"}, {254, "198.19.1.0"}, {maxSites - 1, "198.19.15.161"}}
	for _, tt := range tests {
		got := siteAddr(tt.i)
		if got.String() != tt.want || !hubInner.Contains(got) || got == hubInner.Addr() {
			t.Errorf("siteAddr(%d) = %v, want %s inside %v and not the hub's", tt.i, got, tt.want, hubInner)
		}
	}
}

func TestHubConfig(t *testing.T) {
	sites := []*site{{idx: 0, addr: siteAddr(0)}, {idx: 1, addr: siteAddr(1)}}
	for _, s := range sites {
		s.key = make([]byte, 64)
		s.key[32+s.idx] = 1 // the public half
	}
	got := hubConfig(oneHub, "gwh1", "/k", "/s", sites)
	var cfg struct {
		Interface map[string]any
		Peer      []map[string]any
	}
	if _, err := toml.Decode(got, &cfg); err != nil {
		t.Fatalf("hubConfig output does not parse: %v\n%s", err, got)
	}
	if cfg.Interface["listen"] != "198.18.0.1:4433" || len(cfg.Peer) != 2 {
		t.Fatalf("hubConfig = %v with %d peers, want listen 198.18.0.1:4433 and 2 peers", cfg.Interface, len(cfg.Peer))
	}
	if got, want := cfg.Peer[1]["allowed_ips"], []any{"198.19.0.3/32"}; len(got.([]any)) != 1 || got.([]any)[0] != want[0] {
		t.Errorf("peer 1 allowed_ips = %v, want %v", got, want)
	}
	if cfg.Peer[0]["name"] != "site-0000" || cfg.Peer[0]["public_key"] == cfg.Peer[1]["public_key"] {
		t.Errorf("peers = %v, want site-0000 first and distinct keys", cfg.Peer)
	}
}

func TestIsEchoReply(t *testing.T) {
	site, hub := netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.1")
	reply := func(p []byte) []byte {
		// An echo reply is the request with addresses swapped and type 0
		// (checksums do not matter to isEchoReply).
		r := bytes.Clone(p)
		copy(r[12:16], p[16:20])
		copy(r[16:20], p[12:16])
		r[20] = 0
		return r
	}
	good := reply(tuntest.Ping(site, hub, 7, 1, 56))
	tests := []struct {
		name string
		p    []byte
		want bool
	}{
		{"reply", good, true},
		{"other id", reply(tuntest.Ping(site, hub, 8, 1, 56)), false},
		{"request", tuntest.Ping(hub, site, 7, 1, 56), false},
		{"other dst", reply(tuntest.Ping(netip.MustParseAddr("198.19.0.3"), hub, 7, 1, 56)), false},
		{"udp", tuntest.UDP(netip.AddrPortFrom(hub, 1), netip.AddrPortFrom(site, 2), []byte("x")), false},
		{"ipv6", tuntest.Ping(netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), 7, 1, 8), false},
		{"truncated", good[:24], false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := isEchoReply(tt.p, site, 7); got != tt.want {
			t.Errorf("%s: isEchoReply = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func FuzzIsEchoReply(f *testing.F) {
	site, hub := netip.MustParseAddr("198.19.0.2"), netip.MustParseAddr("198.19.0.1")
	f.Add(tuntest.Ping(hub, site, 7, 1, 56))
	f.Add(tuntest.Ping(site, hub, 7, 1, 0))
	f.Add(tuntest.UDP(netip.AddrPortFrom(hub, 1), netip.AddrPortFrom(site, 2), []byte("x")))
	f.Fuzz(func(t *testing.T, p []byte) {
		if !isEchoReply(p, site, 7) {
			return
		}
		// Accepted implies an IPv4 ICMP echo reply to site with id 7.
		ihl := int(p[0]&0x0f) * 4
		if p[0]>>4 != 4 || ihl < 20 || len(p) < ihl+8 || p[9] != 1 || netip.AddrFrom4([4]byte(p[16:20])) != site ||
			p[ihl] != 0 || binary.BigEndian.Uint16(p[ihl+4:]) != 7 {
			t.Fatalf("isEchoReply accepted %x", p)
		}
	})
}

// TestRun runs the whole program with 5 sites of two connections each (a
// multipath set per site on the hub) and short phases, and checks the
// report and the cleanup.
func TestRun(t *testing.T) {
	labtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds the daemon and runs traffic; skipped with -short")
	}
	var rep report
	stderr, err := measuretest.RunJSON(t, "gwh-", run, options{sites: 5, conns: 2, duration: 3 * time.Second, json: true}, 2*time.Minute, &rep)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if rep.Conns != 2 {
		t.Errorf("report says %d connections per site, want 2", rep.Conns)
	}
	if rep.Connected != 5 || rep.HubPeers < 10 || rep.ConnectAll <= 0 || rep.ConnectAll > 60 ||
		rep.ConnectP50 > rep.ConnectP99 || rep.ConnectP99 > rep.ConnectMax {
		t.Errorf("connect: %d connected, hub saw %d, all %.2f s, p50/p99/max %.0f/%.0f/%.0f ms; want 5, >= 10, 0..60 s, ordered",
			rep.Connected, rep.HubPeers, rep.ConnectAll, rep.ConnectP50, rep.ConnectP99, rep.ConnectMax)
	}
	if rep.RSSAlone == 0 || rep.RSSIdle == 0 || rep.RSSLoad == 0 {
		t.Errorf("RSS alone/idle/load = %d/%d/%d KiB, want all > 0", rep.RSSAlone, rep.RSSIdle, rep.RSSLoad)
	}
	if rep.CPUIdle < 0 || rep.CPUIdle > 400 || rep.CPULoad < 0 || rep.CPULoad > 400 {
		t.Errorf("hub CPU idle %.2f %%, load %.2f %%; want both in [0, 400]", rep.CPUIdle, rep.CPULoad)
	}
	// 5 sites, 3 rounds: 15 requests; generous on replies.
	if rep.Sent != 15 || rep.Replies < 12 || rep.Replies > rep.Sent {
		t.Errorf("echo %d replies of %d sent, want 15 sent and at least 12 replies", rep.Replies, rep.Sent)
	}
	for _, want := range []string{"5 of 5\n", "hub memory per idle site (KiB)", "load average"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("table lacks %q:\n%s", want, stderr)
		}
	}
}
