// SPDX-License-Identifier: MIT

package tests

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// The multihub lab (issue 13): a site that dials two hubs, and hubs that
// announce the sites they carry over BGP to a core router in front of a
// data centre. The hubs and the core run BIRD with the example configs of
// packaging/examples/multihub, addresses and all; the tunnel network, the
// site's LAN and the data centre are those of the example TOMLs.
//
//	lan              site                    hub-a                        core                      dc
//	lan0 ─────────── lan0 192.0.2.1/25
//	192.0.2.2/25     upa0 198.18.1.2 ──────── up0 198.18.1.1
//	                                          gw0 198.19.0.1/24
//	                                          core0 203.0.113.2/30 ─────── hub-a 203.0.113.1/30
//	                 gw0 198.19.0.11/24                                   dc0 198.51.100.1 ─────── dc0 198.51.100.2
//	                 upb0 198.18.2.2 ──────── up0 198.18.2.1              hub-b 203.0.113.5/30
//	                                          gw0 198.19.0.2/24             │
//	                                  hub-b   core0 203.0.113.6/30 ─────────┘
//
// The BGP links also carry 2001:db8:ff::/64 (hub A) and 2001:db8:ff:1::/64
// (hub B) for the examples' IPv6 sessions. The hubs route to the core by
// a default route; the LAN host and the data-centre host by a default
// route to the site and the core. The site lists both hubs with the same
// allowed_ips (the tunnel network and the data centre), hub A with
// priority 1 and hub B with 2, and hold_down 3 s; each hub lists the site
// with its LAN and tunnel address and has routes = "connected", so its
// kernel has the route to the LAN (proto 77) only while the site uses it,
// and BIRD announces it to the core.

// The lab's addresses.
var (
	mhLANHost  = netip.MustParseAddr("192.0.2.2")
	mhLAN      = netip.MustParsePrefix("192.0.2.0/25")
	mhSiteTun  = "198.19.0.11/24"
	mhCoreHubA = netip.MustParseAddr("203.0.113.1") // the core's end of hub A's link
	mhHubACore = netip.MustParseAddr("203.0.113.2") // hub A's end
	mhCoreHubB = netip.MustParseAddr("203.0.113.5")
	mhHubBCore = netip.MustParseAddr("203.0.113.6")
	mhDCHost   = "198.51.100.2/24"
	mhCoreDC   = "198.51.100.1/24"
)

const (
	// mhHoldDown is the site's hold_down.
	mhHoldDown = 3 * time.Second
	// mhProto is Godwit's default route_protocol.
	mhProto = "77"
	// mhExamples holds the example configs the lab runs.
	mhExamples = "../packaging/examples/multihub"
)

// mhHub is one hub of the lab.
type mhHub struct {
	name   string // "hub-a" or "hub-b": the site's peer name
	ns     *netlab.NS
	up     string // its underlay address, the site's endpoint
	tun    string // its tunnel address
	core   netip.Addr
	coreGW netip.Addr // the core's end of its BGP link
	v6     string     // its IPv6 address on the BGP link
	v6Core string     // the core's
	conf   nodeConf   // its Godwit config
	bird   string     // BIRD's control socket
	d      *labtest.Daemon
}

// mhLab is the running lab.
type mhLab struct {
	lab           *netlab.Lab
	lanNS, siteNS *netlab.NS
	coreNS, dcNS  *netlab.NS
	hubA, hubB    *mhHub
	site          *labtest.Daemon
	coreBird      string // the core BIRD's control socket
	siteKey       key
	siteConf      nodeConf
	restarts      int // of hub A's daemon, for unique names
}

// requireBird skips t (fails it when GODWIT_E2E=1) without BIRD 2.
func requireBird(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.SkipOrFail(t, "%s is not installed (Debian package bird2): %v", tool, err)
		}
	}
}

// mhBirdConf reads an example BIRD config and applies the replacements
// old1, new1, old2, new2, ...; each must match, so that a changed example
// fails here instead of silently running a different config. BIRD logs to
// stderr (the lab's log file) instead of syslog.
func mhBirdConf(t *testing.T, l *netlab.Lab, example, out string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(mhExamples, example))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	repl = append([]string{"log syslog all;", "log stderr all;"}, repl...)
	for i := 0; i+1 < len(repl); i += 2 {
		if !strings.Contains(s, repl[i]) {
			t.Fatalf("%s has no %q any more: update the multihub test", example, repl[i])
		}
		s = strings.ReplaceAll(s, repl[i], repl[i+1])
	}
	path := filepath.Join(l.Dir, out)
	must(t, os.WriteFile(path, []byte(s), 0o644))
	return path
}

