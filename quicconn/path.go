// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"
)

// defaultProbeTimeout bounds [Conn.ProbeUplink] when its context has no
// deadline: quic-go's Probe never returns on its own when no
// PATH_CHALLENGE can be sent, as when the old path died with a full
// congestion window (quic-go sends a client's PATH_CHALLENGE only when
// its congestion controller allows a packet).
const defaultProbeTimeout = 2 * time.Second

// errNoStandby is returned (wrapped) by [Conn.SwitchUplink] when the uplink
// has no validated standby path.
var errNoStandby = errors.New("quicconn: no validated standby path")

// errPinned is returned (wrapped) by [Conn.ProbeUplink] and
// [Conn.SwitchUplink] for a pinned connection (DialLoopOn).
var errPinned = errors.New("quicconn: connection is pinned to its uplink")

// PathInfo describes one network path of a [Conn]: the active one or a
// standby probed with [Conn.ProbeUplink].
type PathInfo struct {
	Uplink string // the uplink's interface name; "" for the Endpoint's own socket
	// Local is the socket's address (for an uplink the wildcard address,
	// the kernel picks the source); Remote the peer's address.
	Local, Remote netip.AddrPort
	Active        bool // carries the connection's packets now
	Validated     bool // the peer answered a PATH_CHALLENGE on it (always true when Active)
}

// Migration describes one switch of a connection's active path.
type Migration struct {
	From, To string    // uplink names; "" is the Endpoint's own socket
	At       time.Time // when SwitchUplink switched
	// Outage is the gap between the last packet (datagram or control
	// message) received before the switch and the first one received
	// after it. Measured is false when another switch came first.
	Outage   time.Duration
	Measured bool
}

// noteRx records that a datagram or control message arrived: it completes
// a pending migration's outage and clears a path suspicion. It is on the
// per-packet path: two atomic loads and a store unless something is
// pending.
func (c *Conn) noteRx() {
	now := int64(time.Since(c.start))
	c.rx.last.Store(now)
	if c.rx.suspect.Load() {
		c.rx.suspect.Store(false)
	}
	if c.rx.pending.Load() {
		c.finishMigration(now)
	}
}

func (c *Conn) finishMigration(now int64) {
	c.mob.mu.Lock()
	if !c.rx.pending.Load() {
		c.mob.mu.Unlock()
		return
	}
	c.rx.pending.Store(false)
	m := c.mob.cur
	m.Outage, m.Measured = time.Duration(now-c.mob.before), true
	c.mob.lastOutage = m.Outage
	c.mob.mu.Unlock()
	c.log.Debug("quicconn: first packet after migration", "from", m.From, "to", m.To, "outage", m.Outage.Round(time.Millisecond))
	if mob := c.mobility(); mob != nil {
		go mob.Migrated(c, m)
	}
}

// initPath records the uplink a dialed conn started on (nil: the main
// socket) and its addresses, before any switch can race with reading them.
func (c *Conn) initPath(u *uplink) {
	c.mob.mu.Lock()
	defer c.mob.mu.Unlock()
	if c.mob.released {
		return
	}
	if u != nil {
		c.useLocked(u)
	}
	c.mob.active = u
	c.captureLocked()
}

// captureLocked copies the active path's addresses from quic-go once,
// before the first switch.
func (c *Conn) captureLocked() {
	if c.mob.captured {
		return
	}
	c.mob.local, c.mob.remote = AddrPort(c.qc.LocalAddr()), AddrPort(c.qc.RemoteAddr())
	c.mob.captured = true
}

// useLocked makes c a user of u for the rest of its life.
func (c *Conn) useLocked(u *uplink) {
	if _, ok := c.mob.used[u]; ok {
		return
	}
	if c.mob.used == nil {
		c.mob.used = make(map[*uplink]struct{})
	}
	c.mob.used[u] = struct{}{}
	c.mob.ep.holdUplink(u)
}

