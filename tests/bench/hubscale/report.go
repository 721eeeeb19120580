// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"io"
)

// writeTable prints the report as an aligned two-column table.
func writeTable(w io.Writer, rep *report) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: nproc %d, kernel %s, %s; load average (1, 5, 15 min) %s before, %s after\n",
		m.NProc, m.Kernel, m.Go, m.LoadBefore, m.LoadAfter)
	fmt.Fprintf(w, "hub with %d simulated sites, %d connection(s) each; idle and 1 packet/s phases of %s each\n", rep.Sites, rep.Conns, rep.Duration)
	rows := []struct{ label, value string }{
		{"sites connected", fmt.Sprintf("%d of %d", rep.Connected, rep.Sites)},
		{"connect from cold, all sites (s)", fmt.Sprintf("%.2f", rep.ConnectAll)},
		{"connect per site p50 / p99 / max (ms)", fmt.Sprintf("%.0f / %.0f / %.0f", rep.ConnectP50, rep.ConnectP99, rep.ConnectMax)},
		{"reconnects after each site's first connections", fmt.Sprint(rep.Reconnects)},
		{"hub \"peer connected\" log lines", fmt.Sprint(rep.HubPeers)},
		{"hub RSS, no site (MiB)", mib(rep.RSSAlone)},
		{"hub RSS, sites idle (MiB)", mib(rep.RSSIdle)},
		{"hub RSS, 1 packet/s per site (MiB)", mib(rep.RSSLoad)},
		{"hub memory per idle site (KiB)", fmt.Sprintf("%.1f", rep.PerSite)},
		{"hub CPU, sites idle (% of a core)", fmt.Sprintf("%.2f", rep.CPUIdle)},
		{"hub CPU, 1 packet/s per site (% of a core)", fmt.Sprintf("%.2f", rep.CPULoad)},
		{"sites process CPU, 1 packet/s (% of a core)", fmt.Sprintf("%.2f", rep.SitesCPU)},
		{"echo replies / requests", fmt.Sprintf("%d / %d (%.4f)", rep.Replies, rep.Sent, rep.ReplyRatio)},
	}
	width := 0
	for _, r := range rows {
		width = max(width, len(r.label))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %s\n", width, r.label, r.value)
	}
}

func mib(kib uint64) string { return fmt.Sprintf("%.1f", float64(kib)/1024) }
