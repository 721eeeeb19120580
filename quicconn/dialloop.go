// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// DialLoop keeps one connection to the peer at addr up until ctx is done.
// It dials (re-resolving host names every attempt), calls up with each
// established Conn, waits until that Conn is done, and dials again. Failed
// attempts back off exponentially from RedialMin to RedialMax with +-50 %
// jitter (never above RedialMax); each failure is logged once at Info with
// the attempt count and the next delay. A successful handshake resets the
// backoff, but even then the next dial waits a jittered RedialMin, so a
// peer that accepts and at once closes cannot make the loop spin.
//
// A connection that died of a stateless reset (the peer restarted and
// answered a packet of the old connection) is redialed at once, without
// the RedialMin wait (with 0-RTT when a ticket is at hand); failures after
// that back off as usual, and a second reset within RedialMax waits again,
// so a peer that keeps resetting cannot make the loop spin. Every redial
// is counted (EndpointStats.Redials) and logged once at Info with the
// reason the old connection ended, whether 0-RTT was used, and the
// outage: the time from the old connection's death to the first datagram
// received on the new one (logged when that datagram arrives, or without
// an outage when the new connection ends first).
//
// A connection handed out before its handshake completed (0-RTT, see
// [Endpoint.Dial]) that ends before its hello exchange completed counts
// as a failed attempt, not as a connection: the peer refused the
// handshake (a revoked key with a ticket from before) or never answered,
// and the loop backs off as after any failed dial instead of redialing
// every RedialMin.
//
// A connection ended with [Conn.Abandon] is redialed at once as well. With
// Mobility.PickUplink, every attempt dials on the uplink it names; while it
// reports none usable the loop waits (logged once) for
// [Endpoint.UplinksChanged], which also cuts short the backoff after a
// failed attempt.
//
// up runs on DialLoop's goroutine and should return promptly; the Conn
// stays owned by DialLoop, which closes it ("shutting down") when ctx is
// done. DialLoop blocks until ctx is done.
func (e *Endpoint) DialLoop(ctx context.Context, addr string, peer key.Public, up func(*Conn)) {
	dial := func(ctx context.Context) (*Conn, error) {
		name, err := e.pickUplink() // uplink.go
		if err != nil {
			return nil, err
		}
		return e.DialVia(ctx, name, addr, peer)
	}
	dialLoop(ctx, e.log.With("addr", addr, "peer", keyString(peer)), backoff{e.cfg.RedialMin, e.cfg.RedialMax}, &e.zc, e.uplinkWake, e.noteDials(peer, dial), up)
}

// dialError is the latest failed dial to a peer (LastDialError).
type dialError struct {
	err string
	at  time.Time
}

// noteDials wraps dial so that its failures (other than waiting for an
// uplink) are kept as the peer's latest dial error, and a success clears
// it.
func (e *Endpoint) noteDials(peer key.Public, dial func(context.Context) (*Conn, error)) func(context.Context) (*Conn, error) {
	return func(ctx context.Context) (*Conn, error) {
		c, err := dial(ctx)
		switch {
		case err == nil:
			e.dialErrs.Delete(peer)
		case ctx.Err() == nil && !errors.Is(err, ErrNoUplink):
			e.dialErrs.Store(peer, dialError{err: err.Error(), at: time.Now()})
		}
		return c, err
	}
}

// LastDialError returns why the latest dial to peer failed and when, or
// "" once a dial to it succeeded (or none failed). `godwit show` shows it
// for a peer that is not connected: a wrong key, a refused handshake, no
// answer.
func (e *Endpoint) LastDialError(peer key.Public) (string, time.Time) {
	v, ok := e.dialErrs.Load(peer)
	if !ok {
		return "", time.Time{}
	}
	d := v.(dialError)
	return d.err, d.at
}

