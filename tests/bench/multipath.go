// SPDX-License-Identifier: MIT

package main

// The multipath rows (mp-silent, mp-loss, mp-aggregate) measure Godwit
// alone, in a mobility lab of their own (mobility.go, namespaces mphub and
// mpsite) whose site sets multipath in its [[peer]] and so keeps one QUIC
// connection per uplink:
//
//	site (mpsite)                                     hub (mphub)
//	wifi0 198.51.100.2/24 ─────── veth ─────── wifi0h 198.51.100.1/24 ┐ table inet gwbmp: bytes per
//	cell0 192.0.2.2/24    ─────── veth ─────── cell0h 192.0.2.1/24    ┘ uplink and direction; silence
//	  (tbf on wifi0, cell0: mp-aggregate)                               and loss, both directions
//	gwm0 (TUN) 198.19.0.2/24, uplinks wifi0, cell0     lo 203.0.113.1: relay for wifi0, one-way delay D
//	  dials 203.0.113.1:4433 on each                  lo 203.0.113.3: relay for cell0, delay D+E, reached
//	                                                    by a DNAT of 203.0.113.1:4433 arriving on cell0h
//	                                                  lo 203.0.113.2: Godwit hub, UDP 4433
//	                                                  gwm0 (TUN) 198.19.0.1/24: UDP echo on 7777 and 5004,
//	                                                    counting the probes it answers; TCP sinks
//
// The lab's probe stream is the 50 Hz ping: a UDP probe every 20 ms from
// the site to 198.19.0.1:7777, each send and each echo recorded, and the
// echo counts what reached the hub, so a loss is told apart by direction.
// wifi0 goes SILENT when the hub namespace (the router here) drops
// everything that arrives on wifi0h and everything it sends out of it,
// before conntrack, while the link stays up with its address and routes:
// only the tunnel's health monitor can tell. Loss is the same rule with
// `numgen random mod 100 < P`.

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// mpDupEcho is the echo of the duplicate mode's UDP flow.
var mpDupEcho = netip.AddrPortFrom(mobHubIn.Addr(), 5004)

const (
	// mpInterval is the probe stream's: the 50 Hz ping.
	mpInterval = 20 * time.Millisecond
	// mpBefore and mpAfter are the loss window of a silent failure:
	// the 500 probes sent from 2 s before it to 8 s after it.
	mpBefore, mpAfter = 2 * time.Second, 8 * time.Second
	// mpGrace is how long echoes of a window's last probes may take.
	mpGrace = 500 * time.Millisecond
	// mpLossWindow is the loss rows' window: 500 probes.
	mpLossWindow = 10 * time.Second
	// mpSteadyWait bounds the wait for the mode's steady roles.
	mpSteadyWait = 20 * time.Second
	// mpPacedPort is the TCP port of the paced stream's sink.
	mpPacedPort = 5301
	// mpAggWarmup and mpAggDuration time the aggregate rows' TCP runs.
	mpAggWarmup, mpAggDuration = time.Second, 5 * time.Second
	// mpSlowExtra is the one-way delay cell0's relay adds in the "slow"
	// aggregate case: 20 ms more RTT than wifi0.
	mpSlowExtra = 10 * time.Millisecond
	// mpTable is the hub's nft table of counters and impairments.
	mpTable = "gwbmp"
)

// mpRuleset is the hub's table: named counters of each uplink's packets
// and bytes up (arriving from the site) and down (sent to it), taken at
// priority -400 before anything drops them, counters of the drops, and
// the chains the impairments go into (priority -300, before conntrack).
var mpRuleset = fmt.Sprintf(`table inet %[1]s {
	counter wifi_up {}
	counter cell_up {}
	counter wifi_down {}
	counter cell_down {}
	counter wifi_drop {}
	counter cell_drop {}
	chain count_in {
		type filter hook prerouting priority -400; policy accept;
		iifname %[2]q counter name "wifi_up"
		iifname %[3]q counter name "cell_up"
	}
	chain count_out {
		type filter hook output priority -400; policy accept;
		oifname %[2]q counter name "wifi_down"
		oifname %[3]q counter name "cell_down"
	}
	chain pre {
		type filter hook prerouting priority -300; policy accept;
	}
	chain out {
		type filter hook output priority -300; policy accept;
	}
}
`, mpTable, mobWifi.hubIf, mobCell.hubIf)

// mpImpair renders the impairment rules: every packet to and from the
// uplinks in pct dropped with that probability in percent (100: silent).
func mpImpair(pct map[string]int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "flush chain inet %[1]s pre\nflush chain inet %[1]s out\n", mpTable)
	for _, u := range []mobUplink{mobWifi, mobCell} {
		p := pct[u.name]
		if p <= 0 {
			continue
		}
		cond := ""
		if p < 100 {
			cond = fmt.Sprintf("numgen random mod 100 < %d ", p)
		}
		c := strings.TrimSuffix(u.name, "0")
		fmt.Fprintf(&b, "add rule inet %s pre iifname %q %scounter name %q drop\n", mpTable, u.hubIf, cond, c+"_drop")
		fmt.Fprintf(&b, "add rule inet %s out oifname %q %scounter name %q drop\n", mpTable, u.hubIf, cond, c+"_drop")
	}
	return b.String()
}

// nftCounter is a named nft counter.
type nftCounter struct{ packets, bytes uint64 }

// parseNamedCounters reads the named counters ("counter NAME {" followed by
// "packets N bytes M") of `nft list table` output.
func parseNamedCounters(out string) (map[string]nftCounter, error) {
	m := map[string]nftCounter{}
	s := bufio.NewScanner(strings.NewReader(out))
	name := ""
	for s.Scan() {
		f := strings.Fields(s.Text())
		switch {
		case len(f) == 3 && f[0] == "counter" && f[2] == "{":
			name = f[1]
		case name != "" && len(f) == 4 && f[0] == "packets" && f[2] == "bytes":
			p, err1 := strconv.ParseUint(f[1], 10, 64)
			b, err2 := strconv.ParseUint(f[3], 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("bench: nft counter %s: %q", name, s.Text())
			}
			m[name] = nftCounter{p, b}
			name = ""
		}
	}
	return m, nil
}

// mpMode is one way the site reaches the hub.
type mpMode struct {
	key  string   // "failover", "redundant", "duplicate", "single", "aggregate"
	peer []string // the site's [[peer]] lines
	// steady holds for the site's view of the hub before an event: wifi0
	// carries (and cell0 stands by, or carries too).
	steady func(*ctl.PeerStatus) bool
	// off holds once the traffic no longer takes wifi0.
	off func(*ctl.PeerStatus) bool
}

// The roles of a multipath connection in the status.
const (
	roleCarrying = "carrying"
	roleWarm     = "warm"
	roleDown     = "down"
)

var (
	mpFailover = &mpMode{"failover", []string{`multipath = "failover"`}, mpRoles(roleCarrying, roleWarm), offWifi}
	// mpDuplicate duplicates the UDP flow to port 5004 in failover.
	mpDuplicate = &mpMode{"duplicate", []string{`multipath = "failover"`, fmt.Sprintf(`duplicate = ["udp:%d"]`, mpDupEcho.Port())},
		mpRoles(roleCarrying, roleWarm), offWifi}
	mpRedundant = &mpMode{"redundant", []string{`multipath = "redundant"`}, mpRoles(roleCarrying, roleCarrying), offWifi}
	mpAggregate = &mpMode{"aggregate", []string{`multipath = "aggregate"`}, mpRoles(roleCarrying, roleCarrying), offWifi}
	// mpSingle is a site with multipath = "off": one connection that
	// moves between the uplinks (see "Sites that move").
	mpSingle = &mpMode{"single", []string{`multipath = "off"`},
		func(p *ctl.PeerStatus) bool {
			return p.Multipath == "" && p.ActiveUplink() == mobWifi.name && p.ValidatedStandby(mobCell.name)
		},
		func(p *ctl.PeerStatus) bool { return p.ActiveUplink() == mobCell.name }}
)

