// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// machine describes where the numbers were taken.
type machine struct {
	CPU    string `json:"cpu"`
	NProc  int    `json:"nproc"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

func readMachine() machine {
	m := machine{CPU: "unknown", NProc: runtime.NumCPU(), Kernel: "unknown", Go: runtime.Version()}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		m.CPU = cpuModel(f)
		f.Close()
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
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

func writeJSON(w io.Writer, rep *report) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	if err := e.Encode(rep); err != nil {
		return fmt.Errorf("bench: json: %w", err)
	}
	return nil
}

// row is one line of the table. A nil value prints as "-".
type row struct {
	label string
	g, w  *float64
	unit  string // printf verb for the values
}

// rows turns a report into table rows.
func rows(rep *report) []row {
	var out []row
	tcp := func(r *result, n int) *tcpResult {
		if r == nil {
			return nil
		}
		for i := range r.TCP {
			if r.TCP[i].Streams == n {
				return &r.TCP[i]
			}
		}
		return nil
	}
	for _, n := range rep.Streams {
		g, w := tcp(rep.Godwit, n), tcp(rep.WireGuard, n)
		out = append(out, row{label: fmt.Sprintf("TCP %d stream%s (Mbit/s)", n, plural(n)), unit: "%.0f",
			g: field(g, func(t *tcpResult) float64 { return t.Mbps }), w: field(w, func(t *tcpResult) float64 { return t.Mbps })})
	}
	for _, n := range rep.Streams {
		g, w := tcp(rep.Godwit, n), tcp(rep.WireGuard, n)
		out = append(out, row{label: fmt.Sprintf("CPU s/GB, %d stream%s", n, plural(n)), unit: "%.2f",
			g: field(g, func(t *tcpResult) float64 { return t.CPUPerGB }), w: field(w, func(t *tcpResult) float64 { return t.CPUPerGB })})
	}
	ping := func(label string, get func(*result) *pingStats) {
		for _, q := range []struct {
			name string
			f    func(*pingStats) float64
		}{
			{"median", func(p *pingStats) float64 { return p.MedianMs }},
			{"p90", func(p *pingStats) float64 { return p.P90Ms }},
			{"min", func(p *pingStats) float64 { return p.MinMs }},
		} {
			out = append(out, row{label: fmt.Sprintf("ping %s %s (ms)", label, q.name), unit: "%.3f",
				g: pingField(rep.Godwit, get, q.f), w: pingField(rep.WireGuard, get, q.f)})
		}
		out = append(out, row{label: fmt.Sprintf("ping %s lost (of sent)", label), unit: "%.0f",
			g: pingField(rep.Godwit, get, lost), w: pingField(rep.WireGuard, get, lost)})
	}
	ping("tunnel", func(r *result) *pingStats { return r.PingTunnel })
	ping("veth", func(r *result) *pingStats { return r.PingVeth })
	mtu := func(r *result) *float64 {
		if r == nil || r.MTU == 0 {
			return nil
		}
		v := float64(r.MTU)
		return &v
	}
	out = append(out, row{label: "inner MTU (default)", unit: "%.0f", g: mtu(rep.Godwit), w: mtu(rep.WireGuard)})
	return out
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

// writeTable prints the machine and one row per measurement.
func writeTable(w io.Writer, rep *report) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %s, nproc %d, kernel %s, %s\n", m.CPU, m.NProc, m.Kernel, m.Go)
	fmt.Fprintf(w, "TCP: %s measured after %s warm-up, site -> hub; higher Mbit/s is better, lower CPU s/GB and ping is better\n", rep.Duration, rep.Warmup)
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
	rs := rows(rep)
	width := 0
	for _, r := range rs {
		width = max(width, len(r.label))
	}
	fmt.Fprintf(w, "%-*s  %10s  %12s  %19s\n", width, "", "Godwit", "wireguard-go", "Godwit/wireguard-go")
	for _, r := range rs {
		fmt.Fprintf(w, "%-*s  %10s  %12s  %19s\n", width, r.label, format(r.unit, r.g), format(r.unit, r.w), ratio(r.g, r.w))
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
