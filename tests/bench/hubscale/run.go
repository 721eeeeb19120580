// SPDX-License-Identifier: MIT

package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/tests/bench/measure"
	"github.com/godwit-vpn/godwit/tun/tuntest"
	"github.com/godwit-vpn/godwit/tunnel"
)

// maxSites bounds -sites: every site needs an address in hubInner.
const maxSites = 4000

// Addresses and ports of the lab.
var (
	underHub  = netip.MustParsePrefix("198.18.0.1/24")
	underSite = netip.MustParsePrefix("198.18.0.2/24")
	hubInner  = netip.MustParsePrefix("198.19.0.1/16")
)

const hubPort = 4433

// Bounds on the phases, so a broken hub cannot make the run hang.
const (
	hubStartTimeout = 20 * time.Second
	connectTimeout  = 60 * time.Second
	settle          = 2 * time.Second // after the hub starts and after all sites connected
	replyGrace      = 2 * time.Second // for the last echo replies
)

// report is the whole run, as printed with -json.
type report struct {
	Machine    machine  `json:"machine"`
	Sites      int      `json:"sites"`
	Conns      int      `json:"connections_per_site"`
	Duration   string   `json:"duration"`
	Connected  int      `json:"connected"`             // sites that connected within connectTimeout
	ConnectAll float64  `json:"connect_all_s"`         // from the first dial to the last site's first connection
	ConnectP50 float64  `json:"connect_p50_ms"`        // per site, from the common start
	ConnectP99 float64  `json:"connect_p99_ms"`        //
	ConnectMax float64  `json:"connect_max_ms"`        //
	Reconnects int      `json:"reconnects"`            // connections after each site's first, over the whole run
	HubPeers   int      `json:"hub_peer_connected"`    // "peer connected" lines in the hub's log
	RSSAlone   uint64   `json:"hub_rss_alone_kib"`     // VmRSS before any site
	RSSIdle    uint64   `json:"hub_rss_idle_kib"`      // after the idle phase
	RSSLoad    uint64   `json:"hub_rss_1pps_kib"`      // at the end of the 1 packet/s phase
	PerSite    float64  `json:"hub_kib_per_idle_site"` // (RSSIdle - RSSAlone) / Sites
	CPUIdle    float64  `json:"hub_cpu_idle_pct"`      // of one core
	CPULoad    float64  `json:"hub_cpu_1pps_pct"`      // of one core
	SitesCPU   float64  `json:"sites_process_cpu_1pps_pct"`
	Sent       uint64   `json:"echo_sent"`
	Replies    uint64   `json:"echo_replies"`
	ReplyRatio float64  `json:"reply_ratio"`
	Notes      []string `json:"notes"`
}

