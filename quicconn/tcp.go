// SPDX-License-Identifier: MIT

package quicconn

// TCP paths: the same QUIC connections over TLS on TCP (package tcppath),
// for networks that block UDP. A hub with Config.ListenTCP runs a second
// Transport on a tcppath.Listener beside the UDP one; a site dials each TCP
// path on a Transport of its own (DialTCP). A connection cannot move
// between a UDP and a TCP Transport (tcppath's doc says why), so a TCP
// path is a connection of its own: the daemon makes it one more member of
// the peer's connection set.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"
	"github.com/godwit-vpn/godwit/quicconn/tcppath"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// tcpState is an Endpoint's TCP side.
type tcpState struct {
	// The hub's listener, its Transport and the QUIC listener on it; all
	// nil without Config.ListenTCP. Set by NewEndpoint, then read-only.
	sock *tcppath.Listener
	tr   *quic.Transport
	ln   *quic.EarlyListener

	mu    sync.Mutex            // mu guards dials and conns.
	dials map[*tcpDial]struct{} // the site's TCP paths not yet closed
	// conns are the hub's connections on its TCP listener, by client,
	// until they end: closed at once when their TCP connection is gone.
	conns map[tcppath.Addr]*quic.Conn

	// closedDrops are the send drops of the dialed TCP paths closed so far.
	closedDrops atomic.Uint64

	// wrap, if not nil, is what quic-go gets instead of each dialed
	// tcppath.PacketConn: tests record and replay through it. Set before
	// the first DialTCP.
	wrap func(net.PacketConn) net.PacketConn
}

// tcpDial is one TCP path a site dialed: its tcppath conn and the
// Transport on it, closed together once, when the connection on it ends
// or the Endpoint closes.
type tcpDial struct {
	once sync.Once
	pc   *tcppath.PacketConn
	tr   *quic.Transport
}

func (d *tcpDial) close() error {
	var err error
	d.once.Do(func() {
		// The Transport first: it does not close a conn it was given.
		err = errors.Join(d.tr.Close(), d.pc.Close())
	})
	return err
}

// markControl returns a net.Dialer or net.ListenConfig Control function
// that sets SO_MARK to mark, or nil when mark is 0.
func markControl(mark uint32) func(network, address string, c syscall.RawConn) error {
	if mark == 0 {
		return nil
	}
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
				serr = fmt.Errorf("set SO_MARK %#x: %w", mark, err)
			}
		}); err != nil {
			return err
		}
		return serr
	}
}

// tcpQUICConfig is qc for a TCP path: no path MTU discovery, since there
// is no UDP MTU to discover (tcppath's doc).
func tcpQUICConfig(qc *quic.Config) *quic.Config {
	qc.DisablePathMTUDiscovery = true
	return qc
}

// listenTCP starts the hub's TCP listener on Config.ListenTCP with the
// listener's TLS configuration tc, and its accept loop.
func (e *Endpoint) listenTCP(tc *tls.Config) error {
	sock, err := tcppath.Listen(listenNetwork("tcp", e.cfg.ListenTCP), e.cfg.ListenTCP, tcppath.ServerConfig{
		PrivateKey: e.cfg.PrivateKey,
		Authorize:  e.cfg.Authorize,
		Refused:    e.logRefused,
		Gone:       e.tcpGone,
		Control:    markControl(e.cfg.FwMark),
		Logger:     e.log.With("part", "tcppath"),
	})
	if err != nil {
		return fmt.Errorf("quicconn: listen_tcp %s: %w", e.cfg.ListenTCP, err)
	}
	tr := &quic.Transport{
		Conn:                  sock,
		ConnectionIDLength:    e.tr.ConnectionIDLength,
		ConnectionIDGenerator: e.tr.ConnectionIDGenerator,
		StatelessResetKey:     e.tr.StatelessResetKey,
		TokenGeneratorKey:     e.tr.TokenGeneratorKey,
		ConnContext:           e.connContext,
	}
	ln, err := tr.ListenEarly(tc, tcpQUICConfig(e.quicConfig(nil)))
	if err != nil {
		_ = errors.Join(tr.Close(), sock.Close())
		return fmt.Errorf("quicconn: listen_tcp %s: %w", e.cfg.ListenTCP, err)
	}
	e.tcp.sock, e.tcp.tr, e.tcp.ln = sock, tr, ln
	e.wg.Add(1)
	go e.acceptLoop(ln)
	e.log.Info("quicconn: listening on TCP", "addr", sock.LocalAddr().String())
	return nil
}