// releaseUplinks gives back every uplink c used; watch calls it when the
// conn died.
func (c *Conn) releaseUplinks() {
	c.mob.mu.Lock()
	c.mob.released = true
	used := c.mob.used
	c.mob.used = nil
	c.rx.pending.Store(false)
	c.mob.mu.Unlock()
	for u := range used {
		c.mob.ep.releaseUplink(u)
	}
}

// pathAddrs returns the own copy of the active path's addresses, once a
// migration API captured them.
func (c *Conn) pathAddrs() (local, remote netip.AddrPort, ok bool) {
	c.mob.mu.Lock()
	defer c.mob.mu.Unlock()
	return c.mob.local, c.mob.remote, c.mob.captured
}

// localAddr and remoteAddr back Conn.LocalAddr and RemoteAddr.
func (c *Conn) localAddr() net.Addr {
	if l, _, ok := c.pathAddrs(); ok {
		return net.UDPAddrFromAddrPort(l)
	}
	return c.qc.LocalAddr()
}

func (c *Conn) remoteAddr() net.Addr {
	if _, r, ok := c.pathAddrs(); ok {
		return net.UDPAddrFromAddrPort(r)
	}
	return c.qc.RemoteAddr()
}

// Uplink returns the uplink of the active path: the name given to DialVia
// or to the latest successful SwitchUplink; "" for the Endpoint's own
// socket (and for accepted connections).
func (c *Conn) Uplink() string {
	c.mob.mu.Lock()
	defer c.mob.mu.Unlock()
	if c.mob.active == nil {
		return ""
	}
	return c.mob.active.name
}

// Paths returns the active path first, then the standby paths sorted by
// uplink name. Safe for concurrent use.
func (c *Conn) Paths() []PathInfo {
	c.mob.mu.Lock()
	defer c.mob.mu.Unlock()
	local, remote := c.mob.local, c.mob.remote
	if !c.mob.captured {
		local, remote = AddrPort(c.qc.LocalAddr()), AddrPort(c.qc.RemoteAddr())
	}
	act := PathInfo{Local: local, Remote: remote, Active: true, Validated: true}
	if c.mob.active != nil {
		act.Uplink = c.mob.active.name
	}
	out := make([]PathInfo, 1, 1+len(c.mob.standby))
	out[0] = act
	for name, sb := range c.mob.standby {
		out = append(out, PathInfo{Uplink: name, Local: AddrPort(sb.u.sock.LocalAddr()), Remote: remote, Validated: sb.validated})
	}
	slices.SortFunc(out[1:], func(a, b PathInfo) int { return strings.Compare(a.Uplink, b.Uplink) })
	return out
}

// Migrations returns how often SwitchUplink switched the active path and
// the outage of the latest migration whose outage was measured (0 before).
func (c *Conn) Migrations() (n uint64, lastOutage time.Duration) {
	c.mob.mu.Lock()
	defer c.mob.mu.Unlock()
	return c.mob.migrations, c.mob.lastOutage
}

