// SPDX-License-Identifier: MIT

package quicconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/cpu"
)

// datagramTooLargeError is returned by [Conn.SendDatagram] for a datagram
// larger than the connection's current limit. The limit changes over a
// connection's life (path MTU discovery, migration).
type datagramTooLargeError struct {
	Limit int // largest datagram payload accepted right now, in bytes
}

func (e *datagramTooLargeError) Error() string {
	return fmt.Sprintf("quicconn: datagram too large (limit %d bytes)", e.Limit)
}

// DatagramLimit returns Limit. Package tunnel detects the error through
// this method without importing quicconn.
func (e *datagramTooLargeError) DatagramLimit() int { return e.Limit }

// closeError is what [Conn.Err] returns for a connection closed
// deliberately, by either side, with an application error code and reason.
type closeError struct {
	Remote bool   // closed by the peer (true) or by this side (false)
	Code   uint64 // one of the Code constants, or the peer's own code
	Reason string // the reason given to Conn.Close or set by this package
}

func (e *closeError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by peer"
	}
	return fmt.Sprintf("quicconn: closed %s (code %d): %s", who, e.Code, e.Reason)
}

// ConnStats is a snapshot of one connection's counters.
type ConnStats struct {
	// RTT estimates and the congestion window of the active path, from
	// quic-go; they reset on migration.
	MinRTT, LatestRTT, SmoothedRTT, MeanDeviation time.Duration
	CongestionWindow                              uint64 // bytes
	// Traffic totals without UDP/IP headers; lost counters can go down
	// after spurious-loss detection.
	BytesSent, PacketsSent, BytesReceived, PacketsReceived uint64
	BytesLost, PacketsLost                                 uint64
	// HeartbeatRTT is the latest control-stream round trip; 0 until the
	// first heartbeat reply.
	HeartbeatRTT time.Duration
	// HandshakeDone is when the QUIC handshake completed.
	HandshakeDone time.Time
	// DatagramLimit is the largest datagram payload accepted right now.
	DatagramLimit int
	// Resumed reports whether the TLS handshake resumed a session.
	Resumed bool
	// Used0RTT reports whether data sent in 0-RTT (before the handshake
	// completed) was accepted: on the dialer, once the handshake confirmed
	// it; on the listener, for a connection handed out before its
	// handshake completed. Rejected0RTT reports that the dialer's 0-RTT
	// data was rejected (and lost: datagrams are not resent), or that the
	// listener refused a client's 0-RTT (an old or replayed ticket). Both
	// are false when 0-RTT was not tried or is still pending.
	Used0RTT, Rejected0RTT bool

	// The rest is counted by the connection's tracer (quic-go reports
	// these nowhere else).

	// DatagramsDroppedQueueFull counts received datagrams that quic-go
	// dropped because its 128-datagram receive queue was full: the
	// ReceiveDatagram loop fell behind (qlog trigger "buffer_full").
	DatagramsDroppedQueueFull uint64
	// DatagramsDroppedTooLarge counts datagrams that SendDatagram accepted
	// but quic-go dropped when packing because they no longer fit in a
	// packet, e.g. after a path change lowered the packet size (qlog
	// trigger "too_large").
	DatagramsDroppedTooLarge uint64
	// PacketsDroppedDoS counts QUIC packets dropped because the
	// connection's 256-packet queue of undecrypted packets was full: its
	// goroutine in quic-go cannot keep up (qlog "dos_prevention").
	PacketsDroppedDoS uint64
	// PTOCount is the current number of consecutive probe timeouts on the
	// active path; 0 after an ack arrives. More than 2 or 3 means the path
	// is failing.
	PTOCount uint32
	// MaxPacketSize is the current largest UDP payload quic-go sends, in
	// bytes: 1350 at the start and after every path change, raised by
	// path MTU discovery (at most 1452).
	MaxPacketSize int
	// PathChanges counts how often the active path (local and remote
	// address) changed: the peer's NAT rebinding or migration, or a
	// local migration.
	PathChanges uint64
}