// mpRoles returns a predicate that holds when wifi0's and cell0's best
// roles are wifi and cell.
func mpRoles(wifi, cell string) func(*ctl.PeerStatus) bool {
	return func(p *ctl.PeerStatus) bool {
		return p.Multipath != "" && mpRole(p, mobWifi.name) == wifi && mpRole(p, mobCell.name) == cell
	}
}

// offWifi holds when cell0 carries and wifi0 does not.
func offWifi(p *ctl.PeerStatus) bool {
	return mpRole(p, mobCell.name) == roleCarrying && mpRole(p, mobWifi.name) != roleCarrying
}

// roleRank orders the roles for mpRole.
var roleRank = map[string]int{roleCarrying: 3, roleWarm: 2, roleDown: 1}

// mpRole returns the best role of p's connections on uplink, or "" when p
// has none there (or is not multipath).
func mpRole(p *ctl.PeerStatus, uplink string) string {
	best := ""
	for _, pa := range p.Paths {
		if pa.Uplink == uplink && pa.Multipath != nil && roleRank[pa.Multipath.Role] > roleRank[best] {
			best = pa.Multipath.Role
		}
	}
	return best
}

// mpCarrying counts p's connections that carry.
func mpCarrying(p *ctl.PeerStatus) int {
	n := 0
	for _, pa := range p.Paths {
		if pa.Multipath != nil && pa.Multipath.Role == roleCarrying {
			n++
		}
	}
	return n
}

// mpTx sums the packets sent and the extra copies among them over p's
// connections.
func mpTx(p *ctl.PeerStatus) (tx, dup uint64) {
	for _, pa := range p.Paths {
		if pa.Multipath != nil {
			tx += pa.Multipath.TxPackets
			dup += pa.Multipath.DupSent
		}
	}
	return tx, dup
}

// mpDupSent sums the extra copies sent over p's connections.
func mpDupSent(p *ctl.PeerStatus) (n uint64) {
	for _, pa := range p.Paths {
		if pa.Multipath != nil {
			n += pa.Multipath.DupSent
		}
	}
	return n
}

// mpPaths describes p's connections in one line for logs.
func mpPaths(p *ctl.PeerStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "multipath=%q", p.Multipath)
	for _, pa := range p.Paths {
		if m := pa.Multipath; m != nil {
			fmt.Fprintf(&b, " [%s %s/%s loss %.2f share %.2f]", pa.Uplink, m.Role, m.Health, m.Loss, m.Share)
		} else {
			fmt.Fprintf(&b, " [%s active=%v validated=%v]", pa.Uplink, pa.Active, pa.Validated)
		}
	}
	return b.String()
}

// multipathResult is what the multipath rows measured (JSON "multipath").
type multipathResult struct {
	Version string     `json:"version,omitempty"`
	Runs    int        `json:"runs_per_series"`
	Series  []mpSeries `json:"series"`
	// Plot is the file -plot wrote, Traces what it shows.
	Plot     string    `json:"plot,omitempty"`
	Traces   []mpTrace `json:"plot_traces,omitempty"`
	Error    string    `json:"error,omitempty"`
	Duration string    `json:"duration"` // wall time of all multipath rows
}

// mpSeries is one case in one mode at one relay delay, -runs times.
type mpSeries struct {
	Row     string  `json:"row"`  // "mp-silent", "mp-loss", "mp-aggregate"
	Case    string  `json:"case"` // "silent", "loss10-both", "loss30-wifi0", "tbf40+40", "tbf40+4", "tbf40+40-slow"
	Mode    string  `json:"mode"` // mpMode.key
	DelayMs float64 `json:"relay_one_way_delay_ms"`
	RTTMs   float64 `json:"rtt_ms"` // median probe RTT through the tunnel before the series
	// Metrics are the figures by key (mpMetrics), one per run that gave
	// one, in run order.
	Metrics map[string][]float64 `json:"metrics"`
	// Failed counts runs that did not recover (no echo within 10 s of the
	// event); Restarts the site restarts needed to get back to the steady
	// roles after a run; FailureLogs the site's log tails of the first.
	Failed      int      `json:"failed_runs"`
	Restarts    int      `json:"site_restarts"`
	FailureLogs []string `json:"failure_logs,omitempty"`
}

func (s *mpSeries) add(key string, v float64) {
	if s.Metrics == nil {
		s.Metrics = map[string][]float64{}
	}
	s.Metrics[key] = append(s.Metrics[key], v)
}

// mpTrace is the probe stream across one silent failure, for the plot.
type mpTrace struct {
	Mode   string       `json:"mode"`
	RTTMs  float64      `json:"rtt_ms"`
	Points []tracePoint `json:"points"`
}

// tracePoint is one probe: sent T seconds after the failure, answered
// after RTTMs, or lost.
type tracePoint struct {
	T     float64 `json:"t_s"`
	RTTMs float64 `json:"rtt_ms,omitempty"`
	Lost  bool    `json:"lost,omitempty"`
}

// mpLab is the multipath lab with its site in one mode.
type mpLab struct {
	*mobLab
	dupEcho *echoServer // on mpDupEcho's port, counting
	mode    *mpMode     // the site's current mode
}