// DialLoopOn is [Endpoint.DialLoop] on one uplink: every attempt dials via
// the Transport of uplink (see AddUplink; "" is the Endpoint's own
// socket), whatever Mobility.PickUplink says. It is how a site keeps one
// connection per uplink to a peer (multipath): one DialLoopOn per usable
// uplink. While uplink is not added, or was removed, the loop waits
// (logged once) without dialing until AddUplink or UplinksChanged (or
// RedialMax passed), as DialLoop waits for a usable uplink. Backoff,
// redials, counters and ownership of the Conn are DialLoop's.
//
// Its connections are pinned ([Conn.Pinned]): they belong to their
// uplink and never move. Mobility.PathDead is never called for them,
// ProbeUplink and SwitchUplink refuse them, and the caller must not give
// them to a mobility policy (mobility.Policy.Add); their health is
// [Conn.MonitorPath]'s business. A pinned conn that dies (its uplink went
// away, or [Conn.Abandon]) is redialed on the same uplink; to stop using
// the uplink, cancel ctx, which closes the conn.
func (e *Endpoint) DialLoopOn(ctx context.Context, uplink, addr string, peer key.Public, up func(*Conn)) {
	dial := func(ctx context.Context) (*Conn, error) {
		c, err := e.dialVia(ctx, uplink, addr, peer, true)
		if errors.Is(err, errUnknownUplink) {
			return nil, fmt.Errorf("%w: %s is not added", ErrNoUplink, uplink)
		}
		return c, err
	}
	log := e.log.With("addr", addr, "peer", keyString(peer), "uplink", uplink)
	dialLoop(ctx, log, backoff{e.cfg.RedialMin, e.cfg.RedialMax}, &e.zc, e.uplinkWake, e.noteDials(peer, dial), up)
}

// Pinned reports whether c belongs to its uplink: it was dialed by
// [Endpoint.DialLoopOn] and never moves (see there).
func (c *Conn) Pinned() bool { return c.mob.pinned }

// Mobility is a site's uplink policy as the Endpoint's dialed connections
// see it; package quicconn/mobility implements it. Its methods must be safe
// for concurrent use.
type Mobility interface {
	// PickUplink is asked before every DialLoop attempt which uplink (see
	// Endpoint.AddUplink) to dial on; "" means the Endpoint's own socket.
	// ok false (no uplink is usable), or a name that is not an added
	// uplink, makes DialLoop wait without dialing until
	// Endpoint.UplinksChanged is called (or RedialMax passed). It is
	// called on DialLoop's goroutine and must be fast.
	PickUplink() (name string, ok bool)
	// PathDead is called when a connection's active path is suspect:
	// nothing at all (datagram or control message) arrived for 3 smoothed
	// RTTs plus Config.PathDeadFloor after a heartbeat was sent. It is
	// never called for a pinned connection (DialLoopOn). It is
	// called once per suspicion (again only after a packet arrived or the
	// path was switched), on a timer goroutine, and may switch to a
	// standby or close the connection. If nothing happens, the connection
	// is still closed after Config.DeadAfter.
	PathDead(c *Conn)
	// Migrated is called on its own goroutine for each migration
	// (Conn.SwitchUplink) once its outage is measured at the first packet
	// received afterwards, or with Measured false when another migration
	// followed first. It is not called when the connection dies before
	// anything arrives.
	Migrated(c *Conn, m Migration)
}

// SetMobility makes m the policy of every connection of e, or removes it
// (nil). Without one, DialLoop dials on the Endpoint's own socket and
// silent paths are left to the heartbeat timeout. Set it before the first
// dial.
func (e *Endpoint) SetMobility(m Mobility) {
	if m == nil {
		e.mob.Store(nil)
		return
	}
	e.mob.Store(&m)
}

// mobility returns e's Mobility, or nil.
func (e *Endpoint) mobility() Mobility {
	if m := e.mob.Load(); m != nil {
		return *m
	}
	return nil
}

// mobility returns the Mobility of c's Endpoint, or nil.
func (c *Conn) mobility() Mobility {
	if c.mob.ep == nil {
		return nil
	}
	return c.mob.ep.mobility()
}

// abandoner is implemented by *Conn: abandoned reports that Abandon ended
// it, so the loop redials at once.
type abandoner interface {
	abandoned() bool
}

// firstDatagrammer is implemented by *Conn: its channel is closed when the
// first datagram was received. Fakes in tests may leave it out.
type firstDatagrammer interface {
	firstDatagram() <-chan struct{}
}

// helloer is implemented by *Conn: its channel is closed once the hello
// exchange completed, at once for a Conn that Dial handed out after it.
// Fakes in tests may leave it out (then every conn counts as complete).
type helloer interface {
	HelloDone() <-chan struct{}
}

// zeroRTTer is implemented by *Conn, for the redial log line.
type zeroRTTer interface {
	zeroRTTString() string
}

// liveConn is what dialLoop needs of a connection; tests fake it.
type liveConn interface {
	Done() <-chan struct{}
	Err() error
	Close(reason string) error
}

// backoff computes redial delays.
type backoff struct {
	min, max time.Duration
}

// delay returns the wait before the attempt that follows failures
// consecutive failures (0 after a connection ended): min*2^failures capped
// at max, times a random factor in [0.5, 1.5), capped at max again.
func (b backoff) delay(failures int, rnd func() float64) time.Duration {
	d := b.min
	for i := 0; i < failures && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	return min(time.Duration(float64(d)*(0.5+rnd())), b.max)
}

