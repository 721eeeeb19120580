// SPDX-License-Identifier: MIT

// Package mobility is a site's uplink policy: which uplinks hold a QUIC
// Transport, which standby paths each dialed connection keeps validated,
// and when a connection moves. It decides; package quicconn does the
// moving ([quicconn.Conn.ProbeUplink], SwitchUplink, Abandon) and package
// routing says which uplinks are usable ([routing.WatchUplinks]).
//
// The flow, for every dialed connection of a site with uplinks:
//
//	routing.WatchUplinks ──usable, best first──▶ Policy.SetUplinks
//	                                              │ new uplink: Endpoint.AddUplink, probe every conn on it
//	                                              │ lost uplink: move its conns, Endpoint.RemoveUplink
//	quicconn (heartbeat silent) ──▶ PathDead ─────┤ move that conn
//	quicconn DialLoop ──▶ PickUplink ◀────────────┘ the best usable uplink, not one gone silent
//
// "Move" is make-before-break: to the best validated standby
// (SwitchUplink), else at once through a redial on another usable uplink
// (Abandon: the DialLoop redials with 0-RTT). A validated standby on a
// better uplink than the active one takes the traffic back. Nothing runs
// while nothing changes: no timers without events.
//
// A Policy keeps a set of connections, not one per peer, so that a peer
// may be reached over several at once. A multipath peer
// ([Policy.AddMultipathPeer]) has one connection per usable uplink, each
// pinned to its uplink by its own dial loop and never moved: the tunnel's
// schedule moves the traffic instead (multipath.go).
package mobility

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
)

// Conn is a dialed connection as the policy moves it. *quicconn.Conn
// satisfies it; tests use a fake.
type Conn interface {
	Uplink() string
	Paths() []quicconn.PathInfo
	ProbeUplink(ctx context.Context, name string) error
	SwitchUplink(name string) error
	Abandon(reason string)
	Err() error
	Done() <-chan struct{}
}

// Endpoint is the QUIC endpoint whose uplink Transports the policy
// manages. *quicconn.Endpoint satisfies it.
type Endpoint interface {
	AddUplink(name string) error
	RemoveUplink(name string) error
	UplinksChanged()
}

var (
	_ Conn     = (*quicconn.Conn)(nil)
	_ Endpoint = (*quicconn.Endpoint)(nil)
)

// Config configures a [Policy]. Zero durations are defaults.
type Config struct {
	// Endpoint holds the uplinks' Transports. Required.
	Endpoint Endpoint
	// Logger receives one line per decision at Info. Nil discards.
	Logger *slog.Logger
	// Changed, if not nil, is called after every switch (Status changed)
	// and, with multipath peers, after every SetUplinks (ranks changed).
	Changed func()
	// ProbeTimeout bounds one path probe. Zero means 2 s.
	ProbeTimeout time.Duration
	// ProbeRetry is the wait after the first failed probe on a usable
	// uplink; it doubles with every try. Zero means 1 s.
	ProbeRetry time.Duration
	// ProbeTries is how often a probe is tried before it waits for the
	// next SetUplinks. Zero means 4.
	ProbeTries int
}

// Policy is a site's uplink policy. Make one with [New] and end it with
// [Policy.Close]. Its methods are safe for concurrent use.
type Policy struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // probes and redials
	ready  chan struct{}  // closed by the first SetUplinks
	isSet  atomic.Bool    // ready is closed

	mu sync.Mutex // mu guards the following fields.
	// usable are the usable uplinks with a Transport, best first.
	usable []string
	conns  map[Conn]*connState
	// probing holds the (conn, uplink) pairs with a prober running.
	probing map[probeKey]bool
	status  string // "migrated <peer> to <uplink>", for Status
	// avoid is an uplink whose path went silent: the next PickUplink
	// takes another usable uplink if there is one, and clears it.
	avoid string
	// closed is set by Close: nothing new starts.
	closed bool
	// mp holds the multipath peers (multipath.go).
	mp map[key.Public]*mpPeer
}

type connState struct {
	peer   string // the peer's name, for the log
	reason string // why the latest switch happened, logged with its outage
}

