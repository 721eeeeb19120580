// SPDX-License-Identifier: MIT

package quicconn

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Path health.
//
// A multipath scheduler must know within a few RTTs that a connection's
// path stopped working, and within a second on an idle path, where today's
// checks (a heartbeat every 2 s, Mobility.PathDead 3 RTT + 1 s after it)
// take about two seconds. [Conn.MonitorPath] turns on a monitor for one
// connection; the daemon calls it on every connection of a multipath set.
// It does two things:
//
//   - The control-stream heartbeat runs every HealthConfig.Probe (250 ms)
//     instead of Config.Heartbeat, on both sides (a monitored listener
//     does not skip its own heartbeats), so an idle path always has
//     something in flight that the peer must acknowledge.
//   - The Endpoint's health loop, one goroutine for all monitored
//     connections (a hub may monitor hundreds: one timer wake-up per Poll
//     in all, not one per connection), reads quic-go's ConnectionStats of
//     each every HealthConfig.Poll (25 ms) and judges the path from the
//     packet counters and RTT: QUIC acknowledges every ack-eliciting
//     packet within an RTT plus the peer's max_ack_delay (25 ms), so
//     nothing at all received while we send is a dead path, and packets
//     quic-go declares lost are the path's loss.
//
// The verdict, checked in this order at every poll:
//
//   - Silent: at least two packets were sent after the last packet
//     received (counted only from ackGrace after that receipt: what we
//     send sooner may be ACK-only packets, which the peer does not
//     acknowledge), and nothing at all has been received for
//     max(3*SRTT, Floor) since the second of them. Two, not one, so that
//     one lost packet that nothing follows (a path-MTU probe on an idle
//     connection) is not a dead path; under traffic both are in the same
//     poll, and on an idle dead path quic-go's probe timeout sends the
//     second within about an RTT.
//   - Lossy: the bytes of the packets quic-go declared lost, over the
//     bytes sent, in the last LossWindow (1 s), is above LossThreshold
//     (10 %); when that window holds fewer than LossMinPackets (20)
//     packets, it reaches back over up to 20 Probe intervals (an idle
//     path's heartbeats); with fewer than LossMinPackets even then, loss
//     is not judged. Bytes, not packets: quic-go counts the ACK-only
//     packets we send among the packets sent but never declares them lost
//     (they are not acknowledged), so a packet ratio understates the loss,
//     by a third on a path busy both ways (30 % dropped each way: 20 % in
//     packets, 28 % in bytes, TestPathHealthLossy); ACK-only packets are
//     small, so in bytes they hardly count. Loss on a side that only
//     receives stays invisible here; the peer's monitor judges that
//     direction. Losses declared within max(3*SRTT, Floor) after a
//     silence ended are of packets sent into the silence and are not
//     counted. Loss is not judged while the path is congested: when a
//     queue (SRTT above the base RTT, the least RTT sample of the last
//     10-20 s, by more than 5 ms and a quarter of the base) was seen within the last LossWindow, the losses are the
//     bottleneck's overflow under the traffic's own load (the inner TCP
//     filling a 40 Mbit/s uplink loses 10-40 %), not a bad path, and
//     leaving the path for another would only fill that one too (the
//     benchmark's failover row flapped between the uplinks every second).
//     A path that loses at random has no queue: the inner TCP backs off.
//   - Up otherwise. Silent and Lossy take effect at once; back to Up needs
//     Hold (1 s) of continuous good verdicts, so the scheduler does not
//     flap.
//
// Down is final: the connection died. Each change is logged once at Info
// with its reason and, when a path comes back, how long it was out, and
// passed to HealthConfig.Changed. [Conn.PathHealth] reads the latest
// verdict with two atomic loads (BenchmarkPathHealth); one poll of one
// connection costs about 70 ns (BenchmarkHealthPoll), 10 of them in
// quic-go's ConnectionStats.

