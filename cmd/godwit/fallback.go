// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"net/url"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/quicconn/fallback"
)

// A peer with endpoint_tcp is always dialed as a connection set (issue
// 12): its UDP connections (one per usable uplink on a site with uplinks,
// else one on the wildcard socket) and, while the fallback policy
// (quicconn/fallback) wants it, one TCP path. The set's schedule ranks
// every UDP connection above the TCP path (tcpRank), so failover carries
// on TCP only while no UDP connection is usable, and moves back as soon as
// one is, before the policy closes the TCP path. This is also why such a
// peer is never "off" (config refuses multipath = "off" with endpoint_tcp):
// a single connection cannot be both.

// tcpRank is the rank of a TCP path in its peer's set: after every uplink.
const tcpRank = 1 << 16

// startFallbackDialLocked starts dialing ps, which has endpoint_tcp: the
// UDP connections and the fallback policy that runs the TCP path. d.mu
// must be held.
func (d *daemon) startFallbackDialLocked(ps *peerState) {
	id, name := ps.cfg.PublicKey, ps.cfg.Name
	endpoint, tcpAddr := ps.cfg.Endpoint, ps.cfg.EndpointTCP
	var proxy *url.URL
	via := "tcp"
	if ps.cfg.TCPProxy != "" {
		var err error
		if proxy, err = url.Parse(ps.cfg.TCPProxy); err != nil { // config validated it
			d.log.Error("tcp_proxy does not parse; dialing endpoint_tcp directly", "peer", name, "err", err)
			proxy = nil
		} else {
			via = "tcp via proxy"
		}
	}
	fb := fallback.New(fallback.Config{
		Peer:   name,
		Via:    via,
		Logger: d.log.With("part", "fallback"),
		Changed: func(onTCP bool) {
			if onTCP {
				d.tcpFallbacks.Add(1)
			} else {
				d.udpReturns.Add(1)
			}
			d.notifyChanged()
		},
	})
	ctx, cancel := context.WithCancel(d.ctx)
	if d.mob != nil {
		d.mob.AddMultipathPeer(id, name, endpoint, d.attachPath)
	} else {
		d.wg.Go(func() { d.ep.DialLoopOn(ctx, "", endpoint, id, d.attachPath) })
	}
	d.wg.Go(func() {
		fb.Run(ctx, func(ctx context.Context) { d.ep.DialLoopTCP(ctx, tcpAddr, id, proxy, d.attachPath) })
	})
	ps.fallback = fb
	ps.stopDial = func() {
		cancel()
		if d.mob != nil {
			d.mob.RemoveMultipathPeer(id)
		}
	}
	ps.pinned = true
}

// fallbackUpdate tells peer id's fallback policy, if it has one, whether
// a UDP connection of its set is usable.
func (d *daemon) fallbackUpdate(id key.Public) {
	d.mu.Lock()
	ps := d.peers[id]
	if ps == nil || ps.fallback == nil {
		d.mu.Unlock()
		return
	}
	fb := ps.fallback
	usable, why := udpUsableLocked(ps)
	d.mu.Unlock()
	fb.SetUDP(usable, why)
}

// udpUsableLocked reports whether a UDP connection of ps's set is usable:
// its hello exchange completed (a 0-RTT connection that got no answer yet
// is not) and its path health monitor says up or lossy. Otherwise it says
// why not. d.mu must be held.
func udpUsableLocked(ps *peerState) (bool, string) {
	n := 0
	for c := range ps.paths {
		if c.IsTCP() {
			continue
		}
		n++
		if !helloDone(c) {
			continue
		}
		switch c.PathHealth().State {
		case quicconn.HealthUp, quicconn.HealthLossy, quicconn.HealthUnmonitored:
			return true, ""
		}
	}
	if n == 0 {
		return false, "no udp connection"
	}
	return false, "every udp path silent"
}
