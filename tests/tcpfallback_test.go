// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// The TCP fallback lab (issue 12): a site reaches the hub through a
// router whose nft forward chain can drop every UDP packet, silently (no
// ICMP), as hotel Wi-Fi and corporate networks do.
//
//	site (fbsite)                router (fbrtr, nft inet tcpfb)               hub (fbhub)
//	up0 198.51.100.2/24 ─── s0r 198.51.100.1/24
//	                              h0r 203.0.113.1/24 ─── up0 203.0.113.2/24
//	gw0 198.19.0.2/24                                     gw0 198.19.0.1/24
//	                                                     listen 0.0.0.0:4433 (UDP)
//	                                                     listen_tcp 0.0.0.0:443
//
// The site dials 203.0.113.2:4433 over UDP and has endpoint_tcp
// 203.0.113.2:443. It runs with GODWIT_DEBUG_REDIAL_MAX=1s (a test hook of
// cmd/godwit: the UDP dial loops retry at least every second, each attempt
// with a 2 s handshake timeout), so that the return to UDP after an
// unblock takes seconds, not the production backoff's up to 15 s.

var (
	fbHub     = netip.MustParseAddr("203.0.113.2")
	fbHubTun  = netip.MustParseAddr("198.19.0.1")
	fbSiteTun = netip.MustParseAddr("198.19.0.2")
)

const fbTCPPort = 443

// fbRuleset is the router's table; block adds the drop rule to gate.
const fbRuleset = `table inet tcpfb {
	chain gate {
		type filter hook forward priority 0; policy accept;
	}
}
`

// fbLab is the lab drawn above.
type fbLab struct {
	lab               *netlab.Lab
	site, router, hub *netlab.NS
	siteK, hubK       key
	nftFile           string
	hubConf, siteConf nodeConf
	hubD, siteD       *labtest.Daemon
}

// newFallbackLab builds the namespaces, the router's table and both
// configs; no daemon runs yet.
func newFallbackLab(t *testing.T) *fbLab {
	t.Helper()
	l := labtest.NewLab(t, "gwt")
	needNft(t, "the TCP fallback lab")
	fl := &fbLab{lab: l, nftFile: filepath.Join(l.Dir, "tcpfb.nft")}
	var err error
	fl.site, err = l.NS("fbsite")
	must(t, err)
	fl.router, err = l.NS("fbrtr")
	must(t, err)
	fl.hub, err = l.NS("fbhub")
	must(t, err)
	must(t, l.Link(fl.site, "up0", fl.router, "s0r"))
	must(t, l.Link(fl.router, "h0r", fl.hub, "up0"))
	must(t, fl.site.Addr("up0", "198.51.100.2/24"))
	must(t, fl.router.Addr("s0r", "198.51.100.1/24"))
	must(t, fl.router.Addr("h0r", "203.0.113.1/24"))
	must(t, fl.hub.Addr("up0", netip.PrefixFrom(fbHub, 24).String()))
	must(t, fl.router.Sysctl("net.ipv4.ip_forward", "1"))
	_, err = fl.site.Exec("ip", "route", "add", "default", "via", "198.51.100.1")
	must(t, err)
	_, err = fl.hub.Exec("ip", "route", "add", "198.51.100.0/24", "via", "203.0.113.1")
	must(t, err)
	loadNft(t, fl.router, fl.nftFile, fbRuleset)

	fl.hubK, fl.siteK = genKey(t, l, "fbhub"), genKey(t, l, "fbsite")
	fl.hubConf = nodeConf{name: "fbhub", key: fl.hubK, addrs: []string{"198.19.0.1/24"}, listen: "0.0.0.0:4433",
		extra: []string{fmt.Sprintf("listen_tcp = \"0.0.0.0:%d\"", fbTCPPort)},
		peers: []peerConf{{name: "site", pub: fl.siteK.pub, allowed: prefixes(fbSiteTun)}}}
	fl.siteConf = nodeConf{name: "fbsite", key: fl.siteK, addrs: []string{"198.19.0.2/24"}, extra: []string{`ready_wait = "0s"`},
		peers: []peerConf{{name: "hub", pub: fl.hubK.pub, allowed: prefixes(fbHubTun),
			endpoint: netip.AddrPortFrom(fbHub, port).String(),
			extra:    []string{fmt.Sprintf("endpoint_tcp = %q", netip.AddrPortFrom(fbHub, fbTCPPort))}}}}
	return fl
}