// Defaults of [HealthConfig].
const (
	defaultProbe          = 250 * time.Millisecond
	defaultPoll           = 25 * time.Millisecond
	defaultFloor          = 100 * time.Millisecond
	defaultLossThreshold  = 0.10
	defaultLossWindow     = time.Second
	defaultLossMinPackets = 20
	defaultHold           = time.Second
)

// ackGrace is how long after a receipt the packets we send may be
// ACK-only, which the peer never acknowledges: quic-go acknowledges an
// ack-eliciting packet at once or within its max_ack_delay (25 ms); 15 ms
// more allow for a late run loop. Sends that soon after a receipt do not
// count towards Silent.
const ackGrace = 25*time.Millisecond + 15*time.Millisecond

// congestionQueue is the least queue (SRTT above the base RTT, and at
// least a quarter of it) that makes a path's losses congestion rather
// than a lossy path.
const congestionQueue = 5 * time.Millisecond

// peakHalfLife is how fast the monitor forgets a path's highest send
// rate.
const peakHalfLife = 30 * time.Second

// baseWindow: the base RTT is the least RTT sample of the last one to two
// baseWindows.
const baseWindow = 10 * time.Second

// lossIdleProbes is how many Probe intervals the loss window reaches back
// over when the last LossWindow holds too few packets.
const lossIdleProbes = 20

// lossBuckets is how many samples of the counters the loss window holds.
const lossBuckets = 10

// HealthState is a path's verdict; see [Conn.PathHealth].
type HealthState uint8

const (
	// HealthUnmonitored is the state of a live connection without
	// MonitorPath.
	HealthUnmonitored HealthState = iota
	// HealthUp is a working path.
	HealthUp
	// HealthSilent is a path on which nothing arrives although we send:
	// probably dead.
	HealthSilent
	// HealthLossy is a path that loses more than the threshold.
	HealthLossy
	// HealthDown is a dead connection. It is final.
	HealthDown
)

// String returns "unmonitored", "up", "silent", "lossy" or "down".
func (s HealthState) String() string {
	switch s {
	case HealthUnmonitored:
		return "unmonitored"
	case HealthUp:
		return "up"
	case HealthSilent:
		return "silent"
	case HealthLossy:
		return "lossy"
	case HealthDown:
		return "down"
	}
	return fmt.Sprintf("HealthState(%d)", uint8(s))
}

// Health is a monitored connection's path health, as of the monitor's
// latest poll (at most one HealthConfig.Poll old).
type Health struct {
	State HealthState
	// SRTT is the smoothed RTT of the active path (quic-go's; it resets on
	// migration), to the microsecond.
	SRTT time.Duration
	// MinRTT is the path's RTT without queues: the least RTT sample of the
	// last 10-20 s. SRTT - MinRTT is the queue the path's traffic builds.
	MinRTT time.Duration
	// Loss is the recent ratio, 0 to 1, of the bytes of our packets that
	// quic-go declared lost to the bytes sent (see the loss window in
	// health.go); 0 while too few packets were sent to judge.
	Loss float64
	// LastRx is how long before the latest poll the latest packet of any
	// kind (ACKs included) arrived: it understates the time since by up
	// to two Polls (the poll that saw the packet, and the time since the
	// latest poll), which spares the data path a clock read.
	LastRx time.Duration
}

