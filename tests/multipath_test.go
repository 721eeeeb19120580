// SPDX-License-Identifier: MIT

package tests

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// The multipath system tests run the mobility lab (mobility_topo_test.go)
// with a site whose [[peer]] sets multipath: it keeps one QUIC connection
// per usable uplink to the hub. The Wi-Fi uplink then fails under traffic,
// silently (the router drops everything from and to it while the link
// stays up with its address, so only the tunnel's health monitor can tell)
// or by losing its carrier, and the tests measure what the tunnel lost.
// They run in parallel with each other and with the mobility tests; each
// builds its own lab.
//
// The router gets one more table, inet mplab: counters of the bytes each
// uplink carries up (iifname wifi0r, cell0r) and down (to the uplink's
// public address on up0r), taken before anything drops them, and the
// chain that silences wifi0.

// The roles of a multipath connection in `godwit show`.
const (
	roleCarrying = "carrying"
	roleWarm     = "warm"
	roleDown     = "down"
)

// mpPort is where the duplicate-rule test's UDP flow goes.
const mpPort = 5004

// mpRuleset is table inet mplab, loaded in the router. The counters run
// at priority -400, before the silence chain (-300) and the mobility
// lab's blackhole, so they count what the site and the hub send.
var mpRuleset = fmt.Sprintf(`table inet mplab {
	counter wifi_up {}
	counter cell_up {}
	counter wifi_down {}
	counter cell_down {}
	chain count {
		type filter hook prerouting priority -400; policy accept;
		iifname %[1]q counter name "wifi_up"
		iifname %[2]q counter name "cell_up"
		iifname "up0r" ip daddr %[3]s counter name "wifi_down"
		iifname "up0r" ip daddr %[4]s counter name "cell_down"
	}
	chain silent {
		type filter hook prerouting priority -300; policy accept;
	}
}
`, mobWifi.routerIf, mobCell.routerIf, mobWifi.public, mobCell.public)

// mpLab is the mobility lab with a multipath site and both daemons
// running and connected.
type mpLab struct {
	*mobLab
	nftFile string // where the silence rules are written
}

// startMPLab builds the mobility lab with table inet mplab in the router,
// and starts the hub and a site whose [[peer]] has the extra lines peer.
func startMPLab(t *testing.T, peer ...string) *mpLab {
	t.Helper()
	tp := newMobilityTopo(t, mobOpts{})
	hub, site := mobConfs(t, tp)
	site.peers[0].extra = peer
	ml := &mpLab{mobLab: &mobLab{mobTopo: tp}, nftFile: filepath.Join(tp.lab.Dir, "multipath.nft")}
	loadNft(t, tp.router, ml.nftFile, mpRuleset)
	ml.hubD = startNode(t, tp.lab, tp.hub, hub)
	ml.siteD = startNode(t, tp.lab, tp.site, site)
	ml.siteD.WaitConnected(t, "hub")
	ml.hubD.WaitConnected(t, "site")
	return ml
}

// silence makes the router drop everything from the site's Wi-Fi uplink
// and everything to its public address (on), or nothing (off). The link
// stays up with its address and routes, so the site's uplink watcher sees
// no change. The drops come before conntrack, which therefore keeps the
// NAT mapping: the path works again as it was once the silence ends.
func (ml *mpLab) silence(t *testing.T, on bool) {
	t.Helper()
	rules := "flush chain inet mplab silent\n"
	if on {
		rules += fmt.Sprintf("add rule inet mplab silent iifname %q counter drop\n", mobWifi.routerIf)
		rules += fmt.Sprintf("add rule inet mplab silent iifname \"up0r\" ip daddr %s counter drop\n", mobWifi.public)
	}
	loadNft(t, ml.router, ml.nftFile, rules)
}

// uplinkBytes are the router's byte counts per uplink and direction.
type uplinkBytes struct {
	wifiUp, cellUp, wifiDown, cellDown uint64
}

func (u uplinkBytes) sub(o uplinkBytes) uplinkBytes {
	return uplinkBytes{u.wifiUp - o.wifiUp, u.cellUp - o.cellUp, u.wifiDown - o.wifiDown, u.cellDown - o.cellDown}
}

