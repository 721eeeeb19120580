// SPDX-License-Identifier: MIT

package tunnel

import "sync"

// packetOffset is the headroom in front of every packet in a buffer, for
// both TUN reads and writes. wgtun's Write with offloads needs at least 10
// bytes (virtioNetHdrLen) in front of each packet to write the virtio-net
// header in place, and fails with "invalid offset" otherwise; 16 also
// leaves room to prepend a datagram header of our own without a copy.
const packetOffset = 16

// bufSize is the size of every packet buffer. It must be a full 64 KiB:
// wgtun coalesces packets (GRO) into the spare capacity of the first buffer
// of a Write batch and splits large segments (GSO) into any buffer of a
// Read batch.
const bufSize = 1<<16 - 1

// packet is a buffer in flight between goroutines: buf[packetOffset:
// packetOffset+n] is the packet. Whoever receives a packet from a channel
// owns buf and must either pass it on or return it with putBuf.
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