// dialLoop is DialLoop with the dialing, the counters (rs, may be nil)
// and the uplink wake-up (wake, may be nil) replaceable for tests.
func dialLoop[C liveConn](ctx context.Context, log *slog.Logger, b backoff, rs *redialStats, wake func() <-chan struct{}, dial func(context.Context) (C, error), up func(C)) {
	if rs == nil {
		rs = new(redialStats)
	}
	failures := 0
	waiting := false // logged "no usable uplink" since the last attempt
	var (
		died      time.Time // when the previous conn ended; zero before the first
		reason    string    // why it ended
		lastReset time.Time // when a conn last ended by stateless reset
	)
	for {
		if ctx.Err() != nil {
			return
		}
		var woken <-chan struct{} // taken before dial: no change is missed
		if wake != nil {
			woken = wake()
		}
		c, err := dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, ErrNoUplink) {
				if !waiting {
					log.Info("quicconn: no usable uplink; waiting for one", "err", err)
					waiting = true
				}
				if !sleepWake(ctx, b.max, woken) {
					return
				}
				continue
			}
			failures++
			d := b.delay(failures, rand.Float64)
			log.Info("quicconn: dial failed", "attempt", failures, "retry_in", d.Round(time.Millisecond), "err", err)
			if !sleepWake(ctx, d, woken) {
				return
			}
			continue
		}
		waiting = false
		var helloed <-chan struct{} // nil once the hello exchange completed
		if h, ok := any(c).(helloer); ok && !isClosed(h.HelloDone()) {
			helloed = h.HelloDone()
		} else {
			failures = 0
		}
		up(c)
		redial := !died.IsZero()
		var first <-chan struct{} // nil (never ready) when not measurable
		if f, ok := any(c).(firstDatagrammer); ok && redial {
			first = f.firstDatagram()
		}
		if redial {
			rs.redials.Add(1)
			if reason == "stateless reset" {
				rs.redialsAfterReset.Add(1)
			}
		}
	wait:
		for {
			select {
			case <-first:
				first = nil
				outage := time.Since(died)
				rs.lastOutage.Store(int64(outage))
				log.Info("quicconn: redialed", "reason", reason, "outage", outage.Round(time.Millisecond), "zero_rtt", zeroRTTOf(c))
				redial = false
			case <-helloed:
				helloed = nil
				failures = 0
			case <-c.Done():
				a, gone := any(c).(abandoner)
				gone = gone && a.abandoned()
				if helloed != nil && !isClosed(helloed) && !gone {
					// Handed out early, and refused or unanswered: a
					// failed attempt, backed off as one. (An abandoned
					// conn is redialed at once below, as always.)
					failures++
					d := b.delay(failures, rand.Float64)
					log.Info("quicconn: dial failed", "attempt", failures, "retry_in", d.Round(time.Millisecond), "err", c.Err(), "zero_rtt", zeroRTTOf(c))
					if !sleep(ctx, d) {
						return
					}
					break wait
				}
				if redial {
					log.Info("quicconn: redialed, but the connection ended before any datagram", "reason", reason, "zero_rtt", zeroRTTOf(c))
				}
				died, reason = time.Now(), redialReason(c.Err())
				d := b.delay(0, rand.Float64)
				if reason == "stateless reset" && (lastReset.IsZero() || died.Sub(lastReset) > b.max) {
					d = 0 // the peer restarted: it is there, redial at once
				}
				if reason == "stateless reset" {
					lastReset = died
				}
				if gone {
					d = 0 // its path is gone: the mobility policy wants a new one now
				}
				log.Info("quicconn: connection ended, redialing", "reason", reason, "err", c.Err(), "retry_in", d.Round(time.Millisecond))
				if !sleep(ctx, d) {
					return
				}
				break wait
			case <-ctx.Done():
				_ = c.Close("shutting down")
				return
			}
		}
	}
}

// zeroRTTOf returns c's 0-RTT state for logs, or "" for a fake.
func zeroRTTOf(c any) string {
	if z, ok := c.(zeroRTTer); ok {
		return z.zeroRTTString()
	}
	return ""
}

// sleepWake waits d, until woken is closed (a nil woken never is) or until
// ctx is done; it reports whether ctx is still live.
func sleepWake(ctx context.Context, d time.Duration, woken <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-woken:
		return true
	case <-ctx.Done():
		return false
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	return sleepWake(ctx, d, nil)
}
