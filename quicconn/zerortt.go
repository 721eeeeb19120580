// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"
	"github.com/godwit-vpn/godwit/quicconn/internal/state"

	"github.com/quic-go/quic-go"
)

// 0-RTT and replay.
//
// crypto/tls has no anti-replay for early data and quic-go adds none, so
// the listener makes its 0-RTT-capable session tickets single-use: when
// it issues one (tls.Config.WrapSession) it gives it a random ID, writes
// the ID, the Endpoint's boot ID and the client's key into the ticket
// (tls.SessionState.Extra, encrypted with the ticket keys), and books the
// ID as issued to that key (state.TicketBook, which also bounds its
// memory). When a client presents the ticket (UnwrapSession) the ID is
// redeemed: the first use of a booked ID may carry 0-RTT data; any other
// (a replayed first flight, a client reusing an old ticket, a ticket
// issued before this Endpoint started, whose ID the restarted process
// never booked) gets tls.SessionState.EarlyData = false, which makes
// crypto/tls reject the early data. The session itself still resumes, so
// such a reconnect costs one round trip more, not a full handshake: in
// particular the first reconnect of every site after a hub restart is
// 1-RTT (the ticket keys persist, the booked IDs do not).
//
// An incoming connection that is granted 0-RTT is handed to Accept before
// its handshake completes, so the datagrams of the client's first flight
// reach the tunnel at once. Its peer key then comes from the ticket
// (written there when the ticket was issued, after the key was verified,
// and checked against Config.Authorize again at unwrap); the TLS binder
// check proves the client holds the ticket's secret before any early data
// is decrypted. Control messages are read only after the handshake
// completed, on both sides.

// extEarlyData is the TLS early_data extension's number.
const extEarlyData = 42

// earlyInfo is what the TLS callbacks learn about one incoming connection.
// Transport.ConnContext puts a fresh one into every incoming connection's
// context, which quic-go passes on to crypto/tls (ClientHelloInfo) and to
// Conn.Context.
//
// earlyInfoKey is the package's only context key, and it has to be one:
// the TLS callbacks of an incoming connection (GetConfigForClient,
// UnwrapSession) and the quic.Conn that EarlyListener.Accept returns later
// share nothing else that quic-go lets a caller set or see before the
// handshake; the remote address could be shared by several connections.
type earlyInfo struct {
	mu        sync.Mutex // mu guards the following fields.
	attempted bool       // the ClientHello offered early data
	granted   bool       // the ticket check allowed 0-RTT
	peer      key.Public // the ticket's peer key; zero without Godwit's data
	refused   string     // why 0-RTT was refused; "" if not
	// hs counts the connection as a pending handshake (flood.go); nil on
	// the TCP listener, which has limits of its own. Never changes.
	hs *pendingHandshake
}

type earlyInfoKey struct{}

func (ei *earlyInfo) get() (granted bool, peer key.Public, refused string, attempted bool) {
	ei.mu.Lock()
	defer ei.mu.Unlock()
	return ei.granted, ei.peer, ei.refused, ei.attempted
}

// connContext is the TCP Transport's ConnContext.
func (e *Endpoint) connContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	return context.WithValue(ctx, earlyInfoKey{}, &earlyInfo{}), nil
}

// udpConnContext is the UDP Transport's ConnContext: connContext, and the
// connection counts as a pending handshake (flood.go).
func (e *Endpoint) udpConnContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	return context.WithValue(ctx, earlyInfoKey{}, &earlyInfo{hs: e.flood.track(ctx)}), nil
}

// zeroRTTCounters are the Endpoint's 0-RTT and redial counters.
type zeroRTTCounters struct {
	attempted, accepted, rejected         atomic.Uint64 // dialed conns
	earlyAccepted                         atomic.Uint64 // incoming conns
	refusedReplay, refusedRestart, refOth atomic.Uint64 // incoming 0-RTT refused, by reason
	redials, redialsAfterReset            atomic.Uint64
	lastOutage                            atomic.Int64 // nanoseconds
}

// Reasons for refusing a client's 0-RTT, in logs.
const (
	refusedReplay  = "ticket already used (a replay, or a client reusing a ticket)"
	refusedRestart = "ticket issued before this process started"
	refusedOther   = "ticket carries no godwit data"
)

