// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
	"github.com/godwit-vpn/godwit/tests/bench/measure/measuretest"
)

func TestParseMultipathRows(t *testing.T) {
	measuretest.CheckParse(t, "parseRows", parseRows, map[string]rowSet{
		"mp-silent,mp-loss,mp-aggregate": {mpSilent: true, mpLoss: true, mpAggregate: true},
		"tcp1,mp-loss":                   {streams: []int{1}, mpLoss: true},
	}, []string{"mp-silent,mp-silent", "mp", "mp-", "mp-fast"})
	measuretest.CheckParse(t, "parseRTTs", parseRTTs, map[string][]int{
		"0,20": {0, 20}, "100": {100}, " 5 , 0": {5, 0},
	}, []string{"", "0,0", "-1", "1001", "020", "x", "0,"})
	measuretest.CheckFlags(t, parseFlags, [][]string{
		{"-rows", "mp-silent", "-runs", "5", "-mp-rtts", "20", "-plot", "x.svg"},
		{"-rows", "mp-silent,mp-loss", "-plot", "x.png", "-mp-modes", "failover,single"},
		{"-rows", "mp-aggregate", "-mp-modes", "aggregate"},
	}, [][]string{
		{"-rows", "mp-loss", "-plot", "x.svg"},
		{"-rows", "mp-silent", "-plot", "x.pdf"},
		{"-rows", "mp-silent", "-only", "wireguard"},
		{"-rows", "mp-silent", "-mp-rtts", "20,20"},
		{"-rows", "mp-silent", "-mp-modes", "fastest"},
		{"-rows", "mp-silent", "-mp-modes", "failover,failover"},
	})
	o, err := parseFlags([]string{"-rows", "mp-silent"}, nil)
	if err != nil || !slices.Equal(o.mpRTTs, []int{0, 20}) || o.mpModes != nil {
		t.Errorf("parseFlags(-rows mp-silent) = RTTs %v, modes %v, %v; want the default RTTs 0,20 and every mode", o.mpRTTs, o.mpModes, err)
	}
}

func TestMPPlan(t *testing.T) {
	keys := func(steps []mpStep) []string {
		var out []string
		for _, s := range steps {
			out = append(out, s.row+"/"+s.kase+"/"+s.mode.key)
		}
		return out
	}
	all := mpPlan(rowSet{mpSilent: true, mpLoss: true, mpAggregate: true}, nil)
	want := []string{
		"mp-silent/silent/failover", "mp-silent/silent/redundant", "mp-silent/silent/duplicate", "mp-silent/silent/single",
		"mp-loss/loss30-wifi0/failover", "mp-loss/loss10-both/failover", "mp-loss/loss10-both/redundant", "mp-loss/loss30-wifi0/redundant",
		"mp-aggregate/tbf40+40/aggregate", "mp-aggregate/tbf40+4/aggregate", "mp-aggregate/tbf40+40-slow/aggregate",
		"mp-aggregate/tbf40+40-slow/failover", "mp-aggregate/tbf40+4/failover",
	}
	if got := keys(all); !slices.Equal(got, want) {
		t.Errorf("mpPlan(all rows) = %q, want %q", got, want)
	}
	if got := keys(mpPlan(rowSet{mpSilent: true, mpLoss: true}, []string{"redundant"})); !slices.Equal(got,
		[]string{"mp-silent/silent/redundant", "mp-loss/loss10-both/redundant", "mp-loss/loss30-wifi0/redundant"}) {
		t.Errorf("mpPlan(silent and loss, redundant only) = %q", got)
	}
}

func TestMPImpair(t *testing.T) {
	got := mpImpair(map[string]int{"wifi0": 100, "cell0": 10})
	want := `flush chain inet gwbmp pre
flush chain inet gwbmp out
add rule inet gwbmp pre iifname "wifi0h" counter name "wifi_drop" drop
add rule inet gwbmp out oifname "wifi0h" counter name "wifi_drop" drop
add rule inet gwbmp pre iifname "cell0h" numgen random mod 100 < 10 counter name "cell_drop" drop
add rule inet gwbmp out oifname "cell0h" numgen random mod 100 < 10 counter name "cell_drop" drop
`
	if got != want {
		t.Errorf("mpImpair = %q, want %q", got, want)
	}
	if got, want := mpImpair(nil), "flush chain inet gwbmp pre\nflush chain inet gwbmp out\n"; got != want {
		t.Errorf("mpImpair(nil) = %q, want %q", got, want)
	}
}

