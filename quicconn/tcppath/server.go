// SPDX-License-Identifier: MIT

package tcppath

// The listening side:
//
//	accept (1 goroutine) ── MaxPending handshakes already? close the oldest
//	  └▶ handshake (1 goroutine per connection, HandshakeTimeout):
//	     TLS 1.3, ALPN, Authorize(client key); refused: close, nothing read
//	       └▶ the same goroutine becomes the link's receive loop:
//	          readFrame ──▶ ln.in (shared, bounded; full: drop, count) ──▶ ReadFrom
//	          and starts its writer (link.write) for WriteTo
//
// Memory per connection is bounded before authentication by the number
// of handshakes (MaxPending) and their duration (HandshakeTimeout), and
// after it by the link's buffers (a bufio.Reader of 16 KiB, a
// bufio.Writer of 16 KiB, crypto/tls's record buffers) and its send queue
// (SendQueue packets of MaxPacket bytes). The receive queue is shared:
// ReceiveQueue packets in all.

import (
	"container/list"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// ServerConfig configures [Listen]. The zero value of every field except
// PrivateKey is a documented default. Listen copies the ServerConfig;
// later changes to it have no effect, except what Authorize itself reads.
type ServerConfig struct {
	// PrivateKey is this node's identity, presented as a self-signed
	// certificate. Required.
	PrivateKey ed25519.PrivateKey
	// Authorize reports whether a client with this public key may
	// connect. It is called during every TLS handshake, before a single
	// frame is read, from the handshake goroutines, so it must be safe for
	// concurrent use and fast. Nil refuses everyone.
	Authorize func(peer key.Public) bool
	// Refused, if not nil, is called with the key of every client that
	// Authorize refused (to log it, rate-limited). Same goroutines as
	// Authorize.
	Refused func(peer key.Public)
	// MaxPacket is the largest packet accepted from a client and sent to
	// one; a client's frame above it closes that client's connection.
	// Zero means [DefaultMaxPacket]; otherwise it must be in
	// [MinMaxPacket, 65535].
	MaxPacket int
	// MaxPending is how many connections may be in their TLS handshake at
	// once. A connection accepted beyond that makes room by closing the
	// oldest handshake in progress: a flood of connections that never
	// finish TLS then holds each slot only until MaxPending newer ones
	// came, and a real client, whose handshake takes a round trip or two,
	// still gets through (refusing the newcomer instead would lock real
	// clients out for as long as the flood lasts). Zero means 256.
	MaxPending int
	// HandshakeTimeout is how long a connection may take, from accept, to
	// complete its TLS handshake. Zero means 5 s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes an authenticated client's connection when
	// nothing arrives from it for this long, or a write to it makes no
	// progress for this long (a client that stopped reading). It should be
	// well above the QUIC keep-alive period. Zero means 60 s.
	IdleTimeout time.Duration
	// SendQueue is how many packets to one client wait for its TCP
	// connection; when it is full, WriteTo waits up to SendWait for room,
	// then drops that client's packet. Zero means 128.
	SendQueue int
	// SendWait is how long WriteTo waits for room in a client's full send
	// queue. It is short, since quic-go may write from the goroutine that
	// reads every client's packets. Zero means 5 ms; negative, not at
	// all.
	SendWait time.Duration
	// ReceiveQueue is how many received packets, from all clients, wait
	// for ReadFrom. When it is full, the clients' receive loops wait for
	// room and stop reading from TCP, so TCP's flow control slows the
	// senders down: a packet TCP delivered is never dropped. Zero means
	// 1024.
	ReceiveQueue int
	// Gone, if not nil, is called once for every authorized client whose
	// connection ended (failed, reset, idle, or closed by Close), from
	// that client's receive goroutine, after its Addr stopped being
	// [Listener.Connected]: nothing sent to that Addr arrives any more,
	// and nothing will come from it, so a QUIC connection on it can be
	// closed at once instead of at its idle timeout.
	Gone func(Addr)
	// Control, if not nil, is called on the listening socket before it is
	// bound (net.ListenConfig.Control): to set SO_MARK, say.
	Control func(network, address string, c syscall.RawConn) error
	// Logger receives debug details of refused and failed connections and
	// warnings about accept errors. Nil discards.
	Logger *slog.Logger
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.MaxPacket == 0 {
		c.MaxPacket = DefaultMaxPacket
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 256
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 128
	}
	if c.SendWait == 0 {
		c.SendWait = 5 * time.Millisecond
	}
	if c.ReceiveQueue <= 0 {
		c.ReceiveQueue = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats are a Listener's counters; a PacketConn fills only SendDrops and
// BadFrames. Counters only grow.
type Stats struct {
	// Accepted counts TLS handshakes completed by an authorized client.
	Accepted uint64
	// RefusedKeys counts handshakes refused because Authorize refused the
	// client's key.
	RefusedKeys uint64
	// HandshakeTimeouts counts connections closed for not completing the
	// handshake within HandshakeTimeout.
	HandshakeTimeouts uint64
	// HandshakeErrors counts the other failed handshakes: not TLS 1.3, no
	// ALPN "godwit-tcp/1", no Ed25519 certificate, reset.
	HandshakeErrors uint64
	// Evicted counts handshakes closed to make room for a newer
	// connection when MaxPending were in progress.
	Evicted uint64
	// BadFrames counts connections closed for a frame of length 0 or above
	// MaxPacket.
	BadFrames uint64
	// IdleCloses counts clients closed by IdleTimeout.
	IdleCloses uint64
	// SendDrops counts packets dropped because their client's send queue
	// stayed full for SendWait.
	SendDrops uint64
	// ReceiveWaits counts packets whose receive loop found the shared
	// receive queue full and waited for room (none is dropped).
	ReceiveWaits uint64
	// Clients and Pending are the authenticated connections and the
	// handshakes in progress now.
	Clients, Pending int
}

// Listener accepts TLS-over-TCP clients and is the net.PacketConn of a
// quic.Transport on the hub: ReadFrom returns the packets of every
// client, each with its client's [Addr]; WriteTo sends to the client of
// an Addr. Its methods are safe for concurrent use.
//
// Like [PacketConn], it is not a quic.OOBCapablePacketConn and has no
// SyscallConn: quic-go uses it one packet at a time, without GSO, ECN or
// path MTU discovery.
type Listener struct {
	cfg     ServerConfig
	log     *slog.Logger
	tlsConf *tls.Config
	tcp     net.Listener
	pool    *bufPool
	in      chan received // the shared receive queue

	ctx    context.Context // ends pending handshakes at Close
	cancel context.CancelFunc
	closed chan struct{} // closed by Close
	wg     sync.WaitGroup

	rdl *deadline
	wdl writeDeadline

	nextID atomic.Uint64

	pendMu  sync.Mutex // pendMu guards pending.
	pending list.List  // of *pendingConn, oldest first

	// mu guards the following fields.
	mu    sync.RWMutex
	links map[uint64]*link // by Addr.ID; nil after Close

	accepted, refusedKeys, handshakeTimeouts, handshakeErrors atomic.Uint64
	evicted, badFrames, idleCloses                            atomic.Uint64
	sendDrops, receiveWaits                                   atomic.Uint64
	lastAcceptWarn                                            time.Time // accept loop only
}

// pendingConn is a connection in its TLS handshake.
type pendingConn struct {
	raw     net.Conn
	evicted atomic.Bool // closed by the accept loop to make room
}

// received is a packet in the receive queue; ReadFrom puts b back.
type received struct {
	b    *[]byte
	from net.Addr
}

// Listen listens for TCP connections on addr (network "tcp", "tcp4" or
// "tcp6") and serves them until Close.
func Listen(network, addr string, cfg ServerConfig) (*Listener, error) {
	if len(cfg.PrivateKey) != ed25519.PrivateKeySize {
		return nil, errors.New("tcppath: ServerConfig.PrivateKey is not set")
	}
	if err := checkMaxPacket(cfg.MaxPacket); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cert, err := newCertificate(cfg.PrivateKey)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: cfg.Control}
	tcp, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, fmt.Errorf("tcppath: %w", err)
	}
	ln := &Listener{
		cfg:     cfg,
		log:     cfg.Logger,
		tlsConf: serverTLSConfig(cert, cfg.Authorize, cfg.Refused),
		tcp:     tcp,
		pool:    newBufPool(cfg.MaxPacket),
		in:      make(chan received, cfg.ReceiveQueue),
		closed:  make(chan struct{}),
		rdl:     newDeadline(),
		links:   make(map[uint64]*link),
	}
	ln.ctx, ln.cancel = context.WithCancel(context.Background())
	ln.wg.Add(1)
	go ln.accept()
	return ln, nil
}

// accept is the accept loop.
func (ln *Listener) accept() {
	defer ln.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.tcp.Accept()
		if err != nil {
			if isClosed(ln.closed) {
				return
			}
			// Out of file descriptors, or the like: wait and retry, as
			// net/http's Server does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if now := time.Now(); now.Sub(ln.lastAcceptWarn) > 10*time.Second {
				ln.lastAcceptWarn = now
				ln.log.Warn("tcppath: accept", "err", err, "retry", backoff)
			}
			select {
			case <-time.After(backoff):
			case <-ln.closed:
				return
			}
			continue
		}
		backoff = 0
		h := &pendingConn{raw: c}
		ln.pendMu.Lock()
		if ln.pending.Len() >= ln.cfg.MaxPending {
			old := ln.pending.Remove(ln.pending.Front()).(*pendingConn)
			old.evicted.Store(true)
			abort(old.raw) // its serve sees the error and counts it
		}
		e := ln.pending.PushBack(h)
		ln.pendMu.Unlock()
		ln.wg.Add(1)
		go ln.serve(h, e)
	}
}

