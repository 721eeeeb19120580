// SPDX-License-Identifier: MIT

// Command bench measures Godwit side by side with wireguard-go on this
// machine. Run it as root from the module root:
//
//	go run ./tests/bench [-duration 10s] [-rounds 3] [-json]
//	                     [-rows tcp1,tcp4,ping,loss1,loss5,tbf100,tcp1-cpu1]
//	                     [-only godwit|wireguard] [-profile DIR] [-runs 10]
//	                     [-mp-rtts 0,20] [-mp-modes failover,...] [-plot FILE.svg]
//
// It builds two network namespaces joined by one veth (198.18.0.1/24 and
// 2001:db8::1/64 in "hub", 198.18.0.2/24 and 2001:db8::2/64 in "site"),
// and measures a Godwit hub and site (inner 198.19.0.1/24 and
// 198.19.0.2/32) and two wireguard-go instances (inner 198.19.1.1/24 and
// 198.19.1.2/24, UDP port 51820), never both at once: bulk TCP throughput
// from site to hub for each stream count, the CPU seconds per GB moved of
// both daemons together, ping round trips through the idle tunnel and
// through the bare veth, and single-stream throughput under impairments
// of the underlay: random loss (an nft numgen rule in the hub namespace's
// prerouting on the tunnel's UDP port, with UDP GSO segmentation forced on
// the site's veth so that each datagram is dropped on its own) and a tbf
// rate limit on the site's veth. A tcpN-cpuC row starves the receiver: the
// hub daemon is started under `taskset -c 0..C-1` (so its Go runtime also
// starts with GOMAXPROCS=C) while the sender, the sink and the site daemon
// run unpinned, so the sender is faster than the hub can decrypt.
//
// The measurement runs in -rounds rounds. Each round measures every one of
// these rows for both daemons, each pair started afresh for the round (and
// once more per tcpN-cpuC row), Godwit first in odd rounds and
// wireguard-go first in even ones: G W, W G, G W, ..., so that a change
// of the machine's load during the run lands on both. Per row the table
// gives each daemon's median over the rounds with its min..max, and the
// median of the per-round Godwit/wireguard-go ratios with their min..max
// (for ping, the per-round differences in ms).
//
// Every TCP run also reports, over its measured interval and per GB the
// sink received: the inner TCP's retransmissions (TcpRetransSegs of the
// site namespace, where the sender runs), and the drops inside the
// daemons by reason: for both daemons the UDP receive and send buffer
// errors of each namespace (/proc/net/snmp Udp and Udp6), for Godwit also
// both daemons' control-socket status (quic-go's dos_prevention,
// receive_queue_full and send_too_large drops, the tunnel's
// inbound/tun_queue_full, outbound/queue_full and every other reason, TUN
// and socket losses; outbound/no_route, packets the kernel sends into the
// TUN for no peer, is listed but not counted). wireguard-go exposes no
// drop counters of its own, so only its UDP buffer drops are counted.
//
// The table compares each row with the targets of the data-path issue
// (PASS/FAIL on the median, then how many rounds met the target on their
// own): tcpN >= 1.0x wireguard-go, CPU s per GB <= 1.2x, inner TCP
// retransmits per GB <= wireguard-go's + 1 %, drops inside the daemons 0
// in every round (tcpN rows), idle ping median <= wireguard-go's +
// 0.05 ms, loss and tbf rows >= 1.0x; the tcpN-cpuC rows have no target.
// -json prints every round's figures and the table's rows.
//
// With -profile, both Godwit daemons run with GODWIT_PPROF=1 and a
// metrics_listen on 127.0.0.1:9586 in their namespace, and during the tcp1
// row of the first round the bench saves a 5 s CPU profile, a 5 s
// allocation profile and a heap profile of each and prints their `go tool
// pprof -top` heads. wireguard-go is built from the module proxy in the
// run and configured through its UAPI socket, without the wg tool. Each
// project keeps its own default inner MTU. Everything the run creates is
// removed at the end, also on error or Ctrl-C.
//
// The mobility rows, not in the default set because they take about
// three minutes together (-rows switch,switch-nostandby,restart20,restart100),
// measure Godwit alone in a lab of their own (mobility.go), once, after the
// rounds: the outage of a make-before-break uplink switch and of the
// switch back, at about 0 and 20 ms RTT; the outage when the standby
// uplink only comes up as the active one goes down; and the time from
// exec of a restarted site to the first echo through the tunnel with
// 0-RTT and with a full handshake, at N ms RTT (restartN). Each is -runs
// times; medians, p90 and max.
//
// The multipath rows, also opt-in (-rows mp-silent,mp-loss,mp-aggregate,
// about 15 minutes per RTT with -runs 5), measure Godwit alone in a lab of
// their own (multipath.go) whose site keeps one connection per uplink, at
// each RTT of -mp-rtts, -runs times per series: mp-silent makes the
// carrying uplink silent under a 50 Hz ping and a paced TCP stream, and
// again with an idle tunnel, in failover, redundant, failover with a
// duplicate rule for a UDP flow, and without multipath (one connection
// that moves); mp-loss puts random loss on both uplinks or 30 % on the
// carrying one; mp-aggregate shapes the uplinks with tbf (40+40 and 40+4
// Mbit/s, and 40+40 with 20 ms more RTT on one) under 8 and 1 TCP flows.
// The table gives each figure's median with min..max over the runs, the
// multipath issue's target and the verdict with how many runs met it.
// -plot draws the ping's RTT across the silent failure, one line per mode.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// options are the command-line settings.
type options struct {
	duration time.Duration // measured interval of each TCP run
	warmup   time.Duration // sending before each measured interval
	rows     rowSet        // what to measure
	json     bool          // print JSON on stdout, the table on stderr
	only     string        // "", "godwit" or "wireguard"
	pings    int           // echo requests per ping series
	profile  string        // directory for Godwit's profiles, or ""
	runs     int           // runs per mobility series
	rounds   int           // rounds of the classic rows, each measuring both daemons
	mtu      int           // Godwit's inner MTU, 0 for its default
	mpRTTs   []int         // RTTs the relay adds for the multipath rows, in ms
	mpModes  []string      // the multipath rows' site modes to measure; nil: all
	plot     string        // SVG or PNG file of the silent failure's probes, or ""
}

