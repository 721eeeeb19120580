// SPDX-License-Identifier: MIT

package main

// The mobility rows (switch, switch-nostandby, restartN) measure Godwit
// alone, in two namespaces of their own:
//
//	site (msite)                                      hub (mhub)
//	wifi0 198.51.100.2/24 ─────── veth ─────── wifi0h 198.51.100.1/24
//	cell0 192.0.2.2/24    ─────── veth ─────── cell0h 192.0.2.1/24
//	default via 198.51.100.1 metric 100               lo 203.0.113.2/32: Godwit hub, UDP 4433
//	default via 192.0.2.1 metric 200                  lo 203.0.113.1/32: relay UDP 4433 -> hub,
//	unreachable 198.19.0.0/16 (inner traffic                            delay D each way (settable)
//	  only through the tunnel)                        gwm0 (TUN) 198.19.0.1/24, UDP echo on 7777
//	gwm0 (TUN) 198.19.0.2/24, uplinks wifi0, cell0;    (answers the site's inner address only)
//	  dials the relay
//
// A probe stream sends a UDP datagram from the site to 198.19.0.1:7777
// every 2 ms for as long as the lab lives; every echo is recorded with its
// send and arrival time. An outage is the longest gap between two
// consecutive echo arrivals, from the last one before the event until the
// stream has been flowing again for a while (largestGap).

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/tests/bench/measure"
	"github.com/godwit-vpn/godwit/tests/relay"
)

// Mobility lab addresses and timings.
var (
	mobHubListen = netip.MustParseAddrPort("203.0.113.2:4433")
	mobRelayAddr = netip.MustParseAddrPort("203.0.113.1:4433")
	mobHubIn     = netip.MustParsePrefix("198.19.0.1/24")
	mobSiteIn    = netip.MustParsePrefix("198.19.0.2/24")
	mobInnerNet  = netip.MustParsePrefix("198.19.0.0/16")
	mobEcho      = netip.AddrPortFrom(mobHubIn.Addr(), 7777)
)

const (
	mobIfName     = "gwm0"
	probeInterval = 2 * time.Millisecond
	// mobSettle is how long the stream must flow after an event before
	// its gaps are read: late replies of the old path land in it.
	mobSettle = 300 * time.Millisecond
	// mobRecover bounds the wait for the first echo after an event.
	mobRecover = 10 * time.Second
	// mobSwitchDelay is the relay's one-way delay for the switch rows'
	// second setting (the first is 0): a 20 ms RTT.
	mobSwitchDelay = 10 * time.Millisecond
	// maxStream bounds the probe stream's life whatever happens.
	maxStream = 30 * time.Minute
)

// mobUplink is one of the site's two uplinks.
type mobUplink struct {
	name   string       // interface in the site
	hubIf  string       // its veth peer in the hub
	site   netip.Prefix // the site's address
	gw     netip.Addr   // the hub end, the site's gateway
	metric int          // of the site's default route through it
}

// mobCellRelayAddr is cell0's own relay (mobLabConfig.cellRelay), and
// mobCellNAT the hub's rule that sends cell0's packets for the relay there.
var (
	mobCellRelayAddr = netip.MustParseAddrPort("203.0.113.3:4433")
	mobCellNAT       = fmt.Sprintf(`table ip gwbmpnat {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname %q ip daddr %s udp dport %d dnat to %s
	}
}
`, mobCell.hubIf, mobRelayAddr.Addr(), mobRelayAddr.Port(), mobCellRelayAddr)
)

var (
	mobWifi = mobUplink{"wifi0", "wifi0h", netip.MustParsePrefix("198.51.100.2/24"), netip.MustParseAddr("198.51.100.1"), 100}
	mobCell = mobUplink{"cell0", "cell0h", netip.MustParsePrefix("192.0.2.2/24"), netip.MustParseAddr("192.0.2.1"), 200}
)

// mobilityResult is what the mobility rows measured (JSON "mobility").
type mobilityResult struct {
	Version  string          `json:"version,omitempty"`
	Runs     int             `json:"runs_per_series"`
	Switch   []outageSeries  `json:"switch,omitempty"`
	Restart  []restartSeries `json:"restart,omitempty"`
	Error    string          `json:"error,omitempty"`
	Duration string          `json:"duration"` // wall time of all mobility rows
}

// outageSeries is one kind of switch at one relay delay.
type outageSeries struct {
	// Kind is "switch" (make-before-break: the active uplink goes down
	// while a validated standby exists), "switch-back" (the preferred
	// uplink returns) or "switch-nostandby" (the active uplink goes down
	// and the other one comes up right after it).
	Kind      string    `json:"kind"`
	DelayMs   float64   `json:"relay_one_way_delay_ms"`
	RTTMs     float64   `json:"rtt_ms"` // median echo RTT through the tunnel before the series
	OutagesMs []float64 `json:"outages_ms"`
	Stats     durStats  `json:"stats"`
	DaemonMs  *float64  `json:"daemon_outage_median_ms,omitempty"` // show's last_migration_outage, median
	Redials   int       `json:"redials"`                           // runs in which the site redialed instead of migrating
	UpAfterMs *float64  `json:"standby_up_after_ms,omitempty"`     // switch-nostandby: down to standby route, median
	// Failed counts runs without an echo within mobRecover (not in
	// Stats) or without the switch back afterwards (after which the site
	// is restarted); FailureLogs holds the site's last log lines of the
	// first ones.
	Failed      int      `json:"failed_runs"`
	FailureLogs []string `json:"failure_logs,omitempty"`
}

// errNoRecovery is gapAfter's error when the stream did not come back.
var errNoRecovery = errors.New("bench: no echo through the tunnel within 10s of the event")

