// SPDX-License-Identifier: MIT

package quicconn

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
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
	"github.com/godwit-vpn/godwit/quicconn/internal/state"
	"github.com/godwit-vpn/godwit/quicconn/tcppath"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// maxPendingIn bounds the incoming connections being served at once:
// handshaking, in the hello exchange, or waiting for Accept. The accept
// loop takes every connection out of quic-go's queue at once and closes
// those past this bound (reasonBusy); see flood.go.
const maxPendingIn = 1024

// Endpoint is one UDP socket with one long-lived [quic.Transport]: it dials
// peers and, when Config.Listen is set, accepts them. All methods are safe
// for concurrent use.
type Endpoint struct {
	cfg      Config // with defaults
	log      *slog.Logger
	cert     tls.Certificate
	sessions tls.ClientSessionCache
	sock     *sockConn
	tr       *quic.Transport
	ln       *quic.EarlyListener // nil when not listening
	version  uint16              // ctlmsg.Version; tests change it
	instance uint64              // Instance: random, never 0
	state    *state.State        // keys and client tickets (Config.StateDir)
	tickets  *state.TicketBook   // 0-RTT tickets issued and not yet used
	zc       zeroRTTCounters
	dialErrs sync.Map // key.Public -> dialError: the latest failed dial to each peer

	logLimitMu sync.Mutex           // logLimitMu guards logLimit.
	logLimit   map[logKey]time.Time // see limitLog

	unreachable atomic.Uint64
	flood       floodGuard               // pending handshakes, Retry, refusal counts (flood.go)
	mob         atomic.Pointer[Mobility] // SetMobility; nil without
	health      healthLoop               // path monitors (MonitorPath)

	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	accepted chan *Conn
	pending  chan struct{} // semaphore of maxPendingIn
	wg       sync.WaitGroup

	mu     sync.Mutex // mu guards the following fields.
	conns  map[*Conn]struct{}
	closed bool

	tcp tcpState // the TCP listener and the dialed TCP paths (tcp.go)

	upMu sync.Mutex // upMu guards upl; taken after a Conn's mob.mu, never before.
	upl  uplinks    // the uplink Transports (AddUplink)
}

// EndpointStats are an Endpoint's counters.
type EndpointStats struct {
	// UnreachableDrops counts sends that failed with "network gone" errors
	// (ENETUNREACH, EHOSTUNREACH, EADDRNOTAVAIL, ENETDOWN, EPERM) and were
	// treated as packet loss.
	UnreachableDrops uint64
	// Conns is the number of live connections, dialed and accepted.
	Conns int

	// HandshakesPending is the number of incoming connections (UDP) whose
	// handshake has not completed yet. Above 16, new clients are sent a
	// Retry first; RetriesSent counts those Retries.
	HandshakesPending int
	RetriesSent       uint64
	// RefusedKeys counts incoming handshakes refused for an unknown key;
	// HandshakesAbandoned incoming connections whose handshake never
	// completed (half-open: timed out or failed); RefusedBusy connections
	// closed at once because 1,024 were being served already.
	RefusedKeys, HandshakesAbandoned, RefusedBusy uint64
	// ControlFloods counts connections closed because the peer sent control
	// messages far faster than any Godwit node does.
	ControlFloods uint64

	// ZeroRTTAttempted counts dialed connections that sent 0-RTT data
	// (Dial returned before the handshake completed); ZeroRTTAccepted and
	// ZeroRTTRejected how the peer answered (attempts whose handshake
	// failed count in neither).
	ZeroRTTAttempted, ZeroRTTAccepted, ZeroRTTRejected uint64
	// EarlyAccepted counts incoming connections handed to Accept in 0-RTT.
	// EarlyRefusedReplay counts incoming 0-RTT refused because the ticket
	// had been used before (a replayed first flight, or a client reusing
	// a ticket); EarlyRefusedRestart because the ticket was issued before
	// this Endpoint started (it resumes without 0-RTT); EarlyRefusedOther
	// for tickets without Godwit's data.
	EarlyAccepted, EarlyRefusedReplay, EarlyRefusedRestart, EarlyRefusedOther uint64
	// Redials counts connections that DialLoop established after an
	// earlier one ended; RedialsAfterReset those whose predecessor died of
	// a stateless reset (a restarted peer). LastOutage is the latest
	// redial's time from the old connection's death to the first datagram
	// received on the new one; 0 until one was measured.
	Redials, RedialsAfterReset uint64
	LastOutage                 time.Duration
}

