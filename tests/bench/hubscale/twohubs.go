// SPDX-License-Identifier: MIT

package main

// Two hubs (-hubs 2): the topology and the phases are in main.go's
// overview. The simulated sites do what godwit's site does with ranked
// hubs (cmd/godwit/hubs.go, multipath.go): one pinned connection to each
// hub in the peer's path set, judged by a path-health monitor (probes
// every 250 ms on the carrying connection, every second on the warm one),
// the tunnel picking the carrier by priority, and each hub told whether it
// carries (at once when it starts to, releaseDelay later when it stops).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/tests/bench/measure"
	"github.com/godwit-vpn/godwit/tun/tuntest"
	"github.com/godwit-vpn/godwit/tunnel"
)

// Addresses of the two-hub lab (see the drawing in main.go).
var (
	underA   = netip.MustParsePrefix("198.18.0.1/24") // hub-a, toward the sites
	underSA  = netip.MustParsePrefix("198.18.0.2/24") // the sites, toward hub-a
	underB   = netip.MustParsePrefix("198.18.1.1/24")
	underSB  = netip.MustParsePrefix("198.18.1.2/24")
	coreA    = netip.MustParsePrefix("198.18.2.1/24") // the core, toward hub-a
	hubACore = netip.MustParsePrefix("198.18.2.2/24") // hub-a, toward the core
	coreB    = netip.MustParsePrefix("198.18.3.1/24")
	hubBCore = netip.MustParsePrefix("198.18.3.2/24")
	// The hubs' TUN addresses are /32s: a site's route inside a connected
	// prefix of the TUN is not installed (routing's coveredByAddr), so
	// with hubInner's /16 neither hub would have a proto 77 route to
	// announce.
	innerA    = netip.MustParsePrefix("198.19.0.1/32")
	innerB    = netip.MustParsePrefix("198.19.128.1/32")
	dcHost    = netip.MustParseAddr("198.19.255.1")      // what the sites ping: on the core's lo (on each hub's without BGP)
	dcNet     = netip.MustParsePrefix("198.19.255.0/24") // routed from each hub to the core
	sharedNet = hubInner.Masked()                        // the sites' shared allowed_ips: both hubs' inner network
)

// Protocol and timing constants of the two-hub mode.
const (
	routeProtocol = 77 // godwit's default route_protocol
	// siteHoldDown is the sites' tunnel.Config.HoldDown (the daemon's
	// default hold_down); hub-a does not come back in this run.
	siteHoldDown = 10 * time.Second
	// releaseDelay is cmd/godwit/hubs.go's: how long a site keeps telling a
	// hub it carries after its traffic moved away.
	releaseDelay = 250 * time.Millisecond
	// carryingProbe and warmProbe are cmd/godwit/multipath.go's probe
	// intervals of a site's carrying and warm connections.
	carryingProbe = 250 * time.Millisecond
	warmProbe     = time.Second

	echoInterval   = 100 * time.Millisecond // per site, in the failover phase
	echoSlots      = 20                     // each round's sites are sent in this many batches
	beforeKill     = 2 * time.Second        // echoes before the kill
	failoverWindow = 30 * time.Second       // the longest wait for every site and the core after it
	afterAll       = time.Second            // echoes after every site recovered
	twoHubConnect  = 120 * time.Second      // bound on all sites reaching both hubs
	steadyTimeout  = 40 * time.Second       // bound on the routes settling after that
	pollEvery      = 200 * time.Millisecond // of the kernel tables and BIRD while waiting
)

