// SPDX-License-Identifier: MIT

package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
	"github.com/godwit-vpn/godwit/tests/relay"
)

// The mobility lab: a site with two uplinks behind a NAT router, and a hub.
//
//	site                         router (nft SNAT, optional relay)           hub
//	wifi0 198.51.100.2/24 ─── wifi0r 198.51.100.1/24
//	                                   up0r 203.0.113.1/24 ─── up0 203.0.113.2/24
//	cell0 192.0.2.2/24    ─── cell0r 192.0.2.1/24          (hub listens 203.0.113.2:4433)
//
// The site has a default route through each uplink, Wi-Fi preferred
// (metric 100, cellular 200). The router forwards and SNATs whatever leaves
// up0r: traffic from the Wi-Fi subnet to 203.0.113.10 (then .11, .12 ...
// after rebindAddress), from the cellular subnet to 203.0.113.20 (.21 ...),
// with ports from 20000-39999 or 40000-59999 (rebindPort swaps them, so the
// new port always differs). The public addresses are /32s on up0r so that
// the router answers ARP for them.
//
// With mobOpts.delay, a relay.Relay in the router listens on 203.0.113.1:4433
// and forwards to the hub with that one-way delay each way. Its upstream
// socket for a client binds the router's address on that client's uplink
// (198.51.100.1 or 192.0.2.1), so relayed traffic goes through the same
// SNAT rules and the hub still sees 203.0.113.10 or .20; rebinding and
// blackholes work on it too. A test dials mobTopo.dialAddr, which is the
// relay when there is one.
const (
	mobNATPort = "20000-39999" // first SNAT port range; rebindPort swaps to the second
	mobNATAlt  = "40000-59999"
)

var (
	mobHub      = netip.MustParseAddrPort("203.0.113.2:4433")
	mobRelay    = netip.MustParseAddrPort("203.0.113.1:4433")
	mobRouterUp = netip.MustParsePrefix("203.0.113.1/24")
)

// mobUplink is one of the site's two uplinks.
type mobUplink struct {
	name     string       // "wifi" or "cell", for messages
	siteIf   string       // interface in the site namespace
	routerIf string       // its peer in the router namespace
	site     netip.Prefix // the site's address and subnet
	gw       netip.Addr   // the router's address, the site's gateway
	metric   int          // of the site's default route through it
	public   netip.Addr   // first SNAT address; rebindAddress counts up from it
}

var (
	mobWifi = mobUplink{name: "wifi", siteIf: "wifi0", routerIf: "wifi0r",
		site: netip.MustParsePrefix("198.51.100.2/24"), gw: netip.MustParseAddr("198.51.100.1"),
		metric: 100, public: netip.MustParseAddr("203.0.113.10")}
	mobCell = mobUplink{name: "cell", siteIf: "cell0", routerIf: "cell0r",
		site: netip.MustParsePrefix("192.0.2.2/24"), gw: netip.MustParseAddr("192.0.2.1"),
		metric: 200, public: netip.MustParseAddr("203.0.113.20")}
)

// mobDown is how an uplink goes away.
type mobDown int

const (
	// mobLinkDown sets the site's interface down: its routes vanish, its
	// address stays (the veth peer loses carrier too).
	mobLinkDown mobDown = iota
	// mobAddrDel deletes the site's address, which removes its routes,
	// and leaves the link up.
	mobAddrDel
)

func (d mobDown) String() string {
	if d == mobLinkDown {
		return "link down"
	}
	return "address removed"
}

// mobOpts configures newMobTopo; the zero value means no relay.
type mobOpts struct {
	// delay, when positive, puts a relay with this one-way delay (each
	// way) in the router in front of the hub.
	delay time.Duration
}

// mobTopo is the mobility lab. Its helpers fail the test on error and are
// meant for the test goroutine.
type mobTopo struct {
	lab               *netlab.Lab
	site, router, hub *netlab.NS
	relay             *relay.Relay // nil without mobOpts.delay
	nftFile           string       // where the NAT ruleset is written
	mu                sync.Mutex   // guards the fields below
	wifiPub, cellPub  netip.Addr   // current SNAT addresses
	altPorts          bool         // SNAT uses mobNATAlt
}