// defaultRows is every row of the target table, and the
// CPU-starved receiver.
const defaultRows = "tcp1,tcp4,ping,loss1,loss5,tbf100,tcp1-cpu1"

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var rows, mpRTTs, mpModes string
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured `interval` of each TCP run (every tcp, loss and tbf row)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "TCP sending before the measured interval starts")
	fs.StringVar(&rows, "rows", defaultRows, "comma-separated `rows`: tcpN (N parallel streams), ping, lossP (1 stream, P % random\n"+
		"underlay loss), tbfM (1 stream, M Mbit/s tbf on the underlay), tcpN-cpuC (N streams, the receiving hub\n"+
		"daemon pinned to CPUs 0..C-1); Godwit only: switch, switch-nostandby (uplink switch outage at 0 and\n"+
		"20 ms RTT), restartN (site restart to first packet at N ms RTT), mp-silent, mp-loss, mp-aggregate\n"+
		"(multipath: a silent uplink, lossy uplinks, aggregation; at each -mp-rtts)")
	fs.IntVar(&o.rounds, "rounds", 3, "`rounds` of the classic rows; each measures both daemons, Godwit first in odd rounds,\n"+
		"wireguard-go first in even ones")
	fs.IntVar(&o.runs, "runs", 10, "runs per mobility or multipath series (switch, switch-nostandby, restartN, mp-* rows)")
	fs.StringVar(&mpRTTs, "mp-rtts", "0,20", "comma-separated `RTTs` in ms that the relay adds for the mp-* rows (0: the veth's own)")
	fs.StringVar(&mpModes, "mp-modes", "", "comma-separated site `modes` of the mp-* rows to measure (failover, redundant, duplicate,\n"+
		"single, aggregate); empty: all")
	fs.StringVar(&o.plot, "plot", "", "with mp-silent: write the 50 Hz probes' RTT across the silent failure (first run at the\n"+
		"largest -mp-rtts, one line per mode) to `file`, SVG or PNG by its extension")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON on stdout (the table goes to stderr)")
	fs.StringVar(&o.only, "only", "", "measure only `godwit` or wireguard")
	fs.IntVar(&o.pings, "pings", 100, "echo requests per ping series (10 ms apart)")
	fs.StringVar(&o.profile, "profile", "", "during the tcp1 row, save 5 s CPU and allocation profiles and a heap profile\n"+
		"of both Godwit daemons into `dir` and print their pprof tops")
	fs.IntVar(&o.mtu, "mtu", 0, "Godwit's inner `mtu` (0: the daemon's default; wireguard-go keeps its 1420)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	var err error
	if o.rows, err = parseRows(rows); err != nil {
		return o, err
	}
	if o.mpRTTs, err = parseRTTs(mpRTTs); err != nil {
		return o, err
	}
	if mpModes != "" {
		for m := range strings.SplitSeq(mpModes, ",") {
			m = strings.TrimSpace(m)
			if !slices.ContainsFunc(allModes, func(x *mpMode) bool { return x.key == m }) || slices.Contains(o.mpModes, m) {
				return o, fmt.Errorf("bench: -mp-modes %q: %q is not failover, redundant, duplicate, single or aggregate given once", mpModes, m)
			}
			o.mpModes = append(o.mpModes, m)
		}
	}
	if runtime.NumCPU() < 2 && !flagSet(fs, "rows") {
		// A one-CPU machine cannot starve the receiver alone.
		o.rows.pinned = nil
	}
	switch {
	case o.only != "" && o.only != "godwit" && o.only != "wireguard":
		return o, fmt.Errorf("bench: -only %q: want godwit or wireguard", o.only)
	case o.duration <= 0 || o.duration > time.Hour:
		return o, fmt.Errorf("bench: -duration %v: want more than 0 and at most 1h", o.duration)
	case o.warmup < 0 || o.warmup > time.Minute:
		return o, fmt.Errorf("bench: -warmup %v: want 0 to 1m", o.warmup)
	case o.mtu != 0 && (o.mtu < 576 || o.mtu > 1500):
		return o, fmt.Errorf("bench: -mtu %d: want 0 or 576 to 1500", o.mtu)
	case o.pings < 1 || o.pings > 10000:
		return o, fmt.Errorf("bench: -pings %d: want 1 to 10000", o.pings)
	case o.runs < 1 || o.runs > 100:
		return o, fmt.Errorf("bench: -runs %d: want 1 to 100", o.runs)
	case o.rounds < 1 || o.rounds > 100:
		return o, fmt.Errorf("bench: -rounds %d: want 1 to 100", o.rounds)
	case o.only == "wireguard" && (o.rows.mobility() || o.rows.multipath()):
		return o, fmt.Errorf("bench: the mobility and multipath rows measure Godwit, but -only is wireguard")
	case o.plot != "" && !o.rows.mpSilent:
		return o, fmt.Errorf("bench: -plot needs the mp-silent row")
	case o.plot != "" && !strings.HasSuffix(o.plot, ".svg") && !strings.HasSuffix(o.plot, ".png"):
		return o, fmt.Errorf("bench: -plot %q: want a .svg or .png file", o.plot)
	case slices.ContainsFunc(o.rows.pinned, func(p pinnedRow) bool { return p.CPUs >= runtime.NumCPU() }):
		return o, fmt.Errorf("bench: -rows: a tcpN-cpuC row needs C below the %d CPUs of this machine, so that the sender has a CPU the hub does not", runtime.NumCPU())
	case o.profile != "" && !slices.Contains(o.rows.streams, 1):
		return o, fmt.Errorf("bench: -profile needs the tcp1 row")
	case o.profile != "" && o.only == "wireguard":
		return o, fmt.Errorf("bench: -profile profiles Godwit, but -only is wireguard")
	}
	return o, nil
}

