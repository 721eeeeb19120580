// SPDX-License-Identifier: MIT

package tunnel

// Inbound flow (network -> TUN):
//
//  1. p.receive (one goroutine per attached conn, sequential per conn,
//     parallel across conns): ReceiveDatagram, validate the IP header, trim
//     trailing bytes, check that the source address maps to THIS peer in
//     the allowed-IPs table, decrement the TTL; the packet stays in the
//     conn's buffer.
//     A conn that takes a datagram handler (quicconn.Conn) runs this step
//     on its own goroutine (quic-go's run loop) through the handler
//     p.receive installs, one hand-off fewer per packet; p.receive then
//     only drains what was queued before and waits for the conn's end.
//  2. Hand-off: to t.inbound, shared by all receivers and by the ICMP
//     errors the tunnel generates. Full: wait up to inboundWait (pushing
//     back on the socket), then drop and count.
//  3. writeTUN (one goroutine, sequential): blocks for the first packet,
//     takes more without blocking up to the batch size, copying each into
//     its own full-size buffers and releasing the conn's, and writes the
//     batch with one dev.Write.

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// receive is the receiver of conn a of peer p: it runs until ctx is done
// or a's ReceiveDatagram fails. When the conn can hand datagrams to a
// handler on its own goroutine (quicconn.Conn can), receive installs one
// that does the receiver's work there, saving a goroutine hand-off per
// datagram, and its loop then only drains what was queued before and
// waits for the conn's end.
func (p *peer) receive(ctx context.Context, a *attachment, log *slog.Logger) {
	defer p.t.wg.Done()
	log.Debug("tunnel: receiver started")
	defer log.Debug("tunnel: receiver stopped")
	r, _ := a.c.(DatagramReleaser)
	take := func(d []byte) {
		if ctx.Err() != nil { // detached: what a detached conn delivers is not ours
			if r != nil {
				r.ReleaseDatagram(d)
			}
			return
		}
		p.receivePacket(a.path.Load(), d, r)
	}
	if h, ok := a.c.(DatagramHandlerSetter); ok {
		h.SetDatagramHandler(take)
	}
	for {
		d, err := a.c.ReceiveDatagram(ctx)
		if err != nil {
			if ctx.Err() == nil {
				log.Info("tunnel: connection receive ended", "err", err)
				p.connDead(a)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		take(d)
	}
}

// receivePacket checks the datagram d, received on path ph (nil for a
// conn outside the path set), and queues the packet in it to writeTUN. It
// takes d: the packet stays in it (its TTL decremented in place) until
// writeTUN has written it, and then, or when it is dropped, d goes back to
// rel (nil: to the garbage collector). It does not allocate in steady
// state.
func (p *peer) receivePacket(ph *path, d []byte, rel DatagramReleaser) {
	pkt := packet{buf: d, rel: rel}
	if !p.checkInbound(ph, &pkt) {
		pkt.release()
		return
	}
	if !p.t.deliver(pkt) {
		pkt.release()
		p.stats.tunQueueFull.Add(1)
		return
	}
	n := len(pkt.data)
	p.stats.rxPackets.Add(1)
	p.stats.rxBytes.Add(uint64(n))
	stamp(&p.stats.lastRx, p.t.clock.Load())
	if ph != nil {
		ph.rxPackets.Add(1)
		ph.rxBytes.Add(uint64(n))
		if p.lastRxPath.Load() != ph {
			p.lastRxPath.Store(ph)
		}
	}
}

// checkInbound validates the datagram pkt.buf for receivePacket and sets
// pkt.data to the IP packet in it, with one hop less; it reports false,
// counted, for a datagram that must be dropped.
func (p *peer) checkInbound(ph *path, pkt *packet) bool {
	d := pkt.buf
	var num uint64 // of a sequenced datagram
	sequenced := len(d) > 0 && d[0]>>4 == seqNibble
	if sequenced {
		var ok bool
		if num, d, ok = p.parseSequenced(d); !ok {
			return false
		}
	}
	n, v := checkPacket(d)
	switch v {
	case verdictMalformed:
		p.stats.inMalformed.Add(1)
		return false
	case verdictUnknownFormat:
		p.stats.unknownFormat.Add(1)
		return false
	}
	if n > bufSize-packetOffset { // over 65519 bytes: no QUIC datagram is that large
		p.stats.inMalformed.Add(1)
		return false
	}
	if n > p.t.mtu && !p.mtuWarned.Load() && p.mtuWarned.CompareAndSwap(false, true) {
		// Delivered (the TUN takes it), but the two ends disagree: this
		// side's replies of that size get ICMP too big.
		p.log.Warn("tunnel: the peer sends packets larger than this TUN's MTU: set the same mtu on both ends",
			"packet", n, "mtu", p.t.mtu)
	}
	d = d[:n]
	tbl := p.t.table.Load()
	var src *slot
	if d[0]>>4 == 4 {
		src = tbl.lookup4([4]byte(d[12:16]))
	} else {
		src = tbl.lookup6([16]byte(d[8:24]))
	}
	if src == nil || !src.has(p) {
		p.stats.badSource.Add(1)
		return false
	}
	// The number is checked last, so that a packet dropped for another
	// reason neither takes it nor restarts the window.
	if sequenced && !p.firstCopy(ph, num) {
		return false
	}
	// The tunnel is a router hop between the peer's network and ours
	// (scenario S6 of TESTING.md): a packet that arrives with a TTL or
	// hop limit of 1 (or 0) may go no further, and everything else goes
	// on with one less. It is checked here, on the receiving side, so
	// that a peer cannot loop packets through us or reach past us with
	// TTL 1, whatever its own daemon does. WireGuard passes packets
	// through unchanged, like a link; see decrementTTL.
	if !ttlLeft(d) {
		p.stats.ttlExpired.Add(1)
		p.t.sendTimeExceeded(p, d)
		return false
	}
	decrementTTL(d)
	pkt.data = d
	return true
}

// deliver queues pkt to writeTUN and reports whether it did; on false the
// caller still owns pkt. When the queue is full it waits, up to
// inboundWait, for writeTUN to take a packet. Waiting holds up the
// receiver (for a quicconn.Conn, its run loop), which holds up the reading
// of the UDP socket: a burst waits in the kernel's socket buffer instead of
// being dropped here after it was read and decrypted, as WireGuard's
// receiver waits for its TUN write. A TUN writer stuck for longer loses
// packets, counted as tun_queue_full.
func (t *Tunnel) deliver(pkt packet) bool {
	select {
	case t.inbound <- pkt:
		return true
	default:
		return sendWithin(t.inbound, pkt, t.inWait)
	}
}

// sendWithin sends v on ch, waiting at most d, and reports whether it did.
// It does not allocate in steady state.
func sendWithin[T any](ch chan<- T, v T, d time.Duration) bool {
	timer := timerPool.Get().(*time.Timer)
	timer.Reset(d)
	defer func() {
		timer.Stop() // since Go 1.23 a stopped timer delivers nothing stale
		timerPool.Put(timer)
	}()
	select {
	case ch <- v:
		return true
	case <-timer.C:
		return false
	}
}

// timerPool holds stopped timers for sendWithin.
var timerPool = sync.Pool{New: func() any {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}}

// writeTUN writes the packets of t.inbound to the device, a batch per
// Write, until ctx is done. Each packet is copied into one of writeTUN's
// own full-size buffers (see bufSize), which stay the same from batch to
// batch and so stay in the cache, and released. A failed Write is counted
// and loses the packets of its batch that it did not write (wgtun tries
// each one; the error joins the failures); writeTUN returns an error only
// if the device is closed while ctx is not done.
func (t *Tunnel) writeTUN(ctx context.Context) error {
	t.log.Debug("tunnel: writeTUN started")
	defer t.log.Debug("tunnel: writeTUN stopped")
	var (
		bufs = make([][]byte, 0, t.batch)
		own  = make([][]byte, 0, t.batch) // grown as batches need them
	)
	add := func(pkt packet) {
		i := len(bufs)
		if i == len(own) {
			own = append(own, make([]byte, bufSize))
		}
		n := copy(own[i][packetOffset:], pkt.data)
		bufs = append(bufs, own[i][:packetOffset+n])
		pkt.release()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case pkt := <-t.inbound:
			t.writeBusy.Add(1) // odd: busy with this batch (see Probe)
			add(pkt)
		}
	drain:
		for len(bufs) < t.batch {
			select {
			case pkt := <-t.inbound:
				add(pkt)
			default:
				break drain
			}
		}
		_, err := t.dev.Write(bufs, packetOffset)
		clear(bufs)
		bufs = bufs[:0]
		t.writeBusy.Add(1)
		if err == nil {
			continue
		}
		if isClosedErr(err) {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("tunnel: write tun: %w", err)
		}
		t.tunWriteErrors.Add(1)
		if t.logLimit.allow(time.Now()) {
			t.log.Debug("tunnel: write tun", "err", err)
		}
	}
}