// newMobilityTopo builds the lab drawn above, and removes it when the test
// ends. It needs root and nft.
func newMobilityTopo(t *testing.T, o mobOpts) *mobTopo {
	t.Helper()
	l := labtest.NewLab(t, "gwt")
	needNft(t, "the mobility lab")
	tp := &mobTopo{lab: l, wifiPub: mobWifi.public, cellPub: mobCell.public,
		nftFile: filepath.Join(l.Dir, "mobility-nat.nft")}
	var err error
	tp.site, err = l.NS("msite")
	must(t, err)
	tp.router, err = l.NS("mrtr")
	must(t, err)
	tp.hub, err = l.NS("mhub")
	must(t, err)

	for _, u := range []mobUplink{mobWifi, mobCell} {
		must(t, l.Link(tp.site, u.siteIf, tp.router, u.routerIf))
		must(t, tp.site.Addr(u.siteIf, u.site.String()))
		must(t, tp.router.Addr(u.routerIf, netip.PrefixFrom(u.gw, u.site.Bits()).String()))
		tp.siteRoute(t, u)
	}
	must(t, l.Link(tp.router, "up0r", tp.hub, "up0"))
	must(t, tp.router.Addr("up0r", mobRouterUp.String()))
	must(t, tp.hub.Addr("up0", netip.PrefixFrom(mobHub.Addr(), 24).String()))
	for _, a := range []netip.Addr{mobWifi.public, mobCell.public} {
		must(t, tp.router.Addr("up0r", netip.PrefixFrom(a, 32).String()))
	}
	must(t, tp.router.Sysctl("net.ipv4.ip_forward", "1"))
	tp.writeNAT(t, true)

	if o.delay > 0 {
		tp.startRelay(t, o.delay)
	}
	return tp
}

// siteRoute (re)adds the site's default route through u. Right after a
// link comes back up the kernel may refuse the gateway for a moment, so
// it retries briefly.
func (tp *mobTopo) siteRoute(t *testing.T, u mobUplink) {
	t.Helper()
	var err error
	if !labtest.Eventually(time.Second, func() bool {
		_, err = tp.site.Exec("ip", "route", "replace", "default", "via", u.gw.String(),
			"dev", u.siteIf, "metric", fmt.Sprint(u.metric))
		return err == nil
	}) {
		t.Fatalf("default route via %s: %v", u.name, err)
	}
}

// writeNAT loads the router's NAT rules for the current public addresses
// and port range, replacing the previous ones in one transaction. With
// first it also makes the (empty) blackhole chain.
func (tp *mobTopo) writeNAT(t *testing.T, first bool) {
	t.Helper()
	tp.mu.Lock()
	ports := mobNATPort
	if tp.altPorts {
		ports = mobNATAlt
	}
	wifi, cell := tp.wifiPub, tp.cellPub
	tp.mu.Unlock()
	var b strings.Builder
	if first {
		// priority -300 is before conntrack, so a blackhole also stops
		// conntrack from seeing (and refreshing) the flows.
		b.WriteString("table inet mobbh {\n\tchain pre {\n\t\ttype filter hook prerouting priority -300; policy accept;\n\t}\n}\n")
		b.WriteString("table ip mobnat {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t}\n}\n")
	}
	b.WriteString("flush chain ip mobnat post\n")
	for _, r := range []struct {
		u   mobUplink
		pub netip.Addr
	}{{mobWifi, wifi}, {mobCell, cell}} {
		// Port ranges need a transport protocol match; other protocols
		// (ICMP) get the address alone.
		fmt.Fprintf(&b, "add rule ip mobnat post oifname \"up0r\" ip saddr %s meta l4proto { tcp, udp } snat to %s:%s random\n",
			r.u.site.Masked(), r.pub, ports)
		fmt.Fprintf(&b, "add rule ip mobnat post oifname \"up0r\" ip saddr %s snat to %s\n", r.u.site.Masked(), r.pub)
	}
	loadNft(t, tp.router, tp.nftFile, b.String())
}