// NewEndpoint opens the UDP socket, builds the quic.Transport and, when
// cfg.Listen is set, starts accepting peers. The caller must Close it.
func NewEndpoint(cfg Config) (*Endpoint, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cert, err := newCertificate(cfg.PrivateKey)
	if err != nil {
		return nil, err
	}
	if cfg.QlogDir != "" {
		if err := os.MkdirAll(cfg.QlogDir, 0o750); err != nil {
			return nil, fmt.Errorf("quicconn: qlog dir: %w", err)
		}
	}
	st, err := state.Load(cfg.StateDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	tickets, err := state.NewTicketBook()
	if err != nil {
		return nil, err
	}
	instance, err := newInstance()
	if err != nil {
		return nil, err
	}
	e := &Endpoint{
		instance: instance,
		cfg:      cfg,
		log:      cfg.Logger,
		cert:     cert,
		sessions: st.Sessions,
		state:    st,
		tickets:  tickets,
		logLimit: make(map[logKey]time.Time),
		version:  ctlmsg.Version,
		accepted: make(chan *Conn),
		pending:  make(chan struct{}, maxPendingIn),
		conns:    make(map[*Conn]struct{}),
	}
	e.sock, err = listenUDP(cfg.Listen, cfg.FwMark, &e.unreachable)
	if err != nil {
		return nil, err
	}
	e.tr, err = newTransport(e.sock)
	if err != nil {
		e.sock.Close()
		return nil, err
	}
	st.Configure(e.tr)
	e.flood.log.log = e.log
	e.flood.log.pendingNow = e.flood.pending.Load
	e.tr.ConnContext = e.udpConnContext
	if cfg.Listen != "" {
		e.tr.VerifySourceAddress = e.flood.verifySourceAddress
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	if cfg.Listen != "" {
		tc := serverTLSConfig(cert, cfg.Authorize, e.logRefused)
		tc.KeyLogWriter = cfg.KeyLogWriter
		e.setupTickets(tc)
		qconf := e.quicConfig(nil)
		qconf.GetConfigForClient = e.flood.configFor(qconf)
		e.ln, err = e.tr.ListenEarly(tc, qconf)
		if err != nil {
			e.cancel()
			e.tr.Close()
			e.sock.Close()
			return nil, fmt.Errorf("quicconn: listen: %w", err)
		}
		e.wg.Add(1)
		go e.acceptLoop(e.ln)
		e.log.Info("quicconn: listening", "addr", e.sock.LocalAddr().String())
		if cfg.ListenTCP != "" {
			if err := e.listenTCP(tc); err != nil {
				e.cancel()
				_ = e.ln.Close()
				e.wg.Wait()
				e.tr.Close()
				e.sock.Close()
				return nil, err
			}
		}
	}
	e.health.kick = make(chan struct{}, 1)
	e.wg.Add(1)
	go e.runHealth()
	return e, nil
}

// logRefused counts and logs a handshake refused for an unknown key: at
// most once a minute per key, so that a misconfigured site redialing cannot
// flood the log, and within the refusal budget, so that fresh keys cannot
// either (refusalLog).
func (e *Endpoint) logRefused(key key.Public) {
	e.flood.refusedKey.Add(1)
	e.refused(reasonUnknownKey, &key, slog.LevelWarn, "quicconn: refused a peer whose key is not configured", "key", keyString(key))
}

// newTransport builds a Transport with the settings every Transport of the
// daemon must share.
func newTransport(pc *sockConn) (*quic.Transport, error) {
	// Random here; NewEndpoint replaces it (and the token key) with the
	// persistent keys of its state (State.Configure).
	var key quic.StatelessResetKey
	if _, err := rand.Read(key[:]); err != nil {
		return nil, fmt.Errorf("quicconn: stateless reset key: %w", err)
	}
	return &quic.Transport{
		Conn:               pc,
		ConnectionIDLength: connectionIDLength,
		StatelessResetKey:  &key,
	}, nil
}

// quicConfig returns the quic-go configuration of the listener (dialPeer
// nil) or of one dial to the peer with key *dialPeer.
func (e *Endpoint) quicConfig(dialPeer *key.Public) *quic.Config {
	c := &quic.Config{
		HandshakeIdleTimeout: e.cfg.HandshakeTimeout,
		MaxIdleTimeout:       e.cfg.IdleTimeout,
		InitialPacketSize:    uint16(e.cfg.InitialPacketSize),
		EnableDatagrams:      true,
		// Godwit's quic-go patch; see Config.OuterCongestionControl.
		DisableCongestionControl: !e.cfg.OuterCongestionControl,
		MaxIncomingStreams:       1, // the control stream
		MaxIncomingUniStreams:    -1,
	}
	if dialPeer != nil {
		c.KeepAlivePeriod = e.cfg.KeepAlive
		if e.cfg.KeepAliveFor != nil {
			if k := e.cfg.KeepAliveFor(*dialPeer); k > 0 {
				c.KeepAlivePeriod = k
			}
		}
	} else {
		c.Allow0RTT = true // single-use tickets: see zerortt.go
	}
	if !e.cfg.DisableTracer || e.cfg.QlogDir != "" {
		c.Tracer = func(_ context.Context, isClient bool, odcid quic.ConnectionID) qlogwriter.Trace {
			return e.newTrace(isClient, odcid, dialPeer)
		}
	}
	return c
}

// LocalAddr returns the address of the endpoint's UDP socket.
func (e *Endpoint) LocalAddr() net.Addr { return e.sock.LocalAddr() }

// Stats returns the endpoint's counters. Safe for concurrent use.
func (e *Endpoint) Stats() EndpointStats {
	e.mu.Lock()
	n := len(e.conns)
	e.mu.Unlock()
	return EndpointStats{
		UnreachableDrops:    e.unreachable.Load(),
		Conns:               n,
		HandshakesPending:   int(max(e.flood.pending.Load(), 0)),
		RetriesSent:         e.flood.retries.Load(),
		RefusedKeys:         e.flood.refusedKey.Load(),
		HandshakesAbandoned: e.flood.abandoned.Load(),
		RefusedBusy:         e.flood.busy.Load(),
		ControlFloods:       e.flood.ctlFloods.Load(),
		ZeroRTTAttempted:    e.zc.attempted.Load(),
		ZeroRTTAccepted:     e.zc.accepted.Load(),
		ZeroRTTRejected:     e.zc.rejected.Load(),
		EarlyAccepted:       e.zc.earlyAccepted.Load(),
		EarlyRefusedReplay:  e.zc.refusedReplay.Load(),
		EarlyRefusedRestart: e.zc.refusedRestart.Load(),
		EarlyRefusedOther:   e.zc.refOth.Load(),
		Redials:             e.zc.redials.Load(),
		RedialsAfterReset:   e.zc.redialsAfterReset.Load(),
		LastOutage:          time.Duration(e.zc.lastOutage.Load()),
	}
}

// Accept returns the next incoming connection whose handshake and hello
// exchange completed. Handshakes run concurrently, so a slow or bad client
// never delays others. It blocks until then, until ctx is done (returning
// context.Cause(ctx)), or until the Endpoint is closed (an error wrapping
// net.ErrClosed). Without Config.Listen it only returns on ctx or Close.
// The caller owns the returned Conn.
func (e *Endpoint) Accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-e.accepted:
		return c, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-e.ctx.Done():
		return nil, fmt.Errorf("quicconn: accept: %w", net.ErrClosed)
	}
}