func (u uplinkBytes) String() string {
	return fmt.Sprintf("wifi0 %d B up, %d B down; cell0 %d B up, %d B down", u.wifiUp, u.wifiDown, u.cellUp, u.cellDown)
}

// counted reads the router's uplink byte counters.
func (ml *mpLab) counted(t *testing.T) uplinkBytes {
	t.Helper()
	var u uplinkBytes
	for _, c := range []struct {
		name string
		v    *uint64
	}{{"wifi_up", &u.wifiUp}, {"cell_up", &u.cellUp}, {"wifi_down", &u.wifiDown}, {"cell_down", &u.cellDown}} {
		_, *c.v = nftCounterIn(t, ml.router, "mplab", c.name)
	}
	return u
}

// waitMP polls the site's view of the hub until ok, and fails after
// within, showing the last view.
func (ml *mpLab) waitMP(t *testing.T, within time.Duration, what string, ok func(*ctl.PeerStatus) bool) *ctl.PeerStatus {
	t.Helper()
	var p *ctl.PeerStatus
	if !labtest.Eventually(within, func() bool { p = ml.siteD.Peer(t, "hub"); return ok(p) }) {
		t.Fatalf("site: no %s within %v; last: %s", what, within, mpString(p))
	}
	return p
}

// roles returns a predicate that holds when wifi0's and cell0's best
// roles are wifi and cell.
func roles(wifi, cell string) func(*ctl.PeerStatus) bool {
	return func(p *ctl.PeerStatus) bool {
		return p.Multipath != "" && mpRole(p, mobWifi.siteIf) == wifi && mpRole(p, mobCell.siteIf) == cell
	}
}

// startMPPinger pings the hub's tunnel address from the site at 50 Hz
// until the test ends (3 minutes at most) or Stop.
func startMPPinger(t *testing.T, ml *mpLab) *netlab.Pinger {
	t.Helper()
	p, err := ml.site.StartPinger(mobHubTun, 20*time.Millisecond, 3*time.Minute)
	must(t, err)
	t.Cleanup(p.Stop)
	return p
}

