// SPDX-License-Identifier: MIT

// Package flight makes the first flights of fresh QUIC clients (the
// Initial datagrams that carry a ClientHello) without sending them, for
// flood tests: sent from anywhere and never continued, each one leaves a
// listener with a half-open handshake. quic-go's own client builds them,
// each with fresh connection IDs and key shares, so they are exactly what
// a real client sends first.
package flight

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Maker makes first flights. It is not safe for concurrent use.
type Maker struct {
	pc   *capture
	tr   *quic.Transport
	tls  *tls.Config
	conf *quic.Config
	n    int // datagrams in a first flight; 0 until the first Next
}

// NewMaker returns a Maker for a listener that speaks alpn (a ClientHello
// with another ALPN is refused at once, not left half-open), with
// initialPacketSize as the client's quic.Config.InitialPacketSize (0:
// quic-go's default). Close it after use.
func NewMaker(alpn string, initialPacketSize int) *Maker {
	pc := &capture{closed: make(chan struct{})}
	return &Maker{
		pc:   pc,
		tr:   &quic.Transport{Conn: pc},
		tls:  &tls.Config{NextProtos: []string{alpn}, ServerName: "flood", InsecureSkipVerify: true},
		conf: &quic.Config{InitialPacketSize: uint16(initialPacketSize), HandshakeIdleTimeout: time.Second},
	}
}

// Next returns the datagrams of one new client's first flight. The client
// is abandoned: nothing it would send later is returned.
func (m *Maker) Next() ([][]byte, error) {
	ch := make(chan []byte, 16)
	m.pc.mu.Lock()
	m.pc.out = ch
	m.pc.mu.Unlock()
	defer func() {
		m.pc.mu.Lock()
		m.pc.out = nil
		m.pc.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := m.tr.DialEarly(ctx, &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4433}, m.tls, m.conf)
		if err == nil {
			_ = conn.CloseWithError(0, "")
		}
	}()
	defer func() {
		cancel()
		<-done
	}()
	var out [][]byte
	// The first call learns how many datagrams a first flight has (two
	// with a post-quantum key share in the ClientHello), waiting for
	// quiet; later ones wait for exactly that many.
	quiet := 100 * time.Millisecond
	t := time.NewTimer(time.Second)
	defer t.Stop()
	for m.n == 0 || len(out) < m.n {
		select {
		case b := <-ch:
			out = append(out, b)
			if m.n == 0 {
				t.Reset(quiet)
			}
		case <-t.C:
			if m.n == 0 && len(out) > 0 {
				m.n = len(out)
				return out, nil
			}
			return nil, errors.New("flight: no first flight within 1 s")
		}
	}
	return out, nil
}

// Close releases the Maker.
func (m *Maker) Close() error {
	m.pc.Close() // first: the Transport waits for its reader
	return m.tr.Close()
}

// capture is a PacketConn that hands what is written to out (when set) and
// never receives anything.
type capture struct {
	mu     sync.Mutex // mu guards the following field.
	out    chan []byte
	closed chan struct{}
	once   sync.Once
}

func (c *capture) ReadFrom([]byte) (int, net.Addr, error) {
	<-c.closed
	return 0, nil, net.ErrClosed
}

func (c *capture) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.out != nil {
		select {
		case c.out <- append([]byte(nil), b...):
		default:
		}
	}
	return len(b), nil
}

func (c *capture) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *capture) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(192, 0, 2, 2), Port: 40000}
}

func (c *capture) SetDeadline(time.Time) error      { return nil }
func (c *capture) SetReadDeadline(time.Time) error  { return nil }
func (c *capture) SetWriteDeadline(time.Time) error { return nil }

// SetReadBuffer and SetWriteBuffer do nothing; they keep quic-go from
// warning about the buffer sizes of a PacketConn that is not a socket.
func (c *capture) SetReadBuffer(int) error  { return nil }
func (c *capture) SetWriteBuffer(int) error { return nil }
