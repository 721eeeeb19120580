// SPDX-License-Identifier: MIT

package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/routing"
)

// Mobility policy timings.
const (
	// mobDebounce collects the burst of netlink events one change makes
	// (link, addresses, routes) before acting on an uplink that appeared.
	// A usable uplink that goes away is acted upon at once: every
	// millisecond counts in a make-before-break switch.
	mobDebounce = 20 * time.Millisecond
	// mobProbeTimeout bounds one path probe.
	mobProbeTimeout = 2 * time.Second
	// mobProbeTries is how often a probe on a usable uplink is tried,
	// 1 s, 2 s, 4 s ... apart, before waiting for the next change.
	mobProbeTries = 4
	// mobStartWait bounds how long start-up waits for the first view of
	// the uplinks before the first dial.
	mobStartWait = 2 * time.Second
)

// mobility is a site's uplink policy. It watches links, addresses and
// default routes (routing.Subscribe), keeps a Transport on every usable
// uplink (quicconn.Endpoint.AddUplink), probes a standby path on each for
// every connection it dials, and moves connections: to the best validated
// standby when their uplink goes away or their path goes silent, back to a
// preferred uplink once it is validated again (make-before-break), and
// through a redial on the best usable uplink when there is no standby.
//
// An uplink is usable when its link is up with carrier, has a global
// address and a default route in the main table. It does nothing while
// nothing changes: no timers run without events.
type mobility struct {
	log     *slog.Logger
	ep      *quicconn.Endpoint
	d       *daemon
	names   []string // configured uplinks in preference order; nil with any
	any     bool
	tunName string
	ready   chan struct{} // closed after the first reconcile

	mu sync.Mutex // mu guards the following fields.
	// links is the monitor's view by interface index.
	links   map[int]*mobLink
	usable  []string // usable uplinks, best first
	probing map[probeKey]bool
	// reasons holds why each conn's latest switch happened, for the log
	// line written once its outage is measured.
	reasons map[*quicconn.Conn]string
	status  string // "migrated <peer> to <uplink>", for STATUS=
	// avoid is an uplink whose path went silent: the next redial takes
	// another usable uplink if there is one (pickUplink clears it).
	avoid string
}

type mobLink struct {
	name   string
	up     bool
	addrs  map[netip.Prefix]bool
	routes map[mobRoute]bool
}

type mobRoute struct {
	dst    netip.Prefix
	gw     netip.Addr
	metric int
}

type probeKey struct {
	c    *quicconn.Conn
	name string
}

// newMobility returns the policy for cfg, or nil when cfg has no uplinks.
// Its hooks (pickUplink, pathDead, migrated) go into the quicconn.Config
// before the Endpoint exists; start runs it.
func newMobility(cfg *config.Config, log *slog.Logger) *mobility {
	ifc := &cfg.Interface
	if ifc.Uplinks == nil && !ifc.UplinksAny {
		return nil
	}
	return &mobility{
		log:     log,
		names:   slices.Clone(ifc.Uplinks),
		any:     ifc.UplinksAny,
		tunName: ifc.Name,
		ready:   make(chan struct{}),
		links:   make(map[int]*mobLink),
		probing: make(map[probeKey]bool),
		reasons: make(map[*quicconn.Conn]string),
	}
}

// start runs the monitor until ctx is done (on d.wg) and waits, at most
// mobStartWait, until the first view of the uplinks is applied, so that
// the first dial already uses the best one.
func (m *mobility) start(ctx context.Context, d *daemon) {
	m.d, m.ep = d, d.ep
	d.wg.Go(func() { m.run(ctx) })
	t := time.NewTimer(mobStartWait)
	defer t.Stop()
	select {
	case <-m.ready:
	case <-t.C:
		m.log.Warn("no view of the uplinks yet; dialing on the wildcard socket")
	case <-ctx.Done():
	}
}

// run subscribes to the monitor, re-subscribing with capped backoff when
// the subscription ends, and applies changes: a loss of a usable uplink
// at once, anything else after mobDebounce of quiet.
func (m *mobility) run(ctx context.Context) {
	retry := time.Second
	for ctx.Err() == nil {
		ch, err := routing.Subscribe(ctx, routing.Options{Logger: m.log})
		if err != nil {
			m.log.Error("uplink monitor", "err", err, "retry_in", retry)
			if !sleepCtx(ctx, retry) {
				return
			}
			retry = min(2*retry, 30*time.Second)
			continue
		}
		retry = time.Second
		m.mu.Lock()
		clear(m.links) // the subscription lists the current state again
		m.mu.Unlock()
		m.watch(ctx, ch)
		if !sleepCtx(ctx, time.Second) { // the subscription failed: not in a tight loop
			return
		}
	}
}

