// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
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
		{"-hubs", "2", "-sites", "20"},
		{"-hubs", "2", "-bgp=false"},
		{"-hubs", "1", "-conns", "2"},
	}, [][]string{
		{"-hubs", "0"},
		{"-hubs", "3"},
		{"-hubs", "2", "-conns", "2"},
		{"-sites", "0"},
		{"-conns", "0"},
		{"-conns", "9"},
		{"-sites", "4001"},
		{"-duration", "100ms"},
		{"extra"},
	})
	if o, err := parseFlags(nil, io.Discard); err != nil || o.sites != 200 || o.duration != 30*time.Second || o.json || o.conns != 1 || o.hubs != 1 || !o.bgp {
		t.Errorf("parseFlags(nil) = %+v, %v; want 200 sites, 30s, no JSON, 1 connection each, 1 hub, BGP on", o, err)
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

func TestHubConfigConnected(t *testing.T) {
	sites := []*site{{idx: 0, addr: siteAddr(0), key: make([]byte, 64)}}
	h := hubSpec{name: "hub-b", inner: innerB, listen: netip.AddrPortFrom(underB.Addr(), hubPort), connected: true}
	var cfg struct {
		Interface map[string]any
		Peer      []map[string]any
	}
	got := hubConfig(h, "gwh1", "/k", "/s", sites)
	if _, err := toml.Decode(got, &cfg); err != nil {
		t.Fatalf("hubConfig output does not parse: %v\n%s", err, got)
	}
	if cfg.Interface["routes"] != "connected" || cfg.Interface["listen"] != "198.18.1.1:4433" || len(cfg.Peer) != 1 {
		t.Errorf("hubConfig(hub-b) = %v with %d peers, want routes = connected, listen 198.18.1.1:4433, 1 peer", cfg.Interface, len(cfg.Peer))
	}
	if a := cfg.Interface["addresses"].([]any); len(a) != 1 || a[0] != "198.19.128.1/32" {
		t.Errorf("hub-b addresses = %v, want [198.19.128.1/32]", a)
	}
	if strings.Contains(hubConfig(oneHub, "gwh1", "/k", "/s", sites), "routes") {
		t.Errorf("the single hub's config sets routes:\n%s", hubConfig(oneHub, "gwh1", "/k", "/s", sites))
	}
}

// TestTwoHubAddresses checks that no site's address is a hub's, the data
// centre's, or outside the shared prefix, and that the hubs' TUN
// addresses do not cover the sites' (their routes would not be installed).
func TestTwoHubAddresses(t *testing.T) {
	for _, i := range []int{0, 1, maxSites - 1} {
		a := siteAddr(i)
		if !sharedNet.Contains(a) || a == innerA.Addr() || a == innerB.Addr() || dcNet.Contains(a) {
			t.Errorf("siteAddr(%d) = %v: want inside %v, not a hub's or in %v", i, a, sharedNet, dcNet)
		}
		if innerA.Contains(a) || innerB.Contains(a) {
			t.Errorf("siteAddr(%d) = %v is covered by a hub's TUN prefix", i, a)
		}
	}
	if !sharedNet.Contains(dcHost) || !dcNet.Contains(dcHost) {
		t.Errorf("dcHost %v: want inside %v and %v", dcHost, sharedNet, dcNet)
	}
}

func TestEchoReplySeq(t *testing.T) {
	site, dc := netip.MustParseAddr("198.19.0.2"), dcHost
	p := tuntest.Ping(dc, site, 7, 4242, 56)
	p[20] = 0 // a reply
	if seq, ok := echoReplySeq(p, site, 7); !ok || seq != 4242 {
		t.Errorf("echoReplySeq = %d, %v; want 4242, true", seq, ok)
	}
	if _, ok := echoReplySeq(p, site, 8); ok {
		t.Errorf("echoReplySeq with another id = true, want false")
	}
}

func TestPercentiles(t *testing.T) {
	if a, b, c := percentiles(nil); a != 0 || b != 0 || c != 0 {
		t.Errorf("percentiles(nil) = %v, %v, %v; want zeros", a, b, c)
	}
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p50, p99, mx := percentiles(ds); p50 != 50 || p99 != 99 || mx != 100 {
		t.Errorf("percentiles(1..100 ms) = %v, %v, %v; want 50, 99, 100", p50, p99, mx)
	}
}

func TestParseRouteCount(t *testing.T) {
	tests := []struct {
		out  string
		want int
		ok   bool
	}{
		{"BIRD 2.0.12 ready.\n7 of 20 routes for 20 networks in table master4\n", 7, true},
		{"BIRD 2.0.12 ready.\n1000 of 1000 routes for 1000 networks in table master4\n0 of 0 routes for 0 networks in table master6\n", 1000, true},
		{"BIRD 2.0.12 ready.\nsyntax error\n", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := parseRouteCount(tt.out)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseRouteCount(%q) = %d, %v; want %d, ok %v", tt.out, got, err, tt.want, tt.ok)
		}
	}
}

func TestEstablished(t *testing.T) {
	out := `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     13:42:16.093  
hub_a      BGP        ---        up     13:42:16.954  Established   
hub_b      BGP        ---        start  13:42:16.876  Connect       
`
	if !established(out, "hub_a") || established(out, "hub_b") || established(out, "device1") || established(out, "core") {
		t.Errorf("established: want only hub_a in\n%s", out)
	}
}

func TestCountLines(t *testing.T) {
	out := "198.19.0.2 via 198.18.3.2 dev hb proto bird metric 32\n198.19.0.3 via 198.18.2.2 dev ha proto bird metric 32\n\n"
	if got := countLines(out, " via 198.18.3.2 "); got != 1 {
		t.Errorf("countLines via hub-b = %d, want 1", got)
	}
	if got := countLines(out, ""); got != 2 {
		t.Errorf("countLines = %d, want 2", got)
	}
}

// TestBIRDConfigs checks that BIRD parses the generated configs (bird -p),
// when BIRD is installed.
func TestBIRDConfigs(t *testing.T) {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("bird (Debian bird2) is not installed")
	}
	peers := []birdPeer{{birdPeerA, coreA.Addr(), hubACore.Addr(), coreAS + 1}, {birdPeerB, coreB.Addr(), hubBCore.Addr(), coreAS + 2}}
	for name, conf := range map[string]string{
		"hub":  birdHubConfig(hubACore.Addr(), coreA.Addr(), coreAS+1, routeProtocol),
		"core": birdCoreConfig(coreA.Addr(), peers),
	} {
		path := filepath.Join(t.TempDir(), name+".conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("bird", "-p", "-c", path).CombinedOutput(); err != nil {
			t.Errorf("bird -p rejects the %s config: %v: %s\n%s", name, err, out, conf)
		}
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

// TestRunTwoHubs runs the -hubs 2 mode with 6 sites, BIRD on the hubs and
// the core, and short phases, and checks the report and the cleanup.
func TestRunTwoHubs(t *testing.T) {
	labtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds the daemon and runs BIRD; skipped with -short")
	}
	if err := birdAvailable(); err != nil {
		t.Skip(err)
	}
	var rep hubsReport
	stderr, err := measuretest.RunJSON(t, "gwh-", run, options{sites: 6, hubs: 2, bgp: true, duration: 2 * time.Second, json: true}, 3*time.Minute, &rep)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, stderr)
	}
	if rep.Connected != 6 || rep.HubA.Routes != 3 || rep.HubB.Routes != 3 || rep.CoreViaA != 3 || rep.CoreViaB != 3 {
		t.Errorf("steady: %d connected, hub routes %d/%d, core %d/%d; want 6, 3/3, 3/3", rep.Connected, rep.HubA.Routes, rep.HubB.Routes, rep.CoreViaA, rep.CoreViaB)
	}
	if rep.HubA.RSSIdle == 0 || rep.HubB.RSSIdle == 0 || rep.HubA.CPUIdle < 0 || rep.HubB.CPUIdle > 400 {
		t.Errorf("hub RSS %d/%d KiB, CPU %.2f/%.2f %%; want RSS > 0 and CPU in [0, 400]", rep.HubA.RSSIdle, rep.HubB.RSSIdle, rep.HubA.CPUIdle, rep.HubB.CPUIdle)
	}
	// Generous bounds: the target is 5 s at 1,000 sites.
	if rep.Movers != 3 || rep.Recovered != 3 || rep.Switched != 3 || rep.RecoverMax > 10000 || rep.SwitchMax > rep.RecoverMax {
		t.Errorf("failover: %d of %d movers recovered (max %.0f ms), %d switched (max %.0f ms); want 3 of 3 within 10 s, switched before recovered",
			rep.Recovered, rep.Movers, rep.RecoverMax, rep.Switched, rep.SwitchMax)
	}
	if rep.CoreAfterB != 6 || rep.CoreAfterA != 0 || rep.CoreKernelB != 6 || rep.HubBRoutes != 6 || rep.CoreAllS < 0 || rep.CoreAllS > 10 {
		t.Errorf("after: core via b %d, via a %d, kernel via b %d, hub-b routes %d, all via b after %.2f s; want 6, 0, 6, 6, within 10 s",
			rep.CoreAfterB, rep.CoreAfterA, rep.CoreKernelB, rep.HubBRoutes, rep.CoreAllS)
	}
	if rep.EchoSent == 0 || rep.EchoReplies == 0 || rep.EchoReplies > rep.EchoSent {
		t.Errorf("echo %d replies of %d sent, want some and no more than sent", rep.EchoReplies, rep.EchoSent)
	}
	for _, want := range []string{"6 of 6\n", "kill to first reply p50 / p99 / max (ms)", "core BGP table after, via a / b"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("table lacks %q:\n%s", want, stderr)
		}
	}
}