// hubsReport is the report of a -hubs 2 run, as printed with -json.
type hubsReport struct {
	Machine      machine    `json:"machine"`
	Sites        int        `json:"sites"`
	Hubs         int        `json:"hubs"`
	BGP          bool       `json:"bgp"`
	Duration     string     `json:"duration"`
	Connected    int        `json:"connected"`           // sites with a connection to both hubs within the bound
	ConnectAll   float64    `json:"connect_all_s"`       // from the first dial to the last site having both
	ConnectP50   float64    `json:"connect_p50_ms"`      // per site, from the common start
	ConnectP99   float64    `json:"connect_p99_ms"`      //
	ConnectMax   float64    `json:"connect_max_ms"`      //
	SteadyS      float64    `json:"routes_steady_s"`     // after the connect, until each hub and the core route every site via its preferred hub; -1 if not within steadyTimeout
	OffPreferred int        `json:"sites_off_preferred"` // sites not carrying through their preferred hub alone when the wait ended
	HubA         hubFigures `json:"hub_a"`
	HubB         hubFigures `json:"hub_b"`
	CoreViaA     int        `json:"core_bgp_via_a_before"` // BIRD's primary routes in the core, before the kill
	CoreViaB     int        `json:"core_bgp_via_b_before"`

	// The failover: hub-a killed with SIGKILL.
	Movers        int      `json:"movers"`              // sites that preferred hub-a
	OnBAtKill     int      `json:"movers_on_b_at_kill"` // of them, those already carrying through hub-b at the kill (after a flap)
	Switched      int      `json:"switched"`            // of them, those whose tunnel moved to hub-b
	SwitchP50     float64  `json:"switch_p50_ms"`       // kill to the tunnel's carrier change
	SwitchP99     float64  `json:"switch_p99_ms"`       //
	SwitchMax     float64  `json:"switch_max_ms"`       //
	Recovered     int      `json:"recovered"`           // of the movers, those with an echo reply via hub-b
	RecoverP50    float64  `json:"recover_p50_ms"`      // kill to the first reply to a request sent after it
	RecoverP99    float64  `json:"recover_p99_ms"`      //
	RecoverMax    float64  `json:"recover_max_ms"`      //
	StayerMaxGap  float64  `json:"stayer_max_gap_ms"`   // longest gap between replies of a site on hub-b, around the kill
	CoreAfterB    int      `json:"core_bgp_via_b_after"`
	CoreAfterA    int      `json:"core_bgp_via_a_after"`
	CoreAllS      float64  `json:"core_all_via_b_s"` // kill to the core's table having every site via hub-b; -1 if never
	CoreKernelB   int      `json:"core_kernel_via_b_after"`
	HubBRoutes    int      `json:"hub_b_routes_after"` // proto 77 routes in hub-b's kernel
	HubBReconnect int      `json:"hub_b_reconnects"`   // connections to hub-b after each site's first
	EchoSent      uint64   `json:"echo_sent"`
	EchoReplies   uint64   `json:"echo_replies"`
	Notes         []string `json:"notes"`
}

// hubFigures are one hub's figures.
type hubFigures struct {
	PeerLines int     `json:"peer_connected"`    // "peer connected" lines in its log
	Routes    int     `json:"routes_steady"`     // proto 77 routes in its kernel once steady
	RSSAlone  uint64  `json:"rss_alone_kib"`     // VmRSS before any site
	RSSIdle   uint64  `json:"rss_idle_kib"`      // after the idle phase
	PerSite   float64 `json:"kib_per_idle_site"` // (RSSIdle - RSSAlone) / sites
	CPUIdle   float64 `json:"cpu_idle_pct"`      // of one core, over the idle phase
}

// hub is one hub of the run.
type hub struct {
	spec hubSpec
	ns   *netlab.NS
	id   key.Public
	key  ed25519.PrivateKey
	proc *netlab.Proc
	bird *birdProc // nil without BGP
	pid  int
}

// dualSite is a simulated site with both hubs.
type dualSite struct {
	*site
	prefers int           // 0: hub-a, 1: hub-b
	hubs    [2]key.Public // hub-a, hub-b
	conns   [2]atomic.Pointer[quicconn.Conn]
	dials   [2]atomic.Int32 // connections to each hub so far
	both    atomic.Int32    // hubs reached at least once

	seq      atomic.Uint32 // echo sequence numbers sent so far
	killSeq  atomic.Int64  // first sequence number sent after the kill; -1 before
	switched atomic.Int64  // unix ns when hub-b started carrying after the kill; 0 until
	recover  atomic.Int64  // unix ns of the first reply with seq >= killSeq; 0 until
	lastRx   atomic.Int64  // unix ns of the latest reply
	maxGap   atomic.Int64  // ns, the longest gap between replies since gapFrom
}

// failover is the state shared by the sites during the kill.
type failover struct {
	killed  atomic.Bool  // set once hub-a exited
	killAt  atomic.Int64 // unix ns of the SIGKILL
	gapFrom atomic.Int64 // unix ns from which reply gaps count
}