// TestMultipathSilentFailover: the Wi-Fi uplink of a failover site goes
// silent under a 50 Hz ping and a TCP stream. The tunnel moves the traffic
// to the warm cell0 connection within a few round trips (target 300 ms of
// silence; asserted under 1 s), the TCP stream survives, and when Wi-Fi
// answers again the traffic returns to it within 10 s.
func TestMultipathSilentFailover(t *testing.T) {
	t.Parallel()
	ml := startMPLab(t, `multipath = "failover"`)
	ml.waitMP(t, 10*time.Second, "wifi0 carrying and cell0 warm", roles(roleCarrying, roleWarm))
	st := startStream(t, ml.mobLab)
	ping := startMPPinger(t, ml)
	time.Sleep(time.Second)

	from := time.Now()
	ml.silence(t, true)
	p := ml.waitMP(t, 10*time.Second, "cell0 carrying instead of the silent wifi0", func(p *ctl.PeerStatus) bool {
		return mpRole(p, mobCell.siteIf) == roleCarrying && mpRole(p, mobWifi.siteIf) != roleCarrying
	})
	noticed := time.Since(from)
	time.Sleep(2 * time.Second) // traffic flows on cell0
	gap, lost, sent := ping.Outage(from, time.Now())
	t.Logf("wifi0 silent: show says cell0 carries after %v (%s); longest ping gap %v, %d of %d pings lost",
		noticed.Round(time.Millisecond), mpString(p), gap.Round(time.Millisecond), lost, sent)
	if gap >= time.Second {
		t.Errorf("longest gap in the 50 Hz ping replies %v after wifi0 went silent, want < 1 s (target 300 ms)", gap.Round(time.Millisecond))
	}
	// What `godwit show --json` prints, not only the control socket.
	var shown ctl.Status
	if err := json.Unmarshal([]byte(show(t, ml.siteD, "--json")), &shown); err != nil {
		t.Fatalf("godwit show --json: %v", err)
	}
	if sp := labtest.PeerOf(t, &shown, "hub"); mpRole(sp, mobWifi.siteIf) == roleCarrying || mpRole(sp, mobCell.siteIf) != roleCarrying {
		t.Errorf("godwit show --json during the silence: %s, want wifi0 not carrying and cell0 carrying", mpString(sp))
	}
	// The silence outlasts the silent connection (its heartbeat timeout,
	// about 8 s): the redial on wifi0 must not take the traffic back into
	// the silence before its handshake proves the path.
	time.Sleep(time.Until(from.Add(11 * time.Second)))
	if gap2, lost2, sent2 := ping.Outage(from.Add(2*time.Second), time.Now()); gap2 >= 300*time.Millisecond || lost2 > 5 {
		t.Errorf("2-11 s into the silence: longest ping gap %v, %d of %d pings lost; want the traffic to stay on cell0 (%s)",
			gap2.Round(time.Millisecond), lost2, sent2, mpString(ml.siteD.Peer(t, "hub")))
	}

	ml.silence(t, false)
	back := time.Now()
	p = ml.waitMP(t, 10*time.Second, "wifi0 carrying again", func(p *ctl.PeerStatus) bool { return mpRole(p, mobWifi.siteIf) == roleCarrying })
	t.Logf("wifi0 answers again: carrying after %v (%s)", time.Since(back).Round(time.Millisecond), mpString(p))
	// The bytes follow the role: over a second, wifi0 carries most of
	// what the site sends up (the stream's 2 MB/s), cell0 little more than
	// its health probes.
	before := ml.counted(t)
	time.Sleep(time.Second)
	d := ml.counted(t).sub(before)
	t.Logf("the second after wifi0 carries again: %v", d)
	if d.wifiUp < 4*d.cellUp {
		t.Errorf("after wifi0 answers again the router counted %v, want most of the site's traffic on wifi0", d)
	}

	lost, sent = ping.Loss(time.Time{}, time.Now().Add(-500*time.Millisecond))
	ping.Stop()
	st.finish(t)
	t.Logf("whole test: %d of %d pings lost; TCP stream carried %d bytes", lost, sent, st.sent.Load())
}

// TestMultipathSilentRedundant: a redundant site sends every packet on
// both connections, and the hub discards the second copies. The Wi-Fi
// uplink goes silent under a 50 Hz ping and a TCP stream and comes back:
// the ping loses (almost) nothing (target 0; asserted at most 5) and the
// stream survives.
func TestMultipathSilentRedundant(t *testing.T) {
	t.Parallel()
	ml := startMPLab(t, `multipath = "redundant"`)
	ml.waitMP(t, 10*time.Second, "wifi0 and cell0 both carrying", roles(roleCarrying, roleCarrying))
	st := startStream(t, ml.mobLab)
	ping := startMPPinger(t, ml)
	start := time.Now()

	var hub *ctl.PeerStatus
	if !labtest.Eventually(5*time.Second, func() bool { hub = ml.hubD.Peer(t, "site"); return mpDupDiscarded(hub) > 0 }) {
		t.Errorf("hub: no duplicates discarded within 5 s of redundant traffic: %s", mpString(hub))
	}
	site := ml.siteD.Peer(t, "hub")
	t.Logf("before the failure: site %s; hub %s", mpString(site), mpString(hub))

	from := time.Now()
	ml.silence(t, true)
	p := ml.waitMP(t, 10*time.Second, "the silent wifi0 no longer carrying", func(p *ctl.PeerStatus) bool {
		return mpRole(p, mobCell.siteIf) == roleCarrying && mpRole(p, mobWifi.siteIf) != roleCarrying
	})
	t.Logf("wifi0 silent: show says it stopped carrying after %v (%s)", time.Since(from).Round(time.Millisecond), mpString(p))
	time.Sleep(2 * time.Second)
	gap, lost, sent := ping.Outage(from, time.Now())
	t.Logf("during the silence: longest ping gap %v, %d of %d pings lost", gap.Round(time.Millisecond), lost, sent)

	ml.silence(t, false)
	back := time.Now()
	p = ml.waitMP(t, 10*time.Second, "wifi0 carrying again", roles(roleCarrying, roleCarrying))
	t.Logf("wifi0 answers again: both carrying after %v (%s)", time.Since(back).Round(time.Millisecond), mpString(p))
	time.Sleep(time.Second)
	lost, sent = ping.Loss(start, time.Now().Add(-500*time.Millisecond))
	ping.Stop()
	st.finish(t)
	t.Logf("whole test: %d of %d pings lost (target 0); TCP stream carried %d bytes; hub %s",
		lost, sent, st.sent.Load(), mpString(ml.hubD.Peer(t, "site")))
	if sent == 0 || lost > 5 {
		t.Errorf("ping: %d of %d lost through a silent failure in redundant mode, want at most 5", lost, sent)
	}
}