// setupTickets makes tc, the listener's TLS config, issue single-use
// 0-RTT tickets with the persistent ticket keys. It must be called last,
// as GetConfigForClient clones tc.
func (e *Endpoint) setupTickets(tc *tls.Config) {
	tc.SetSessionTicketKeys(e.state.TicketKeys)
	tc.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		if key, err := peerKeyOf(cs); err == nil && ss.EarlyData {
			t, err := e.tickets.Issue(key)
			if err != nil {
				return nil, err
			}
			ss.Extra = append(ss.Extra, t.Append(nil))
		}
		return tc.EncryptTicket(cs, ss)
	}
	tc.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		ei, _ := hi.Context().Value(earlyInfoKey{}).(*earlyInfo)
		if ei == nil {
			ei = &earlyInfo{} // no ConnContext: still single-use, just not handed out early
		}
		ei.mu.Lock()
		ei.attempted = slices.Contains(hi.Extensions, extEarlyData)
		ei.mu.Unlock()
		c := tc.Clone()
		c.GetConfigForClient = nil
		c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
			ss, err := tc.DecryptTicket(identity, cs)
			if err != nil || ss == nil {
				return ss, err
			}
			return e.checkTicket(ss, ei), nil
		}
		return c, nil
	}
}

// checkTicket decides whether a decrypted ticket may carry 0-RTT data; a
// nil result makes crypto/tls ignore the ticket (full handshake).
func (e *Endpoint) checkTicket(ss *tls.SessionState, ei *earlyInfo) *tls.SessionState {
	t, ok := state.FindTicket(ss.Extra)
	if ok && (e.cfg.Authorize == nil || !e.cfg.Authorize(t.Peer)) {
		return nil // a removed peer: the full handshake refuses it
	}
	if !ss.EarlyData {
		return ss
	}
	reason := ""
	if !ok {
		reason = refusedOther
	} else if err := e.tickets.Redeem(t); errors.Is(err, state.ErrTicketRestart) {
		reason = refusedRestart
	} else if err != nil {
		reason = refusedReplay
	}
	ei.mu.Lock()
	defer ei.mu.Unlock()
	ei.peer = t.Peer
	if reason != "" {
		ss.EarlyData = false
		ei.refused = reason
		return ss
	}
	ei.granted = true
	return ss
}

// countRefused counts and logs an incoming connection whose 0-RTT data
// was refused. Logs are limited to one a minute per peer and reason, as a
// replaying attacker controls how often this happens.
func (e *Endpoint) countRefused(peer key.Public, reason string) {
	switch reason {
	case refusedReplay:
		e.zc.refusedReplay.Add(1)
	case refusedRestart:
		e.zc.refusedRestart.Add(1)
	default:
		e.zc.refOth.Add(1)
	}
	e.refused(reasonEarlyRefused, &peer, slog.LevelInfo, "quicconn: refused 0-RTT data", "peer", keyString(peer), "reason", reason)
}

// limitLog reports whether a log line for key and what may be written
// now: at most one a minute for each pair.
func (e *Endpoint) limitLog(key key.Public, what string) bool {
	k := logKey{key, what}
	now := time.Now()
	e.logLimitMu.Lock()
	defer e.logLimitMu.Unlock()
	if last, ok := e.logLimit[k]; ok && now.Sub(last) < time.Minute {
		return false
	}
	if len(e.logLimit) >= 1024 {
		clear(e.logLimit)
	}
	e.logLimit[k] = now
	return true
}

type logKey struct {
	key  key.Public
	what string
}

// serveEarly hands an incoming connection that was granted 0-RTT to
// Accept before its handshake completes, then finishes the handshake and
// the hello exchange. peer comes from the ticket.
func (e *Endpoint) serveEarly(qc *quic.Conn, peer key.Public) {
	c := newEarlyConn(qc, &e.cfg, peer, nil, false)
	c.id.zrtt.Store(zrttAccepted)
	if err := e.register(c); err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeNoError), "shutting down")
		return
	}
	e.zc.earlyAccepted.Add(1)
	c.runEarly(func() error { return e.finishIncoming(c) })
	select {
	case e.accepted <- c:
	case <-e.ctx.Done():
		_ = c.Close("shutting down")
	}
}