// flagSet reports whether the flag name was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// rowSet is what -rows asks for.
type rowSet struct {
	streams []int        // tcpN rows, in the order given
	ping    bool         // the ping rows
	impair  []impairment // lossP and tbfM rows (one TCP stream each), in the order given
	pinned  []pinnedRow  // tcpN-cpuC rows, in the order given
	// switchMBB, switchNoStandby and restart (RTTs in ms, in the order
	// given) are the mobility rows (mobility.go).
	switchMBB, switchNoStandby bool
	restart                    []int
	// mpSilent, mpLoss and mpAggregate are the multipath rows
	// (multipath.go).
	mpSilent, mpLoss, mpAggregate bool
	// overTCP are the rows of Godwit's TCP path (overtcp, overtcp-lossP),
	// in the order given.
	overTCP []tcpPathRow
}

// classic reports whether rs has rows that compare both daemons.
func (rs rowSet) classic() bool {
	return len(rs.streams) > 0 || rs.ping || len(rs.impair) > 0 || len(rs.pinned) > 0 || len(rs.overTCP) > 0
}

// mobility reports whether rs has mobility rows.
func (rs rowSet) mobility() bool { return rs.switchMBB || rs.switchNoStandby || len(rs.restart) > 0 }

// multipath reports whether rs has multipath rows.
func (rs rowSet) multipath() bool { return rs.mpSilent || rs.mpLoss || rs.mpAggregate }

// impairment is a fault on the underlay during a single-stream TCP run.
// Exactly one of LossPct and RateMbit is set.
type impairment struct {
	Key      string `json:"key"`                // the -rows name: "loss1", "tbf100"
	LossPct  int    `json:"loss_pct,omitempty"` // random drop of UDP to the tunnel port at the receiver, 1..99
	RateMbit int    `json:"rate_mbit,omitempty"`
}

// pinnedRow is a TCP run with a CPU-starved receiver: the hub daemon is
// started under taskset on CPUs 0..CPUs-1, while the sender, the sink and
// the site daemon may use every CPU.
type pinnedRow struct {
	Key     string `json:"key"` // the -rows name: "tcp1-cpu1"
	Streams int    `json:"streams"`
	CPUs    int    `json:"hub_cpus"`
}