// TestMultipathSilentAggregate: the Wi-Fi uplink of an aggregate site
// goes silent under a 50 Hz ping and a TCP stream. Its flows move to cell0
// as in failover (target 300 ms of silence; asserted under 1 s), the
// stream survives, and wifi0 carries again once it answers.
func TestMultipathSilentAggregate(t *testing.T) {
	t.Parallel()
	ml := startMPLab(t, `multipath = "aggregate"`)
	ml.waitMP(t, 10*time.Second, "wifi0 and cell0 both carrying", roles(roleCarrying, roleCarrying))
	st := startStream(t, ml.mobLab)
	ping := startMPPinger(t, ml)
	time.Sleep(time.Second)

	from := time.Now()
	ml.silence(t, true)
	p := ml.waitMP(t, 10*time.Second, "the silent wifi0 no longer carrying", func(p *ctl.PeerStatus) bool {
		return mpRole(p, mobCell.siteIf) == roleCarrying && mpRole(p, mobWifi.siteIf) != roleCarrying
	})
	noticed := time.Since(from)
	time.Sleep(2 * time.Second)
	gap, lost, sent := ping.Outage(from, time.Now())
	t.Logf("wifi0 silent: show says it stopped carrying after %v (%s); longest ping gap %v, %d of %d pings lost",
		noticed.Round(time.Millisecond), mpString(p), gap.Round(time.Millisecond), lost, sent)
	if gap >= time.Second {
		t.Errorf("longest gap in the 50 Hz ping replies %v after wifi0 went silent, want < 1 s (target 300 ms)", gap.Round(time.Millisecond))
	}

	ml.silence(t, false)
	back := time.Now()
	p = ml.waitMP(t, 10*time.Second, "wifi0 carrying again", roles(roleCarrying, roleCarrying))
	t.Logf("wifi0 answers again: both carrying after %v (%s)", time.Since(back).Round(time.Millisecond), mpString(p))
	ping.Stop()
	st.finish(t)
}