// awaitHandshake waits until the handshake of qc, an early conn, completes
// or qc dies. ctx ends, and qc is closed with "handshake timeout", once
// HandshakeTimeout has passed since the call, which bounds the hello
// exchange that follows too; done disarms that and must be called.
func (e *Endpoint) awaitHandshake(qc *quic.Conn) (ctx context.Context, done func(), err error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.HandshakeTimeout)
	stop := context.AfterFunc(ctx, func() {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeControlStream), "handshake timeout")
	})
	done = func() { stop(); cancel() }
	select {
	case <-qc.HandshakeComplete():
		return ctx, done, nil
	case <-qc.Context().Done():
		return ctx, done, convertCloseErr(context.Cause(qc.Context()))
	}
}

// finishIncoming completes an early incoming conn: handshake, key check,
// control stream, hello exchange.
func (e *Endpoint) finishIncoming(c *Conn) error {
	qc := c.qc
	ctx, done, err := e.awaitHandshake(qc)
	defer done()
	if err != nil {
		return err
	}
	if key, err := peerKeyOf(qc.ConnectionState().TLS); err != nil || key != c.id.key {
		// Cannot happen: a resumed session carries the ticket's
		// certificate, and the ticket's key was written from it.
		c.closeLocal(ctlmsg.CodeProtocolError, "peer key differs from the session ticket's")
		return fmt.Errorf("quicconn: peer key differs from the session ticket's")
	}
	st, err := qc.AcceptStream(ctx)
	if err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeControlStream), "no control stream")
		return fmt.Errorf("quicconn: no control stream: %w", err)
	}
	return e.finishHello(ctx, c, st, false)
}

// finishHello runs the hello exchange of an early conn on st and starts
// its control goroutines' prerequisites.
func (e *Endpoint) finishHello(ctx context.Context, c *Conn, st *quic.Stream, sent bool) error {
	h, err := e.hello(ctx, c.qc, st, c.id.dialer, sent)
	if err != nil {
		c.log.Info("quicconn: hello failed", "err", err)
		return err
	}
	c.ctl.mu.Lock()
	c.ctl.st, c.ctl.br = st, h.br
	c.ctl.mu.Unlock()
	c.id.mu.Lock()
	c.id.name = h.peer.Name
	c.id.hsDone = h.hsDone
	c.id.resumed = c.qc.ConnectionState().TLS.DidResume
	c.id.mp, c.id.mpOK = h.mp, h.mpOK
	resumed := c.id.resumed
	if h.pref != nil {
		c.setPeerPreference(*h.pref)
	}
	c.id.mu.Unlock()
	close(c.life.helloed)
	e.nameQlog(c)
	c.log.Info("quicconn: connection up", append([]any{"dialer", c.id.dialer, "resumed", resumed, "name", h.peer.Name, "zero_rtt", c.zeroRTTString()}, h.multipathAttrs()...)...)
	return nil
}

// dialEarly turns a dialed connection whose 0-RTT keys are ready (its
// handshake is still running) into a Conn at once, so the first IP
// datagrams go out in 0-RTT packets. The Hello goes out in 0-RTT too; the
// server's Hello is read after the handshake. On rejection the control
// stream is opened again and the Hello resent.
func (e *Endpoint) dialEarly(qc *quic.Conn, peer key.Public, pinned bool) (*Conn, error) {
	st, err := qc.OpenStream()
	sent := err == nil && st.TryWriteAll(e.helloBytes(true, peer)) == nil
	c := newEarlyConn(qc, &e.cfg, peer, st, true)
	c.mob.pinned = pinned
	c.id.zrtt.Store(zrttPending)
	if err := e.register(c); err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeNoError), "shutting down")
		return nil, err
	}
	e.zc.attempted.Add(1)
	c.runEarly(func() error { return e.finishDialed(c, st, sent) })
	return c, nil
}

