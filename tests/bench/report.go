// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
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

// runKind is one TCP run of the classic rows.
type runKind struct {
	key    string // the -rows key, tcpResult.Row
	label  string // "TCP 1 stream", "TCP 1 stream, hub on 1 CPU", "TCP 1 stream, 1% loss"
	tcpN   bool   // a plain tcpN row: the tcp1/tcp4 targets apply
	pinned bool
}

// runKinds lists the TCP runs of rep in table order: tcpN, tcpN-cpuC,
// then the impairments.
func runKinds(rep *report) []runKind {
	var out []runKind
	for _, n := range rep.Streams {
		out = append(out, runKind{key: fmt.Sprintf("tcp%d", n), label: fmt.Sprintf("TCP %d stream%s", n, plural(n)), tcpN: true})
	}
	for _, p := range rep.Pinned {
		out = append(out, runKind{key: p.Key, pinned: true,
			label: fmt.Sprintf("TCP %d stream%s, hub on %d CPU%s", p.Streams, plural(p.Streams), p.CPUs, plural(p.CPUs))})
	}
	for _, im := range rep.Impair {
		out = append(out, runKind{key: im.Key, label: "TCP 1 stream, " + im.describe()})
	}
	return out
}

// perRound returns f of each round's result of the daemon (godwit or
// wireguard-go), nil where the round has no result or f has no value.
func perRound(rep *report, godwit bool, f func(*result) *float64) []*float64 {
	out := make([]*float64, len(rep.Rounds))
	for i, rd := range rep.Rounds {
		r := rd.WireGuard
		if godwit {
			r = rd.Godwit
		}
		if r != nil {
			out[i] = f(r)
		}
	}
	return out
}

// tcpOf returns r's TCP result of the run key, or nil.
func tcpOf(r *result, key string) *tcpResult {
	for i := range r.TCP {
		if r.TCP[i].Row == key {
			return &r.TCP[i]
		}
	}
	return nil
}

func ptr(v float64) *float64 { return &v }