// failed counts a run that did not recover and keeps the site's log tail.
func (s *outageSeries) failed(m *mobLab, run int) {
	s.Failed++
	m.log.Error("no recovery", "series", s.Kind, "run", run)
	if len(s.FailureLogs) < 3 && m.siteProc != nil {
		lines := strings.Split(strings.TrimRight(m.siteProc.Output(), "\n"), "\n")
		s.FailureLogs = append(s.FailureLogs, fmt.Sprintf("run %d: %s", run, strings.Join(lines[max(0, len(lines)-25):], "\n")))
	}
}

// restartSeries is the site restart at one relay delay.
type restartSeries struct {
	Key     string  `json:"key"` // "restart20"
	DelayMs float64 `json:"relay_one_way_delay_ms"`
	RTTMs   float64 `json:"rtt_ms"` // median echo RTT through the tunnel
	// ZeroRTT and Full are exec to first echo, with the state dir kept
	// and emptied before each start.
	ZeroRTT  durStats `json:"zero_rtt"`
	Full     durStats `json:"full_handshake"`
	Accepted int      `json:"zero_rtt_accepted_runs"` // of ZeroRTT.N
	Resumed  int      `json:"full_resumed_runs"`      // of Full.N; want 0
	// StartMs is exec to the daemon's first log line, over all runs.
	StartMs durStats `json:"start_overhead"`
	// RunningMs and ConnectedMs are exec to the log lines "godwit
	// running" (TUN, routes and uplinks set up, dialing) and "peer
	// connected" (the tunnel has the connection), per mode.
	RunningMs   [2]durStats `json:"running_zero_rtt_full"`
	ConnectedMs [2]durStats `json:"connected_zero_rtt_full"`
}

// durStats summarises durations in milliseconds (nearest rank).
type durStats struct {
	N        int     `json:"n"`
	MedianMs float64 `json:"median_ms"`
	P90Ms    float64 `json:"p90_ms"`
	MaxMs    float64 `json:"max_ms"`
}

func statsOf(ds []time.Duration) durStats {
	if len(ds) == 0 {
		return durStats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return durStats{N: len(s), MedianMs: ms(s[measure.Rank(len(s), 50)]), P90Ms: ms(s[measure.Rank(len(s), 90)]), MaxMs: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// largestGap returns the longest time between two consecutive arrivals
// (sorted ascending) from the last one at or before at onwards. ok is
// false when no arrival is at or before at, or none after it. Taking the
// longest gap rather than the first one after at keeps a straggler that
// was already on its way when the path broke from hiding the outage.
func largestGap(arrivals []time.Time, at time.Time) (gap time.Duration, ok bool) {
	i := -1
	for j, a := range arrivals {
		if a.After(at) {
			break
		}
		i = j
	}
	if i < 0 || i == len(arrivals)-1 {
		return 0, false
	}
	for j := i; j+1 < len(arrivals); j++ {
		gap = max(gap, arrivals[j+1].Sub(arrivals[j]))
	}
	return gap, true
}

// echo is one answered probe.
type echo struct{ sent, at time.Time }

// probeStream sends a numbered datagram every interval from one socket
// and records the sends and the echoes. Its methods are safe for
// concurrent use.
type probeStream struct {
	conn     *net.UDPConn
	epoch    time.Time
	interval time.Duration
	stop     chan struct{}
	wg       sync.WaitGroup
	once     sync.Once
	paused   atomic.Bool // no probes are sent while set

	mu     sync.Mutex      // guards echoes and sent
	echoes []echo          // arrival order; the oldest are dropped beyond 40000
	sent   []time.Duration // send times since epoch, in order; the oldest are dropped beyond 40000
}

// probeMagic starts every probe, so stray datagrams are ignored.
const probeMagic = "gwbprobe"

// startProbeStreamEvery starts a stream of a probe every interval that
// stops by itself after life.
func startProbeStreamEvery(ns *netlab.NS, dst netip.AddrPort, interval, life time.Duration) (*probeStream, error) {
	c, err := ns.ListenUDP("0.0.0.0:0")
	if err != nil {
		return nil, err
	}
	p := &probeStream{conn: c, epoch: time.Now(), interval: interval, stop: make(chan struct{})}
	p.wg.Add(2)
	go func() { // sender
		defer p.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		end := time.After(life)
		buf := make([]byte, len(probeMagic)+8)
		copy(buf, probeMagic)
		for {
			if !p.paused.Load() {
				off := time.Since(p.epoch)
				binary.BigEndian.PutUint64(buf[len(probeMagic):], uint64(off))
				p.mu.Lock()
				if len(p.sent) >= 40000 {
					p.sent = slices.Delete(p.sent, 0, 10000)
				}
				p.sent = append(p.sent, off)
				p.mu.Unlock()
				// No route while the site has no tunnel: that is loss.
				_, _ = c.WriteToUDPAddrPort(buf, dst)
			}
			select {
			case <-p.stop:
				return
			case <-end:
				return
			case <-tick.C:
			}
		}
	}()
	go func() { // receiver
		defer p.wg.Done()
		buf := make([]byte, 1500)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			now := time.Now()
			if n != len(probeMagic)+8 || string(buf[:len(probeMagic)]) != probeMagic {
				continue
			}
			sent := p.epoch.Add(time.Duration(binary.BigEndian.Uint64(buf[len(probeMagic):])))
			p.mu.Lock()
			if len(p.echoes) >= 40000 {
				p.echoes = slices.Delete(p.echoes, 0, 10000)
			}
			p.echoes = append(p.echoes, echo{sent, now})
			p.mu.Unlock()
		}
	}()
	return p, nil
}

// close stops the stream and waits for its goroutines. It may be called
// more than once.
func (p *probeStream) close() {
	p.once.Do(func() {
		close(p.stop)
		p.conn.Close()
	})
	p.wg.Wait()
}

// firstSentAfter returns the arrival of the first echo of a probe sent
// after t.
func (p *probeStream) firstSentAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.echoes) - 1; i >= 0 && p.echoes[i].at.After(t); i-- {
		if p.echoes[i].sent.After(t) && (i == 0 || !p.echoes[i-1].sent.After(t)) {
			return p.echoes[i].at, true
		}
	}
	return time.Time{}, false
}

