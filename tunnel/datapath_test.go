// SPDX-License-Identifier: MIT

package tunnel

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/tun/tuntest"
)

// TestStalledPeerBufferBound checks by accounting that a peer whose
// connection stalls pins at most (QueueLen + 1) * (packetOffset + MTU)
// bytes of buffers: QueueLen in its queue and one in the blocked
// SendDatagram, each MTU-sized rather than 64 KiB.
func TestStalledPeerBufferBound(t *testing.T) {
	const queueLen, mtu, extra = 64, 1400, 20
	h := newHarness(t)
	hub, dev := h.tunnel(Config{QueueLen: queueLen, MTU: mtu}, 16,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	b1, b2 := h.attachPipe(hub, idB)
	b1.Stall()

	hub.mu.Lock()
	p := hub.peers[idB]
	hub.mu.Unlock()

	// Full-MTU packets, each with its number in the payload.
	pkts := make([][]byte, queueLen+1+extra)
	for i := range pkts {
		payload := make([]byte, mtu-28)
		binary.BigEndian.PutUint32(payload, uint32(i))
		pkts[i] = tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostB4, 2), payload)
		if len(pkts[i]) != mtu {
			t.Fatalf("packet of %d bytes, want %d", len(pkts[i]), mtu)
		}
		dev.ToTunnel <- pkts[i]
		if i == 0 {
			// Let the sender take packet 0 into the stalled SendDatagram
			// first; otherwise it may take it only once the queue is full,
			// and a later packet takes the freed slot.
			// readBusy reaches 2 when readTUN finished the batch that
			// queued it.
			eventually(t, "sender took packet 0", func() bool { return hub.readBusy.Load() >= 2 && len(p.out) == 0 })
		}
	}
	eventually(t, "queue full", func() bool { return hub.Stats().Peers[idB].Drops.QueueFull == extra })
	// The sender is blocked in SendDatagram with packet 0, so the queue
	// holds packets 1..queueLen and nothing else takes from it.
	if got := len(p.out); got != queueLen {
		t.Fatalf("queue holds %d packets, want %d", got, queueLen)
	}
	held := make([]outPacket, 0, queueLen)
	pinned := 0
	for range queueLen {
		pkt := <-p.out
		held = append(held, pkt)
		pinned += cap(pkt.buf.b)
	}
	inFlight := packetOffset + mtu // the sender's packet: same pool
	worst := (queueLen + 1) * (packetOffset + mtu)
	if pinned+inFlight > worst {
		t.Errorf("stalled peer pins %d bytes of buffers, want at most %d", pinned+inFlight, worst)
	}
	t.Logf("stalled peer, queue %d, MTU %d: %d bytes pinned (64 KiB buffers: %d)", queueLen, mtu, pinned+inFlight, (queueLen+1)*bufSize)
	for i, pkt := range held {
		if !bytes.Equal(pkt.data(), pkts[i+1]) {
			t.Fatalf("queued packet %d differs", i)
		}
		p.out <- pkt // back, in order; readTUN is idle
	}

	b1.Unstall()
	for i := range queueLen + 1 {
		if got := receive(t, b2); !bytes.Equal(got, pkts[i]) {
			t.Fatalf("packet %d to B differs after Unstall", i)
		}
	}
}

// TestOverMTUTooBigICMP: a packet larger than the tunnel's MTU (which only
// a route with a larger MTU sends) does not fit an outbound buffer; it is
// answered with ICMP too big at the MTU, counted as TooBig, and not sent.
func TestOverMTUTooBigICMP(t *testing.T) {
	const mtu = 1280
	h := newHarness(t)
	ta, devA := h.tunnel(Config{Addresses: []netip.Prefix{ownA4, ownA6}, MTU: mtu}, 4,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4, prefB6}})
	c1, c2 := h.attachPipe(ta, idB)

	tests := []struct {
		name string
		pkt  []byte
		typ  byte
		code byte
	}{
		{"v4", tuntest.Ping(hostA4, hostB4, 1, 1, mtu-28+1), 3, 4},
		{"v6", tuntest.Ping(hostA6, hostB6, 1, 2, mtu-48+1), 2, 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devA.ToTunnel <- bytes.Clone(tt.pkt)
			eventually(t, "too_big count", func() bool { return ta.Stats().Peers[idB].Drops.TooBig == uint64(i+1) })
			e := expectICMPError(t, devA.FromTunnel)
			if e.typ != tt.typ || e.code != tt.code || e.mtu != mtu {
				t.Errorf("type/code/mtu = %d/%d/%d, want %d/%d/%d", e.typ, e.code, e.mtu, tt.typ, tt.code, mtu)
			}
		})
	}
	fits := tuntest.Ping(hostA4, hostB4, 1, 3, mtu-28)
	devA.ToTunnel <- bytes.Clone(fits)
	if got := receive(t, c2); !bytes.Equal(got, fits) {
		t.Errorf("packet of exactly the MTU differs")
	}
	if got := c1.Sent(); got != 1 {
		t.Errorf("conn sent %d datagrams, want 1 (only the packet that fits)", got)
	}
}

