// SPDX-License-Identifier: MIT

// Package fallback decides when a site reaches a peer over TCP instead of
// UDP (issue 12): happy eyeballs between the peer's UDP connections and
// one TCP path (package tcppath), all members of the peer's connection
// set.
//
// The rules, for one peer:
//
//   - At the start, the UDP dial loops get Config.FirstWait (1 s) to bring
//     up a usable UDP connection. If none is usable by then, the TCP path
//     is dialed: "udp blocked: no answer in 1s".
//   - Once UDP was usable, the TCP path is dialed at once when no UDP
//     connection is usable any more (every one judged silent or down by
//     its path health monitor, or gone), with the reason the caller gives.
//   - While on TCP, the UDP dial loops keep retrying on their own backoff;
//     when a UDP connection has been usable for Config.ReturnAfter (3 s)
//     without a break, the TCP path is closed: "udp back". The set's
//     failover has already moved the traffic to the UDP connection (it
//     ranks UDP first), so the move back costs no outage.
//
// Each change is logged once at Info, and counted. The policy owns only
// the decision and the TCP dial loop's lifetime: the caller says what
// "usable" is ([Fallback.SetUDP]) and what dialing TCP is (Run's dialTCP).
package fallback

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of [Config].
const (
	DefaultFirstWait   = time.Second
	DefaultReturnAfter = 3 * time.Second
)

// Config configures a [Fallback]. The zero value of every field is a
// documented default.
type Config struct {
	// Peer names the peer in log lines.
	Peer string
	// Via says how the TCP path goes, for log lines and Status: "tcp"
	// or "tcp via proxy". Empty means "tcp".
	Via string
	// FirstWait is how long the UDP dial loops get at the start before
	// the TCP path is dialed. Zero means DefaultFirstWait (1 s).
	FirstWait time.Duration
	// ReturnAfter is how long a UDP connection must be usable without a
	// break before the TCP path is closed. Zero means DefaultReturnAfter
	// (3 s).
	ReturnAfter time.Duration
	// Logger receives one Info line per change. Nil discards.
	Logger *slog.Logger
	// Changed, if not nil, is called after every change, with true for a
	// move to TCP and false for a move back to UDP, on Run's goroutine.
	Changed func(onTCP bool)
}

// Status is a Fallback's state, for `godwit show`.
type Status struct {
	// OnTCP reports that the TCP path is wanted (its dial loop runs).
	OnTCP bool
	// Reason is why the latest change happened ("udp blocked: no answer
	// in 1s; tcp via proxy", "udp back: usable for 3s; tcp closed"); ""
	// before the first change.
	Reason string
	// Since is when the latest change happened; zero before the first.
	Since time.Time
	// Fallbacks counts the moves to TCP, Returns the moves back to UDP.
	Fallbacks, Returns uint64
}

// Fallback is the TCP fallback policy of one peer. Create it with New,
// run it with Run, feed it with SetUDP. Its methods are safe for
// concurrent use.
type Fallback struct {
	cfg Config
	log *slog.Logger

	kick chan struct{} // cap 1: SetUDP changed udp

	mu     sync.Mutex // mu guards the following fields.
	udp    bool       // a UDP connection is usable
	udpWhy string     // why not, for the log line
	status Status

	fallbacks, returns atomic.Uint64
}

// New returns the policy; nothing happens until Run.
func New(cfg Config) *Fallback {
	if cfg.FirstWait <= 0 {
		cfg.FirstWait = DefaultFirstWait
	}
	if cfg.ReturnAfter <= 0 {
		cfg.ReturnAfter = DefaultReturnAfter
	}
	if cfg.Via == "" {
		cfg.Via = "tcp"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fallback{cfg: cfg, log: log.With("peer", cfg.Peer), kick: make(chan struct{}, 1)}
}

// SetUDP tells the policy whether any UDP connection to the peer is usable
// now; why says why not (for the log line when it makes the policy fall
// back). Call it whenever that may have changed: repeating the same
// answer does nothing. It does not block.
func (f *Fallback) SetUDP(usable bool, why string) {
	f.mu.Lock()
	f.udp, f.udpWhy = usable, why
	f.mu.Unlock()
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Status returns the current state.
func (f *Fallback) Status() Status {
	f.mu.Lock()
	st := f.status
	f.mu.Unlock()
	st.Fallbacks, st.Returns = f.fallbacks.Load(), f.returns.Load()
	return st
}

// udpNow returns the latest SetUDP.
func (f *Fallback) udpNow() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.udp, f.udpWhy
}

// change records and logs a change.
func (f *Fallback) change(onTCP bool, reason string) {
	f.mu.Lock()
	f.status.OnTCP, f.status.Reason, f.status.Since = onTCP, reason, time.Now()
	f.mu.Unlock()
	if onTCP {
		f.fallbacks.Add(1)
	} else {
		f.returns.Add(1)
	}
	f.log.Info(reason)
	if f.cfg.Changed != nil {
		f.cfg.Changed(onTCP)
	}
}

// Run applies the policy until ctx is done: it calls dialTCP on a
// goroutine of its own, with a context it cancels to close the TCP path,
// whenever the rules above want the TCP path. dialTCP must return soon
// after its context is done (quicconn's DialLoopTCP does). Run returns
// once ctx is done and dialTCP has returned.
func (f *Fallback) Run(ctx context.Context, dialTCP func(context.Context)) {
	var (
		tcpCancel context.CancelFunc // non-nil while on TCP
		tcpDone   chan struct{}
		back      *time.Timer // running while on TCP with UDP usable
		backC     <-chan time.Time
		seenUDP   bool // UDP was usable since the start or the latest return
	)
	first := time.NewTimer(f.cfg.FirstWait)
	defer first.Stop()
	firstC := first.C
	startTCP := func(reason string) {
		tctx, cancel := context.WithCancel(ctx)
		tcpCancel, tcpDone = cancel, make(chan struct{})
		done := tcpDone
		go func() {
			defer close(done)
			dialTCP(tctx)
		}()
		f.change(true, reason+"; "+f.cfg.Via)
	}
	stopBack := func() {
		if back != nil {
			back.Stop()
			back, backC = nil, nil
		}
	}
	defer func() {
		stopBack()
		if tcpCancel != nil {
			tcpCancel()
			<-tcpDone
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-firstC:
			firstC = nil
			if udp, _ := f.udpNow(); !udp && tcpCancel == nil {
				startTCP(fmt.Sprintf("udp blocked: no answer in %v", f.cfg.FirstWait))
			}
		case <-f.kick:
			udp, why := f.udpNow()
			switch {
			case tcpCancel == nil && udp:
				seenUDP = true
				if firstC != nil {
					first.Stop()
					firstC = nil
				}
			case tcpCancel == nil && !udp && seenUDP:
				seenUDP = false
				startTCP("udp down: " + why)
			case tcpCancel != nil && udp && back == nil:
				back = time.NewTimer(f.cfg.ReturnAfter)
				backC = back.C
			case tcpCancel != nil && !udp:
				stopBack()
			}
		case <-backC:
			back, backC = nil, nil
			if udp, _ := f.udpNow(); !udp {
				continue
			}
			tcpCancel()
			<-tcpDone
			tcpCancel, tcpDone = nil, nil
			seenUDP = true
			f.change(false, fmt.Sprintf("udp back: usable for %v; %s closed", f.cfg.ReturnAfter, f.cfg.Via))
		}
	}
}
