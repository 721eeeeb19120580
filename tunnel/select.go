// SPDX-License-Identifier: MIT

package tunnel

// Hub selection (issue 13): a site may list several hubs whose allowed-IPs
// overlap, each with a priority (PeerConfig.Priority, lower preferred).
// The table then has slots with several members (table.go), and each such
// slot's packets go to one carrier, chosen here:
//
//   - the first member, by priority, that is eligible: usable (a usable
//     path in its set, or an attached connection) and, if it failed
//     before, usable again for the hold-down (Config.HoldDown), so that a
//     flapping hub does not pull the traffic back and forth;
//   - else the first usable member (a hub that is back but still held
//     down is better than none);
//   - else the carrier stays as it is: nothing is known to work, and
//     moving would only tell the hubs something new.
//
// A peer that was never usable is eligible as soon as it is: a site that
// starts uses its preferred hub at once. The selection runs under t.mu
// whenever a member's paths or connection change, and on the clock's tick
// while a member waits out its hold-down. A peer that carries at least
// one shared slot is "carrying"; Config.CarryingChanged hears of each
// change (the daemon tells the hubs, which announce the site's routes only
// while it uses them).

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// usableLocked reports whether p can carry traffic now: a usable path in
// its set or, without a set, an attached connection. t.mu must be held.
func (p *peer) usableLocked() bool {
	if s := p.sched.Load(); s != nil {
		for _, h := range s.hs {
			if h.Usable {
				return true
			}
		}
		return false
	}
	return p.conn.Load() != nil
}

// selectLocked updates the eligibility of the peers of shared slots and
// the carrier of each shared slot. t.mu must be held.
func (t *Tunnel) selectLocked() {
	tbl := t.table.Load()
	if len(tbl.shared) == 0 {
		return
	}
	now := time.Now()
	t.holdPending = false
	for _, p := range t.peers {
		if !p.shared {
			continue
		}
		if !p.usableLocked() {
			if p.wasUsable {
				p.failed = true
				p.log.Info("tunnel: peer not usable: its shared prefixes go to the next usable peer by priority")
			}
			p.wasUsable, p.eligible = false, false
			continue
		}
		if !p.wasUsable {
			p.wasUsable, p.upSince = true, now
		}
		if !p.eligible {
			if !p.failed || now.Sub(p.upSince) >= t.holdDown {
				p.eligible = true
			} else {
				t.holdPending = true
			}
		}
	}
	moved := false
	for _, s := range tbl.shared {
		if next := pickCarrier(s); next != s.cur.Load() {
			s.cur.Store(next)
			moved = true
		}
	}
	if moved {
		t.hubFailovers.Add(1)
	}
	notify := false
	for _, p := range t.peers {
		if !p.shared {
			continue
		}
		carrying := false
		for _, s := range tbl.shared {
			if s.cur.Load() == p {
				carrying = true
				break
			}
		}
		if p.carrying.Swap(carrying) != carrying {
			notify = true
			p.log.Info("tunnel: carrying shared prefixes", "carrying", carrying)
		}
	}
	if notify {
		select {
		case t.carryChanged <- struct{}{}:
		default:
		}
	}
}

// pickCarrier returns the carrier s should have (see the overview above).
func pickCarrier(s *slot) *peer {
	for _, m := range s.members {
		if m.eligible {
			return m
		}
	}
	for _, m := range s.members {
		if m.wasUsable {
			return m
		}
	}
	return s.cur.Load()
}

// markShared sets p.shared for the members of tbl's shared slots and
// clears it for the others, among peers. t.mu must be held.
func markShared(tbl *table, peers map[key.Public]*peer) {
	for _, p := range peers {
		p.shared = false
	}
	for _, s := range tbl.shared {
		for _, m := range s.members {
			m.shared = true
		}
	}
}

// Carrying reports whether peer id carries traffic for this node: a peer
// without shared allowed-IPs always does; one that shares them with other
// peers does while it is the carrier of at least one shared prefix. It is
// false for an unknown peer.
func (t *Tunnel) Carrying(id key.Public) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[id]
	return p != nil && (!p.shared || p.carrying.Load())
}

// Carriers returns, for each shared prefix (allowed-IPs of more than one
// peer), the peer that carries it now. It is empty without shared
// prefixes.
func (t *Tunnel) Carriers() map[key.Public][]netip.Prefix {
	tbl := t.table.Load()
	if len(tbl.shared) == 0 {
		return nil
	}
	out := make(map[key.Public][]netip.Prefix)
	for _, s := range tbl.shared {
		if p := s.cur.Load(); p != nil {
			out[p.id] = append(out[p.id], s.pfx)
		}
	}
	for _, ps := range out {
		slices.SortFunc(ps, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
	}
	return out
}

// HubFailovers returns how many times the carrier of the shared prefixes
// changed.
func (t *Tunnel) HubFailovers() uint64 { return t.hubFailovers.Load() }

// notifyCarrying calls f for each peer whose carrying state changed since
// its last call, until ctx is done. It runs on a goroutine of Run's, so f
// may call back into the tunnel.
func (t *Tunnel) notifyCarrying(ctx context.Context, f func(id key.Public, carrying bool)) {
	defer t.wg.Done()
	type change struct {
		id       key.Public
		carrying bool
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.carryChanged:
		}
		var changes []change
		t.mu.Lock()
		for id, p := range t.peers {
			if c := p.carrying.Load(); p.shared && c != p.reported {
				p.reported = c
				changes = append(changes, change{id, c})
			}
		}
		t.mu.Unlock()
		for _, c := range changes {
			f(c.id, c.carrying)
		}
	}
}