// machine describes where the numbers were taken.
type machine struct {
	NProc      int    `json:"nproc"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	LoadBefore string `json:"load_before"` // /proc/loadavg 1, 5, 15 min at the start
	LoadAfter  string `json:"load_after"`  // and at the end
}

// site is one simulated site.
type site struct {
	idx   int
	key   ed25519.PrivateKey
	addr  netip.Addr
	ep    *quicconn.Endpoint
	ch    *tuntest.Channel
	tn    *tunnel.Tunnel
	runc  chan error    // Run's result
	first chan struct{} // closed when the site has all its connections
	took  time.Duration // from the common start to first; valid after first
	ups   atomic.Int32
	reply atomic.Uint64
}

func run(ctx context.Context, o options, log *slog.Logger, stdout, stderr io.Writer) (err error) {
	if o.hubs == 2 {
		return runTwoHubs(ctx, o, log, stdout, stderr)
	}
	o.conns = max(o.conns, 1)
	rep := report{
		Machine:  machine{NProc: runtime.NumCPU(), Kernel: measure.ReadTrim("/proc/sys/kernel/osrelease"), Go: runtime.Version(), LoadBefore: loadAvg()},
		Sites:    o.sites,
		Conns:    o.conns,
		Duration: o.duration.String(),
		Notes: []string{
			"hub: the real godwit daemon; sites: quicconn.Endpoint + tunnel.Tunnel over tuntest.Channel, all in this process",
			"connect: all sites start DialLoop at once (one per connection) after their sockets exist; time until each site has all its connections (handshake + hello)",
			"-conns N > 1: each site announces multipath and monitors each connection as a multipath site does (a heartbeat every 250 ms on the carrying one, every second on the others); the hub keeps a set per site and monitors every connection passively (counters polled every 25 ms, no probes of its own)",
			"CPU: hub utime+stime over the phase's wall time, percent of one core; idle = sites connected, no packets (QUIC keep-alives and control heartbeats still run)",
			"1 pps: each site sends one ICMP echo per second to the hub's inner address, spread evenly over the second; the hub's kernel answers",
		},
	}
	lab, err := netlab.New("gwh")
	if err != nil {
		return err
	}
	defer measure.JoinClose(&err, lab)
	hubNS, sitesNS, err := measure.VethPair(lab, "hub", []netip.Prefix{underHub}, "sites", []netip.Prefix{underSite})
	if err != nil {
		return err
	}
	log.Info("lab ready", "hub", hubNS.Name, "sites", sitesNS.Name, "dir", lab.Dir)
	bin, err := netlab.Godwit()
	if err != nil {
		return err
	}

	_, hubKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("hubscale: %w", err)
	}
	var hubID key.Public
	copy(hubID[:], hubKey.Public().(ed25519.PublicKey))
	sites := make([]*site, o.sites)
	for i := range sites {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("hubscale: %w", err)
		}
		sites[i] = &site{idx: i, key: k, addr: siteAddr(i), first: make(chan struct{}), runc: make(chan error, 1)}
	}

	// The hub alone.
	hub, err := startHub(ctx, lab, hubNS, bin, oneHub, hubKey, sites)
	if err != nil {
		return err
	}
	pid := hub.Cmd.Process.Pid
	if err := measure.Sleep(ctx, settle); err != nil {
		return err
	}
	if rep.RSSAlone, err = measure.VmRSS(pid); err != nil {
		return err
	}
	log.Info("hub up", "pid", pid, "rss_kib", rep.RSSAlone)

	// The sites, from cold.
	sctx, cancelSites := context.WithCancel(ctx)
	var dialers sync.WaitGroup
	defer func() {
		cancelSites()
		dialers.Wait() // DialLoop closes its conns on the way out
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
	if err := makeSites(sctx, sitesNS, key.Public(hubID), sites, o.conns > 1, &dialers); err != nil {
		return err
	}
	log.Info("sites dialing", "count", len(sites))
	start := time.Now()
	hubAddr := netip.AddrPortFrom(underHub.Addr(), hubPort).String()
	for _, s := range sites {
		for j := range o.conns {
			dialers.Go(func() {
				s.ep.DialLoop(sctx, hubAddr, hubID, func(c *quicconn.Conn) {
					var err error
					if o.conns > 1 {
						// As godwit's site does (cmd/godwit/multipath.go): a
						// probe every 250 ms on the carrying connection, every
						// second on the warm ones.
						c.MonitorPath(quicconn.HealthConfig{Probe: time.Second})
						_, seq := c.Multipath()
						err = s.tn.AttachPath(key.Public(hubID), c, tunnel.PathOptions{Name: fmt.Sprint(j), Sequenced: seq,
							Carrying: func(carrying bool) {
								if carrying {
									c.SetProbe(250 * time.Millisecond)
								} else {
									c.SetProbe(time.Second)
								}
							}})
					} else {
						err = s.tn.Attach(key.Public(hubID), c)
					}
					if err != nil {
						return // only after shutdown
					}
					if s.ups.Add(1) == int32(o.conns) {
						s.took = time.Since(start)
						close(s.first)
					}
				})
			})
		}
	}
	deadline := time.NewTimer(connectTimeout)
	defer deadline.Stop()
	var took []time.Duration
	for _, s := range sites {
		select {
		case <-s.first:
			took = append(took, s.took)
		case <-deadline.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rep.Connected = len(took)
	if len(took) > 0 {
		slices.Sort(took)
		ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
		rep.ConnectAll = took[len(took)-1].Seconds()
		rep.ConnectP50 = ms(took[measure.Rank(len(took), 50)])
		rep.ConnectP99 = ms(took[measure.Rank(len(took), 99)])
		rep.ConnectMax = ms(took[len(took)-1])
	}
	log.Info("sites connected", "connected", rep.Connected, "of", len(sites), "all_s", fmt.Sprintf("%.2f", rep.ConnectAll))
	if rep.Connected < len(sites) {
		return fmt.Errorf("hubscale: only %d of %d sites connected within %v%s", rep.Connected, len(sites), connectTimeout, measure.ProcLogs(hub))
	}

	// Idle.
	if err := measure.Sleep(ctx, settle); err != nil {
		return err
	}
	log.Info("idle phase", "duration", o.duration)
	if rep.CPUIdle, err = cpuPercent(ctx, pid, o.duration, nil); err != nil {
		return err
	}
	if rep.RSSIdle, err = measure.VmRSS(pid); err != nil {
		return err
	}
	rep.PerSite = (float64(rep.RSSIdle) - float64(rep.RSSAlone)) / float64(len(sites))

	// One packet per second per site.
	log.Info("1 pps phase", "duration", o.duration, "pps", len(sites))
	self0, err := measure.ProcCPU(os.Getpid())
	if err != nil {
		return err
	}
	t0 := time.Now()
	rep.CPULoad, err = cpuPercent(ctx, pid, o.duration, func(ctx context.Context) {
		rep.Sent = sendPings(ctx, sites, o.duration)
	})
	if err != nil {
		return err
	}
	if self1, err := measure.ProcCPU(os.Getpid()); err == nil {
		rep.SitesCPU = 100 * (self1 - self0) / time.Since(t0).Seconds()
	}
	if rep.RSSLoad, err = measure.VmRSS(pid); err != nil {
		return err
	}
	if err := measure.Sleep(ctx, replyGrace); err != nil {
		return err
	}
	for _, s := range sites {
		rep.Replies += s.reply.Load()
		rep.Reconnects += int(s.ups.Load()) - o.conns
	}
	if rep.Sent > 0 {
		rep.ReplyRatio = float64(rep.Replies) / float64(rep.Sent)
	}
	rep.HubPeers = strings.Count(hub.Output(), "peer connected")
	rep.Machine.LoadAfter = loadAvg()
	if hub.Exited() {
		return fmt.Errorf("hubscale: the hub exited during the run%s", measure.ProcLogs(hub))
	}

	if err := measure.WriteReport(stdout, stderr, o.json, &rep, func(w io.Writer) { writeTable(w, &rep) }); err != nil {
		return err
	}
	return nil
}

// siteAddr is the inner address of site i: 198.19.0.2 and up.
func siteAddr(i int) netip.Addr {
	b := hubInner.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) + 2 + uint32(i)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// hubSpec is what differs between the hubs of a run.
type hubSpec struct {
	name      string       // of its directory and log: "hub", "hub-a", "hub-b"
	inner     netip.Prefix // its TUN address
	listen    netip.AddrPort
	connected bool // routes = "connected": a site's route only while it prefers the hub
}

// oneHub is the hub of the single-hub mode.
var oneHub = hubSpec{name: "hub", inner: hubInner, listen: netip.AddrPortFrom(underHub.Addr(), hubPort)}

// hubConfig renders the hub's TOML with one peer per site.
func hubConfig(h hubSpec, ifname, keyFile, stateDir string, sites []*site) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[interface]\nname = %q\nprivate_key_file = %q\naddresses = [%q]\nlisten = %q\nstate_dir = %q\n",
		ifname, keyFile, h.inner.String(), h.listen.String(), stateDir)
	if h.connected {
		b.WriteString("routes = \"connected\"\n")
	}
	for _, s := range sites {
		fmt.Fprintf(&b, "\n[[peer]]\nname = \"site-%04d\"\npublic_key = %q\nallowed_ips = [%q]\n",
			s.idx, base64.StdEncoding.EncodeToString(s.key.Public().(ed25519.PublicKey)), netip.PrefixFrom(s.addr, 32).String())
	}
	return b.String()
}

// startHub writes the hub's key and config, starts `godwit run` in ns and
// waits until it logs "godwit running".
func startHub(ctx context.Context, lab *netlab.Lab, ns *netlab.NS, bin string, h hubSpec, key ed25519.PrivateKey, sites []*site) (*netlab.Proc, error) {
	dir := filepath.Join(lab.Dir, h.name)
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		return nil, fmt.Errorf("hubscale: %w", err)
	}
	keyFile := filepath.Join(dir, h.name+".key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key.Seed())+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("hubscale: %w", err)
	}
	cfg := filepath.Join(dir, h.name+".toml")
	if err := os.WriteFile(cfg, []byte(hubConfig(h, "gwh"+lab.ID, keyFile, filepath.Join(dir, "state"), sites)), 0o600); err != nil {
		return nil, fmt.Errorf("hubscale: %w", err)
	}
	d, err := ns.StartDaemon("godwit-"+h.name, bin, cfg)
	if err != nil {
		return nil, err
	}
	p := d.Proc
	if err := p.WaitLog(ctx, hubStartTimeout, "godwit running"); err != nil {
		return nil, fmt.Errorf("hubscale: %s did not start: %w%s", h.name, err, measure.ProcLogs(p))
	}
	if c := measure.ReadTrim(fmt.Sprintf("/proc/%d/comm", p.Cmd.Process.Pid)); c != "godwit" {
		return nil, fmt.Errorf("hubscale: %s pid %d is %q, not godwit", h.name, p.Cmd.Process.Pid, c)
	}
	return p, nil
}

// makeSites creates every site's Endpoint (its UDP socket inside ns) and
// Tunnel with the hub hubID as its one peer, and starts the Tunnel and a
// reader that counts echo replies (on wg), all stopping when ctx is done
// and the Channel is closed.
func makeSites(ctx context.Context, ns *netlab.NS, hubID key.Public, sites []*site, multipath bool, wg *sync.WaitGroup) error {
	err := ns.Do(func() error {
		for _, s := range sites {
			ep, err := quicconn.NewEndpoint(quicconn.Config{PrivateKey: s.key, NodeName: fmt.Sprintf("site-%04d", s.idx), Multipath: multipath})
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
		s.ch = tuntest.NewChannel(8)
		tn, err := tunnel.New(s.ch, tunnel.Config{Addresses: []netip.Prefix{netip.PrefixFrom(s.addr, 32)}, MTU: 1300, QueueLen: 64})
		if err != nil {
			return fmt.Errorf("hubscale: site %d: %w", s.idx, err)
		}
		if err := tn.SetPeers([]tunnel.PeerConfig{{ID: hubID, Name: "hub", AllowedIPs: []netip.Prefix{hubInner.Masked()}}}); err != nil {
			return fmt.Errorf("hubscale: site %d: %w", s.idx, err)
		}
		s.tn = tn
		go func() { s.runc <- tn.Run(ctx) }()
		wg.Go(func() { s.readReplies(ctx) })
	}
	return nil
}

// readReplies counts the echo replies to this site that the tunnel writes
// to its TUN, until ctx is done.
func (s *site) readReplies(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-s.ch.FromTunnel:
			if isEchoReply(p, s.addr, uint16(s.idx)) {
				s.reply.Add(1)
			}
		}
	}
}

// isEchoReply reports whether p is an IPv4 ICMP echo reply to dst with
// identifier id.
func isEchoReply(p []byte, dst netip.Addr, id uint16) bool {
	_, ok := echoReplySeq(p, dst, id)
	return ok
}

// echoReplySeq returns the sequence number of p and true if p is an IPv4
// ICMP echo reply to dst with identifier id.
func echoReplySeq(p []byte, dst netip.Addr, id uint16) (seq uint16, ok bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return 0, false
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || len(p) < ihl+8 || p[9] != 1 {
		return 0, false
	}
	if netip.AddrFrom4([4]byte(p[16:20])) != dst {
		return 0, false
	}
	icmp := p[ihl:]
	if icmp[0] != 0 || icmp[1] != 0 || binary.BigEndian.Uint16(icmp[4:6]) != id {
		return 0, false
	}
	return binary.BigEndian.Uint16(icmp[6:8]), true
}

// sendPings makes every site send one echo request per second to the hub's
// inner address for d, site i at offset i/len(sites) of each second, and
// returns how many were handed to the tunnels. A full TUN queue counts as
// not sent.
func sendPings(ctx context.Context, sites []*site, d time.Duration) uint64 {
	var sent uint64
	start := time.Now()
	rounds := int(d / time.Second)
	step := time.Second / time.Duration(len(sites))
	for r := range rounds {
		for i, s := range sites {
			at := start.Add(time.Duration(r)*time.Second + time.Duration(i)*step)
			if err := measure.Sleep(ctx, time.Until(at)); err != nil {
				return sent
			}
			select {
			case s.ch.ToTunnel <- tuntest.Ping(s.addr, hubInner.Addr(), uint16(s.idx), uint16(r), 56):
				sent++
			default:
			}
		}
	}
	// Fill up to d if d is not a whole number of seconds.
	_ = measure.Sleep(ctx, time.Until(start.Add(d)))
	return sent
}

// cpuPercent measures pid's CPU use over d, in percent of one core, while
// during (if not nil) runs; during should return after about d.
func cpuPercent(ctx context.Context, pid int, d time.Duration, during func(context.Context)) (float64, error) {
	c0, err := measure.ProcCPU(pid)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	if during != nil {
		during(ctx)
	} else if err := measure.Sleep(ctx, d); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c1, err := measure.ProcCPU(pid)
	if err != nil {
		return 0, err
	}
	return 100 * (c1 - c0) / time.Since(t0).Seconds(), nil
}

// loadAvg is [measure.LoadAvg], or "unknown" when /proc/loadavg cannot be
// read.
func loadAvg() string { return cmp.Or(measure.LoadAvg(), "unknown") }
