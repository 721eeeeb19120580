// SPDX-License-Identifier: MIT

package tcppath

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// ClientConfig configures [Dial]. The zero value of every field except
// PrivateKey and PeerKey is a documented default. Dial copies what it
// needs; later changes have no effect.
type ClientConfig struct {
	// PrivateKey is this node's identity, presented as a self-signed
	// certificate. Required.
	PrivateKey ed25519.PrivateKey
	// PeerKey is the hub's public key: the server's certificate must
	// carry exactly this key. Required.
	PeerKey key.Public
	// ServerName is sent as TLS SNI. It is not verified (the key is
	// pinned), but some middleboxes on port 443 want a name. Empty means
	// the host part of Dial's addr when it is a name, and no SNI when it
	// is an IP address.
	ServerName string
	// Proxy, if not nil, is an HTTP proxy ("http://host:port", the port
	// 80 if absent) to reach the hub through with CONNECT. User
	// information in the URL ("http://user:pass@host:3128") is sent as
	// Basic proxy authorization. Nil connects directly.
	Proxy *url.URL
	// MaxPacket is the largest packet accepted from the hub and sent to
	// it. Zero means [DefaultMaxPacket]; otherwise it must be in
	// [MinMaxPacket, 65535]. It must match the hub's, or the larger side's
	// packets close the connection.
	MaxPacket int
	// SendQueue is how many packets wait for the TCP connection; when it
	// is full, WriteTo waits up to SendWait for room, then drops the
	// packet. Zero means 128.
	SendQueue int
	// SendWait is how long WriteTo waits for room in a full send queue.
	// Zero means 20 ms; negative, not at all.
	SendWait time.Duration
	// Control, if not nil, is called on the TCP socket before it connects
	// (net.Dialer.Control): to set SO_MARK or bind it to an uplink.
	Control func(network, address string, c syscall.RawConn) error
}

func (c ClientConfig) withDefaults() ClientConfig {
	if c.MaxPacket == 0 {
		c.MaxPacket = DefaultMaxPacket
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 128
	}
	if c.SendWait == 0 {
		c.SendWait = 20 * time.Millisecond
	}
	return c
}

func (c ClientConfig) validate() error {
	if len(c.PrivateKey) != ed25519.PrivateKeySize {
		return errors.New("tcppath: ClientConfig.PrivateKey is not set")
	}
	if c.PeerKey.IsZero() {
		return errors.New("tcppath: ClientConfig.PeerKey is not set")
	}
	if err := checkMaxPacket(c.MaxPacket); err != nil {
		return err
	}
	if c.Proxy != nil && c.Proxy.Scheme != "http" {
		return fmt.Errorf("tcppath: proxy %s: scheme %q, want \"http\"", c.Proxy.Redacted(), c.Proxy.Scheme)
	}
	return nil
}

func checkMaxPacket(n int) error {
	if n != 0 && (n < MinMaxPacket || n > maxFrameLen) {
		return fmt.Errorf("tcppath: MaxPacket %d out of range [%d, %d]", n, MinMaxPacket, maxFrameLen)
	}
	return nil
}

// ErrRefused is wrapped by ReadFrom's error when the hub closed the
// connection with a TLS alert before sending anything: it refused this
// node's key (with "remote error: tls: bad certificate"). The hub's
// config lacks this node's public key, or has another.
var ErrRefused = errors.New("hub refused this node's key")

// PacketConn is the dialing side of a TCP path: one TLS connection to a
// hub, presented as a net.PacketConn for a quic.Transport of its own.
// ReadFrom returns one packet at a time, from the hub's [Addr]
// ([PacketConn.RemoteAddr]); WriteTo sends to that address only. Its
// methods are safe for concurrent use; ReadFrom calls are serialized.
//
// It is deliberately not a quic.OOBCapablePacketConn and has no
// SyscallConn, so quic-go reads and writes it one packet at a time,
// without GSO, ECN or the DF bit (and so without path MTU discovery).
type PacketConn struct {
	l      *link
	local  net.Addr
	remote net.Addr // an Addr
	limit  int

	readMu    sync.Mutex // serializes ReadFrom: l.r has one reader
	gotPacket bool       // a packet was read; guarded by readMu
	wdl       writeDeadline

	sendDrops atomic.Uint64
	badFrames atomic.Uint64
}

// Dial connects to the hub at addr ("host:port") over TCP, through
// cfg.Proxy if set, and completes a TLS 1.3 handshake with ALPN [ALPN]
// that presents cfg.PrivateKey and pins cfg.PeerKey. ctx bounds all of
// it; once Dial returns, ctx has no effect. A hub that refuses this
// node's key cannot say so before Dial returns (in TLS 1.3 the client's
// handshake ends before the server checks its certificate): the refusal
// is the first ReadFrom's error, wrapping [ErrRefused].
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*PacketConn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tcppath: dial %s: %w", addr, err)
	}
	serverName := cfg.ServerName
	if serverName == "" && net.ParseIP(host) == nil {
		serverName = host
	}
	cert, err := newCertificate(cfg.PrivateKey)
	if err != nil {
		return nil, err
	}
	target, via := addr, ""
	if cfg.Proxy != nil {
		target, via = proxyAddr(cfg.Proxy), " via proxy "+cfg.Proxy.Redacted()
	}
	d := net.Dialer{Control: cfg.Control}
	raw, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("tcppath: dial %s%s: %w", addr, via, err)
	}
	// ctx interrupts the CONNECT exchange through the deadline;
	// HandshakeContext watches ctx itself.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	conn, err := handshake(ctx, raw, addr, cfg, cert, serverName)
	if !stop() {
		// ctx ended: name it, not the deadline it set on raw, as the
		// reason (and if the handshake had just succeeded, the deadline
		// may still be on raw: fail all the same).
		switch cause := context.Cause(ctx); {
		case err == nil:
			err = cause
		case !errors.Is(err, cause):
			err = fmt.Errorf("%w: %v", cause, err)
		}
	}
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("tcppath: dial %s%s: %w", addr, via, err)
	}
	c := &PacketConn{
		local:  raw.LocalAddr(),
		remote: newAddr(addrPortOf(raw.RemoteAddr()), 0),
		limit:  cfg.MaxPacket,
	}
	c.l = newLink(raw, conn, c.remote.(Addr), cfg.MaxPacket, cfg.SendQueue, cfg.SendWait, newBufPool(cfg.MaxPacket), &c.sendDrops)
	go c.l.write()
	return c, nil
}