// donePending removes e from the pending handshakes, unless the accept
// loop evicted it already.
func (ln *Listener) donePending(h *pendingConn, e *list.Element) {
	ln.pendMu.Lock()
	if !h.evicted.Load() {
		ln.pending.Remove(e)
	}
	ln.pendMu.Unlock()
}

// abort closes c with a reset: no FIN handshake and no TIME_WAIT state
// on this side, for connections the hub has no use for.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// serve runs the TLS handshake of a new connection (h, element e of the
// pending list) and, if the client is authorized, becomes its receive
// loop.
func (ln *Listener) serve(h *pendingConn, e *list.Element) {
	defer ln.wg.Done()
	raw := h.raw
	conn := tls.Server(raw, ln.tlsConf)
	raw.SetDeadline(time.Now().Add(ln.cfg.HandshakeTimeout))
	err := conn.HandshakeContext(ln.ctx)
	ln.donePending(h, e)
	if err != nil && isClosed(ln.closed) {
		raw.Close()
		return
	}
	if err == nil && h.evicted.Load() {
		// Evicted just as it completed: the accept loop closed it.
		err = net.ErrClosed
	}
	if err != nil {
		var ne net.Error
		switch {
		case h.evicted.Load():
			ln.evicted.Add(1)
		case errors.Is(err, errUnauthorized):
			ln.refusedKeys.Add(1)
			raw.Close() // a plain close, so the client reads the alert
		case errors.As(err, &ne) && ne.Timeout():
			ln.handshakeTimeouts.Add(1)
			abort(raw)
		default:
			ln.handshakeErrors.Add(1)
			raw.Close()
		}
		if ln.log.Enabled(context.Background(), slog.LevelDebug) {
			ln.log.Debug("tcppath: handshake failed", "remote", raw.RemoteAddr().String(), "err", err)
		}
		return
	}
	raw.SetDeadline(time.Time{})
	l := newLink(raw, conn, newAddr(addrPortOf(raw.RemoteAddr()), ln.nextID.Add(1)), ln.cfg.MaxPacket, ln.cfg.SendQueue, ln.cfg.SendWait, ln.pool, &ln.sendDrops)
	l.stall = ln.cfg.IdleTimeout
	id := l.addr.(Addr).id
	ln.mu.Lock()
	if ln.links == nil { // closed meanwhile
		ln.mu.Unlock()
		raw.Close()
		return
	}
	ln.links[id] = l
	ln.accepted.Add(1)
	ln.mu.Unlock()
	ln.wg.Add(1)
	go func() {
		defer ln.wg.Done()
		l.write()
	}()
	ln.receive(l)
	ln.mu.Lock()
	if ln.links != nil {
		delete(ln.links, id)
	}
	ln.mu.Unlock()
	if ln.cfg.Gone != nil {
		ln.cfg.Gone(l.addr.(Addr))
	}
}