// TestMultipathDuplicateRule: a failover site duplicates the UDP flow to
// port 5004 (duplicate = ["udp:5004"]) and nothing else. A 50 pps flow
// to that port loses at most 2 datagrams (target 0) through a silent
// Wi-Fi failure, the hub delivers none of them twice, and a bulk TCP
// stream in the same tunnel is not duplicated: before the failure cell0
// carries a small fraction of the bytes wifi0 carries.
func TestMultipathDuplicateRule(t *testing.T) {
	t.Parallel()
	ml := startMPLab(t, `multipath = "failover"`, fmt.Sprintf(`duplicate = ["udp:%d"]`, mpPort))
	ml.waitMP(t, 10*time.Second, "wifi0 carrying and cell0 warm", roles(roleCarrying, roleWarm))
	flow := startUDPFlow(t, ml.site, ml.hub, netip.AddrPortFrom(mobHubTun, mpPort))
	bulk := startStream(t, ml.mobLab)
	time.Sleep(time.Second)

	// The bulk phase: 3 s of both flows, wifi0 carrying.
	before, siteBefore, flowBefore := ml.counted(t), ml.siteD.Peer(t, "hub"), flow.sentCount()
	time.Sleep(3 * time.Second)
	d, siteAfter, flowSent := ml.counted(t).sub(before), ml.siteD.Peer(t, "hub"), flow.sentCount()-flowBefore
	ratio := float64(d.cellUp) / float64(max(d.wifiUp, 1))
	dups := mpDupSent(siteAfter) - mpDupSent(siteBefore)
	t.Logf("bulk phase: %v; cell0/wifi0 up = %.2f %%; %d extra copies sent for %d datagrams to port %d; site %s",
		d, 100*ratio, dups, flowSent, mpPort, mpString(siteAfter))
	if d.wifiUp < 1<<20 {
		t.Errorf("bulk phase: wifi0 carried %d bytes up in 3 s, want the stream's megabytes", d.wifiUp)
	}
	if ratio > 0.2 {
		t.Errorf("bulk phase: cell0 carried %.1f %% of wifi0's bytes, want at most 20 %%: the bulk stream is duplicated", 100*ratio)
	}
	if dups == 0 {
		t.Errorf("bulk phase: the site sent no extra copies of the %d datagrams to port %d", flowSent, mpPort)
	}
	if dups > 2*uint64(flowSent)+50 {
		t.Errorf("bulk phase: the site sent %d extra copies for %d datagrams to port %d: more than the rule's packets are duplicated", dups, flowSent, mpPort)
	}

	from := time.Now()
	ml.silence(t, true)
	p := ml.waitMP(t, 10*time.Second, "cell0 carrying instead of the silent wifi0", func(p *ctl.PeerStatus) bool {
		return mpRole(p, mobCell.siteIf) == roleCarrying && mpRole(p, mobWifi.siteIf) != roleCarrying
	})
	t.Logf("wifi0 silent: cell0 carries after %v (%s)", time.Since(from).Round(time.Millisecond), mpString(p))
	time.Sleep(2 * time.Second)
	r := flow.end()
	bulk.finish(t)
	t.Logf("UDP flow to port %d: %d sent, %d lost on the way to the hub, %d delivered twice, %d echoes lost; hub %s",
		mpPort, r.sent, r.lost, r.twice, r.echoLost, mpString(ml.hubD.Peer(t, "site")))
	if r.sent == 0 || r.lost > 2 {
		t.Errorf("UDP flow to port %d: %d of %d datagrams lost through a silent failure, want at most 2", mpPort, r.lost, r.sent)
	}
	if r.twice != 0 {
		t.Errorf("UDP flow to port %d: the hub's application got %d datagrams twice, want each once", mpPort, r.twice)
	}
}

