// SPDX-License-Identifier: MIT

package quicconn

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"

	"github.com/quic-go/quic-go"
)

// What a listener does against floods, from the cheapest to the dearest
// attack (TESTING.md S9, issue 15):
//
//   - Half-open handshakes (ClientHellos that never complete, from real or
//     spoofed addresses): every incoming connection counts as pending from
//     its first Initial until its handshake completes or it dies. Above
//     retryAbove pending handshakes, the UDP Transport answers an Initial
//     without a token with a Retry (quic-go's VerifySourceAddress), which
//     costs the listener no state: only a client that receives at its
//     address and answers gets a connection, one round trip later. A
//     legitimate site keeps connecting; a flood that does not read its
//     replies holds at most retryAbove connections, each for
//     unvalidatedIdle (2 s) instead of HandshakeTimeout once half of
//     retryAbove are pending.
//   - The accept path takes every connection out of quic-go's queue at
//     once (quic-go refuses new ones when its queue of 32 is full, which
//     locked new sites out while half-open connections held the slots)
//     and serves at most maxPendingIn at a time; past that, new ones are
//     closed at once and counted.
//   - Refusals (unknown keys, handshakes that never completed, refused
//     0-RTT) are counted, and logged one by one only up to refusalDetail
//     lines per refusalEvery; the rest goes into one summary line per
//     refusalEvery with the counts by reason (refusalLog).
//   - An authenticated peer that sends control messages faster than
//     ctlRate per second, beyond a burst of ctlBurst, is closed with
//     CodeProtocolError (readControl).

const (
	// retryAbove is the number of pending incoming handshakes above which
	// new clients must validate their address with a Retry first. Each
	// half-open handshake costs the hub about 150 KB (quic-go's connection
	// state, five goroutines); in TestHandshakeFlood (500 a second) the
	// hub's peak RSS was 2.05x its baseline with 32, 1.87x with 16. A
	// reconnect storm of more sites than this costs them one round trip
	// (and their 0-RTT datagrams), nothing more.
	retryAbove = 16
	// unvalidatedIdle is the handshake idle timeout of a connection from
	// an address not validated yet, created while more than retryAbove/2
	// handshakes are pending: a half-open one is dropped after it instead
	// of HandshakeTimeout. A client that answers a Retry is validated and
	// keeps HandshakeTimeout.
	unvalidatedIdle = 2 * time.Second
	// refusalEvery is the interval of the refusal summary line, and
	// refusalDetail how many refusals are logged one by one in it.
	refusalEvery  = 10 * time.Second
	refusalDetail = 5
	// ctlRate and ctlBurst bound the control messages a peer may send:
	// a token bucket of ctlBurst messages refilled at ctlRate per second.
	// A normal peer sends a few per second (heartbeats every 250 ms while
	// monitored, their replies, a preference now and then).
	ctlRate  = 200
	ctlBurst = 1000
)

// Reasons of refused or abandoned incoming handshakes, the keys of the
// summary line.
const (
	reasonUnknownKey       = "unknown_key"         // Authorize refused the client's key
	reasonHandshakeTimeout = "handshake_timeout"   // the handshake never completed (half-open)
	reasonNoControlStream  = "no_control_stream"   // handshake done, no control stream in time
	reasonHelloFailed      = "hello_failed"        // the hello exchange failed
	reasonKeyRefusedByPeer = "key_refused_by_peer" // the client pins another key for this node
	reasonBusy             = "busy"                // maxPendingIn connections were being served
	reasonEarlyRefused     = "early_data_refused"  // 0-RTT refused (replayed or old ticket)
)

// floodGuard is an Endpoint's state against floods: pending handshakes,
// the Retry decision, and the counters.
type floodGuard struct {
	pending    atomic.Int64  // incoming UDP connections whose handshake is not done
	retries    atomic.Uint64 // Initials answered with a Retry
	refusedKey atomic.Uint64 // reasonUnknownKey
	abandoned  atomic.Uint64 // reasonHandshakeTimeout
	busy       atomic.Uint64 // reasonBusy
	ctlFloods  atomic.Uint64 // connections closed for a control-message flood

	log refusalLog
}

// pendingHandshake is one incoming connection counted in floodGuard.pending
// until done is called (once).
type pendingHandshake struct {
	once sync.Once
	g    *floodGuard
}

func (p *pendingHandshake) done() {
	p.once.Do(func() { p.g.pending.Add(-1) })
}