type probeKey struct {
	c    Conn
	name string
}

// New returns a policy that manages cfg.Endpoint's uplinks. It does nothing
// until the first [Policy.SetUplinks].
func New(cfg Config) *Policy {
	cfg.ProbeTimeout = cmp.Or(cfg.ProbeTimeout, 2*time.Second)
	cfg.ProbeRetry = cmp.Or(cfg.ProbeRetry, time.Second)
	cfg.ProbeTries = cmp.Or(cfg.ProbeTries, 4)
	p := &Policy{
		cfg:     cfg,
		log:     cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		ready:   make(chan struct{}),
		conns:   make(map[Conn]*connState),
		probing: make(map[probeKey]bool),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// Close stops the probes and waits for every goroutine the policy started.
func (p *Policy) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// goLocked runs f on a goroutine of the policy's, unless it is closed. p.mu
// must be held.
func (p *Policy) goLocked(f func()) {
	if !p.closed {
		p.wg.Go(f)
	}
}

// isReady reports whether SetUplinks was called.
func (p *Policy) isReady() bool { return p.isSet.Load() }

// WaitReady waits until the first SetUplinks, at most d. It reports
// whether the uplinks are known.
func (p *Policy) WaitReady(ctx context.Context, d time.Duration) bool {
	if p.isReady() {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ready:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// SetUplinks applies the usable uplinks, best first ([routing.WatchUplinks]
// calls it): uplinks no longer usable lose their connections (switch or
// redial) and then their Transport; new ones get a Transport (one that
// cannot be added is left out) and a probe for every connection.
func (p *Policy) SetUplinks(usable []string) {
	p.mu.Lock()
	prev := p.usable
	first := !p.isReady()
	p.mu.Unlock()

	var lost, gained []string
	for _, n := range prev {
		if !slices.Contains(usable, n) {
			lost = append(lost, n)
		}
	}
	var added []string // usable with a Transport
	for _, n := range usable {
		if !slices.Contains(prev, n) {
			if err := p.cfg.Endpoint.AddUplink(n); err != nil {
				p.log.Error("uplink", "uplink", n, "err", err)
				continue
			}
			gained = append(gained, n)
		}
		added = append(added, n)
	}
	usable = added
	p.mu.Lock()
	p.usable = usable
	if first {
		p.isSet.Store(true)
		close(p.ready) // before the wake-up: PickUplink answers from the view now
	}
	p.reconcileMultipathLocked()
	multipath := len(p.mp) > 0
	p.mu.Unlock()
	if p.cfg.Changed != nil && multipath {
		p.cfg.Changed() // the uplinks' ranks may have changed
	}
	if len(lost) > 0 || len(gained) > 0 || first {
		p.log.Info("uplinks", "usable", fmt.Sprint(usable), "lost", fmt.Sprint(lost), "new", fmt.Sprint(gained))
	}
	if len(gained) > 0 {
		p.cfg.Endpoint.UplinksChanged() // a dial loop waiting for an uplink dials now
	}
	// Connections off a usable uplink move: those on an uplink lost now,
	// and those that waited for any uplink to come back. The wildcard
	// socket ("", only before the first view) is left to the probes.
	for _, c := range p.connList() {
		if n := c.Uplink(); n != "" && !slices.Contains(usable, n) {
			if slices.Contains(lost, n) {
				p.moveAway(c, "uplink "+n+" lost")
			} else {
				p.moveAway(c, "uplink "+n+" still lost")
			}
		}
	}
	for _, n := range lost {
		_ = p.cfg.Endpoint.RemoveUplink(n)
	}
	for _, c := range p.connList() {
		if n := c.Uplink(); n == "" || slices.Contains(usable, n) {
			p.probeAll(c)
		}
	}
}

// Add makes c, a connection this node dialed to the peer named peer, one
// the policy moves, and probes its standbys.
func (p *Policy) Add(c Conn, peer string) {
	p.mu.Lock()
	p.conns[c] = &connState{peer: peer}
	p.mu.Unlock()
	p.probeAll(c)
}

// Remove forgets c (it is done or replaced).
func (p *Policy) Remove(c Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// connList returns the connections, in no particular order.
func (p *Policy) connList() []Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	cs := make([]Conn, 0, len(p.conns))
	for c := range p.conns {
		cs = append(cs, c)
	}
	return cs
}

// PickUplink is what a DialLoop asks before every attempt: the best usable
// uplink, but not one whose path just went silent when there is another.
// Before the first SetUplinks it is the wildcard socket (""); afterwards,
// while no uplink is usable, ok is false and the dial waits, so that every
// connection belongs to an uplink and can move.
func (p *Policy) PickUplink() (name string, ok bool) {
	if !p.isReady() {
		return "", true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	avoid := p.avoid
	p.avoid = ""
	for _, n := range p.usable {
		if n != avoid {
			return n, true
		}
	}
	if len(p.usable) > 0 {
		return p.usable[0], true
	}
	return "", false
}

// PathDead is what a connection reports when its active path went silent:
// it moves, unless the policy does not know it.
func (p *Policy) PathDead(c Conn) {
	p.mu.Lock()
	_, known := p.conns[c]
	closed := p.closed
	p.mu.Unlock()
	if known && !closed {
		p.moveAway(c, "path silent")
	}
}

// Migrated logs one migration of c with its reason and outage.
func (p *Policy) Migrated(c Conn, m quicconn.Migration) {
	p.mu.Lock()
	var peer, reason string
	if st := p.conns[c]; st != nil {
		peer, reason = st.peer, st.reason
	}
	p.mu.Unlock()
	outage := "superseded"
	if m.Measured {
		outage = m.Outage.Round(time.Millisecond).String()
	}
	p.log.Info("migrated", "peer", peer, "from", uplinkName(m.From), "to", uplinkName(m.To), "reason", reason, "outage", outage)
}

// Status is the latest migration, "migrated <peer> to <uplink>", or "".
func (p *Policy) Status() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// probeAll probes every usable uplink of c that is not its active one and
// has no validated standby, each in its own goroutine.
func (p *Policy) probeAll(c Conn) {
	have := map[string]bool{c.Uplink(): true}
	for _, pi := range c.Paths() {
		if pi.Validated {
			have[pi.Uplink] = true
		}
	}
	for _, n := range p.usableNow() {
		if !have[n] {
			p.probe(c, n)
		}
	}
}

func (p *Policy) usableNow() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.usable)
}

func (p *Policy) isUsable(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.usable, name)
}

// probe starts one prober for (c, name) unless one runs. On success it
// switches when name is better than c's uplink.
func (p *Policy) probe(c Conn, name string) {
	k := probeKey{c, name}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.probing[k] || p.closed {
		return
	}
	p.probing[k] = true
	p.goLocked(func() { p.runProbe(c, name, k) })
}

func (p *Policy) runProbe(c Conn, name string, k probeKey) {
	done := func() {
		p.mu.Lock()
		delete(p.probing, k)
		p.mu.Unlock()
	}
	wait := p.cfg.ProbeRetry
	for try := 1; ; try++ {
		pctx, cancel := context.WithTimeout(p.ctx, p.cfg.ProbeTimeout)
		err := c.ProbeUplink(pctx, name)
		cancel()
		if err == nil {
			break
		}
		if p.ctx.Err() != nil || c.Err() != nil || try == p.cfg.ProbeTries || !p.isUsable(name) || !p.isUsable(c.Uplink()) {
			p.log.Debug("probe failed", "peer", p.peerName(c), "uplink", name, "tries", try, "err", err)
			done()
			if c.Err() == nil && p.ctx.Err() == nil && !p.isUsable(c.Uplink()) {
				// moveAway waited for this probe: redial now.
				p.moveAway(c, "uplink "+uplinkName(c.Uplink())+" lost, standby "+name+" not validated")
			}
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.ctx.Done():
			t.Stop()
			done()
			return
		case <-c.Done():
			t.Stop()
			done()
			return
		}
		wait *= 2
	}
	done()
	p.log.Debug("standby path validated", "peer", p.peerName(c), "uplink", name)
	cur := c.Uplink()
	p.mu.Lock()
	better := rank(p.usable, name) < rank(p.usable, cur)
	curLost := !slices.Contains(p.usable, cur)
	p.mu.Unlock()
	switch {
	case better && curLost:
		p.switchTo(c, name, "uplink "+uplinkName(cur)+" lost")
	case better:
		p.switchTo(c, name, "preferred uplink "+name+" usable")
	}
}

// moveAway takes c off its active uplink: to its best validated standby,
// else at once through a redial (c.Abandon makes its dial loop dial again
// without delay, on the best usable uplink, with 0-RTT when it can). A
// probe under way is not waited for: when it validates later, it is
// dropped with c. With nothing else usable it waits: the uplink may come
// back (SetUplinks moves c when another becomes usable), and the
// heartbeat closes a dead conn.
func (p *Policy) moveAway(c Conn, reason string) {
	usable := p.usableNow()
	cur := c.Uplink()
	var best string
	for _, pi := range c.Paths() {
		if !pi.Active && pi.Validated && pi.Uplink != cur && slices.Contains(usable, pi.Uplink) &&
			(best == "" || rank(usable, pi.Uplink) < rank(usable, best)) {
			best = pi.Uplink
		}
	}
	if best != "" && p.switchTo(c, best, reason) {
		return
	}
	others := slices.DeleteFunc(usable, func(s string) bool { return s == cur })
	if len(others) == 0 {
		p.log.Info("no uplink to move to; waiting", "peer", p.peerName(c), "uplink", cur, "reason", reason)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if slices.Contains(p.usable, cur) {
		// cur is up but its path is silent: the redial takes another.
		p.avoid = cur
	}
	p.log.Info("redialing: no validated standby", "peer", p.peerNameLocked(c), "from", uplinkName(cur), "via", others[0], "reason", reason)
	p.goLocked(func() { c.Abandon("redialing: " + reason) })
}

// switchTo switches c to the standby on name and reports whether it did.
func (p *Policy) switchTo(c Conn, name, reason string) bool {
	from := c.Uplink()
	if from == name {
		return true
	}
	p.mu.Lock()
	if st := p.conns[c]; st != nil {
		st.reason = reason
	}
	p.mu.Unlock()
	if err := c.SwitchUplink(name); err != nil {
		p.log.Info("switch failed", "peer", p.peerName(c), "from", from, "to", name, "err", err)
		return false
	}
	p.mu.Lock()
	p.status = fmt.Sprintf("migrated %s to %s", p.peerNameLocked(c), name)
	p.mu.Unlock()
	if p.cfg.Changed != nil {
		p.cfg.Changed()
	}
	// Keep the old uplink as a standby while it is usable.
	if from != "" && p.isUsable(from) {
		p.probe(c, from)
	}
	return true
}

func (p *Policy) peerName(c Conn) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peerNameLocked(c)
}

func (p *Policy) peerNameLocked(c Conn) string {
	if st := p.conns[c]; st != nil {
		return st.peer
	}
	return ""
}

// rank orders uplinks: lower is better; "" (the wildcard socket) and
// unusable uplinks come last.
func rank(usable []string, name string) int {
	if i := slices.Index(usable, name); i >= 0 && name != "" {
		return i
	}
	return len(usable)
}

func uplinkName(n string) string {
	if n == "" {
		return "(wildcard socket)"
	}
	return n
}

// Hooks returns p as the [quicconn.Mobility] of an Endpoint: pass it to
// [quicconn.Endpoint.SetMobility] before the first dial.
func (p *Policy) Hooks() quicconn.Mobility { return hooks{p} }

// hooks adapts a Policy, which works on the Conn interface, to
// quicconn.Mobility, which passes *quicconn.Conn.
type hooks struct{ p *Policy }

func (h hooks) PickUplink() (string, bool)                      { return h.p.PickUplink() }
func (h hooks) PathDead(c *quicconn.Conn)                       { h.p.PathDead(c) }
func (h hooks) Migrated(c *quicconn.Conn, m quicconn.Migration) { h.p.Migrated(c, m) }