// HealthConfig configures [Conn.MonitorPath]. The zero value of every field
// is a documented default.
type HealthConfig struct {
	// Probe is the heartbeat interval while monitored: it bounds how long
	// an idle path goes without a packet the peer must acknowledge. Zero
	// means 250 ms; it is never longer than Config.Heartbeat.
	Probe time.Duration
	// Passive leaves the heartbeat as it was (Probe is not used): the
	// monitor judges from the traffic and from what the peer's own probes
	// bring. For a hub, whose sites probe every connection of their sets:
	// an idle hub then does not double the probes (200 sites with two
	// connections each: hub CPU 30 % of a core with its own probes, see
	// docs/PERFORMANCE.md). An idle path whose direction to the peer died
	// is then noticed by the peer, not here.
	Passive bool
	// Poll is how often the monitor reads the connection's counters. Zero
	// means 25 ms.
	Poll time.Duration
	// Floor is the shortest silence that makes a path Silent; the silence
	// needed is max(3*SRTT, Floor). Zero means 100 ms.
	Floor time.Duration
	// LossThreshold is the loss ratio above which a path is Lossy. Zero
	// means 0.10.
	LossThreshold float64
	// LossWindow is how far back loss is counted. Zero means 1 s.
	LossWindow time.Duration
	// LossMinPackets is the fewest packets sent in the window to judge
	// loss at all. Zero means 20.
	LossMinPackets int
	// Hold is how long a Silent or Lossy path must look good before it is
	// Up again. Zero means 1 s.
	Hold time.Duration
	// Changed, if not nil, is called once for every change of the state,
	// with a reason for logs (the same as in the Info log line), Down
	// included. Calls for all connections of the Endpoint are made in
	// order, one at a time, on a goroutine of their own (never on
	// quic-go's goroutines, never under a lock of this package), so Changed
	// may call any method of c but should return promptly. Endpoint.Close
	// waits for the calls still queued (the Down of every connection it
	// closes), so Changed must not call it.
	Changed func(c *Conn, old, new HealthState, reason string)
}

func (h HealthConfig) withDefaults() HealthConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&h.Probe, defaultProbe)
	def(&h.Poll, defaultPoll)
	def(&h.Floor, defaultFloor)
	def(&h.LossWindow, defaultLossWindow)
	def(&h.Hold, defaultHold)
	if h.LossThreshold <= 0 {
		h.LossThreshold = defaultLossThreshold
	}
	if h.LossMinPackets <= 0 {
		h.LossMinPackets = defaultLossMinPackets
	}
	return h
}

// MonitorPath starts judging c's path (see [Conn.PathHealth]): faster
// heartbeats (cfg.Probe) and a poll of quic-go's counters every cfg.Poll
// on the Endpoint's health loop, which reports every change of the
// verdict. The state starts Up. Only the first call counts: later ones do
// nothing. A dead connection is not monitored (its state is Down). Without
// MonitorPath nothing changes: heartbeats every Config.Heartbeat, and
// Mobility.PathDead as before. Safe for concurrent use.
func (c *Conn) MonitorPath(cfg HealthConfig) {
	e := c.mob.ep
	if e == nil {
		return
	}
	m := newMonitor(cfg.withDefaults())
	if !c.hp.mon.CompareAndSwap(nil, m) {
		return
	}
	c.hp.rxAge.Store(0)
	// A conn that died already is Down, which watch stored: no monitor.
	if !c.hp.word.CompareAndSwap(packHealth(HealthUnmonitored, 0, 0), packHealth(HealthUp, 0, c.qc.ConnectionStats().SmoothedRTT)) {
		return
	}
	if !m.cfg.Passive {
		c.ctl.probe.Store(int64(min(m.cfg.Probe, c.cfg.Heartbeat)))
		select {
		case c.ctl.retick <- struct{}{}:
		default:
		}
	}
	e.health.add(c)
	c.log.Debug("quicconn: monitoring path", "probe", m.cfg.Probe, "poll", m.cfg.Poll)
}

// SetProbe changes the heartbeat interval of a monitored, not Passive
// connection (HealthConfig.Probe), never above Config.Heartbeat; it does
// nothing otherwise. A site probes the path that carries its traffic often
// and its warm standbys less, so that an idle hub is not busy answering.
// Safe for concurrent use, and cheap: an atomic store and a wake-up.
func (c *Conn) SetProbe(d time.Duration) {
	m := c.hp.mon.Load()
	if m == nil || m.cfg.Passive || d <= 0 {
		return
	}
	if old := c.ctl.probe.Swap(int64(min(d, c.cfg.Heartbeat))); old != int64(min(d, c.cfg.Heartbeat)) {
		select {
		case c.ctl.retick <- struct{}{}:
		default:
		}
	}
}