// TestSlowPeerPushesBack: a burst larger than a peer's queue, while its
// conn is slow, waits in readTUN instead of being dropped, and arrives
// whole and in order once the conn takes packets again.
func TestSlowPeerPushesBack(t *testing.T) {
	const queueLen, extra = 16, 40
	h := newHarness(t)
	hub, dev := h.tunnel(Config{QueueLen: queueLen, outWait: time.Minute}, 4,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	b1, b2 := h.attachPipe(hub, idB)
	b1.Stall()
	pkts := make([][]byte, queueLen+1+extra)
	for i := range pkts {
		payload := make([]byte, 100)
		binary.BigEndian.PutUint32(payload, uint32(i))
		pkts[i] = tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostB4, 2), payload)
	}
	for i := range pkts {
		dev.ToTunnel <- pkts[i]
	}
	hub.mu.Lock()
	p := hub.peers[idB]
	hub.mu.Unlock()
	eventually(t, "queue full, reader waiting", func() bool { return len(p.out) == queueLen && hub.readBusy.Load()%2 == 1 })
	b1.Unstall()
	for i := range pkts {
		if got := receive(t, b2); !bytes.Equal(got, pkts[i]) {
			t.Fatalf("packet %d differs or is out of order", i)
		}
	}
	if d := hub.Stats().Peers[idB].Drops.QueueFull; d != 0 {
		t.Errorf("queue_full drops = %d, want 0", d)
	}
}

// TestStalledPeerWaitsOnce: once a peer's queue stayed full for the whole
// wait, readTUN drops its packets without waiting, until its sender has
// caught up.
func TestStalledPeerWaitsOnce(t *testing.T) {
	const queueLen = 8
	h := newHarness(t)
	hub, dev := h.tunnel(Config{QueueLen: queueLen, outWait: time.Hour}, 4,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}},
		PeerConfig{ID: idC, AllowedIPs: []netip.Prefix{prefC4}})
	b1, b2 := h.attachPipe(hub, idB)
	_, c2 := h.attachPipe(hub, idC)
	b1.Stall()
	hub.mu.Lock()
	p := hub.peers[idB]
	hub.mu.Unlock()

	toB := tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostB4, 2), make([]byte, 100))
	toC := tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostC4, 2), make([]byte, 100))
	// B's sender takes packet 0 into its stalled SendDatagram, then B's
	// queue fills up.
	dev.ToTunnel <- toB
	eventually(t, "sender took packet 0", func() bool { return hub.readBusy.Load() >= 2 && len(p.out) == 0 })
	for range queueLen {
		dev.ToTunnel <- toB
	}
	eventually(t, "B's queue full", func() bool { return len(p.out) == queueLen })
	p.stalled.Store(true) // as after an hour of waiting in vain

	const extra = 20
	for range extra {
		dev.ToTunnel <- toB
	}
	dev.ToTunnel <- toC
	if got := receive(t, c2); !bytes.Equal(got, toC) { // within receive's timeout, not an hour
		t.Fatal("packet to C differs")
	}
	eventually(t, "B's drops", func() bool { return hub.Stats().Peers[idB].Drops.QueueFull == extra })

	b1.Unstall()
	for range queueLen + 1 {
		receive(t, b2)
	}
	eventually(t, "B no longer stalled", func() bool { return !p.stalled.Load() })
}

// TestSlowTUNWriterPushesBack: datagrams that find the TUN writer's queue
// full wait for it instead of being dropped.
func TestSlowTUNWriterPushesBack(t *testing.T) {
	h := newHarness(t)
	hub, dev := h.tunnel(Config{inWait: time.Minute}, 4,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	_, b2 := h.attachPipe(hub, idB)
	// Nobody reads dev.FromTunnel yet: once its buffer is full the
	// writer blocks in Write and the queue to it fills up.
	n := cap(dev.FromTunnel) + dev.BatchSize() + inboundQueueLen + 64
	go func() {
		for i := range n {
			payload := make([]byte, 100)
			binary.BigEndian.PutUint32(payload, uint32(i))
			if err := b2.SendDatagram(tuntest.UDP(netip.AddrPortFrom(hostB4, 2), netip.AddrPortFrom(hostA4, 1), payload)); err != nil {
				t.Errorf("SendDatagram: %v", err)
				return
			}
		}
	}()
	eventually(t, "queue to the writer full", func() bool { return len(hub.inbound) == inboundQueueLen })
	for i := range n {
		select {
		case got := <-dev.FromTunnel:
			if v := binary.BigEndian.Uint32(got[28:]); v != uint32(i) {
				t.Fatalf("packet %d arrived as number %d", i, v)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("packet %d never arrived", i)
		}
	}
	if d := hub.Stats().Peers[idB].Drops.TUNQueueFull; d != 0 {
		t.Errorf("tun_queue_full drops = %d, want 0", d)
	}
}
