package quic

import (
	"net"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go/internal/monotime"
	"github.com/quic-go/quic-go/internal/protocol"
)

type sender interface {
	Send(p *packetBuffer, gsoSize uint16, ecn protocol.ECN)
	SendProbe(*packetBuffer, net.Addr, packetInfo)
	Run() error
	WouldBlock() bool
	Available() <-chan struct{}
	Close()
}

type queueEntry struct {
	buf     *packetBuffer
	gsoSize uint16
	ecn     protocol.ECN
}

type sendQueue struct {
	queue       chan queueEntry
	closeCalled chan struct{} // runStopped when Close() is called
	runStopped  chan struct{} // runStopped when the run loop returns
	available   chan struct{}
	conn        sendConn

	// Godwit: Send writes a packet itself when the connection has been
	// idle (see inlineIdle), instead of waking the Run goroutine.
	busy   atomic.Int32     // packets given to Send and not written yet (queued or being written)
	recent [2]monotime.Time // times of the last two Send calls; run loop only
	failed chan struct{}    // closed when a write in Send failed; Run then returns err
	err    error            // set before failed is closed
}

var _ sender = &sendQueue{}

const sendQueueCapacity = 8

// inlineIdle is how long before a packet the one before the previous one
// must have been sent for Send to write the packet itself (Godwit). On an
// idle process each goroutine hand-off may have to wake a sleeping thread,
// which in a VM costs tens of microseconds per packet; this keeps those
// writes off the Run goroutine. It bounds the writes made on the run loop
// to two per inlineIdle, so that under load packing and writing still run
// in parallel, and the kernel has had inlineIdle to drain the socket buffer.
const inlineIdle = time.Millisecond

func newSendQueue(conn sendConn) sender {
	return &sendQueue{
		conn:        conn,
		runStopped:  make(chan struct{}),
		closeCalled: make(chan struct{}),
		available:   make(chan struct{}, 1),
		failed:      make(chan struct{}),
		queue:       make(chan queueEntry, sendQueueCapacity),
	}
}

// Send sends out a packet. It's guaranteed to not block, except that on
// an idle connection it writes the packet itself (see inlineIdle), where
// sendmsg blocks only if the socket's send buffer is full.
// Callers need to make sure that there's actually space in the send queue by calling WouldBlock.
// Otherwise Send will panic.
// Send is only called from the connection's run loop.
func (h *sendQueue) Send(p *packetBuffer, gsoSize uint16, ecn protocol.ECN) {
	if h.err != nil { // an earlier write in Send failed: Run returns that error
		p.Release()
		return
	}
	now := monotime.Now()
	idle := now.Sub(h.recent[0]) >= inlineIdle
	h.recent[0], h.recent[1] = h.recent[1], now
	// busy == 0: nothing is queued or being written, so writing here keeps
	// the packets in order.
	if idle && h.busy.CompareAndSwap(0, 1) {
		select {
		case <-h.runStopped:
			p.Release()
			return
		default:
		}
		err := h.conn.Write(p.Data, gsoSize, ecn)
		p.Release()
		h.busy.Add(-1)
		if err != nil && !isSendMsgSizeErr(err) { // as in Run
			h.err = err
			close(h.failed)
		}
		return
	}
	h.busy.Add(1)
	select {
	case h.queue <- queueEntry{buf: p, gsoSize: gsoSize, ecn: ecn}:
		// clear available channel if we've reached capacity
		if len(h.queue) == sendQueueCapacity {
			select {
			case <-h.available:
			default:
			}
		}
	case <-h.runStopped:
	default:
		panic("sendQueue.Send would have blocked")
	}
}

func (h *sendQueue) SendProbe(p *packetBuffer, addr net.Addr, info packetInfo) {
	h.conn.WriteTo(p.Data, addr, info)
}

func (h *sendQueue) WouldBlock() bool {
	return len(h.queue) == sendQueueCapacity
}

func (h *sendQueue) Available() <-chan struct{} {
	return h.available
}

func (h *sendQueue) Run() error {
	defer close(h.runStopped)
	var shouldClose bool
	for {
		if shouldClose && len(h.queue) == 0 {
			return nil
		}
		select {
		case <-h.closeCalled:
			h.closeCalled = nil // prevent this case from being selected again
			// make sure that all queued packets are actually sent out
			shouldClose = true
		case <-h.failed:
			return h.err
		case e := <-h.queue:
			if err := h.conn.Write(e.buf.Data, e.gsoSize, e.ecn); err != nil {
				// This additional check enables:
				// 1. Checking for "datagram too large" message from the kernel, as such,
				// 2. Path MTU discovery,and
				// 3. Eventual detection of loss PingFrame.
				if !isSendMsgSizeErr(err) {
					return err
				}
			}
			e.buf.Release()
			h.busy.Add(-1)
			select {
			case h.available <- struct{}{}:
			default:
			}
		}
	}
}

func (h *sendQueue) Close() {
	close(h.closeCalled)
	// wait until the run loop returned
	<-h.runStopped
}
