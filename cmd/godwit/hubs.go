// SPDX-License-Identifier: MIT

package main

import (
	"net/netip"
	"time"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/routing"
)

// Several hubs (issue 13). A site lists its hubs with priorities and
// shared allowed-IPs; the tunnel picks the hub that carries the shared
// prefixes (tunnel/select.go). The daemon tells each hub whether it
// carries (quicconn's Preference message): at once when it starts to,
// releaseDelay later when it stopped, so that the new hub's route reaches
// the data centre (BIRD or FRR on the hub announce it over BGP) before the
// old hub withdraws its own. A hub with routes = "connected" keeps a
// site's routes in its kernel only while the site is connected and
// prefers it. A hub that shuts down tells its sites it is leaving
// (their health checks then judge its paths unusable and they move), and
// with routes = "connected" waits, at most leaveWait, until none prefers
// it any more before it closes.

const (
	// preferenceRecheck is how often the preference loop compares what the
	// hubs were told with what the tunnel does, besides on every change.
	preferenceRecheck = 100 * time.Millisecond
	// releaseDelay is how long a site keeps telling a hub it carries after
	// the traffic moved to another: the time the other hub's route needs to
	// reach the core router (a kernel route, BIRD's kernel protocol, one
	// BGP update: tens of milliseconds), with room.
	releaseDelay = 250 * time.Millisecond
	// leaveWait bounds how long a hub that shuts down waits for its sites
	// to move (it must stop within stopTimeout plus this).
	leaveWait = 500 * time.Millisecond
)

// carryingChanged is the tunnel's Config.CarryingChanged: the carrying
// hub changed, so the preference loop looks at once.
func (d *daemon) carryingChanged(key.Public, bool) { d.preferencesChanged() }

// preferencesChanged makes the preference loop look at once (the carrier
// changed, or a hub's connection joined or finished its hello).
func (d *daemon) preferencesChanged() {
	select {
	case d.prefDirty <- struct{}{}:
	default:
	}
}

// preferenceLoop keeps what each ranked hub was told equal to what the
// tunnel does: on every change, and every preferenceRecheck anyway, it
// sends each connection of a ranked hub whose last message differs from
// the current state. A hub that starts carrying is told at once; one that
// stopped, once it has not carried for releaseDelay. Comparing with what
// was sent, rather than passing changes on, means that no interleaving of
// changes, dials and hellos can leave a hub with a stale answer (two
// quick changes used to leave hub B "preferred" after A took over, in 1
// start of 40).
func (d *daemon) preferenceLoop() {
	t := time.NewTicker(preferenceRecheck)
	defer t.Stop()
	sent := make(map[*quicconn.Conn]bool)   // what each connection was last told
	since := make(map[key.Public]time.Time) // when a hub last carried
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.prefDirty:
		case <-t.C:
		}
		now := time.Now()
		type send struct {
			c    *quicconn.Conn
			pref bool
		}
		var sends []send
		live := make(map[*quicconn.Conn]bool)
		d.mu.Lock()
		for id, ps := range d.peers {
			if !ps.cfg.HasPriority {
				continue
			}
			carrying := d.tn.Carrying(id)
			if carrying {
				since[id] = now
			}
			want := carrying || now.Sub(since[id]) < releaseDelay
			for c := range ps.allConns() {
				live[c] = true
				if !helloDone(c) {
					continue // its hello carried the state at dial time; told once it is done
				}
				if was, ok := sent[c]; !ok || was != want {
					sends = append(sends, send{c, want})
				}
			}
		}
		d.mu.Unlock()
		for c := range sent {
			if !live[c] {
				delete(sent, c)
			}
		}
		for _, s := range sends {
			if s.c.SetPreferred(s.pref) == nil {
				sent[s.c] = s.pref
			}
		}
	}
}

// preferenceFor is quicconn's Config.Preference: what a dialed hub is
// told in the hello.
func (d *daemon) preferenceFor(id key.Public) bool { return d.tn.Carrying(id) }

