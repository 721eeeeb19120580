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

// writeHubsTable prints the report of a -hubs 2 run as an aligned
// two-column table.
func writeHubsTable(w io.Writer, rep *hubsReport) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: nproc %d, kernel %s, %s; load average (1, 5, 15 min) %s before, %s after\n",
		m.NProc, m.Kernel, m.Go, m.LoadBefore, m.LoadAfter)
	bgp := "BGP through BIRD to a core"
	if !rep.BGP {
		bgp = "no BGP"
	}
	fmt.Fprintf(w, "2 hubs (routes = \"connected\"), %d simulated sites on both, half preferring each; %s; idle phase of %s; SIGKILL of hub-a\n",
		rep.Sites, bgp, rep.Duration)
	a, b := &rep.HubA, &rep.HubB
	rows := []struct{ label, value string }{
		{"sites connected to both hubs", fmt.Sprintf("%d of %d", rep.Connected, rep.Sites)},
		{"connect from cold, all sites on both hubs (s)", fmt.Sprintf("%.2f", rep.ConnectAll)},
		{"connect per site p50 / p99 / max (ms)", fmt.Sprintf("%.0f / %.0f / %.0f", rep.ConnectP50, rep.ConnectP99, rep.ConnectMax)},
		{"then until every route is on its hub (s)", steady(rep)},
		{"hub kernel routes (proto 77), a / b", fmt.Sprintf("%d / %d", a.Routes, b.Routes)},
		{"hub \"peer connected\" log lines, a / b", fmt.Sprintf("%d / %d", a.PeerLines, b.PeerLines)},
		{"hub RSS, no site, a / b (MiB)", mib(a.RSSAlone) + " / " + mib(b.RSSAlone)},
		{"hub RSS, sites idle, a / b (MiB)", mib(a.RSSIdle) + " / " + mib(b.RSSIdle)},
		{"hub memory per idle site, a / b (KiB)", fmt.Sprintf("%.1f / %.1f", a.PerSite, b.PerSite)},
		{"hub CPU, sites idle, a / b (% of a core)", fmt.Sprintf("%.2f / %.2f", a.CPUIdle, b.CPUIdle)},
	}
	if rep.BGP {
		rows = append(rows, struct{ label, value string }{"core BGP table before the kill, via a / b", fmt.Sprintf("%d / %d", rep.CoreViaA, rep.CoreViaB)})
	}
	rows = append(rows, []struct{ label, value string }{
		{"sites that preferred hub-a (movers)", fmt.Sprint(rep.Movers)},
		{"movers already on hub-b at the kill (a flap)", fmt.Sprintf("%d of %d", rep.OnBAtKill, rep.Movers)},
		{"movers whose tunnel switched to hub-b", fmt.Sprintf("%d of %d", rep.Switched, rep.Movers)},
		{"kill to switch p50 / p99 / max (ms)", fmt.Sprintf("%.0f / %.0f / %.0f", rep.SwitchP50, rep.SwitchP99, rep.SwitchMax)},
		{"movers with an echo reply via hub-b", fmt.Sprintf("%d of %d", rep.Recovered, rep.Movers)},
		{"kill to first reply p50 / p99 / max (ms)", fmt.Sprintf("%.0f / %.0f / %.0f", rep.RecoverP50, rep.RecoverP99, rep.RecoverMax)},
		{"longest reply gap of a site on hub-b (ms)", fmt.Sprintf("%.0f", rep.StayerMaxGap)},
		{"hub-b kernel routes after (proto 77)", fmt.Sprint(rep.HubBRoutes)},
		{"reconnects to hub-b during the failover", fmt.Sprint(rep.HubBReconnect)},
	}...)
	if rep.BGP {
		all := "never"
		if rep.CoreAllS >= 0 {
			all = fmt.Sprintf("%.2f", rep.CoreAllS)
		}
		rows = append(rows, []struct{ label, value string }{
			{"core BGP table after, via a / b", fmt.Sprintf("%d / %d", rep.CoreAfterA, rep.CoreAfterB)},
			{"core kernel routes via hub-b after", fmt.Sprint(rep.CoreKernelB)},
			{"kill to all sites via hub-b in the core (s)", all},
		}...)
	}
	rows = append(rows, struct{ label, value string }{"echo replies / requests", fmt.Sprintf("%d / %d", rep.EchoReplies, rep.EchoSent)})
	width := 0
	for _, r := range rows {
		width = max(width, len(r.label))
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %s\n", width, r.label, r.value)
	}
}

// steady is the time the routes took to settle, or why they did not.
func steady(rep *hubsReport) string {
	if rep.SteadyS < 0 {
		return fmt.Sprintf("not within %v: %d sites off their preferred hub (flapping)", steadyTimeout, rep.OffPreferred)
	}
	return fmt.Sprintf("%.2f", rep.SteadyS)
}