// watchTCP keeps qc, an incoming connection from the TCP listener's
// client a, until it ends, so that tcpGone can close it when its TCP
// connection is gone: without this, the hub would keep a connection that
// can never receive again for its idle timeout.
func (e *Endpoint) watchTCP(a tcppath.Addr, qc *quic.Conn) {
	e.tcp.mu.Lock()
	if e.tcp.conns == nil {
		e.tcp.conns = make(map[tcppath.Addr]*quic.Conn)
	}
	e.tcp.conns[a] = qc
	e.tcp.mu.Unlock()
	// Gone before it was recorded: tcpGone did not see it.
	if !e.tcp.sock.Connected(a) {
		e.tcpGone(a)
	}
	context.AfterFunc(qc.Context(), func() {
		e.tcp.mu.Lock()
		if e.tcp.conns[a] == qc {
			delete(e.tcp.conns, a)
		}
		e.tcp.mu.Unlock()
	})
}

// tcpGone closes the connection of the TCP listener's client a, whose TCP
// connection ended (tcppath.ServerConfig.Gone).
func (e *Endpoint) tcpGone(a tcppath.Addr) {
	e.tcp.mu.Lock()
	qc := e.tcp.conns[a]
	delete(e.tcp.conns, a)
	e.tcp.mu.Unlock()
	if qc != nil {
		// Nothing reaches the peer any more: the code and reason are for
		// this side's logs.
		_ = qc.CloseWithError(quic.ApplicationErrorCode(ctlmsg.CodeNoError), "tcp connection gone")
	}
}

// TCPListenerStats returns the counters of the hub's TCP listener, and
// false without one (Config.ListenTCP). Safe for concurrent use.
func (e *Endpoint) TCPListenerStats() (tcppath.Stats, bool) {
	if e.tcp.sock == nil {
		return tcppath.Stats{}, false
	}
	return e.tcp.sock.Stats(), true
}

// TCPListenAddr returns the address of the hub's TCP listener, or nil
// without one.
func (e *Endpoint) TCPListenAddr() net.Addr {
	if e.tcp.sock == nil {
		return nil
	}
	return e.tcp.sock.LocalAddr()
}

// DialTCP connects to the peer whose key must be peer over TLS on TCP at
// addr ("host:port", its listen_tcp), through the HTTP proxy if not nil,
// on a Transport of its own, and completes the QUIC handshake and hello
// exchange on it as Dial does (0-RTT included). The TCP socket gets
// Config.FwMark. The connection is pinned ([Conn.Pinned]): it never
// moves, and [Conn.Transport] reports "tcp" or "tcp via proxy". When it
// ends, its TCP connection and Transport are closed; when the TCP
// connection fails, the connection ends at once. ctx bounds the TCP
// connect, the CONNECT exchange and the outer TLS handshake too. The caller
// owns the returned Conn.
func (e *Endpoint) DialTCP(ctx context.Context, addr string, peer key.Public, proxy *url.URL) (*Conn, error) {
	if e.ctx.Err() != nil {
		return nil, fmt.Errorf("quicconn: dial tcp %s: %w", addr, net.ErrClosed)
	}
	dctx, cancel := context.WithTimeout(ctx, e.cfg.HandshakeTimeout)
	pc, err := tcppath.Dial(dctx, addr, tcppath.ClientConfig{
		PrivateKey: e.cfg.PrivateKey,
		PeerKey:    peer,
		Proxy:      proxy,
		Control:    markControl(e.cfg.FwMark),
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("quicconn: %w", err)
	}
	var conn net.PacketConn = pc
	if e.tcp.wrap != nil {
		conn = e.tcp.wrap(pc)
	}
	d := &tcpDial{pc: pc, tr: &quic.Transport{
		Conn:                  conn,
		ConnectionIDLength:    e.tr.ConnectionIDLength,
		ConnectionIDGenerator: e.tr.ConnectionIDGenerator,
		StatelessResetKey:     e.tr.StatelessResetKey,
		TokenGeneratorKey:     e.tr.TokenGeneratorKey,
	}}
	if !e.addTCPDial(d) {
		_ = d.close()
		return nil, fmt.Errorf("quicconn: dial tcp %s: %w", addr, net.ErrClosed)
	}
	c, err := e.dialAddr(ctx, d.tr, pc.RemoteAddr(), addr, peer, true, tcpQUICConfig(e.quicConfig(&peer)))
	if err != nil {
		e.dropTCPDial(d)
		return nil, err // names the address, and ErrRefused when the hub refused this node's key
	}
	c.id.viaProxy.Store(proxy != nil)
	c.initPath(nil)
	go func() {
		<-c.Done()
		e.dropTCPDial(d)
	}()
	return c, nil
}

// addTCPDial records d so that Close closes it; false when the Endpoint
// is closed.
func (e *Endpoint) addTCPDial(d *tcpDial) bool {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return false
	}
	e.tcp.mu.Lock()
	defer e.tcp.mu.Unlock()
	if e.tcp.dials == nil {
		e.tcp.dials = make(map[*tcpDial]struct{})
	}
	e.tcp.dials[d] = struct{}{}
	return true
}