// preferenceChanged is quicconn's Config.PreferenceChanged: on a site, a
// hub said it is leaving (its paths turn unusable, see pathHealth); on a
// hub, a site changed its preferred hub.
func (d *daemon) preferenceChanged(c *quicconn.Conn) {
	if c.PeerPreference().Leaving {
		d.log.Info("peer is shutting down; moving away from it", "peer", d.peerName(c.PeerKey()))
		d.tn.PathsChanged(c.PeerKey())
	}
	d.routesChanged()
	d.notifyChanged()
}

// prefersUs reports whether a site that dials this node uses it for its
// traffic: it is connected, and its latest Preference (if it sends any)
// on some connection says so. d.mu must be held.
func (ps *peerState) prefersUs() bool {
	for c := range ps.allConns() {
		if p := c.PeerPreference(); !p.Announced || p.Preferred {
			return true
		}
	}
	return false
}

// routed reports whether ps's allowed-IPs are routed into the TUN now:
// always with routes = "always"; with "connected", while it is connected
// and, for a peer that dials this node, while it prefers this node. d.mu
// must be held.
func (d *daemon) routed(cfg *config.Config, ps *peerState) bool {
	if cfg.Interface.Routes != config.RoutesConnected {
		return true
	}
	if ps == nil || ps.current() == nil {
		return false
	}
	return ps.cfg.Endpoint != "" || ps.prefersUs()
}

// routingConfig is the host state cfg asks for now: with table = "off"
// the addresses only. d.mu must be held
// (it reads the peers' connections for routes = "connected"); at start,
// before any peer is known, a "connected" config has no routes.
func (d *daemon) routingConfig(cfg *config.Config) *routing.Config {
	var routes []netip.Prefix
	for _, p := range cfg.Peers {
		if !cfg.Interface.TableOff && d.routed(cfg, d.peers[p.PublicKey]) {
			routes = append(routes, p.AllowedIPs...)
		}
	}
	return &routing.Config{
		Interface: cfg.Interface.Name,
		MTU:       cfg.Interface.MTU,
		Addrs:     cfg.Interface.Addresses,
		Routes:    routes,
		Table:     cfg.Interface.Table,
		FwMark:    cfg.Interface.FwMark,
		Protocol:  cfg.Interface.RouteProtocol,
		Covered:   cfg.Interface.Routes == config.RoutesConnected,
	}
}

// routesChanged asks the route loop to bring the kernel's routes up to
// date with the peers' connections and preferences (routes =
// "connected").
func (d *daemon) routesChanged() {
	select {
	case d.routesDirty <- struct{}{}:
	default:
	}
}

// routeLoop applies the routes of a routes = "connected" node whenever a
// peer connects, disconnects or changes its preference, until d.ctx ends.
func (d *daemon) routeLoop() {
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.routesDirty:
		}
		d.mu.Lock()
		if d.cfg.Interface.Routes != config.RoutesConnected {
			d.mu.Unlock()
			continue
		}
		rc := d.routingConfig(d.cfg)
		d.mu.Unlock()
		if err := d.rm.Set(rc); err != nil {
			d.log.Error("setting the routes of the connected peers", "err", err)
		}
	}
}

// leave tells every peer that this node shuts down and, with routes =
// "connected", waits at most leaveWait until no site prefers it any more,
// so that they moved to another hub (whose route is announced) before
// this one's routes vanish.
func (d *daemon) leave() {
	d.mu.Lock()
	var conns []*quicconn.Conn
	for _, ps := range d.peers {
		if ps.cfg.Endpoint != "" {
			continue // a hub this node dials
		}
		for c := range ps.allConns() {
			conns = append(conns, c)
		}
	}
	connected := d.cfg.Interface.Routes == config.RoutesConnected
	d.mu.Unlock()
	for _, c := range conns {
		if helloDone(c) {
			_ = c.Leave()
		}
	}
	if !connected || len(conns) == 0 {
		return
	}
	deadline := time.Now().Add(leaveWait)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		preferred := 0
		for _, ps := range d.peers {
			if ps.cfg.Endpoint == "" && ps.current() != nil && ps.prefersUs() {
				preferred++
			}
		}
		d.mu.Unlock()
		if preferred == 0 {
			d.log.Info("every site moved away; stopping")
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.log.Info("stopping while sites still prefer this hub", "waited", leaveWait)
}