// Connected reports whether a is the Addr of an authorized client whose
// connection is up. Once false for an Addr it stays false: Addrs are never
// reused.
func (ln *Listener) Connected(a Addr) bool {
	ln.mu.RLock()
	defer ln.mu.RUnlock()
	l, ok := ln.links[a.id]
	return ok && l.addr == net.Addr(a)
}

// receive reads l's frames into the shared receive queue until l fails
// or closes.
func (ln *Listener) receive(l *link) {
	idle := ln.cfg.IdleTimeout
	var armed time.Time // when the read deadline was last pushed back
	b := ln.pool.get()
	defer func() { ln.pool.put(b) }()
	for {
		// Push the idle deadline back at most four times per period.
		if now := time.Now(); now.Sub(armed) > idle/4 {
			l.raw.SetReadDeadline(now.Add(idle))
			armed = now
		}
		n, err := readFrame(l.r, ln.cfg.MaxPacket, *b)
		if err != nil {
			l.close(err) // no-op if the writer or Close was first: l.err is the first reason
			var ne net.Error
			switch {
			case errors.Is(l.err, ErrFrameSize):
				ln.badFrames.Add(1)
			case errors.As(l.err, &ne) && ne.Timeout(): // nothing read, or a write stalled
				ln.idleCloses.Add(1)
			}
			if ln.log.Enabled(context.Background(), slog.LevelDebug) {
				ln.log.Debug("tcppath: client gone", "addr", l.addr.String(), "err", l.err)
			}
			return
		}
		*b = (*b)[:n]
		select {
		case ln.in <- received{b, l.addr}:
			b = ln.pool.get()
		default:
			// Full: wait, and let TCP hold the client back meanwhile.
			ln.receiveWaits.Add(1)
			select {
			case ln.in <- received{b, l.addr}:
				b = ln.pool.get()
			case <-l.done:
				return
			case <-ln.closed:
				l.close(net.ErrClosed)
				return
			}
		}
	}
}