// rows turns a report into table rows.
func rows(rep *report) []row {
	var out []row
	both := func(f func(*result) *float64) (g, w []*float64) {
		return perRound(rep, true, f), perRound(rep, false, f)
	}
	tcpRow := func(label, unit, key string, tg *target, f func(*tcpResult) *float64) {
		g, w := both(func(r *result) *float64 {
			if t := tcpOf(r, key); t != nil {
				return f(t)
			}
			return nil
		})
		out = append(out, row{label: label, unit: unit, g: g, w: w, tgt: tg, round: true})
	}
	runs := runKinds(rep)
	for _, k := range runs {
		tg := &targetImpaired
		switch {
		case k.tcpN:
			tg = &targetTCP
		case k.pinned:
			tg = nil // not one of the targets
		}
		tcpRow(k.label+" (Mbit/s)", "%.0f", k.key, tg, func(t *tcpResult) *float64 { return ptr(t.Mbps) })
	}
	for _, k := range runs {
		if k.tcpN || k.pinned {
			tg := &targetCPU
			if k.pinned {
				tg = nil
			}
			tcpRow("CPU s/GB, both daemons, "+k.label, "%.2f", k.key, tg, func(t *tcpResult) *float64 { return ptr(t.CPUPerGB) })
		}
	}
	for _, k := range runs {
		tg := &targetRetrans
		if !k.tcpN {
			tg = nil
		}
		tcpRow("inner TCP retransmits per GB, "+k.label, unitCount, k.key, tg, func(t *tcpResult) *float64 { return ptr(t.RetransPerGB) })
	}
	for _, k := range runs {
		tg := &targetDrops
		if !k.tcpN {
			tg = nil
		}
		tcpRow("drops inside the daemons per GB, "+k.label, unitCount, k.key, tg, func(t *tcpResult) *float64 { return ptr(t.DropsPerGB) })
		// One row per reason that any round of either daemon counted.
		reasons := map[string]bool{}
		for _, rd := range rep.Rounds {
			for _, r := range []*result{rd.Godwit, rd.WireGuard} {
				if r == nil {
					continue
				}
				if t := tcpOf(r, k.key); t != nil {
					for reason := range t.Drops {
						reasons[reason] = true
					}
				}
			}
		}
		for _, reason := range slices.Sorted(maps.Keys(reasons)) {
			g, w := both(func(r *result) *float64 {
				t := tcpOf(r, k.key)
				if t == nil || !countedFor(r.Name, reason) {
					return nil
				}
				return ptr(t.perGB(t.Drops[reason]))
			})
			label := "  " + k.key + " " + reason
			if !inTotal(reason) {
				label += " (not in the total)"
			}
			out = append(out, row{label: label, unit: unitCount, g: g, w: w, round: true, na: !countedFor("wireguard-go", reason)})
		}
	}
	for _, im := range rep.Impair {
		if im.LossPct == 0 {
			continue
		}
		tcpRow(fmt.Sprintf("underlay dropped, %s rule (%%)", im.Key), "%.2f", im.Key, nil, func(t *tcpResult) *float64 { return t.UnderlayDropPct })
		out[len(out)-1].cmp = cmpNone
	}
	out = append(out, overTCPRows(rep)...)
	ping := func(label string, get func(*result) *pingStats, tg *target) {
		n := 0
		for _, rd := range rep.Rounds {
			for _, r := range []*result{rd.Godwit, rd.WireGuard} {
				if r != nil && get(r) != nil {
					n = max(n, get(r).Sent)
				}
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
			{"lost (of sent)", lost, nil},
		} {
			g, w := both(func(r *result) *float64 {
				p := get(r)
				if p == nil || p.Received == 0 && q.f(p) == 0 {
					return nil
				}
				return ptr(q.f(p))
			})
			l, unit := fmt.Sprintf("ping %s %s (ms)", label, q.name), "%.3f"
			if q.name == "lost (of sent)" {
				l, unit = fmt.Sprintf("ping %s lost (of sent)", label), "%.0f"
			}
			out = append(out, row{label: l, unit: unit, g: g, w: w, cmp: cmpDiff, tgt: q.tg, round: true})
		}
	}
	if rep.Pings {
		ping("tunnel", func(r *result) *pingStats { return r.PingTunnel }, &targetPing)
		ping("veth", func(r *result) *pingStats { return r.PingVeth }, nil)
	}
	if len(rep.Rounds) > 0 {
		// The MTU is the same in every round: one value per daemon.
		var g, w *float64
		for _, rd := range rep.Rounds {
			if r := rd.Godwit; g == nil && r != nil && r.MTU != 0 {
				g = ptr(float64(r.MTU))
			}
			if r := rd.WireGuard; w == nil && r != nil && r.MTU != 0 {
				w = ptr(float64(r.MTU))
			}
		}
		out = append(out, row{label: "inner MTU (default)", unit: "%.0f", g: []*float64{g}, w: []*float64{w}})
	}
	if rep.Mobility != nil {
		out = append(out, mobilityRows(rep.Mobility)...)
	}
	if rep.Multipath != nil {
		out = append(out, multipathRows(rep.Multipath)...)
	}
	return out
}

// overTCPRows are the rows of Godwit's TCP path (the overtcp rows): each
// one's throughput, inner TCP retransmits and drops next to wireguard-go's
// same run over UDP (tcp1, or lossP with the same loss), and for the clean
// one the ratio to Godwit's own tcp1 over UDP in the same round, with the
// fallback issue's target.
func overTCPRows(rep *report) []row {
	var out []row
	field := func(key string, godwit bool, f func(*tcpResult) float64) []*float64 {
		return perRound(rep, godwit, func(r *result) *float64 {
			if t := tcpOf(r, key); t != nil {
				return ptr(f(t))
			}
			return nil
		})
	}
	mbps := func(t *tcpResult) float64 { return t.Mbps }
	for _, ot := range rep.OverTCP {
		vs, label := "tcp1", "TCP 1 stream over Godwit's TCP path"
		if ot.LossPct > 0 {
			vs = fmt.Sprintf("loss%d", ot.LossPct)
			label += fmt.Sprintf(", %d%% loss", ot.LossPct)
		}
		label += " (wg: " + vs + " over UDP)"
		out = append(out,
			row{label: label + " (Mbit/s)", unit: "%.0f", g: field(ot.Key, true, mbps), w: field(vs, false, mbps), round: true},
			row{label: "inner TCP retransmits per GB, " + ot.Key, unit: unitCount, round: true,
				g: field(ot.Key, true, func(t *tcpResult) float64 { return t.RetransPerGB }),
				w: field(vs, false, func(t *tcpResult) float64 { return t.RetransPerGB })},
			row{label: "drops inside the daemons per GB, " + ot.Key, unit: unitCount, round: true, cmp: cmpNone,
				g: field(ot.Key, true, func(t *tcpResult) float64 { return t.DropsPerGB }),
				w: field(vs, false, func(t *tcpResult) float64 { return t.DropsPerGB })})
		if ot.LossPct > 0 {
			continue
		}
		tcpPath, udp := field(ot.Key, true, mbps), field("tcp1", true, mbps)
		ratio := make([]*float64, len(tcpPath))
		for i := range ratio {
			if tcpPath[i] != nil && udp[i] != nil && *udp[i] > 0 {
				ratio[i] = ptr(*tcpPath[i] / *udp[i])
			}
		}
		out = append(out, row{label: "Godwit 1 stream, TCP path / UDP (x)", unit: "%.2f", g: ratio, cmp: cmpNone, na: true,
			tgt: &targetTCPPath, round: true})
	}
	return out
}

func mobilityRows(m *mobilityResult) []row {
	var out []row
	v := ptr
	add := func(label, unit string, g *float64, tg *target) {
		if g == nil {
			return
		}
		out = append(out, row{label: label, unit: unit, g: []*float64{g}, cmp: cmpNone, tgt: tg, na: true})
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

// writeTable prints the machine, one row per measurement with the issue's
// target and verdict, and the profile tops.
func writeTable(w io.Writer, rep *report) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %s, nproc %d, kernel %s, %s\n", m.CPU, m.NProc, m.Kernel, m.Go)
	if m.LoadBefore != "" {
		fmt.Fprintf(w, "load average (1, 5, 15 min): %s before, %s after\n", m.LoadBefore, m.LoadAfter)
	}
	if n := len(rep.Rounds); n > 0 {
		var order []string
		for _, rd := range rep.Rounds {
			order = append(order, strings.Join(rd.Order, ", "))
		}
		fmt.Fprintf(w, "%d round%s (%s); TCP: %s measured after %s warm-up, site -> hub\n", n, plural(n), strings.Join(order, " | "), rep.Duration, rep.Warmup)
		fmt.Fprintf(w, "values: median over the rounds (min..max); Godwit/wireguard-go: median of the per-round ratios (ping: differences, ms) (min..max)\n")
		fmt.Fprintf(w, "higher Mbit/s is better; lower CPU s/GB, retransmits, drops and ping is better; wireguard-go's drops are its namespaces' UDP buffer drops only\n")
	}
	versions := map[string]bool{}
	for _, rd := range rep.Rounds {
		for _, r := range []*result{rd.Godwit, rd.WireGuard} {
			if r == nil {
				continue
			}
			if r.Version != "" && !versions[r.Name] {
				versions[r.Name] = true
				fmt.Fprintf(w, "%s: %s\n", r.Name, r.Version)
			}
			if r.Error != "" {
				fmt.Fprintf(w, "%s: round %d FAILED: %s\n", r.Name, rd.Round, firstLine(r.Error))
			}
		}
	}
	if m := rep.Mobility; m != nil {
		fmt.Fprintf(w, "mobility: Godwit only (%s), %d runs per series, took %s; RTT = median echo round trip through the tunnel\n", m.Version, m.Runs, m.Duration)
		if m.Error != "" {
			fmt.Fprintf(w, "mobility: FAILED: %s\n", firstLine(m.Error))
		}
	}
	if m := rep.Multipath; m != nil {
		fmt.Fprintf(w, "multipath: Godwit only (%s), %d runs per series, took %s; values: median over the runs (min..max), verdict on the median with the runs that met the target\n",
			m.Version, m.Runs, m.Duration)
		if m.Plot != "" {
			fmt.Fprintf(w, "multipath: plot of the silent failure written to %s\n", m.Plot)
		}
		if m.Error != "" {
			fmt.Fprintf(w, "multipath: FAILED: %s\n", firstLine(m.Error))
		}
	}
	sum := summarize(rows(rep))
	head := [6]string{"", "Godwit", "wireguard-go", "Godwit/wireguard-go", "target", "verdict"}
	var width [6]int
	cells := make([][6]string, len(sum))
	for i := range sum {
		c := sum[i].columns()
		cells[i] = [6]string{sum[i].Label, c[0], c[1], c[2], c[3], c[4]}
	}
	for _, c := range append([][6]string{head}, cells...) {
		for j := range c {
			width[j] = max(width[j], len(c[j]))
		}
	}
	for _, c := range append([][6]string{head}, cells...) {
		line := fmt.Sprintf("%-*s  %*s  %*s  %*s  %-*s  %s", width[0], c[0], width[1], c[1], width[2], c[2], width[3], c[3], width[4], c[4], c[5])
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	for _, rd := range rep.Rounds {
		for _, r := range []*result{rd.Godwit, rd.WireGuard} {
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
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
