// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// Underlay addresses of the veth between the namespaces.
var (
	underHub  = netip.MustParsePrefix("198.18.0.1/24")
	underSite = netip.MustParsePrefix("198.18.0.2/24")
	under6Hub = netip.MustParsePrefix("2001:db8::1/64")
	under6Sit = netip.MustParsePrefix("2001:db8::2/64")
)

// sinkPort is the TCP port of the throughput sink on the hub's inner address.
const sinkPort = 5201

// Ping series timing (the brief: 100 pings at 10 ms intervals).
const (
	pingInterval = 10 * time.Millisecond
	pingTimeout  = time.Second
)

// topo is the two-namespace lab shared by both daemons.
type topo struct {
	lab        *netlab.Lab
	hub, site  *netlab.NS
	wgBin      string // wireguard-go binary, or "" when not measured
	godwitBin  string // godwit binary, or "" when not measured
	profile    bool   // Godwit daemons serve pprof (-profile)
	mtu        int    // Godwit's inner MTU (-mtu), 0 for the default
	hubVethIP  netip.Addr
	siteVethIP netip.Addr
}

// tunnelUp is one running daemon pair.
type tunnelUp struct {
	hubAddr netip.Addr // inner address of the hub end: ping target and TCP sink
	// proto and port are the tunnel's transport ("udp", or "tcp" for
	// Godwit's TCP path) and the hub's port: the underlay loss rule
	// matches them.
	proto   string
	port    int
	mtu     int            // inner MTU of the site's interface
	procs   []*netlab.Proc // hub and site daemon
	version string
	// drops, if not nil, reads the daemons' own drop counters (see
	// dropRcvbuf); wireguard-go has none.
	drops   func(context.Context) (map[string]uint64, error)
	cleanup func() // or nil; runs after the processes stopped
}

// startOpts say how to start one daemon pair.
type startOpts struct {
	// tag makes the names of the processes, logs and state of this start
	// unique in the lab ("r2", "r2-tcp1-cpu1"), since every round starts
	// the daemons again.
	tag string
	// hubCPUs, if not 0, starts the hub daemon under taskset on CPUs
	// 0..hubCPUs-1.
	hubCPUs int
	// overTCP runs Godwit on its TCP path, UDP blocked (the overtcp rows).
	overTCP bool
}

// starter starts a daemon pair; the returned tunnelUp is non-nil once a
// process was started, also with an error, and lists the processes to stop.
type starter func(context.Context, *topo, startOpts) (*tunnelUp, error)

// result is everything measured for one daemon in one round.
type result struct {
	Name       string      `json:"name"`
	Version    string      `json:"version,omitempty"`
	MTU        int         `json:"inner_mtu,omitempty"`
	TCP        []tcpResult `json:"tcp,omitempty"`
	PingTunnel *pingStats  `json:"ping_tunnel,omitempty"`
	PingVeth   *pingStats  `json:"ping_veth,omitempty"`
	// Profiles are pprof tops of the daemons during the tcp1 row of the
	// first round (-profile).
	Profiles []profileTop `json:"profiles,omitempty"`
	Error    string       `json:"error,omitempty"`
}

// round is one round of the classic rows: every row for each daemon.
type round struct {
	Round     int      `json:"round"` // from 1
	Order     []string `json:"order"` // the daemons in the order measured
	Godwit    *result  `json:"godwit,omitempty"`
	WireGuard *result  `json:"wireguard_go,omitempty"`
}

// report is the whole run, as printed with -json.
type report struct {
	Machine  machine      `json:"machine"`
	Duration string       `json:"duration"`
	Warmup   string       `json:"warmup"`
	Rows     rowSet       `json:"-"`
	Impair   []impairment `json:"impairments,omitempty"`
	Pinned   []pinnedRow  `json:"cpu_starved,omitempty"`
	OverTCP  []tcpPathRow `json:"over_tcp,omitempty"`
	Streams  []int        `json:"streams"`
	Pings    bool         `json:"pings"`
	// Rounds are the rounds of the classic rows, in the order run.
	Rounds []round `json:"rounds,omitempty"`
	// Summary is the table's rows over the rounds: medians with min and
	// max, the ratio or difference of the daemons per round, the target
	// and the verdict.
	Summary []summaryRow `json:"summary,omitempty"`
	// Mobility holds the mobility rows (Godwit only), or nil.
	Mobility *mobilityResult `json:"mobility,omitempty"`
	// Multipath holds the multipath rows (Godwit only), or nil.
	Multipath *multipathResult `json:"multipath,omitempty"`
	Notes     []string         `json:"notes"`
}

