// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// fullTunnelConf is site s's config with everything routed to the hub.
func (tp *topo) fullTunnelConf(s *site) nodeConf {
	c := tp.siteConf(s, false)
	c.peers[0].allowed = []string{"0.0.0.0/0", "::/0"}
	return c
}

// requireClean checks that nothing of the daemon is left in ns: no TUN, no
// route through it, and exactly the policy rules of before it started.
func requireClean(t *testing.T, ns *netlab.NS, baseRules, baseRoutes []string) {
	t.Helper()
	if !labtest.Eventually(2*time.Second, func() bool { return !linkExists(t, ns, tunName) }) {
		t.Errorf("%s still exists in %s", tunName, ns.Name)
	}
	if r := tunRoutes(t, ns, tunName); len(r) > 0 {
		t.Errorf("routes through %s left in %s: %v", tunName, ns.Name, r)
	}
	if got := routes(t, ns); !slices.Equal(got, baseRoutes) {
		t.Errorf("routes in %s:\n got %q\nwant %q", ns.Name, got, baseRoutes)
	}
	if got := rules(t, ns); !slices.Equal(got, baseRules) {
		t.Errorf("policy rules in %s:\n got %q\nwant %q", ns.Name, got, baseRules)
	}
}

// TestFullTunnel routes 0.0.0.0/0 and ::/0 from the site to the hub. The
// tunnel must still work, the daemon's own QUIC traffic must keep using the
// underlay instead of looping into the TUN, the policy rules that make this
// so must exist while it runs, and SIGTERM must remove everything within 2 s.
func TestFullTunnel(t *testing.T) {
	tp := newTopo(t, 1, true)
	s := tp.sites[0]
	nftCounters(t, tp.lab, s.ns, map[string]string{
		"tun_quic": fmt.Sprintf(`oifname %q udp dport %d`, tunName, port),
		"up_quic":  fmt.Sprintf(`oifname "up0" udp dport %d`, port),
	})
	baseSite, baseHub := rules(t, s.ns), rules(t, tp.hub)
	baseSiteR, baseHubR := routes(t, s.ns), routes(t, tp.hub)
	hub := tp.start(t, tp.hub, tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)))
	site := tp.start(t, s.ns, tp.fullTunnelConf(s))
	site.WaitConnected(t, "hub")
	hub.WaitConnected(t, s.name())

	running := rules(t, s.ns)
	if len(running) <= len(baseSite) {
		t.Errorf("site policy rules while running = %q, want more than before (%q)", running, baseSite)
	}
	h4, h6 := tunAddrs(0)
	l4, l6 := lanHost(0)
	for _, dst := range []netip.Addr{h4, h6, l4, l6} {
		pingOK(t, s.ns, dst)
	}
	tcpEcho(t, tp.lanH, s.ns, l4, 8004)
	// A few seconds of traffic, with keep-alives flowing underneath.
	r, err := s.ns.Ping(l4, 15, 200*time.Millisecond, 2*time.Second)
	must(t, err)
	if r.Received != r.Sent {
		t.Errorf("ping %v over 3 s: %d of %d replies", l4, r.Received, r.Sent)
	}
	if n := nftCounter(t, s.ns, "tun_quic"); n != 0 {
		t.Errorf("%d packets to UDP port %d went into %s: the daemon's own traffic loops", n, port, tunName)
	}
	if n := nftCounter(t, s.ns, "up_quic"); n == 0 {
		t.Errorf("no packets to UDP port %d left through up0, want the QUIC traffic there", port)
	}
	if l := site.LogLines("peer connected"); len(l) != 1 {
		t.Errorf("site connected %d times, want once: %q", len(l), l)
	}

	start := time.Now()
	site.Stop(t, 2*time.Second)
	t.Logf("site stopped in %v", time.Since(start).Round(time.Millisecond))
	requireClean(t, s.ns, baseSite, baseSiteR)
	hub.Stop(t, 2*time.Second)
	requireClean(t, tp.hub, baseHub, baseHubR)
}