func TestParseNamedCounters(t *testing.T) {
	out := `table inet gwbmp {
	counter wifi_up {
		packets 78 bytes 6552
	}

	counter cell_drop {
		packets 3 bytes 252
	}

	chain count_in {
		type filter hook prerouting priority -400; policy accept;
		iifname "wifi0h" counter name "wifi_up"
		udp dport 4433 counter packets 5 bytes 9
	}
}
`
	got, err := parseNamedCounters(out)
	want := map[string]nftCounter{"wifi_up": {78, 6552}, "cell_drop": {3, 252}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("parseNamedCounters = %v, %v; want %v", got, err, want)
	}
	if _, err := parseNamedCounters("counter x {\n packets 1x bytes 2\n}"); err == nil {
		t.Error("parseNamedCounters of a bad count: no error")
	}
}

// testStream returns a probe stream (not running) with probes sent every
// 20 ms from 0 to 180 ms after its epoch, those at the offsets in answered
// echoed after rtt.
func testStream(rtt time.Duration, answered ...int) *probeStream {
	p := &probeStream{epoch: time.Unix(1000, 0), interval: 20 * time.Millisecond}
	for i := range 10 {
		off := time.Duration(i) * 20 * time.Millisecond
		p.sent = append(p.sent, off)
		if slices.Contains(answered, i) {
			sent := p.epoch.Add(off)
			p.echoes = append(p.echoes, echo{sent, sent.Add(rtt)})
		}
	}
	return p
}

func TestProbeOutcomes(t *testing.T) {
	p := testStream(5*time.Millisecond, 0, 1, 2, 5, 6, 7, 8, 9)
	outs := p.outcomes(p.epoch.Add(20*time.Millisecond), p.epoch.Add(120*time.Millisecond))
	var answered []bool
	for _, o := range outs {
		answered = append(answered, o.answered)
		if o.answered && o.rtt != 5*time.Millisecond {
			t.Errorf("outcome %+v: rtt %v, want 5ms", o, o.rtt)
		}
	}
	if want := []bool{true, true, false, false, true}; !slices.Equal(answered, want) {
		t.Errorf("outcomes from 20 to 120 ms answered %v, want %v", answered, want)
	}
	after, lost, ok := p.firstAnswer(context.Background(), p.epoch.Add(50*time.Millisecond), time.Second)
	if !ok || lost != 2 || after != 45*time.Millisecond {
		t.Errorf("firstAnswer after 50 ms = %v, %d lost, %v; want 45ms (60 ms to 100 ms + 5 ms), 2 lost, true", after, lost, ok)
	}
}

func TestLossOf(t *testing.T) {
	p := testStream(time.Millisecond, 0, 1, 3, 4, 6, 7, 8, 9)
	e := &echoServer{seen: map[uint64]int{}}
	// The hub got every probe but 2 (lost up), 5 twice (its echo lost on
	// the way back, like 2's would have been) and 6 twice.
	for i := range 10 {
		if i != 2 {
			e.seen[uint64(time.Duration(i)*20*time.Millisecond)]++
		}
	}
	e.seen[uint64(5*20*time.Millisecond)]++
	e.seen[uint64(6*20*time.Millisecond)]++
	outs := p.outcomes(p.epoch, p.epoch.Add(time.Second))
	if g := sendGap(outs); g != 20*time.Millisecond {
		t.Errorf("sendGap = %v, want 20ms", g)
	}
	if g := sendGap(slices.Delete(slices.Clone(outs), 3, 6)); g != 80*time.Millisecond {
		t.Errorf("sendGap without probes 3 to 5 = %v, want 80ms", g)
	}
	if got, want := lossOf(outs, e), (flowLoss{sent: 10, upLost: 1, downLost: 1, rtLost: 2, twice: 2}); got != want {
		t.Errorf("lossOf = %+v, want %+v", got, want)
	}
	if got, want := lossOf(outs, nil), (flowLoss{sent: 10, rtLost: 2}); got != want {
		t.Errorf("lossOf without an echo count = %+v, want %+v", got, want)
	}
}

