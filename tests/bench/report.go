// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// machine describes where the numbers were taken.
type machine struct {
	CPU    string `json:"cpu"`
	NProc  int    `json:"nproc"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
	// LoadBefore and LoadAfter are the first three fields of
	// /proc/loadavg at the start and the end of the run: the machine is
	// shared, so the numbers are only as good as it was quiet.
	LoadBefore string `json:"load_before,omitempty"`
	LoadAfter  string `json:"load_after,omitempty"`
}

func readMachine() machine {
	m := machine{CPU: "unknown", NProc: runtime.NumCPU(), Kernel: measure.ReadTrim("/proc/sys/kernel/osrelease"),
		Go: runtime.Version(), LoadBefore: measure.LoadAvg()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(f)
		f.Close()
	}
	return m
}

// cpuModel returns the first "model name" of /proc/cpuinfo ("unknown" if
// there is none, as on some arm64 kernels).
func cpuModel(r io.Reader) string {
	s := bufio.NewScanner(r)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// target is a goal of the data-path performance issue for one row.
type target struct {
	minRatio float64 // Godwit/wireguard-go must be at least this (0: unused)
	maxRatio float64 // Godwit/wireguard-go must be at most this (0: unused)
	maxPlus  float64 // Godwit - wireguard-go must be at most this (0: unused)
	below    float64 // Godwit alone must be below this (0: unused)
	atMost   float64 // Godwit alone must be at most this (0: unused)
	text     string  // how the table shows it
}

// The targets.
var (
	targetTCP      = target{minRatio: 0.6, text: ">= 0.60x (aim 1.0x)"}
	targetImpaired = target{minRatio: 1.0, text: ">= 1.00x"}
	targetCPU      = target{maxRatio: 1.5, text: "<= 1.50x"}
	targetPing     = target{maxPlus: 0.050, text: "<= wg + 0.050 ms"}
)

// verdict is "PASS" or "FAIL" for g against w, or "" when either is missing
// or the row has no target.
func (tg *target) verdict(g, w *float64) string {
	if tg == nil || g == nil {
		return ""
	}
	ok := true
	switch {
	case tg.below > 0:
		ok = *g < tg.below
	case tg.atMost > 0:
		ok = *g <= tg.atMost
	case w == nil:
		return ""
	case tg.minRatio > 0:
		ok = *w > 0 && *g >= tg.minRatio**w
	case tg.maxRatio > 0:
		ok = *w > 0 && *g <= tg.maxRatio**w
	case tg.maxPlus > 0:
		ok = *g <= *w+tg.maxPlus
	}
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// row is one line of the table. A nil value prints as "-".
type row struct {
	label  string
	g, w   *float64
	unit   string  // printf verb for the values
	target *target // or nil
	na     bool    // wireguard-go is not measured for this row: "n/a"
}

// rows turns a report into table rows.
func rows(rep *report) []row {
	var out []row
	tcp := func(r *result, n int, impairment string) *tcpResult {
		if r == nil {
			return nil
		}
		for i := range r.TCP {
			if r.TCP[i].Streams == n && r.TCP[i].Impairment == impairment {
				return &r.TCP[i]
			}
		}
		return nil
	}
	mbps := func(t *tcpResult) float64 { return t.Mbps }
	for _, n := range rep.Streams {
		g, w := tcp(rep.Godwit, n, ""), tcp(rep.WireGuard, n, "")
		out = append(out, row{label: fmt.Sprintf("TCP %d stream%s (Mbit/s)", n, plural(n)), unit: "%.0f",
			g: field(g, mbps), w: field(w, mbps), target: &targetTCP})
	}
	for _, im := range rep.Impair {
		g, w := tcp(rep.Godwit, 1, im.Key), tcp(rep.WireGuard, 1, im.Key)
		out = append(out, row{label: fmt.Sprintf("TCP 1 stream, %s (Mbit/s)", im.describe()), unit: "%.0f",
			g: field(g, mbps), w: field(w, mbps), target: &targetImpaired})
	}
	for _, n := range rep.Streams {
		g, w := tcp(rep.Godwit, n, ""), tcp(rep.WireGuard, n, "")
		cpu := func(t *tcpResult) float64 { return t.CPUPerGB }
		out = append(out, row{label: fmt.Sprintf("CPU s/GB, both daemons, %d stream%s", n, plural(n)), unit: "%.2f",
			g: field(g, cpu), w: field(w, cpu), target: &targetCPU})
	}
	for _, im := range rep.Impair {
		if im.LossPct == 0 {
			continue
		}
		g, w := tcp(rep.Godwit, 1, im.Key), tcp(rep.WireGuard, 1, im.Key)
		drop := func(t *tcpResult) *float64 {
			if t == nil {
				return nil
			}
			return t.UnderlayDropPct
		}
		out = append(out, row{label: fmt.Sprintf("underlay dropped, %s rule (%%)", im.Key), unit: "%.2f", g: drop(g), w: drop(w)})
	}
	ping := func(label string, get func(*result) *pingStats, tg *target) {
		n := 0
		for _, r := range []*result{rep.Godwit, rep.WireGuard} {
			if r != nil && get(r) != nil {
				n = max(n, get(r).Sent)
			}
		}
		for _, q := range []struct {
			name string
			f    func(*pingStats) float64
			tg   *target
		}{
			{fmt.Sprintf("median of %d", n), func(p *pingStats) float64 { return p.MedianMs }, tg},
			{"p90", func(p *pingStats) float64 { return p.P90Ms }, nil},
			{"min", func(p *pingStats) float64 { return p.MinMs }, nil},
		} {
			out = append(out, row{label: fmt.Sprintf("ping %s %s (ms)", label, q.name), unit: "%.3f",
				g: pingField(rep.Godwit, get, q.f), w: pingField(rep.WireGuard, get, q.f), target: q.tg})
		}
		out = append(out, row{label: fmt.Sprintf("ping %s lost (of sent)", label), unit: "%.0f",
			g: pingField(rep.Godwit, get, lost), w: pingField(rep.WireGuard, get, lost)})
	}
	if rep.Pings {
		ping("tunnel", func(r *result) *pingStats { return r.PingTunnel }, &targetPing)
		ping("veth", func(r *result) *pingStats { return r.PingVeth }, nil)
	}
	mtu := func(r *result) *float64 {
		if r == nil || r.MTU == 0 {
			return nil
		}
		v := float64(r.MTU)
		return &v
	}
	if rep.Godwit != nil || rep.WireGuard != nil {
		out = append(out, row{label: "inner MTU (default)", unit: "%.0f", g: mtu(rep.Godwit), w: mtu(rep.WireGuard)})
	}
	if rep.Mobility != nil {
		out = append(out, mobilityRows(rep.Mobility)...)
	}
	return out
}

// mobilityRows are the rows of the mobility series (Godwit only).
func mobilityRows(m *mobilityResult) []row {
	var out []row
	v := func(f float64) *float64 { return &f }
	add := func(label, unit string, g *float64, tg *target) {
		out = append(out, row{label: label, unit: unit, g: g, target: tg, na: true})
	}
	spread := func(prefix string, st durStats, tg *target) {
		if st.N == 0 {
			return
		}
		add(fmt.Sprintf("%s: median of %d (ms)", prefix, st.N), "%.1f", v(st.MedianMs), tg)
		add(prefix+": p90 (ms)", "%.1f", v(st.P90Ms), nil)
		add(prefix+": max (ms)", "%.1f", v(st.MaxMs), nil)
	}
	for _, s := range m.Switch {
		var prefix string
		var tg *target
		switch s.Kind {
		case "switch":
			prefix = fmt.Sprintf("switch outage, make-before-break, RTT %.1f ms", s.RTTMs)
			if s.DelayMs > 0 {
				tg = &target{below: 2 * s.RTTMs, text: fmt.Sprintf("< 2 x RTT = %.1f ms", 2*s.RTTMs)}
			}
		case "switch-back":
			prefix = fmt.Sprintf("switch back to preferred uplink, RTT %.1f ms", s.RTTMs)
		default:
			prefix = fmt.Sprintf("switch outage, no standby (%d/%d redialed), RTT %.1f ms", s.Redials, s.Stats.N, s.RTTMs)
		}
		spread(prefix, s.Stats, tg)
		if s.DaemonMs != nil {
			add(fmt.Sprintf("switch outage, RTT %.1f ms, as the site reports it: median (ms)", s.RTTMs), "%.1f", s.DaemonMs, nil)
		}
		if s.Failed > 0 {
			add(fmt.Sprintf("%s: failed runs (no echo within 10 s or no switch back)", prefix), "%.0f", v(float64(s.Failed)), nil)
		}
		if s.UpAfterMs != nil {
			add(fmt.Sprintf("switch, no standby, RTT %.1f ms: standby route up after, median (ms)", s.RTTMs), "%.1f", s.UpAfterMs, nil)
		}
	}
	for _, r := range m.Restart {
		start := r.StartMs.MedianMs
		inRTT := func(st durStats) *float64 {
			if st.N == 0 || r.RTTMs <= 0 {
				return nil
			}
			return v(st.MedianMs / r.RTTMs)
		}
		goal := 1.5*r.RTTMs + start
		spread(fmt.Sprintf("%s to first echo, 0-RTT (accepted %d/%d), RTT %.1f ms", r.Key, r.Accepted, r.ZeroRTT.N, r.RTTMs), r.ZeroRTT,
			&target{atMost: goal, text: fmt.Sprintf("<= 1.5 x RTT + start = %.1f ms", goal)})
		if g := inRTT(r.ZeroRTT); g != nil {
			add(fmt.Sprintf("%s, 0-RTT: median in RTTs", r.Key), "%.2f", g, nil)
		}
		spread(fmt.Sprintf("%s to first echo, full handshake (resumed %d/%d), RTT %.1f ms", r.Key, r.Resumed, r.Full.N, r.RTTMs), r.Full, nil)
		if g := inRTT(r.Full); g != nil {
			add(fmt.Sprintf("%s, full handshake: median in RTTs", r.Key), "%.2f", g, nil)
		}
		if r.StartMs.N > 0 {
			add(fmt.Sprintf("%s, start: exec to first log line, median of %d (ms)", r.Key, r.StartMs.N), "%.1f", v(start), nil)
		}
		for i, mode := range []string{"0-RTT", "full handshake"} {
			if st := r.RunningMs[i]; st.N > 0 {
				add(fmt.Sprintf("%s, %s: exec to \"godwit running\", median (ms)", r.Key, mode), "%.1f", v(st.MedianMs), nil)
			}
			if st := r.ConnectedMs[i]; st.N > 0 {
				add(fmt.Sprintf("%s, %s: exec to \"peer connected\", median (ms)", r.Key, mode), "%.1f", v(st.MedianMs), nil)
			}
		}
	}
	return out
}

// describe names the impairment for the table: "1% loss", "tbf 100 Mbit/s".
func (im impairment) describe() string {
	if im.RateMbit > 0 {
		return fmt.Sprintf("tbf %d Mbit/s", im.RateMbit)
	}
	return fmt.Sprintf("%d%% loss", im.LossPct)
}

func lost(p *pingStats) float64 { return float64(p.Sent - p.Received) }

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func field(t *tcpResult, f func(*tcpResult) float64) *float64 {
	if t == nil {
		return nil
	}
	v := f(t)
	return &v
}

func pingField(r *result, get func(*result) *pingStats, f func(*pingStats) float64) *float64 {
	if r == nil {
		return nil
	}
	p := get(r)
	if p == nil || (p.Received == 0 && f(p) == 0) {
		return nil
	}
	v := f(p)
	return &v
}

// format prints v with verb, or "-" for nil.
func format(verb string, v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(verb, *v)
}

// ratio is g/w with two decimals, or "-" when either is missing or w is 0.
func ratio(g, w *float64) string {
	if g == nil || w == nil || *w == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", *g / *w)
}

// writeTable prints the machine, one row per measurement with the issue's
// target and verdict, and the profile tops.
func writeTable(w io.Writer, rep *report) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %s, nproc %d, kernel %s, %s\n", m.CPU, m.NProc, m.Kernel, m.Go)
	if m.LoadBefore != "" {
		fmt.Fprintf(w, "load average (1, 5, 15 min): %s before, %s after\n", m.LoadBefore, m.LoadAfter)
	}
	if len(rep.Streams) > 0 || len(rep.Impair) > 0 || rep.Pings {
		fmt.Fprintf(w, "TCP: %s measured after %s warm-up, site -> hub; higher Mbit/s is better, lower CPU s/GB and ping is better\n", rep.Duration, rep.Warmup)
	}
	for _, r := range []*result{rep.Godwit, rep.WireGuard} {
		if r == nil {
			continue
		}
		if r.Version != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Name, r.Version)
		}
		if r.Error != "" {
			fmt.Fprintf(w, "%s: FAILED: %s\n", r.Name, firstLine(r.Error))
		}
	}
	if m := rep.Mobility; m != nil {
		fmt.Fprintf(w, "mobility: Godwit only (%s), %d runs per series, took %s; RTT = median echo round trip through the tunnel\n", m.Version, m.Runs, m.Duration)
		if m.Error != "" {
			fmt.Fprintf(w, "mobility: FAILED: %s\n", firstLine(m.Error))
		}
	}
	rs := rows(rep)
	width := 0
	for _, r := range rs {
		width = max(width, len(r.label))
	}
	fmt.Fprintf(w, "%-*s  %10s  %12s  %19s  %-19s  %s\n", width, "", "Godwit", "wireguard-go", "Godwit/wireguard-go", "target", "verdict")
	for _, r := range rs {
		tt, v := "", ""
		if r.target != nil {
			tt, v = r.target.text, r.target.verdict(r.g, r.w)
		}
		wv := format(r.unit, r.w)
		if r.na {
			wv = "n/a"
		}
		line := fmt.Sprintf("%-*s  %10s  %12s  %19s  %-19s  %s", width, r.label, format(r.unit, r.g), wv, ratio(r.g, r.w), tt, v)
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	for _, r := range []*result{rep.Godwit, rep.WireGuard} {
		if r == nil {
			continue
		}
		for _, p := range r.Profiles {
			fmt.Fprintf(w, "\n=== %s %s profile, top %d by %s (%s)\n", p.Daemon, p.Kind, topNodes, p.Sort, p.File)
			if p.Error != "" {
				fmt.Fprintf(w, "error: %s\n", firstLine(p.Error))
			}
			fmt.Fprint(w, p.Top)
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
