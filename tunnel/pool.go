// SPDX-License-Identifier: MIT

package tunnel

import "sync"

// packetOffset is the headroom in front of every packet in a buffer, for
// both TUN reads and writes. wgtun's Write with offloads needs at least 10
// bytes (virtioNetHdrLen) in front of each packet to write the virtio-net
// header in place, and fails with "invalid offset" otherwise; 16 also
// leaves room to prepend a datagram header of our own without a copy.
const packetOffset = 16

// bufSize is the size of the TUN reader's and the TUN writer's buffers. It
// must be a full 64 KiB: wgtun coalesces packets (GRO) into the
// spare capacity of the first buffer of a Write batch, and it splits large
// segments (GSO) into any buffer of a Read batch. A Read buffer must hold
// the largest segment the kernel hands over, which the route's MTU bounds,
// not the TUN's: an oversized non-GSO packet fails the Read, and an
// oversized GSO segment makes wgtun's gsoSplit slice past the buffer's
// capacity and panic. So only the reader's and the writer's own fixed sets
// of buffers are full size; what the reader queues to peers is copied into
// outBufs, and what the receivers queue to the writer stays in its conn's
// buffer (packet).
const bufSize = 1<<16 - 1

// packet is an inbound packet in flight to writeTUN: data is the IP packet,
// a part of buf, and rel takes buf back once the packet is written or
// dropped (nil: the garbage collector does). A received packet stays in the
// buffer its conn decrypted it into (quic-go's pooled datagram payloads,
// compact and warm in the cache); writeTUN copies it into its own
// full-size buffers, which wgtun needs (see bufSize). Whoever receives a
// packet from a channel owns it and must pass it on or release it.
type packet struct {
	buf, data []byte
	rel       DatagramReleaser
}

// release hands p's buffer back to its owner.
func (p packet) release() {
	if p.rel != nil {
		p.rel.ReleaseDatagram(p.buf)
	}
}

// icmpBufSize is the size of the buffers of the ICMP errors the tunnel
// builds: the largest, for IPv6, is icmpv6MaxLen bytes.
const icmpBufSize = icmpv6MaxLen

// icmpPool holds *[icmpBufSize]byte (pointers to arrays: putting a slice
// header into a sync.Pool allocates, staticcheck SA6002).
var icmpPool = sync.Pool{New: func() any { return new([icmpBufSize]byte) }}

// icmpBufs is the DatagramReleaser of the ICMP errors' buffers.
type icmpBufs struct{}

// ReleaseDatagram returns b, a buffer from icmpPool, to it.
func (icmpBufs) ReleaseDatagram(b []byte) {
	if cap(b) == icmpBufSize {
		icmpPool.Put((*[icmpBufSize]byte)(b[:icmpBufSize]))
	}
}

// outBuf is an outbound buffer: b has packetOffset + the tunnel's MTU
// bytes, so a peer's queue of QueueLen packets pins at most QueueLen *
// (packetOffset + MTU) bytes, not QueueLen * 64 KiB. The headroom is kept
// so that a datagram header can be prepended in place later. An outBuf
// given to a conn with SendDatagramOwned comes back through DatagramSent.
type outBuf struct {
	b []byte
	t *Tunnel // whose pool it belongs to
}

// DatagramSent returns b to its tunnel's pool once a conn that took it with
// SendDatagramOwned is done with it.
func (b *outBuf) DatagramSent() { b.t.putOutBuf(b) }

// outPacket is an outbound packet in a peer's queue:
// buf.b[packetOffset:packetOffset+n] is the packet. Ownership is handed
// over as for packet; the owner returns buf with Tunnel.putOutBuf.
type outPacket struct {
	buf *outBuf
	n   int
}

// data returns the packet bytes.
func (p outPacket) data() []byte { return p.buf.b[packetOffset : packetOffset+p.n] }

// outBufSize is the size of the tunnel's outbound buffers.
func (t *Tunnel) outBufSize() int { return packetOffset + t.mtu }

// getOutBuf returns an outbound buffer from the tunnel's pool (one pool per
// tunnel, since the size depends on its MTU). Its contents are undefined.
func (t *Tunnel) getOutBuf() *outBuf {
	if b, ok := t.outPool.Get().(*outBuf); ok {
		return b
	}
	return &outBuf{b: make([]byte, t.outBufSize()), t: t}
}

// putOutBuf returns b to the tunnel's pool; the caller must not use b
// afterwards.
func (t *Tunnel) putOutBuf(b *outBuf) { t.outPool.Put(b) }