// startBird runs BIRD in ns with config conf and returns its control
// socket.
func startBird(t *testing.T, l *netlab.Lab, ns *netlab.NS, name, conf string) string {
	t.Helper()
	if out, err := exec.Command("bird", "-p", "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("bird -p -c %s: %v: %s", conf, err, out)
	}
	sock := filepath.Join(l.Dir, name+".ctl")
	p, err := ns.Start(name, "bird", "-f", "-c", conf, "-s", sock)
	must(t, err)
	labtest.WaitFor(t, 10*time.Second, name+"'s control socket", func() bool {
		_, err := os.Stat(sock)
		return err == nil || p.Exited()
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- log of %s ---\n%s", name, p.Output())
		}
	})
	return sock
}

// birdc runs `birdc -s sock args...` and returns its output.
func birdc(t *testing.T, sock string, args ...string) string {
	t.Helper()
	out, err := exec.Command("birdc", append([]string{"-s", sock}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("birdc -s %s %s: %v: %s", sock, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// birdProto returns the line of `birdc show protocols` about proto, with
// its fields separated by single spaces, or "" when there is none.
func birdProto(t *testing.T, sock, proto string) string {
	t.Helper()
	for line := range strings.Lines(birdc(t, sock, "show", "protocols", proto)) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == proto {
			return strings.Join(f, " ")
		}
	}
	return ""
}

// bgpUp reports whether BIRD's protocol proto is an Established BGP
// session.
func bgpUp(t *testing.T, sock, proto string) bool {
	t.Helper()
	return strings.Contains(birdProto(t, sock, proto), "Established")
}

// newMultiHubLab builds the lab, starts BIRD everywhere and waits for the
// BGP sessions; it starts no Godwit.
func newMultiHubLab(t *testing.T) *mhLab {
	t.Helper()
	requireBird(t)
	needNft(t, "the multihub lab")
	l := labtest.NewLab(t, "gmh")
	m := &mhLab{lab: l}
	var err error
	ns := func(name string) *netlab.NS {
		n, err := l.NS(name)
		must(t, err)
		return n
	}
	m.lanNS, m.siteNS, m.coreNS, m.dcNS = ns("lan"), ns("site"), ns("core"), ns("dc")
	m.hubA = &mhHub{name: "hub-a", ns: ns("huba"), up: "198.18.1.1", tun: "198.19.0.1/24",
		core: mhHubACore, coreGW: mhCoreHubA, v6: "2001:db8:ff::2/64", v6Core: "2001:db8:ff::1/64"}
	m.hubB = &mhHub{name: "hub-b", ns: ns("hubb"), up: "198.18.2.1", tun: "198.19.0.2/24",
		core: mhHubBCore, coreGW: mhCoreHubB, v6: "2001:db8:ff:1::2/64", v6Core: "2001:db8:ff:1::1/64"}

	link := func(a *netlab.NS, aIf, aAddr string, b *netlab.NS, bIf, bAddr string) {
		t.Helper()
		must(t, l.Link(a, aIf, b, bIf))
		must(t, a.Addr(aIf, aAddr))
		must(t, b.Addr(bIf, bAddr))
	}
	link(m.lanNS, "lan0", mhLANHost.String()+"/25", m.siteNS, "lan0", "192.0.2.1/25")
	link(m.siteNS, "upa0", "198.18.1.2/24", m.hubA.ns, "up0", m.hubA.up+"/24")
	link(m.siteNS, "upb0", "198.18.2.2/24", m.hubB.ns, "up0", m.hubB.up+"/24")
	link(m.hubA.ns, "core0", m.hubA.core.String()+"/30", m.coreNS, "hub-a", m.hubA.coreGW.String()+"/30")
	link(m.hubB.ns, "core0", m.hubB.core.String()+"/30", m.coreNS, "hub-b", m.hubB.coreGW.String()+"/30")
	link(m.coreNS, "dc0", mhCoreDC, m.dcNS, "dc0", mhDCHost)
	for _, h := range []*mhHub{m.hubA, m.hubB} {
		must(t, h.ns.Addr("core0", h.v6))
		must(t, m.coreNS.Addr(h.name, h.v6Core))
		_, err = h.ns.Exec("ip", "route", "add", "default", "via", h.coreGW.String())
		must(t, err)
		must(t, h.ns.Sysctl("net.ipv4.ip_forward", "1"))
	}
	_, err = m.lanNS.Exec("ip", "route", "add", "default", "via", "192.0.2.1")
	must(t, err)
	_, err = m.dcNS.Exec("ip", "route", "add", "default", "via", "198.51.100.1")
	must(t, err)
	must(t, m.siteNS.Sysctl("net.ipv4.ip_forward", "1"))
	must(t, m.coreNS.Sysctl("net.ipv4.ip_forward", "1"))

	// The core first, so that the hubs' first connection attempts (after
	// connect delay time, 1 s) find it listening.
	m.coreBird = startBird(t, l, m.coreNS, "bird-core", mhBirdConf(t, l, "bird-core.conf", "core.conf"))
	m.hubA.bird = startBird(t, l, m.hubA.ns, "bird-hub-a", mhBirdConf(t, l, "bird-hub.conf", "hub-a.conf"))
	m.hubB.bird = startBird(t, l, m.hubB.ns, "bird-hub-b", mhBirdConf(t, l, "bird-hub.conf", "hub-b.conf",
		"203.0.113.2", "203.0.113.6", "203.0.113.1", "203.0.113.5",
		"2001:db8:ff::2", "2001:db8:ff:1::2", "2001:db8:ff::1", "2001:db8:ff:1::1", "64497", "64498"))
	start := time.Now()
	labtest.WaitFor(t, 20*time.Second, "BGP sessions core-hub-a and core-hub-b Established", func() bool {
		return bgpUp(t, m.coreBird, "hub_a4") && bgpUp(t, m.coreBird, "hub_b4")
	})
	t.Logf("BGP up %v after BIRD started", time.Since(start).Round(time.Millisecond))
	return m
}

// startGodwit starts both hubs and the site, and waits until the site is
// connected to both.
func (m *mhLab) startGodwit(t *testing.T) {
	t.Helper()
	m.siteKey = genKey(t, m.lab, "site")
	for _, h := range []*mhHub{m.hubA, m.hubB} {
		h.conf = nodeConf{name: h.name, key: genKey(t, m.lab, h.name), addrs: []string{h.tun},
			listen: fmt.Sprintf("0.0.0.0:%d", port), extra: []string{`routes = "connected"`, `metrics_listen = "127.0.0.1:9586"`},
			peers: []peerConf{{name: "site", pub: m.siteKey.pub, allowed: []string{"198.19.0.11/32", mhLAN.String()}}}}
		h.d = startNode(t, m.lab, h.ns, h.conf)
	}
	shared := []string{"198.19.0.0/24", "198.51.100.0/24"}
	m.siteConf = nodeConf{name: "site", key: m.siteKey, addrs: []string{mhSiteTun},
		extra: []string{fmt.Sprintf("hold_down = %q", mhHoldDown), `metrics_listen = "127.0.0.1:9586"`},
		peers: []peerConf{
			{name: m.hubA.name, pub: m.hubA.conf.key.pub, allowed: shared, endpoint: fmt.Sprintf("%s:%d", m.hubA.up, port), extra: []string{"priority = 1"}},
			{name: m.hubB.name, pub: m.hubB.conf.key.pub, allowed: shared, endpoint: fmt.Sprintf("%s:%d", m.hubB.up, port), extra: []string{"priority = 2"}},
		}}
	m.site = startNode(t, m.lab, m.siteNS, m.siteConf)
	m.site.WaitConnected(t, m.hubA.name)
	m.site.WaitConnected(t, m.hubB.name)
	m.hubA.d.WaitConnected(t, "site")
	m.hubB.d.WaitConnected(t, "site")
}

// restartHubA starts hub A's daemon again (same config, key and state
// directory) under a new log name, and waits until the site is connected
// to it.
func (m *mhLab) restartHubA(t *testing.T) {
	t.Helper()
	m.restarts++
	h := m.hubA
	h.d = labtest.StartDaemon(t, h.ns, fmt.Sprintf("%s-%d", h.name, m.restarts), h.conf.write(t, m.lab))
	h.d.WaitConnected(t, "site")
}

// coreVia returns the gateway of the core's kernel route to the site's
// LAN, or an invalid address when it has none.
func (m *mhLab) coreVia(t *testing.T) netip.Addr {
	t.Helper()
	for _, r := range ipJSON(t, m.coreNS, "-4", "route", "show", mhLAN.String()) {
		if gw, _ := r["gateway"].(string); gw != "" {
			a, err := netip.ParseAddr(gw)
			if err != nil {
				t.Fatalf("core: route to %v via %q: %v", mhLAN, gw, err)
			}
			return a
		}
	}
	return netip.Addr{}
}

// hubRoute reports whether the hub's kernel has Godwit's route to the
// site's LAN: on gw0 with proto 77.
func (m *mhLab) hubRoute(t *testing.T, h *mhHub) bool {
	t.Helper()
	for _, r := range ipJSON(t, h.ns, "-4", "route", "show", mhLAN.String(), "proto", mhProto) {
		if r["dev"] == tunName {
			return true
		}
	}
	return false
}

// mhStatus is the part of `godwit show --json` the multihub test reads:
// the fields issue 13 adds, read by their JSON names.
type mhStatus struct {
	Interface struct {
		Routes        string `json:"routes"`
		RouteProtocol int    `json:"route_protocol"`
		HubFailovers  uint64 `json:"hub_failovers"`
	} `json:"interface"`
	Peers []mhPeer `json:"peers"`
}

type mhPeer struct {
	Name            string `json:"name"`
	State           string `json:"state"`
	Priority        *int   `json:"priority"`
	Carrying        bool   `json:"carrying"`
	Preferred       bool   `json:"preferred"`
	RoutesInstalled bool   `json:"routes_installed"`
}

// mhShow runs `godwit show --json` against d.
func mhShow(t *testing.T, d *labtest.Daemon) mhStatus {
	t.Helper()
	var st mhStatus
	out := show(t, d, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("godwit show --json (%s): %v in %q", d.Name, err, out)
	}
	return st
}

func (s mhStatus) peer(name string) mhPeer {
	for _, p := range s.Peers {
		if p.Name == name {
			return p
		}
	}
	return mhPeer{}
}

// String shows a peer's multihub fields.
func (p mhPeer) String() string {
	prio := "unset"
	if p.Priority != nil {
		prio = fmt.Sprint(*p.Priority)
	}
	return fmt.Sprintf("%s: state %s priority %s carrying %v preferred %v routes_installed %v",
		p.Name, p.State, prio, p.Carrying, p.Preferred, p.RoutesInstalled)
}

// checkCarrier checks that everything agrees that carrier (and not other)
// carries the site's traffic: the core routes the LAN to it, its kernel
// has the route with proto 77 and the other's has none, and `godwit show`
// on the site and on both hubs says so.
func (m *mhLab) checkCarrier(t *testing.T, carrier, other *mhHub) {
	t.Helper()
	if got := m.coreVia(t); got != carrier.core {
		t.Errorf("core: route to %v via %v, want via %s (%v)", mhLAN, got, carrier.name, carrier.core)
	}
	if !m.hubRoute(t, carrier) {
		t.Errorf("%s: no route to %v on %s with proto %s; routes: %q", carrier.name, mhLAN, tunName, mhProto, tunRoutes(t, carrier.ns, tunName))
	}
	if other.d != nil && !other.d.Exited() && m.hubRoute(t, other) {
		t.Errorf("%s: has a route to %v with proto %s, want none while the site uses %s", other.name, mhLAN, mhProto, carrier.name)
	}
	st := mhShow(t, m.site)
	if p := st.peer(carrier.name); !p.Carrying {
		t.Errorf("site: godwit show: %v, want carrying", p)
	}
	if p := st.peer(other.name); p.Carrying {
		t.Errorf("site: godwit show: %v, want not carrying", p)
	}
	hs := mhShow(t, carrier.d)
	if p := hs.peer("site"); !p.Preferred || !p.RoutesInstalled {
		t.Errorf("%s: godwit show: %v, want preferred and routes_installed", carrier.name, p)
	}
	if hs.Interface.Routes != "connected" || fmt.Sprint(hs.Interface.RouteProtocol) != mhProto {
		t.Errorf("%s: godwit show: routes %q route_protocol %d, want \"connected\" and %s", carrier.name, hs.Interface.Routes, hs.Interface.RouteProtocol, mhProto)
	}
	if other.d != nil && !other.d.Exited() {
		if p := mhShow(t, other.d).peer("site"); p.Preferred || p.RoutesInstalled {
			t.Errorf("%s: godwit show: %v, want neither preferred nor routes_installed", other.name, p)
		}
	}
}

// waitCore waits up to within until the core routes the site's LAN via
// h, and returns how long that took from since.
func (m *mhLab) waitCore(t *testing.T, h *mhHub, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	labtest.WaitFor(t, within, fmt.Sprintf("core route to %v via %s", mhLAN, h.name), func() bool {
		return m.coreVia(t) == h.core
	})
	return time.Since(since)
}

// waitHubRoute waits up to within until h's kernel has (want) or lacks
// Godwit's route to the LAN, and returns how long that took from since.
func (m *mhLab) waitHubRoute(t *testing.T, h *mhHub, want bool, since time.Time, within time.Duration) time.Duration {
	t.Helper()
	labtest.WaitFor(t, within, fmt.Sprintf("%s with route to %v = %v", h.name, mhLAN, want), func() bool {
		return m.hubRoute(t, h) == want
	})
	return time.Since(since)
}

// silence makes ns drop everything that comes in or goes out on the
// interfaces ifaces, which stay up with their addresses and routes.
func silence(t *testing.T, l *netlab.Lab, ns *netlab.NS, ifaces ...string) {
	t.Helper()
	set := quote(ifaces)
	set = "{ " + set[1:len(set)-1] + " }"
	loadNft(t, ns, filepath.Join(l.Dir, "silence.nft"), fmt.Sprintf(`table inet silence {
	chain pre {
		type filter hook prerouting priority -300; policy accept;
		iifname %[1]s drop
	}
	chain post {
		type filter hook postrouting priority 300; policy accept;
		oifname %[1]s drop
	}
}
`, set))
}

// outage waits until the pinger has replies again after from, lets 600 ms
// pass (past the grace for replies in flight) and returns the longest gap
// since from and the pings lost.
func outage(t *testing.T, p *netlab.Pinger, from time.Time, within time.Duration) (gap time.Duration, lost, sent int) {
	t.Helper()
	if _, err := p.ReplyAfter(t.Context(), time.Now(), within); err != nil {
		t.Fatalf("ping from the data centre to the site's LAN: %v", err)
	}
	time.Sleep(600 * time.Millisecond)
	return p.Outage(from, time.Now())
}

// TestMultiHub runs issue 13's scenarios in one lab, one after the other,
// under a 20 Hz ping from the data-centre host to the site's LAN host:
// (a) steady state on hub A; (b) kill -9 of hub A's Godwit: the site moves
// to hub B; (c) hub A back: the traffic returns after the hold-down; (d)
// SIGTERM of hub A: the site moves before it goes; (e) the whole hub A
// machine silent (underlay and BGP links dropped): the site moves, and BFD
// takes hub A's routes out of the core.
func TestMultiHub(t *testing.T) {
	m := newMultiHubLab(t)
	m.startGodwit(t)
	a, b := m.hubA, m.hubB
	dc := m.dcNS

	// (a) Steady state.
	start := time.Now()
	m.waitCore(t, a, start, 10*time.Second)
	if err := dc.WaitPing(mhLANHost, 10*time.Second); err != nil {
		t.Fatalf("steady state: %v", err)
	}
	// The site may reach hub B first and carry through it for a moment
	// before hub A is up: hub B must then drop its route at once.
	if settle := time.Now(); m.hubRoute(t, b) {
		if labtest.Eventually(5*time.Second, func() bool { return !m.hubRoute(t, b) }) {
			t.Logf("(a) hub B had the route too at first (the site reached it first); gone %v later", time.Since(settle).Round(time.Millisecond))
		} else {
			t.Errorf("(a) hub B still has a route to %v with proto %s 5 s after the core routed via hub A; hub B: %v",
				mhLAN, mhProto, mhShow(t, b.d).peer("site"))
		}
	}
	m.checkCarrier(t, a, b)
	if p := mhShow(t, m.site).peer(a.name); p.Priority == nil || *p.Priority != 1 {
		t.Errorf("site: godwit show: %v, want priority 1", p)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("(a) steady: core routes %v via hub A %v after Godwit connected", mhLAN, time.Since(start).Round(time.Millisecond))

	ping, err := dc.StartPinger(mhLANHost, 50*time.Millisecond, 100*time.Second)
	must(t, err)
	t.Cleanup(ping.Stop)
	time.Sleep(time.Second)

	// (b) kill -9 of hub A's Godwit: its TUN and routes vanish with it, so
	// BIRD withdraws at once; the site notices the silence and moves to
	// hub B, which installs the route, and BIRD announces it.
	from := time.Now()
	must(t, a.d.Signal(syscall.SIGKILL))
	moved := m.waitHubRoute(t, b, true, from, 10*time.Second)
	core := m.waitCore(t, b, from, 10*time.Second)
	gap, lost, sent := outage(t, ping, from, 10*time.Second)
	t.Logf("(b) kill -9 hub A: hub B has the route after %v, core via hub B after %v; longest ping gap %v (target 1.5 s), %d of %d lost",
		moved.Round(time.Millisecond), core.Round(time.Millisecond), gap.Round(time.Millisecond), lost, sent)
	if gap > 4*time.Second {
		t.Errorf("(b) kill -9 of hub A: longest gap %v, want <= 4 s (target 1.5 s)", gap.Round(time.Millisecond))
	}
	if n := len(tunRoutes(t, a.ns, tunName)); n != 0 || linkExists(t, a.ns, tunName) {
		t.Errorf("(b) hub A after kill -9: %d routes on %s, link exists %v; want the TUN and its routes gone", n, tunName, linkExists(t, a.ns, tunName))
	}
	m.checkCarrier(t, b, a)

	// (c) Hub A back: after the hold-down the site returns to it.
	m.restartHubA(t)
	from = time.Now()
	core = m.waitCore(t, a, from, mhHoldDown+10*time.Second)
	gone := m.waitHubRoute(t, b, false, from, 5*time.Second)
	gap, lost, sent = outage(t, ping, from, 10*time.Second)
	t.Logf("(c) hub A back: core via hub A %v after it connected (hold_down %v), hub B's route gone after %v; longest ping gap %v (target 0.5 s), %d of %d lost",
		core.Round(time.Millisecond), mhHoldDown, gone.Round(time.Millisecond), gap.Round(time.Millisecond), lost, sent)
	if core < mhHoldDown-time.Second {
		t.Errorf("(c) the traffic returned to hub A %v after it connected, want not before the hold-down (%v)", core.Round(time.Millisecond), mhHoldDown)
	}
	if gap > 2*time.Second {
		t.Errorf("(c) return to hub A: longest gap %v, want <= 2 s (target 0.5 s)", gap.Round(time.Millisecond))
	}
	m.checkCarrier(t, a, b)

	// (d) SIGTERM of hub A: it tells the site it is leaving, the site
	// moves to hub B before hub A's routes go.
	from = time.Now()
	a.d.Stop(t, 10*time.Second)
	stopped := time.Since(from)
	core = m.waitCore(t, b, from, 10*time.Second)
	gap, lost, sent = outage(t, ping, from, 10*time.Second)
	t.Logf("(d) SIGTERM hub A: exited after %v, core via hub B after %v; longest ping gap %v (target 0.5 s), %d of %d lost",
		stopped.Round(time.Millisecond), core.Round(time.Millisecond), gap.Round(time.Millisecond), lost, sent)
	if gap > 2*time.Second {
		t.Errorf("(d) SIGTERM of hub A: longest gap %v, want <= 2 s (target 0.5 s)", gap.Round(time.Millisecond))
	}
	m.checkCarrier(t, b, a)

	m.restartHubA(t)
	from = time.Now()
	m.waitCore(t, a, from, mhHoldDown+10*time.Second)
	m.waitHubRoute(t, b, false, from, 5*time.Second)
	time.Sleep(time.Second)

	// (e) The whole hub A machine silent: its underlay and BGP links drop
	// everything (the link stays up, so neither Godwit nor BIRD sees a
	// link change). The site must notice the silent path and move; the
	// core's BFD session to hub A goes down and takes its routes along.
	from = time.Now()
	silence(t, m.lab, a.ns, "up0", "core0")
	var bfdDown time.Duration
	labtest.WaitFor(t, 15*time.Second, "core's BGP session to hub A down", func() bool {
		if !bgpUp(t, m.coreBird, "hub_a4") {
			bfdDown = time.Since(from)
			return true
		}
		return false
	})
	moved = m.waitHubRoute(t, b, true, from, 10*time.Second)
	core = m.waitCore(t, b, from, 15*time.Second)
	gap, lost, sent = outage(t, ping, from, 10*time.Second)
	t.Logf("(e) hub A silent: core's session to hub A down after %v (BFD 3 x 100 ms; hold time 9 s without it), hub B has the route after %v, core via hub B after %v; longest ping gap %v, %d of %d lost",
		bfdDown.Round(time.Millisecond), moved.Round(time.Millisecond), core.Round(time.Millisecond), gap.Round(time.Millisecond), lost, sent)
	if moved > 5*time.Second {
		t.Errorf("(e) hub A silent: the site moved to hub B after %v, want <= 5 s", moved.Round(time.Millisecond))
	}
	if bfdDown > 3*time.Second {
		t.Errorf("(e) hub A silent: the core's session to hub A went down after %v, want <= 3 s with BFD", bfdDown.Round(time.Millisecond))
	}
	if core > 6*time.Second {
		t.Errorf("(e) hub A silent: the core routes via hub B after %v, want <= 6 s", core.Round(time.Millisecond))
	}
	if st := mhShow(t, m.site); !st.peer(b.name).Carrying || st.peer(a.name).Carrying {
		t.Errorf("(e) site: godwit show: %v; %v; want hub B carrying, hub A not", st.peer(a.name), st.peer(b.name))
	}

	// Every move counted: (b), (c), (d), the return before (e), and (e).
	metrics := scrapeIn(t, m.siteNS, "127.0.0.1:9586")
	st := mhShow(t, m.site)
	t.Logf("site: hub_failovers %d, godwit_hub_failovers_total %v", st.Interface.HubFailovers, metrics["godwit_hub_failovers_total"])
	if st.Interface.HubFailovers < 5 || metrics["godwit_hub_failovers_total"] < 5 {
		t.Errorf("site: hub_failovers %d, godwit_hub_failovers_total %v; want at least 5 (5 moves)", st.Interface.HubFailovers, metrics["godwit_hub_failovers_total"])
	}
	for _, g := range []struct {
		ns     *netlab.NS
		sample string
		want   float64
	}{
		{m.siteNS, `godwit_peer_preferred{peer="hub-a"}`, 0},
		{m.siteNS, `godwit_peer_preferred{peer="hub-b"}`, 1},
		{b.ns, `godwit_peer_preferred{peer="site"}`, 1},
	} {
		got, ok := metrics[g.sample]
		if g.ns != m.siteNS {
			got, ok = scrapeIn(t, g.ns, "127.0.0.1:9586")[g.sample]
		}
		if !ok || got != g.want {
			t.Errorf("(e) %s: %s = %v (present %v), want %v", g.ns.Name, g.sample, got, ok, g.want)
		}
	}
}

// TestMultiHubCoreDetection measures how long the core of the example
// configs keeps routing a site's LAN to a hub machine that went silent
// (its link to the core drops everything): with the examples' BFD (3 x 100
// ms), and with BFD off, when the BGP hold time (9 s) decides. The hub's
// kernel holds a route such as Godwit installs (on a TUN, proto 77), so
// this needs BIRD but not Godwit.
func TestMultiHubCoreDetection(t *testing.T) {
	tests := []struct {
		name   string
		bfd    bool
		within time.Duration // asserted
	}{
		{name: "bfd", bfd: true, within: 3 * time.Second},
		{name: "hold-time", bfd: false, within: 15 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			requireBird(t)
			needNft(t, "this test")
			l := labtest.NewLab(t, "gmc")
			hub, err := l.NS("hub")
			must(t, err)
			core, err := l.NS("core")
			must(t, err)
			must(t, l.Link(hub, "core0", core, "hub-a"))
			must(t, hub.Addr("core0", mhHubACore.String()+"/30"))
			must(t, core.Addr("hub-a", mhCoreHubA.String()+"/30"))
			for _, args := range [][]string{
				{"ip", "tuntap", "add", "dev", tunName, "mode", "tun"},
				{"ip", "link", "set", tunName, "up"},
				{"ip", "route", "add", mhLAN.String(), "dev", tunName, "proto", mhProto},
			} {
				_, err := hub.Exec(args...)
				must(t, err)
			}
			var repl []string
			if !tt.bfd {
				repl = []string{"bfd on;", "bfd off;"}
			}
			coreBird := startBird(t, l, core, "bird-core", mhBirdConf(t, l, "bird-core.conf", "core.conf", repl...))
			startBird(t, l, hub, "bird-hub", mhBirdConf(t, l, "bird-hub.conf", "hub.conf", repl...))
			via := func() bool {
				for _, r := range ipJSON(t, core, "-4", "route", "show", mhLAN.String()) {
					if r["gateway"] == mhHubACore.String() {
						return true
					}
				}
				return false
			}
			labtest.WaitFor(t, 20*time.Second, "core route to the LAN via the hub", via)

			from := time.Now()
			silence(t, l, hub, "core0")
			labtest.WaitFor(t, tt.within, "core route to the LAN withdrawn", func() bool { return !via() })
			took := time.Since(from)
			t.Logf("hub silent, BFD %v: the core withdrew its route after %v (%s)", tt.bfd, took.Round(time.Millisecond),
				birdProto(t, coreBird, "hub_a4"))
		})
	}
}

// TestMultiHubFRR runs the FRR example (frr-hub.conf: zebra, bgpd and
// bfdd) on a hub against the BIRD core of the examples. The hub's kernel
// holds routes such as Godwit installs (on its TUN, proto 77) and decoys:
// a route on the TUN outside the sites' prefixes and a site prefix routed
// elsewhere. The core must learn exactly Godwit's routes, over a session
// with BFD up, and lose them when the TUN goes (as when Godwit is killed).
func TestMultiHubFRR(t *testing.T) {
	requireBird(t)
	const frrDir = "/usr/lib/frr"
	for _, tool := range []string{frrDir + "/zebra", frrDir + "/bgpd", frrDir + "/bfdd", "vtysh"} {
		if _, err := exec.LookPath(tool); err != nil {
			labtest.SkipOrFail(t, "%s is not installed (Debian package frr): %v", tool, err)
		}
	}
	l := labtest.NewLab(t, "gmf")
	hub, err := l.NS("hub")
	must(t, err)
	core, err := l.NS("core")
	must(t, err)
	must(t, l.Link(hub, "core0", core, "hub-a"))
	must(t, hub.Addr("core0", mhHubACore.String()+"/30"))
	must(t, core.Addr("hub-a", mhCoreHubA.String()+"/30"))
	must(t, hub.Addr("core0", "2001:db8:ff::2/64"))
	must(t, core.Addr("hub-a", "2001:db8:ff::1/64"))
	for _, args := range [][]string{
		{"ip", "tuntap", "add", "dev", tunName, "mode", "tun"},
		{"ip", "link", "set", tunName, "up"},
		{"ip", "route", "add", mhLAN.String(), "dev", tunName, "proto", mhProto},
		{"ip", "route", "add", "198.19.0.11/32", "dev", tunName, "proto", mhProto},
		{"ip", "-6", "route", "add", "2001:db8:77::11/128", "dev", tunName, "proto", mhProto},
		// Decoys: not a site's prefix; a site's prefix not on the TUN.
		{"ip", "route", "add", "198.51.100.128/25", "dev", tunName, "proto", mhProto},
		{"ip", "route", "add", "192.0.2.128/25", "via", mhCoreHubA.String(), "proto", "static"},
	} {
		_, err := hub.Exec(args...)
		must(t, err)
	}
	coreBird := startBird(t, l, core, "bird-core", mhBirdConf(t, l, "bird-core.conf", "core.conf"))

	// FRR's pathspace (-N) keeps this instance's sockets and pid files in
	// /run/frr/<name>, apart from any other FRR on the machine.
	space := "godwit-" + l.ID
	run := filepath.Join("/run/frr", space)
	must(t, os.MkdirAll(run, 0o755))
	t.Cleanup(func() { os.RemoveAll(run) })
	if out, err := exec.Command("chown", "frr:frr", run).CombinedOutput(); err != nil {
		t.Fatalf("chown frr:frr %s: %v: %s", run, err, out)
	}
	for _, d := range []string{"zebra", "bfdd", "bgpd"} {
		p, err := hub.Start("frr-"+d, filepath.Join(frrDir, d), "-N", space, "-u", "frr", "-g", "frr",
			"-i", filepath.Join(run, d+".pid"), "--log", "stdout")
		must(t, err)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- log of frr-%s ---\n%s", d, p.Output())
			}
		})
		labtest.WaitFor(t, 10*time.Second, d+"'s vty socket", func() bool {
			_, err := os.Stat(filepath.Join(run, d+".vty"))
			return err == nil
		})
	}
	if out, err := exec.Command("vtysh", "-N", space, "-f", filepath.Join(mhExamples, "frr-hub.conf")).CombinedOutput(); err != nil {
		t.Fatalf("vtysh -f frr-hub.conf: %v: %s", err, out)
	}

	coreRoutes := func() []string {
		var got []string
		for _, fam := range []string{"-4", "-6"} {
			for _, r := range ipJSON(t, core, fam, "route", "show", "proto", "bird") {
				got = append(got, fmt.Sprintf("%v via %v", r["dst"], r["gateway"]))
			}
		}
		return got
	}
	want := []string{"192.0.2.0/25 via 203.0.113.2", "198.19.0.11 via 203.0.113.2", "2001:db8:77::11 via 2001:db8:ff::2"}
	start := time.Now()
	if !labtest.Eventually(20*time.Second, func() bool { return strings.Join(coreRoutes(), ", ") == strings.Join(want, ", ") }) {
		t.Fatalf("core's routes from the FRR hub: %q, want %q; %s; %s", coreRoutes(), want,
			birdProto(t, coreBird, "hub_a4"), birdProto(t, coreBird, "hub_a6"))
	}
	t.Logf("core has exactly Godwit's routes %v after FRR got its config", time.Since(start).Round(time.Millisecond))
	labtest.WaitFor(t, 10*time.Second, "core's BFD sessions to the FRR hub up", func() bool {
		return strings.Count(birdc(t, coreBird, "show", "bfd", "sessions"), " Up ") == 2
	})

	from := time.Now()
	_, err = hub.Exec("ip", "link", "del", tunName)
	must(t, err)
	labtest.WaitFor(t, 5*time.Second, "core's routes withdrawn after the TUN went", func() bool { return len(coreRoutes()) == 0 })
	t.Logf("core withdrew them %v after the TUN went", time.Since(from).Round(time.Millisecond))
}