// startRelay runs a relay in the router on mobRelay with delay each way,
// until the test ends.
func (tp *mobTopo) startRelay(t *testing.T, delay time.Duration) {
	t.Helper()
	ln, err := tp.router.ListenUDP(mobRelay.String())
	must(t, err)
	hub := net.UDPAddrFromAddrPort(mobHub)
	r, err := relay.New(ln, relay.Config{
		Target: mobHub,
		Delay:  func(relay.Direction, uint64) time.Duration { return delay },
		Upstream: func(client netip.AddrPort) (*net.UDPConn, error) {
			// Leave from the router's address on the client's uplink, so
			// that uplink's SNAT rule applies.
			var local netip.Addr
			for _, u := range []mobUplink{mobWifi, mobCell} {
				if u.site.Masked().Contains(client.Addr()) {
					local = u.gw
				}
			}
			if !local.IsValid() {
				return nil, fmt.Errorf("client %v is on no uplink", client)
			}
			var c *net.UDPConn
			err := tp.router.Do(func() (err error) {
				c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)), hub)
				return err
			})
			return c, err
		},
	})
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	tp.relay = r
	stop := r.Start()
	// Registered after the lab's cleanup, so it runs before the lab goes.
	t.Cleanup(func() {
		if err := stop(10 * time.Second); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
}

// dialAddr is where the site should send to reach the hub: the relay when
// the lab has one, else the hub.
func (tp *mobTopo) dialAddr() netip.AddrPort {
	if tp.relay != nil {
		return mobRelay
	}
	return mobHub
}

func (tp *mobTopo) down(t *testing.T, u mobUplink, how mobDown) {
	t.Helper()
	var err error
	switch how {
	case mobLinkDown:
		_, err = tp.site.Exec("ip", "link", "set", u.siteIf, "down")
	case mobAddrDel:
		_, err = tp.site.Exec("ip", "addr", "del", u.site.String(), "dev", u.siteIf)
	}
	if err != nil {
		t.Fatalf("%s down (%v): %v", u.name, how, err)
	}
}

// up undoes either kind of down: link up, address back, default route back.
func (tp *mobTopo) up(t *testing.T, u mobUplink) {
	t.Helper()
	_, err := tp.site.Exec("ip", "link", "set", u.siteIf, "up")
	must(t, err)
	_, err = tp.site.Exec("ip", "addr", "replace", u.site.String(), "dev", u.siteIf)
	must(t, err)
	tp.siteRoute(t, u)
}

// wifiDown takes the Wi-Fi uplink away (how: link down or address removed).
func (tp *mobTopo) wifiDown(t *testing.T, how mobDown) { t.Helper(); tp.down(t, mobWifi, how) }

// wifiUp brings the Wi-Fi uplink back with its address and default route.
func (tp *mobTopo) wifiUp(t *testing.T) { t.Helper(); tp.up(t, mobWifi) }

// cellDown takes the cellular uplink away.
func (tp *mobTopo) cellDown(t *testing.T, how mobDown) { t.Helper(); tp.down(t, mobCell, how) }

// cellUp brings the cellular uplink back.
func (tp *mobTopo) cellUp(t *testing.T) { t.Helper(); tp.up(t, mobCell) }

// setBlackhole makes the router drop everything it receives (on; in
// prerouting, before conntrack) or nothing (off).
func (tp *mobTopo) setBlackhole(t *testing.T, on bool) {
	t.Helper()
	args := []string{"nft", "flush", "chain", "inet", "mobbh", "pre"}
	if on {
		args = []string{"nft", "add", "rule", "inet", "mobbh", "pre", "iifname", "!=", "lo", "counter", "drop"}
	}
	if _, err := tp.router.Exec(args...); err != nil {
		t.Fatalf("blackhole %v: %v", on, err)
	}
}

// blackhole cuts the router for d and returns at once; the cut ends by
// itself (and at the latest when the test ends), so the test can act
// during it.
func (tp *mobTopo) blackhole(t *testing.T, d time.Duration) {
	t.Helper()
	tp.setBlackhole(t, true)
	done := make(chan struct{})
	timer := time.AfterFunc(d, func() {
		defer close(done)
		if _, err := tp.router.Exec("nft", "flush", "chain", "inet", "mobbh", "pre"); err != nil {
			t.Errorf("end of blackhole: %v", err)
		}
	})
	t.Cleanup(func() {
		if timer.Stop() {
			return
		}
		<-done
	})
}

// rebindPort makes the NAT forget every mapping and hand out ports from
// the other range, so the next packet of every flow leaves with the same
// public address and a new port (a NAT rebinding). Instead of waiting for
// conntrack timeouts it deletes the router's conntrack entries over
// netlink, which needs no conntrack tool and never rebinds a flow behind
// the test's back.
func (tp *mobTopo) rebindPort(t *testing.T) {
	t.Helper()
	tp.mu.Lock()
	tp.altPorts = !tp.altPorts
	tp.mu.Unlock()
	tp.writeNAT(t, false)
	tp.flushConntrack(t)
}

// rebindAddress moves both uplinks to their next public address (.10 →
// .11, .20 → .21, ...) and makes the NAT forget every mapping, so the hub
// sees every flow from a new address.
func (tp *mobTopo) rebindAddress(t *testing.T) {
	t.Helper()
	tp.mu.Lock()
	tp.wifiPub, tp.cellPub = tp.wifiPub.Next(), tp.cellPub.Next()
	wifi, cell := tp.wifiPub, tp.cellPub
	tp.mu.Unlock()
	for _, a := range []netip.Addr{wifi, cell} {
		must(t, tp.router.Addr("up0r", netip.PrefixFrom(a, 32).String()))
	}
	tp.writeNAT(t, false)
	tp.flushConntrack(t)
}

// publicAddrs returns the current SNAT addresses of the two uplinks.
func (tp *mobTopo) publicAddrs() (wifi, cell netip.Addr) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.wifiPub, tp.cellPub
}