// Conn is an established connection to a peer: handshake done, key
// verified, Hello exchanged. All methods are safe for concurrent use; use
// one goroutine for ReceiveDatagram.
type Conn struct {
	// The state is grouped by concern, each group documented at its
	// type: what a datagram touches (qc, start, rx), the counters only
	// quic-go's tracer sees (trace), who the peer is (id), the control
	// stream (ctl), paths and migrations (mob), the path monitor (hp),
	// and how the Conn ends (life).
	//
	// qc and start are read for every datagram, and never written after
	// creation. rx, written for every datagram received, sits in a cache
	// line of its own, so that receiving does not invalidate the line a
	// sender reads qc from.
	qc    *quic.Conn
	start time.Time // monotonic base of the "nanoseconds since start" in rx and ctl
	_     cpu.CacheLinePad
	rx    rxState
	_     cpu.CacheLinePad

	cfg   *Config // the Endpoint's config with defaults
	log   *slog.Logger
	trace *connTrace // counters only quic-go's tracer sees (ConnStats); nil with Config.DisableTracer
	id    identity
	ctl   controlStream
	mob   mobState
	hp    healthPub // the path monitor's verdict (health.go)
	life  lifecycle
	// peerPref is what the peer's latest Preference message said
	// (preference.go): prefAnnounced, prefPreferred and prefLeaving bits.
	peerPref atomic.Uint32
}

// rxState is what the receive path records for every datagram, and for
// every control message: the marks that a redial's outage, a migration's
// outage and the path-dead check are measured against.
type rxState struct {
	last     atomic.Int64  // nanoseconds since Conn.start of the latest datagram or control message
	gotFirst atomic.Bool   // a datagram was received; first is closed
	pending  atomic.Bool   // a migration (mob.cur) waits for its first received packet
	suspect  atomic.Bool   // Mobility.PathDead was called; cleared when a packet arrives
	first    chan struct{} // closed when the first datagram is received
}

// identity is who the peer is and how the handshake went. key and dialer
// never change; a conn handed out before its handshake completed (0-RTT)
// learns the rest later.
type identity struct {
	key    key.Public // verified in the handshake, or from the session ticket of an early incoming conn
	dialer bool       // this side dialed
	// viaProxy: a TCP path dialed through an HTTP proxy (DialTCP).
	viaProxy atomic.Bool
	zrtt     atomic.Uint32 // zrttNone, zrttPending, zrttAccepted or zrttRejected

	mu      sync.Mutex    // mu guards the following fields.
	name    string        // from the peer's Hello; "" until it arrived
	resumed bool          // the TLS handshake resumed a session
	hsDone  time.Time     // when the handshake completed; zero until then
	mp      PeerMultipath // the peer's Multipath message; zero unless mpOK
	mpOK    bool          // both sides announced multipath
}

// controlStream is the connection's control stream (Hello, Heartbeat,
// Goodbye) and what its heartbeats measure.
type controlStream struct {
	br        *bufio.Reader // reader of st; only the readControl goroutine uses it after start
	lastHeard atomic.Int64  // nanoseconds since Conn.start of the last complete control message
	rtt       atomic.Int64  // latest heartbeat round trip in nanoseconds; 0 until measured
	probe     atomic.Int64  // heartbeat interval in nanoseconds while monitored (MonitorPath); 0 when not
	retick    chan struct{} // cap 1: probe changed

	// mu guards the following fields and writes to st. readControl reads
	// st without it: it starts after st is set.
	mu   sync.Mutex
	st   *quic.Stream // nil until opened (a conn handed out in 0-RTT)
	wbuf []byte

	hbMu   sync.Mutex // hbMu guards the following field.
	hbSent [16]struct {
		seq uint64
		at  time.Time
	}
}