// ReadFrom returns the next packet from any client: it copies it into b
// (truncated to len(b) if longer, as UDP does) and returns its length and
// the client's [Addr]. It blocks until a packet arrives, the read
// deadline passes (a timeout error; the Listener stays usable) or the
// Listener is closed (an error wrapping net.ErrClosed). A client whose
// connection fails never makes ReadFrom fail.
func (ln *Listener) ReadFrom(b []byte) (int, net.Addr, error) {
	wait := ln.rdl.wait()
	select { // a passed deadline or Close wins over queued packets
	case <-wait:
		return 0, nil, ln.opError("read", nil, os.ErrDeadlineExceeded)
	case <-ln.closed:
		return 0, nil, ln.opError("read", nil, net.ErrClosed)
	default:
	}
	select {
	case p := <-ln.in:
		n := copy(b, *p.b)
		ln.pool.put(p.b)
		return n, p.from, nil
	case <-wait:
		return 0, nil, ln.opError("read", nil, os.ErrDeadlineExceeded)
	case <-ln.closed:
		return 0, nil, ln.opError("read", nil, net.ErrClosed)
	}
}

// WriteTo sends packet b to the client of addr, an [Addr] that ReadFrom
// returned. It never blocks: the packet is copied into that client's send
// queue, or dropped and counted (SendDrops) when the queue is full. A
// packet for a client that is gone, or was never there, is dropped
// silently, as UDP would send it into the void. It fails once the
// Listener is closed or the write deadline has passed, for an addr of
// another type, and with EMSGSIZE (as UDP) for a packet above MaxPacket.
func (ln *Listener) WriteTo(b []byte, addr net.Addr) (int, error) {
	a, ok := addr.(Addr)
	if !ok {
		return 0, ln.opError("write", addr, fmt.Errorf("address %v is not a %s address", addr, Network))
	}
	if isClosed(ln.closed) {
		return 0, ln.opError("write", addr, net.ErrClosed)
	}
	if ln.wdl.passed() {
		return 0, ln.opError("write", addr, os.ErrDeadlineExceeded)
	}
	switch {
	case len(b) == 0:
		return 0, nil
	case len(b) > ln.cfg.MaxPacket:
		return 0, ln.opError("write", addr, os.NewSyscallError("write", syscall.EMSGSIZE))
	}
	ln.mu.RLock()
	l := ln.links[a.id]
	ln.mu.RUnlock()
	if l != nil && l.addr == addr { // the same number from another Listener is not this client
		l.send(b)
	}
	return len(b), nil
}