// PathHealth returns the latest verdict on c's path (see [Health]). Before
// MonitorPath it is HealthUnmonitored, once the connection died
// HealthDown, with the other fields zero in both cases. It is meant for
// the data path: three atomic loads, no allocation, safe for concurrent use.
func (c *Conn) PathHealth() Health {
	w := c.hp.word.Load()
	h := Health{State: HealthState(w & 0xff)}
	if h.State == HealthUnmonitored || h.State == HealthDown {
		return h
	}
	h.Loss = float64(w>>8&0xffff) / 0xffff
	h.SRTT = time.Duration(w>>24) * time.Microsecond
	h.LastRx = time.Duration(c.hp.rxAge.Load())
	h.MinRTT = time.Duration(c.hp.minRTT.Load())
	return h
}

// healthPub is what a Conn's monitor publishes for PathHealth.
type healthPub struct {
	word   atomic.Uint64           // packHealth; HealthUnmonitored (0) until MonitorPath; HealthDown is final
	rxAge  atomic.Int64            // nanoseconds from the latest packet received to the latest poll
	minRTT atomic.Int64            // the monitor's base RTT at the latest poll
	mon    atomic.Pointer[monitor] // set once by MonitorPath
}

// packHealth packs a verdict into one word: the state in bits 0-7, the
// loss ratio in 1/65535 in bits 8-23, the SRTT in microseconds in bits
// 24-63 (up to 12 days).
func packHealth(s HealthState, loss float64, srtt time.Duration) uint64 {
	l := uint64(min(max(loss, 0), 1)*0xffff + 0.5)
	us := uint64(max(srtt, 0) / time.Microsecond)
	return uint64(s) | l<<8 | min(us, 1<<40-1)<<24
}

// publish stores the verdict w unless the conn is Down, which is final;
// it reports whether it stored.
func (p *healthPub) publish(w uint64) bool {
	for {
		old := p.word.Load()
		if HealthState(old&0xff) == HealthDown {
			return false
		}
		if p.word.CompareAndSwap(old, w) {
			return true
		}
	}
}

// monitor is one connection's path monitor. cfg, idle and bucket never
// change; the rest belongs to the Endpoint's health loop. Times are
// durations since Conn.start.
type monitor struct {
	cfg    HealthConfig  // with defaults
	idle   time.Duration // how far the loss window reaches back when idle
	bucket time.Duration // time between loss samples

	polled      time.Duration // the latest poll; 0 before the first
	sent, rcvd  uint64        // quic-go's packet counters at the latest poll
	lastRx      time.Duration // the poll that saw the latest packet received
	unanswered  uint64        // packets sent after lastRx + ackGrace
	second      time.Duration // the poll that saw the second of them; 0 while fewer
	rebaseUntil time.Duration // losses declared before then are dropped (after a silence)
	ring        []lossSample  // loss samples, a ring of len(ring) entries
	head, n     int           // the newest sample is ring[head]; n are valid
	state       HealthState   // as published
	badSince    time.Duration // when the state left Up
	goodSince   time.Duration // since when a bad state looks good; 0: it does not
	queuedAt    time.Duration // the latest poll that saw a queue (congestion); 0: none
	peakRate    float64       // the highest loss-window send rate, halving every peakHalfLife
	baseAt      time.Duration // when baseCur began
	baseCur     time.Duration // the least RTT sample since baseAt; 0: none
	basePrev    time.Duration // the least in the baseWindow before that; 0: none
}

// noteRTT takes an RTT sample into the windowed minimum (base).
func (m *monitor) noteRTT(now, rtt time.Duration) {
	if now-m.baseAt >= baseWindow {
		m.basePrev, m.baseCur, m.baseAt = m.baseCur, 0, now
	}
	if rtt > 0 && (m.baseCur == 0 || rtt < m.baseCur) {
		m.baseCur = rtt
	}
}

// base is the path's RTT without queues: the least RTT sample of the last
// one to two baseWindows, 0 before any. Not quic-go's MinRTT, which is the
// least of the connection's whole life: a path whose RTT grew (another
// route, another cell) would look queued for good.
func (m *monitor) base() time.Duration {
	switch {
	case m.basePrev == 0:
		return m.baseCur
	case m.baseCur == 0:
		return m.basePrev
	}
	return min(m.baseCur, m.basePrev)
}