// TestCrashRestart kills a full-tunnel site with SIGKILL: the TUN goes with
// the process, the policy rules stay; a new start cleans them up and
// installs exactly one copy of each, and SIGTERM then removes everything.
func TestCrashRestart(t *testing.T) {
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	base, baseR := rules(t, s.ns), routes(t, s.ns)
	hub := tp.start(t, tp.hub, tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)))
	cfg := tp.fullTunnelConf(s).write(t, tp.lab)
	site := labtest.StartDaemon(t, s.ns, "s1", cfg)
	site.WaitConnected(t, "hub")
	hub.WaitConnected(t, s.name())
	running := rules(t, s.ns)
	if len(running) <= len(base) {
		t.Fatalf("site policy rules while running = %q, want more than before (%q)", running, base)
	}

	must(t, site.Signal(syscall.SIGKILL))
	if code, err := site.Wait(5 * time.Second); err != nil || code != -1 {
		t.Fatalf("after SIGKILL: exit %d, %v; want -1 (killed)", code, err)
	}
	if !labtest.Eventually(2*time.Second, func() bool { return !linkExists(t, s.ns, tunName) }) {
		t.Errorf("%s outlived the killed daemon", tunName)
	}
	if got := rules(t, s.ns); !slices.Equal(got, running) {
		t.Errorf("policy rules after SIGKILL:\n got %q\nwant %q (left behind)", got, running)
	}

	again := labtest.StartDaemon(t, s.ns, "s1-again", cfg)
	again.WaitConnected(t, "hub")
	h4, _ := tunAddrs(0)
	pingOK(t, s.ns, h4)
	if got := rules(t, s.ns); !slices.Equal(got, running) {
		t.Errorf("policy rules after restart:\n got %q\nwant %q (one copy each)", got, running)
	}
	again.Stop(t, 2*time.Second)
	requireClean(t, s.ns, base, baseR)
}

// TestSecondInstanceRefused: a second daemon with the same interface name
// in the same namespace (a second `godwit run`, or a unit started twice)
// must refuse to start, as wg-quick does, and leave the running one alone:
// its TUN, its routes and policy rules, its connection.
func TestSecondInstanceRefused(t *testing.T) {
	tp := newTopo(t, 1, true)
	s := tp.sites[0]
	hub := tp.start(t, tp.hub, tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)))
	site := tp.start(t, s.ns, tp.fullTunnelConf(s))
	site.WaitConnected(t, "hub")
	hub.WaitConnected(t, s.name())
	beforeRules, beforeRoutes := rules(t, s.ns), tunRoutes(t, s.ns, tunName)

	second := tp.start(t, s.ns, tp.fullTunnelConf(s))
	code, err := second.Wait(10 * time.Second)
	if err != nil || code != 1 {
		t.Fatalf("second instance: exit %d, %v; want 1", code, err)
	}
	second.WaitLog(t, time.Second, "interface "+tunName+" already exists")

	if got := rules(t, s.ns); !slices.Equal(got, beforeRules) {
		t.Errorf("policy rules after the refused start:\n got %q\nwant %q", got, beforeRules)
	}
	if got := tunRoutes(t, s.ns, tunName); !slices.Equal(got, beforeRoutes) {
		t.Errorf("routes through %s after the refused start:\n got %q\nwant %q", tunName, got, beforeRoutes)
	}
	l4, _ := lanHost(0)
	r, err := s.ns.Ping(l4, 10, 100*time.Millisecond, 2*time.Second)
	must(t, err)
	if r.Received != r.Sent {
		t.Errorf("first instance after the refused start: %d of %d pings answered", r.Received, r.Sent)
	}
	if p := site.Peer(t, "hub"); p.State != "connected" {
		t.Errorf("first instance's hub: %s, want connected", p.State)
	}
}

// TestEndpointsOnBothSides: the hub also has the site's endpoint, as
// WireGuard peers often both do. Both dial; one connection must win and
// stay (before, the two replaced each other about four times a second).
func TestEndpointsOnBothSides(t *testing.T) {
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	sv4, _ := underlay(s.i, 2)
	hubConf := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
	hubConf.peers[0].endpoint = netip.AddrPortFrom(sv4, port).String()
	siteConf := tp.siteConf(s, false)
	siteConf.listen = fmt.Sprintf("0.0.0.0:%d", port)
	hub := tp.start(t, tp.hub, hubConf)
	site := tp.start(t, s.ns, siteConf)
	site.WaitConnected(t, "hub")
	hub.WaitConnected(t, s.name())

	time.Sleep(time.Second) // both dials done
	before := map[*labtest.Daemon]int{}
	for _, d := range []*labtest.Daemon{hub, site} {
		before[d] = len(d.LogLines(`msg="peer connected"`))
	}
	h4, _ := tunAddrs(0)
	r, err := s.ns.Ping(h4, 100, 50*time.Millisecond, 2*time.Second)
	must(t, err)
	if r.Received < r.Sent-1 {
		t.Errorf("5 s of pings with endpoints on both sides: %d of %d answered", r.Received, r.Sent)
	}
	for d, peer := range map[*labtest.Daemon]string{hub: s.name(), site: "hub"} {
		if n := len(d.LogLines(`msg="peer connected"`)); n != before[d] {
			t.Errorf("%s connected %d more times during 5 s, want a stable connection", d.Name, n-before[d])
		}
		if p := d.Peer(t, peer); p.State != "connected" || len(p.Paths) != 1 || p.Multipath != "" {
			t.Errorf("%s: peer %s is %s with %d paths (multipath %q), want one connection", d.Name, peer, p.State, len(p.Paths), p.Multipath)
		}
	}
	if len(hub.LogLines("the peer has the lower key and dials"))+len(site.LogLines("the peer has the lower key and dials")) != 1 {
		t.Errorf("want exactly one side to yield (the one with the higher key)")
	}
}

