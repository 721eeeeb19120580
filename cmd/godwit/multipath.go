// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/tunnel"
	"github.com/godwit-vpn/godwit/tunnel/classify"
)

// A multipath peer has a set of connections instead of one: on a site, one
// per usable uplink, dialed by the mobility policy (AddMultipathPeer); on a
// hub, every connection of the site's running instance. The tunnel
// schedules packets over the set (tunnel/paths.go); the daemon only keeps
// the set, each connection's health monitor, and the policy.

// multipathSite reports whether this node dials peer p as a multipath
// peer: a site with uplinks, and a mode other than off (by default, with
// two or more uplinks). d.mu must be held.
func (d *daemon) multipathSite(p *config.Peer) bool {
	return d.cfg.PathMode(p) != config.MultipathOff && d.mob != nil
}

// sitePolicy is the tunnel's policy for a multipath peer this site dials:
// the mode it announces, and its duplicate rules.
func sitePolicy(cfg *config.Config, p *config.Peer) tunnel.PathPolicy {
	mode, all := announced(cfg, p)
	pol := tunnel.PathPolicy{Mode: tunnelMode(mode), RedundancyAll: all}
	if len(p.Duplicate) > 0 {
		pol.Duplicate = classify.NewSet(p.Duplicate)
	}
	return pol
}

// multipathChanged reports whether a and b differ in how the site reaches
// the peer over its uplinks.
func multipathChanged(a, b *config.Peer) bool {
	return a.Multipath != b.Multipath || a.Redundancy != b.Redundancy || !slices.Equal(a.Duplicate, b.Duplicate)
}

// attachPath adds c to its peer's connection set: a connection a hub
// accepted, once its hello completed (accepted), or one of a site's pinned
// connections, possibly still in 0-RTT. On a hub, a connection of a new
// instance of the site (it restarted) makes the older ones stale: they are
// closed. A site whose hub does not announce multipath falls back to one
// connection that moves between uplinks.
func (d *daemon) attachPath(c *quicconn.Conn) {
	early := !helloDone(c)
	id := c.PeerKey()
	mp, ok := c.Multipath()
	d.mu.Lock()
	ps := d.peers[id]
	if ps == nil || d.ctx.Err() != nil {
		d.mu.Unlock()
		_ = c.Close("peer not configured")
		return
	}
	name := ps.cfg.Name
	dialer := ps.cfg.Endpoint != ""
	if dialer && !ok && !early {
		d.mu.Unlock()
		d.hubWithoutMultipath(ps, c)
		return
	}
	var stale []*quicconn.Conn
	if !dialer && ps.instance != mp.Instance {
		for old := range ps.paths {
			stale = append(stale, old)
		}
		clear(ps.paths)
		ps.instance = mp.Instance
	}
	moved := ps.conn == c
	switch {
	case moved: // attached early (0-RTT): it moves into the set
		ps.conn = nil
	case ps.conn != nil: // a single connection of an earlier run of the peer
		stale = append(stale, ps.conn)
		ps.conn = nil
	}
	for _, old := range stale {
		d.tn.Detach(id, old)
	}
	pol := tunnel.PathPolicy{Mode: tunnelMode(mp.Mode), RedundancyAll: mp.RedundancyAll, Follow: !dialer}
	if dialer {
		pol = sitePolicy(d.cfg, &ps.cfg)
	}
	d.tn.SetPathPolicy(id, pol)
	// A pinned 0-RTT connection carries datagrams at once, without the
	// sequenced header until its hello says the hub reads it.
	opts := tunnel.PathOptions{Name: pathName(c), Sequenced: ok, Health: d.pathHealth(c, ps.fallback != nil)}
	if dialer && early {
		// Until its hello proves the path, a 0-RTT connection is not
		// usable: it carries only while no other path is (a restart),
		// never instead of a working one. A redial on an uplink that went
		// silent would otherwise take the traffic into the silence as soon
		// as it was dialed (the benchmark: a second gap of 400 ms, 8 s
		// after the failure, when the silent connection timed out).
		health := opts.Health
		opts.Health = func() tunnel.PathHealth {
			h := health()
			if !helloDone(c) {
				h.Usable = false
			}
			return h
		}
	}
	// While UDP is blocked, every UDP redial of a peer with a TCP
	// fallback that has a ticket is such a 0-RTT connection, and dies
	// unanswered: it is logged as connected only once its hello is done.
	quiet := early && dialer && ps.fallback != nil && !c.IsTCP()
	if dialer {
		opts.Carrying = func(carrying bool) { c.SetProbe(probeFor(carrying)) }
	}
	err := d.tn.AttachPath(id, c, opts)
	var monitor []*quicconn.Conn
	if err == nil {
		if ps.paths == nil {
			ps.paths = make(map[*quicconn.Conn]time.Time)
		}
		ps.paths[c] = time.Now()
		ps.since = time.Now()                            // godwit show
		if hs := c.Stats().HandshakeDone; !hs.IsZero() { // a 0-RTT conn's completes later (snapshot)
			ps.handshake = hs
		}
		// A site judges every connection of its set; a hub only once
		// the set has a second one to move to, so that a hub with many
		// single-connection sites does not poll them all.
		if dialer || len(ps.paths) > 1 {
			monitor = slices.Collect(maps.Keys(ps.paths))
		}
	}
	d.mu.Unlock()
	for _, old := range stale {
		d.wg.Go(func() { _ = old.Close("replaced: the peer restarted") })
	}
	if err != nil {
		if errors.Is(err, tunnel.ErrTooManyPaths) {
			d.log.Warn("connection refused: the peer has the most connections allowed", "peer", name, "max", tunnel.MaxPaths)
		} else {
			d.log.Error("attaching connection", "peer", name, "err", err)
		}
		_ = c.Close("too many connections")
		return
	}
	for _, mc := range monitor {
		// The site probes each of its connections; the hub judges from
		// those probes and the traffic (Passive) instead of doubling them.
		mc.MonitorPath(quicconn.HealthConfig{Passive: !dialer, Probe: probeFor(false), Changed: func(*quicconn.Conn, quicconn.HealthState, quicconn.HealthState, string) {
			d.tn.PathsChanged(id)
			d.fallbackUpdate(id)
			d.notifyChanged()
		}})
	}
	d.tn.PathsChanged(id) // the monitors are on: the carrying paths probe faster
	d.fallbackUpdate(id)
	connected := func() {
		d.log.Info("peer connected", "peer", name, "remote", c.RemoteAddr(), "local", c.LocalAddr(), "uplink", c.Uplink(), "transport", c.Transport(), "multipath", true)
	}
	if !moved && !quiet { // an early conn was logged when attached
		connected()
	}
	if dialer && !early {
		// The state may have changed since the hello was written.
		d.preferencesChanged()
	}
	d.notifyChanged()
	if early {
		d.wg.Go(func() {
			select {
			case <-c.HelloDone():
			case <-c.Done():
				return
			}
			if _, ok := c.Multipath(); !ok {
				d.hubWithoutMultipath(ps, c)
				return
			}
			opts.Sequenced, opts.Health = true, d.pathHealth(c, ps.fallback != nil)
			_ = d.tn.AttachPath(id, c, opts)
			d.tn.PathsChanged(id) // its rank changed (pathHealth)
			d.fallbackUpdate(id)  // an early connection counts as usable UDP once its hello is done
			d.preferencesChanged()
			if quiet {
				connected()
			}
		})
	}
	d.wg.Go(func() {
		<-c.Done()
		d.mu.Lock()
		delete(ps.paths, c)
		d.mu.Unlock()
		d.tn.Detach(id, c)
		d.fallbackUpdate(id)
		if quiet && !helloDone(c) {
			d.log.Debug("0-RTT connection got no answer", "peer", name, "path", pathName(c), "transport", c.Transport(), "reason", c.Err())
		} else {
			d.log.Info("peer disconnected", "peer", name, "path", pathName(c), "transport", c.Transport(), "multipath", true, "reason", c.Err())
		}
		d.notifyChanged()
	})
}