// lossSample is quic-go's sent and lost counters at time t.
type lossSample struct {
	t            time.Duration
	sent, lost   uint64 // packets
	bsent, blost uint64 // bytes
}

func newMonitor(cfg HealthConfig) *monitor {
	m := &monitor{cfg: cfg, state: HealthUp}
	m.idle = max(cfg.LossWindow, lossIdleProbes*cfg.Probe)
	m.bucket = max(cfg.LossWindow/lossBuckets, cfg.Poll)
	m.ring = make([]lossSample, int(m.idle/m.bucket)+2)
	return m
}

// healthEvent is one change of a conn's state, for Changed.
type healthEvent struct {
	c        *Conn
	old, new HealthState
	reason   string
	changed  func(c *Conn, old, new HealthState, reason string)
}

// healthLoop is the Endpoint's monitor of path health: one goroutine
// (runHealth) polls every monitored conn, another, started when there is
// something to deliver, calls the Changed callbacks in order.
type healthLoop struct {
	kick chan struct{} // cap 1: the set of monitored conns changed

	mu    sync.Mutex // mu guards the following field.
	conns []*Conn    // monitored, alive as far as the loop knows

	evMu       sync.Mutex // evMu guards the following fields.
	events     []healthEvent
	delivering bool           // a deliver goroutine runs
	dwg        sync.WaitGroup // deliver goroutines; Close waits for them
}

func (h *healthLoop) add(c *Conn) {
	h.mu.Lock()
	h.conns = append(h.conns, c)
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *healthLoop) remove(c *Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, x := range h.conns {
		if x == c {
			last := len(h.conns) - 1
			h.conns[i] = h.conns[last]
			h.conns[last] = nil
			h.conns = h.conns[:last]
			return
		}
	}
}

// report queues ev for its Changed callback.
func (h *healthLoop) report(ev healthEvent) {
	if ev.changed == nil {
		return
	}
	h.evMu.Lock()
	defer h.evMu.Unlock()
	h.events = append(h.events, ev)
	if !h.delivering {
		h.delivering = true
		h.dwg.Add(1)
		go h.deliver()
	}
}

// deliver calls the queued callbacks in order, then returns.
func (h *healthLoop) deliver() {
	defer h.dwg.Done()
	for {
		h.evMu.Lock()
		if len(h.events) == 0 {
			h.events = nil
			h.delivering = false
			h.evMu.Unlock()
			return
		}
		ev := h.events[0]
		h.events[0] = healthEvent{}
		h.events = h.events[1:]
		h.evMu.Unlock()
		ev.changed(ev.c, ev.old, ev.new, ev.reason)
	}
}

// runHealth polls the monitored conns until the Endpoint closes. It ticks
// at the shortest Poll among them and not at all while there are none.
func (e *Endpoint) runHealth() {
	defer e.wg.Done()
	h := &e.health
	var (
		conns  []*Conn
		ticker *time.Ticker
		tick   <-chan time.Time
		period time.Duration
	)
	defer func() {
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		h.mu.Lock()
		conns = append(conns[:0], h.conns...)
		h.mu.Unlock()
		var p time.Duration
		for _, c := range conns {
			if q := c.hp.mon.Load().cfg.Poll; p == 0 || q < p {
				p = q
			}
		}
		switch {
		case p == 0 && ticker != nil:
			ticker.Stop()
			ticker, tick, period = nil, nil, 0
		case p != 0 && ticker == nil:
			ticker = time.NewTicker(p)
			tick, period = ticker.C, p
		case p != period:
			ticker.Reset(p)
			period = p
		}
		select {
		case <-e.ctx.Done():
			return
		case <-h.kick:
			continue
		case <-tick:
		}
		for i, c := range conns {
			if !c.pollHealth(period) {
				h.remove(c)
			}
			conns[i] = nil
		}
	}
}

