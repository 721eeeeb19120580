// SPDX-License-Identifier: MIT

package main

import (
	"bytes"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
)

// Both sides may set each other's endpoint, as WireGuard peers often do.
// Each would then dial, and each keeps the newest connection of a peer: the
// two connections replaced each other about four times a second, forever
// (issue 14). So for such a peer one side dials and the other yields: the
// side with the lower public key dials, and refuses the other's connection
// while its own is up. The side with the higher key dials too (only one
// direction may work), but stops as soon as a connection the peer dialed
// arrives, and starts again when that one ends. Peers dialed as a
// connection set (uplinks, priority, endpoint_tcp) are not affected.

// yieldsTo reports whether this node lets peer dial: its own key is the
// higher one.
func (d *daemon) yieldsTo(peer key.Public) bool {
	own := d.cfg.Interface.PrivateKey.Public()
	return bytes.Compare(own[:], peer[:]) > 0
}

// mutualAccepted handles a connection that peer ps, which this node dials
// too, dialed. It reports whether c was taken care of (attached or
// closed); false leaves it to the usual path. d.mu must not be held.
func (d *daemon) mutualAccepted(c *quicconn.Conn) bool {
	id := c.PeerKey()
	d.mu.Lock()
	ps := d.peers[id]
	if ps == nil || ps.cfg.Endpoint == "" || ps.pinned {
		d.mu.Unlock()
		return false
	}
	if !d.yieldsTo(id) {
		// This node dials: keep its own connection while it is up.
		own := ps.conn != nil && ps.conn.Dialed() && ps.conn.Err() == nil
		d.mu.Unlock()
		if own {
			_ = c.Close("both sides have an endpoint: the side with the lower key dials")
			return true
		}
		d.attach(c) // this node's dials do not get through: use the peer's
		return true
	}
	// The peer dials: stop dialing while its connection is up.
	if ps.stopDial != nil {
		ps.stopDial()
		ps.stopDial = nil
		d.log.Info("both sides have an endpoint: the peer has the lower key and dials; not dialing while its connection is up", "peer", ps.cfg.Name)
	}
	ps.yielded = true
	d.mu.Unlock()
	d.attach(c)
	d.wg.Go(func() {
		select {
		case <-c.Done():
		case <-d.ctx.Done():
			return
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.peers[id] != ps || !ps.yielded || (ps.conn != nil && ps.conn != c) || d.ctx.Err() != nil {
			return // removed, redialed by the peer, or stopping
		}
		ps.yielded = false
		d.startDialLocked(ps)
	})
	return true
}