func run(ctx context.Context, o options, log *slog.Logger, stdout, stderr io.Writer) (err error) {
	rep := report{
		Machine:  readMachine(),
		Duration: o.duration.String(),
		Warmup:   o.warmup.String(),
		Impair:   o.rows.impair,
		Pinned:   o.rows.pinned,
		OverTCP:  o.rows.overTCP,
		Streams:  o.rows.streams,
		Pings:    o.rows.ping,
		Rows:     o.rows,
		Notes: []string{
			"rounds: each round measures every classic row for both daemons, each daemon started afresh; Godwit first in odd rounds, wireguard-go first in even ones (G W, W G, G W, ...); per row the median over the rounds with min..max, and the median of the per-round Godwit/wireguard-go ratios (ping, underlay drop: differences) with min..max",
			"TCP: Go sender in the site namespace to a Go sink on the hub's inner address; bytes counted by the sink",
			"CPU: utime+stime of both daemon processes (hub and site together) during the measured TCP interval, per 1e9 bytes received",
			"inner TCP retransmits: TcpRetransSegs of the site (sending) namespace's /proc/net/snmp over the measured interval, per 1e9 bytes received",
			"drops inside the daemons: counters that grew over the measured interval, per 1e9 bytes received, by \"<hub|site> <source>/<reason>\": udp/rcvbuf_errors and udp/sndbuf_errors from /proc/net/snmp (Udp + Udp6) of each namespace, for both daemons; for Godwit also both daemons' control-socket status: quic/dos_prevention, quic/receive_queue_full, quic/send_too_large (quic-go, per path), inbound/* and outbound/* (the tunnel: tun_queue_full, queue_full = the peer's send queue, ...), tun/too_many_segments, tun/write_errors, socket/unreachable_sends; quic-go's datagram send queue blocks rather than drops; outbound/no_route (packets the kernel sends into the TUN for no peer, not tunnel traffic) is listed but left out of the total. wireguard-go exposes no drop counters: only its namespaces' UDP counters are counted",
			"tcpN-cpuC: the hub (receiving) daemon started under taskset -c 0..C-1 (so its Go runtime also starts with GOMAXPROCS=C), the sender, the sink and the site daemon unpinned",
			"lossP: nft numgen random drop of P % of UDP to the hub's tunnel port in the hub namespace's prerouting; gso_max_segs 1 on the site veth so each datagram is dropped on its own",
			"overtcp, overtcp-lossP (Godwit only): the hub with listen_tcp, the site with endpoint_tcp, every UDP packet to the hub's port dropped in the hub namespace, so the tunnel runs on its TLS-over-TCP path; one TCP stream, clean or with the lossP rule on the outer TCP segments to the hub's TCP port; compared with Godwit's own tcp1 over UDP and with wireguard-go's tcp1 and lossP of the same round",
			"tbfM: tbf rate M mbit burst " + tbfBurst + " latency " + tbfLatency + " on the site's veth (site -> hub direction)",
			"ping: ICMP echo from the site namespace, idle tunnel; veth = bare underlay with the daemons idle",
			"inner MTU: each project's default (wireguard-go 1420, Godwit its config default)",
		},
	}
	lab, err := netlab.New("gwb")
	if err != nil {
		return err
	}
	defer measure.JoinClose(&err, lab)
	t := &topo{lab: lab, profile: o.profile != "", mtu: o.mtu}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return fmt.Errorf("bench: -profile: %w", err)
		}
	}
	if o.rows.classic() {
		if err := t.build(); err != nil {
			return err
		}
		log.Info("lab ready", "hub", t.hub.Name, "site", t.site.Name, "dir", lab.Dir)
	}

	type impl struct {
		name  string
		key   string // -only value
		start starter
	}
	impls := []impl{
		{"Godwit", "godwit", startGodwit},
		{"wireguard-go", "wireguard", startWireGuard},
	}
	// Build first, so compile time never overlaps a measurement.
	for _, im := range impls {
		if o.only != "" && o.only != im.key || !o.rows.classic() && im.key != "godwit" {
			continue
		}
		var berr error
		switch im.key {
		case "godwit":
			log.Info("building godwit")
			t.godwitBin, berr = netlab.Godwit()
		case "wireguard":
			log.Info("building wireguard-go from the module proxy")
			t.wgBin, berr = buildWireGuard(ctx, lab.Dir)
		}
		if berr != nil {
			return berr
		}
	}

	var failed []string
	for n := 1; n <= o.rounds && o.rows.classic(); n++ {
		rd := round{Round: n}
		order := slices.Clone(impls)
		if n%2 == 0 {
			slices.Reverse(order)
		}
		for _, im := range order {
			if o.only != "" && o.only != im.key {
				continue
			}
			log.Info("measuring", "round", n, "daemon", im.name)
			r, merr := t.measure(ctx, o, log, im.name, im.start, n)
			rd.Order = append(rd.Order, im.name)
			if im.key == "godwit" {
				rd.Godwit = r
			} else {
				rd.WireGuard = r
			}
			if ctx.Err() != nil {
				return fmt.Errorf("bench: interrupted; removing the lab: %w", ctx.Err())
			}
			if merr != nil {
				log.Error("measurement failed", "round", n, "daemon", im.name, "err", merr)
				failed = append(failed, fmt.Sprintf("%s in round %d", im.name, n))
			}
		}
		rep.Rounds = append(rep.Rounds, rd)
	}

	if o.rows.mobility() {
		rep.Notes = append(rep.Notes, mobilityNotes...)
		var merr error
		rep.Mobility, merr = measureMobility(ctx, lab, t.godwitBin, o.rows, o.runs, log)
		if ctx.Err() != nil {
			return fmt.Errorf("bench: interrupted; removing the lab: %w", ctx.Err())
		}
		if merr != nil {
			log.Error("mobility measurement failed", "err", merr)
			failed = append(failed, "Godwit mobility")
		}
	}

	if o.rows.multipath() {
		rep.Notes = append(rep.Notes, multipathNotes...)
		var merr error
		rep.Multipath, merr = measureMultipath(ctx, lab, t.godwitBin, o, log)
		if ctx.Err() != nil {
			return fmt.Errorf("bench: interrupted; removing the lab: %w", ctx.Err())
		}
		if merr != nil {
			log.Error("multipath measurement failed", "err", merr)
			failed = append(failed, "Godwit multipath")
		}
	}

	rep.Machine.LoadAfter = measure.LoadAvg()
	rep.Summary = summarize(rows(&rep))
	if err := measure.WriteReport(stdout, stderr, o.json, &rep, func(w io.Writer) { writeTable(w, &rep) }); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: %s failed (see above)", strings.Join(failed, ", "))
	}
	return nil
}

