// SPDX-License-Identifier: MIT

package classify

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers and header sizes that Match reads.
const (
	protoTCP = 6
	protoUDP = 17

	// IPv6 extension headers Match steps over (RFC 8200 4).
	protoHopByHop = 0
	protoRouting  = 43
	protoFragment = 44
	protoDestOpts = 60

	ipv4HeaderLen     = 20
	ipv6HeaderLen     = 40
	ipv6FragHeaderLen = 8

	// maxExtHeaders bounds the IPv6 extension headers Match steps over
	// before it gives up on the ports. RFC 8200 4.1 allows each header
	// once, destination options twice: five of the four kinds above, so
	// eight leaves room and still bounds the work on hostile input.
	maxExtHeaders = 8
)

// Set is the duplicate rules of one peer, arranged for [Set.Match]. A Set
// is immutable once built, so one may be shared by any number of
// goroutines. The zero Set and a nil *Set hold no rules and match nothing.
type Set struct {
	nonEmpty bool           // at least one rule; false for the zero Set
	dscp     uint64         // bit n set: DSCP n matches
	udp, tcp []portRange    // port rules by protocol
	v4, v6   []netip.Prefix // prefix rules by family
}

// portRange is the ports of one udp: or tcp: rule, lo..hi inclusive.
type portRange struct{ lo, hi uint16 }

// NewSet returns a Set of rules. Invalid (zero) rules are left out; rules
// listed twice cost a little time and change nothing. It never returns nil.
func NewSet(rules []Rule) *Set {
	s := new(Set)
	for _, r := range rules {
		switch r.kind {
		case kindUDP:
			s.udp = append(s.udp, portRange{r.lo, r.hi})
		case kindTCP:
			s.tcp = append(s.tcp, portRange{r.lo, r.hi})
		case kindDSCP:
			s.dscp |= 1 << r.dscp
		case kindPrefix:
			if r.prefix.Addr().Is4() {
				s.v4 = append(s.v4, r.prefix)
			} else {
				s.v6 = append(s.v6, r.prefix)
			}
		default:
			continue
		}
		s.nonEmpty = true
	}
	return s
}

// Match reports whether the IPv4 or IPv6 packet pkt matches a rule of s.
// pkt starts at the IP header; bytes after the IP packet's length are
// ignored. Match reads pkt only, does not keep it, does not allocate and
// never panics, whatever pkt holds: a packet shorter than its fixed IP
// header matches nothing, and one cut short before its ports matches no
// port rule. It returns false at once for a nil or empty Set.
func (s *Set) Match(pkt []byte) bool {
	if s == nil || !s.nonEmpty || len(pkt) == 0 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		return s.match4(pkt)
	case 6:
		return s.match6(pkt)
	}
	return false
}

// match4 is Match for a packet with version 4.
func (s *Set) match4(pkt []byte) bool {
	if len(pkt) < ipv4HeaderLen {
		return false
	}
	if s.dscp>>(pkt[1]>>2)&1 != 0 {
		return true
	}
	if len(s.v4) > 0 {
		src := netip.AddrFrom4([4]byte(pkt[12:16]))
		dst := netip.AddrFrom4([4]byte(pkt[16:20]))
		for _, p := range s.v4 {
			if p.Contains(src) || p.Contains(dst) {
				return true
			}
		}
	}
	ports := s.ports(pkt[9])
	if len(ports) == 0 {
		return false
	}
	if binary.BigEndian.Uint16(pkt[6:8])&0x1fff != 0 {
		return false // not the first fragment: no transport header
	}
	ihl := int(pkt[0]&0x0f) * 4
	end := min(len(pkt), int(binary.BigEndian.Uint16(pkt[2:4])))
	if ihl < ipv4HeaderLen || ihl+4 > end {
		return false
	}
	return matchPorts(ports, pkt[ihl:ihl+4])
}

// match6 is Match for a packet with version 6.
func (s *Set) match6(pkt []byte) bool {
	if len(pkt) < ipv6HeaderLen {
		return false
	}
	// The traffic class straddles bytes 0 and 1; DSCP is its top 6 bits.
	if s.dscp>>((pkt[0]&0x0f)<<2|pkt[1]>>6)&1 != 0 {
		return true
	}
	if len(s.v6) > 0 {
		src := netip.AddrFrom16([16]byte(pkt[8:24]))
		dst := netip.AddrFrom16([16]byte(pkt[24:40]))
		for _, p := range s.v6 {
			if p.Contains(src) || p.Contains(dst) {
				return true
			}
		}
	}
	if len(s.udp) == 0 && len(s.tcp) == 0 {
		return false
	}
	// A payload length of 0 with more bytes behind it is a jumbogram
	// (RFC 2675), which no TUN MTU allows: its ports are not read.
	end := min(len(pkt), ipv6HeaderLen+int(binary.BigEndian.Uint16(pkt[4:6])))
	proto, off, ok := transport6(pkt[:end])
	if !ok {
		return false
	}
	ports := s.ports(proto)
	if len(ports) == 0 || off+4 > end {
		return false
	}
	return matchPorts(ports, pkt[off:off+4])
}

// transport6 follows the Next Header chain of the IPv6 packet pkt (at least
// the fixed header) and returns the upper-layer protocol and its offset. ok
// is false when the chain is cut short, longer than maxExtHeaders, or leads
// to a fragment other than the first, which carries no transport header.
func transport6(pkt []byte) (proto uint8, off int, ok bool) {
	proto, off = pkt[6], ipv6HeaderLen
	// One round per extension header, and one more to find that the
	// header after the last one allowed is not an extension header.
	for range maxExtHeaders + 1 {
		switch proto {
		case protoHopByHop, protoRouting, protoDestOpts:
			// Next Header, Hdr Ext Len in 8-octet units after the first 8.
			if off+2 > len(pkt) {
				return 0, 0, false
			}
			proto, off = pkt[off], off+(int(pkt[off+1])+1)*8
		case protoFragment:
			if off+ipv6FragHeaderLen > len(pkt) {
				return 0, 0, false
			}
			if binary.BigEndian.Uint16(pkt[off+2:off+4])>>3 != 0 {
				return 0, 0, false // fragment offset != 0
			}
			proto, off = pkt[off], off+ipv6FragHeaderLen
		default:
			return proto, off, true
		}
	}
	return 0, 0, false
}

// ports returns the port rules for IP protocol proto.
func (s *Set) ports(proto uint8) []portRange {
	switch proto {
	case protoUDP:
		return s.udp
	case protoTCP:
		return s.tcp
	}
	return nil
}

// matchPorts reports whether the source or destination port in h (the first
// four bytes of a TCP or UDP header) is in one of rs.
func matchPorts(rs []portRange, h []byte) bool {
	src := binary.BigEndian.Uint16(h[0:2])
	dst := binary.BigEndian.Uint16(h[2:4])
	for _, r := range rs {
		if r.lo <= src && src <= r.hi || r.lo <= dst && dst <= r.hi {
			return true
		}
	}
	return false
}