// flushConntrack deletes every conntrack entry in the router.
func (tp *mobTopo) flushConntrack(t *testing.T) {
	t.Helper()
	h, err := netns.GetFromName(tp.router.Name)
	if err != nil {
		t.Fatalf("netns %s: %v", tp.router.Name, err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", tp.router.Name, err)
	}
	defer nh.Close()
	if err := nh.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		t.Fatalf("conntrack flush in %s: %v", tp.router.Name, err)
	}
}

// siteUplink returns the interface and source address the site would use
// to reach the hub now, or "" if it has no route.
func (tp *mobTopo) siteUplink(t *testing.T) (dev string, src netip.Addr) {
	t.Helper()
	out, err := tp.site.Exec("ip", "-j", "route", "get", mobHub.Addr().String())
	if err != nil {
		if strings.Contains(err.Error(), "unreachable") {
			return "", netip.Addr{}
		}
		t.Fatal(err)
	}
	var v []struct {
		Dev     string `json:"dev"`
		PrefSrc string `json:"prefsrc"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v) != 1 {
		t.Fatalf("ip route get: %v in %q", err, out)
	}
	src, _ = netip.ParseAddr(v[0].PrefSrc)
	return v[0].Dev, src
}

// startMobEcho runs a UDP server on addr in ns that answers every
// datagram with the datagram followed by " " and the source address it
// saw, until the test ends.
func startMobEcho(t *testing.T, ns *netlab.NS, addr netip.AddrPort) {
	t.Helper()
	c, err := ns.ListenUDP(addr.String())
	must(t, err)
	labtest.ServeUDP(t, c, func(b []byte, from netip.AddrPort) []byte { return fmt.Appendf(nil, "%s %s", b, from) })
}

// mobClient is an unconnected UDP socket in the site, so the kernel picks
// route and source address per packet, as it does for a fresh path.
type mobClient struct {
	conn *net.UDPConn
	seq  int
}

func newMobClient(t *testing.T, ns *netlab.NS) *mobClient {
	t.Helper()
	c, err := ns.ListenUDP("0.0.0.0:0")
	must(t, err)
	t.Cleanup(func() { c.Close() })
	return &mobClient{conn: c}
}

// errNoEcho is what ask returns when no answer came in time.
var errNoEcho = errors.New("no echo")

// ask sends a numbered datagram to dst every 200 ms until the answer comes
// back or within passes, and returns the source address the server saw
// and the round-trip time of the datagram that was answered.
func (c *mobClient) ask(dst netip.AddrPort, within time.Duration) (netip.AddrPort, time.Duration, error) {
	deadline := time.Now().Add(within)
	buf := make([]byte, 1500)
	sent := map[string]time.Time{}
	for time.Now().Before(deadline) {
		c.seq++
		msg := fmt.Sprintf("q%d", c.seq)
		if _, err := c.conn.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
			// ENETUNREACH while the site has no route: keep trying.
			time.Sleep(200 * time.Millisecond)
			continue
		}
		sent[msg] = time.Now()
		rd := time.Now().Add(200 * time.Millisecond)
		if rd.After(deadline) {
			rd = deadline
		}
		c.conn.SetReadDeadline(rd)
		for {
			n, _, err := c.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			q, src, ok := strings.Cut(string(buf[:n]), " ")
			at, mine := sent[q]
			if !ok || !mine {
				continue
			}
			ap, err := netip.ParseAddrPort(src)
			if err != nil {
				return netip.AddrPort{}, 0, fmt.Errorf("bad echo %q: %w", buf[:n], err)
			}
			// Only the newest question counts: older answers may be late
			// ones from an earlier path.
			if q != msg {
				continue
			}
			return ap, time.Since(at), nil
		}
	}
	return netip.AddrPort{}, 0, errNoEcho
}

func TestMobilityTopology(t *testing.T) {
	const delay = 50 * time.Millisecond
	start := time.Now()
	tp := newMobilityTopo(t, mobOpts{delay: delay})
	startMobEcho(t, tp.hub, mobHub)
	c := newMobClient(t, tp.site)

	ask := func(step string, dst netip.AddrPort) (netip.AddrPort, time.Duration) {
		t.Helper()
		src, rtt, err := c.ask(dst, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: echo from %v: %v", step, dst, err)
		}
		return src, rtt
	}
	wantUplink := func(step string, u mobUplink) {
		t.Helper()
		if dev, src := tp.siteUplink(t); dev != u.siteIf || src != u.site.Addr() {
			t.Fatalf("%s: site routes to the hub via %q from %v, want %s from %v", step, dev, src, u.siteIf, u.site.Addr())
		}
	}

	wantUplink("start", mobWifi)
	first, _ := ask("wifi", mobHub)
	if first.Addr() != mobWifi.public {
		t.Errorf("wifi: hub sees %v, want address %v", first, mobWifi.public)
	}

	for _, how := range []mobDown{mobLinkDown, mobAddrDel} {
		tp.wifiDown(t, how)
		wantUplink(fmt.Sprintf("wifi %v", how), mobCell)
		if got, _ := ask("cell", mobHub); got.Addr() != mobCell.public {
			t.Errorf("wifi %v: hub sees %v, want address %v", how, got, mobCell.public)
		}
		tp.wifiUp(t)
		wantUplink(fmt.Sprintf("wifi back after %v", how), mobWifi)
		// The NAT still has the first mapping: same address and port.
		if got, _ := ask("wifi again", mobHub); got != first {
			t.Errorf("wifi back after %v: hub sees %v, want %v as before", how, got, first)
		}
	}

	tp.cellDown(t, mobLinkDown)
	wantUplink("cell down", mobWifi)
	tp.wifiDown(t, mobAddrDel)
	if dev, src := tp.siteUplink(t); dev != "" {
		t.Errorf("both down: site routes to the hub via %q from %v, want no route", dev, src)
	}
	if got, _, err := c.ask(mobHub, 300*time.Millisecond); err == nil {
		t.Errorf("both down: hub answered, saw %v; want no echo", got)
	}
	tp.cellUp(t)
	wantUplink("cell up", mobCell)
	tp.wifiUp(t)
	wantUplink("both up", mobWifi)

	tp.rebindPort(t)
	rebound, _ := ask("rebindPort", mobHub)
	if rebound.Addr() != first.Addr() || rebound.Port() == first.Port() {
		t.Errorf("rebindPort: hub sees %v, want %v with a new port", rebound, first.Addr())
	}

	tp.rebindAddress(t)
	wifiPub, _ := tp.publicAddrs()
	if got, _ := ask("rebindAddress", mobHub); got.Addr() != wifiPub || wifiPub == mobWifi.public {
		t.Errorf("rebindAddress: hub sees %v, want the new address %v", got, wifiPub)
	}

	tp.blackhole(t, 800*time.Millisecond)
	if got, _, err := c.ask(mobHub, 400*time.Millisecond); err == nil {
		t.Errorf("blackhole: hub answered, saw %v; want no echo", got)
	}
	ask("after blackhole", mobHub) // retries until the blackhole ends

	// Through the relay: the hub still sees the uplink's public address,
	// and every round trip pays the delay twice.
	var rtts []time.Duration
	for range 3 {
		got, rtt := ask("relay", tp.dialAddr())
		if got.Addr() != wifiPub {
			t.Errorf("relay: hub sees %v, want address %v", got, wifiPub)
		}
		rtts = append(rtts, rtt)
	}
	if lo, hi := 2*delay, 2*delay+time.Second; min(rtts[0], rtts[1], rtts[2]) < lo || max(rtts[0], rtts[1], rtts[2]) > hi {
		t.Errorf("relay RTTs %v, want all in [%v, %v]", rtts, lo, hi)
	}
	tp.wifiDown(t, mobLinkDown)
	_, cellPub := tp.publicAddrs()
	if got, _ := ask("relay over cell", tp.dialAddr()); got.Addr() != cellPub {
		t.Errorf("relay over cell: hub sees %v, want address %v", got, cellPub)
	}
	// The relay counts an answer after its write returned, which can be
	// after the client read it.
	if !labtest.Eventually(5*time.Second, func() bool { st := tp.relay.Stats(); return st.Clients == 2 && st.ToClient.Forwarded >= 4 }) {
		t.Errorf("relay stats %+v, want 2 clients (wifi, cell) and at least 4 answers", tp.relay.Stats())
	}
	t.Logf("mobility lab checks took %v", time.Since(start).Round(time.Millisecond))
}
