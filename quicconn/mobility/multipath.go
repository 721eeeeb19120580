// SPDX-License-Identifier: MIT

package mobility

import (
	"context"
	"slices"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
)

// A multipath peer gets one connection per usable uplink, each dialed and
// redialed on its own uplink by Endpoint.DialLoopOn and never moved: when an
// uplink is lost its connection is closed, and the tunnel's schedule has
// already moved the traffic to the connections on the other uplinks. The
// policy only keeps the set of dial loops equal to the set of usable
// uplinks.

// PinnedDialer is the part of the Endpoint that dials a multipath peer's
// connections. *quicconn.Endpoint satisfies it.
type PinnedDialer interface {
	DialLoopOn(ctx context.Context, uplink, addr string, peer key.Public, up func(*quicconn.Conn))
}

var _ PinnedDialer = (*quicconn.Endpoint)(nil)

// mpPeer is a multipath peer: its address, the callback for its
// connections and the running dial loop of each uplink.
type mpPeer struct {
	name  string
	addr  string
	up    func(*quicconn.Conn)
	loops map[string]context.CancelFunc // by uplink
}

// AddMultipathPeer makes the policy keep one connection to peer (dialed at
// addr) on every usable uplink, handing each established one to up (on its
// dial loop's goroutine). name is for the log. Adding a peer again
// replaces its address and callback for the dial loops started later.
func (p *Policy) AddMultipathPeer(peer key.Public, name, addr string, up func(*quicconn.Conn)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mp == nil {
		p.mp = make(map[key.Public]*mpPeer)
	}
	mp := p.mp[peer]
	if mp == nil {
		mp = &mpPeer{loops: make(map[string]context.CancelFunc)}
		p.mp[peer] = mp
	}
	mp.name, mp.addr, mp.up = name, addr, up
	p.reconcileLocked(peer, mp)
}

// RemoveMultipathPeer stops the dial loops of peer, which close its
// connections.
func (p *Policy) RemoveMultipathPeer(peer key.Public) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if mp := p.mp[peer]; mp != nil {
		for _, cancel := range mp.loops {
			cancel()
		}
		delete(p.mp, peer)
	}
}

// Rank is the preference of uplink name among the usable ones: 0 for the
// best, len(usable) for one that is not usable. The tunnel orders a
// multipath peer's connections by it.
func (p *Policy) Rank(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return rank(p.usable, name)
}

// reconcileMultipathLocked makes every multipath peer's dial loops match
// the usable uplinks. p.mu must be held.
func (p *Policy) reconcileMultipathLocked() {
	for peer, mp := range p.mp {
		p.reconcileLocked(peer, mp)
	}
}

// reconcileLocked starts a dial loop on each usable uplink of mp that has
// none, and stops those on uplinks no longer usable (closing their
// connections). Before the first view of the uplinks nothing is dialed.
// p.mu must be held.
func (p *Policy) reconcileLocked(peer key.Public, mp *mpPeer) {
	if p.closed || !p.isReady() {
		return
	}
	d, ok := p.cfg.Endpoint.(PinnedDialer)
	if !ok {
		p.log.Error("multipath: the endpoint cannot dial on a fixed uplink", "peer", mp.name)
		return
	}
	for name, cancel := range mp.loops {
		if !slices.Contains(p.usable, name) {
			cancel()
			delete(mp.loops, name)
			p.log.Info("multipath: uplink lost, its connection closes", "peer", mp.name, "uplink", name)
		}
	}
	for _, name := range p.usable {
		if _, running := mp.loops[name]; running {
			continue
		}
		ctx, cancel := context.WithCancel(p.ctx)
		mp.loops[name] = cancel
		addr, up := mp.addr, mp.up
		p.log.Info("multipath: dialing on uplink", "peer", mp.name, "uplink", name)
		p.goLocked(func() { d.DialLoopOn(ctx, name, addr, peer, up) })
	}
}