// TestForwardingNoteOnSite: a site with forwarding off only notes it (its
// own traffic does not need it; hosts behind it would), where it used to
// warn on every start.
func TestForwardingNoteOnSite(t *testing.T) {
	tp := newTopo(t, 1, true)
	s := tp.sites[0]
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
		must(t, s.ns.Sysctl(k, "0"))
	}
	tp.start(t, tp.hub, tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)))
	site := tp.start(t, s.ns, tp.siteConf(s, false))
	site.WaitConnected(t, "hub")
	site.WaitLog(t, 5*time.Second, "level=INFO", "IP forwarding is off: fine for this host's own traffic")
	if n := len(site.LogLines("level=WARN", "IP forwarding is off")); n != 0 {
		t.Errorf("the site warned %d times about IP forwarding, want a note only", n)
	}
}

// TestHooksAndTableOff: post_up runs once the TUN is up (with %i and
// GODWIT_INTERFACE), pre_down before it goes; table = "off" leaves the
// routes to the operator; a failing post_up fails the start (exit 1) and
// leaves nothing behind.
func TestHooksAndTableOff(t *testing.T) {
	tp := newTopo(t, 1, true)
	s := tp.sites[0]
	tp.start(t, tp.hub, tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)))
	up, down := filepath.Join(tp.lab.Dir, "up.txt"), filepath.Join(tp.lab.Dir, "down.txt")
	baseRules := rules(t, s.ns)
	c := tp.fullTunnelConf(s) // would add a default route and policy rules
	c.extra = []string{
		`table = "off"`,
		fmt.Sprintf(`post_up = ["ip -4 addr show dev %%i | grep -q inet && echo \"%%i $GODWIT_INTERFACE\" > %s"]`, up),
		fmt.Sprintf(`pre_down = "ip link show %%i > /dev/null && echo down > %s"`, down),
	}
	site := tp.start(t, s.ns, c)
	site.WaitConnected(t, "hub")
	b, err := os.ReadFile(up)
	if err != nil || strings.TrimSpace(string(b)) != tunName+" "+tunName {
		t.Errorf("post_up wrote %q, %v; want %q", b, err, tunName+" "+tunName)
	}
	for _, r := range tunRoutes(t, s.ns, tunName) {
		if !strings.Contains(r, `"protocol":"kernel"`) {
			t.Errorf("route through %s with table = \"off\": %s, want the kernel's own only", tunName, r)
		}
	}
	if got := rules(t, s.ns); !slices.Equal(got, baseRules) {
		t.Errorf("policy rules with table = \"off\": %q, want none added (%q)", got, baseRules)
	}
	h4, _ := tunAddrs(0)
	pingOK(t, s.ns, h4) // inside the TUN's own subnet: no route needed
	site.Stop(t, 5*time.Second)
	if b, err := os.ReadFile(down); err != nil || strings.TrimSpace(string(b)) != "down" {
		t.Errorf("pre_down wrote %q, %v; want \"down\" (run while the TUN existed)", b, err)
	}

	c.name = "site-bad-hook"
	c.extra = []string{`post_up = "echo no such thing >&2; exit 3"`}
	bad := tp.start(t, s.ns, c)
	if code, err := bad.Wait(10 * time.Second); err != nil || code != 1 {
		t.Errorf("a failing post_up: exit %d, %v; want 1", code, err)
	}
	bad.WaitLog(t, time.Second, "post_up command", "no such thing")
	if linkExists(t, s.ns, tunName) {
		t.Errorf("%s left behind after a failing post_up", tunName)
	}
}