// acceptLoop takes every connection out of quic-go's accept queue at once
// (a full queue makes quic-go refuse new clients) and serves up to
// maxPendingIn of them concurrently; past that it closes them.
func (e *Endpoint) acceptLoop(ln *quic.EarlyListener) {
	defer e.wg.Done()
	for {
		qc, err := ln.Accept(e.ctx)
		if err != nil {
			if e.ctx.Err() == nil {
				e.log.Error("quicconn: accept failed", "err", err)
			}
			return
		}
		select {
		case e.pending <- struct{}{}:
		default:
			e.flood.busy.Add(1)
			e.refused(reasonBusy, nil, slog.LevelWarn, "quicconn: too many incoming connections at once, closing one",
				"remote", qc.RemoteAddr().String(), "limit", maxPendingIn)
			_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeControlStream), "busy")
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer func() { <-e.pending }()
			e.serveIncoming(qc)
		}()
	}
}

// serveIncoming runs the listener's side of the hello exchange and hands
// the conn to Accept.
func (e *Endpoint) serveIncoming(qc *quic.Conn) {
	if a, ok := qc.RemoteAddr().(tcppath.Addr); ok {
		e.watchTCP(a, qc)
	}
	refused := ""
	ei, _ := qc.Context().Value(earlyInfoKey{}).(*earlyInfo)
	if ei != nil && ei.hs != nil {
		// The handshake stops counting as pending when it completes
		// (or, through its context, when the connection dies).
		go func() {
			select {
			case <-qc.HandshakeComplete():
				ei.hs.done()
			case <-qc.Context().Done():
			}
		}()
	}
	if ei != nil {
		granted, peer, why, attempted := ei.get()
		// crypto/tls has run UnwrapSession before quic-go's listener
		// hands out the conn: quic-go takes the TLS events only once the
		// TLS goroutine waits for the client's next flight.
		if granted && attempted && !isClosed(qc.HandshakeComplete()) {
			e.serveEarly(qc, peer)
			return
		}
		if why != "" && attempted {
			refused = why
			e.countRefused(peer, why) // replays too: they never finish the handshake
		}
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.HandshakeTimeout)
	defer cancel()
	st, err := qc.AcceptStream(ctx)
	if err != nil {
		te := (*quic.TransportError)(nil)
		crypto := errors.As(err, &te) && te.ErrorCode.IsCryptoError()
		switch {
		case crypto && te.Remote:
			// The dialer turned this node's certificate down: it pins
			// another key for this node.
			e.refused(reasonKeyRefusedByPeer, nil, slog.LevelWarn, "quicconn: a peer refused this node's key: its [[peer]] for this node has another public_key (give it this node's, from godwit pubkey)",
				"remote", qc.RemoteAddr().String(), "err", err)
			return
		case crypto:
			// This node's TLS refused the client; an unknown key was
			// counted and logged by logRefused.
		case !isClosed(qc.HandshakeComplete()):
			e.flood.abandoned.Add(1)
			e.refused(reasonHandshakeTimeout, nil, slog.LevelInfo, "quicconn: incoming handshake not completed",
				"remote", qc.RemoteAddr().String(), "err", err)
		default:
			e.refused(reasonNoControlStream, nil, slog.LevelInfo, "quicconn: no control stream from peer",
				"remote", qc.RemoteAddr().String(), "err", err)
		}
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeControlStream), "no control stream")
		return
	}
	c, err := e.helloExchange(ctx, qc, st, false, false)
	if err != nil {
		e.refused(reasonHelloFailed, nil, slog.LevelInfo, "quicconn: incoming hello failed",
			"remote", qc.RemoteAddr().String(), "err", err)
		return
	}
	if refused != "" {
		c.id.zrtt.Store(zrttRejected)
	}
	select {
	case e.accepted <- c:
	case <-e.ctx.Done():
		_ = c.Close("shutting down")
	}
}