// dropTCPDial closes d and forgets it.
func (e *Endpoint) dropTCPDial(d *tcpDial) {
	e.tcp.mu.Lock()
	_, ok := e.tcp.dials[d]
	delete(e.tcp.dials, d)
	e.tcp.mu.Unlock()
	if err := d.close(); err != nil {
		e.log.Debug("quicconn: closing a TCP path", "err", err)
	}
	if ok {
		e.tcp.closedDrops.Add(d.pc.Stats().SendDrops)
	}
}

// TCPSendDrops counts the packets this Endpoint's TCP paths dropped
// because a send queue stayed full for its wait: the dialed paths' and
// the TCP listener's, since the Endpoint was made. Safe for concurrent
// use.
func (e *Endpoint) TCPSendDrops() uint64 {
	n := e.tcp.closedDrops.Load()
	e.tcp.mu.Lock()
	for d := range e.tcp.dials {
		n += d.pc.Stats().SendDrops
	}
	e.tcp.mu.Unlock()
	if e.tcp.sock != nil {
		n += e.tcp.sock.Stats().SendDrops
	}
	return n
}

// closeTCP closes the TCP listener's Transport and socket and every TCP
// path still open; Close calls it after the conns are closed.
func (e *Endpoint) closeTCP() []error {
	var errs []error
	if e.tcp.tr != nil {
		if err := errors.Join(e.tcp.tr.Close(), e.tcp.sock.Close()); err != nil {
			errs = append(errs, fmt.Errorf("tcp listener: %w", err))
		}
	}
	e.tcp.mu.Lock()
	dials := make([]*tcpDial, 0, len(e.tcp.dials))
	for d := range e.tcp.dials {
		dials = append(dials, d)
	}
	clear(e.tcp.dials)
	e.tcp.mu.Unlock()
	for _, d := range dials {
		_ = d.close() // a TCP connection's close errors say nothing useful at shutdown
	}
	return errs
}

// DialLoopTCP is [Endpoint.DialLoop] over TCP: every attempt is DialTCP to
// addr through proxy (nil: directly). Backoff, redials, counters and
// ownership of the Conn are DialLoop's; cancel ctx to stop it, which
// closes the connection.
func (e *Endpoint) DialLoopTCP(ctx context.Context, addr string, peer key.Public, proxy *url.URL, up func(*Conn)) {
	dial := func(ctx context.Context) (*Conn, error) { return e.DialTCP(ctx, addr, peer, proxy) }
	log := e.log.With("addr", addr, "peer", keyString(peer), "transport", "tcp")
	dialLoop(ctx, log, backoff{e.cfg.RedialMin, e.cfg.RedialMax}, &e.zc, nil, e.noteDials(peer, dial), up)
}

// Transport names how c reaches its peer: "udp", "tcp" (TLS on TCP,
// package tcppath) or "tcp via proxy" (a dialed TCP path through an HTTP
// proxy). Safe for concurrent use.
func (c *Conn) Transport() string {
	if _, ok := c.qc.RemoteAddr().(tcppath.Addr); !ok {
		return "udp"
	}
	if c.id.viaProxy.Load() {
		return "tcp via proxy"
	}
	return "tcp"
}

// IsTCP reports whether c runs over TLS on TCP.
func (c *Conn) IsTCP() bool {
	_, ok := c.qc.RemoteAddr().(tcppath.Addr)
	return ok
}