func TestMPRoles(t *testing.T) {
	path := func(uplink, role string) ctl.PathStatus {
		return ctl.PathStatus{Uplink: uplink, Multipath: &ctl.MultipathStatus{Role: role}}
	}
	p := &ctl.PeerStatus{Multipath: "failover", Paths: []ctl.PathStatus{path("wifi0", roleCarrying), path("cell0", roleWarm), path("cell0", roleDown)}}
	if !mpFailover.steady(p) || mpRedundant.steady(p) || mpFailover.off(p) {
		t.Errorf("wifi0 carrying, cell0 warm: steady failover %v, steady redundant %v, off wifi0 %v; want true, false, false",
			mpFailover.steady(p), mpRedundant.steady(p), mpFailover.off(p))
	}
	p.Paths[0].Multipath.Role, p.Paths[1].Multipath.Role = roleDown, roleCarrying
	if !mpFailover.off(p) {
		t.Errorf("wifi0 down, cell0 carrying: not off wifi0")
	}
	single := &ctl.PeerStatus{Paths: []ctl.PathStatus{{Uplink: "wifi0", Active: true, Validated: true}, {Uplink: "cell0", Validated: true}}}
	if !mpSingle.steady(single) || mpSingle.off(single) || mpFailover.steady(single) {
		t.Errorf("single connection on wifi0 with cell0 validated: steady %v, off %v, steady failover %v; want true, false, false",
			mpSingle.steady(single), mpSingle.off(single), mpFailover.steady(single))
	}
}