// mobState is a Conn's paths and migrations: the uplinks it uses, its
// active path and the validated standby paths it may switch to. The
// receive-path marks a migration is measured with are in rxState.
type mobState struct {
	ep   *Endpoint   // set when the Conn is registered
	gone atomic.Bool // Abandon closed the conn: DialLoop redials at once
	// pinned is set before the Conn is registered and never changes: it
	// belongs to its uplink (DialLoopOn) and never moves.
	pinned bool

	mu sync.Mutex // mu guards the following fields.
	// released is set when the conn died and gave its uplinks back.
	released bool
	used     map[*uplink]struct{} // uplinks this conn ever used (held)
	active   *uplink              // nil: the Endpoint's own socket
	path     *quic.Path           // the active path; nil for the handshake path
	// Own copy of the active path's addresses once captured: quic-go's
	// LocalAddr and RemoteAddr race with a path switch in its run loop.
	captured      bool
	local, remote netip.AddrPort
	standby       map[string]*standbyPath
	// retiring holds, per uplink, a channel closed once the path that
	// SwitchUplink left on it is closed: a new path on the same Transport
	// is not validated while the old one exists (quic-go attributes the
	// Transport's packets to the first path that used it).
	retiring   map[*uplink]chan struct{}
	migrations uint64
	lastOutage time.Duration
	cur        Migration // the pending migration (rx.pending)
	before     int64     // rx.last when the pending migration started
}

// standbyPath is a path probed on an uplink, validated once the peer
// answered.
type standbyPath struct {
	u         *uplink
	p         *quic.Path
	validated bool
}

// lifecycle is how a Conn ends.
type lifecycle struct {
	forget  func(*Conn) // removes the Conn from its Endpoint; nil when not registered
	errOnce sync.Once
	err     error         // why the conn died; written once before done is closed
	done    chan struct{} // closed when the conn is dead and its goroutines ended
	wg      sync.WaitGroup
	// helloed is closed once the hello exchange completed: at once for a
	// conn handed out after it, by finishHello for an early (0-RTT) one.
	helloed chan struct{}
}

// closedChan is an already closed channel.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// HelloDone is closed once the hello exchange with the peer completed, so
// that PeerName and Multipath report what the peer announced. It is closed
// from the start for a connection handed out after the exchange; a
// connection handed out early (0-RTT) gets it one round trip later, or
// never when it dies first (see Done).
func (c *Conn) HelloDone() <-chan struct{} { return c.life.helloed }

// newConn wraps a connection whose hello exchange completed. The caller
// calls c.run next.
func newConn(qc *quic.Conn, st *quic.Stream, br *bufio.Reader, cfg *Config, peer ctlmsg.Hello, hsDone time.Time) *Conn {
	cs := qc.ConnectionState()
	key, _ := peerKeyOf(cs.TLS) // verified during the handshake
	c := &Conn{
		qc:    qc,
		start: time.Now(),
		rx:    rxState{first: make(chan struct{})},
		cfg:   cfg,
		id:    identity{key: key, name: peer.Name, resumed: cs.TLS.DidResume, hsDone: hsDone},
		ctl:   controlStream{st: st, br: br, retick: make(chan struct{}, 1)},
		life:  lifecycle{done: make(chan struct{}), helloed: closedChan},
	}
	c.trace, _ = qc.QlogTrace().(*connTrace)
	c.log = cfg.Logger.With("peer", keyString(key), "name", peer.Name, "remote", qc.RemoteAddr().String())
	return c
}

// run starts the control goroutines and the watcher that closes Done.
func (c *Conn) run() {
	c.ctl.lastHeard.Store(int64(time.Since(c.start)))
	c.life.wg.Add(2)
	go c.readControl()
	go c.heartbeat()
	go c.watch()
}

func (c *Conn) watch() {
	<-c.qc.Context().Done()
	c.setErr(convertCloseErr(context.Cause(c.qc.Context())))
	c.life.wg.Wait()
	c.releaseUplinks()
	if c.life.forget != nil {
		c.life.forget(c)
	}
	c.endHealth(c.life.err)
	c.log.Info("quicconn: connection down", "err", c.life.err)
	close(c.life.done)
}

func (c *Conn) setErr(err error) {
	c.life.errOnce.Do(func() { c.life.err = err })
}

// convertCloseErr turns quic-go's close cause into this package's errors.
func convertCloseErr(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) {
		return &closeError{Remote: ae.Remote, Code: uint64(ae.ErrorCode), Reason: ae.ErrorMessage}
	}
	return fmt.Errorf("quicconn: connection lost: %w", err)
}

