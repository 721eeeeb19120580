// SPDX-License-Identifier: MIT

package tunnel

// Outbound flow (TUN -> network):
//
//  1. readTUN (one goroutine, sequential): reads a batch from the TUN into
//     its own full-size buffers at packetOffset, loads the allowed-IPs
//     table once per batch, validates each packet and looks up its
//     destination.
//  2. Hand-off: the packet is copied into an MTU-sized outbound buffer
//     that goes to the peer's bounded queue p.out. No route: an ICMP
//     unreachable is queued to writeTUN (rate-limited). Larger than the
//     MTU: an ICMP too big is queued instead. Queue full: the reader waits
//     up to outboundWait (pushing back on the inner senders), then drops
//     and counts, and drops at once while the peer stays stalled.
//  3. p.send (one goroutine per peer, sequential per peer, parallel across
//     peers): takes packets off p.out in order, waits while the peer has
//     no conn, calls SendDatagram and returns the buffer (or hands the
//     buffer over with SendDatagramOwned, saving quic-go's copy, to get it
//     back once it is in a packet). A packet over the
//     datagram limit becomes an ICMP "too big" queued to writeTUN.
//
// Only step 3 blocks on the network, and only for its own peer; step 2
// waits for it at most outboundWait per stall.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/godwit-vpn/godwit/tunnel/internal/seq"
	wgtun "golang.zx2c4.com/wireguard/tun"
)

// readTUN reads batches from the device until it fails or is closed. It
// returns nil when the device was closed during shutdown (ctx done).
func (t *Tunnel) readTUN(ctx context.Context) error {
	t.log.Debug("tunnel: readTUN started")
	defer t.log.Debug("tunnel: readTUN stopped")
	// The reader's buffers are its own for its lifetime, full size (see
	// bufSize); they are not pooled because they never leave readTUN.
	var (
		bufs  = make([][]byte, t.batch)
		sizes = make([]int, t.batch)
	)
	for i := range bufs {
		bufs[i] = make([]byte, bufSize)
	}
	for {
		n, err := t.dev.Read(bufs, sizes, packetOffset)
		t.readBusy.Add(1) // odd: busy with this batch (see Probe)
		if n > 0 {
			t.routeBatch(bufs, sizes[:n])
		}
		t.readBusy.Add(1)
		if err == nil {
			continue
		}
		if errors.Is(err, wgtun.ErrTooManySegments) {
			t.tooManySegments.Add(1)
			continue
		}
		if ctx.Err() != nil {
			return nil // device closed as part of the shutdown
		}
		return fmt.Errorf("tunnel: read tun: %w", err)
	}
}

// routeBatch hands each packet of a batch read into bufs (sizes[i] bytes
// at packetOffset) to its peer's queue, as a copy in an outbound buffer.
// It does not retain bufs and does not allocate in steady state.
func (t *Tunnel) routeBatch(bufs [][]byte, sizes []int) {
	tbl := t.table.Load()
	for i, size := range sizes {
		if size <= 0 || size > len(bufs[i])-packetOffset {
			t.stats.outMalformed.Add(1)
			continue
		}
		b := bufs[i][packetOffset : packetOffset+size]
		n, v := checkPacket(b)
		if v != verdictOK {
			t.stats.outMalformed.Add(1)
			continue
		}
		b = b[:n]
		var s *slot
		if b[0]>>4 == 4 {
			s = tbl.lookup4([4]byte(b[16:20]))
		} else {
			s = tbl.lookup6([16]byte(b[24:40]))
		}
		if s == nil {
			t.stats.noRoute.Add(1)
			t.sendICMP(b, icmpUnreachable, 0, t.unreachableLimit)
			continue
		}
		p := s.carrier()
		if n > t.mtu {
			// Only a route whose MTU is above the TUN's sends these
			// (the kernel does not check the device MTU). They would not
			// fit an outbound buffer, and they would not fit a datagram
			// either: the sender would answer with the same ICMP.
			p.stats.tooBig.Add(1)
			t.sendICMP(b, icmpTooBig, t.mtu, t.tooBigLimit)
			continue
		}
		// A full queue holds up the reader, up to outboundWait (t.outWait), like
		// wireguard-go's reader waits for its encryption queue: the TUN's
		// own queue and TCP's small-queue limit then push back on the
		// inner senders, where a drop here would make them retransmit.
		// A peer whose queue stays full for that long is stalled (no
		// conn, or a conn that takes nothing): its packets are dropped
		// (tail drop, counted) without waiting until its sender has
		// caught up, so that it holds up the other peers once, not for
		// every packet. readTUN is the only sender on p.out but for
		// the rare, rate-limited ICMP time exceeded (sendTimeExceeded,
		// which never waits), so the length check makes the copy only
		// for a packet that may be queued.
		if len(p.out) == cap(p.out) && p.stalled.Load() {
			p.stats.queueFull.Add(1)
			continue
		}
		ob := t.getOutBuf()
		copy(ob.b[packetOffset:], b)
		pkt := outPacket{buf: ob, n: n}
		select {
		case p.out <- pkt:
		default:
			if !sendWithin(p.out, pkt, t.outWait) {
				p.stalled.Store(true)
				t.putOutBuf(ob)
				p.stats.queueFull.Add(1)
			}
		}
	}
}