// block makes the router drop every forwarded UDP packet (on), or none.
func (fl *fbLab) block(t *testing.T, on bool) {
	t.Helper()
	rules := "flush chain inet tcpfb gate\n"
	if on {
		rules += "add rule inet tcpfb gate meta l4proto udp counter drop\n"
	}
	loadNft(t, fl.router, fl.nftFile, rules)
}

// startOnTCP blocks UDP, starts the hub and the site, waits until the
// site's TCP path carries, and starts a 50 Hz inner ping to the hub that
// has been answered once.
func (fl *fbLab) startOnTCP(t *testing.T) *netlab.Pinger {
	t.Helper()
	fl.block(t, true)
	fl.startHub(t)
	fl.startSite(t)
	fl.waitFallback(t, 20*time.Second, "TCP path carrying", onTCP)
	ping, err := fl.site.StartPinger(fbHubTun, 20*time.Millisecond, 2*time.Minute)
	must(t, err)
	t.Cleanup(ping.Stop)
	if _, err := ping.ReplyAfter(t.Context(), time.Now(), 5*time.Second); err != nil {
		t.Fatalf("no ping over the TCP path: %v", err)
	}
	return ping
}

// startHub and startSite run the daemons.
func (fl *fbLab) startHub(t *testing.T) {
	t.Helper()
	fl.hubD = startNode(t, fl.lab, fl.hub, fl.hubConf)
	fl.hubD.WaitLog(t, 10*time.Second, "listening on TCP")
}

func (fl *fbLab) startSite(t *testing.T) {
	t.Helper()
	fl.siteD = startNode(t, fl.lab, fl.site, fl.siteConf, "GODWIT_DEBUG_REDIAL_MAX=1s")
	fl.siteD.WaitLog(t, 10*time.Second, "godwit running") // its control socket is up
}

// waitFallback polls the site's view of the hub until ok, failing after
// within with the last view.
func (fl *fbLab) waitFallback(t *testing.T, within time.Duration, what string, ok func(*ctl.PeerStatus) bool) *ctl.PeerStatus {
	t.Helper()
	var p *ctl.PeerStatus
	if !labtest.Eventually(within, func() bool { p = fl.siteD.Peer(t, "hub"); return ok(p) }) {
		t.Fatalf("site: no %s within %v; last: %s", what, within, fbString(p))
	}
	return p
}

// onTCP holds when the site's fallback is on TCP and a TCP path of the
// set ("tcp" or "tcp via proxy") carries the traffic.
func onTCP(p *ctl.PeerStatus) bool {
	return p.Fallback != nil && p.Fallback.OnTCP && strings.HasPrefix(carrying(p), "tcp")
}

// onUDP holds when the site's fallback is back on UDP, only UDP paths are
// left, and one of them carries.
func onUDP(p *ctl.PeerStatus) bool {
	if p.Fallback == nil || p.Fallback.OnTCP || carrying(p) != "udp" {
		return false
	}
	for _, pa := range p.Paths {
		if pa.Transport != "udp" {
			return false
		}
	}
	return true
}

// carrying is the transport of the path that carries the peer's traffic,
// or "".
func carrying(p *ctl.PeerStatus) string {
	for _, pa := range p.Paths {
		if pa.Multipath != nil && pa.Multipath.Role == roleCarrying {
			return pa.Transport
		}
	}
	return ""
}