// accepted attaches an incoming connection: to its peer's set when the
// peer announced multipath, else as the peer's one connection. An early
// (0-RTT) connection is attached as the one connection at once, so that
// its 0-RTT datagrams flow, and moves into the set once its hello says so.
func (d *daemon) accepted(c *quicconn.Conn) {
	if d.mutualAccepted(c) {
		return
	}
	if helloDone(c) {
		if _, ok := c.Multipath(); ok {
			d.attachPath(c)
		} else {
			d.attach(c)
		}
		return
	}
	d.attach(c)
	d.wg.Go(func() {
		select {
		case <-c.HelloDone():
			if _, ok := c.Multipath(); ok {
				d.attachPath(c)
			}
		case <-c.Done():
		}
	})
}

// helloDone reports whether c's hello exchange completed.
func helloDone(c *quicconn.Conn) bool {
	select {
	case <-c.HelloDone():
		return true
	default:
		return false
	}
}

// hubWithoutMultipath makes the site reach ps over one connection that
// moves between uplinks: the hub does not announce multipath, so a second
// connection would replace the first. c, the connection that told, is
// closed.
func (d *daemon) hubWithoutMultipath(ps *peerState, c *quicconn.Conn) {
	d.mu.Lock()
	switchOver := ps.pinned && d.peers[ps.cfg.PublicKey] == ps // once, for a peer still configured
	if switchOver {
		ps.stopDialLocked()
		d.startLegacyDialLocked(ps)
	}
	name := ps.cfg.Name
	d.mu.Unlock()
	if switchOver {
		d.log.Warn("the hub does not announce multipath: one connection that moves between uplinks", "peer", name)
	}
	_ = c.Close("hub without multipath")
}