func runTwoHubs(ctx context.Context, o options, log *slog.Logger, stdout, stderr io.Writer) (err error) {
	rep := hubsReport{
		Machine:  machine{NProc: runtime.NumCPU(), Kernel: measure.ReadTrim("/proc/sys/kernel/osrelease"), Go: runtime.Version(), LoadBefore: loadAvg()},
		Sites:    o.sites,
		Hubs:     2,
		BGP:      o.bgp,
		Duration: o.duration.String(),
		CoreAllS: -1,
		Notes: []string{
			"hubs: two real godwit daemons with routes = \"connected\"; sites: quicconn.Endpoint + tunnel.Tunnel over tuntest.Channel, all in this process, each with one connection to each hub (priorities 1 and 2, shared allowed_ips " + sharedNet.String() + "), even sites preferring hub-a, odd ones hub-b",
			"sites as godwit's: each connection in the hub's path set with a health monitor (probe 250 ms while carrying, 1 s warm), the preference sent to each hub (release 250 ms after the traffic moved)",
			"connect: all sites start both dial loops at once; time until each site has a connection to both hubs",
			"CPU: each hub's utime+stime over the idle phase, percent of one core; RSS per site = (RSS idle - RSS alone) / sites",
			"failover: every site sends one ICMP echo per 100 ms to " + dcHost.String() + "; hub-a gets SIGKILL; a mover's time is from the kill to the first reply to a request sent after hub-a exited (only hub-b can carry it); switch = the tunnel's carrier change",
		},
	}
	if o.bgp {
		rep.Notes = append(rep.Notes, "BGP: BIRD 2 on each hub learns the proto 77 kernel routes (krt_source = 77) and announces them to the core's BIRD, which puts them in the core's kernel; the echo replies follow those routes; counts are the core's primary routes by BGP session (birdc show route primary protocol X count)")
		if err := birdAvailable(); err != nil {
			return err
		}
	} else {
		rep.Notes = append(rep.Notes, "no BGP (-bgp=false): "+dcHost.String()+" is on each hub's loopback, so each hub answers the echoes itself")
	}

	lab, err := netlab.New("gwh")
	if err != nil {
		return err
	}
	defer measure.JoinClose(&err, lab)
	hubs, sitesNS, core, err := twoHubLab(lab, o.bgp)
	if err != nil {
		return err
	}
	log.Info("lab ready", "sites", sitesNS.Name, "hub_a", hubs[0].ns.Name, "hub_b", hubs[1].ns.Name, "dir", lab.Dir)
	bin, err := netlab.Godwit()
	if err != nil {
		return err
	}
	var coreBird *birdProc
	if o.bgp {
		if coreBird, err = startBirds(ctx, lab, core, hubs); err != nil {
			return err
		}
		log.Info("BGP sessions established")
	}

	sites := make([]*dualSite, o.sites)
	plain := make([]*site, o.sites)
	for i := range sites {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("hubscale: %w", err)
		}
		s := &site{idx: i, key: k, addr: siteAddr(i), first: make(chan struct{}), runc: make(chan error, 1)}
		plain[i] = s
		sites[i] = &dualSite{site: s, prefers: i % 2}
		sites[i].killSeq.Store(-1)
	}

	// The hubs alone.
	for _, h := range hubs {
		if h.proc, err = startHub(ctx, lab, h.ns, bin, h.spec, h.key, plain); err != nil {
			return err
		}
		h.pid = h.proc.Cmd.Process.Pid
	}
	if err := measure.Sleep(ctx, settle); err != nil {
		return err
	}
	figs := []*hubFigures{&rep.HubA, &rep.HubB}
	for i, h := range hubs {
		if figs[i].RSSAlone, err = measure.VmRSS(h.pid); err != nil {
			return err
		}
	}
	log.Info("hubs up", "hub_a_pid", hubs[0].pid, "hub_b_pid", hubs[1].pid)

	// The sites, from cold, on both hubs.
	sctx, cancelSites := context.WithCancel(ctx)
	var wg sync.WaitGroup
	fo := &failover{}
	defer func() {
		cancelSites()
		wg.Wait() // DialLoopOn closes its conns on the way out
		for _, s := range sites {
			if s.ch != nil {
				s.ch.Close()
			}
			if s.tn != nil {
				if rerr := <-s.runc; rerr != nil {
					err = errors.Join(err, rerr)
				}
			}
			if s.ep != nil {
				s.ep.Close()
			}
		}
	}()
	if err := makeDualSites(sctx, sitesNS, hubs, sites, fo, &wg); err != nil {
		return err
	}
	log.Info("sites dialing both hubs", "count", len(sites))
	start := time.Now()
	for _, s := range sites {
		for j, h := range hubs {
			wg.Go(func() {
				s.ep.DialLoopOn(sctx, "", h.spec.listen.String(), h.id, func(c *quicconn.Conn) {
					s.connected(sctx, j, c, start, &wg)
				})
			})
		}
	}
	deadline := time.NewTimer(twoHubConnect)
	defer deadline.Stop()
	var took []time.Duration
