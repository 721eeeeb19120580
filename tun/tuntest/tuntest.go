// SPDX-License-Identifier: MIT

// Package tuntest is an in-memory twin of [tun.Device] for tests, with
// builders for valid IPv4 and IPv6 packets (ICMP echo and UDP).
package tuntest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"github.com/godwit-vpn/godwit/tun"
)

// DefaultMTU is the MTU a new Channel reports.
const DefaultMTU = 1420

// minOffset is the headroom a real wgtun device with offloads needs in
// front of every packet (virtioNetHdrLen). Channel insists on it too, so a
// caller that forgets the headroom fails in tests and not only in production.
const minOffset = 10

// Channel is a [tun.Device] backed by channels. Tests send the packets the
// kernel would deliver to the TUN on ToTunnel and receive what the device
// user wrote on FromTunnel.
//
// Read blocks for the first packet of ToTunnel, then takes more without
// blocking, up to the batch size. Write copies every packet and sends the
// copies to FromTunnel, blocking while FromTunnel is full (as a slow kernel
// would). Close unblocks both with an error wrapping [os.ErrClosed].
// Read and Write may be called concurrently.
type Channel struct {
	// ToTunnel carries packets into the device user's Read. The sender
	// gives up the slice; Read copies it.
	ToTunnel chan []byte
	// FromTunnel receives a copy of every packet written; the receiver
	// owns it.
	FromTunnel chan []byte

	batch     int
	mtu       atomic.Int64
	closed    chan struct{}
	closeOnce sync.Once
}

var _ tun.Device = (*Channel)(nil)

// NewChannel returns an open Channel whose BatchSize is batchSize (at least 1)
// and whose channels hold 1024 packets each.
func NewChannel(batchSize int) *Channel {
	if batchSize < 1 {
		batchSize = 1
	}
	c := &Channel{
		ToTunnel:   make(chan []byte, 1024),
		FromTunnel: make(chan []byte, 1024),
		batch:      batchSize,
		closed:     make(chan struct{}),
	}
	c.mtu.Store(DefaultMTU)
	return c
}

var errClosed = fmt.Errorf("tuntest: %w", os.ErrClosed)

// Read implements [tun.Device]. It returns an error if offset is below 10
// or a packet does not fit in its buffer.
func (c *Channel) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if offset < minOffset {
		return 0, fmt.Errorf("tuntest: read: invalid offset %d", offset)
	}
	max := min(len(bufs), len(sizes), c.batch)
	if max == 0 {
		return 0, errors.New("tuntest: read: no buffers")
	}
	select {
	case <-c.closed:
		return 0, errClosed
	default:
	}
	var pkt []byte
	select {
	case <-c.closed:
		return 0, errClosed
	case pkt = <-c.ToTunnel:
	}
	n := 0
	for {
		if len(pkt) > len(bufs[n])-offset {
			return n, fmt.Errorf("tuntest: read: packet of %d bytes does not fit", len(pkt))
		}
		sizes[n] = copy(bufs[n][offset:], pkt)
		n++
		if n == max {
			return n, nil
		}
		select {
		case pkt = <-c.ToTunnel:
		default:
			return n, nil
		}
	}
}

// Write implements [tun.Device]. It returns an error if offset is below 10.
func (c *Channel) Write(bufs [][]byte, offset int) (int, error) {
	if offset < minOffset {
		return 0, fmt.Errorf("tuntest: write: invalid offset %d", offset)
	}
	select {
	case <-c.closed:
		return 0, errClosed
	default:
	}
	for i, b := range bufs {
		if len(b) < offset {
			return i, fmt.Errorf("tuntest: write: buffer %d shorter than offset", i)
		}
		pkt := append([]byte(nil), b[offset:]...)
		select {
		case <-c.closed:
			return i, errClosed
		case c.FromTunnel <- pkt:
		}
	}
	return len(bufs), nil
}

// BatchSize implements [tun.Device].
func (c *Channel) BatchSize() int { return c.batch }

// MTU implements [tun.Device]; see SetMTU.
func (c *Channel) MTU() (int, error) { return int(c.mtu.Load()), nil }

// SetMTU sets what MTU reports. It is safe for concurrent use.
func (c *Channel) SetMTU(mtu int) { c.mtu.Store(int64(mtu)) }

