// SPDX-License-Identifier: MIT

package tunnel

import (
	"encoding/binary"
	"math"
	"net/netip"
)

const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	icmpHeaderLen = 8

	protoICMP   = 1
	protoICMPv6 = 58

	// icmpv4MaxLen is the longest ICMPv4 error we build: RFC 1812 4.3.2.3
	// (as much of the original as fits in 576 bytes).
	icmpv4MaxLen = 576
	// icmpv6MaxLen is the longest ICMPv6 error we build: RFC 4443 2.4 (c)
	// (as much as fits without exceeding the minimum IPv6 MTU).
	icmpv6MaxLen = 1280
)

// verdict is the outcome of checking a packet.
type verdict uint8

const (
	verdictOK verdict = iota
	verdictMalformed
	verdictUnknownFormat // first nibble neither 4 nor 6: reserved for later formats
)

// checkPacket validates the IP header of b: version 4 or 6, at least a full
// header, and an IP length field that fits in b. It returns the length of
// the IP packet (b may be longer, as a datagram with trailing bytes; the
// caller trims it to n, as wireguard-go does).
func checkPacket(b []byte) (n int, v verdict) {
	if len(b) == 0 {
		return 0, verdictMalformed
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4HeaderLen {
			return 0, verdictMalformed
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < ipv4HeaderLen || ihl > len(b) || total < ihl || total > len(b) {
			return 0, verdictMalformed
		}
		return total, verdictOK
	case 6:
		if len(b) < ipv6HeaderLen {
			return 0, verdictMalformed
		}
		total := ipv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
		if total > len(b) {
			return 0, verdictMalformed
		}
		return total, verdictOK
	default:
		return 0, verdictUnknownFormat
	}
}

// srcAddr returns the source address of a packet accepted by checkPacket.
func srcAddr(b []byte) netip.Addr {
	if b[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(b[12:16]))
	}
	return netip.AddrFrom16([16]byte(b[8:24]))
}

// dstAddr returns the destination address of a packet accepted by
// checkPacket.
func dstAddr(b []byte) netip.Addr {
	if b[0]>>4 == 4 {
		return netip.AddrFrom4([4]byte(b[16:20]))
	}
	return netip.AddrFrom16([16]byte(b[24:40]))
}