// helloExchange waits for the handshake, exchanges Hello messages (the
// dialer writes first: a stream is invisible to the peer until it carries
// data), checks the version, registers and starts the Conn. On failure
// the QUIC connection is closed.
func (e *Endpoint) helloExchange(ctx context.Context, qc *quic.Conn, st *quic.Stream, dialer, pinned bool) (*Conn, error) {
	h, err := e.hello(ctx, qc, st, dialer, false)
	if err != nil {
		return nil, err
	}
	c := newConn(qc, st, h.br, &e.cfg, h.peer, h.hsDone)
	c.id.dialer = dialer
	c.id.mp, c.id.mpOK = h.mp, h.mpOK
	if h.pref != nil {
		c.setPeerPreference(*h.pref)
	}
	c.mob.pinned = pinned
	e.nameQlog(c)
	if err := e.register(c); err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeNoError), "shutting down")
		return nil, err
	}
	c.run()
	c.log.Info("quicconn: connection up", append([]any{"dialer", dialer, "resumed", c.id.resumed}, h.multipathAttrs()...)...)
	return c, nil
}

// helloResult is what the hello exchange learned.
type helloResult struct {
	peer   ctlmsg.Hello
	mp     PeerMultipath      // the peer's Multipath message; zero unless mpOK
	mpOK   bool               // both sides announced multipath
	pref   *ctlmsg.Preference // what followed a Hello with CapPreference, or nil
	br     *bufio.Reader      // reader of the control stream, holding what followed
	hsDone time.Time          // when the handshake completed
}

// multipathAttrs returns the log attributes of the peer's announcement.
func (h *helloResult) multipathAttrs() []any {
	if !h.mpOK {
		return nil
	}
	return []any{"multipath_instance", fmt.Sprintf("%016x", h.mp.Instance), "multipath_mode", h.mp.Mode.String()}
}