// ProbeUplink validates a path over the uplink name (see
// [Endpoint.AddUplink]): quic-go's AddPath on the uplink's Transport, then
// PATH_CHALLENGEs until the peer answers or ctx is done (2 s when ctx has
// no deadline). A validated path is kept as the uplink's
// standby, replacing an older one; [Conn.SwitchUplink] moves to it. Probing
// the active uplink does nothing. It blocks for the probe; several probes
// on different uplinks may run at once. Only a dialing side can probe, and
// not on a pinned connection.
func (c *Conn) ProbeUplink(ctx context.Context, name string) error {
	if c.mob.pinned {
		return fmt.Errorf("quicconn: probe via %s: %w", name, errPinned)
	}
	ep := c.mob.ep
	if ep == nil {
		return fmt.Errorf("quicconn: probe via %s: connection not registered", name)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultProbeTimeout)
		defer cancel()
	}
	// Not during a 0-RTT handshake: the peer has issued no connection ID
	// for a new path yet.
	select {
	case <-c.qc.HandshakeComplete():
	case <-c.qc.Context().Done():
		return fmt.Errorf("quicconn: probe via %s: %w", name, net.ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("quicconn: probe via %s: handshake not complete: %w", name, context.Cause(ctx))
	}
	u, err := ep.acquireUplink(name)
	if err != nil {
		return fmt.Errorf("quicconn: probe via %s: %w", name, err)
	}
	defer ep.releaseUplink(u)
	c.mob.mu.Lock()
	retiring := c.mob.retiring[u]
	c.mob.mu.Unlock()
	if retiring != nil {
		select {
		case <-retiring:
		case <-ctx.Done():
			return fmt.Errorf("quicconn: probe via %s: old path not closed yet: %w", name, context.Cause(ctx))
		}
	}
	c.mob.mu.Lock()
	if c.mob.released {
		c.mob.mu.Unlock()
		return fmt.Errorf("quicconn: probe via %s: %w", name, net.ErrClosed)
	}
	if c.mob.active == u {
		c.mob.mu.Unlock()
		return nil
	}
	c.captureLocked()
	c.useLocked(u) // AddPath registers the conn on u.tr for good
	old := c.mob.standby[name]
	delete(c.mob.standby, name)
	c.mob.mu.Unlock()
	if old != nil {
		_ = old.p.Close()
	}

	p, err := c.qc.AddPath(u.tr)
	if err != nil {
		return fmt.Errorf("quicconn: probe via %s: %w", name, err)
	}
	sb := &standbyPath{u: u, p: p}
	c.mob.mu.Lock()
	if c.mob.standby == nil {
		c.mob.standby = make(map[string]*standbyPath)
	}
	old = c.mob.standby[name]
	c.mob.standby[name] = sb
	c.mob.mu.Unlock()
	if old != nil {
		_ = old.p.Close()
	}

	start := time.Now()
	err = p.Probe(ctx)
	c.mob.mu.Lock()
	if c.mob.standby[name] == sb {
		if err == nil {
			sb.validated = true
		} else {
			delete(c.mob.standby, name)
		}
	}
	c.mob.mu.Unlock()
	if err != nil {
		_ = p.Close()
		return fmt.Errorf("quicconn: probe via %s: %w", name, err)
	}
	c.log.Debug("quicconn: path validated", "uplink", name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// dropStandby closes the standby path on the uplink name, if any.
func (c *Conn) dropStandby(name string) {
	c.mob.mu.Lock()
	sb := c.mob.standby[name]
	delete(c.mob.standby, name)
	c.mob.mu.Unlock()
	if sb != nil {
		_ = sb.p.Close()
	}
}

// oldPathGrace is how long a path stays open after the connection
// switched away from it: quic-go's Switch takes effect in its run loop a
// moment after it returns (SwitchUplink's heartbeat wakes the loop at
// once). A probe of the old path's uplink waits for it.
const oldPathGrace = 250 * time.Millisecond

// SwitchUplink makes the validated standby path on the uplink name the
// active path (make-before-break: probe first with ProbeUplink). It counts
// a migration, whose outage is measured at the first packet received
// afterwards (see [Migration], Mobility.Migrated), and sends a heartbeat at
// once, so that even an idle connection gets an answer and the peer a
// packet from the new address. The old path is closed a second later; probe
// its uplink again to keep it as a standby. It fails when there is no
// validated standby on name, and on a pinned connection. Safe for
// concurrent use; it does not block on the network.
func (c *Conn) SwitchUplink(name string) error {
	if c.mob.pinned {
		return fmt.Errorf("quicconn: switch to %s: %w", name, errPinned)
	}
	c.mob.mu.Lock()
	if c.mob.released {
		c.mob.mu.Unlock()
		return fmt.Errorf("quicconn: switch to %s: %w", name, net.ErrClosed)
	}
	sb := c.mob.standby[name]
	if sb == nil || !sb.validated {
		c.mob.mu.Unlock()
		return fmt.Errorf("quicconn: switch to %s: %w", name, errNoStandby)
	}
	c.captureLocked()
	if err := sb.p.Switch(); err != nil {
		delete(c.mob.standby, name)
		c.mob.mu.Unlock()
		_ = sb.p.Close()
		return fmt.Errorf("quicconn: switch to %s: %w", name, err)
	}
	from := ""
	if c.mob.active != nil {
		from = c.mob.active.name
	}
	oldPath, oldUplink := c.mob.path, c.mob.active
	var retired chan struct{}
	if oldPath != nil && oldUplink != nil {
		retired = make(chan struct{})
		if c.mob.retiring == nil {
			c.mob.retiring = make(map[*uplink]chan struct{})
		}
		c.mob.retiring[oldUplink] = retired
	}
	c.mob.active, c.mob.path = sb.u, sb.p
	delete(c.mob.standby, name)
	c.mob.local = AddrPort(sb.u.sock.LocalAddr())
	c.mob.migrations++
	var superseded *Migration
	if c.rx.pending.Load() {
		m := c.mob.cur // its outage goes on: keep its start
		superseded = &m
	} else {
		c.mob.before = c.rx.last.Load()
	}
	c.mob.cur = Migration{From: from, To: name, At: time.Now()}
	c.rx.pending.Store(true)
	c.rx.suspect.Store(false)
	c.mob.mu.Unlock()

	c.log.Debug("quicconn: switched path", "from", from, "to", name)
	if mob := c.mobility(); superseded != nil && mob != nil {
		go mob.Migrated(c, *superseded)
	}
	if oldPath != nil {
		time.AfterFunc(oldPathGrace, func() {
			c.mob.mu.Lock()
			active := c.mob.path == oldPath
			c.mob.mu.Unlock()
			if !active {
				_ = oldPath.Close()
			}
			if retired != nil {
				c.mob.mu.Lock()
				if c.mob.retiring[oldUplink] == retired {
					delete(c.mob.retiring, oldUplink)
				}
				c.mob.mu.Unlock()
				close(retired)
			}
		})
	}
	// Seq 0 is never one of the heartbeat loop's, so the reply only counts
	// as a sign of life, not as an RTT sample.
	if err := c.writeMessage(ctlmsg.Heartbeat{SentUnixNano: time.Now().UnixNano()}); err != nil {
		c.log.Debug("quicconn: heartbeat after switch", "err", err)
	}
	return nil
}

// Abandon closes c at once because its path is gone (its uplink went
// away, or it went silent, and there is no validated standby to switch
// to): unlike Close it sends no Goodbye and does not wait for the peer,
// whose answer could not arrive anyway. The CONNECTION_CLOSE goes out on
// the old path and is probably lost; the peer replaces the connection
// when the new one arrives. A DialLoop that owns c dials again at once
// (on the uplink Mobility.PickUplink names, with 0-RTT when it can) instead
// of after RedialMin. It returns once c is done; abandoning a dead
// connection does nothing. Safe for concurrent use.
func (c *Conn) Abandon(reason string) {
	select {
	case <-c.life.done:
		return
	default:
	}
	c.mob.gone.Store(true)
	c.closeLocal(ctlmsg.CodeNoError, reason)
	<-c.life.done
}

// abandoned reports whether Abandon closed c (DialLoop's abandoner).
func (c *Conn) abandoned() bool { return c.mob.gone.Load() }

// armPathCheck runs after every heartbeat sent at sent: if nothing at all
// arrives within 3 smoothed RTTs plus Config.PathDeadFloor, the active path
// is suspect and Mobility.PathDead is called, once per suspicion. A pinned
// conn is never suspect: it cannot move, its monitor (MonitorPath) judges it.
func (c *Conn) armPathCheck(sent time.Time) {
	mob := c.mobility()
	if mob == nil || c.mob.pinned {
		return
	}
	sentAt := int64(sent.Sub(c.start))
	d := 3*c.qc.ConnectionStats().SmoothedRTT + c.cfg.PathDeadFloor
	time.AfterFunc(d, func() {
		if c.qc.Context().Err() != nil || c.rx.last.Load() >= sentAt {
			return
		}
		if c.rx.suspect.Swap(true) {
			return
		}
		silent := time.Since(c.start) - time.Duration(c.rx.last.Load())
		c.log.Info("quicconn: path suspect: nothing received", "uplink", c.Uplink(), "silent", silent.Round(time.Millisecond))
		mob.PathDead(c)
	})
}