func (m *mobility) watch(ctx context.Context, ch <-chan routing.Change) {
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case c, ok := <-ch:
			if !ok {
				return
			}
			if m.apply(c) {
				debounce.Stop()
				m.reconcile(ctx)
				continue
			}
			debounce.Reset(mobDebounce)
		case <-debounce.C:
			m.reconcile(ctx)
		case <-ctx.Done():
			for range ch { // let the monitor's goroutine finish
			}
			return
		}
	}
}

// apply records one change in the view of the links and reports whether
// it made a usable uplink unusable.
func (m *mobility) apply(c routing.Change) bool {
	m.log.Debug("uplink monitor", "change", c.String())
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recordLocked(c)
	switch c.Kind {
	case routing.LinkDown, routing.AddrRemoved, routing.DefaultRouteRemoved:
		now := m.usableLocked()
		for _, n := range m.usable {
			if !slices.Contains(now, n) {
				return true
			}
		}
	}
	return false
}

// recordLocked records c in m.links.
func (m *mobility) recordLocked(c routing.Change) {
	l := m.links[c.Index]
	if l == nil {
		l = &mobLink{addrs: make(map[netip.Prefix]bool), routes: make(map[mobRoute]bool)}
		m.links[c.Index] = l
	}
	if c.Link != "" {
		l.name = c.Link
	}
	switch c.Kind {
	case routing.LinkUp:
		l.up = true
	case routing.LinkDown:
		l.up = false
		// The kernel drops IPv4 routes through a link that goes down
		// without telling (RTM_DELROUTE is not sent); it re-announces the
		// ones that come back.
		clear(l.routes)
	case routing.AddrAdded:
		l.addrs[c.Prefix] = true
	case routing.AddrRemoved:
		delete(l.addrs, c.Prefix)
		// Likewise for routes via a gateway in the removed subnet.
		for r := range l.routes {
			if r.gw.IsValid() && c.Prefix.Masked().Contains(r.gw) {
				delete(l.routes, r)
			}
		}
	case routing.DefaultRouteAdded:
		l.routes[mobRoute{c.Prefix, c.Gateway, c.Metric}] = true
	case routing.DefaultRouteRemoved:
		delete(l.routes, mobRoute{c.Prefix, c.Gateway, c.Metric})
	}
}

// usableLocked returns the usable uplinks, best first.
func (m *mobility) usableLocked() []string {
	type cand struct {
		name   string
		metric int
	}
	var cs []cand
	for _, l := range m.links {
		if !l.up || len(l.routes) == 0 || l.name == "" || !hasGlobal(l.addrs) {
			continue
		}
		if m.any {
			if l.name == "lo" || l.name == m.tunName {
				continue
			}
		} else if !slices.Contains(m.names, l.name) {
			continue
		}
		metric := -1
		for r := range l.routes {
			if metric < 0 || r.metric < metric {
				metric = r.metric
			}
		}
		cs = append(cs, cand{l.name, metric})
	}
	slices.SortFunc(cs, func(a, b cand) int {
		if !m.any {
			return slices.Index(m.names, a.name) - slices.Index(m.names, b.name)
		}
		return cmp.Or(cmp.Compare(a.metric, b.metric), cmp.Compare(a.name, b.name))
	})
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.name
	}
	return out
}