// hello waits for the handshake and exchanges Hello messages on st (the
// dialer writes first, unless sent says its Hello is on st already: a
// stream is invisible to the peer until it carries data) and checks the
// version. Each side's Hello is followed by its Multipath message when it
// announces the capability (multipath.go), and a dialer's by its
// Preference message (preference.go); all arrive under the same read
// deadline. It returns what the peer said, the reader of st that
// holds what followed, and when the handshake completed. On failure the
// QUIC connection is closed.
func (e *Endpoint) hello(ctx context.Context, qc *quic.Conn, st *quic.Stream, dialer, sent bool) (helloResult, error) {
	// Closing the connection unblocks every read below when ctx ends.
	stop := context.AfterFunc(ctx, func() {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeControlStream), "hello timeout")
	})
	defer stop()
	select {
	case <-qc.HandshakeComplete():
	case <-qc.Context().Done():
		return helloResult{}, convertCloseErr(context.Cause(qc.Context()))
	}
	hsDone := time.Now()
	var peerKey key.Public
	if dialer {
		peerKey, _ = peerKeyOf(qc.ConnectionState().TLS) // verified in the handshake
	}
	write := func() error {
		if err := st.TryWriteAll(e.helloBytes(dialer, peerKey)); err != nil {
			_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeControlStream), "hello write failed")
			return fmt.Errorf("quicconn: write hello: %w", err)
		}
		return nil
	}
	if dialer && !sent {
		if err := write(); err != nil {
			return helloResult{}, err
		}
	}
	// readFailed closes the connection for a failed read of what (the
	// hello or the multipath message) and returns the error.
	readFailed := func(what string, err error) error {
		if qc.Context().Err() != nil {
			return fmt.Errorf("quicconn: read %s: %w", what, convertCloseErr(context.Cause(qc.Context())))
		}
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeProtocolError), "bad "+what)
		return fmt.Errorf("quicconn: read %s: %w", what, err)
	}
	_ = st.SetReadDeadline(time.Now().Add(e.cfg.HandshakeTimeout))
	br := bufio.NewReader(st)
	m, err := ctlmsg.Read(br)
	if err != nil {
		return helloResult{}, readFailed("hello", err)
	}
	peer, ok := m.(ctlmsg.Hello)
	if !ok {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeProtocolError), "expected hello")
		return helloResult{}, fmt.Errorf("quicconn: first control message is %T, want hello", m)
	}
	if peer.Version != e.version {
		reason := fmt.Sprintf("incompatible protocol version %d (local %d)", peer.Version, e.version)
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeVersionMismatch), reason)
		return helloResult{}, fmt.Errorf("quicconn: %s", reason)
	}
	h := helloResult{peer: peer, br: br, hsDone: hsDone}
	if peer.Capabilities&ctlmsg.CapMultipath != 0 {
		if h.mp, h.mpOK, err = e.readMultipath(br, dialer); err != nil {
			return helloResult{}, readFailed("multipath", err)
		}
	}
	if peer.Capabilities&ctlmsg.CapPreference != 0 {
		p, err := readPreference(br)
		if err != nil {
			return helloResult{}, readFailed("preference", err)
		}
		h.pref = &p
	}
	_ = st.SetReadDeadline(time.Time{})
	if !dialer {
		if err := write(); err != nil {
			return helloResult{}, err
		}
	}
	if !stop() {
		return helloResult{}, fmt.Errorf("quicconn: hello: %w", context.Cause(ctx))
	}
	return h, nil
}

func (e *Endpoint) register(c *Conn) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("quicconn: %w", net.ErrClosed)
	}
	e.conns[c] = struct{}{}
	c.life.forget = e.forget
	c.mob.ep = e
	return nil
}

func (e *Endpoint) forget(c *Conn) {
	e.mu.Lock()
	delete(e.conns, c)
	e.mu.Unlock()
}

// Dial connects to the peer at addr ("host:port"; host names are resolved
// on every call) whose key must be peer, on the Endpoint's own Transport,
// opens the control stream and exchanges Hello messages. It blocks until
// then or until ctx is done or HandshakeTimeout passes.
//
// With a session ticket from an earlier connection to peer (kept in
// Config.StateDir across restarts) Dial sends 0-RTT and returns as soon as
// the 0-RTT keys are ready, before any round trip: datagrams sent on the
// Conn at once leave in the first flight. The handshake and the hello
// exchange then finish in the background; if they fail, the Conn dies
// (Done, Err) instead of Dial failing, and PeerName stays "" until the
// peer's Hello arrived. A rejected 0-RTT loses the datagrams sent in it. A server presenting
// another key fails with an error saying "server key mismatch". The caller
// owns the returned Conn.
func (e *Endpoint) Dial(ctx context.Context, addr string, peer key.Public) (*Conn, error) {
	return e.dial(ctx, e.tr, addr, peer, false)
}

