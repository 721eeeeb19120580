// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
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
// up runs on DialLoop's goroutine and should return promptly; the Conn
// stays owned by DialLoop, which closes it ("shutting down") when ctx is
// done. DialLoop blocks until ctx is done.
func (e *Endpoint) DialLoop(ctx context.Context, addr string, peer [32]byte, up func(*Conn)) {
	dial := func(ctx context.Context) (*Conn, error) { return e.DialVia(ctx, e.pickUplink(), addr, peer) } // uplink.go
	dialLoop(ctx, e.log.With("addr", addr, "peer", keyString(peer)), backoff{e.cfg.RedialMin, e.cfg.RedialMax}, dial, up)
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

func dialLoop[C liveConn](ctx context.Context, log *slog.Logger, b backoff, dial func(context.Context) (C, error), up func(C)) {
	failures := 0
	for {
		if ctx.Err() != nil {
			return
		}
		c, err := dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d := b.delay(failures, rand.Float64)
			log.Info("quicconn: dial failed", "attempt", failures, "retry_in", d.Round(time.Millisecond), "err", err)
			if !sleep(ctx, d) {
				return
			}
			continue
		}
		failures = 0
		up(c)
		select {
		case <-c.Done():
			d := b.delay(0, rand.Float64)
			log.Info("quicconn: connection ended, redialing", "err", c.Err(), "retry_in", d.Round(time.Millisecond))
			if !sleep(ctx, d) {
				return
			}
		case <-ctx.Done():
			_ = c.Close("shutting down")
			return
		}
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