func (e *Endpoint) finishDialed(c *Conn, st *quic.Stream, sent bool) (err error) {
	qc := c.qc
	defer func() {
		if err == nil || e.ctx.Err() != nil {
			return
		}
		// The dial failed after all: keep it as the peer's latest dial
		// error (godwit show), as a failed Dial is.
		e.dialErrs.Store(c.id.key, dialError{err: err.Error(), at: time.Now()})
		var te *quic.TransportError
		if cause := context.Cause(qc.Context()); errors.As(cause, &te) && te.Remote && te.ErrorCode.IsCryptoError() {
			// The peer refused the handshake (a TLS alert: our key is
			// no longer authorized). crypto/tls keeps the ticket, since
			// its own handshake had completed, and every redial would
			// try it in 0-RTT again; forget it, so the next dial is a
			// plain one that fails in Dial.
			e.sessions.Put(state.ServerName(c.id.key), nil)
			c.log.Debug("quicconn: forgot the session ticket of a peer that refused the handshake")
		}
	}()
	ctx, done, err := e.awaitHandshake(qc)
	defer done()
	if err != nil {
		return err
	}
	if qc.ConnectionState().Used0RTT {
		c.id.zrtt.Store(zrttAccepted)
		e.zc.accepted.Add(1)
	} else {
		c.id.zrtt.Store(zrttRejected)
		e.zc.rejected.Add(1)
		c.log.Info("quicconn: 0-RTT rejected by the peer, resending the hello")
		if _, err := qc.NextConnection(ctx); err != nil {
			return fmt.Errorf("quicconn: after 0-RTT rejection: %w", err)
		}
		st, sent = nil, false // streams opened in 0-RTT are gone
	}
	if st == nil { // rejected, or OpenStream failed in 0-RTT
		var err error
		if st, err = qc.OpenStream(); err != nil {
			_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeControlStream), "open control stream")
			return fmt.Errorf("quicconn: open control stream: %w", err)
		}
	}
	return e.finishHello(ctx, c, st, sent)
}

// 0-RTT states of a Conn.
const (
	zrttNone     uint32 = iota // not attempted
	zrttPending                // dialed with 0-RTT, handshake running
	zrttAccepted               // the 0-RTT data was accepted
	zrttRejected               // the peer rejected it (dialer) or it was refused (listener)
)

func (c *Conn) zeroRTTString() string {
	switch c.id.zrtt.Load() {
	case zrttPending:
		return "pending"
	case zrttAccepted:
		return "accepted"
	case zrttRejected:
		return "rejected"
	}
	return "none"
}

// newEarlyConn wraps a connection whose handshake is still running. st is
// nil until the control stream is known. The caller registers it and
// calls runEarly.
func newEarlyConn(qc *quic.Conn, cfg *Config, peer key.Public, st *quic.Stream, dialer bool) *Conn {
	c := &Conn{
		qc:    qc,
		start: time.Now(),
		rx:    rxState{first: make(chan struct{})},
		cfg:   cfg,
		id:    identity{key: peer, dialer: dialer},
		ctl:   controlStream{st: st, retick: make(chan struct{}, 1)},
		life:  lifecycle{done: make(chan struct{}), helloed: make(chan struct{})},
	}
	c.trace, _ = qc.QlogTrace().(*connTrace)
	c.log = cfg.Logger.With("peer", keyString(peer), "remote", qc.RemoteAddr().String())
	return c
}

// runEarly starts the watcher at once and finish on its own goroutine;
// when finish succeeds, the control goroutines start. A failing finish
// has closed the connection.
func (c *Conn) runEarly(finish func() error) {
	c.life.wg.Add(1)
	go c.watch()
	go func() {
		defer c.life.wg.Done()
		if err := finish(); err != nil {
			if c.qc.Context().Err() == nil {
				c.closeLocal(ctlmsg.CodeControlStream, err.Error())
			}
			return
		}
		c.ctl.lastHeard.Store(int64(time.Since(c.start)))
		c.life.wg.Add(2) // before Done above, so the count never touches zero
		go c.readControl()
		go c.heartbeat()
	}()
}

// redialStats are what a dial loop reports to its Endpoint.
type redialStats = zeroRTTCounters

// redialReason names why a connection ended, for the redial log line.
func redialReason(err error) string {
	var (
		ce *closeError
		sr *quic.StatelessResetError
		it *quic.IdleTimeoutError
	)
	switch {
	case err == nil:
		return "unknown"
	case errors.As(err, &sr):
		return "stateless reset"
	case errors.As(err, &it):
		return "idle timeout"
	case errors.As(err, &ce) && ce.Remote:
		return "closed by peer: " + ce.Reason
	case errors.As(err, &ce):
		return "closed: " + ce.Reason
	}
	return err.Error()
}

// isClosed reports whether ch, a channel that is only ever closed, is
// closed, without blocking.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