// newMPLab builds the lab with the site in mode first.
func newMPLab(ctx context.Context, lab *netlab.Lab, bin string, log *slog.Logger, runs int, first *mpMode) (_ *mpLab, err error) {
	// The stream lives long enough for every row at both RTTs.
	life := 30*time.Minute + time.Duration(runs)*6*time.Minute
	m, err := newMobLabWith(ctx, lab, bin, log, mobLabConfig{prefix: "mp", interval: mpInterval, life: life,
		cellRelay: true, countEcho: true, relayBuffer: 4 << 20, sitePeer: first.peer})
	if err != nil {
		return nil, err
	}
	l := &mpLab{mobLab: m, mode: first}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if _, err := nsCommand(ctx, l.hub, mpRuleset, "nft", "-f", "-"); err != nil {
		return nil, err
	}
	if l.dupEcho, err = startEcho(l.hub, mpDupEcho.Port(), true); err != nil {
		return nil, err
	}
	if err := l.waitSteady(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// close stops the echoes, the stream, the relays and the daemons; the lab
// removes the namespaces.
func (l *mpLab) close() {
	if l.dupEcho != nil {
		l.dupEcho.close()
	}
	l.mobLab.close()
	var procs []*netlab.Proc
	for _, d := range []*netlab.Daemon{l.siteProc, l.hubProc} {
		if d != nil {
			procs = append(procs, d.Proc)
		}
	}
	if err := stopProcs(procs); err != nil {
		l.log.Error("multipath: stopping the daemons", "err", err)
	}
}

// impair replaces the impairments with pct (see mpImpair); nil clears them.
func (l *mpLab) impair(ctx context.Context, pct map[string]int) error {
	_, err := nsCommand(ctx, l.hub, mpImpair(pct), "nft", "-f", "-")
	return err
}

// counters reads the hub's named counters.
func (l *mpLab) counters() (map[string]nftCounter, error) {
	out, err := l.hub.Exec("nft", "list", "table", "inet", mpTable)
	if err != nil {
		return nil, err
	}
	return parseNamedCounters(out)
}

// waitSteady waits for the mode's steady roles.
func (l *mpLab) waitSteady(ctx context.Context) error {
	_, err := l.waitSite(ctx, mpSteadyWait, "steady "+l.mode.key+" roles", func(s *ctl.Status) bool { return l.mode.steady(hubOf(s)) })
	return err
}

// setMode restarts the site in mode m, unless it runs in m already.
func (l *mpLab) setMode(ctx context.Context, m *mpMode) error {
	if l.mode == m {
		return nil
	}
	l.log.Info("multipath: site mode", "mode", m.key)
	if err := l.stopSite(ctx); err != nil {
		return err
	}
	if err := l.writeSiteConfig(m.peer); err != nil {
		return err
	}
	l.mode = m
	if err := l.startSite(); err != nil {
		return err
	}
	if err := l.stream.waitFlowing(ctx, 20*time.Second); err != nil {
		return fmt.Errorf("%w%s", err, l.logs())
	}
	return l.waitSteady(ctx)
}

// settle brings the site back to its steady roles after a run: it waits
// for them, and restarts the site if they do not come (counted in s).
func (l *mpLab) settle(ctx context.Context, s *mpSeries) error {
	if err := l.waitSteady(ctx); err == nil {
		return nil
	} else if ctx.Err() != nil {
		return err
	}
	st, _ := l.siteProc.Status(ctx)
	desc := "no status"
	if st != nil {
		desc = mpPaths(hubOf(st))
	}
	l.log.Error("multipath: no steady roles after the run; restarting the site", "mode", l.mode.key, "last", desc)
	return l.restartSite(ctx, s)
}

// recoverRun counts a run that ended with err as failed (keeping the
// site's log tail), clears the impairments and restarts the site. It
// returns an error only when ctx is done or the site does not come back.
func (l *mpLab) recoverRun(ctx context.Context, s *mpSeries, run int, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	l.failed(s, run, err.Error())
	l.stream.paused.Store(false)
	if err := l.impair(ctx, nil); err != nil {
		return err
	}
	return l.restartSite(ctx, s)
}

// restartSite restarts the site daemon in its mode and waits for its
// steady roles (counted in s).
func (l *mpLab) restartSite(ctx context.Context, s *mpSeries) error {
	s.Restarts++
	if err := l.stopSiteHub(ctx, false); err != nil {
		return err
	}
	if err := l.startSite(); err != nil {
		return err
	}
	if err := l.stream.waitFlowing(ctx, 20*time.Second); err != nil {
		return fmt.Errorf("%w%s", err, l.logs())
	}
	return l.waitSteady(ctx)
}

// failed counts a run that did not recover and keeps the site's log tail.
func (l *mpLab) failed(s *mpSeries, run int, what string) {
	s.Failed++
	l.log.Error("multipath: no recovery", "row", s.Row, "case", s.Case, "mode", s.Mode, "run", run, "what", what)
	if len(s.FailureLogs) < 3 && l.siteProc != nil {
		lines := strings.Split(strings.TrimRight(l.siteProc.Output(), "\n"), "\n")
		s.FailureLogs = append(s.FailureLogs, fmt.Sprintf("run %d (%s): %s", run, what, strings.Join(lines[max(0, len(lines)-25):], "\n")))
	}
}

// relayStats returns the datagrams the relays dropped for a full queue so
// far, both directions.
func (l *mpLab) relayStats() uint64 {
	var n uint64
	for _, r := range l.relays {
		st := r.Stats()
		n += st.ToServer.Overflow + st.ToClient.Overflow
	}
	return n
}

// udpDrops returns the UDP receive buffer drops of both namespaces so far
// (0 if they cannot be read).
func (l *mpLab) udpDrops() uint64 {
	var n uint64
	for _, ns := range []*netlab.NS{l.hub, l.site} {
		if m, err := readSNMP(ns); err == nil {
			n += m["Udp.RcvbufErrors"] + m["Udp6RcvbufErrors"]
		}
	}
	return n
}

// healthLines returns the site's log lines of path health changes so far.
func (l *mpLab) healthLines() []string { return l.siteProc.LogLines("quicconn: path ") }

// pollOff polls the site's status from at until the mode says the traffic
// left wifi0, for at most within, and returns how long after at it saw it.
func (l *mpLab) pollOff(ctx context.Context, at time.Time, within time.Duration) (time.Duration, bool) {
	for time.Since(at) < within {
		st, err := l.siteProc.Status(ctx)
		if err == nil && l.mode.off(hubOf(st)) {
			return time.Since(at), true
		}
		if measure.Sleep(ctx, 20*time.Millisecond) != nil {
			break
		}
	}
	return 0, false
}

// sleepUntil sleeps until t.
func sleepUntil(ctx context.Context, t time.Time) error { return measure.Sleep(ctx, time.Until(t)) }

// probeOutcome is one probe of a stream: when it was sent (off after the
// stream's epoch), and its round trip if answered.
type probeOutcome struct {
	sent     time.Time
	off      time.Duration
	rtt      time.Duration
	answered bool
}

// outcomes returns the probes sent in [from, to), in order.
func (p *probeStream) outcomes(from, to time.Time) []probeOutcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	rtt := map[time.Duration]time.Duration{}
	for _, e := range p.echoes {
		if e.sent.Before(from) || !e.sent.Before(to) {
			continue
		}
		if off := e.sent.Sub(p.epoch); rtt[off] == 0 {
			rtt[off] = max(e.at.Sub(e.sent), time.Nanosecond)
		}
	}
	var out []probeOutcome
	for _, off := range p.sent {
		t := p.epoch.Add(off)
		if t.Before(from) || !t.Before(to) {
			continue
		}
		r, ok := rtt[off]
		out = append(out, probeOutcome{sent: t, off: off, rtt: r, answered: ok})
	}
	return out
}

// firstAnswer waits up to within (from now) for the echo of a probe sent at
// or after t, and returns how long after the first such probe was sent the first
// echo arrived, and how many probes sent from t on went unanswered before
// the one it answers.
func (p *probeStream) firstAnswer(ctx context.Context, t time.Time, within time.Duration) (after time.Duration, lost int, ok bool) {
	for end := time.Now().Add(within); time.Now().Before(end); {
		outs := p.outcomes(t, time.Now().Add(time.Second))
		for i, o := range outs {
			if o.answered {
				return o.sent.Add(o.rtt).Sub(outs[0].sent), i, true
			}
		}
		if measure.Sleep(ctx, 2*time.Millisecond) != nil {
			break
		}
	}
	return 0, 0, false
}

// sendGap returns the longest time between two consecutive probes sent:
// the probe interval, unless this process was held up (a gap in the
// echoes that long is not the tunnel's).
func sendGap(outs []probeOutcome) time.Duration {
	var g time.Duration
	for i := 1; i < len(outs); i++ {
		g = max(g, outs[i].sent.Sub(outs[i-1].sent))
	}
	return g
}

// flowLoss is the loss of a window of probes by direction.
type flowLoss struct {
	sent, upLost, downLost, rtLost, twice int
}

// lossOf counts the outcomes' losses; e, if not nil, is the echo that
// counted the probes reaching the hub (else up and down are not told
// apart: upLost and downLost stay 0).
func lossOf(os []probeOutcome, e *echoServer) flowLoss {
	var f flowLoss
	for _, o := range os {
		f.sent++
		n := 0
		if e != nil {
			n = e.times(o.off)
		}
		switch {
		case e != nil && n == 0:
			f.upLost++
		case !o.answered && e != nil:
			f.downLost++
		}
		if !o.answered {
			f.rtLost++
		}
		if n > 1 {
			f.twice++
		}
	}
	return f
}

// pct returns 100*n/of, 0 for of 0.
func pct(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return 100 * float64(n) / float64(of)
}

// tcpCounters returns the sending namespace's TCP RetransSegs and
// TCPTimeouts (/proc/net/snmp and /proc/net/netstat).
func tcpCounters(ns *netlab.NS) (retrans, timeouts uint64, err error) {
	var snmp, netstat []byte
	err = ns.Do(func() error {
		var err error
		if snmp, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
			return err
		}
		netstat, err = os.ReadFile("/proc/thread-self/net/netstat")
		return err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("bench: tcp counters of %s: %w", ns.Name, err)
	}
	m, err := parseSNMP(strings.TrimRight(string(snmp), "\n")+"\n"+string(netstat), "")
	if err != nil {
		return 0, 0, err
	}
	if retrans, err = snmpCounter(m, "Tcp.RetransSegs"); err != nil {
		return 0, 0, err
	}
	timeouts, err = snmpCounter(m, "TcpExt.TCPTimeouts")
	return retrans, timeouts, err
}

// pacedTCP is a TCP stream from the site to a sink behind the hub at about
// 2 MB/s (8 KiB every 4 ms), for at most 2 minutes.
type pacedTCP struct {
	sink *sink
	conn net.Conn
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (l *mpLab) startPaced(ctx context.Context) (*pacedTCP, error) {
	ln, err := l.hub.ListenTCP(netip.AddrPortFrom(mobHubIn.Addr(), mpPacedPort).String())
	if err != nil {
		return nil, err
	}
	p := &pacedTCP{sink: newSink(ln), stop: make(chan struct{}), done: make(chan struct{})}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if p.conn, err = l.site.DialTCP(dctx, ln.Addr().String()); err != nil {
		p.sink.close()
		return nil, fmt.Errorf("bench: paced TCP stream: %w", err)
	}
	go func() {
		defer close(p.done)
		buf := make([]byte, 8<<10)
		tick := time.NewTicker(4 * time.Millisecond)
		defer tick.Stop()
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); {
			_ = p.conn.SetWriteDeadline(time.Now().Add(15 * time.Second))
			if _, err := p.conn.Write(buf); err != nil {
				return
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p, nil
}

// received returns the bytes the sink got so far.
func (p *pacedTCP) received() uint64 { return p.sink.bytes.Load() }

// close stops the stream and its sink. It may be called more than once.
func (p *pacedTCP) close() {
	p.once.Do(func() {
		close(p.stop)
		p.conn.Close()
		<-p.done
		p.sink.close()
	})
}

// silentRun is one run of mp-silent in the current mode: a silent failure
// of wifi0 under the 50 Hz ping and a paced TCP stream, then one with an
// idle tunnel. trace, if not nil, receives the probes around the failure.
func (l *mpLab) silentRun(ctx context.Context, s *mpSeries, run int, trace *mpTrace) error {
	if err := l.stream.waitFlowing(ctx, 10*time.Second); err != nil {
		return err
	}
	var flow *probeStream // duplicate: the flow to port 5004
	if l.mode == mpDuplicate {
		var err error
		if flow, err = startProbeStreamEvery(l.site, mpDupEcho, mpInterval, 2*time.Minute); err != nil {
			return err
		}
		defer flow.close()
		if err := flow.waitFlowing(ctx, 10*time.Second); err != nil {
			return err
		}
		if err := l.bulkPhase(ctx, s); err != nil {
			return err
		}
	}
	tcp, err := l.startPaced(ctx)
	if err != nil {
		return err
	}
	defer tcp.close()
	if err := measure.Sleep(ctx, time.Second); err != nil {
		return err
	}
	r0, to0, err := tcpCounters(l.site)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := l.impair(ctx, map[string]int{mobWifi.name: 100}); err != nil {
		return err
	}
	if d, ok := l.pollOff(ctx, t0, mobRecover); ok {
		s.add("switch_ms", ms(d))
	}
	for {
		if _, ok := l.stream.firstSentAfter(t0); ok {
			break
		}
		if time.Since(t0) > mobRecover {
			l.failed(s, run, "silent wifi0")
			if err := l.impair(ctx, nil); err != nil {
				return err
			}
			return l.settle(ctx, s)
		}
		if err := measure.Sleep(ctx, 5*time.Millisecond); err != nil {
			return err
		}
	}
	if err := sleepUntil(ctx, t0.Add(mpAfter+mpGrace)); err != nil {
		return err
	}
	b0 := tcp.received()
	if err := measure.Sleep(ctx, 500*time.Millisecond); err != nil {
		return err
	}
	r1, to1, err := tcpCounters(l.site)
	if err != nil {
		return err
	}
	stalled := 0.0
	if tcp.received() == b0 {
		stalled = 1
	}
	gap, _ := largestGap(l.stream.arrivals(t0.Add(-time.Second)), t0)
	outs := l.stream.outcomes(t0.Add(-mpBefore), t0.Add(mpAfter))
	f := lossOf(outs, l.echo)
	s.add("gap_ms", ms(gap))
	s.add("send_gap_ms", ms(sendGap(outs)))
	s.add("lost", float64(f.rtLost))
	s.add("lost_up", float64(f.upLost))
	s.add("sent", float64(f.sent))
	s.add("tcp_retrans", float64(r1-min(r0, r1)))
	s.add("tcp_rto", float64(to1-min(to0, to1)))
	s.add("tcp_stalled", stalled)
	if flow != nil {
		fl := lossOf(flow.outcomes(t0.Add(-mpBefore), t0.Add(mpAfter)), l.dupEcho)
		fgap, _ := largestGap(flow.arrivals(t0.Add(-time.Second)), t0)
		s.add("dup_lost_up", float64(fl.upLost))
		s.add("dup_lost_rt", float64(fl.rtLost))
		s.add("dup_twice", float64(fl.twice))
		s.add("dup_gap_ms", ms(fgap))
	}
	if trace != nil {
		for _, o := range l.stream.outcomes(t0.Add(-time.Second), t0.Add(5*time.Second)) {
			trace.Points = append(trace.Points, tracePoint{T: o.sent.Sub(t0).Seconds(), RTTMs: ms(o.rtt), Lost: !o.answered})
		}
	}
	l.log.Info("multipath: silent", "mode", s.Mode, "run", run, "gap", gap.Round(time.Millisecond), "lost", f.rtLost, "of", f.sent,
		"tcp_retrans", r1-min(r0, r1), "tcp_rto", to1-min(to0, to1))
	tcp.close()
	if flow != nil {
		flow.close()
	}
	if err := l.impair(ctx, nil); err != nil {
		return err
	}
	if err := l.settle(ctx, s); err != nil {
		return err
	}
	return l.idleRun(ctx, s, run)
}

// idleRun: the tunnel idle for 1.5 s, wifi0 goes silent, and 1 s later
// the probes start again; how long until the first is answered.
func (l *mpLab) idleRun(ctx context.Context, s *mpSeries, run int) error {
	l.stream.paused.Store(true)
	defer l.stream.paused.Store(false)
	if err := measure.Sleep(ctx, 1500*time.Millisecond); err != nil {
		return err
	}
	if err := l.impair(ctx, map[string]int{mobWifi.name: 100}); err != nil {
		return err
	}
	if err := measure.Sleep(ctx, time.Second); err != nil {
		return err
	}
	t1 := time.Now()
	l.stream.paused.Store(false)
	after, lost, ok := l.stream.firstAnswer(ctx, t1, mobRecover)
	if ok {
		s.add("idle_first_ms", ms(after))
		s.add("idle_lost", float64(lost))
		l.log.Info("multipath: idle", "mode", s.Mode, "run", run, "first_echo", after.Round(time.Millisecond), "lost_before", lost)
	} else if ctx.Err() == nil {
		l.failed(s, run, "idle, silent wifi0")
	}
	if err := measure.Sleep(ctx, 500*time.Millisecond); err != nil {
		return err
	}
	if err := l.impair(ctx, nil); err != nil {
		return err
	}
	return l.settle(ctx, s)
}

// bulkPhase is the duplicate mode's check that bulk TCP is not duplicated:
// one stream for 2 s (after 0.5 s) while the flow to port 5004 runs; the
// bytes arriving on cell0 against those on wifi0, and the extra copies
// sent per datagram of the flow (about 1: only the flow is duplicated).
func (l *mpLab) bulkPhase(ctx context.Context, s *mpSeries) error {
	st0, err := l.siteProc.Status(ctx)
	if err != nil {
		return err
	}
	c0, err := l.counters()
	if err != nil {
		return err
	}
	h0 := len(l.healthLines())
	r0, u0 := l.relayStats(), l.udpDrops()
	t0 := time.Now()
	res, err := l.tcp(ctx, 1, 500*time.Millisecond, 2*time.Second, nil)
	if err != nil {
		return err
	}
	took := time.Since(t0)
	c1, err := l.counters()
	if err != nil {
		return err
	}
	st1, err := l.siteProc.Status(ctx)
	if err != nil {
		return err
	}
	wifi, cell := c1["wifi_up"].bytes-c0["wifi_up"].bytes, c1["cell_up"].bytes-c0["cell_up"].bytes
	l.log.Info("multipath: bulk", "mode", s.Mode, "mbit/s", fmt.Sprintf("%.0f", res.Mbps), "wifi0_up_bytes", wifi, "cell0_up_bytes", cell,
		"health_changes", strings.Join(l.healthLines()[h0:], " | "), "paths_at_end", mpPaths(hubOf(st1)),
		"relay_overflow", l.relayStats()-r0, "udp_rcvbuf_drops", l.udpDrops()-u0)
	s.add("bulk_mbps", res.Mbps)
	s.add("bulk_lossy", float64(countLossy(l.healthLines()[h0:])))
	s.add("bulk_cell_pct", pct(int(cell), int(max(wifi, 1))))
	// The flow sends one datagram per mpInterval.
	s.add("dup_copies", float64(mpDupSent(hubOf(st1))-mpDupSent(hubOf(st0)))/(float64(took)/float64(mpInterval)))
	if err := measure.Sleep(ctx, 500*time.Millisecond); err != nil {
		return err
	}
	return l.settle(ctx, s)
}

// countLossy counts the health changes to lossy among the site's log lines.
func countLossy(lines []string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, "quicconn: path lossy") {
			n++
		}
	}
	return n
}

// tcp runs n bulk TCP streams from the site to the hub's inner address.
func (l *mpLab) tcp(ctx context.Context, n int, warmup, dur time.Duration, during func(context.Context)) (tcpResult, error) {
	sink := netip.AddrPortFrom(mobHubIn.Addr(), sinkPort)
	return measureTCP(ctx, tcpParams{
		streams: n,
		warmup:  warmup,
		dur:     dur,
		listen:  func() (net.Listener, error) { return l.hub.ListenTCP(sink.String()) },
		dial: func(ctx context.Context, a net.Addr) (net.Conn, error) {
			return l.site.DialTCP(ctx, a.String())
		},
		cpu:    func() (float64, error) { return 0, nil },
		during: during,
	})
}

// lossCase is an mp-loss case: the loss on each uplink.
type lossCase struct {
	key string
	pct map[string]int
}

var (
	loss10Both  = lossCase{"loss10-both", map[string]int{mobWifi.name: 10, mobCell.name: 10}}
	loss30Wifi0 = lossCase{"loss30-wifi0", map[string]int{mobWifi.name: 30}}
)

// lossSeries runs the loss case -runs times in the current mode: random
// loss on the uplinks (both directions) for 10 s of the 50 Hz probes.
func (l *mpLab) lossSeries(ctx context.Context, s *mpSeries, lc lossCase, runs int) (err error) {
	// As the bench's loss rows: each datagram crosses the veth on its own.
	restore, err := l.gsoSegs(1)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, restore()) }()
	for i := range runs {
		if err := l.lossRun(ctx, s, lc, i+1); err != nil {
			if err := l.recoverRun(ctx, s, i+1, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// lossRun is one run of lossSeries.
func (l *mpLab) lossRun(ctx context.Context, s *mpSeries, lc lossCase, run int) error {
	if err := l.stream.waitFlowing(ctx, 10*time.Second); err != nil {
		return err
	}
	c0, err := l.counters()
	if err != nil {
		return err
	}
	t0 := time.Now()
	if err := l.impair(ctx, lc.pct); err != nil {
		return err
	}
	// The status every 50 ms through the window: when the traffic
	// left wifi0, and how often one connection carried alone, in the
	// site's view and in the hub's (each schedules its own direction).
	var moved time.Duration
	var samples, alone, onWifi, hubSamples, hubAlone int
	for time.Since(t0) < mpLossWindow {
		if st, err := l.siteProc.Status(ctx); err == nil {
			p := hubOf(st)
			if moved == 0 && l.mode.off(p) {
				moved = time.Since(t0)
			}
			samples++
			if mpCarrying(p) == 1 {
				alone++
			}
			if mpRole(p, mobWifi.name) == roleCarrying {
				onWifi++
			}
		}
		if st, err := l.hubProc.Status(ctx); err == nil && len(st.Peers) > 0 {
			hubSamples++
			if mpCarrying(&st.Peers[0]) == 1 {
				hubAlone++
			}
		}
		if err := measure.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	if moved > 0 {
		s.add("move_ms", ms(moved))
	} else {
		s.add("not_moved", 1)
	}
	if l.mode == mpRedundant {
		s.add("alone_pct", pct(alone, samples))
		s.add("hub_alone_pct", pct(hubAlone, hubSamples))
	} else {
		s.add("wifi_carrying_pct", pct(onWifi, samples))
	}
	if err := sleepUntil(ctx, t0.Add(mpLossWindow+mpGrace)); err != nil {
		return err
	}
	c1, err := l.counters()
	if err != nil {
		return err
	}
	if err := l.impair(ctx, nil); err != nil {
		return err
	}
	f := lossOf(l.stream.outcomes(t0, t0.Add(mpLossWindow)), l.echo)
	s.add("up_loss_pct", pct(f.upLost, f.sent))
	s.add("down_loss_pct", pct(f.downLost, f.sent-f.upLost))
	s.add("rt_loss_pct", pct(f.rtLost, f.sent))
	for _, u := range []string{"wifi", "cell"} {
		d := c1[u+"_drop"].packets - c0[u+"_drop"].packets
		all := c1[u+"_up"].packets - c0[u+"_up"].packets + c1[u+"_down"].packets - c0[u+"_down"].packets
		if lc.pct[u+"0"] > 0 {
			s.add(u+"_drop_pct", pct(int(d), int(all)))
		}
	}
	st, _ := l.siteProc.Status(ctx)
	desc := ""
	if st != nil {
		desc = mpPaths(hubOf(st))
	}
	l.log.Info("multipath: loss", "case", lc.key, "mode", s.Mode, "run", run, "up_lost", f.upLost, "down_lost", f.downLost,
		"of", f.sent, "paths_at_end", desc)
	return l.settle(ctx, s)
}

// gsoSegs sets gso_max_segs n on both of the site's uplinks and returns a
// function that restores them.
func (l *mpLab) gsoSegs(n int) (func() error, error) {
	var undo []func() error
	restore := func() error {
		var errs []error
		for _, u := range undo {
			errs = append(errs, u())
		}
		return errors.Join(errs...)
	}
	for _, u := range []mobUplink{mobWifi, mobCell} {
		out, err := l.site.Exec("ip", "-d", "-o", "link", "show", "dev", u.name)
		if err != nil {
			return nil, errors.Join(err, restore())
		}
		segs, err := parseLinkInt(out, "gso_max_segs")
		if err != nil {
			return nil, errors.Join(err, restore())
		}
		if _, err := l.site.Exec("ip", "link", "set", "dev", u.name, "gso_max_segs", strconv.Itoa(n)); err != nil {
			return nil, errors.Join(err, restore())
		}
		undo = append(undo, func() error {
			_, err := l.site.Exec("ip", "link", "set", "dev", u.name, "gso_max_segs", strconv.Itoa(segs))
			return err
		})
	}
	return restore, nil
}

// aggCase is an mp-aggregate case: tbf rates on the site's uplinks (site
// to hub), the extra one-way delay of cell0, the flow counts measured, and
// whether the ping is measured under the load.
type aggCase struct {
	key              string
	wifiMbit, cellMb int
	cellExtra        time.Duration
	flows            []int
	ping             bool
}

var (
	agg4040     = aggCase{"tbf40+40", 40, 40, 0, []int{8}, false}
	agg404      = aggCase{"tbf40+4", 40, 4, 0, []int{8, 1}, false}
	agg4040Slow = aggCase{"tbf40+40-slow", 40, 40, mpSlowExtra, []int{8}, true}
)

// aggSeries runs the aggregate case -runs times in the current mode.
func (l *mpLab) aggSeries(ctx context.Context, s *mpSeries, ac aggCase, runs int) (err error) {
	for _, x := range []struct {
		u    mobUplink
		mbit int
	}{{mobWifi, ac.wifiMbit}, {mobCell, ac.cellMb}} {
		if _, err := l.site.Exec("tc", "qdisc", "replace", "dev", x.u.name, "root", "tbf",
			"rate", strconv.Itoa(x.mbit)+"mbit", "burst", tbfBurst, "latency", tbfLatency); err != nil {
			return err
		}
		defer func() {
			_, uerr := l.site.Exec("tc", "qdisc", "del", "dev", x.u.name, "root")
			err = errors.Join(err, uerr)
		}()
	}
	l.cellExtra.Store(int64(ac.cellExtra))
	defer l.cellExtra.Store(0)
	if err := l.settle(ctx, s); err != nil {
		return err
	}
	for i := range runs {
		if err := l.aggRun(ctx, s, ac, i+1); err != nil {
			if err := l.recoverRun(ctx, s, i+1, err); err != nil {
				return err
			}
		}
	}
	return nil
}

// aggRun is one run of aggSeries: one TCP measurement per flow count.
func (l *mpLab) aggRun(ctx context.Context, s *mpSeries, ac aggCase, run int) (err error) {
	// The RTT of both paths before cell0's extra delay.
	base := time.Duration(s.RTTMs * float64(time.Millisecond))
	for _, n := range ac.flows {
		var ping *probeStream
		var from time.Time
		var during func(context.Context)
		if ac.ping {
			// A new socket per run: the flow hash picks its path anew.
			if ping, err = startProbeStreamEvery(l.site, mobEcho, mpInterval, time.Minute); err != nil {
				return err
			}
			defer ping.close()
			idle, err := ping.rtt(ctx, 500*time.Millisecond)
			if err != nil {
				ping.close()
				return err
			}
			slow := 0.0
			if idle > base+ac.cellExtra {
				slow = 1
			}
			s.add("ping_slow", slow)
			during = func(context.Context) { from = time.Now() }
		}
		c0, err := l.counters()
		if err != nil {
			return err
		}
		st0, err := l.siteProc.Status(ctx)
		if err != nil {
			return err
		}
		h0 := len(l.healthLines())
		res, err := l.tcp(ctx, n, mpAggWarmup, mpAggDuration, during)
		if ping != nil {
			ping.close()
		}
		if err != nil {
			return fmt.Errorf("bench: %s, %s, %d flows: %w%s", ac.key, s.Mode, n, err, l.logs())
		}
		c1, err := l.counters()
		if err != nil {
			return err
		}
		st1, err := l.siteProc.Status(ctx)
		if err != nil {
			return err
		}
		wifi, cell := c1["wifi_up"].bytes-c0["wifi_up"].bytes, c1["cell_up"].bytes-c0["cell_up"].bytes
		tx, dup := mpTx(hubOf(st1))
		tx0, dup0 := mpTx(hubOf(st0))
		s.add(fmt.Sprintf("mbps%d", n), res.Mbps)
		// Copies per packet: 100 % is every packet on both paths.
		dd := dup - min(dup, dup0)
		s.add(fmt.Sprintf("copies%d_pct", n), pct(int(dd), int(tx-min(tx, tx0)-dd)))
		s.add(fmt.Sprintf("cell_share%d_pct", n), pct(int(cell), int(wifi+cell)))
		lossy := countLossy(l.healthLines()[h0:])
		s.add(fmt.Sprintf("lossy%d", n), float64(lossy))
		if ping != nil {
			var rtts []time.Duration
			outs := ping.outcomes(from, from.Add(mpAggDuration))
			for _, o := range outs {
				if o.answered {
					rtts = append(rtts, o.rtt)
				}
			}
			st := summarise(len(outs), rtts)
			s.add("p90_ms", st.P90Ms)
			s.add("ping_lost_pct", pct(st.Sent-st.Received, st.Sent))
		}
		l.log.Info("multipath: aggregate", "case", ac.key, "mode", s.Mode, "run", run, "flows", n, "mbit/s", fmt.Sprintf("%.1f", res.Mbps),
			"cell_share_pct", fmt.Sprintf("%.1f", pct(int(cell), int(wifi+cell))), "changes_to_lossy", lossy,
			"paths_at_end", mpPaths(hubOf(st1)))
		if err := measure.Sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// mpPlan is the order of the multipath series at each RTT: row, case,
// mode. The modes follow each other so that the site restarts seldom.
type mpStep struct {
	row, kase string
	mode      *mpMode
}

// allModes are the site's modes, for -mp-modes.
var allModes = []*mpMode{mpFailover, mpRedundant, mpDuplicate, mpSingle, mpAggregate}

// mpPlan returns the series of the rows rs in the modes (nil: all).
func mpPlan(rs rowSet, modes []string) []mpStep {
	all := mpPlanAll(rs)
	if modes == nil {
		return all
	}
	return slices.DeleteFunc(all, func(s mpStep) bool { return !slices.Contains(modes, s.mode.key) })
}

func mpPlanAll(rs rowSet) []mpStep {
	var out []mpStep
	if rs.mpSilent {
		for _, m := range []*mpMode{mpFailover, mpRedundant, mpDuplicate, mpSingle} {
			out = append(out, mpStep{"mp-silent", "silent", m})
		}
	}
	if rs.mpLoss {
		out = append(out, mpStep{"mp-loss", loss30Wifi0.key, mpFailover}, mpStep{"mp-loss", loss10Both.key, mpFailover},
			mpStep{"mp-loss", loss10Both.key, mpRedundant}, mpStep{"mp-loss", loss30Wifi0.key, mpRedundant})
	}
	if rs.mpAggregate {
		for _, ac := range []aggCase{agg4040, agg404, agg4040Slow} {
			out = append(out, mpStep{"mp-aggregate", ac.key, mpAggregate})
		}
		// The better link alone: everything on wifi0 (40 Mbit/s).
		out = append(out, mpStep{"mp-aggregate", agg4040Slow.key, mpFailover}, mpStep{"mp-aggregate", agg404.key, mpFailover})
	}
	return out
}

// measureMultipath builds the multipath lab in lab and measures the
// multipath rows of o at each of o.mpRTTs, o.runs times each. The result
// holds whatever was measured, also with an error.
func measureMultipath(ctx context.Context, lab *netlab.Lab, bin string, o options, log *slog.Logger) (*multipathResult, error) {
	res := &multipathResult{Runs: o.runs}
	start := time.Now()
	err := measureMultipathInto(ctx, lab, bin, o, log, res)
	res.Duration = time.Since(start).Round(time.Second).String()
	if err != nil {
		res.Error = err.Error()
	}
	return res, err
}

func measureMultipathInto(ctx context.Context, lab *netlab.Lab, bin string, o options, log *slog.Logger, res *multipathResult) error {
	if v, err := commandOutput(ctx, "", bin, "version"); err == nil {
		res.Version = strings.SplitN(v, "\n", 2)[0]
	}
	plan := mpPlan(o.rows, o.mpModes)
	if len(plan) == 0 {
		return fmt.Errorf("bench: -mp-modes %q: none of them in the rows asked for", o.mpModes)
	}
	log.Info("multipath lab")
	l, err := newMPLab(ctx, lab, bin, log, o.runs, plan[0].mode)
	if err != nil {
		return err
	}
	defer l.close()
	plotRTT := slices.Max(o.mpRTTs)
	for _, added := range o.mpRTTs {
		d := time.Duration(added) * time.Millisecond / 2
		if _, err := l.setDelay(ctx, d); err != nil {
			return err
		}
		for _, st := range plan {
			if err := l.setMode(ctx, st.mode); err != nil {
				return err
			}
			got, err := l.stream.rtt(ctx, 500*time.Millisecond)
			if err != nil {
				return err
			}
			res.Series = append(res.Series, mpSeries{Row: st.row, Case: st.kase, Mode: st.mode.key, DelayMs: ms(d), RTTMs: ms(got)})
			s := &res.Series[len(res.Series)-1]
			log.Info("multipath", "row", st.row, "case", st.kase, "mode", st.mode.key, "rtt_ms", s.RTTMs, "runs", o.runs)
			switch st.row {
			case "mp-silent":
				for i := range o.runs {
					var tr *mpTrace
					if o.plot != "" && added == plotRTT && i == 0 {
						tr = &mpTrace{Mode: st.mode.key, RTTMs: s.RTTMs}
					}
					if err := l.silentRun(ctx, s, i+1, tr); err != nil {
						if err := l.recoverRun(ctx, s, i+1, err); err != nil {
							return fmt.Errorf("bench: mp-silent %s run %d: %w", st.mode.key, i+1, err)
						}
						continue
					}
					if tr != nil {
						res.Traces = append(res.Traces, *tr)
					}
				}
			case "mp-loss":
				lc := loss10Both
				if st.kase == loss30Wifi0.key {
					lc = loss30Wifi0
				}
				if err := l.lossSeries(ctx, s, lc, o.runs); err != nil {
					return fmt.Errorf("bench: mp-loss %s %s: %w", lc.key, st.mode.key, err)
				}
			case "mp-aggregate":
				ac := agg4040
				for _, c := range []aggCase{agg404, agg4040Slow} {
					if c.key == st.kase {
						ac = c
					}
				}
				if err := l.aggSeries(ctx, s, ac, o.runs); err != nil {
					return fmt.Errorf("bench: mp-aggregate %s %s: %w", ac.key, st.mode.key, err)
				}
			}
		}
		pairAlone(res.Series)
	}
	if o.plot != "" {
		if err := writePlot(o.plot, res.Traces); err != nil {
			return err
		}
		res.Plot = o.plot
	}
	if l.hubProc.Exited() {
		return fmt.Errorf("bench: the multipath hub exited%s", l.logs())
	}
	return nil
}

// pairAlone adds to each aggregate series what the better link alone
// gives at the same delay, run by run: in the slow case its ping p90 minus
// that of the failover series of the same case; in tbf40+40 and tbf40+4
// the ratio of its throughput to that of wifi0's 40 Mbit/s alone (the
// failover series of tbf40+4, with as many flows).
func pairAlone(ss []mpSeries) {
	for i := range ss {
		a := &ss[i]
		if a.Mode != mpAggregate.key {
			continue
		}
		for _, b := range ss {
			if b.Mode != mpFailover.key || b.DelayMs != a.DelayMs {
				continue
			}
			switch {
			case a.Case == agg4040Slow.key && b.Case == a.Case && a.Metrics["p90_minus_alone_ms"] == nil:
				for j := range min(len(a.Metrics["p90_ms"]), len(b.Metrics["p90_ms"])) {
					a.add("p90_minus_alone_ms", a.Metrics["p90_ms"][j]-b.Metrics["p90_ms"][j])
				}
			case (a.Case == agg4040.key || a.Case == agg404.key) && b.Case == agg404.key:
				for _, n := range []int{8, 1} {
					r := fmt.Sprintf("alone_ratio%d", n)
					if a.Metrics[r] != nil {
						continue
					}
					av, bv := a.Metrics[fmt.Sprintf("mbps%d", n)], b.Metrics[fmt.Sprintf("mbps%d", n)]
					for j := range min(len(av), len(bv)) {
						if bv[j] > 0 {
							a.add(r, av[j]/bv[j])
						}
					}
				}
			}
		}
	}
}

// mpMetric is one figure of a series in the table.
type mpMetric struct {
	key, label, unit string
}

// mpMetrics are the table's figures, in order; a series shows those it has.
var mpMetrics = []mpMetric{
	{"gap_ms", "longest gap between echoes of the 50 Hz probes (ms)", "%.1f"},
	{"send_gap_ms", "  longest gap between the probes sent (the bench held up if above 20 ms) (ms)", "%.1f"},
	{"switch_ms", "status shows the traffic off wifi0 after (ms)", "%.0f"},
	{"lost", "probes lost of the 500 from 2 s before to 8 s after", "%.0f"},
	{"lost_up", "  of them on the way to the hub", "%.0f"},
	{"tcp_retrans", "paced TCP stream (2 MB/s): retransmitted segments", "%.0f"},
	{"tcp_rto", "paced TCP stream: retransmission timeouts (TCPTimeouts)", "%.0f"},
	{"tcp_stalled", "paced TCP stream: stalled at the end (1) or flowing (0)", "%.0f"},
	{"idle_lost", "idle 1.5 s, probes 1 s after the failure: lost before the first echo", "%.0f"},
	{"idle_first_ms", "idle 1.5 s, probes 1 s after the failure: first echo after (ms)", "%.1f"},
	{"dup_lost_up", "UDP flow to port 5004 (50 pps, duplicated): lost on the way to the hub", "%.0f"},
	{"dup_lost_rt", "UDP flow to port 5004: lost round trip (the hub's answers are not duplicated)", "%.0f"},
	{"dup_twice", "UDP flow to port 5004: delivered twice", "%.0f"},
	{"dup_gap_ms", "UDP flow to port 5004: longest gap between echoes (ms)", "%.1f"},
	{"bulk_cell_pct", "bulk TCP, 1 stream, 2 s: bytes up on cell0, % of wifi0's", "%.2f"},
	{"bulk_mbps", "bulk TCP, 1 stream (Mbit/s)", "%.0f"},
	{"dup_copies", "extra copies sent per datagram of the port 5004 flow during the bulk", "%.2f"},
	{"bulk_lossy", "bulk TCP: paths judged lossy during it (health changes)", "%.0f"},
	{"move_ms", "status shows the traffic off wifi0 after (ms)", "%.0f"},
	{"not_moved", "runs in which the traffic stayed on wifi0 for 10 s", "%.0f"},
	{"alone_pct", "site's status (every 50 ms): one connection carrying alone (% of samples)", "%.0f"},
	{"hub_alone_pct", "hub's status (every 50 ms): one connection carrying alone (% of samples)", "%.0f"},
	{"wifi_carrying_pct", "status samples (every 50 ms) with wifi0 carrying (%)", "%.0f"},
	{"up_loss_pct", "inner loss site -> hub, 500 probes (%)", "%.2f"},
	{"down_loss_pct", "inner loss hub -> site (%)", "%.2f"},
	{"rt_loss_pct", "inner loss round trip (%)", "%.2f"},
	{"wifi_drop_pct", "underlay dropped on wifi0 (%)", "%.1f"},
	{"cell_drop_pct", "underlay dropped on cell0 (%)", "%.1f"},
	{"mbps8", "8 TCP flows (Mbit/s)", "%.1f"},
	{"alone_ratio8", "8 TCP flows: throughput / wifi0's 40 Mbit/s alone, run by run", "%.2f"},
	{"cell_share8_pct", "8 TCP flows: bytes up on cell0 (% of both)", "%.1f"},
	{"lossy8", "8 TCP flows: paths judged lossy during the run (health changes)", "%.0f"},
	{"copies8_pct", "8 TCP flows: extra copies the site sent, per packet (%; 100: all on both paths)", "%.1f"},
	{"mbps1", "1 TCP flow (Mbit/s)", "%.1f"},
	{"alone_ratio1", "1 TCP flow: throughput / wifi0's 40 Mbit/s alone, run by run", "%.2f"},
	{"cell_share1_pct", "1 TCP flow: bytes up on cell0 (% of both)", "%.1f"},
	{"lossy1", "1 TCP flow: paths judged lossy during the run (health changes)", "%.0f"},
	{"copies1_pct", "1 TCP flow: extra copies the site sent, per packet (%; 100: all on both paths)", "%.1f"},
	{"ping_slow", "50 Hz ping's flow on the +20 ms cell0 (1) or on wifi0 (0)", "%.0f"},
	{"p90_ms", "50 Hz ping under the 8 flows: p90 (ms)", "%.1f"},
	{"ping_lost_pct", "50 Hz ping under the 8 flows: lost (%)", "%.1f"},
	{"p90_minus_alone_ms", "ping p90 under load minus the better link alone's, run by run (ms)", "%+.1f"},
}

// mpCaseNames describe the cases in the table.
var mpCaseNames = map[string]string{
	"silent":        "silent wifi0",
	loss10Both.key:  "10% loss on both uplinks",
	loss30Wifi0.key: "30% loss on wifi0",
	agg4040.key:     "tbf 40+40 Mbit/s",
	agg404.key:      "tbf 40+4 Mbit/s",
	agg4040Slow.key: "tbf 40+40 Mbit/s, cell0 +20 ms RTT",
}

// mpTarget returns the target for a figure of s, or nil.
func mpTarget(s *mpSeries, key string) *target {
	type k struct{ kase, mode, key string }
	targets := map[k]target{
		{"silent", "failover", "gap_ms"}:                     {atMost: 300, text: "<= 300 ms"},
		{"silent", "failover", "idle_lost"}:                  {atMostZero: true, text: "0 (answered at once)"},
		{"silent", "redundant", "lost"}:                      {atMostZero: true, text: "0 of 500"},
		{"silent", "redundant", "tcp_rto"}:                   {atMostZero: true, text: "0"},
		{"silent", "redundant", "idle_lost"}:                 {atMostZero: true, text: "0 (answered at once)"},
		{"silent", "duplicate", "dup_lost_up"}:               {atMostZero: true, text: "0"},
		{"silent", "duplicate", "bulk_cell_pct"}:             {atMost: 5, text: "<= 5 %"},
		{loss10Both.key, "redundant", "up_loss_pct"}:         {atMost: 2, text: "<= 2 %"},
		{loss10Both.key, "redundant", "down_loss_pct"}:       {atMost: 2, text: "<= 2 %"},
		{loss30Wifi0.key, "failover", "move_ms"}:             {atMost: 2000, text: "<= 2000 ms"},
		{loss30Wifi0.key, "redundant", "up_loss_pct"}:        {atMost: 0.5, text: "<= 0.5 %"},
		{loss30Wifi0.key, "redundant", "down_loss_pct"}:      {atMost: 0.5, text: "<= 0.5 %"},
		{agg4040.key, "aggregate", "mbps8"}:                  {atLeast: 68, text: ">= 68 Mbit/s"},
		{agg4040.key, "aggregate", "alone_ratio8"}:           {atLeast: 1.7, text: ">= 1.7 x the best link alone"},
		{agg404.key, "aggregate", "alone_ratio8"}:            {atLeast: 0.95, text: ">= 0.95 x the best link alone"},
		{agg404.key, "aggregate", "alone_ratio1"}:            {atLeast: 0.95, text: ">= 0.95 x the best link alone"},
		{agg4040Slow.key, "aggregate", "p90_minus_alone_ms"}: {atMostZero: true, text: "<= 0 (no worse than wifi0 alone)"},
	}
	if tg, ok := targets[k{s.Case, s.Mode, key}]; ok {
		return &tg
	}
	return nil
}

// multipathRows turns the multipath series into table rows: per series
// and figure the median over the runs with min..max, the target and the
// verdict with how many runs met it. Series are grouped by row, case and
// mode in the order measured, each group by RTT.
func multipathRows(m *multipathResult) []row {
	type group struct{ row, kase, mode string }
	var order []group
	by := map[group][]*mpSeries{}
	for i := range m.Series {
		s := &m.Series[i]
		g := group{s.Row, s.Case, s.Mode}
		if by[g] == nil {
			order = append(order, g)
		}
		by[g] = append(by[g], s)
	}
	var out []row
	for _, g := range order {
		ss := by[g]
		slices.SortStableFunc(ss, func(a, b *mpSeries) int { return cmp.Compare(a.DelayMs, b.DelayMs) })
		for _, s := range ss {
			prefix := fmt.Sprintf("%s %s, %s, RTT %.1f ms", g.row, g.mode, cmp.Or(mpCaseNames[g.kase], g.kase), s.RTTMs)
			for _, mt := range mpMetrics {
				v := s.Metrics[mt.key]
				if len(v) == 0 {
					continue
				}
				g := make([]*float64, len(v))
				for i := range v {
					g[i] = &v[i]
				}
				out = append(out, row{label: prefix + ": " + mt.label, unit: mt.unit, g: g, cmp: cmpNone, tgt: mpTarget(s, mt.key), na: true, round: true})
			}
			if s.Failed > 0 {
				out = append(out, row{label: prefix + ": failed runs (no echo within 10 s, or an error: see the JSON's failure_logs)", unit: "%.0f", g: []*float64{ptr(float64(s.Failed))}, cmp: cmpNone, na: true})
			}
			if s.Restarts > 0 {
				out = append(out, row{label: prefix + ": site restarts (steady roles not back within 20 s, or a failed run)", unit: "%.0f", g: []*float64{ptr(float64(s.Restarts))}, cmp: cmpNone, na: true})
			}
		}
	}
	return out
}

// multipathNotes explain the multipath rows in the report.
var multipathNotes = []string{
	"multipath: own lab (mphub, mpsite): the site's uplinks wifi0 (preferred) and cell0 are veths straight to the hub namespace, which acts as the router; each uplink reaches a userspace relay of its own (cell0's by a DNAT) that adds the one-way delay; the site's [[peer]] sets multipath (single: \"off\", one connection that moves)",
	"multipath probes: a UDP datagram every 20 ms (50 Hz) from the site's inner address to an echo behind the hub that counts what reaches it, so losses are told apart by direction; RTT = their median round trip before the series",
	"mp-silent: wifi0 silent = the hub namespace drops everything arriving on wifi0h and everything it sends out of it (nft, prerouting and output at priority -300, before conntrack) while the link stays up; a 2 MB/s TCP stream runs from 1 s before; gap = longest gap between echo arrivals from the last one before the failure until 8.5 s after it; TCP counters of the site namespace over the same time; then, after the roles are steady again, 1.5 s without probes, wifi0 silent, and the probes start 1 s later",
	"mp-silent duplicate: failover with duplicate = [\"udp:5004\"]; a second 50 Hz flow to an echo on port 5004; first one 1 TCP stream for 2 s (after 0.5 s) while both flows run, with the bytes arriving on each uplink counted in the hub namespace",
	"mp-loss: nft numgen random drop of the given share of everything arriving on and sent out of the uplink's veth in the hub namespace, gso_max_segs 1 on the site's uplinks so each datagram is dropped on its own; 10 s (500 probes) from the moment the loss starts; inner loss down = probes that reached the echo whose answer did not come back, of those",
	"mp-aggregate: tbf rate R mbit burst " + tbfBurst + " latency " + tbfLatency + " on the site's wifi0 and cell0 (site -> hub); N TCP flows from the site for 5 s after 1 s of warm-up; the slow case adds 10 ms each way on cell0's relay, and its ping is a new 50 Hz probe flow per run (a new port: the flow hash places it anew); the better link alone is failover, everything on wifi0",
}