wait:
	for _, s := range sites {
		select {
		case <-s.first:
			took = append(took, s.took)
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rep.Connected = len(took)
	if len(took) > 0 {
		slices.Sort(took)
		rep.ConnectAll = took[len(took)-1].Seconds()
		rep.ConnectP50 = ms(took[measure.Rank(len(took), 50)])
		rep.ConnectP99 = ms(took[measure.Rank(len(took), 99)])
		rep.ConnectMax = ms(took[len(took)-1])
	}
	log.Info("sites connected to both hubs", "connected", rep.Connected, "of", len(sites), "all_s", fmt.Sprintf("%.2f", rep.ConnectAll))
	if rep.Connected < len(sites) {
		return fmt.Errorf("hubscale: only %d of %d sites reached both hubs within %v%s", rep.Connected, len(sites), twoHubConnect, measure.ProcLogs(hubs[0].proc, hubs[1].proc))
	}

	// Steady: each hub routes the sites that prefer it, and the core has
	// every site via its preferred hub.
	movers := (len(sites) + 1) / 2
	want := [2]int{movers, len(sites) - movers}
	t0 := time.Now()
	err = netlab.WaitFor(ctx, steadyTimeout, "every site's route on its preferred hub", func() (bool, error) {
		for i, h := range hubs {
			n, err := kernelRoutes(h.ns)
			if err != nil {
				return false, err
			}
			figs[i].Routes = n
		}
		if rep.HubA.Routes != want[0] || rep.HubB.Routes != want[1] {
			return false, nil
		}
		if coreBird == nil {
			return true, nil
		}
		var err error
		if rep.CoreViaA, err = coreBird.count(birdPeerA); err != nil {
			return false, err
		}
		if rep.CoreViaB, err = coreBird.count(birdPeerB); err != nil {
			return false, err
		}
		return rep.CoreViaA == want[0] && rep.CoreViaB == want[1], nil
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for _, s := range sites {
		if s.tn.Carrying(s.hubs[0]) != (s.prefers == 0) || s.tn.Carrying(s.hubs[1]) != (s.prefers == 1) {
			rep.OffPreferred++
		}
	}
	if err != nil {
		// An overloaded machine: health monitors judge paths silent, sites
		// move and wait out the hold-down. The failover is still measured,
		// with the flapping sites counted.
		rep.SteadyS = -1
		if coreBird != nil {
			var errA, errB error
			rep.CoreViaA, errA = coreBird.count(birdPeerA)
			rep.CoreViaB, errB = coreBird.count(birdPeerB)
			if err := errors.Join(errA, errB); err != nil {
				return err
			}
		}
		log.Warn("routes not steady; measuring anyway", "err", err, "hub_a", rep.HubA.Routes, "hub_b", rep.HubB.Routes,
			"core_via_a", rep.CoreViaA, "core_via_b", rep.CoreViaB, "sites_off_preferred", rep.OffPreferred, "some", offSites(sites))
	} else {
		rep.SteadyS = time.Since(t0).Seconds()
	}
	log.Info("routes", "steady", rep.SteadyS >= 0, "hub_a", rep.HubA.Routes, "hub_b", rep.HubB.Routes, "core_via_a", rep.CoreViaA, "core_via_b", rep.CoreViaB)

	// Idle: both hubs over the same window.
	if err := measure.Sleep(ctx, settle); err != nil {
		return err
	}
	log.Info("idle phase", "duration", o.duration)
	var c0 [2]float64
	for i, h := range hubs {
		if c0[i], err = measure.ProcCPU(h.pid); err != nil {
			return err
		}
	}
	t0 = time.Now()
	if err := measure.Sleep(ctx, o.duration); err != nil {
		return err
	}
	for i, h := range hubs {
		c1, err := measure.ProcCPU(h.pid)
		if err != nil {
			return err
		}
		figs[i].CPUIdle = 100 * (c1 - c0[i]) / time.Since(t0).Seconds()
		if figs[i].RSSIdle, err = measure.VmRSS(h.pid); err != nil {
			return err
		}
		figs[i].PerSite = (float64(figs[i].RSSIdle) - float64(figs[i].RSSAlone)) / float64(len(sites))
	}
	for i, h := range hubs {
		if h.proc.Exited() {
			return fmt.Errorf("hubscale: %s exited before the kill%s", h.spec.name, measure.ProcLogs(h.proc))
		}
		figs[i].PeerLines = strings.Count(h.proc.Output(), "peer connected")
	}
	var dialsB0 int
	for _, s := range sites {
		dialsB0 += int(s.dials[1].Load())
	}

	// The failover.
	log.Info("failover phase: echoes every 100 ms per site, then SIGKILL of hub-a", "sites", len(sites))
	pctx, stopPings := context.WithCancel(sctx)
	defer stopPings()
	var sent atomic.Uint64
	var pinger sync.WaitGroup
	pinger.Go(func() { sent.Store(sendEchoes(pctx, sites, fo, beforeKill+failoverWindow+afterAll)) })
	if err := measure.Sleep(ctx, beforeKill); err != nil {
		return err
	}
	for _, s := range sites {
		if s.prefers == 0 && s.tn.Carrying(s.hubs[1]) {
			rep.OnBAtKill++
		}
	}
	fo.gapFrom.Store(time.Now().UnixNano())
	fo.killAt.Store(time.Now().UnixNano())
	if err := hubs[0].proc.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	if _, err := hubs[0].proc.Wait(5 * time.Second); err != nil {
		return err
	}
	fo.killed.Store(true)
	killAt := time.Unix(0, fo.killAt.Load())
	log.Info("hub-a killed", "exited_after_ms", fmt.Sprintf("%.1f", ms(time.Since(killAt))))
	end := killAt.Add(failoverWindow)
	for time.Now().Before(end) {
		done := true
		for _, s := range sites {
			if s.prefers == 0 && s.recover.Load() == 0 {
				done = false
				break
			}
		}
		if coreBird != nil && rep.CoreAllS < 0 {
			n, err := coreBird.count(birdPeerB)
			if err != nil {
				return err
			}
			if n == len(sites) {
				rep.CoreAllS = time.Since(killAt).Seconds()
			} else {
				done = false
			}
		}
		if done {
			break
		}
		if err := measure.Sleep(ctx, pollEvery); err != nil {
			return err
		}
	}
	if err := measure.Sleep(ctx, afterAll); err != nil {
		return err
	}
	stopPings()
	pinger.Wait()
	if err := measure.Sleep(ctx, replyGrace/4); err != nil {
		return err
	}
	rep.EchoSent = sent.Load()

	// The figures of the failover.
	var switched, recovered []time.Duration
	var maxGap time.Duration
	dialsB := 0
	for _, s := range sites {
		rep.EchoReplies += s.reply.Load()
		dialsB += int(s.dials[1].Load())
		if s.prefers == 1 {
			maxGap = max(maxGap, time.Duration(s.maxGap.Load()))
			continue
		}
		rep.Movers++
		if t := s.switched.Load(); t != 0 {
			switched = append(switched, time.Unix(0, t).Sub(killAt))
		}
		if t := s.recover.Load(); t != 0 {
			recovered = append(recovered, time.Unix(0, t).Sub(killAt))
		}
	}
	rep.HubBReconnect = dialsB - dialsB0
	rep.StayerMaxGap = ms(maxGap)
	rep.Switched, rep.Recovered = len(switched), len(recovered)
	rep.SwitchP50, rep.SwitchP99, rep.SwitchMax = percentiles(switched)
	rep.RecoverP50, rep.RecoverP99, rep.RecoverMax = percentiles(recovered)
	if rep.HubBRoutes, err = kernelRoutes(hubs[1].ns); err != nil {
		return err
	}
	if coreBird != nil {
		if rep.CoreAfterB, err = coreBird.count(birdPeerB); err != nil {
			return err
		}
		if rep.CoreAfterA, err = coreBird.count(birdPeerA); err != nil {
			return err
		}
		if rep.CoreKernelB, err = coreKernelVia(core, hubBCore.Addr()); err != nil {
			return err
		}
	}
	rep.Machine.LoadAfter = loadAvg()
	if hubs[1].proc.Exited() {
		return fmt.Errorf("hubscale: hub-b exited during the run%s", measure.ProcLogs(hubs[1].proc))
	}
	return measure.WriteReport(stdout, stderr, o.json, &rep, func(w io.Writer) { writeHubsTable(w, &rep) })
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentiles returns the p50, p99 and max of ds in milliseconds, all 0
// for none. It sorts ds.
func percentiles(ds []time.Duration) (p50, p99, maxMS float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	return ms(ds[measure.Rank(len(ds), 50)]), ms(ds[measure.Rank(len(ds), 99)]), ms(ds[len(ds)-1])
}

// twoHubLab makes the namespaces and links of the drawing in main.go: the
// sites, hub-a and hub-b (forwarding, the data-centre network routed to
// the core) and, with bgp, the core with the data-centre host on its lo.
// Without bgp the data-centre host is on each hub's lo and core is nil.
func twoHubLab(lab *netlab.Lab, bgp bool) (hubs [2]*hub, sites, core *netlab.NS, err error) {
	if sites, err = lab.NS("sites"); err != nil {
		return hubs, nil, nil, err
	}
	if bgp {
		if core, err = lab.NS("core"); err != nil {
			return hubs, nil, nil, err
		}
	}
	specs := [2]struct {
		name             string
		inner            netip.Prefix
		under, siteUnder netip.Prefix
		toCore, coreSide netip.Prefix
		sitesIf, coreIf  string
	}{
		{"hub-a", innerA, underA, underSA, hubACore, coreA, "ha", "ha"},
		{"hub-b", innerB, underB, underSB, hubBCore, coreB, "hb", "hb"},
	}
	for i, sp := range specs {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return hubs, nil, nil, fmt.Errorf("hubscale: %w", err)
		}
		h := &hub{key: k, spec: hubSpec{name: sp.name, inner: sp.inner, listen: netip.AddrPortFrom(sp.under.Addr(), hubPort), connected: true}}
		copy(h.id[:], k.Public().(ed25519.PublicKey))
		if h.ns, err = lab.NS(sp.name); err != nil {
			return hubs, nil, nil, err
		}
		hubs[i] = h
		if err := h.ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return hubs, nil, nil, err
		}
		if err := lab.Link(h.ns, "sites", sites, sp.sitesIf); err != nil {
			return hubs, nil, nil, err
		}
		if err := h.ns.Addr("sites", sp.under.String()); err != nil {
			return hubs, nil, nil, err
		}
		if err := sites.Addr(sp.sitesIf, sp.siteUnder.String()); err != nil {
			return hubs, nil, nil, err
		}
		if !bgp {
			if err := h.ns.Addr("lo", netip.PrefixFrom(dcHost, 32).String()); err != nil {
				return hubs, nil, nil, err
			}
			continue
		}
		if err := lab.Link(h.ns, "core", core, sp.coreIf); err != nil {
			return hubs, nil, nil, err
		}
		if err := h.ns.Addr("core", sp.toCore.String()); err != nil {
			return hubs, nil, nil, err
		}
		if err := core.Addr(sp.coreIf, sp.coreSide.String()); err != nil {
			return hubs, nil, nil, err
		}
		if _, err := h.ns.Exec("ip", "route", "add", dcNet.String(), "via", sp.coreSide.Addr().String()); err != nil {
			return hubs, nil, nil, err
		}
	}
	if bgp {
		// The core answers from lo and sees a site's requests arrive from
		// one hub and, for a moment after a move, its route still via the
		// other: no reverse-path filter.
		for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter", "net.ipv4.conf.ha.rp_filter", "net.ipv4.conf.hb.rp_filter"} {
			if err := core.Sysctl(k, "0"); err != nil {
				return hubs, nil, nil, err
			}
		}
		if err := core.Addr("lo", netip.PrefixFrom(dcHost, 32).String()); err != nil {
			return hubs, nil, nil, err
		}
	}
	for i, h := range hubs {
		if err := sites.WaitPing(h.spec.listen.Addr(), 5*time.Second); err != nil {
			return hubs, nil, nil, fmt.Errorf("hubscale: sites to %s: %w", specs[i].name, err)
		}
	}
	return hubs, sites, core, nil
}

// makeDualSites creates every site's Endpoint (its UDP socket in ns) and
// Tunnel with both hubs as ranked peers, and starts the Tunnel and the
// echo reader (on wg), all stopping when ctx is done and the Channel is
// closed.
func makeDualSites(ctx context.Context, ns *netlab.NS, hubs [2]*hub, sites []*dualSite, fo *failover, wg *sync.WaitGroup) error {
	err := ns.Do(func() error {
		for _, s := range sites {
			ep, err := quicconn.NewEndpoint(quicconn.Config{
				PrivateKey: s.key,
				NodeName:   fmt.Sprintf("site-%04d", s.idx),
				Multipath:  true,
				// As the daemon's preferenceFor and preferenceChanged.
				Preference: func(peer key.Public) bool { return s.tn.Carrying(peer) },
				PreferenceChanged: func(c *quicconn.Conn) {
					if c.PeerPreference().Leaving {
						s.tn.PathsChanged(c.PeerKey())
					}
				},
			})
			if err != nil {
				return fmt.Errorf("hubscale: site %d: %w", s.idx, err)
			}
			s.ep = ep
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range sites {
		s.hubs = [2]key.Public{hubs[0].id, hubs[1].id}
		s.ch = tuntest.NewChannel(8)
		tn, err := tunnel.New(s.ch, tunnel.Config{
			Addresses:       []netip.Prefix{netip.PrefixFrom(s.addr, 32)},
			MTU:             1300,
			QueueLen:        64,
			HoldDown:        siteHoldDown,
			CarryingChanged: func(id key.Public, carrying bool) { s.carryingChanged(id, carrying, fo) },
		})
		if err != nil {
			return fmt.Errorf("hubscale: site %d: %w", s.idx, err)
		}
		prio := [2]int{1, 2}
		if s.prefers == 1 {
			prio = [2]int{2, 1}
		}
		peers := []tunnel.PeerConfig{
			{ID: hubs[0].id, Name: "hub-a", AllowedIPs: []netip.Prefix{sharedNet}, Priority: prio[0]},
			{ID: hubs[1].id, Name: "hub-b", AllowedIPs: []netip.Prefix{sharedNet}, Priority: prio[1]},
		}
		if err := tn.SetPeers(peers); err != nil {
			return fmt.Errorf("hubscale: site %d: %w", s.idx, err)
		}
		s.tn = tn
		go func() { s.runc <- tn.Run(ctx) }()
		wg.Go(func() { s.readEchoes(ctx, fo) })
	}
	return nil
}

// connected is DialLoopOn's up for the site's connection c to hub j (as
// the daemon's attachPath for a ranked hub): once its hello is done, it
// joins the hub's path set with a health monitor, and the hub hears
// whether it carries. The first connection to both hubs closes s.first.
func (s *dualSite) connected(ctx context.Context, j int, c *quicconn.Conn, start time.Time, wg *sync.WaitGroup) {
	id := s.hubs[j]
	wg.Go(func() {
		// A 0-RTT connection is not usable before its hello (the daemon
		// attaches it early but unusable): attach it after.
		select {
		case <-c.HelloDone():
		case <-c.Done():
			return
		case <-ctx.Done():
			return
		}
		_, seq := c.Multipath()
		err := s.tn.AttachPath(id, c, tunnel.PathOptions{
			Name:      fmt.Sprint("hub-", string(rune('a'+j))),
			Sequenced: seq,
			Health:    pathHealth(c),
			Carrying:  func(carrying bool) { c.SetProbe(probeFor(carrying)) },
		})
		if err != nil {
			return // only after shutdown
		}
		s.conns[j].Store(c)
		c.MonitorPath(quicconn.HealthConfig{Probe: warmProbe, Changed: func(*quicconn.Conn, quicconn.HealthState, quicconn.HealthState, string) {
			s.tn.PathsChanged(id)
		}})
		s.tn.PathsChanged(id) // the monitor is on: a carrying path probes faster
		s.sendPreference(j)
		if s.dials[j].Add(1) == 1 && s.both.Add(1) == 2 {
			s.took = time.Since(start)
			close(s.first)
		}
		select {
		case <-c.Done():
		case <-ctx.Done():
			return // DialLoopOn closes c
		}
		s.conns[j].CompareAndSwap(c, nil)
		s.tn.Detach(id, c)
	})
}

// pathHealth is the tunnel's view of c's health, as the daemon's
// pathHealth for a site without uplinks: usable while its monitor says Up
// or Lossy, not once the hub said it is leaving.
func pathHealth(c *quicconn.Conn) func() tunnel.PathHealth {
	return func() tunnel.PathHealth {
		h := c.PathHealth()
		lossy := h.State == quicconn.HealthLossy
		usable := lossy || h.State == quicconn.HealthUp || h.State == quicconn.HealthUnmonitored
		if c.PeerPreference().Leaving {
			usable = false
		}
		return tunnel.PathHealth{Usable: usable, Lossy: lossy, SRTT: h.SRTT, MinRTT: h.MinRTT, Loss: h.Loss}
	}
}

// probeFor is the probe interval of a connection that carries or not.
func probeFor(carrying bool) time.Duration {
	if carrying {
		return carryingProbe
	}
	return warmProbe
}

// carryingChanged is the tunnel's CarryingChanged: as the daemon's, it
// tells the hub at once when it starts to carry and releaseDelay later
// when it stopped. It also notes when hub-b took over after the kill.
func (s *dualSite) carryingChanged(id key.Public, carrying bool, fo *failover) {
	j := 0
	if id == s.hubs[1] {
		j = 1
	}
	if carrying {
		if j == 1 && fo.killAt.Load() != 0 {
			s.switched.CompareAndSwap(0, time.Now().UnixNano())
		}
		s.sendPreference(j)
		return
	}
	time.AfterFunc(releaseDelay, func() { s.sendPreference(j) })
}

// sendPreference tells hub j whether it carries now, on its current
// connection (a dead one's successor says it in its hello). Unlike the
// daemon's, a "carries" it sent is checked again releaseDelay later: the
// value read here may be a moment's (a site whose less preferred hub
// connects first, then the preferred one) that the tunnel's
// CarryingChanged coalesces away, and the hub would never hear the "no"
// (see the report's notes).
func (s *dualSite) sendPreference(j int) {
	c := s.conns[j].Load()
	if c == nil {
		return
	}
	id := s.hubs[j]
	if !s.tn.Carrying(id) {
		_ = c.SetPreferred(false)
		return
	}
	_ = c.SetPreferred(true)
	time.AfterFunc(releaseDelay, func() {
		if !s.tn.Carrying(id) {
			_ = c.SetPreferred(false)
		}
	})
}

// readEchoes counts the echo replies to this site, notes the first reply
// to a request sent after the kill and, from fo.gapFrom on, the longest
// gap between replies, until ctx is done.
func (s *dualSite) readEchoes(ctx context.Context, fo *failover) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-s.ch.FromTunnel:
			seq, ok := echoReplySeq(p, s.addr, uint16(s.idx))
			if !ok {
				continue
			}
			s.reply.Add(1)
			now := time.Now().UnixNano()
			if from := fo.gapFrom.Load(); from != 0 {
				last := max(s.lastRx.Load(), from)
				if gap := now - last; gap > s.maxGap.Load() {
					s.maxGap.Store(gap)
				}
			}
			s.lastRx.Store(now)
			if k := s.killSeq.Load(); k >= 0 && int64(seq) >= k {
				s.recover.CompareAndSwap(0, now)
			}
		}
	}
}

// sendEchoes makes every site send one echo request per echoInterval to
// dcHost for d (or until ctx is done), the sites spread over echoSlots
// batches per round, and returns how many were handed to the tunnels (a
// full TUN queue counts as not sent). The first request of a site sent
// after fo.killed sets its killSeq.
func sendEchoes(ctx context.Context, sites []*dualSite, fo *failover, d time.Duration) uint64 {
	var sent uint64
	start := time.Now()
	rounds := int(d / echoInterval)
	per := (len(sites) + echoSlots - 1) / echoSlots
	for r := range rounds {
		for b := range echoSlots {
			at := start.Add(time.Duration(r)*echoInterval + time.Duration(b)*echoInterval/echoSlots)
			if err := measure.Sleep(ctx, time.Until(at)); err != nil {
				return sent
			}
			killed := fo.killed.Load()
			for _, s := range sites[min(b*per, len(sites)):min((b+1)*per, len(sites))] {
				seq := uint16(s.seq.Add(1))
				if killed {
					s.killSeq.CompareAndSwap(-1, int64(seq))
				}
				select {
				case s.ch.ToTunnel <- tuntest.Ping(s.addr, dcHost, uint16(s.idx), seq, 56):
					sent++
				default:
				}
			}
		}
	}
	return sent
}

// kernelRoutes counts the IPv4 routes of godwit's protocol in ns's main
// table.
func kernelRoutes(ns *netlab.NS) (int, error) {
	out, err := ns.Exec("ip", "-4", "route", "show", "proto", fmt.Sprint(routeProtocol))
	if err != nil {
		return 0, err
	}
	return countLines(out, ""), nil
}

// coreKernelVia counts the routes in the core's kernel via gw.
func coreKernelVia(core *netlab.NS, gw netip.Addr) (int, error) {
	out, err := core.Exec("ip", "-4", "route", "show", "proto", "bird")
	if err != nil {
		return 0, err
	}
	return countLines(out, " via "+gw.String()+" "), nil
}

// countLines counts the non-empty lines of out that contain sub.
func countLines(out, sub string) int {
	n := 0
	for l := range strings.Lines(out) {
		if strings.TrimSpace(l) != "" && strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// offSites describes, for an error message, up to 10 sites whose tunnel
// does not carry through their preferred hub alone.
func offSites(sites []*dualSite) string {
	var b strings.Builder
	n := 0
	for _, s := range sites {
		ca, cb := s.tn.Carrying(s.hubs[0]), s.tn.Carrying(s.hubs[1])
		if ca == (s.prefers == 0) && cb == (s.prefers == 1) {
			continue
		}
		if n++; n > 10 {
			b.WriteString("\n...")
			break
		}
		fmt.Fprintf(&b, "\nsite-%04d prefers hub-%c: carrying a %v, b %v;", s.idx, 'a'+s.prefers, ca, cb)
		for j, id := range s.hubs {
			for _, ps := range s.tn.PathStats(id) {
				fmt.Fprintf(&b, " hub-%c path %s %s usable %v;", 'a'+j, ps.Name, ps.Role, ps.Usable)
			}
			if c := s.conns[j].Load(); c != nil {
				fmt.Fprintf(&b, " hub-%c health %v, %d dials;", 'a'+j, c.PathHealth().State, s.dials[j].Load())
			}
		}
	}
	return b.String()
}
