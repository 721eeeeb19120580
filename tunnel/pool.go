// SPDX-License-Identifier: MIT

package tunnel

import "sync"

// packetOffset is the headroom in front of every packet in a buffer, for
// both TUN reads and writes. wgtun's Write with offloads needs at least 10
// bytes (virtioNetHdrLen) in front of each packet to write the virtio-net
// header in place, and fails with "invalid offset" otherwise; 16 also
// leaves room to prepend a datagram header of our own without a copy.
const packetOffset = 16

// bufSize is the size of the TUN reader's buffers and of every inbound
// buffer. It must be a full 64 KiB: wgtun coalesces packets (GRO) into the
// spare capacity of the first buffer of a Write batch, and it splits large
// segments (GSO) into any buffer of a Read batch. A Read buffer must hold
// the largest segment the kernel hands over, which the route's MTU bounds,
// not the TUN's: an oversized non-GSO packet fails the Read, and an
// oversized GSO segment makes wgtun's gsoSplit slice past the buffer's
// capacity and panic. So only the reader's own fixed set of buffers is full
// size on the outbound side; what it queues to peers is copied into outBufs.
const bufSize = 1<<16 - 1

// packet is an inbound buffer in flight between goroutines:
// buf[packetOffset:packetOffset+n] is the packet. Whoever receives a packet
// from a channel owns buf and must either pass it on or return it with
// putBuf.
type packet struct {
	buf *[bufSize]byte
	n   int
}

// data returns the packet bytes.
func (p packet) data() []byte { return p.buf[packetOffset : packetOffset+p.n] }

// bufPool holds *[bufSize]byte. Pointers to arrays, not slices: putting a
// slice header into a sync.Pool allocates (staticcheck SA6002). Memory is
// bounded by the channel capacities, not by the pool.
var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

// getBuf returns a buffer from the pool. Its contents are undefined.
func getBuf() *[bufSize]byte { return bufPool.Get().(*[bufSize]byte) }

// putBuf returns b to the pool; the caller must not use b afterwards. The
// buffers hold no pointers, so unlike wireguard-go's elements there is
// nothing to clear for the GC.
func putBuf(b *[bufSize]byte) { bufPool.Put(b) }

// outBuf is an outbound buffer: b has packetOffset + the tunnel's MTU
// bytes, so a peer's queue of QueueLen packets pins at most QueueLen *
// (packetOffset + MTU) bytes, not QueueLen * 64 KiB. The headroom is kept
// so that a datagram header can be prepended in place later.
type outBuf struct{ b []byte }

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
	return &outBuf{b: make([]byte, t.outBufSize())}
}

// putOutBuf returns b to the tunnel's pool; the caller must not use b
// afterwards.
func (t *Tunnel) putOutBuf(b *outBuf) { t.outPool.Put(b) }