// checksum returns the Internet checksum (RFC 1071) of b, starting from the
// unfolded partial sum initial.
func checksum(b []byte, initial uint32) uint16 {
	sum := uint64(initial)
	for len(b) >= 8 {
		sum += uint64(binary.BigEndian.Uint32(b)) + uint64(binary.BigEndian.Uint32(b[4:]))
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// noICMPAbout reports whether the packet b (accepted by checkPacket) must
// not trigger an ICMP error (RFC 1122 3.2.2, RFC 4443 2.4 (e)): it is an
// ICMP or ICMPv6 error message itself, a non-initial fragment, or has an
// unspecified, multicast or broadcast source or a multicast or broadcast
// destination. The IPv6
// extension header chain is followed as far as it lies within b.
func noICMPAbout(b []byte) bool {
	bcast := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	src, dst := srcAddr(b), dstAddr(b)
	if src.IsUnspecified() || src.IsMulticast() || src == bcast || dst.IsMulticast() || dst == bcast {
		return true
	}
	if b[0]>>4 == 4 {
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return true // non-initial fragment
		}
		ihl := int(b[0]&0x0f) * 4
		if b[9] != protoICMP {
			return false
		}
		if len(b) < ihl+1 {
			return true // cannot tell: be conservative
		}
		switch b[ihl] { // types 0, 8, 13-18 are queries and replies
		case 3, 4, 5, 11, 12:
			return true
		}
		return false
	}
	next, off := b[6], ipv6HeaderLen
	for range 8 {
		switch next {
		case 0, 43, 60: // hop-by-hop, routing, destination options
			if len(b) < off+2 {
				return true
			}
			next, off = b[off], off+8*(int(b[off+1])+1)
		case 44: // fragment
			if len(b) < off+8 {
				return true
			}
			if binary.BigEndian.Uint16(b[off+2:off+4])&0xfff8 != 0 {
				return true // non-initial fragment
			}
			next, off = b[off], off+8
		case protoICMPv6:
			if len(b) < off+1 {
				return true
			}
			return b[off] < 128 // types below 128 are errors
		default:
			return false
		}
	}
	return true
}

// icmpKind selects the ICMP error buildICMP builds.
type icmpKind uint8

const (
	icmpUnreachable  icmpKind = iota // no route: host / address unreachable
	icmpTooBig                       // fragmentation needed / packet too big
	icmpTimeExceeded                 // TTL / hop limit exceeded in transit
)

// buildICMP writes into out an ICMP (orig IPv4) or ICMPv6 (orig IPv6) error
// of the given kind about the packet orig (accepted by checkPacket), from
// src (the same family as orig, or invalid for orig's destination) to orig's
// source. mtu is the next-hop MTU for icmpTooBig. It returns the length
// written, or 0 when no error may be sent: orig is itself an ICMP error or
// otherwise exempt (see noICMPAbout), or mtu is below the family's minimum
// (68 for IPv4, 1280 for IPv6). out must hold at least 1280 bytes. It does
// not allocate.
func buildICMP(out, orig []byte, kind icmpKind, mtu int, src netip.Addr) int {
	if noICMPAbout(orig) {
		return 0
	}
	dst := srcAddr(orig)
	if !src.IsValid() || src.Is4() != dst.Is4() {
		src = dstAddr(orig)
	}
	if orig[0]>>4 == 4 {
		var typ, code byte = 3, 1 // destination unreachable, host unreachable
		switch kind {
		case icmpTooBig:
			if mtu < 68 {
				return 0
			}
			code = 4 // fragmentation needed and DF set
		case icmpTimeExceeded:
			typ, code = 11, 0 // time exceeded, TTL exceeded in transit
		}
		quote := min(len(orig), icmpv4MaxLen-ipv4HeaderLen-icmpHeaderLen)
		n := ipv4HeaderLen + icmpHeaderLen + quote
		h := out[:ipv4HeaderLen]
		clear(h)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:4], uint16(n))
		h[8] = 64
		h[9] = protoICMP
		s, d := src.As4(), dst.As4()
		copy(h[12:16], s[:])
		copy(h[16:20], d[:])
		binary.BigEndian.PutUint16(h[10:12], checksum(h, 0))
		m := out[ipv4HeaderLen:n]
		clear(m[:icmpHeaderLen])
		m[0], m[1] = typ, code
		if kind == icmpTooBig {
			binary.BigEndian.PutUint16(m[6:8], uint16(min(mtu, 0xffff)))
		}
		copy(m[icmpHeaderLen:], orig[:quote])
		binary.BigEndian.PutUint16(m[2:4], checksum(m, 0))
		return n
	}
	var typ, code byte = 1, 3 // destination unreachable, address unreachable
	switch kind {
	case icmpTooBig:
		if mtu < 1280 {
			return 0
		}
		typ, code = 2, 0
	case icmpTimeExceeded:
		typ, code = 3, 0 // time exceeded, hop limit exceeded in transit
	}
	quote := min(len(orig), icmpv6MaxLen-ipv6HeaderLen-icmpHeaderLen)
	mlen := icmpHeaderLen + quote
	h := out[:ipv6HeaderLen]
	clear(h)
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:6], uint16(mlen))
	h[6] = protoICMPv6
	h[7] = 64
	s, d := src.As16(), dst.As16()
	copy(h[8:24], s[:])
	copy(h[24:40], d[:])
	m := out[ipv6HeaderLen : ipv6HeaderLen+mlen]
	clear(m[:icmpHeaderLen])
	m[0], m[1] = typ, code
	if kind == icmpTooBig {
		// mtu >= 1280 here; uint64 so this compiles where int is 32 bits.
		binary.BigEndian.PutUint32(m[4:8], uint32(min(uint64(mtu), math.MaxUint32)))
	}
	copy(m[icmpHeaderLen:], orig[:quote])
	binary.BigEndian.PutUint16(m[2:4], checksum(m, pseudoHeaderSum6(h, mlen)))
	return ipv6HeaderLen + mlen
}

// pseudoHeaderSum6 returns the unfolded sum of the ICMPv6 pseudo-header
// (RFC 8200 8.1) for the IPv6 header h and an upper-layer length n.
func pseudoHeaderSum6(h []byte, n int) uint32 {
	var sum uint32
	for i := 8; i < 40; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	return sum + protoICMPv6 + uint32(n>>16) + uint32(n&0xffff)
}

// ttlLeft reports whether the packet b (accepted by checkPacket) may be
// forwarded by one more hop: its IPv4 TTL or IPv6 hop limit is above 1.
func ttlLeft(b []byte) bool {
	if b[0]>>4 == 4 {
		return b[8] > 1
	}
	return b[7] > 1
}

// decrementTTL takes one off the IPv4 TTL (updating the header checksum
// incrementally, RFC 1624) or the IPv6 hop limit of the packet b, which
// ttlLeft accepted, as a router does when it forwards (RFC 1812 5.3.1,
// RFC 8200 3). It does not allocate.
func decrementTTL(b []byte) {
	if b[0]>>4 != 4 {
		b[7]--
		return
	}
	b[8]--
	// HC' = ~(~HC + ~m + m') with m the old and m' the new 16-bit word
	// holding the TTL (the high byte of bytes 8-9): m' = m - 0x100.
	sum := uint32(^binary.BigEndian.Uint16(b[10:12])) + 0xffff - 0x0100
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[10:12], ^uint16(sum))
}