func TestTargetMultipath(t *testing.T) {
	tests := []struct {
		name string
		tg   target
		g    []float64
		want string
	}{
		{"at least", target{atLeast: 68}, []float64{68}, "PASS"},
		{"below the least", target{atLeast: 68}, []float64{67.9}, "FAIL"},
		{"median at least", target{atLeast: 38}, []float64{4, 39, 40}, "PASS"},
		{"none", target{atMostZero: true}, []float64{0, 0, 3}, "PASS"},
		{"some", target{atMostZero: true}, []float64{0, 1, 3}, "FAIL"},
		{"negative", target{atMostZero: true}, []float64{-2.5}, "PASS"},
	}
	for _, tt := range tests {
		if got, _, _ := tt.tg.judge(tt.g, nil, nil); got != tt.want {
			t.Errorf("%s: verdict = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestPairAlone(t *testing.T) {
	ss := []mpSeries{
		{Case: "tbf40+40-slow", Mode: "aggregate", DelayMs: 10, Metrics: map[string][]float64{"p90_ms": {50, 60, 70}}},
		{Case: "tbf40+40-slow", Mode: "failover", DelayMs: 0, Metrics: map[string][]float64{"p90_ms": {1, 1, 1}}},
		{Case: "tbf40+40-slow", Mode: "failover", DelayMs: 10, Metrics: map[string][]float64{"p90_ms": {40, 65}}},
	}
	pairAlone(ss)
	pairAlone(ss) // once only
	if got, want := ss[0].Metrics["p90_minus_alone_ms"], []float64{10, -5}; !slices.Equal(got, want) {
		t.Errorf("p90 minus alone = %v, want %v", got, want)
	}
	ss = []mpSeries{
		{Case: "tbf40+40", Mode: "aggregate", Metrics: map[string][]float64{"mbps8": {72, 70}}},
		{Case: "tbf40+4", Mode: "aggregate", Metrics: map[string][]float64{"mbps8": {36, 36}, "mbps1": {18, 36}}},
		{Case: "tbf40+4", Mode: "failover", Metrics: map[string][]float64{"mbps8": {36, 35}, "mbps1": {36, 36}}},
	}
	pairAlone(ss)
	pairAlone(ss)
	if got, want := ss[0].Metrics["alone_ratio8"], []float64{2, 2}; !slices.Equal(got, want) {
		t.Errorf("40+40, 8 flows: ratio to the best link alone = %v, want %v", got, want)
	}
	if got, want := ss[1].Metrics["alone_ratio1"], []float64{0.5, 1}; !slices.Equal(got, want) {
		t.Errorf("40+4, 1 flow: ratio to the best link alone = %v, want %v", got, want)
	}
}

func TestMultipathTable(t *testing.T) {
	rep := &report{Machine: machine{CPU: "Test CPU"}, Multipath: &multipathResult{Version: "godwit test", Runs: 5, Duration: "9m0s", Plot: "p.svg",
		Series: []mpSeries{
			{Row: "mp-silent", Case: "silent", Mode: "failover", DelayMs: 10, RTTMs: 20.6, Metrics: map[string][]float64{
				"gap_ms": {250, 280, 310, 200, 290}, "lost": {12, 13, 14, 10, 15}, "sent": {500}}},
			{Row: "mp-silent", Case: "silent", Mode: "failover", DelayMs: 0, RTTMs: 0.5, Failed: 1, Metrics: map[string][]float64{
				"gap_ms": {150, 160, 170, 180}}},
			{Row: "mp-silent", Case: "silent", Mode: "redundant", DelayMs: 0, RTTMs: 0.5, Restarts: 2, Metrics: map[string][]float64{
				"lost": {0, 0, 1, 0, 0}, "tcp_rto": {0, 0, 0, 0, 0}}},
			{Row: "mp-aggregate", Case: "tbf40+4", Mode: "aggregate", DelayMs: 0, RTTMs: 0.6, Metrics: map[string][]float64{
				"mbps1": {4, 39, 39.5, 4, 4}, "alone_ratio1": {0.1, 1, 1, 0.1, 0.1}}},
		}}}
	var b strings.Builder
	writeTable(&b, rep)
	out := b.String()
	for _, want := range []string{"multipath: Godwit only (godwit test), 5 runs per series, took 9m0s", "multipath: plot of the silent failure written to p.svg"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	checkRows(t, out, map[string][]string{
		"mp-silent failover, silent wifi0, RTT 0.5 ms: longest gap between echoes of the 50 Hz probes (ms)":                         {"165.0", "(150.0..180.0)", "n/a", "-", "<=", "300", "ms", "PASS", "4/4"},
		"mp-silent failover, silent wifi0, RTT 0.5 ms: failed runs (no echo within 10 s, or an error: see the JSON's failure_logs)": {"1", "n/a", "-"},
		"mp-silent failover, silent wifi0, RTT 20.6 ms: longest gap between echoes of the 50 Hz probes (ms)":                        {"280.0", "(200.0..310.0)", "n/a", "-", "<=", "300", "ms", "PASS", "4/5"},
		"mp-silent failover, silent wifi0, RTT 20.6 ms: probes lost of the 500 from 2 s before to 8 s after":                        {"13", "(10..15)", "n/a", "-"},
		"mp-silent redundant, silent wifi0, RTT 0.5 ms: probes lost of the 500 from 2 s before to 8 s after":                        {"0", "(0..1)", "n/a", "-", "0", "of", "500", "PASS", "4/5"},
		"mp-silent redundant, silent wifi0, RTT 0.5 ms: site restarts (steady roles not back within 20 s, or a failed run)":         {"2", "n/a", "-"},
		"mp-aggregate aggregate, tbf 40+4 Mbit/s, RTT 0.6 ms: 1 TCP flow (Mbit/s)":                                                  {"4.0", "(4.0..39.5)", "n/a", "-"},
		"mp-aggregate aggregate, tbf 40+4 Mbit/s, RTT 0.6 ms: 1 TCP flow: throughput / wifi0's 40 Mbit/s alone, run by run":         {"0.10", "(0.10..1.00)", "n/a", "-", ">=", "0.95", "x", "the", "best", "link", "alone", "FAIL", "2/5"},
	})
	// The RTT 0.5 ms series come before the 20.6 ms one.
	if i, j := strings.Index(out, "RTT 0.5 ms: longest gap"), strings.Index(out, "RTT 20.6 ms: longest gap"); i < 0 || j < i {
		t.Errorf("series not ordered by RTT within their mode:\n%s", out)
	}
	if strings.Contains(out, ": sent") || strings.Contains(out, "TCP:") {
		t.Errorf("table shows figures it should not:\n%s", out)
	}
}

func TestWritePlot(t *testing.T) {
	var traces []mpTrace
	for i, m := range []string{"redundant", "single", "failover", "duplicate"} {
		tr := mpTrace{Mode: m, RTTMs: 20}
		for k := -50; k < 250; k++ {
			at := float64(k) / 50
			tr.Points = append(tr.Points, tracePoint{T: at, RTTMs: 20 + float64(i), Lost: at >= 0 && at < []float64{0, 2.5, 0.25, 0.25}[i]})
		}
		traces = append(traces, tr)
	}
	dir := t.TempDir()
	for _, f := range []string{"p.svg", "p.png"} {
		if err := writePlot(filepath.Join(dir, f), traces); err != nil {
			t.Fatalf("writePlot(%s): %v", f, err)
		}
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || len(b) < 1000 {
			t.Errorf("%s: %d bytes, %v; want a plot", f, len(b), err)
		}
		if f != "p.svg" {
			continue
		}
		// The legend names the modes with their losses, single first;
		// duplicate is not drawn.
		svg := string(b)
		for _, want := range []string{"one connection that moves (no multipath): 125 of 300 lost", "multipath failover: 13 of 300 lost",
			"multipath redundant: 0 of 300 lost", "lost, single"} {
			if !strings.Contains(svg, want) {
				t.Errorf("SVG lacks %q", want)
			}
		}
		if strings.Contains(svg, "duplicate") {
			t.Error("SVG shows the duplicate mode")
		}
	}
	if err := writePlot(filepath.Join(dir, "none.svg"), nil); err == nil {
		t.Error("writePlot without traces: no error")
	}
}

// TestMultipathRun runs the mp-silent row once per mode at 20 ms RTT with
// a plot, and checks the figures against generous physical bounds, the
// plot and the cleanup. The targets are Godwit's business (the table
// reports them); the lab itself must work.
func TestMultipathRun(t *testing.T) {
	labtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("runs the multipath lab for about 80 s; skipped with -short")
	}
	plotFile := filepath.Join(t.TempDir(), "silent.svg")
	o := options{rows: rowSet{mpSilent: true}, runs: 1, mpRTTs: []int{20}, plot: plotFile, json: true, duration: time.Second, pings: 1}
	start := time.Now()
	var rep report
	stderr, runErr := measuretest.RunJSON(t, "gwb-", run, o, 5*time.Minute, &rep)
	t.Logf("mp-silent with 1 run per mode took %v", time.Since(start).Round(time.Second))
	m := rep.Multipath
	if m == nil {
		t.Fatalf("no multipath result (run: %v)\n%s", runErr, stderr)
	}
	if runErr != nil {
		t.Fatalf("run: %v\n%s", runErr, stderr)
	}
	if len(rep.Rounds) != 0 || rep.Mobility != nil {
		t.Errorf("report has classic or mobility results for the multipath rows only")
	}
	var modes []string
	for _, s := range m.Series {
		modes = append(modes, s.Mode)
		if s.Row != "mp-silent" || s.DelayMs != 10 || s.RTTMs < 20 || s.RTTMs > 40 {
			t.Errorf("series %s %s: row %s, delay %v ms, RTT %v ms; want mp-silent, 10 ms, an RTT of 20 to 40 ms", s.Case, s.Mode, s.Row, s.DelayMs, s.RTTMs)
		}
		if s.Failed > 0 {
			t.Logf("%s: %d failed runs: %q", s.Mode, s.Failed, s.FailureLogs)
			continue
		}
		// 50 Hz for 10 s; a gap is at least one probe interval and at most
		// the recovery bound; an idle probe needs a round trip.
		if n := s.Metrics["sent"]; len(n) != 1 || n[0] < 450 || n[0] > 510 {
			t.Errorf("%s: %v probes sent in the window, want about 500", s.Mode, n)
		}
		if g := s.Metrics["gap_ms"]; len(g) != 1 || g[0] < 15 || g[0] > ms(mobRecover) {
			t.Errorf("%s: longest gap %v ms, want 15 ms to 10 s", s.Mode, g)
		}
		if f := s.Metrics["idle_first_ms"]; len(f) != 1 || f[0] < 20 {
			t.Errorf("%s: idle first echo after %v ms, want at least the 20 ms RTT", s.Mode, f)
		}
		for _, k := range []string{"lost", "tcp_retrans", "tcp_rto", "idle_lost"} {
			if len(s.Metrics[k]) != 1 || s.Metrics[k][0] < 0 {
				t.Errorf("%s: %s = %v, want one count", s.Mode, k, s.Metrics[k])
			}
		}
	}
	if want := []string{"failover", "redundant", "duplicate", "single"}; !slices.Equal(modes, want) {
		t.Errorf("series modes %q, want %q", modes, want)
	}
	if d := m.Series[2].Metrics; len(d["dup_lost_up"]) != 1 || len(d["bulk_cell_pct"]) != 1 || d["bulk_mbps"][0] <= 0 {
		t.Errorf("duplicate series metrics %v, want the port 5004 flow's and the bulk's", d)
	}
	if len(m.Traces) != 4 || m.Plot != plotFile {
		t.Errorf("%d traces, plot %q; want 4 and %q", len(m.Traces), m.Plot, plotFile)
	}
	if st, err := os.Stat(plotFile); err != nil || st.Size() < 1000 {
		t.Errorf("plot %s: %v; want a plot", plotFile, err)
	}
	for _, want := range []string{"mp-silent failover, silent wifi0, RTT", "<= 300 ms", "multipath: plot of the silent failure"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("table lacks %q:\n%s", want, stderr)
		}
	}
}