// Probe intervals of a site's connections: a path that carries traffic
// is probed often enough that it is judged dead within a second when idle
// (quicconn's default); a warm standby less often, which keeps an idle hub
// with many sites from being busy answering probes (200 sites with two
// connections each: 29 % of a core with every connection at 250 ms).
const (
	carryingProbe = 250 * time.Millisecond
	warmProbe     = time.Second
)

func probeFor(carrying bool) time.Duration {
	if carrying {
		return carryingProbe
	}
	return warmProbe
}

// pathHealth is the tunnel's view of c's health: usable while its monitor
// says Up, ranked by its uplink's preference on a site. With fallback (a
// peer with endpoint_tcp), a TCP path ranks after every UDP connection
// whose hello completed, and before a UDP connection still in 0-RTT: while
// UDP is blocked, each UDP redial with a ticket is such a connection, and
// it must not take the traffic from the TCP path that works.
func (d *daemon) pathHealth(c *quicconn.Conn, fallback bool) func() tunnel.PathHealth {
	return func() tunnel.PathHealth {
		h := c.PathHealth()
		rank := 0
		switch {
		case c.IsTCP():
			rank = tcpRank
		case d.mob != nil:
			if u := c.Uplink(); u != "" {
				rank = d.mob.Rank(u)
			}
		}
		if fallback && !c.IsTCP() && !helloDone(c) {
			rank += 2 * tcpRank
		}
		// A lossy path still carries when no clean one is left, and its
		// copies still help in redundant mode (10 % loss on both uplinks:
		// 5.4 % inner loss while lossy paths counted as unusable).
		lossy := h.State == quicconn.HealthLossy
		usable := lossy || h.State == quicconn.HealthUp || h.State == quicconn.HealthUnmonitored
		if c.PeerPreference().Leaving { // the hub shuts down (hubs.go)
			usable = false
		}
		return tunnel.PathHealth{Usable: usable, Lossy: lossy, Rank: rank, SRTT: h.SRTT, MinRTT: h.MinRTT, Loss: h.Loss}
	}
}

// pathsChanged re-reads the health and ranks of every multipath peer's
// paths (the uplinks' order changed).
func (d *daemon) pathsChanged() {
	d.mu.Lock()
	ids := make([]key.Public, 0, len(d.peers))
	for id, ps := range d.peers {
		if len(ps.paths) > 0 {
			ids = append(ids, id)
		}
	}
	d.mu.Unlock()
	for _, id := range ids {
		d.tn.PathsChanged(id)
	}
}

// pathName names a path: its uplink on a site, the peer's address on a
// hub, "tcp" and the peer's address for a TCP path.
func pathName(c *quicconn.Conn) string {
	if c.IsTCP() {
		return "tcp " + quicconn.AddrPort(c.RemoteAddr()).String()
	}
	if u := c.Uplink(); u != "" {
		return u
	}
	return c.RemoteAddr().String()
}

// announcedMode is the mode this site announces to peer (quicconn's
// Config.MultipathMode).
func (d *daemon) announcedMode(peer key.Public) (quicconn.MultipathMode, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ps := d.peers[peer]; ps != nil {
		return announced(d.cfg, &ps.cfg)
	}
	return quicconn.MultipathFailover, false
}

// announced is the mode and redundancy of p in quicconn's terms.
func announced(cfg *config.Config, p *config.Peer) (quicconn.MultipathMode, bool) {
	all := p.Redundancy == config.RedundancyAll
	switch cfg.PathMode(p) {
	case config.MultipathRedundant:
		return quicconn.MultipathRedundant, all
	case config.MultipathAggregate:
		return quicconn.MultipathAggregate, all
	}
	return quicconn.MultipathFailover, all
}

// tunnelMode is m in the tunnel's terms.
func tunnelMode(m quicconn.MultipathMode) tunnel.Mode {
	switch m {
	case quicconn.MultipathRedundant:
		return tunnel.Redundant
	case quicconn.MultipathAggregate:
		return tunnel.Aggregate
	}
	return tunnel.Failover
}

// current is the connection that stands for ps in status: its single
// connection, or the longest-joined of its set; nil when it has none.
func (ps *peerState) current() *quicconn.Conn {
	if ps.conn != nil {
		return ps.conn
	}
	var cur *quicconn.Conn
	var since time.Time
	for c, t := range ps.paths {
		if cur == nil || t.Before(since) {
			cur, since = c, t
		}
	}
	return cur
}

// connected reports whether ps has a connection whose hello exchange
// completed: a 0-RTT connection whose handshake may still be refused
// does not count (status, READY).
func (ps *peerState) connected() bool {
	for c := range ps.allConns() {
		if helloDone(c) {
			return true
		}
	}
	return false
}

// allConns yields ps's single connection and every connection of its set.
func (ps *peerState) allConns() iter.Seq[*quicconn.Conn] {
	return func(yield func(*quicconn.Conn) bool) {
		if ps.conn != nil && !yield(ps.conn) {
			return
		}
		for c := range ps.paths {
			if !yield(c) {
				return
			}
		}
	}
}