// Name implements [tun.Device]; it is always "tuntest".
func (c *Channel) Name() (string, error) { return "tuntest", nil }

// Close implements [tun.Device]: blocked and later Reads and Writes return
// an error wrapping [os.ErrClosed]. It may be called more than once.
func (c *Channel) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// Ping returns an ICMP (src and dst IPv4) or ICMPv6 (both IPv6, which
// includes IPv4-mapped addresses) echo request with identifier id, sequence
// number seq and payloadLen bytes of payload, with a TTL/hop limit of 64
// and valid checksums. It panics if the address
// families differ or the packet would exceed 65535 bytes.
func Ping(src, dst netip.Addr, id, seq uint16, payloadLen int) []byte {
	icmp := make([]byte, 8+payloadLen)
	icmp[0] = 8 // echo request
	if src.Is6() {
		icmp[0] = 128
	}
	binary.BigEndian.PutUint16(icmp[4:], id)
	binary.BigEndian.PutUint16(icmp[6:], seq)
	for i := range payloadLen {
		icmp[8+i] = byte(i)
	}
	if src.Is4() {
		return ipPacket(src, dst, 1, icmp, 2)
	}
	return ipPacket(src, dst, 58, icmp, 2)
}

// UDP returns an IPv4 or IPv6 UDP packet (by the family of src and dst)
// carrying payload, with a TTL/hop limit of 64 and valid checksums. It
// panics if the address families differ or the packet would exceed 65535
// bytes.
func UDP(src, dst netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	return ipPacket(src.Addr(), dst.Addr(), 17, udp, 6)
}

// ipPacket wraps the transport message l4 in an IP header and fills in the
// transport checksum at l4[ckOff:].
func ipPacket(src, dst netip.Addr, proto byte, l4 []byte, ckOff int) []byte {
	if src.Is4() != dst.Is4() || !src.IsValid() || !dst.IsValid() {
		panic(fmt.Sprintf("tuntest: address family mismatch: %v, %v", src, dst))
	}
	if src.Is4() {
		if 20+len(l4) > 0xffff {
			panic("tuntest: packet too long")
		}
		p := make([]byte, 20+len(l4))
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		p[6] = 0x40 // DF
		p[8] = 64
		p[9] = proto
		s, d := src.As4(), dst.As4()
		copy(p[12:16], s[:])
		copy(p[16:20], d[:])
		binary.BigEndian.PutUint16(p[10:], Checksum(p[:20], 0))
		copy(p[20:], l4)
		var sum uint32
		if proto != 1 { // ICMPv4 has no pseudo-header
			sum = PseudoHeaderSum(src, dst, proto, len(l4))
		}
		ck := Checksum(p[20:], sum)
		if proto == 17 && ck == 0 {
			ck = 0xffff
		}
		binary.BigEndian.PutUint16(p[20+ckOff:], ck)
		return p
	}
	if len(l4) > 0xffff {
		panic("tuntest: packet too long")
	}
	p := make([]byte, 40+len(l4))
	p[0] = 0x60
	binary.BigEndian.PutUint16(p[4:], uint16(len(l4)))
	p[6] = proto
	p[7] = 64
	s, d := src.As16(), dst.As16()
	copy(p[8:24], s[:])
	copy(p[24:40], d[:])
	copy(p[40:], l4)
	ck := Checksum(p[40:], PseudoHeaderSum(src, dst, proto, len(l4)))
	if proto == 17 && ck == 0 {
		ck = 0xffff
	}
	binary.BigEndian.PutUint16(p[40+ckOff:], ck)
	return p
}

// Checksum returns the Internet checksum (RFC 1071) of b, starting from the
// partial sum initial (0, or a PseudoHeaderSum). A message whose checksum
// field is filled in correctly has Checksum 0.
func Checksum(b []byte, initial uint32) uint16 {
	sum := initial
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// PseudoHeaderSum returns the unfolded sum of the IPv4 or IPv6 pseudo-header
// for a transport message of length n with protocol proto, for Checksum.
func PseudoHeaderSum(src, dst netip.Addr, proto byte, n int) uint32 {
	var sum uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			sum += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		add(s[:])
		add(d[:])
	} else {
		s, d := src.As16(), dst.As16()
		add(s[:])
		add(d[:])
	}
	sum += uint32(proto) + uint32(n>>16) + uint32(n&0xffff)
	return sum
}