// build makes the namespaces and the veth.
func (t *topo) build() (err error) {
	t.hub, t.site, err = measure.VethPair(t.lab, "hub", []netip.Prefix{underHub, under6Hub}, "site", []netip.Prefix{underSite, under6Sit})
	t.hubVethIP, t.siteVethIP = underHub.Addr(), underSite.Addr()
	return err
}

// measure measures the daemon called name in round n: one pair for the
// ping, tcpN and impaired rows, then one pair with a pinned hub per
// tcpN-cpuC row, each started and stopped again. The result holds whatever
// was measured, plus the first error if any (after which the rest of the
// round is skipped for this daemon).
func (t *topo) measure(ctx context.Context, o options, log *slog.Logger, name string, start starter, n int) (*result, error) {
	r := &result{Name: name}
	var err error
	if o.rows.ping || len(o.rows.streams) > 0 || len(o.rows.impair) > 0 {
		err = t.measureInto(ctx, o, log, r, start, session{round: n})
	}
	for i := range o.rows.pinned {
		if err != nil {
			break
		}
		err = t.measureInto(ctx, o, log, r, start, session{round: n, pinned: &o.rows.pinned[i]})
	}
	if err == nil && len(o.rows.overTCP) > 0 && name == "Godwit" {
		err = t.measureInto(ctx, o, log, r, start, session{round: n, overTCP: true})
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r, err
}

// session is what one started daemon pair measures: the pinned row, the
// overtcp rows, or (neither) the ping, tcpN and impaired rows.
type session struct {
	round   int
	pinned  *pinnedRow
	overTCP bool
}

func (t *topo) measureInto(ctx context.Context, o options, log *slog.Logger, r *result, start starter, sess session) (err error) {
	opts := startOpts{tag: fmt.Sprintf("r%d", sess.round)}
	if sess.pinned != nil {
		opts.tag += "-" + sess.pinned.Key
		opts.hubCPUs = sess.pinned.CPUs
	}
	if sess.overTCP {
		opts.tag += "-overtcp"
		opts.overTCP = true
	}
	up, err := start(ctx, t, opts)
	if up != nil {
		defer func() {
			if serr := stopProcs(up.procs); serr != nil {
				err = errors.Join(err, serr)
			}
			if up.cleanup != nil {
				up.cleanup()
			}
		}()
	}
	if err != nil {
		return err
	}
	r.MTU, r.Version = up.mtu, up.version
	if err := t.site.WaitPing(up.hubAddr, 20*time.Second); err != nil {
		return fmt.Errorf("bench: tunnel not passing traffic: %w%s", err, measure.ProcLogs(up.procs...))
	}
	var pids []int
	for _, p := range up.procs {
		pids = append(pids, p.Cmd.Process.Pid)
	}
	if err := checkExeced(pids); err != nil {
		return err
	}
	if opts.hubCPUs > 0 {
		if err := checkPinned(pids[0], cpuList(opts.hubCPUs)); err != nil {
			return err
		}
	}

	if o.rows.ping && sess.pinned == nil && !sess.overTCP {
		log.Info("ping", "round", sess.round, "daemon", r.Name, "count", o.pings)
		if r.PingTunnel, err = t.ping(up.hubAddr, o.pings); err != nil {
			return err
		}
		if r.PingVeth, err = t.ping(t.hubVethIP, o.pings); err != nil {
			return err
		}
	}

	sink := netip.AddrPortFrom(up.hubAddr, sinkPort)
	tcp := func(n int, during func(context.Context)) (tcpResult, error) {
		return measureTCP(ctx, tcpParams{
			streams: n,
			warmup:  o.warmup,
			dur:     o.duration,
			listen:  func() (net.Listener, error) { return t.hub.ListenTCP(sink.String()) },
			dial: func(ctx context.Context, a net.Addr) (net.Conn, error) {
				return t.site.DialTCP(ctx, a.String())
			},
			cpu:      func() (float64, error) { return cpuOf(pids) },
			counters: func(ctx context.Context) (snapshot, error) { return t.readCounters(ctx, up.drops) },
			during:   during,
		})
	}
	done := func(res tcpResult) error {
		r.TCP = append(r.TCP, res)
		log.Info("tcp done", "round", sess.round, "daemon", r.Name, "row", res.Row, "mbit/s", fmt.Sprintf("%.0f", res.Mbps),
			"cpu_s/GB", fmt.Sprintf("%.2f", res.CPUPerGB), "retrans/GB", fmt.Sprintf("%.0f", res.RetransPerGB),
			"drops/GB", fmt.Sprintf("%.0f", res.DropsPerGB))
		// Let queues drain so one run does not eat into the next.
		return measure.Sleep(ctx, 500*time.Millisecond)
	}
	if p := sess.pinned; p != nil {
		log.Info("tcp", "round", sess.round, "daemon", r.Name, "row", p.Key, "duration", o.duration)
		res, err := tcp(p.Streams, nil)
		res.Row, res.HubCPUs = p.Key, p.CPUs
		if err != nil {
			return fmt.Errorf("bench: %s: %w%s", p.Key, err, measure.ProcLogs(up.procs...))
		}
		if err := done(res); err != nil {
			return err
		}
		return checkRunning(up.procs)
	}
	if sess.overTCP {
		for _, row := range o.rows.overTCP {
			log.Info("tcp", "round", sess.round, "daemon", r.Name, "row", row.Key, "duration", o.duration)
			var res tcpResult
			var err error
			if row.LossPct == 0 {
				res, err = tcp(1, nil)
			} else {
				res, err = t.measureImpaired(ctx, impairment{Key: row.Key, LossPct: row.LossPct}, up.proto, up.port,
					func() (tcpResult, error) { return tcp(1, nil) })
			}
			res.Row = row.Key
			if err != nil {
				return fmt.Errorf("bench: %s: %w%s", row.Key, err, measure.ProcLogs(up.procs...))
			}
			if err := done(res); err != nil {
				return err
			}
		}
		return checkRunning(up.procs)
	}
	for _, n := range o.rows.streams {
		log.Info("tcp", "round", sess.round, "daemon", r.Name, "streams", n, "duration", o.duration)
		var during func(context.Context)
		if n == 1 && t.profile && r.Name == "Godwit" && sess.round == 1 {
			during = func(ctx context.Context) {
				log.Info("profiling", "daemon", r.Name, "seconds", profileSeconds, "dir", o.profile)
				var perr error
				r.Profiles, perr = captureProfiles(ctx, o.profile, t.godwitBin, []profTarget{
					{"godwit-hub", t.hub}, {"godwit-site", t.site}})
				if perr != nil {
					log.Error("profiles incomplete", "err", perr)
				}
			}
		}
		res, err := tcp(n, during)
		res.Row = fmt.Sprintf("tcp%d", n)
		if err != nil {
			return fmt.Errorf("bench: %d streams: %w%s", n, err, measure.ProcLogs(up.procs...))
		}
		if err := done(res); err != nil {
			return err
		}
	}
	for _, im := range o.rows.impair {
		log.Info("tcp", "round", sess.round, "daemon", r.Name, "streams", 1, "impairment", im.Key, "duration", o.duration)
		res, err := t.measureImpaired(ctx, im, up.proto, up.port, func() (tcpResult, error) { return tcp(1, nil) })
		res.Row = im.Key
		if err != nil {
			return fmt.Errorf("bench: 1 stream, %s: %w%s", im.Key, err, measure.ProcLogs(up.procs...))
		}
		if err := done(res); err != nil {
			return err
		}
	}
	return checkRunning(up.procs)
}

// checkRunning fails if a daemon exited.
func checkRunning(procs []*netlab.Proc) error {
	for _, p := range procs {
		if p.Exited() {
			return fmt.Errorf("bench: %s exited during the measurement%s", p.Name, measure.ProcLogs(procs...))
		}
	}
	return nil
}

// cpuList is the taskset list of CPUs 0..n-1.
func cpuList(n int) string {
	if n == 1 {
		return "0"
	}
	return fmt.Sprintf("0-%d", n-1)
}

// checkPinned makes sure process pid may only run on the CPUs of list (as
// /proc/<pid>/status Cpus_allowed_list shows them).
func checkPinned(pid int, list string) error {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return fmt.Errorf("bench: pid %d: %w", pid, err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			if got := strings.TrimSpace(v); got != list {
				return fmt.Errorf("bench: pid %d runs on CPUs %s, want %s", pid, got, list)
			}
			return nil
		}
	}
	return fmt.Errorf("bench: pid %d: no Cpus_allowed_list", pid)
}