// handshake runs the CONNECT exchange, if there is a proxy, and the TLS
// handshake on raw.
func handshake(ctx context.Context, raw net.Conn, addr string, cfg ClientConfig, cert tls.Certificate, serverName string) (*tls.Conn, error) {
	if cfg.Proxy != nil {
		if err := connect(raw, cfg.Proxy, addr); err != nil {
			return nil, err
		}
	}
	conn := tls.Client(raw, clientTLSConfig(cert, cfg.PeerKey, serverName))
	if err := conn.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return conn, nil
}

// ReadFrom reads the next packet from the hub into b and returns its
// length (a packet longer than b is truncated to len(b), as a UDP socket
// does) and the hub's address. It blocks until a packet arrives, the read
// deadline passes (a timeout error; the connection stays usable) or the
// connection fails or is closed: then the connection is closed and every
// later call fails too. A frame of length 0 or above MaxPacket from the
// hub is such a failure ([ErrFrameSize]), and so is a hub that refused
// this node's key ([ErrRefused]).
func (c *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.l.closed() {
		return 0, nil, c.opError("read", c.l.err)
	}
	n, err := readFrame(c.l.r, c.limit, b)
	if err == nil {
		c.gotPacket = true
		return n, c.remote, nil
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return 0, nil, err // as net.UDPConn: temporary, retry possible
	}
	var oe *net.OpError
	switch {
	case errors.Is(err, ErrFrameSize):
		c.badFrames.Add(1)
	case !c.gotPacket && errors.As(err, &oe) && oe.Op == "remote error":
		// A TLS alert before anything else: the hub's VerifyConnection
		// refused this node's key (crypto/tls reports a received alert
		// as an OpError "remote error").
		err = fmt.Errorf("%w: %w", ErrRefused, err)
	}
	c.l.close(err)
	return 0, nil, c.opError("read", c.l.err)
}

// WriteTo sends packet b to the hub. addr must be [PacketConn.RemoteAddr].
// It never blocks: the packet is copied into the send queue, or dropped
// and counted (SendDrops) when the queue is full, as a UDP socket drops
// what its buffer cannot hold. It fails once the connection is closed or
// the write deadline has passed, and with EMSGSIZE (as UDP) for a packet
// above MaxPacket.
func (c *PacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if addr != c.remote {
		return 0, c.opError("write", fmt.Errorf("address %v is not the hub's (%v)", addr, c.remote))
	}
	if c.l.closed() {
		return 0, c.opError("write", c.l.err)
	}
	if c.wdl.passed() {
		return 0, c.opError("write", os.ErrDeadlineExceeded)
	}
	switch {
	case len(b) == 0:
		return 0, nil // frames are never empty: nothing to send
	case len(b) > c.limit:
		return 0, c.opError("write", os.NewSyscallError("write", syscall.EMSGSIZE))
	}
	c.l.send(b)
	return len(b), nil
}

// Close closes the TCP connection. A blocked ReadFrom returns an error
// wrapping net.ErrClosed.
func (c *PacketConn) Close() error {
	if c.l.closed() {
		return c.opError("close", net.ErrClosed)
	}
	c.l.close(net.ErrClosed)
	return nil
}

// LocalAddr returns the local TCP address (a *net.TCPAddr).
func (c *PacketConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the hub's address: an [Addr] with ID 0. Dial the QUIC
// connection to it; it is the only address WriteTo accepts and the one
// ReadFrom returns.
func (c *PacketConn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *PacketConn) SetDeadline(t time.Time) error {
	c.wdl.set(t)
	return c.l.raw.SetReadDeadline(t)
}

// SetReadDeadline sets the deadline for ReadFrom, on the TCP connection.
func (c *PacketConn) SetReadDeadline(t time.Time) error { return c.l.raw.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline: once it has passed, WriteTo
// fails with a timeout. (WriteTo never blocks, so it cannot interrupt
// one.)
func (c *PacketConn) SetWriteDeadline(t time.Time) error {
	c.wdl.set(t)
	return nil
}

// SetReadBuffer does nothing and returns nil. quic-go calls it on every
// PacketConn it is given, to ask for 7 MiB socket buffers; without the
// method it logs, through the standard library's global logger, that the
// buffer cannot be set, and that warning is shared process-wide
// (sync.Once) with the real UDP sockets', which it would then hide. The
// TCP socket buffers are the kernel's to size (autotuning).
func (c *PacketConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer does nothing and returns nil; see SetReadBuffer.
func (c *PacketConn) SetWriteBuffer(int) error { return nil }

// Stats returns the connection's counters: SendDrops and BadFrames (the
// other fields are the Listener's). Safe for concurrent use.
func (c *PacketConn) Stats() Stats {
	return Stats{SendDrops: c.sendDrops.Load(), BadFrames: c.badFrames.Load()}
}

func (c *PacketConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: Network, Source: c.local, Addr: c.remote, Err: err}
}

var _ net.PacketConn = (*PacketConn)(nil)