// closeLocal closes the connection with code and reason, without a Goodbye.
func (c *Conn) closeLocal(code uint64, reason string) {
	c.setErr(&closeError{Code: code, Reason: reason})
	c.log.Debug("quicconn: closing", "code", code, "reason", reason)
	_ = c.qc.CloseWithError(quic.ApplicationErrorCode(code), reason)
}

// SendDatagram sends b as one DATAGRAM frame. It copies b, so the caller
// may reuse it at once. It may block while quic-go's 32-slot send queue is
// full (congestion control); it returns when the connection closes. A b
// larger than the current limit sends nothing and fails with an error
// whose DatagramLimit() int method returns that limit (Stats has it too). On a Conn that Dial returned in 0-RTT, datagrams sent
// before the handshake completes leave in 0-RTT packets.
func (c *Conn) SendDatagram(b []byte) error { return sendError(c.qc.SendDatagram(b)) }

// SendDatagramOwned is SendDatagram without the copy: b itself goes into
// the packet, so it is the connection's until done.DatagramSent() is
// called (on quic-go's run loop, once the packet is built). On an error
// nothing was sent and the caller keeps b. A datagram dropped unsent (the
// connection closes first) is never handed back.
func (c *Conn) SendDatagramOwned(b []byte, done interface{ DatagramSent() }) error {
	return sendError(c.qc.SendDatagramOwned(b, done))
}

// sendError is the error of SendDatagram for quic-go's err.
func sendError(err error) error {
	if err == nil {
		return nil
	}
	var tl *quic.DatagramTooLargeError
	if errors.As(err, &tl) {
		return &datagramTooLargeError{Limit: int(tl.MaxDatagramPayloadSize)}
	}
	return fmt.Errorf("quicconn: send datagram: %w", err)
}

// ReceiveDatagram blocks until a datagram arrives, ctx is done (returning
// context.Cause(ctx)), or the connection dies. The caller owns the returned
// slice.
func (c *Conn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	b, err := c.qc.ReceiveDatagram(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, fmt.Errorf("quicconn: receive datagram: %w", err)
	}
	if !c.rx.gotFirst.Load() && c.rx.gotFirst.CompareAndSwap(false, true) {
		close(c.rx.first) // DialLoop measures the outage of a redial up to here
	}
	c.noteRx()
	return b, nil
}

// SetDatagramHandler makes f take every datagram received from now on,
// instead of ReceiveDatagram, which saves a goroutine hand-off per datagram
// (docs/PERFORMANCE.md). f runs on quic-go's run loop for this connection,
// one call at a time: it must not block, and it owns b (it may pass it to
// ReleaseDatagram). Datagrams queued before stay for ReceiveDatagram, which
// also still reports the connection's end. A nil f restores the queue.
func (c *Conn) SetDatagramHandler(f func(b []byte)) {
	if f == nil {
		c.qc.SetDatagramHandler(nil)
		return
	}
	c.qc.SetDatagramHandler(func(b []byte) {
		if !c.rx.gotFirst.Load() && c.rx.gotFirst.CompareAndSwap(false, true) {
			close(c.rx.first) // as in ReceiveDatagram
		}
		c.noteRx()
		f(b)
	})
}

// ReleaseDatagram hands b, a slice ReceiveDatagram returned, back for reuse
// by the next received datagram: the caller must not use b afterwards.
// Calling it is optional; without it every received datagram allocates.
func (c *Conn) ReleaseDatagram(b []byte) { c.qc.ReleaseDatagram(b) }

// PeerKey returns the peer's raw Ed25519 public key, as verified in the
// handshake.
func (c *Conn) PeerKey() key.Public { return c.id.key }

// Dialed reports whether this node dialed the connection (false: it
// accepted it).
func (c *Conn) Dialed() bool { return c.id.dialer }

// PeerName returns the node name from the peer's Hello; "" while a
// connection handed out in 0-RTT has not completed its hello exchange.
func (c *Conn) PeerName() string {
	c.id.mu.Lock()
	defer c.id.mu.Unlock()
	return c.id.name
}

// firstDatagram returns a channel that is closed when ReceiveDatagram
// returns the connection's first datagram.
func (c *Conn) firstDatagram() <-chan struct{} { return c.rx.first }