// pollHealth is one poll of c's monitor by the health loop, which ticks
// every period; a conn whose Poll is longer is skipped until due. It
// reports false when c is Down and leaves the loop.
func (c *Conn) pollHealth(period time.Duration) bool {
	m := c.hp.mon.Load()
	now := time.Since(c.start)
	if m.polled != 0 && now-m.polled < m.cfg.Poll-period/2 {
		return true
	}
	qs := c.qc.ConnectionStats()
	old := m.state
	v := m.observe(now, pathCounters{
		sent: qs.PacketsSent, rcvd: qs.PacketsReceived, lost: qs.PacketsLost,
		bsent: qs.BytesSent, blost: qs.BytesLost, srtt: qs.SmoothedRTT, latest: qs.LatestRTT,
	})
	if !c.hp.publish(packHealth(v.state, v.loss, qs.SmoothedRTT)) {
		return false
	}
	c.hp.rxAge.Store(int64(now - min(now, max(m.lastRx, time.Duration(c.rx.last.Load())))))
	c.hp.minRTT.Store(int64(m.base()))
	if v.state != old {
		c.healthChanged(old, v.state, v.reason)
	}
	return true
}

// pathCounters are what the monitor reads of quic-go's ConnectionStats.
type pathCounters struct {
	sent, rcvd, lost uint64        // packets
	bsent, blost     uint64        // bytes
	srtt, latest     time.Duration // smoothed and latest RTT
}

// verdict is the outcome of one observation.
type verdict struct {
	state  HealthState
	loss   float64 // the ratio when judged, else 0
	reason string  // why the state changed; "" when it did not
}

// observe takes the counters at now (a duration since Conn.start, later
// than the previous call's) and returns the verdict; it is the whole
// decision of health.go's comment, without I/O.
func (m *monitor) observe(now time.Duration, pc pathCounters) verdict {
	prev := m.polled
	m.polled = now
	if prev == 0 {
		m.sent, m.rcvd, m.lastRx = pc.sent, pc.rcvd, now
		m.push(now, pc)
		return verdict{state: m.state}
	}
	threshold := max(3*pc.srtt, m.cfg.Floor)

	// Silence.
	if pc.rcvd != m.rcvd {
		m.lastRx = now
		m.unanswered, m.second = 0, 0
		if m.state == HealthSilent {
			m.rebaseUntil = now + threshold
		}
	} else if pc.sent != m.sent && prev >= m.lastRx+ackGrace {
		m.unanswered += pc.sent - m.sent
		if m.unanswered >= 2 && m.second == 0 {
			m.second = now
		}
	}
	m.sent, m.rcvd = pc.sent, pc.rcvd
	silent := m.second != 0 && now-m.second >= threshold

	// Loss, unless it is congestion: a queue built up within the loss
	// window.
	loss, lw := m.lossRatio(now, pc)
	m.noteRTT(now, pc.latest)
	if b := m.base(); b > 0 && pc.srtt-b > max(congestionQueue, b/4) {
		m.queuedAt = now
	}
	m.peakRate = max(lw.rate, m.peakRate*math.Exp2(-float64(now-prev)/float64(peakHalfLife)))
	congested := m.queuedAt != 0 && now-m.queuedAt <= m.cfg.LossWindow && lw.rate >= m.peakRate/2

	cond := HealthUp
	switch {
	case silent:
		cond = HealthSilent
	case lw.judged && loss > m.cfg.LossThreshold && !congested:
		cond = HealthLossy
	}
	old := m.state
	v := verdict{state: old}
	if lw.judged {
		v.loss = loss
	}
	switch {
	case cond != HealthUp:
		m.goodSince = 0
		if cond != old {
			v.state = cond
			if old == HealthUp {
				m.badSince = now
			}
		}
	case old != HealthUp:
		if m.goodSince == 0 {
			m.goodSince = now
		}
		if now-m.goodSince >= m.cfg.Hold {
			v.state = HealthUp
		}
	}
	if v.state == old {
		return v
	}
	m.state = v.state
	switch v.state {
	case HealthSilent:
		v.reason = fmt.Sprintf("silent: nothing received for %v after %d packets sent", (now - m.lastRx).Round(time.Millisecond), m.unanswered)
	case HealthLossy:
		v.reason = fmt.Sprintf("loss %.0f%% over %v (%d of %d packets)", loss*100, lw.span.Round(10*time.Millisecond), lw.lost, lw.sent)
		// loss is in bytes, the counts in packets: they differ by the
		// ACK-only packets sent.
	case HealthUp:
		out, bad := now-m.badSince, m.goodSince-m.badSince
		v.reason = fmt.Sprintf("back after %v out (%s for %v, then good for %v)", out.Round(time.Millisecond), old, bad.Round(time.Millisecond), m.cfg.Hold)
	}
	return v
}