// dial is Dial on tr: the Endpoint's own Transport or an uplink's. pinned
// marks the Conn as belonging to its uplink (DialLoopOn) before any of its
// goroutines runs.
func (e *Endpoint) dial(ctx context.Context, tr *quic.Transport, addr string, peer key.Public, pinned bool) (*Conn, error) {
	if e.ctx.Err() != nil {
		return nil, fmt.Errorf("quicconn: dial %s: %w", addr, net.ErrClosed)
	}
	ua, err := e.resolve(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("quicconn: dial %s: %w", addr, err)
	}
	return e.dialAddr(ctx, tr, ua, addr, peer, pinned, e.quicConfig(&peer))
}

// dialAddr is dial to the resolved address ua on tr with the quic-go
// configuration qconf; addr is for messages.
func (e *Endpoint) dialAddr(ctx context.Context, tr *quic.Transport, ua net.Addr, addr string, peer key.Public, pinned bool, qconf *quic.Config) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*e.cfg.HandshakeTimeout)
	defer cancel()
	tc := clientTLSConfig(e.cert, peer, e.sessions)
	tc.KeyLogWriter = e.cfg.KeyLogWriter
	qc, err := tr.DialEarly(ctx, ua, tc, qconf)
	if err != nil {
		return nil, fmt.Errorf("quicconn: dial %s: %w", addr, err)
	}
	if !isClosed(qc.HandshakeComplete()) {
		// DialEarly returned with 0-RTT keys: hand the Conn out now.
		c, err := e.dialEarly(qc, peer, pinned)
		if err != nil {
			return nil, fmt.Errorf("quicconn: dial %s: %w", addr, err)
		}
		return c, nil
	}
	st, err := qc.OpenStream()
	if err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeControlStream), "open control stream")
		return nil, fmt.Errorf("quicconn: dial %s: open control stream: %w", addr, err)
	}
	hctx, hcancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
	defer hcancel()
	c, err := e.helloExchange(hctx, qc, st, true, pinned)
	if err != nil {
		return nil, fmt.Errorf("quicconn: dial %s: %w", addr, err)
	}
	return c, nil
}

// resolve turns "host:port" into a UDP address this socket can reach: an
// IPv4 socket gets an IPv4 address, an IPv6 one an IPv6 address, and a
// dual-stack wildcard socket the first address returned.
func (e *Endpoint) resolve(ctx context.Context, addr string) (*net.UDPAddr, error) {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())), nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	local := e.sock.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
	for _, ip := range ips {
		ip = ip.Unmap()
		switch {
		case local.Is4() && !ip.Is4(), local.Is6() && !local.IsUnspecified() && !ip.Is6():
			continue
		}
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(pn))), nil
	}
	return nil, fmt.Errorf("no address of %q fits local %s", host, local)
}

// Close closes every connection (Goodbye "shutting down"), the listener,
// the Transport and the socket, and waits for the endpoint's goroutines.
// Accept then returns net.ErrClosed. Close is idempotent.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	conns := make([]*Conn, 0, len(e.conns))
	for c := range e.conns {
		conns = append(conns, c)
	}
	e.mu.Unlock()

	// Order: stop accepting and abort pending hello exchanges, close the
	// conns (CONNECTION_CLOSE must go out before the Transport goes,
	// since Transport.Close sends none), then the Transport, then the
	// socket (Transport.Close does not close a PacketConn it was given).
	e.cancel()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.Close("shutting down")
		}()
	}
	wg.Wait()
	var errs []error
	if e.ln != nil {
		if err := e.ln.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if e.tcp.ln != nil {
		if err := e.tcp.ln.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	e.wg.Wait()
	e.flood.log.close()
	e.health.dwg.Wait() // the conns' Down reports; no conn is left to make more
	if err := e.tr.Close(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, e.closeUplinks()...)
	errs = append(errs, e.closeTCP()...)
	if err := e.sock.Close(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("quicconn: close: %w", err)
	}
	return nil
}
