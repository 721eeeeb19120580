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
	hubAddr netip.Addr     // inner address of the hub end: ping target and TCP sink
	port    int            // the hub's UDP port (the underlay loss rule matches it)
	mtu     int            // inner MTU of the site's interface
	procs   []*netlab.Proc // hub and site daemon
	version string
	cleanup func() // or nil; runs after the processes stopped
}

// result is everything measured for one daemon.
type result struct {
	Name       string      `json:"name"`
	Version    string      `json:"version,omitempty"`
	MTU        int         `json:"inner_mtu,omitempty"`
	TCP        []tcpResult `json:"tcp,omitempty"`
	PingTunnel *pingStats  `json:"ping_tunnel,omitempty"`
	PingVeth   *pingStats  `json:"ping_veth,omitempty"`
	// Profiles are pprof tops of the daemons during the tcp1 row (-profile).
	Profiles []profileTop `json:"profiles,omitempty"`
	Error    string       `json:"error,omitempty"`
}

// report is the whole run, as printed with -json.
type report struct {
	Machine   machine      `json:"machine"`
	Duration  string       `json:"duration"`
	Warmup    string       `json:"warmup"`
	Rows      rowSet       `json:"-"`
	Impair    []impairment `json:"impairments,omitempty"`
	Streams   []int        `json:"streams"`
	Pings     bool         `json:"pings"`
	Godwit    *result      `json:"godwit,omitempty"`
	WireGuard *result      `json:"wireguard_go,omitempty"`
	// Mobility holds the mobility rows (Godwit only), or nil.
	Mobility *mobilityResult `json:"mobility,omitempty"`
	Notes    []string        `json:"notes"`
}

func run(ctx context.Context, o options, log *slog.Logger, stdout, stderr io.Writer) (err error) {
	rep := report{
		Machine:  readMachine(),
		Duration: o.duration.String(),
		Warmup:   o.warmup.String(),
		Impair:   o.rows.impair,
		Streams:  o.rows.streams,
		Pings:    o.rows.ping,
		Rows:     o.rows,
		Notes: []string{
			"TCP: Go sender in the site namespace to a Go sink on the hub's inner address; bytes counted by the sink",
			"CPU: utime+stime of both daemon processes (hub and site together) during the measured TCP interval, per 1e9 bytes received",
			"lossP: nft numgen random drop of P % of UDP to the hub's tunnel port in the hub namespace's prerouting; gso_max_segs 1 on the site veth so each datagram is dropped on its own",
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
		start func(context.Context, *topo) (*tunnelUp, error)
		res   **result
	}
	impls := []impl{
		{"Godwit", "godwit", startGodwit, &rep.Godwit},
		{"wireguard-go", "wireguard", startWireGuard, &rep.WireGuard},
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
	for _, im := range impls {
		if o.only != "" && o.only != im.key || !o.rows.classic() {
			continue
		}
		log.Info("measuring", "daemon", im.name)
		r, merr := t.measure(ctx, o, log, im.name, im.start)
		*im.res = r
		if ctx.Err() != nil {
			return fmt.Errorf("bench: interrupted; removing the lab: %w", ctx.Err())
		}
		if merr != nil {
			log.Error("measurement failed", "daemon", im.name, "err", merr)
			failed = append(failed, im.name)
		}
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

	rep.Machine.LoadAfter = measure.LoadAvg()
	if o.json {
		if err := measure.WriteJSON(stdout, &rep); err != nil {
			return err
		}
		writeTable(stderr, &rep)
	} else {
		writeTable(stdout, &rep)
	}
	if len(failed) > 0 {
		return fmt.Errorf("bench: %s failed (see above)", strings.Join(failed, " and "))
	}
	return nil
}

// build makes the namespaces and the veth.
func (t *topo) build() (err error) {
	t.hub, t.site, err = measure.VethPair(t.lab, "hub", []netip.Prefix{underHub, under6Hub}, "site", []netip.Prefix{underSite, under6Sit})
	t.hubVethIP, t.siteVethIP = underHub.Addr(), underSite.Addr()
	return err
}

// measure starts one daemon pair, measures it and stops it again. The
// result holds whatever was measured, plus the error if any.
func (t *topo) measure(ctx context.Context, o options, log *slog.Logger, name string, start func(context.Context, *topo) (*tunnelUp, error)) (*result, error) {
	r := &result{Name: name}
	err := t.measureInto(ctx, o, log, r, start)
	if err != nil {
		r.Error = err.Error()
	}
	return r, err
}

func (t *topo) measureInto(ctx context.Context, o options, log *slog.Logger, r *result, start func(context.Context, *topo) (*tunnelUp, error)) (err error) {
	up, err := start(ctx, t)
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

	if o.rows.ping {
		log.Info("ping", "daemon", r.Name, "count", o.pings)
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
			cpu:    func() (float64, error) { return cpuOf(pids) },
			during: during,
		})
	}
	for _, n := range o.rows.streams {
		log.Info("tcp", "daemon", r.Name, "streams", n, "duration", o.duration)
		var during func(context.Context)
		if n == 1 && t.profile && r.Name == "Godwit" {
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
		if err != nil {
			return fmt.Errorf("bench: %d streams: %w%s", n, err, measure.ProcLogs(up.procs...))
		}
		r.TCP = append(r.TCP, res)
		log.Info("tcp done", "daemon", r.Name, "streams", n, "mbit/s", fmt.Sprintf("%.0f", res.Mbps), "cpu_s/GB", fmt.Sprintf("%.2f", res.CPUPerGB))
		// Let queues drain so one run does not eat into the next.
		if err := measure.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	for _, im := range o.rows.impair {
		log.Info("tcp", "daemon", r.Name, "streams", 1, "impairment", im.Key, "duration", o.duration)
		res, err := t.measureImpaired(ctx, im, up.port, func() (tcpResult, error) { return tcp(1, nil) })
		if err != nil {
			return fmt.Errorf("bench: 1 stream, %s: %w%s", im.Key, err, measure.ProcLogs(up.procs...))
		}
		r.TCP = append(r.TCP, res)
		log.Info("tcp done", "daemon", r.Name, "streams", 1, "impairment", im.Key, "mbit/s", fmt.Sprintf("%.0f", res.Mbps))
		if err := measure.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	for _, p := range up.procs {
		if p.Exited() {
			return fmt.Errorf("bench: %s exited during the measurement%s", p.Name, measure.ProcLogs(up.procs...))
		}
	}
	return nil
}

// measureImpaired runs measure with im in place on the underlay and
// removes it again, also on error.
func (t *topo) measureImpaired(ctx context.Context, im impairment, port int, measure func() (tcpResult, error)) (res tcpResult, err error) {
	a, err := t.impair(ctx, im, port)
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
// (ip netns exec and env exec, so the pid must not name either), since the
// CPU accounting reads these pids.
func checkExeced(pids []int) error {
	for _, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		if err != nil {
			return fmt.Errorf("bench: pid %d: %w", pid, err)
		}
		if c := strings.TrimSpace(string(b)); c == "ip" || c == "env" {
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