// Close stops accepting, ends the handshakes in progress, closes every
// client's connection and waits for the Listener's goroutines. A blocked
// ReadFrom returns an error wrapping net.ErrClosed.
func (ln *Listener) Close() error {
	ln.mu.Lock()
	if ln.links == nil {
		ln.mu.Unlock()
		return ln.opError("close", nil, net.ErrClosed)
	}
	links := ln.links
	ln.links = nil
	close(ln.closed)
	ln.mu.Unlock()
	ln.cancel()
	err := ln.tcp.Close()
	for _, l := range links {
		l.close(net.ErrClosed)
	}
	ln.wg.Wait()
	return err
}

// LocalAddr returns the listening TCP address (a *net.TCPAddr).
func (ln *Listener) LocalAddr() net.Addr { return ln.tcp.Addr() }

// SetDeadline sets the read and write deadlines.
func (ln *Listener) SetDeadline(t time.Time) error {
	ln.rdl.set(t)
	ln.wdl.set(t)
	return nil
}

// SetReadDeadline sets the deadline for ReadFrom. quic-go's
// Transport.Close sets it to now to stop its reader.
func (ln *Listener) SetReadDeadline(t time.Time) error {
	ln.rdl.set(t)
	return nil
}

// SetWriteDeadline sets the write deadline: once it has passed, WriteTo
// fails with a timeout.
func (ln *Listener) SetWriteDeadline(t time.Time) error {
	ln.wdl.set(t)
	return nil
}

// SetReadBuffer does nothing and returns nil; see
// [PacketConn.SetReadBuffer]. The receive queue's size is
// ServerConfig.ReceiveQueue.
func (ln *Listener) SetReadBuffer(int) error { return nil }

// SetWriteBuffer does nothing and returns nil; see
// [PacketConn.SetReadBuffer].
func (ln *Listener) SetWriteBuffer(int) error { return nil }

// Stats returns the Listener's counters. Safe for concurrent use.
func (ln *Listener) Stats() Stats {
	ln.mu.RLock()
	clients := len(ln.links)
	ln.mu.RUnlock()
	ln.pendMu.Lock()
	pending := ln.pending.Len()
	ln.pendMu.Unlock()
	return Stats{
		Accepted:          ln.accepted.Load(),
		RefusedKeys:       ln.refusedKeys.Load(),
		HandshakeTimeouts: ln.handshakeTimeouts.Load(),
		HandshakeErrors:   ln.handshakeErrors.Load(),
		Evicted:           ln.evicted.Load(),
		BadFrames:         ln.badFrames.Load(),
		IdleCloses:        ln.idleCloses.Load(),
		SendDrops:         ln.sendDrops.Load(),
		ReceiveWaits:      ln.receiveWaits.Load(),
		Clients:           clients,
		Pending:           pending,
	}
}

func (ln *Listener) opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: Network, Source: ln.tcp.Addr(), Addr: addr, Err: err}
}

var _ net.PacketConn = (*Listener)(nil)