// healthChanged logs and reports one change of c's monitored state.
func (c *Conn) healthChanged(old, next HealthState, reason string) {
	c.log.Info("quicconn: path "+next.String(), "was", old.String(), "reason", reason, "uplink", c.Uplink())
	if c.mob.ep != nil {
		c.mob.ep.health.report(healthEvent{c: c, old: old, new: next, reason: reason, changed: c.hp.mon.Load().cfg.Changed})
	}
}

// endHealth makes c's state Down for good; watch calls it when c died,
// before Done is closed. A monitored conn reports the change.
func (c *Conn) endHealth(err error) {
	old := HealthState(c.hp.word.Swap(packHealth(HealthDown, 0, 0)) & 0xff)
	if old == HealthUnmonitored || old == HealthDown {
		return
	}
	if c.mob.ep != nil {
		c.mob.ep.health.remove(c)
	}
	c.healthChanged(old, HealthDown, fmt.Sprintf("connection closed: %v", err))
}

// lossWindow describes the window a loss ratio was taken over.
type lossWindow struct {
	span       time.Duration
	sent, lost uint64
	rate       float64 // bytes sent per second over span
	judged     bool    // sent >= LossMinPackets
}

// lossRatio returns the ratio of bytes declared lost to bytes sent over
// the loss window ending now, given quic-go's counters, and records a
// sample when one is due. The window is the newest sample at least
// LossWindow old with LossMinPackets sent since, else the oldest within
// the idle reach.
func (m *monitor) lossRatio(now time.Duration, pc pathCounters) (float64, lossWindow) {
	if now < m.rebaseUntil {
		// Packets sent into a silence are declared lost when the first ACKs
		// after it arrive: start a new window.
		m.n = 0
		m.push(now, pc)
		return 0, lossWindow{}
	}
	sent := pc.sent
	var base *lossSample
	for i := range m.n {
		s := &m.ring[(m.head-i+len(m.ring))%len(m.ring)]
		age := now - s.t
		if age > m.idle {
			break
		}
		base = s
		if age >= m.cfg.LossWindow && sent-s.sent >= uint64(m.cfg.LossMinPackets) {
			break
		}
	}
	if m.n == 0 || now-m.ring[m.head].t >= m.bucket {
		m.push(now, pc)
	}
	if base == nil || sent <= base.sent || pc.bsent <= base.bsent {
		return 0, lossWindow{}
	}
	w := lossWindow{span: now - base.t, sent: sent - base.sent}
	if w.span > 0 {
		w.rate = float64(pc.bsent-base.bsent) / w.span.Seconds()
	}
	if pc.lost > base.lost {
		w.lost = pc.lost - base.lost
	}
	var blost uint64
	if pc.blost > base.blost {
		blost = pc.blost - base.blost
	}
	w.judged = w.sent >= uint64(m.cfg.LossMinPackets)
	return min(float64(blost)/float64(pc.bsent-base.bsent), 1), w
}

// push records a loss sample of pc at t as the newest.
func (m *monitor) push(t time.Duration, pc pathCounters) {
	if m.n > 0 {
		m.head = (m.head + 1) % len(m.ring)
	}
	m.ring[m.head] = lossSample{t: t, sent: pc.sent, lost: pc.lost, bsent: pc.bsent, blost: pc.blost}
	m.n = min(m.n+1, len(m.ring))
}