// measureImpaired runs measure with im in place on the underlay and
// removes it again, also on error.
func (t *topo) measureImpaired(ctx context.Context, im impairment, proto string, port int, measure func() (tcpResult, error)) (res tcpResult, err error) {
	a, err := t.impair(ctx, im, proto, port)
	if err != nil {
		return res, err
	}
	defer func() {
		if uerr := a.undo(); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	res, err = measure()
	res.Impairment = im.Key
	if err != nil {
		return res, err
	}
	res.UnderlayDropPct, err = a.dropPct()
	return res, err
}

// ping runs one series of count echo requests from the site to dst.
func (t *topo) ping(dst netip.Addr, count int) (*pingStats, error) {
	pr, err := t.site.Ping(dst, count, pingInterval, pingTimeout)
	if err != nil {
		return nil, err
	}
	st := summarise(pr.Sent, pr.RTTs)
	return &st, nil
}

// checkExeced makes sure each pid is the daemon itself and not a wrapper
// (ip netns exec, env, taskset and the taskset script exec, so the pid
// must name none of them), since the CPU accounting reads these pids.
func checkExeced(pids []int) error {
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil {
			return fmt.Errorf("bench: pid %d: %w", pid, err)
		}
		if c := strings.TrimSpace(string(b)); c == "ip" || c == "env" || c == "taskset" || c == "sh" {
			return fmt.Errorf("bench: pid %d is still %q, not the daemon", pid, c)
		}
	}
	return nil
}