// send is the sender of p: it takes packets off p.out and sends them on
// the current conn until ctx is done.
func (p *peer) send(ctx context.Context, log *slog.Logger) {
	defer p.t.wg.Done()
	log.Debug("tunnel: sender started")
	defer log.Debug("tunnel: sender stopped")
	defer p.drain()
	for {
		var pkt outPacket
		select {
		case <-ctx.Done():
			return
		case pkt = <-p.out:
		}
		if p.stalled.Load() && len(p.out) <= cap(p.out)/2 {
			p.stalled.Store(false) // caught up: readTUN waits again
		}
		a, s := p.conn.Load(), p.sched.Load()
		for a == nil && s == nil {
			select {
			case <-ctx.Done():
				p.t.putOutBuf(pkt.buf)
				return
			case <-p.wake:
			}
			a, s = p.conn.Load(), p.sched.Load()
		}
		if s != nil {
			p.sendOnPaths(s, pkt, log)
			continue
		}
		p.sendPacket(a.c, pkt, log)
	}
}

// sendPacket sends pkt on c and returns its buffer to the pool, or hands
// it to c: a conn that sends without a copy (DatagramOwnedSender) gives it
// back when it is done.
func (p *peer) sendPacket(c DatagramConn, pkt outPacket, log *slog.Logger) {
	var err error
	if oc, ok := c.(DatagramOwnedSender); ok {
		err = oc.SendDatagramOwned(pkt.data(), pkt.buf)
	} else {
		err = c.SendDatagram(pkt.data())
		if err == nil {
			p.t.putOutBuf(pkt.buf)
		}
	}
	if err == nil {
		p.stats.txPackets.Add(1)
		p.stats.txBytes.Add(uint64(pkt.n))
		stamp(&p.stats.lastTx, p.t.clock.Load())
		return
	}
	p.sendFailed(err, pkt.data(), false, log)
	p.t.putOutBuf(pkt.buf) // on an error the buffer is still ours
}

// sendFailed counts a failed SendDatagram of the IP packet pkt and, when it
// was too large, answers it with an ICMP too big at the connection's limit
// (less the sequenced header when it had one).
func (p *peer) sendFailed(err error, pkt []byte, sequenced bool, log *slog.Logger) {
	var dl datagramLimiter
	if errors.As(err, &dl) {
		p.stats.tooBig.Add(1)
		limit := dl.DatagramLimit()
		if sequenced {
			limit -= seq.HeaderLen
		}
		if pkt[0]>>4 == 6 && limit < 1280 && p.v6LimitWarned.Swap(int64(limit)) != int64(limit) {
			// No Packet Too Big may say less than 1280 (RFC 8200 5), so
			// the sender never learns: IPv6 larger than limit cannot
			// cross this path (RFC 9484 7.2). Said once per limit.
			log.Warn("tunnel: the path to the peer carries datagrams of at most "+strconv.Itoa(limit)+
				" bytes, below the 1280 IPv6 needs: larger IPv6 packets are dropped (counted as too_big)",
				"limit", limit)
		}
		p.t.sendICMP(pkt, icmpTooBig, limit, p.t.tooBigLimit)
		return
	}
	p.stats.sendError.Add(1)
	if p.t.logLimit.allow(time.Now()) {
		log.Debug("tunnel: send datagram", "err", err)
	}
}

// drain returns the buffers left in p.out to the pool, without waiting.
func (p *peer) drain() {
	for {
		select {
		case pkt := <-p.out:
			p.t.putOutBuf(pkt.buf)
		default:
			return
		}
	}
}

// sendICMP queues to writeTUN an ICMP error of the given kind about orig
// (an IP packet accepted by checkPacket), if allowed and within the rate
// limit of bucket. It does not allocate.
func (t *Tunnel) sendICMP(orig []byte, kind icmpKind, mtu int, bucket *tokenBucket) {
	if noICMPAbout(orig) {
		return
	}
	if !bucket.allow(time.Now()) {
		t.icmpLimited.Add(1)
		return
	}
	src := t.src6
	if orig[0]>>4 == 4 {
		src = t.src4
	}
	if kind == icmpTooBig {
		// A packet from our own address arrives on the TUN with a local
		// source, which Linux drops as a martian (no accept_local)
		// before ICMP sees it: neither a local sender nor one behind
		// this node would learn the limit. The original destination is
		// routed through the TUN, so its address passes, strict rp_filter
		// included.
		src = dstAddr(orig)
	}
	buf := icmpPool.Get().(*[icmpBufSize]byte)
	n := buildICMP(buf[:], orig, kind, mtu, src)
	pkt := packet{buf: buf[:], data: buf[:n], rel: icmpBufs{}}
	if n == 0 {
		pkt.release()
		return
	}
	select {
	case t.inbound <- pkt:
		t.icmpSent.Add(1)
	default:
		pkt.release()
		t.stats.tunQueueFull.Add(1)
	}
}

// sendTimeExceeded sends to peer p, within the rate limit, an ICMP time
// exceeded about orig, a packet p sent whose TTL or hop limit ran out here
// (see receivePacket): the answer a router gives, so that traceroute
// through the tunnel shows this hop. It goes on p's queue without
// waiting; when the queue is full it is dropped (counted as queue_full).
// It does not allocate in steady state.
func (t *Tunnel) sendTimeExceeded(p *peer, orig []byte) {
	if noICMPAbout(orig) {
		return
	}
	if !t.timeExceededLimit.allow(time.Now()) {
		t.icmpLimited.Add(1)
		return
	}
	src := t.src6
	if orig[0]>>4 == 4 {
		src = t.src4
	}
	if !src.IsValid() {
		return // no address of that family to answer from
	}
	ob := t.getOutBuf()
	n := buildICMP(ob.b[packetOffset:], orig, icmpTimeExceeded, 0, src)
	if n == 0 {
		t.putOutBuf(ob)
		return
	}
	select {
	case p.out <- outPacket{buf: ob, n: n}:
		t.icmpSent.Add(1)
	default:
		t.putOutBuf(ob)
		p.stats.queueFull.Add(1)
	}
}