// tcpPathRow is a single-stream TCP run through Godwit with UDP blocked
// on the underlay, so the tunnel runs on its TCP path (TLS on TCP,
// listen_tcp and endpoint_tcp), with LossPct % random loss of the outer
// TCP segments to the hub, or none.
type tcpPathRow struct {
	Key     string `json:"key"` // the -rows name: "overtcp", "overtcp-loss1"
	LossPct int    `json:"loss_pct,omitempty"`
}

// parseRows parses -rows. Names are tcpN (N 1..64), ping, lossP (P 1..99),
// tbfM (M 1..100000), tcpN-cpuC (N 1..64, C 1..64), overtcp,
// overtcp-lossP (P 1..99), switch,
// switch-nostandby, restartN (N 0..1000), mp-silent, mp-loss and
// mp-aggregate, without duplicates.
func parseRows(s string) (rowSet, error) {
	var rs rowSet
	seen := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		bad := fmt.Errorf("bench: -rows %q: %q is not tcpN (1..64), ping, lossP (1..99), tbfM (1..100000), tcpN-cpuC (1..64, 1..64), overtcp, overtcp-lossP (1..99), switch, switch-nostandby, restartN (0..1000), mp-silent, mp-loss or mp-aggregate", s, f)
		if seen[f] {
			return rowSet{}, fmt.Errorf("bench: -rows %q: %q given twice", s, f)
		}
		seen[f] = true
		switch f {
		case "ping":
			rs.ping = true
			continue
		case "switch":
			rs.switchMBB = true
			continue
		case "switch-nostandby":
			rs.switchNoStandby = true
			continue
		case "mp-silent":
			rs.mpSilent = true
			continue
		case "mp-loss":
			rs.mpLoss = true
			continue
		case "mp-aggregate":
			rs.mpAggregate = true
			continue
		case "overtcp":
			rs.overTCP = append(rs.overTCP, tcpPathRow{Key: f})
			continue
		}
		if v, ok := strings.CutPrefix(f, "overtcp-loss"); ok {
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 99 || strconv.Itoa(p) != v {
				return rowSet{}, bad
			}
			rs.overTCP = append(rs.overTCP, tcpPathRow{Key: f, LossPct: p})
			continue
		}
		if tcp, cpus, ok := strings.Cut(f, "-cpu"); ok {
			n, err1 := strconv.Atoi(strings.TrimPrefix(tcp, "tcp"))
			c, err2 := strconv.Atoi(cpus)
			if !strings.HasPrefix(tcp, "tcp") || err1 != nil || err2 != nil || n < 1 || n > 64 || c < 1 || c > 64 ||
				fmt.Sprintf("tcp%d-cpu%d", n, c) != f {
				return rowSet{}, bad
			}
			rs.pinned = append(rs.pinned, pinnedRow{Key: f, Streams: n, CPUs: c})
			continue
		}
		if !rs.addNumbered(f) {
			return rowSet{}, bad
		}
	}
	return rs, nil
}

// numberedRows are the rows named by a prefix and a number in lo..hi,
// written without leading zeros or sign: restartN, tcpN, lossP and tbfM.
var numberedRows = []struct {
	prefix string
	lo, hi int
	add    func(rs *rowSet, key string, n int)
}{
	{"restart", 0, 1000, func(rs *rowSet, _ string, n int) { rs.restart = append(rs.restart, n) }},
	{"tcp", 1, 64, func(rs *rowSet, _ string, n int) { rs.streams = append(rs.streams, n) }},
	{"loss", 1, 99, func(rs *rowSet, key string, n int) { rs.impair = append(rs.impair, impairment{Key: key, LossPct: n}) }},
	{"tbf", 1, 100000, func(rs *rowSet, key string, n int) { rs.impair = append(rs.impair, impairment{Key: key, RateMbit: n}) }},
}

// addNumbered adds the row f if it is one of numberedRows with its number
// in range, and reports whether it was.
func (rs *rowSet) addNumbered(f string) bool {
	for _, r := range numberedRows {
		v, ok := strings.CutPrefix(f, r.prefix)
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < r.lo || n > r.hi || strconv.Itoa(n) != v {
			return false
		}
		r.add(rs, f, n)
		return true
	}
	return false
}

// parseRTTs parses -mp-rtts: RTTs in ms (0..1000), without duplicates.
func parseRTTs(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 1000 || strconv.Itoa(n) != f || slices.Contains(out, n) {
			return nil, fmt.Errorf("bench: -mp-rtts %q: %q is not an RTT in ms (0..1000) given once", s, f)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	os.Exit(measure.Main("bench", os.Args[1:], os.Stdout, os.Stderr, parseFlags, run))
}