// fbString shows a peer's fallback and paths for failure messages.
func fbString(p *ctl.PeerStatus) string {
	if p == nil {
		return "no status"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state %s", p.State)
	if f := p.Fallback; f != nil {
		fmt.Fprintf(&b, "; fallback on_tcp=%v %q (%d fallbacks, %d returns)", f.OnTCP, f.Reason, f.Fallbacks, f.Returns)
	}
	for _, pa := range p.Paths {
		role := ""
		if pa.Multipath != nil {
			role = pa.Multipath.Role + "/" + pa.Multipath.Health
		}
		fmt.Fprintf(&b, "; %s %s->%s %s", pa.Transport, pa.Local, pa.Remote, role)
	}
	return b.String()
}

// TestTCPFallbackBlockedFromStart: the site starts behind a router that
// drops all UDP. Its first inner ping is answered over the TCP path
// (target 2 s after the start, asserted < 10 s), `godwit show` says why;
// when UDP is let through again the site moves back to UDP (target 60 s
// with the production backoff; asserted < 30 s with the test hook's 1 s)
// without losing the 50 Hz ping for more than a second (target 2 RTT),
// and closes the TCP path.
func TestTCPFallbackBlockedFromStart(t *testing.T) {
	t.Parallel()
	fl := newFallbackLab(t)
	fl.block(t, true)
	fl.startHub(t)

	ping, err := fl.site.StartPinger(fbHubTun, 20*time.Millisecond, 2*time.Minute)
	must(t, err)
	t.Cleanup(ping.Stop)
	start := time.Now()
	fl.startSite(t)
	first, err := ping.ReplyAfter(t.Context(), start, 20*time.Second)
	if err != nil {
		t.Fatalf("no inner ping reply within 20 s of the site's start with UDP blocked: %v", err)
	}
	firstAfter := first.Sub(start)
	t.Logf("UDP blocked from the start: first inner ping answered %v after the site started", firstAfter.Round(time.Millisecond))
	if firstAfter >= 10*time.Second {
		t.Errorf("first inner ping answered %v after the start, want < 10 s (target 2 s)", firstAfter.Round(time.Millisecond))
	}
	p := fl.waitFallback(t, 5*time.Second, "TCP path carrying", onTCP)
	if want := "udp blocked: no answer in 1s; tcp"; p.Fallback.Reason != want || p.Fallback.Fallbacks != 1 {
		t.Errorf("fallback = %+v, want reason %q and 1 fallback", p.Fallback, want)
	}
	fl.siteD.WaitLog(t, time.Second, "udp blocked: no answer in 1s; tcp", "peer=hub")
	fl.hubD.WaitLog(t, 5*time.Second, "peer connected", "peer=site", "transport=tcp")
	if out := show(t, fl.siteD); !strings.Contains(out, " over tcp (carrying") || !strings.Contains(out, "transport: tcp (udp blocked: no answer in 1s; tcp") {
		t.Errorf("godwit show does not say the site is on TCP, and why:\n%s", out)
	}

	time.Sleep(3 * time.Second) // UDP redials with 0-RTT meanwhile, unanswered
	// They are no connections to log as such: one line per change.
	if l := fl.siteD.LogLines("peer connected", "transport=udp"); len(l) > 0 {
		t.Errorf("while UDP is blocked the site logged UDP connections:\n%s", strings.Join(l, "\n"))
	}
	unblocked := time.Now()
	fl.block(t, false)
	p = fl.waitFallback(t, 30*time.Second, "return to UDP", onUDP)
	fl.siteD.WaitLog(t, time.Second, "peer connected", "transport=udp")
	back := time.Since(unblocked)
	time.Sleep(time.Second)
	gap, lost, sent := ping.Outage(unblocked, time.Now())
	t.Logf("UDP unblocked: back on UDP after %v (%s); longest ping gap %v, %d of %d pings lost",
		back.Round(time.Millisecond), fbString(p), gap.Round(time.Millisecond), lost, sent)
	if !strings.HasPrefix(p.Fallback.Reason, "udp back: usable for 3s; tcp closed") || p.Fallback.Returns != 1 {
		t.Errorf("fallback after the return = %+v, want reason \"udp back: ...\" and 1 return", p.Fallback)
	}
	if gap >= time.Second {
		t.Errorf("longest gap in the 50 Hz ping replies while moving back to UDP: %v, want < 1 s (target 2 RTT)", gap.Round(time.Millisecond))
	}
	st := fl.siteD.Status(t)
	if c := st.Interface.Connections; c.TCPFallbacks != 1 || c.UDPReturns != 1 {
		t.Errorf("connection events: %d tcp fallbacks, %d udp returns; want 1 and 1", c.TCPFallbacks, c.UDPReturns)
	}
	fl.hubD.WaitLog(t, 5*time.Second, "peer disconnected", "peer=site", "transport=tcp")
}

// TestTCPFallbackMidRun: UDP is dropped silently while a 50 Hz inner ping
// runs over it. The path health monitor finds the UDP path silent, the
// site dials the TCP path, and the pings flow again (target 1 s after the
// block; asserted < 5 s). Unblocked, the site moves back to UDP.
func TestTCPFallbackMidRun(t *testing.T) {
	t.Parallel()
	fl := newFallbackLab(t)
	fl.startHub(t)
	fl.startSite(t)
	fl.waitFallback(t, labtest.ConnectWithin, "UDP path carrying", func(p *ctl.PeerStatus) bool {
		return carrying(p) == "udp"
	})
	ping, err := fl.site.StartPinger(fbHubTun, 20*time.Millisecond, 2*time.Minute)
	must(t, err)
	t.Cleanup(ping.Stop)
	time.Sleep(2 * time.Second) // past the fallback's first wait: it has seen UDP work
	if p := fl.siteD.Peer(t, "hub"); p.Fallback == nil || p.Fallback.OnTCP || len(p.Paths) != 1 {
		t.Fatalf("before the block: %s, want one UDP path and no fallback", fbString(p))
	}

	blocked := time.Now()
	fl.block(t, true)
	p := fl.waitFallback(t, 10*time.Second, "TCP path carrying", onTCP)
	noticed := time.Since(blocked)
	again, err := ping.ReplyAfter(t.Context(), blocked.Add(200*time.Millisecond), 10*time.Second)
	if err != nil {
		t.Fatalf("no inner ping reply after UDP was blocked: %v (%s)", err, fbString(p))
	}
	time.Sleep(time.Second)
	gap, lost, sent := ping.Outage(blocked, time.Now())
	t.Logf("UDP blocked mid-run: show says TCP carries after %v; first ping reply after the block at %v; longest gap %v, %d of %d pings lost",
		noticed.Round(time.Millisecond), again.Sub(blocked).Round(time.Millisecond), gap.Round(time.Millisecond), lost, sent)
	if !strings.HasPrefix(p.Fallback.Reason, "udp down: ") {
		t.Errorf("fallback reason %q, want \"udp down: ...\"", p.Fallback.Reason)
	}
	if gap >= 5*time.Second {
		t.Errorf("longest gap in the 50 Hz ping replies after UDP was blocked: %v, want < 5 s (target 1 s)", gap.Round(time.Millisecond))
	}

	unblocked := time.Now()
	fl.block(t, false)
	fl.waitFallback(t, 30*time.Second, "return to UDP", onUDP)
	back := time.Since(unblocked)
	time.Sleep(time.Second)
	gap, lost, sent = ping.Outage(unblocked, time.Now())
	t.Logf("UDP unblocked: back on UDP after %v; longest ping gap %v, %d of %d pings lost",
		back.Round(time.Millisecond), gap.Round(time.Millisecond), lost, sent)
	if gap >= time.Second {
		t.Errorf("longest gap in the 50 Hz ping replies while moving back to UDP: %v, want < 1 s", gap.Round(time.Millisecond))
	}
}

// TestTCPFallbackUnknownKeyRefused: a site whose key the hub does not
// list reaches the hub only over TCP (UDP blocked) and is refused during
// the outer TLS handshake: the hub logs the refusal, the site logs that
// the hub refused its key, and no connection comes up.
func TestTCPFallbackUnknownKeyRefused(t *testing.T) {
	t.Parallel()
	fl := newFallbackLab(t)
	other := genKey(t, fl.lab, "other")
	fl.hubConf.peers[0].pub = other.pub // the hub expects another key
	fl.block(t, true)
	fl.startHub(t)
	fl.startSite(t)
	fl.siteD.WaitLog(t, 10*time.Second, "udp blocked: no answer in 1s; tcp")
	fl.hubD.WaitLog(t, 10*time.Second, "refused a peer whose key is not configured")
	fl.siteD.WaitLog(t, 10*time.Second, "hub refused this node's key")
	if p := fl.siteD.Peer(t, "hub"); p.State == ctl.StateConnected {
		t.Errorf("site connected with an unknown key: %s", fbString(p))
	}
	if strings.Contains(fl.hubD.Output(), "peer connected") {
		t.Errorf("the hub logged a connection from an unknown key:\n%s", fl.hubD.Output())
	}
}

// TestListenTCPInUse: a hub whose listen_tcp port is taken exits at start
// with an error naming listen_tcp and the address, and leaves no TUN
// behind.
func TestListenTCPInUse(t *testing.T) {
	t.Parallel()
	fl := newFallbackLab(t)
	ln, err := fl.hub.ListenTCP(fmt.Sprintf("0.0.0.0:%d", fbTCPPort))
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	d := startNode(t, fl.lab, fl.hub, fl.hubConf)
	code, err := d.Wait(10 * time.Second)
	if err != nil || code == 0 {
		t.Fatalf("hub with its listen_tcp port taken: exit %d, %v; want a failure", code, err)
	}
	if want := fmt.Sprintf("listen_tcp 0.0.0.0:%d", fbTCPPort); !strings.Contains(d.Output(), want) || !strings.Contains(d.Output(), "address already in use") {
		t.Errorf("hub output does not name %q and the cause:\n%s", want, d.Output())
	}
	for _, line := range d.LogLines("listen_tcp 0.0.0.0") {
		t.Logf("exit %d: %s", code, line)
	}
	if linkExists(t, fl.hub, tunName) {
		t.Errorf("the failed hub left %s behind", tunName)
	}
}

// TestTCPFallbackReset: with UDP blocked and the site on its TCP path, the
// router resets the TCP connection in the middle (an RST to each end, as
// a middlebox that kills idle or long flows does). The connection ends at
// once on both ends, the site dials its TCP path again, and the 50 Hz
// ping flows again (asserted < 10 s; the dial takes a round trip or two
// once the resets stop).
func TestTCPFallbackReset(t *testing.T) {
	t.Parallel()
	fl := newFallbackLab(t)
	ping := fl.startOnTCP(t)

	reset := time.Now()
	loadNft(t, fl.router, fl.nftFile, fmt.Sprintf(`add rule inet tcpfb gate tcp dport %d counter reject with tcp reset
add rule inet tcpfb gate tcp sport %d counter reject with tcp reset
`, fbTCPPort, fbTCPPort))
	fl.siteD.WaitLog(t, 5*time.Second, "peer disconnected", "peer=hub", "transport=tcp")
	fl.hubD.WaitLog(t, 5*time.Second, "peer disconnected", "peer=site", "transport=tcp")
	fl.block(t, true) // UDP still blocked, TCP let through again
	resumed := time.Now()
	again, err := ping.ReplyAfter(t.Context(), resumed, 10*time.Second)
	if err != nil {
		t.Fatalf("no ping reply within 10 s after the resets stopped: %v (%s)", err, fbString(fl.siteD.Peer(t, "hub")))
	}
	p := fl.waitFallback(t, 5*time.Second, "TCP path carrying again", onTCP)
	time.Sleep(time.Second)
	gap, lost, sent := ping.Outage(reset, time.Now())
	t.Logf("TCP reset mid-run: both ends saw it within %v; pings again %v after the resets stopped; longest gap %v, %d of %d lost (%s)",
		resumed.Sub(reset).Round(time.Millisecond), again.Sub(resumed).Round(time.Millisecond), gap.Round(time.Millisecond), lost, sent, fbString(p))
	if n := len(fl.hubD.LogLines("peer connected", "peer=site", "transport=tcp")); n != 2 {
		t.Errorf("hub logged %d TCP connections of the site, want 2 (before and after the reset)", n)
	}
}