// firstArrivalAfter returns the first echo arrival after t.
func (p *probeStream) firstArrivalAfter(t time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, _ := slices.BinarySearchFunc(p.echoes, t, func(e echo, t time.Time) int {
		if e.at.After(t) {
			return 1
		}
		return -1
	})
	if i == len(p.echoes) {
		return time.Time{}, false
	}
	return p.echoes[i].at, true
}

// arrivals returns the arrival times of echoes after from.
func (p *probeStream) arrivals(from time.Time) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []time.Time
	for _, e := range p.echoes {
		if !e.at.Before(from) {
			out = append(out, e.at)
		}
	}
	return out
}

// rtt returns the median round trip of the echoes of probes sent in the
// next d.
func (p *probeStream) rtt(ctx context.Context, d time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := measure.Sleep(ctx, d+time.Second); err != nil {
		return 0, err
	}
	p.mu.Lock()
	var rtts []time.Duration
	for _, e := range p.echoes {
		if e.sent.After(start) && e.sent.Before(start.Add(d)) {
			rtts = append(rtts, e.at.Sub(e.sent))
		}
	}
	p.mu.Unlock()
	if len(rtts) < int(d/p.interval)/2 {
		return 0, fmt.Errorf("bench: %d echoes of %d probes in %v", len(rtts), int(d/p.interval), d)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2], nil
}