// track counts a new incoming connection whose context is ctx as pending
// until its handshake completes (the returned done) or ctx ends.
func (g *floodGuard) track(ctx context.Context) *pendingHandshake {
	p := &pendingHandshake{g: g}
	g.pending.Add(1)
	context.AfterFunc(ctx, p.done)
	return p
}

// verifySourceAddress is the UDP Transport's VerifySourceAddress: a Retry
// for every Initial without a token while more than retryAbove handshakes
// are pending.
func (g *floodGuard) verifySourceAddress(net.Addr) bool {
	if g.pending.Load() <= retryAbove {
		return false
	}
	g.retries.Add(1)
	g.log.count("retries", false)
	return true
}

// configFor returns the listener's GetConfigForClient: conf, with the
// shorter handshake idle timeout for a client whose address is not
// validated while the listener is under pressure.
func (g *floodGuard) configFor(conf *quic.Config) func(*quic.ClientInfo) (*quic.Config, error) {
	short := conf.Clone()
	short.GetConfigForClient = nil
	short.HandshakeIdleTimeout = min(unvalidatedIdle, cmp.Or(conf.HandshakeIdleTimeout, unvalidatedIdle))
	normal := conf.Clone()
	normal.GetConfigForClient = nil
	return func(ci *quic.ClientInfo) (*quic.Config, error) {
		if !ci.AddrVerified && g.pending.Load() > retryAbove/2 {
			return short, nil
		}
		return normal, nil
	}
}

// refusalLog writes refusals one by one up to refusalDetail lines per
// refusalEvery, and folds the rest into one summary line per refusalEvery
// with the counts by reason, so that a flood of any size writes a few
// lines a minute. The summary is scheduled by the first refusal that was
// not written; there is no goroutine while nothing happens.
type refusalLog struct {
	log *slog.Logger
	// pending reports the handshakes pending now, for the summary.
	pendingNow func() int64

	mu      sync.Mutex        // mu guards the following fields.
	since   time.Time         // start of the current interval
	written int               // lines written one by one in it
	folded  map[string]uint64 // refusals not written one by one, by reason
	timer   *time.Timer       // the scheduled summary; nil if none
	closed  bool
}

// count records one event of reason and reports whether the caller may
// write it as a line of its own (detail: the caller wants to, budget
// permitting). Events not written are in the next summary.
func (r *refusalLog) count(reason string, detail bool) bool {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.since) >= refusalEvery {
		r.since, r.written = now, 0
	}
	if detail && r.written < refusalDetail {
		r.written++
		return true
	}
	if r.folded == nil {
		r.folded = make(map[string]uint64)
	}
	r.folded[reason]++
	if r.timer == nil && !r.closed {
		r.timer = time.AfterFunc(refusalEvery, r.summary)
	}
	return false
}

// summary writes the counts folded since the last one.
func (r *refusalLog) summary() {
	r.mu.Lock()
	folded := r.folded
	r.folded, r.timer = nil, nil
	r.mu.Unlock()
	if len(folded) == 0 {
		return
	}
	attrs := make([]any, 0, 2*len(folded)+4)
	attrs = append(attrs, "interval", refusalEvery)
	// A fixed order, so that lines compare across intervals.
	for _, k := range []string{"retries", reasonHandshakeTimeout, reasonUnknownKey, reasonBusy, reasonNoControlStream,
		reasonHelloFailed, reasonKeyRefusedByPeer, reasonEarlyRefused} {
		if n, ok := folded[k]; ok {
			attrs = append(attrs, k, n)
		}
	}
	if r.pendingNow != nil {
		attrs = append(attrs, "pending_handshakes", r.pendingNow())
	}
	r.log.Warn("quicconn: incoming handshakes refused or abandoned (summary; see godwit show)", attrs...)
}

// close stops the scheduled summary, writing it now.
func (r *refusalLog) close() {
	r.mu.Lock()
	r.closed = true
	t := r.timer
	r.mu.Unlock()
	if t != nil && t.Stop() {
		r.summary()
	}
}

// refused counts an incoming connection refused or abandoned for reason
// and writes msg with attrs as a line of its own if the budget allows
// (and, for a key, at most once a minute per key and reason).
func (e *Endpoint) refused(reason string, k *key.Public, level slog.Level, msg string, attrs ...any) {
	detail := k == nil || e.limitLog(*k, reason)
	if e.flood.log.count(reason, detail) {
		e.log.Log(context.Background(), level, msg, attrs...)
	}
}