func hasGlobal(addrs map[netip.Prefix]bool) bool {
	for p := range addrs {
		if a := p.Addr(); a.IsGlobalUnicast() && !a.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// rank orders uplinks: lower is better; "" (the wildcard socket) and
// unusable uplinks come last.
func rank(usable []string, name string) int {
	if i := slices.Index(usable, name); i >= 0 && name != "" {
		return i
	}
	return len(usable)
}

// reconcile acts on the current view: uplinks that stopped being usable
// lose their connections (switch or redial) and their Transport; new ones
// get a Transport and a probe for every connection.
func (m *mobility) reconcile(ctx context.Context) {
	m.mu.Lock()
	prev := m.usable
	usable := m.usableLocked()
	m.mu.Unlock()

	var lost, gained []string
	for _, n := range prev {
		if !slices.Contains(usable, n) {
			lost = append(lost, n)
		}
	}
	for _, n := range usable {
		if !slices.Contains(prev, n) {
			gained = append(gained, n)
		}
	}
	for _, n := range gained {
		if err := m.ep.AddUplink(n); err != nil {
			m.log.Error("uplink", "uplink", n, "err", err)
			usable = slices.DeleteFunc(usable, func(s string) bool { return s == n })
		}
	}
	m.mu.Lock()
	m.usable = usable
	m.mu.Unlock()
	select {
	case <-m.ready:
	default:
		close(m.ready) // before the wake-up: pickUplink answers from the view now
	}
	if len(lost) > 0 || len(gained) > 0 || prev == nil {
		m.log.Info("uplinks", "usable", fmt.Sprint(usable), "lost", fmt.Sprint(lost), "new", fmt.Sprint(gained))
	}
	if len(gained) > 0 {
		m.ep.UplinksChanged() // a dial loop waiting for an uplink dials now
	}
	// Connections off a usable uplink move: those on an uplink lost now,
	// and those that waited for any uplink to come back. The wildcard
	// socket ("", only before the first view) is left to the probes.
	for _, c := range m.conns() {
		if n := c.Uplink(); n != "" && !slices.Contains(usable, n) {
			if slices.Contains(lost, n) {
				m.moveAway(c, "uplink "+n+" lost")
			} else {
				m.moveAway(c, "uplink "+n+" still lost")
			}
		}
	}
	for _, n := range lost {
		_ = m.ep.RemoveUplink(n)
	}
	for _, c := range m.conns() {
		if n := c.Uplink(); n == "" || slices.Contains(usable, n) {
			m.probeAll(ctx, c)
		}
	}
}

// conns returns the live connections this node dialed (only a dialer can
// migrate).
func (m *mobility) conns() []*quicconn.Conn {
	m.d.mu.Lock()
	defer m.d.mu.Unlock()
	var cs []*quicconn.Conn
	for _, ps := range m.d.peers {
		if ps.conn != nil && ps.cfg.Endpoint != "" {
			cs = append(cs, ps.conn)
		}
	}
	return cs
}

// pickUplink is quicconn.Config.PickUplink: the best usable uplink, but
// not one whose path just went silent when there is another. Before the
// first view of the uplinks (the monitor is slow or failed) it is the
// wildcard socket; afterwards a dial waits while no uplink is usable, so
// that every connection belongs to an uplink and can move.
func (m *mobility) pickUplink() (string, bool) {
	select {
	case <-m.ready:
	default:
		return "", true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	avoid := m.avoid
	m.avoid = ""
	for _, n := range m.usable {
		if n != avoid {
			return n, true
		}
	}
	if len(m.usable) > 0 {
		return m.usable[0], true
	}
	return "", false
}

// attached is called for every new connection: probe its standbys.
func (m *mobility) attached(c *quicconn.Conn) {
	m.probeAll(m.d.ctx, c)
}

// probeAll probes every usable uplink of c that is not its active one and
// has no validated standby, each in its own goroutine.
func (m *mobility) probeAll(ctx context.Context, c *quicconn.Conn) {
	have := map[string]bool{c.Uplink(): true}
	for _, p := range c.Paths() {
		if p.Validated {
			have[p.Uplink] = true
		}
	}
	m.mu.Lock()
	usable := slices.Clone(m.usable)
	m.mu.Unlock()
	for _, n := range usable {
		if !have[n] {
			m.probe(ctx, c, n)
		}
	}
}

// probe starts one prober for (c, name) unless one runs. On success it
// switches when name is better than c's uplink.
func (m *mobility) probe(ctx context.Context, c *quicconn.Conn, name string) {
	k := probeKey{c, name}
	m.mu.Lock()
	if m.probing[k] {
		m.mu.Unlock()
		return
	}
	m.probing[k] = true
	m.mu.Unlock()
	m.d.wg.Go(func() {
		defer func() {
			m.mu.Lock()
			delete(m.probing, k)
			m.mu.Unlock()
		}()
		wait := time.Second
		for try := 1; ; try++ {
			pctx, cancel := context.WithTimeout(ctx, mobProbeTimeout)
			err := c.ProbeUplink(pctx, name)
			cancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil || c.Err() != nil || try == mobProbeTries || !m.isUsable(name) || !m.isUsable(c.Uplink()) {
				m.log.Debug("probe failed", "peer", m.peerName(c), "uplink", name, "tries", try, "err", err)
				if c.Err() == nil && ctx.Err() == nil && !m.isUsable(c.Uplink()) {
					// moveAway waited for this probe: redial now.
					m.mu.Lock()
					delete(m.probing, k)
					m.mu.Unlock()
					m.moveAway(c, "uplink "+uplinkName(c.Uplink())+" lost, standby "+name+" not validated")
				}
				return
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			case <-c.Done():
				return
			}
			wait *= 2
		}
		m.log.Debug("standby path validated", "peer", m.peerName(c), "uplink", name)
		cur := c.Uplink()
		m.mu.Lock()
		better := rank(m.usable, name) < rank(m.usable, cur)
		curLost := !slices.Contains(m.usable, cur)
		m.mu.Unlock()
		switch {
		case better && curLost:
			m.switchTo(c, name, "uplink "+uplinkName(cur)+" lost")
		case better:
			m.switchTo(c, name, "preferred uplink "+name+" usable")
		}
	})
}

func (m *mobility) isUsable(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(m.usable, name)
}

// moveAway takes c off its active uplink: to its best validated standby,
// else at once through a redial (c.Abandon makes its dial loop dial again
// without delay, on the best usable uplink, with 0-RTT when it can). A
// probe under way is not waited for: when it validates later, it is
// dropped with c. With nothing else usable it waits: the uplink may come
// back (reconcile moves c when another becomes usable), and the heartbeat
// closes a dead conn.
func (m *mobility) moveAway(c *quicconn.Conn, reason string) {
	m.mu.Lock()
	usable := slices.Clone(m.usable)
	m.mu.Unlock()
	cur := c.Uplink()
	var best string
	for _, p := range c.Paths() {
		if !p.Active && p.Validated && p.Uplink != cur && slices.Contains(usable, p.Uplink) &&
			(best == "" || rank(usable, p.Uplink) < rank(usable, best)) {
			best = p.Uplink
		}
	}
	if best != "" && m.switchTo(c, best, reason) {
		return
	}
	others := slices.DeleteFunc(usable, func(s string) bool { return s == cur })
	if len(others) == 0 {
		m.log.Info("no uplink to move to; waiting", "peer", m.peerName(c), "uplink", cur, "reason", reason)
		return
	}
	if slices.Contains(usable, cur) {
		// cur is up but its path is silent: the redial takes another.
		m.mu.Lock()
		m.avoid = cur
		m.mu.Unlock()
	}
	m.log.Info("redialing: no validated standby", "peer", m.peerName(c), "from", uplinkName(cur), "via", others[0], "reason", reason)
	m.d.wg.Go(func() { c.Abandon("redialing: " + reason) })
}

// switchTo switches c to the standby on name and reports whether it did.
func (m *mobility) switchTo(c *quicconn.Conn, name, reason string) bool {
	from := c.Uplink()
	if from == name {
		return true
	}
	m.mu.Lock()
	m.reasons[c] = reason
	m.mu.Unlock()
	err := c.SwitchUplink(name)
	if c.Err() != nil {
		// c died: its forget may have run before the reason was stored,
		// which would keep c (and all it holds) in m.reasons for good.
		m.forget(c)
	}
	if err != nil {
		m.log.Info("switch failed", "peer", m.peerName(c), "from", from, "to", name, "err", err)
		return false
	}
	m.mu.Lock()
	m.status = fmt.Sprintf("migrated %s to %s", m.peerName(c), name)
	m.mu.Unlock()
	m.d.notifyChanged()
	// Keep the old uplink as a standby while it is usable.
	if from != "" && m.isUsable(from) {
		m.probe(m.d.ctx, c, from)
	}
	return true
}

// pathDead is quicconn.Config.OnPathDead.
func (m *mobility) pathDead(c *quicconn.Conn) {
	if m.d == nil || m.d.ctx.Err() != nil || !m.dialed(c) {
		return
	}
	m.moveAway(c, "path silent")
}

func (m *mobility) dialed(c *quicconn.Conn) bool {
	for _, x := range m.conns() {
		if x == c {
			return true
		}
	}
	return false
}

// migrated is quicconn.Config.OnMigrated: one log line per migration,
// with its reason and outage.
func (m *mobility) migrated(c *quicconn.Conn, mg quicconn.Migration) {
	m.mu.Lock()
	reason := m.reasons[c]
	m.mu.Unlock()
	peer := m.peerName(c)
	if !mg.Measured {
		m.log.Info("migrated", "peer", peer, "from", uplinkName(mg.From), "to", uplinkName(mg.To), "reason", reason, "outage", "superseded")
		return
	}
	m.log.Info("migrated", "peer", peer, "from", uplinkName(mg.From), "to", uplinkName(mg.To), "reason", reason,
		"outage", mg.Outage.Round(time.Millisecond))
}

// peerName is the configured name of c's peer.
func (m *mobility) peerName(c *quicconn.Conn) string {
	if n := m.d.peerName(c.PeerKey()); n != "" {
		return n
	}
	return c.PeerName()
}

// forget drops the state kept for a closed conn.
func (m *mobility) forget(c *quicconn.Conn) {
	m.mu.Lock()
	delete(m.reasons, c)
	m.mu.Unlock()
}

// statusLine is the latest migration for systemd's STATUS=, or "".
func (m *mobility) statusLine() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

func uplinkName(n string) string {
	if n == "" {
		return "(wildcard socket)"
	}
	return n
}

// sleepCtx waits d or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