// TestMultipathUplinkLost: the Wi-Fi uplink of a site with two uplinks and
// no multipath key (failover by default) loses its carrier under a 50 Hz
// ping. The ping loses at most 10 requests, the site
// keeps one connection, on cell0, and has a second one on wifi0 again
// after Wi-Fi comes back (a redial that resumes its TLS session with
// 0-RTT), again losing at most 10 pings.
func TestMultipathUplinkLost(t *testing.T) {
	t.Parallel()
	ml := startMPLab(t)
	ml.waitMP(t, 10*time.Second, "wifi0 carrying and cell0 warm", roles(roleCarrying, roleWarm))
	ping := startMPPinger(t, ml)
	time.Sleep(time.Second)

	from := time.Now()
	ml.wifiDown(t, mobLinkDown)
	p := ml.waitMP(t, 10*time.Second, "cell0 carrying, no wifi0 connection", func(p *ctl.PeerStatus) bool {
		return mpRole(p, mobCell.siteIf) == roleCarrying && (mpRole(p, mobWifi.siteIf) == "" || mpRole(p, mobWifi.siteIf) == roleDown)
	})
	t.Logf("wifi0 carrier lost: cell0 carries after %v (%s)", time.Since(from).Round(time.Millisecond), mpString(p))
	time.Sleep(2 * time.Second)
	gap, lost, sent := ping.Outage(from, time.Now())
	t.Logf("wifi0 carrier lost: longest ping gap %v, %d of %d pings lost", gap.Round(time.Millisecond), lost, sent)
	if lost > 10 {
		t.Errorf("ping: %d of %d lost when wifi0 lost its carrier, want at most 10", lost, sent)
	}
	p = ml.siteD.Peer(t, "hub")
	if n := mpLive(p); n != 1 || mpRole(p, mobCell.siteIf) != roleCarrying {
		t.Errorf("with wifi0 down the site has %d live connections (%s), want one, on cell0", n, mpString(p))
	}

	ml.wifiUp(t)
	back := time.Now()
	again := labtest.Eventually(15*time.Second, func() bool {
		p = ml.siteD.Peer(t, "hub")
		return p.Multipath != "" && mpLive(p) == 2 && mpRole(p, mobWifi.siteIf) != "" && mpRole(p, mobWifi.siteIf) != roleDown
	})
	took := time.Since(back)
	time.Sleep(2 * time.Second)
	gap, lost, sent = ping.Outage(back, time.Now())
	t.Logf("wifi0 back: two connections again: %v, after %v (%s), hub %s; longest ping gap %v, %d of %d pings lost",
		again, took.Round(time.Millisecond), mpString(p), mpString(ml.hubD.Peer(t, "site")), gap.Round(time.Millisecond), lost, sent)
	if !again {
		t.Errorf("site: no connection on wifi0 next to cell0's within 15 s of wifi0 coming back; last: %s", mpString(p))
	}
	if lost > 10 {
		t.Errorf("ping: %d of %d lost when wifi0 came back, want at most 10: a new connection must not disturb the one carrying", lost, sent)
	}
	lost, sent = ping.Loss(time.Time{}, time.Now().Add(-500*time.Millisecond))
	ping.Stop()
	t.Logf("whole test: %d of %d pings lost", lost, sent)
}

// udpFlow sends numbered datagrams at 50 pps from one namespace to a UDP
// echo server it runs in another, and records which reached the server
// (and how often) and which echoes came back.
type udpFlow struct {
	conn  *net.UDPConn
	stop  chan struct{}
	done  chan struct{} // closed when the sender has returned
	rdone chan struct{} // closed when the reader of echoes has returned

	mu     sync.Mutex // guards the following fields
	sent   uint64
	atDst  map[uint64]int // sequence number -> times the server got it
	echoed map[uint64]bool
}

// udpFlowResult is what a udpFlow measured.
type udpFlowResult struct {
	sent, lost, twice, echoLost int
}