// waitFlowing waits until an echo arrived in the last 20 ms.
func (p *probeStream) waitFlowing(ctx context.Context, within time.Duration) error {
	err := netlab.WaitFor(ctx, within, "echo through the tunnel", func() (bool, error) {
		_, ok := p.firstArrivalAfter(time.Now().Add(-20 * time.Millisecond))
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// mobLab is the lab drawn at the top of this file with the hub, the relay,
// the echo and the probe stream running. It is used from one goroutine.
type mobLab struct {
	lab       *netlab.Lab
	bin       string
	log       *slog.Logger
	cfg       mobLabConfig
	hub, site *netlab.NS
	nl        *netlink.Handle // in the site
	delay     atomic.Int64    // the relay's one-way delay in ns
	cellExtra atomic.Int64    // with cfg.cellRelay: cell0's relay adds this to delay, in ns
	stopRelay []func()
	relays    []*relay.Relay // mobRelayAddr's, then with cfg.cellRelay cell0's
	echo      *echoServer    // on mobEcho's port
	stream    *probeStream
	hubProc   *netlab.Daemon
	siteProc  *netlab.Daemon // the running site daemon, or nil
	siteCfg   string
	stateDir  string // the site's
	starts    int    // site daemon starts, for log names
	pub       [2]string
}

// mobLabConfig varies the lab for the multipath rows (multipath.go); its
// zero value is the mobility rows' lab.
type mobLabConfig struct {
	// prefix starts the names of the namespaces, files and daemons
	// ("mhub", "msite"); "" means "m".
	prefix string
	// interval is the probe stream's; 0 means probeInterval. life bounds
	// the stream; 0 means maxStream.
	interval, life time.Duration
	// cellRelay gives cell0 a relay of its own on mobCellRelayAddr, which
	// adds cellExtra to the one-way delay: the hub DNATs the relay address
	// to it for packets arriving on cell0h.
	cellRelay bool
	// countEcho makes the echo count the probes it answers (see
	// echoServer.seen).
	countEcho bool
	// relayBuffer, if not 0, is the receive and send buffer size of the
	// relays' sockets in bytes (at most net.core.rmem_max and wmem_max).
	relayBuffer int
	// sitePeer are extra lines of the site's [[peer]] (multipath = ...).
	sitePeer []string
}

// name returns the lab's name for s: "mhub" for "hub" in the mobility rows.
func (m *mobLab) name(s string) string { return cmp.Or(m.cfg.prefix, "m") + s }

// newMobLab builds the lab and starts the hub, the site and the stream.
// On error, what was started is stopped again; the namespaces and
// processes belong to lab either way.
func newMobLab(ctx context.Context, lab *netlab.Lab, bin string, log *slog.Logger) (_ *mobLab, err error) {
	// The switch and restart rows measure one connection that moves
	// (with two uplinks the default is a connection per uplink).
	return newMobLabWith(ctx, lab, bin, log, mobLabConfig{sitePeer: []string{`multipath = "off"`}})
}

// newMobLabWith is newMobLab for the lab cfg describes.
func newMobLabWith(ctx context.Context, lab *netlab.Lab, bin string, log *slog.Logger, cfg mobLabConfig) (_ *mobLab, err error) {
	m := &mobLab{lab: lab, bin: bin, log: log, cfg: cfg}
	defer func() {
		if err != nil {
			m.close()
		}
	}()
	if m.hub, err = lab.NS(m.name("hub")); err != nil {
		return nil, err
	}
	if m.site, err = lab.NS(m.name("site")); err != nil {
		return nil, err
	}
	for _, u := range []mobUplink{mobWifi, mobCell} {
		if err := lab.Link(m.site, u.name, m.hub, u.hubIf); err != nil {
			return nil, err
		}
		if err := m.site.Addr(u.name, u.site.String()); err != nil {
			return nil, err
		}
		if err := m.hub.Addr(u.hubIf, netip.PrefixFrom(u.gw, u.site.Bits()).String()); err != nil {
			return nil, err
		}
	}
	for _, a := range []netip.Addr{mobHubListen.Addr(), mobRelayAddr.Addr()} {
		if err := m.hub.Addr("lo", netip.PrefixFrom(a, 32).String()); err != nil {
			return nil, err
		}
	}
	if cfg.cellRelay {
		if err := m.hub.Addr("lo", netip.PrefixFrom(mobCellRelayAddr.Addr(), 32).String()); err != nil {
			return nil, err
		}
		if _, err := nsCommand(ctx, m.hub, mobCellNAT, "nft", "-f", "-"); err != nil {
			return nil, err
		}
	}
	// Inner traffic must never take the underlay (the hub would answer
	// it directly): the TUN's own routes are more specific.
	if _, err := m.site.Exec("ip", "route", "add", "unreachable", mobInnerNet.String()); err != nil {
		return nil, err
	}
	h, err := netns.GetFromName(m.site.Name)
	if err != nil {
		return nil, fmt.Errorf("bench: netns %s: %w", m.site.Name, err)
	}
	m.nl, err = netlink.NewHandleAt(h)
	h.Close()
	if err != nil {
		return nil, fmt.Errorf("bench: netlink in %s: %w", m.site.Name, err)
	}
	for _, u := range []mobUplink{mobWifi, mobCell} {
		if err := m.setUplink(ctx, u, true); err != nil {
			return nil, err
		}
	}
	if err := m.startRelay(mobRelayAddr, func() time.Duration { return time.Duration(m.delay.Load()) }); err != nil {
		return nil, err
	}
	if cfg.cellRelay {
		if err := m.startRelay(mobCellRelayAddr, func() time.Duration { return time.Duration(m.delay.Load() + m.cellExtra.Load()) }); err != nil {
			return nil, err
		}
	}
	if m.echo, err = startEcho(m.hub, mobEcho.Port(), cfg.countEcho); err != nil {
		return nil, err
	}
	if err := m.writeConfigs(ctx); err != nil {
		return nil, err
	}
	m.hubProc, err = m.hub.StartDaemon("godwit-"+m.name("hub"), bin, filepath.Join(lab.Dir, m.name("hub")+".toml"))
	if err != nil {
		return nil, err
	}
	m.stream, err = startProbeStreamEvery(m.site, mobEcho, cmp.Or(cfg.interval, probeInterval), cmp.Or(cfg.life, maxStream))
	if err != nil {
		return nil, err
	}
	if err := m.startSite(); err != nil {
		return nil, err
	}
	if err := m.stream.waitFlowing(ctx, 20*time.Second); err != nil {
		return nil, fmt.Errorf("%w%s", err, m.logs())
	}
	return m, nil
}

// close stops the stream, the echo and the relay; the lab stops the
// daemons and removes the namespaces.
func (m *mobLab) close() {
	if m.stream != nil {
		m.stream.close()
	}
	if m.echo != nil {
		m.echo.close()
	}
	for _, stop := range m.stopRelay {
		stop()
	}
	if m.nl != nil {
		m.nl.Close()
	}
}

// setUplink sets u's link up (with its default route back) or down
// (which takes its routes away) over netlink, which is fast enough that a
// down and an up fall into one of the daemon's 50 ms debounce windows.
func (m *mobLab) setUplink(ctx context.Context, u mobUplink, up bool) error {
	l, err := m.nl.LinkByName(u.name)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", u.name, err)
	}
	if !up {
		if err := m.nl.LinkSetDown(l); err != nil {
			return fmt.Errorf("bench: %s down: %w", u.name, err)
		}
		return nil
	}
	if err := m.nl.LinkSetUp(l); err != nil {
		return fmt.Errorf("bench: %s up: %w", u.name, err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: u.gw.AsSlice(), Priority: u.metric,
		Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}
	// Right after the link comes up the kernel may refuse the gateway for
	// a moment.
	for try := 0; ; try++ {
		err = m.nl.RouteReplace(r)
		if err == nil || try == 200 {
			break
		}
		if err := measure.Sleep(ctx, time.Millisecond); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("bench: default route via %s: %w", u.name, err)
	}
	return nil
}

// startRelay runs a relay in the hub on addr with the one-way delay that
// delay returns.
func (m *mobLab) startRelay(addr netip.AddrPort, delay func() time.Duration) error {
	ln, err := m.hub.ListenUDP(addr.String())
	if err != nil {
		return err
	}
	if err := m.setBuffers(ln); err != nil {
		ln.Close()
		return err
	}
	r, err := relay.New(ln, relay.Config{
		Target: mobHubListen,
		Delay:  func(relay.Direction, uint64) time.Duration { return delay() },
		Upstream: func(netip.AddrPort) (*net.UDPConn, error) {
			c, err := m.hub.DialUDP(mobHubListen.String())
			if err == nil {
				if err = m.setBuffers(c); err != nil {
					c.Close()
				}
			}
			return c, err
		},
		// Every uplink that comes back gets a new socket, so a new
		// client address: room for a long run.
		MaxClients: 4096,
		Record:     1,
	})
	if err != nil {
		ln.Close()
		return fmt.Errorf("bench: %w", err)
	}
	m.relays = append(m.relays, r)
	stop := r.Start()
	m.stopRelay = append(m.stopRelay, func() {
		if err := stop(10 * time.Second); err != nil {
			m.log.Error("relay", "addr", addr, "err", err)
		}
	})
	return nil
}

// setBuffers sets c's socket buffers to cfg.relayBuffer, if not 0.
func (m *mobLab) setBuffers(c *net.UDPConn) error {
	if m.cfg.relayBuffer == 0 {
		return nil
	}
	if err := errors.Join(c.SetReadBuffer(m.cfg.relayBuffer), c.SetWriteBuffer(m.cfg.relayBuffer)); err != nil {
		return fmt.Errorf("bench: relay socket buffers: %w", err)
	}
	return nil
}

// echoServer answers the probes in the hub; only datagrams from the site's
// inner address, so an echo proves the tunnel carried the probe.
type echoServer struct {
	conn *net.UDPConn
	done chan struct{}

	mu sync.Mutex // guards seen
	// seen counts the probes answered by their send time (the probe's
	// payload), if counting; nil otherwise. It is cleared beyond 500000.
	seen map[uint64]int
}

// startEcho starts an echo on UDP port in ns; count makes it count the
// probes it answers.
func startEcho(ns *netlab.NS, port uint16, count bool) (*echoServer, error) {
	c, err := ns.ListenUDP(netip.AddrPortFrom(netip.IPv4Unspecified(), port).String())
	if err != nil {
		return nil, err
	}
	e := &echoServer{conn: c, done: make(chan struct{})}
	if count {
		e.seen = make(map[uint64]int)
	}
	go func() {
		defer close(e.done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if from.Addr().Unmap() != mobSiteIn.Addr() {
				continue
			}
			if count && n == len(probeMagic)+8 && string(buf[:len(probeMagic)]) == probeMagic {
				e.mu.Lock()
				if len(e.seen) >= 500000 {
					clear(e.seen)
				}
				e.seen[binary.BigEndian.Uint64(buf[len(probeMagic):])]++
				e.mu.Unlock()
			}
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return e, nil
}

// times returns how often the echo answered the probe sent at off (since
// its stream's epoch); 0 without counting.
func (e *echoServer) times(off time.Duration) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seen[uint64(off)]
}

// close stops the echo and waits for it.
func (e *echoServer) close() {
	e.conn.Close()
	<-e.done
}

// writeConfigs makes keys, state directories and both configs.
func (m *mobLab) writeConfigs(ctx context.Context) error {
	dir := m.lab.Dir
	pub := &m.pub
	for i, name := range []string{m.name("hub"), m.name("site")} {
		priv, err := commandOutput(ctx, "", m.bin, "genkey")
		if err != nil {
			return err
		}
		if pub[i], err = commandOutput(ctx, priv+"\n", m.bin, "pubkey"); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".key"), []byte(priv+"\n"), 0o600); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := os.Mkdir(filepath.Join(dir, name+"-state"), 0o700); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	m.stateDir = filepath.Join(dir, m.name("site")+"-state")
	m.siteCfg = filepath.Join(dir, m.name("site")+".toml")
	hub := mobConfig(filepath.Join(dir, m.name("hub")+".key"), filepath.Join(dir, m.name("hub")+"-state"), mobHubIn,
		`listen = "`+mobHubListen.String()+`"`, "site", pub[1], netip.PrefixFrom(mobSiteIn.Addr(), 32), "")
	if err := os.WriteFile(filepath.Join(dir, m.name("hub")+".toml"), []byte(hub), 0o600); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return m.writeSiteConfig(m.cfg.sitePeer)
}

// writeSiteConfig writes the site's config with the extra lines peer in its
// [[peer]]; a site started afterwards reads it.
func (m *mobLab) writeSiteConfig(peer []string) error {
	dir := m.lab.Dir
	c := mobConfig(filepath.Join(dir, m.name("site")+".key"), m.stateDir, mobSiteIn,
		fmt.Sprintf("uplinks = [%q, %q]", mobWifi.name, mobCell.name), "hub", m.pub[0],
		netip.PrefixFrom(mobHubIn.Addr(), 32), mobRelayAddr.String(), peer...)
	if err := os.WriteFile(m.siteCfg, []byte(c), 0o600); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// mobConfig renders a config with one peer; extra is one more line of
// [interface], endpoint may be "", peerLines are more lines of the
// [[peer]].
func mobConfig(keyFile, stateDir string, addr netip.Prefix, extra, peer, peerPub string, allowed netip.Prefix, endpoint string, peerLines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[interface]\nname = %q\nprivate_key_file = %q\naddresses = [%q]\nstate_dir = %q\n%s\n",
		mobIfName, keyFile, addr.String(), stateDir, extra)
	fmt.Fprintf(&b, "\n[[peer]]\nname = %q\npublic_key = %q\nallowed_ips = [%q]\n", peer, peerPub, allowed.String())
	if endpoint != "" {
		fmt.Fprintf(&b, "endpoint = %q\n", endpoint)
	}
	for _, l := range peerLines {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// startSite starts a site daemon; it does not wait for anything.
func (m *mobLab) startSite() error {
	m.starts++
	d, err := m.site.StartDaemon(fmt.Sprintf("godwit-%s-%d", m.name("site"), m.starts), m.bin, m.siteCfg)
	if err != nil {
		return err
	}
	m.siteProc = d
	return nil
}

// stopSite stops the site daemon with SIGTERM (SIGKILL after 10 s) and
// waits until the hub noticed.
func (m *mobLab) stopSite(ctx context.Context) error {
	return m.stopSiteHub(ctx, true)
}

// restartSite brings a site that lost its tunnel back to the start state:
// both uplinks up, a new daemon, echoes flowing.
func (m *mobLab) restartSite(ctx context.Context) error {
	m.log.Info("restarting the site to recover")
	if err := m.stopSiteHub(ctx, false); err != nil {
		return err
	}
	for _, u := range []mobUplink{mobWifi, mobCell} {
		if err := m.setUplink(ctx, u, true); err != nil {
			return err
		}
	}
	// Let the uplinks settle, so the new daemon's first view has both.
	if err := measure.Sleep(ctx, 500*time.Millisecond); err != nil {
		return err
	}
	if err := m.startSite(); err != nil {
		return err
	}
	if err := m.stream.waitFlowing(ctx, 20*time.Second); err != nil {
		return err
	}
	_, err := m.waitSite(ctx, 15*time.Second, "wifi0 active after the restart", func(s *ctl.Status) bool { return hubOf(s).ActiveUplink() == mobWifi.name })
	return err
}

func (m *mobLab) stopSiteHub(ctx context.Context, waitHub bool) error {
	p := m.siteProc
	m.siteProc = nil
	before := strings.Count(m.hubProc.Output(), "peer disconnected")
	_ = p.Signal(syscall.SIGTERM)
	if _, err := p.Wait(10 * time.Second); err != nil {
		_ = p.Signal(syscall.SIGKILL)
		if _, err := p.Wait(5 * time.Second); err != nil {
			return err
		}
		if waitHub {
			return fmt.Errorf("bench: site did not stop within 10 s of SIGTERM%s", measure.ProcLogs(p.Proc))
		}
		// Recovering from a stuck site: killed is stopped enough.
		m.log.Error("site did not stop within 10 s of SIGTERM; killed it")
	}
	if !waitHub {
		return nil
	}
	err := netlab.WaitFor(ctx, 5*time.Second, "hub noticing the site's stop", func() (bool, error) {
		return strings.Count(m.hubProc.Output(), "peer disconnected") > before, nil
	})
	if err != nil {
		return fmt.Errorf("bench: %w%s", err, m.logs())
	}
	return nil
}

// logs returns the daemons' last log lines for error messages.
func (m *mobLab) logs() string {
	ps := []*netlab.Proc{}
	for _, d := range []*netlab.Daemon{m.hubProc, m.siteProc} {
		if d != nil {
			ps = append(ps, d.Proc)
		}
	}
	return measure.ProcLogs(ps...)
}

// waitTicket waits up to within for a session ticket in the site's state
// dir written after since; it logs when none comes.
func (m *mobLab) waitTicket(ctx context.Context, since time.Time, within time.Duration) {
	err := netlab.WaitFor(ctx, within, "new session ticket", func() (bool, error) {
		files, _ := filepath.Glob(filepath.Join(m.stateDir, "tickets", "*"))
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil && fi.ModTime().After(since) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		m.log.Info("no new session ticket before the restart", "waited", within, "err", err)
	}
}

// hubOf returns the site's one peer, the hub, from its status (a zero
// PeerStatus when the status lists none).
func hubOf(s *ctl.Status) *ctl.PeerStatus {
	if len(s.Peers) == 0 {
		return &ctl.PeerStatus{}
	}
	return &s.Peers[0]
}

// waitSite polls the site's status until ok, for at most within.
func (m *mobLab) waitSite(ctx context.Context, within time.Duration, what string, ok func(*ctl.Status) bool) (*ctl.Status, error) {
	var (
		st   *ctl.Status
		qerr error
	)
	err := netlab.WaitFor(ctx, within, what, func() (bool, error) {
		st, qerr = m.siteProc.Status(ctx)
		return qerr == nil && ok(st), nil
	})
	switch {
	case err == nil:
		return st, nil
	case qerr != nil:
		return nil, fmt.Errorf("bench: site: %w (last: %v)%s", err, qerr, m.logs())
	}
	p := hubOf(st)
	return nil, fmt.Errorf("bench: site: %w (last: hub %s, migrations %d, paths %+v)%s", err, p.State, p.Migrations, p.Paths, m.logs())
}

// gapAfter waits until an echo of a probe sent after at arrived, lets
// the stream settle, runs then (if not nil) and returns the outage from
// the echoes from 1 s before at until then.
func (m *mobLab) gapAfter(ctx context.Context, at time.Time, then func() error) (time.Duration, error) {
	end := at.Add(mobRecover)
	for {
		if _, ok := m.stream.firstSentAfter(at); ok {
			break
		}
		if time.Now().After(end) {
			return 0, errNoRecovery
		}
		if err := measure.Sleep(ctx, 2*time.Millisecond); err != nil {
			return 0, err
		}
	}
	if then != nil {
		if err := then(); err != nil {
			return 0, err
		}
	}
	if err := measure.Sleep(ctx, mobSettle); err != nil {
		return 0, err
	}
	gap, ok := largestGap(m.stream.arrivals(at.Add(-time.Second)), at)
	if !ok {
		return 0, errors.New("bench: no echo before the event")
	}
	return gap, nil
}

// measureSwitch runs runs make-before-break switches (and the switches
// back) at the relay's current delay.
func (m *mobLab) measureSwitch(ctx context.Context, runs int) (sw, back outageSeries, err error) {
	sw.Kind, back.Kind = "switch", "switch-back"
	var outs, backs, daemon []time.Duration
	defer func() {
		sw.Stats, back.Stats = statsOf(outs), statsOf(backs)
		sw.OutagesMs, back.OutagesMs = msList(outs), msList(backs)
		if len(daemon) > 0 {
			v := statsOf(daemon).MedianMs
			sw.DaemonMs = &v
		}
	}()
	for i := range runs {
		st, err := m.waitSite(ctx, 15*time.Second, "wifi0 active with cell0 validated", func(s *ctl.Status) bool {
			return hubOf(s).ActiveUplink() == mobWifi.name && hubOf(s).ValidatedStandby(mobCell.name)
		})
		if err != nil {
			return sw, back, err
		}
		migrations := hubOf(st).Migrations
		if err := m.stream.waitFlowing(ctx, 10*time.Second); err != nil {
			return sw, back, err
		}
		at := time.Now()
		if err := m.setUplink(ctx, mobWifi, false); err != nil {
			return sw, back, err
		}
		gap, err := m.gapAfter(ctx, at, nil)
		switch {
		case errors.Is(err, errNoRecovery):
			sw.failed(m, i+1)
			if err := m.restartSite(ctx); err != nil {
				return sw, back, err
			}
			continue
		case err != nil:
			return sw, back, fmt.Errorf("switch %d: %w", i+1, err)
		default:
			outs = append(outs, gap)
		}
		if st, err := m.waitSite(ctx, 5*time.Second, "migration to cell0", func(s *ctl.Status) bool {
			return hubOf(s).ActiveUplink() == mobCell.name && hubOf(s).Migrations > migrations
		}); err == nil && hubOf(st).LastMigrationOutage > 0 {
			daemon = append(daemon, hubOf(st).LastMigrationOutage)
		}
		at = time.Now()
		if err := m.setUplink(ctx, mobWifi, true); err != nil {
			return sw, back, err
		}
		bgap, err := m.gapAfter(ctx, at, func() error {
			_, err := m.waitSite(ctx, 15*time.Second, "switch back to wifi0", func(s *ctl.Status) bool { return hubOf(s).ActiveUplink() == mobWifi.name })
			return err
		})
		switch {
		case errors.Is(err, errNoRecovery):
			back.failed(m, i+1)
			if err := m.restartSite(ctx); err != nil {
				return sw, back, err
			}
		case err != nil:
			return sw, back, fmt.Errorf("switch back %d: %w", i+1, err)
		default:
			backs = append(backs, bgap)
		}
		m.log.Info("switch", "run", i+1, "outage", gap.Round(time.Microsecond), "back", bgap.Round(time.Microsecond))
	}
	return sw, back, nil
}

// measureNoStandby runs runs switches without a validated standby: cell0
// is down, wifi0 goes down and cell0 comes up right after.
func (m *mobLab) measureNoStandby(ctx context.Context, runs int) (sw outageSeries, err error) {
	sw.Kind = "switch-nostandby"
	var outs, ups []time.Duration
	defer func() {
		sw.Stats, sw.OutagesMs = statsOf(outs), msList(outs)
		if len(ups) > 0 {
			v := statsOf(ups).MedianMs
			sw.UpAfterMs = &v
		}
	}()
	for i := range runs {
		if err := m.setUplink(ctx, mobCell, false); err != nil {
			return sw, err
		}
		st, err := m.waitSite(ctx, 15*time.Second, "wifi0 active without a cell0 standby", func(s *ctl.Status) bool {
			return hubOf(s).ActiveUplink() == mobWifi.name && !hubOf(s).ValidatedStandby(mobCell.name)
		})
		if err != nil {
			return sw, err
		}
		redials := st.Interface.Connections.Redials
		if err := m.stream.waitFlowing(ctx, 10*time.Second); err != nil {
			return sw, err
		}
		at := time.Now()
		if err := m.setUplink(ctx, mobWifi, false); err != nil {
			return sw, err
		}
		if err := m.setUplink(ctx, mobCell, true); err != nil {
			return sw, err
		}
		ups = append(ups, time.Since(at))
		gap, err := m.gapAfter(ctx, at, nil)
		switch {
		case errors.Is(err, errNoRecovery):
			sw.failed(m, i+1)
			if err := m.restartSite(ctx); err != nil {
				return sw, err
			}
			continue
		case err != nil:
			return sw, fmt.Errorf("switch without standby %d: %w", i+1, err)
		default:
			outs = append(outs, gap)
		}
		if st, err := m.waitSite(ctx, 5*time.Second, "connection on cell0", func(s *ctl.Status) bool {
			return hubOf(s).ActiveUplink() == mobCell.name
		}); err == nil && st.Interface.Connections.Redials > redials {
			sw.Redials++
		}
		if err := m.setUplink(ctx, mobWifi, true); err != nil {
			return sw, err
		}
		if _, err := m.waitSite(ctx, 15*time.Second, "switch back to wifi0", func(s *ctl.Status) bool {
			return hubOf(s).ActiveUplink() == mobWifi.name
		}); err != nil {
			// The outage counts; the run is a failure all the same.
			sw.failed(m, i+1)
			if err := m.restartSite(ctx); err != nil {
				return sw, err
			}
			continue
		}
		m.log.Info("switch without standby", "run", i+1, "outage", gap.Round(time.Microsecond))
	}
	return sw, m.setUplink(ctx, mobCell, true)
}

// measureRestart restarts the site runs times with its state dir and runs
// times with it emptied, at the relay's current delay, and times each
// start from exec to the first echo through the tunnel.
func (m *mobLab) measureRestart(ctx context.Context, runs int) (rs restartSeries, err error) {
	var zero, full, starts []time.Duration
	var running, connected [2][]time.Duration
	defer func() {
		rs.ZeroRTT, rs.Full, rs.StartMs = statsOf(zero), statsOf(full), statsOf(starts)
		for i := range 2 {
			rs.RunningMs[i], rs.ConnectedMs[i] = statsOf(running[i]), statsOf(connected[i])
		}
	}()
	var lastStart time.Time
	for mode, keep := range []bool{true, false} {
		for i := range runs {
			// A site stopped within a round trip of its start may not have
			// stored the ticket its hub sent on this connection; it would
			// then offer an already used ticket, which the hub refuses for
			// 0-RTT (single-use). Measure restarts of a site that got its
			// next ticket, as any site up for more than a moment has.
			if keep && !lastStart.IsZero() {
				m.waitTicket(ctx, lastStart, 3*time.Second)
			}
			if err := m.stopSite(ctx); err != nil {
				return rs, err
			}
			if !keep {
				if err := os.RemoveAll(m.stateDir); err != nil {
					return rs, fmt.Errorf("bench: %w", err)
				}
				if err := os.Mkdir(m.stateDir, 0o700); err != nil {
					return rs, fmt.Errorf("bench: %w", err)
				}
			}
			at := time.Now()
			lastStart = at
			if err := m.startSite(); err != nil {
				return rs, err
			}
			logPath := m.siteProc.Log
			var firstLog, firstEcho, isRunning, isConnected time.Time
			for firstLog.IsZero() || firstEcho.IsZero() || isRunning.IsZero() || isConnected.IsZero() {
				now := time.Now()
				if b, err := os.ReadFile(logPath); err == nil && len(b) > 0 {
					for _, x := range []struct {
						t    *time.Time
						text string
					}{{&firstLog, ""}, {&isRunning, "msg=\"godwit running\""}, {&isConnected, "msg=\"peer connected\""}} {
						if x.t.IsZero() && strings.Contains(string(b), x.text) {
							*x.t = now
						}
					}
				}
				if firstEcho.IsZero() {
					if a, ok := m.stream.firstArrivalAfter(at); ok {
						firstEcho = a
					}
				}
				if now.Sub(at) > mobRecover {
					return rs, fmt.Errorf("bench: restart %d: no echo, or no \"godwit running\" and \"peer connected\", within %v of the start%s", i+1, mobRecover, m.logs())
				}
				if err := measure.Sleep(ctx, 500*time.Microsecond); err != nil {
					return rs, err
				}
			}
			took := firstEcho.Sub(at)
			starts = append(starts, firstLog.Sub(at))
			running[mode] = append(running[mode], isRunning.Sub(at))
			connected[mode] = append(connected[mode], isConnected.Sub(at))
			// The 0-RTT answer is counted once the handshake completes,
			// which may be after the first echo: wait for it too.
			st, err := m.waitSite(ctx, 5*time.Second, "connected hub", func(s *ctl.Status) bool {
				c := &s.Interface.Connections
				return hubOf(s).ActiveUplink() != "" && (c.ZeroRTTAttempted == 0 || c.ZeroRTTAccepted+c.ZeroRTTRejected > 0)
			})
			if err != nil {
				return rs, err
			}
			if keep {
				zero = append(zero, took)
				if st.Interface.Connections.ZeroRTTAccepted > 0 {
					rs.Accepted++
				}
			} else {
				full = append(full, took)
				if hubOf(st).Resumed {
					rs.Resumed++
				}
			}
			m.log.Info("restart", "zero_rtt", keep, "run", i+1, "first_echo", took.Round(time.Microsecond),
				"first_log", firstLog.Sub(at).Round(time.Microsecond))
		}
	}
	return rs, nil
}

func msList(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

// setDelay sets the relay's one-way delay and returns the median RTT of
// the tunnel then measured by the stream.
func (m *mobLab) setDelay(ctx context.Context, d time.Duration) (float64, error) {
	m.delay.Store(int64(d))
	if err := m.stream.waitFlowing(ctx, 10*time.Second); err != nil {
		return 0, err
	}
	rtt, err := m.stream.rtt(ctx, 500*time.Millisecond)
	return ms(rtt), err
}

// measureMobility builds the mobility lab in lab and measures the
// mobility rows of rs, runs times each. The result holds whatever was
// measured, also with an error.
func measureMobility(ctx context.Context, lab *netlab.Lab, bin string, rs rowSet, runs int, log *slog.Logger) (*mobilityResult, error) {
	res := &mobilityResult{Runs: runs}
	start := time.Now()
	err := measureMobilityInto(ctx, lab, bin, rs, runs, log, res)
	res.Duration = time.Since(start).Round(time.Second).String()
	if err != nil {
		res.Error = err.Error()
	}
	return res, err
}

func measureMobilityInto(ctx context.Context, lab *netlab.Lab, bin string, rs rowSet, runs int, log *slog.Logger, res *mobilityResult) error {
	if v, err := commandOutput(ctx, "", bin, "version"); err == nil {
		res.Version = strings.SplitN(v, "\n", 2)[0]
	}
	log.Info("mobility lab")
	m, err := newMobLab(ctx, lab, bin, log)
	if err != nil {
		return err
	}
	defer m.close()
	for _, d := range []time.Duration{0, mobSwitchDelay} {
		if !rs.switchMBB && !rs.switchNoStandby {
			break
		}
		rtt, err := m.setDelay(ctx, d)
		if err != nil {
			return err
		}
		if rs.switchMBB {
			log.Info("switch", "relay_delay", d, "rtt_ms", rtt, "runs", runs)
			sw, back, err := m.measureSwitch(ctx, runs)
			for _, s := range []*outageSeries{&sw, &back} {
				s.DelayMs, s.RTTMs = ms(d), rtt
				res.Switch = append(res.Switch, *s)
			}
			if err != nil {
				return err
			}
		}
		if rs.switchNoStandby {
			log.Info("switch without standby", "relay_delay", d, "rtt_ms", rtt, "runs", runs)
			sw, err := m.measureNoStandby(ctx, runs)
			sw.DelayMs, sw.RTTMs = ms(d), rtt
			res.Switch = append(res.Switch, sw)
			if err != nil {
				return err
			}
		}
	}
	for _, r := range rs.restart {
		d := time.Duration(r) * time.Millisecond / 2
		rtt, err := m.setDelay(ctx, d)
		if err != nil {
			return err
		}
		log.Info("restart", "relay_delay", d, "rtt_ms", rtt, "runs", runs)
		s, err := m.measureRestart(ctx, runs)
		s.Key, s.DelayMs, s.RTTMs = fmt.Sprintf("restart%d", r), ms(d), rtt
		res.Restart = append(res.Restart, s)
		if err != nil {
			return err
		}
	}
	if m.hubProc.Exited() {
		return fmt.Errorf("bench: the mobility hub exited%s", m.logs())
	}
	return nil
}

// mobilityNotes explain the mobility rows in the report.
var mobilityNotes = []string{
	"mobility: own lab, site with uplinks wifi0 (preferred) and cell0, both veths straight to the hub namespace, no NAT; the site dials a userspace relay in the hub namespace that adds the one-way delay",
	"mobility probe: a UDP datagram every 2 ms from the site's inner address to an echo behind the hub that answers the inner address only; outage = longest gap between echo arrivals from the last one before the event until 300 ms after the first echo of a probe sent after it",
	"switch: wifi0 link down over netlink while cell0 is a validated standby; switch back: wifi0 up with its default route; switch-nostandby: cell0 down beforehand, then wifi0 down and cell0 up at once",
	"restartN: SIGTERM to the site, wait until the hub saw it go, then exec of `ip netns exec ... env ... godwit run` to the first echo; 0-RTT keeps the state dir, full handshake empties it before each start",
}