// RemoteAddr returns the peer's current address; it changes when the peer
// migrates.
func (c *Conn) RemoteAddr() net.Addr { return c.remoteAddr() }

// LocalAddr returns the local address of the active path.
func (c *Conn) LocalAddr() net.Addr { return c.localAddr() }

// Done returns a channel that is closed when the connection is dead for
// any reason and its goroutines have ended.
func (c *Conn) Done() <-chan struct{} { return c.life.done }

// Err returns why the connection died: for a deliberate close by either
// side (including "heartbeat timeout" and protocol errors) an error that
// says who closed, the code and the reason, else a wrapped quic-go error (idle timeout, stateless reset, ...). It returns nil
// while the connection is alive.
func (c *Conn) Err() error {
	select {
	case <-c.life.done:
		return c.life.err
	default:
		return nil
	}
}

// goodbyeTimeout bounds how long Close waits for the peer to act on the
// Goodbye before closing anyway.
const goodbyeTimeout = 500 * time.Millisecond

// Close sends a Goodbye with reason on the control stream, waits up to
// 500 ms for the peer to close in answer (so the Goodbye is not cut off by
// our own CONNECTION_CLOSE), then closes the connection with CodeNoError
// and reason, and waits until Done is closed. The peer's Err reports
// reason (from the Goodbye, or from the CONNECTION_CLOSE if the Goodbye was
// lost). Closing a dead connection returns nil.
func (c *Conn) Close(reason string) error {
	select {
	case <-c.life.done:
		return nil
	default:
	}
	c.setErr(&closeError{Code: ctlmsg.CodeNoError, Reason: reason})
	if err := c.writeMessage(ctlmsg.Goodbye{Code: ctlmsg.CodeNoError, Reason: reason}); err == nil {
		t := time.NewTimer(goodbyeTimeout)
		select {
		case <-c.qc.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	_ = c.qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeNoError), reason)
	<-c.life.done
	return nil
}

// Stats returns a snapshot of the connection's counters. It is cheap and
// safe for concurrent use.
func (c *Conn) Stats() ConnStats {
	qs := c.qc.ConnectionStats()
	s := ConnStats{
		MinRTT:           qs.MinRTT,
		LatestRTT:        qs.LatestRTT,
		SmoothedRTT:      qs.SmoothedRTT,
		MeanDeviation:    qs.MeanDeviation,
		CongestionWindow: qs.CongestionWindow,
		BytesSent:        qs.BytesSent,
		PacketsSent:      qs.PacketsSent,
		BytesReceived:    qs.BytesReceived,
		PacketsReceived:  qs.PacketsReceived,
		BytesLost:        qs.BytesLost,
		PacketsLost:      qs.PacketsLost,
		HeartbeatRTT:     time.Duration(c.ctl.rtt.Load()),
		Used0RTT:         c.id.zrtt.Load() == zrttAccepted,
		Rejected0RTT:     c.id.zrtt.Load() == zrttRejected,
	}
	c.id.mu.Lock()
	s.HandshakeDone, s.Resumed = c.id.hsDone, c.id.resumed
	c.id.mu.Unlock()
	s.DatagramLimit = c.qc.MaxDatagramPayloadSize()
	if t := c.trace; t != nil {
		s.DatagramsDroppedQueueFull = t.dgramQueueFull.Load()
		s.DatagramsDroppedTooLarge = t.dgramTooLarge.Load()
		s.PacketsDroppedDoS = t.dosDrops.Load()
		s.PTOCount = t.pto.Load()
		s.MaxPacketSize = int(t.maxPacketSize.Load())
		s.PathChanges = t.pathChanges.Load()
	}
	return s
}

// errNoControlStream is what writeMessage returns on a conn handed out in
// 0-RTT whose control stream is not open yet.
var errNoControlStream = errors.New("quicconn: control stream not open yet")

// writeMessage queues m on the control stream without blocking: small
// control messages never wait for congestion control or a dead path. It
// fails with quic.ErrWouldBlock when the peer's flow-control window is
// full, which means the peer does not read its control stream.
func (c *Conn) writeMessage(m ctlmsg.Message) error {
	c.ctl.mu.Lock()
	defer c.ctl.mu.Unlock()
	if c.ctl.st == nil {
		return errNoControlStream
	}
	c.ctl.wbuf = ctlmsg.Append(c.ctl.wbuf[:0], m)
	return c.ctl.st.TryWriteAll(c.ctl.wbuf)
}