// startUDPFlow starts the echo server on dst in to and the 50 pps flow to
// it from from. The flow stops by itself after 2 minutes.
func startUDPFlow(t *testing.T, from, to *netlab.NS, dst netip.AddrPort) *udpFlow {
	t.Helper()
	f := &udpFlow{stop: make(chan struct{}), done: make(chan struct{}), rdone: make(chan struct{}),
		atDst: make(map[uint64]int), echoed: make(map[uint64]bool)}
	srv, err := to.ListenUDP(dst.String())
	must(t, err)
	labtest.ServeUDP(t, srv, func(b []byte, _ netip.AddrPort) []byte {
		if len(b) != 8 {
			return nil
		}
		f.mu.Lock()
		f.atDst[binary.BigEndian.Uint64(b)]++
		f.mu.Unlock()
		return b
	})
	f.conn, err = from.DialUDP(dst.String())
	must(t, err)
	t.Cleanup(func() { f.end() })
	go func() {
		defer close(f.rdone)
		buf := make([]byte, 64)
		for {
			n, err := f.conn.Read(buf)
			if err != nil {
				return
			}
			if n == 8 {
				f.mu.Lock()
				f.echoed[binary.BigEndian.Uint64(buf)] = true
				f.mu.Unlock()
			}
		}
	}()
	go func() {
		defer close(f.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		end := time.Now().Add(2 * time.Minute)
		b := make([]byte, 8)
		for seq := uint64(0); time.Now().Before(end); seq++ {
			binary.BigEndian.PutUint64(b, seq)
			_, _ = f.conn.Write(b) // a failed send is a lost datagram
			f.mu.Lock()
			f.sent++
			f.mu.Unlock()
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return f
}

// sentCount returns the datagrams sent so far.
func (f *udpFlow) sentCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return int(f.sent)
}

// end stops sending, waits a second for datagrams and echoes in flight,
// closes the socket and returns the result. It may be called more than
// once.
func (f *udpFlow) end() udpFlowResult {
	select {
	case <-f.stop:
	default:
		close(f.stop)
		<-f.done
		time.Sleep(time.Second)
		f.conn.Close()
	}
	<-f.rdone
	f.mu.Lock()
	defer f.mu.Unlock()
	r := udpFlowResult{sent: int(f.sent)}
	for seq := range f.sent {
		switch n := f.atDst[seq]; {
		case n == 0:
			r.lost++
		case n > 1:
			r.twice++
		}
		if !f.echoed[seq] {
			r.echoLost++
		}
	}
	return r
}

// rank orders the roles for mpRole: a carrying connection beats a warm one,
// which beats one that is down.
var rank = map[string]int{roleCarrying: 3, roleWarm: 2, roleDown: 1}

// mpRole returns the best role of p's connections on uplink, or "" when p
// has none there (or reports no role: not multipath).
func mpRole(p *ctl.PeerStatus, uplink string) string {
	best := ""
	for _, pa := range p.Paths {
		if pa.Uplink == uplink && pa.Multipath != nil && rank[pa.Multipath.Role] > rank[best] {
			best = pa.Multipath.Role
		}
	}
	return best
}

// mpLive counts p's connections that are not down.
func mpLive(p *ctl.PeerStatus) int {
	n := 0
	for _, pa := range p.Paths {
		if pa.Multipath != nil && pa.Multipath.Role != roleDown {
			n++
		}
	}
	return n
}

// mpDupSent sums the extra copies sent over p's connections.
func mpDupSent(p *ctl.PeerStatus) (n uint64) {
	for _, pa := range p.Paths {
		if pa.Multipath != nil {
			n += pa.Multipath.DupSent
		}
	}
	return n
}

// mpDupDiscarded sums the second copies discarded over p's connections.
func mpDupDiscarded(p *ctl.PeerStatus) (n uint64) {
	for _, pa := range p.Paths {
		if pa.Multipath != nil {
			n += pa.Multipath.DupDiscarded
		}
	}
	return n
}

// mpString describes p in one line for logs and failures: its mode, each
// connection's uplink, role, health, share and counters, and the drops
// that are not zero.
func mpString(p *ctl.PeerStatus) string {
	if p == nil {
		return "no status"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s multipath=%q", p.Name, p.State, p.Multipath)
	for _, pa := range p.Paths {
		up := cmp.Or(pa.Uplink, pa.Remote.String())
		if m := pa.Multipath; m != nil {
			fmt.Fprintf(&b, " [%s %s/%s share %.2f tx %d rx %d dup sent %d discarded %d]",
				up, m.Role, m.Health, m.Share, m.TxPackets, m.RxPackets, m.DupSent, m.DupDiscarded)
		} else {
			fmt.Fprintf(&b, " [%s no multipath status]", up)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(p.Drops)) {
		if v := p.Drops[k]; v != 0 {
			fmt.Fprintf(&b, " %s=%d", k, v)
		}
	}
	return b.String()
}

// TestMultipathAggregate: an aggregate site whose uplinks are both shaped
// to 8 Mbit/s (tbf on the site's wifi0 and cell0) sends 8 bulk TCP flows
// to the hub. Both uplinks carry a real share of the bytes (the flows are
// spread over them; the tunnel's unit tests show that a flow keeps one
// path), the flows together get more than one uplink could carry, and
// every byte arrives.
func TestMultipathAggregate(t *testing.T) {
	t.Parallel()
	ml := startMPLab(t, `multipath = "aggregate"`)
	ml.waitMP(t, 10*time.Second, "both paths carrying", roles(roleCarrying, roleCarrying))
	const rate = 8 // Mbit/s per uplink
	for _, u := range []string{mobWifi.siteIf, mobCell.siteIf} {
		_, err := ml.site.Exec("tc", "qdisc", "replace", "dev", u, "root", "tbf",
			"rate", fmt.Sprintf("%dmbit", rate), "burst", "64kb", "latency", "25ms")
		must(t, err)
	}
	const flows, warmup, window = 8, 2 * time.Second, 4 * time.Second
	bulk := startBulk(t, ml.mobLab, flows, warmup+window+time.Second)
	time.Sleep(warmup)
	before, got := ml.counted(t), bulk.received()
	time.Sleep(window)
	d, gotAfter := ml.counted(t).sub(before), bulk.received()
	p := ml.siteD.Peer(t, "hub")
	sent, rcvd := bulk.wait(t)
	goodput := float64(gotAfter-got) * 8 / window.Seconds() / 1e6
	share := float64(d.cellUp) / float64(max(d.wifiUp+d.cellUp, 1))
	t.Logf("%d flows over %v: %.1f Mbit/s (uplinks %d Mbit/s each); %v, cell0 %.0f %% of the bytes up; %d bytes sent, %d received; site %s",
		flows, window, goodput, rate, d, 100*share, sent, rcvd, mpString(p))
	if share < 0.2 || share > 0.8 {
		t.Errorf("cell0 carried %.0f %% of the bytes up, want both uplinks a real share (20-80 %%)", 100*share)
	}
	if goodput < 1.15*rate {
		t.Errorf("%d flows got %.1f Mbit/s, want more than one %d Mbit/s uplink carries", flows, goodput, rate)
	}
	if sent != rcvd {
		t.Errorf("%d bytes sent, %d received", sent, rcvd)
	}
}

// bulk is n TCP flows from the site to the hub, each writing as fast as it
// can until its deadline.
type bulk struct {
	rcvd  atomic.Int64
	sent  atomic.Int64
	wg    sync.WaitGroup // the readers
	wwg   sync.WaitGroup // the writers
	errMu sync.Mutex
	err   error
}

func (b *bulk) fail(err error) {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	if b.err == nil {
		b.err = err
	}
}

func (b *bulk) received() int64 { return b.rcvd.Load() }

// wait waits for the flows to end and returns the bytes sent and received.
func (b *bulk) wait(t *testing.T) (sent, rcvd int64) {
	t.Helper()
	b.wwg.Wait()
	b.wg.Wait()
	if b.err != nil {
		t.Fatalf("bulk flows: %v", b.err)
	}
	return b.sent.Load(), b.rcvd.Load()
}

// startBulk starts n bulk TCP flows from the site to the hub's tunnel
// address, port 5002, for d.
func startBulk(t *testing.T, ml *mobLab, n int, d time.Duration) *bulk {
	t.Helper()
	ln, err := ml.hub.ListenTCP(netip.AddrPortFrom(mobHubTun, 5002).String())
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	b := &bulk{}
	b.wg.Add(n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				b.fail(err)
				for range n {
					b.wg.Done()
				}
				return
			}
			go func() {
				defer b.wg.Done()
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					_ = c.SetReadDeadline(time.Now().Add(d + 30*time.Second))
					k, err := c.Read(buf)
					b.rcvd.Add(int64(k))
					if err != nil {
						if err != io.EOF {
							b.fail(fmt.Errorf("receiving: %w", err))
						}
						return
					}
				}
			}()
		}
	}()
	end := time.Now().Add(d)
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := ml.site.DialTCP(ctx, netip.AddrPortFrom(mobHubTun, 5002).String())
		cancel()
		must(t, err)
		t.Cleanup(func() { c.Close() })
		b.wwg.Add(1)
		go func() {
			defer b.wwg.Done()
			defer func() {
				if cw, ok := c.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
			}()
			buf := make([]byte, 32<<10)
			for time.Now().Before(end) {
				_ = c.SetWriteDeadline(end.Add(30 * time.Second))
				k, err := c.Write(buf)
				b.sent.Add(int64(k))
				if err != nil {
					b.fail(fmt.Errorf("sending: %w", err))
					return
				}
			}
		}()
	}
	return b
}