// stopProcs sends SIGTERM to every process, waits up to 5 s, then SIGKILLs
// what is left, so the next daemon never runs beside this one.
func stopProcs(procs []*netlab.Proc) error {
	for _, p := range procs {
		_ = p.Signal(syscall.SIGTERM) // fails only if it already exited
	}
	var errs []error
	for _, p := range procs {
		if _, err := p.Wait(5 * time.Second); err == nil {
			continue
		}
		_ = p.Signal(syscall.SIGKILL)
		if _, err := p.Wait(5 * time.Second); err != nil {
			errs = append(errs, fmt.Errorf("bench: %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// linkMTU reads the MTU of ifname in ns.
func linkMTU(ns *netlab.NS, ifname string) (int, error) {
	out, err := ns.Exec("ip", "-o", "link", "show", "dev", ifname)
	if err != nil {
		return 0, err
	}
	return parseLinkMTU(out)
}

// parseLinkMTU finds "mtu N" in one line of `ip -o link` output.
func parseLinkMTU(out string) (int, error) { return parseLinkInt(out, "mtu") }

// parseLinkInt finds "key N" (N >= 1) in `ip -o link` output.
func parseLinkInt(out, key string) (int, error) {
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == key {
			n, err := strconv.Atoi(f[i+1])
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("bench: bad %s %q in %q", key, f[i+1], out)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("bench: no %s in %q", key, out)
}

// commandOutput runs a command with stdin and returns its trimmed stdout.
func commandOutput(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("bench: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