// readControl reads and acts on the peer's control messages until the
// connection dies. Each message must arrive completely within
// HandshakeTimeout of its first byte (a slowloris guard); the wait for the
// first byte is unbounded, as silence is the heartbeat's business.
//
// A peer that sends messages faster than ctlRate per second beyond a burst
// of ctlBurst is closed with CodeProtocolError ("control message flood"):
// each message costs a wake-up and, for a heartbeat, a reply, and a flood
// of tiny ones once kept a hub core busy (flood.go).
func (c *Conn) readControl() {
	defer c.life.wg.Done()
	tokens, last := float64(ctlBurst), time.Now()
	for {
		if _, err := c.ctl.br.Peek(1); err != nil {
			c.controlReadFailed(err)
			return
		}
		now := time.Now()
		tokens = min(tokens+now.Sub(last).Seconds()*ctlRate, ctlBurst)
		last = now
		if tokens < 1 {
			c.controlFlood()
			return
		}
		tokens--
		_ = c.ctl.st.SetReadDeadline(time.Now().Add(c.cfg.HandshakeTimeout))
		m, err := ctlmsg.Read(c.ctl.br)
		if err != nil {
			c.controlReadFailed(err)
			return
		}
		_ = c.ctl.st.SetReadDeadline(time.Time{})
		c.ctl.lastHeard.Store(int64(time.Since(c.start)))
		c.noteRx()
		switch m := m.(type) {
		case ctlmsg.Heartbeat:
			if !m.Reply {
				m.Reply = true
				if err := c.writeMessage(m); err != nil {
					c.controlWriteFailed(err)
					return
				}
				continue
			}
			c.heartbeatReply(m)
		case ctlmsg.Goodbye:
			c.log.Debug("quicconn: peer said goodbye", "code", m.Code, "reason", m.Reason)
			c.setErr(&closeError{Remote: true, Code: m.Code, Reason: m.Reason})
			_ = c.qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeNoError), "goodbye")
			return
		case ctlmsg.Hello:
			c.closeLocal(ctlmsg.CodeProtocolError, "unexpected hello")
			return
		case ctlmsg.Multipath:
			// Only valid right after a Hello, where hello reads it.
			c.closeLocal(ctlmsg.CodeProtocolError, "unexpected multipath")
			return
		case ctlmsg.Preference:
			c.setPeerPreference(m)
			c.log.Debug("quicconn: peer preference", "preferred", m.Preferred, "leaving", m.Leaving)
			if f := c.cfg.PreferenceChanged; f != nil {
				f(c)
			}
		case ctlmsg.Unknown:
			// Skipped by ctlmsg.Read: a newer peer's optional message.
		}
	}
}

// controlFlood closes the connection of a peer that sends control
// messages too fast, and counts it.
func (c *Conn) controlFlood() {
	if ep := c.mob.ep; ep != nil {
		ep.flood.ctlFloods.Add(1)
		if ep.limitLog(c.id.key, "control flood") {
			c.log.Warn("quicconn: closing a peer that floods the control stream", "limit_per_second", ctlRate, "burst", ctlBurst)
		}
	}
	c.closeLocal(ctlmsg.CodeProtocolError, "control message flood")
}

// connLevel reports whether err from a stream operation is the close of
// the whole connection. Stream operations can fail with it a moment before
// the connection's context is cancelled.
func connLevel(err error) bool {
	var (
		ae *quic.ApplicationError
		te *quic.TransportError
		ie *quic.IdleTimeoutError
		sr *quic.StatelessResetError
	)
	return errors.As(err, &ae) || errors.As(err, &te) || errors.As(err, &ie) || errors.As(err, &sr)
}

