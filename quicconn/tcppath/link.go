// SPDX-License-Identifier: MIT

package tcppath

// A link is one authenticated TLS connection and the frames on it:
//
//	WriteTo ── copy into a pooled buffer ──▶ l.out (bounded; full: wait up to
//	        SendWait for room, then drop, count)
//	        ──▶ l.write (1 goroutine): frames into a bufio.Writer,
//	            one Flush per burst ──▶ TLS ──▶ TCP
//	TCP ──▶ TLS ──▶ l.r (bufio.Reader) ──▶ readFrame
//	        (the dialer's ReadFrom directly; the listener's receive
//	        goroutine, one per link, into its shared queue)
//
// The caller of WriteTo waits at most SendWait: a writer that is only
// behind (a burst larger than the queue, the writer goroutine not yet
// scheduled) makes quic-go's sender wait for it, so that quic-go, whose
// congestion control is off on this path, is paced by TCP instead of
// losing the excess; a peer that stops reading fills its TCP window, then
// its queue, and then its packets are dropped after that wait, as a full
// UDP socket buffer would drop them; the peer's QUIC connection sees loss. The writer coalesces what is queued into TLS
// records of up to 16 KiB, so a burst costs one write system call per
// record instead of one per packet; a lone packet goes out at once.

import (
	"bufio"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// writerSize is the size of a link's bufio.Writer, and so the largest
// TLS record the writer makes (crypto/tls makes one record per Write of
// up to 16 KiB). Coalescing happens only when packets queue up, that is
// when the writer is already behind; a lone packet is one record.
const writerSize = maxTLSRecord

// bufPool hands out packet buffers of one size (the MaxPacket of a
// Listener or PacketConn). The pool holds pointers to slices, not slices,
// so that Put does not allocate (staticcheck SA6002); the size is not a
// constant, so it cannot be a pointer to an array.
type bufPool struct {
	p    sync.Pool
	size int
}

func newBufPool(size int) *bufPool {
	bp := &bufPool{size: size}
	bp.p.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return bp
}

// get returns a buffer of the pool's size. The caller owns it until put.
func (bp *bufPool) get() *[]byte {
	b := bp.p.Get().(*[]byte)
	*b = (*b)[:bp.size]
	return b
}

// put returns b to the pool; the caller must not use it afterwards.
func (bp *bufPool) put(b *[]byte) { bp.p.Put(b) }

// link is one TLS connection carrying frames. Its send side is safe for
// concurrent use; its reader r belongs to one goroutine at a time.
type link struct {
	raw   net.Conn  // the TCP connection; closing it stops both directions at once
	conn  *tls.Conn // over raw, handshake done
	r     *bufio.Reader
	addr  net.Addr // an Addr, boxed once: what ReadFrom returns with this link's packets
	limit int      // MaxPacket
	pool  *bufPool
	out   chan *[]byte  // send queue; never closed
	wait  time.Duration // how long send waits for room in a full queue
	drops *atomic.Uint64
	// stall, if not zero, closes the link when a write makes no progress
	// for this long (the listener's IdleTimeout).
	stall time.Duration

	done      chan struct{} // closed by close
	closeOnce sync.Once
	err       error // why the link closed; set before done is closed
}

// newLink wraps an established TLS connection. The caller starts
// l.write.
func newLink(raw net.Conn, conn *tls.Conn, addr Addr, limit, queue int, wait time.Duration, pool *bufPool, drops *atomic.Uint64) *link {
	return &link{
		raw:   raw,
		conn:  conn,
		r:     bufio.NewReaderSize(conn, readerSize(limit)),
		addr:  addr,
		limit: limit,
		pool:  pool,
		out:   make(chan *[]byte, queue),
		wait:  wait,
		drops: drops,
		done:  make(chan struct{}),
	}
}

// send queues a copy of packet p, 0 < len(p) <= l.limit, for the writer.
// When the queue is full it waits up to l.wait for room, then drops the
// packet and counts it. After close it does nothing.
func (l *link) send(p []byte) {
	select {
	case <-l.done:
		return
	default:
	}
	b := l.pool.get()
	*b = (*b)[:copy(*b, p)]
	select {
	case l.out <- b:
		return
	default:
	}
	if l.wait > 0 {
		// Only when the writer is behind: the timer's allocation is paid
		// while waiting anyway.
		t := time.NewTimer(l.wait)
		select {
		case l.out <- b:
			t.Stop()
			return
		case <-l.done:
			t.Stop()
			l.pool.put(b)
			return
		case <-t.C:
		}
	}
	l.pool.put(b)
	l.drops.Add(1)
}

// write is the link's writer goroutine: it frames queued packets into a
// bufio.Writer and flushes once the queue is empty. It returns when the
// link closes, or closes it on a write error.
func (l *link) write() {
	defer l.drain()
	w := bufio.NewWriterSize(l.conn, writerSize)
	var armed time.Time // when the write deadline was last pushed back
	for {
		var b *[]byte
		select {
		case b = <-l.out:
		case <-l.done:
			return
		}
		if l.stall > 0 {
			// Push the deadline back at most four times per stall period:
			// a deadline costs a timer update.
			if now := time.Now(); now.Sub(armed) > l.stall/4 {
				l.raw.SetWriteDeadline(now.Add(l.stall))
				armed = now
			}
		}
		for b != nil {
			err := writeFrame(w, *b)
			l.pool.put(b)
			if err != nil {
				l.close(err)
				return
			}
			select {
			case b = <-l.out:
			default:
				b = nil
			}
		}
		if err := w.Flush(); err != nil {
			l.close(err)
			return
		}
	}
}

// drain returns the queued buffers to the pool. Packets that send queues
// after it ran are left to the garbage collector.
func (l *link) drain() {
	for {
		select {
		case b := <-l.out:
			l.pool.put(b)
		default:
			return
		}
	}
}

// close closes the TCP connection (without a TLS close_notify, which
// could block behind a stalled write) and records err as the reason. Only
// the first call has an effect.
func (l *link) close(err error) {
	l.closeOnce.Do(func() {
		l.err = err
		close(l.done)
		l.raw.Close()
	})
}

// closed reports whether close was called; if so, l.err is the reason.
func (l *link) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}
