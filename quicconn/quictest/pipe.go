// SPDX-License-Identifier: MIT

// Package quictest has an in-memory test double for the connections of
// package quicconn, as package tunnel sees them: datagram pipes ([Pipe])
// with quic-go's bounded receive queue and "too large" error, without
// quic-go, so that the tunnel's tests do not link it.
package quictest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
)

// pipeQueueLen is how many datagrams a PipeConn buffers for its reader,
// like quic-go's bounded receive queue.
const pipeQueueLen = 256

// DatagramTooLargeError is returned by [PipeConn.SendDatagram] for a
// datagram longer than the limit set with SetLimit. Like quic-go's error
// of the same name, it reports the live limit through DatagramLimit.
type DatagramTooLargeError struct {
	Limit int // the maximum datagram payload at the time of the call
}

// Error implements error.
func (e *DatagramTooLargeError) Error() string {
	return fmt.Sprintf("quictest: datagram too large (limit %d)", e.Limit)
}

// DatagramLimit returns e.Limit.
func (e *DatagramTooLargeError) DatagramLimit() int { return e.Limit }

// pipe is the state the two ends share.
type pipe struct {
	closed    chan struct{}
	closeOnce sync.Once
}

// PipeConn is one end of an in-memory datagram connection made by Pipe.
// It has the method set of a QUIC datagram connection (SendDatagram,
// ReceiveDatagram, Close). All methods are safe for concurrent use.
type PipeConn struct {
	p     *pipe
	in    chan []byte // datagrams for this end's ReceiveDatagram
	other *PipeConn

	limit atomic.Int64 // 0: no limit

	// mu guards the following fields.
	mu    sync.Mutex
	stall chan struct{} // non-nil while stalled; closed by Unstall

	sent     atomic.Uint64
	received atomic.Uint64
}

// Pipe returns the two ends of a connected in-memory datagram pipe: what
// one end sends, the other receives, in order and without loss. Each
// direction buffers a bounded number of datagrams; SendDatagram blocks
// while the other end's buffer is full.
func Pipe() (a, b *PipeConn) {
	p := &pipe{closed: make(chan struct{})}
	a = &PipeConn{p: p, in: make(chan []byte, pipeQueueLen)}
	b = &PipeConn{p: p, in: make(chan []byte, pipeQueueLen)}
	a.other, b.other = b, a
	return a, b
}

var errPipeClosed = fmt.Errorf("quictest: pipe closed: %w", net.ErrClosed)

// SendDatagram copies b and queues the copy for the other end. It returns a
// *DatagramTooLargeError if b is longer than the limit set with SetLimit,
// blocks while the end is stalled (see Stall) or the other end's queue is
// full, and returns an error wrapping [net.ErrClosed] once the pipe is
// closed.
func (c *PipeConn) SendDatagram(b []byte) error {
	c.mu.Lock()
	stall := c.stall
	c.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-c.p.closed:
			return errPipeClosed
		}
	}
	if l := int(c.limit.Load()); l > 0 && len(b) > l {
		return &DatagramTooLargeError{Limit: l}
	}
	select {
	case <-c.p.closed:
		return errPipeClosed
	default:
	}
	d := append([]byte(nil), b...)
	select {
	case c.other.in <- d:
		c.sent.Add(1)
		return nil
	case <-c.p.closed:
		return errPipeClosed
	}
}

// ReceiveDatagram blocks for the next datagram from the other end; the
// caller owns it. It returns ctx's error when ctx is done and an error
// wrapping [net.ErrClosed] once the pipe is closed.
func (c *PipeConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	select {
	case <-c.p.closed:
		return nil, errPipeClosed
	default:
	}
	select {
	case d := <-c.in:
		c.received.Add(1)
		return d, nil
	case <-c.p.closed:
		return nil, errPipeClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close closes both ends: blocked and later calls on either end return an
// error. It may be called more than once.
func (c *PipeConn) Close() error {
	c.p.closeOnce.Do(func() { close(c.p.closed) })
	return nil
}

// SetLimit sets the maximum datagram this end sends; 0 (the default) means
// no limit. It takes effect for the next SendDatagram.
func (c *PipeConn) SetLimit(n int) { c.limit.Store(int64(n)) }

// Stall makes this end's SendDatagram block, as on a congested path, until
// Unstall or Close. Calls already blocked on the other end's full queue are
// unaffected.
func (c *PipeConn) Stall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stall == nil {
		c.stall = make(chan struct{})
	}
}

// Unstall releases the SendDatagram calls blocked by Stall.
func (c *PipeConn) Unstall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stall != nil {
		close(c.stall)
		c.stall = nil
	}
}

// Sent reports how many datagrams this end has queued for the other end.
func (c *PipeConn) Sent() uint64 { return c.sent.Load() }

// Received reports how many datagrams this end's ReceiveDatagram returned.
func (c *PipeConn) Received() uint64 { return c.received.Load() }