func (c *Conn) controlReadFailed(err error) {
	if c.qc.Context().Err() != nil || connLevel(err) {
		return // the connection is closing; watch records why
	}
	switch {
	case errors.Is(err, ctlmsg.ErrMalformed), errors.Is(err, ctlmsg.ErrTooLarge):
		c.closeLocal(ctlmsg.CodeProtocolError, err.Error())
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.closeLocal(ctlmsg.CodeProtocolError, "control message not delivered in time")
	default:
		c.closeLocal(ctlmsg.CodeControlStream, fmt.Sprintf("control stream: %v", err))
	}
}

func (c *Conn) controlWriteFailed(err error) {
	if c.qc.Context().Err() != nil || connLevel(err) {
		return
	}
	c.closeLocal(ctlmsg.CodeControlStream, fmt.Sprintf("control stream write: %v", err))
}

func (c *Conn) heartbeatReply(m ctlmsg.Heartbeat) {
	c.ctl.hbMu.Lock()
	slot := c.ctl.hbSent[m.Seq%uint64(len(c.ctl.hbSent))]
	c.ctl.hbMu.Unlock()
	if slot.seq != m.Seq || slot.at.IsZero() || slot.at.UnixNano() != m.SentUnixNano {
		return // not one of ours, or too old to measure
	}
	c.ctl.rtt.Store(int64(time.Since(slot.at))) // monotonic clock
}

// deadAfter returns the silence after which the peer counts as dead.
func (c *Conn) deadAfter() time.Duration {
	if c.cfg.DeadAfter > 0 {
		return c.cfg.DeadAfter
	}
	return max(4*c.cfg.Heartbeat, 3*c.qc.ConnectionStats().SmoothedRTT+time.Second)
}

// listenerHeartbeatEvery is how often, in heartbeat intervals, the
// listening side sends its own Heartbeat while it hears from the peer
// anyway: the dialer's heartbeats (every interval, for its path checks) and
// their replies already prove both directions, so the hub only needs its
// own now and then to keep HeartbeatRTT current. This halves a hub's idle
// control traffic, which on a hub with hundreds of sites is mostly
// scheduler wake-ups (docs/PERFORMANCE.md).
const listenerHeartbeatEvery = 8

// heartbeatInterval is cfg.Heartbeat, or the shorter probe interval while
// the path is monitored.
func (c *Conn) heartbeatInterval() time.Duration {
	if p := time.Duration(c.ctl.probe.Load()); p > 0 {
		return p
	}
	return c.cfg.Heartbeat
}

// heartbeat sends a Heartbeat every heartbeatInterval and closes the
// connection with "heartbeat timeout" once the peer has been silent for
// deadAfter. The listening side of an unmonitored conn skips its own while
// the peer was heard within the last cfg.Heartbeat, except every
// listenerHeartbeatEvery-th; a monitored path needs its own heartbeats on
// both sides, as the monitor judges what it sends.
func (c *Conn) heartbeat() {
	defer c.life.wg.Done()
	interval := c.heartbeatInterval()
	t := time.NewTicker(interval)
	defer t.Stop()
	var seq, tick uint64
	for {
		select {
		case <-c.qc.Context().Done():
			return
		case <-c.ctl.retick:
			if d := c.heartbeatInterval(); d != interval {
				interval = d
				t.Reset(d)
			}
			continue
		case <-t.C:
		}
		silent := time.Since(c.start) - time.Duration(c.ctl.lastHeard.Load())
		if silent > c.deadAfter() {
			c.log.Info("quicconn: peer silent, closing", "silent", silent.Round(time.Millisecond))
			c.closeLocal(ctlmsg.CodeHeartbeatTimeout, "heartbeat timeout")
			return
		}
		monitored := c.ctl.probe.Load() > 0
		if tick++; !c.id.dialer && !monitored && silent < c.cfg.Heartbeat && tick%listenerHeartbeatEvery != 1 {
			continue
		}
		seq++
		now := time.Now()
		c.ctl.hbMu.Lock()
		c.ctl.hbSent[seq%uint64(len(c.ctl.hbSent))] = struct {
			seq uint64
			at  time.Time
		}{seq, now}
		c.ctl.hbMu.Unlock()
		if err := c.writeMessage(ctlmsg.Heartbeat{Seq: seq, SentUnixNano: now.UnixNano()}); err != nil {
			c.controlWriteFailed(err)
			return
		}
		c.armPathCheck(now)
	}
}
