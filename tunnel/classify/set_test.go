// SPDX-License-Identifier: MIT

package classify

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"testing"

	"github.com/godwit-vpn/godwit/tun/tuntest"
)

// udp returns a UDP packet from src to dst ("10.0.0.1:5004", "[fd77::1]:5004").
func udp(src, dst string) []byte {
	return tuntest.UDP(netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), []byte("payload"))
}

// tcp returns a TCP-sized packet from src to dst: Match reads only the
// ports, at the same offsets as in UDP, so it is a UDP packet relabelled.
func tcp(src, dst string) []byte {
	p := tuntest.UDP(netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst), make([]byte, 12))
	if p[0]>>4 == 4 {
		p[9] = protoTCP
	} else {
		p[6] = protoTCP
	}
	return p
}

// ping returns an ICMP or ICMPv6 echo request from src to dst.
func ping(src, dst string) []byte {
	return tuntest.Ping(netip.MustParseAddr(src), netip.MustParseAddr(dst), 1, 1, 8)
}

// withDSCP returns a copy of pkt with DSCP d and ECN bits ecn.
func withDSCP(pkt []byte, d, ecn byte) []byte {
	p := slices.Clone(pkt)
	tc := d<<2 | ecn
	if p[0]>>4 == 4 {
		p[1] = tc
	} else {
		p[0] = 0x60 | tc>>4
		p[1] = tc<<4 | p[1]&0x0f
	}
	return p
}

// frag4 returns a copy of the IPv4 packet pkt marked as the fragment at
// offset (in 8-byte units), with More Fragments set if more.
func frag4(pkt []byte, offset uint16, more bool) []byte {
	p := slices.Clone(pkt)
	v := offset & 0x1fff
	if more {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(p[6:8], v)
	return p
}

// opts4 returns pkt with words 4-byte words of IPv4 options (NOPs) after
// its header, IHL and total length adjusted.
func opts4(pkt []byte, words int) []byte {
	opts := make([]byte, 4*words)
	for i := range opts {
		opts[i] = 1 // NOP
	}
	p := slices.Concat(pkt[:20], opts, pkt[20:])
	p[0] = 0x40 | byte(5+words)
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	return p
}

// ext is one IPv6 extension header for ext6: typ is its Next Header value;
// units is its Hdr Ext Len (hop-by-hop, routing, destination options);
// offset and more are the fragment header's fields.
type ext struct {
	typ    byte
	units  byte
	offset uint16
	more   bool
}

// ext6 returns the IPv6 packet pkt with hdrs inserted after its fixed
// header, in order, the Next Header chain and payload length adjusted.
func ext6(pkt []byte, hdrs ...ext) []byte {
	next := pkt[6]
	var b []byte
	for i, h := range hdrs {
		nh := next
		if i+1 < len(hdrs) {
			nh = hdrs[i+1].typ
		}
		if h.typ == protoFragment {
			v := h.offset << 3
			if h.more {
				v |= 1
			}
			b = append(b, nh, 0, byte(v>>8), byte(v), 0, 0, 0, 1)
			continue
		}
		e := make([]byte, (int(h.units)+1)*8)
		e[0], e[1] = nh, h.units // then Pad1 options (zeros)
		b = append(b, e...)
	}
	p := slices.Concat(pkt[:40], b, pkt[40:])
	if len(hdrs) > 0 {
		p[6] = hdrs[0].typ
	}
	binary.BigEndian.PutUint16(p[4:6], uint16(len(p)-40))
	return p
}

// withLen returns a copy of pkt whose IP length field says the packet is n
// bytes long (total length for IPv4, 40 + payload length for IPv6).
func withLen(pkt []byte, n int) []byte {
	p := slices.Clone(pkt)
	if p[0]>>4 == 4 {
		binary.BigEndian.PutUint16(p[2:4], uint16(n))
	} else {
		binary.BigEndian.PutUint16(p[4:6], uint16(n-40))
	}
	return p
}

var (
	hbh      = ext{typ: protoHopByHop}
	routing  = ext{typ: protoRouting, units: 2}
	destOpts = ext{typ: protoDestOpts, units: 1}
	// firstFrag and laterFrag are IPv6 fragment headers.
	firstFrag = ext{typ: protoFragment, more: true}
	laterFrag = ext{typ: protoFragment, offset: 185}
)

var matchTests = []struct {
	name  string
	rules []string
	pkt   []byte
	want  bool
}{
	// Ports, both directions, both families.
	{"v4 udp dst port", []string{"udp:5004"}, udp("10.0.0.1:40000", "10.0.0.2:5004"), true},
	{"v4 udp src port", []string{"udp:5004"}, udp("10.0.0.1:5004", "10.0.0.2:40000"), true},
	{"v4 udp other ports", []string{"udp:5004"}, udp("10.0.0.1:5005", "10.0.0.2:5003"), false},
	{"v4 tcp port, udp rule", []string{"udp:5004"}, tcp("10.0.0.1:40000", "10.0.0.2:5004"), false},
	{"v4 udp port, tcp rule", []string{"tcp:5004"}, udp("10.0.0.1:40000", "10.0.0.2:5004"), false},
	{"v4 tcp dst port", []string{"tcp:443"}, tcp("10.0.0.1:40000", "10.0.0.2:443"), true},
	{"v4 tcp src port", []string{"tcp:443"}, tcp("10.0.0.1:443", "10.0.0.2:40000"), true},
	{"v6 udp dst port", []string{"udp:5004"}, udp("[fd77::1]:40000", "[fd77::2]:5004"), true},
	{"v6 udp src port", []string{"udp:5004"}, udp("[fd77::1]:5004", "[fd77::2]:40000"), true},
	{"v6 udp other ports", []string{"udp:5004"}, udp("[fd77::1]:1", "[fd77::2]:65535"), false},
	{"v6 tcp src port", []string{"tcp:443"}, tcp("[fd77::1]:443", "[fd77::2]:40000"), true},
	{"v6 tcp port, udp rule", []string{"udp:443"}, tcp("[fd77::1]:443", "[fd77::2]:40000"), false},
	{"port 65535", []string{"udp:65535"}, udp("10.0.0.1:65535", "10.0.0.2:1"), true},
	{"port 0 in packet", []string{"udp:1-65535"}, udp("10.0.0.1:0", "10.0.0.2:0"), false},

	// Ranges, with their ends.
	{"tcp range inside", []string{"tcp:8000-8100"}, tcp("10.0.0.1:40000", "10.0.0.2:8050"), true},
	{"tcp range low end", []string{"tcp:8000-8100"}, tcp("10.0.0.1:8000", "10.0.0.2:40000"), true},
	{"tcp range high end", []string{"tcp:8000-8100"}, tcp("[fd77::1]:40000", "[fd77::2]:8100"), true},
	{"tcp range below", []string{"tcp:8000-8100"}, tcp("10.0.0.1:7999", "10.0.0.2:7999"), false},
	{"tcp range above", []string{"tcp:8000-8100"}, tcp("10.0.0.1:8101", "10.0.0.2:8101"), false},
	{"udp range, second rule", []string{"udp:5004", "udp:16384-32767"}, udp("[fd77::1]:20000", "[fd77::2]:3478"), true},
	{"udp range all", []string{"udp:1-65535"}, udp("10.0.0.1:1", "10.0.0.2:2"), true},

	// DSCP: top 6 bits, ECN ignored, both families.
	{"v4 dscp", []string{"dscp:46"}, withDSCP(udp("10.0.0.1:1", "10.0.0.2:2"), 46, 0), true},
	{"v4 dscp with ECN", []string{"dscp:46"}, withDSCP(udp("10.0.0.1:1", "10.0.0.2:2"), 46, 3), true},
	{"v4 other dscp", []string{"dscp:46"}, withDSCP(udp("10.0.0.1:1", "10.0.0.2:2"), 47, 0), false},
	{"v4 dscp 0 is the default", []string{"dscp:0"}, ping("10.0.0.1", "10.0.0.2"), true},
	{"v4 dscp 0, ECN set", []string{"dscp:0"}, withDSCP(ping("10.0.0.1", "10.0.0.2"), 0, 2), true},
	{"v4 dscp 63", []string{"dscp:63"}, withDSCP(ping("10.0.0.1", "10.0.0.2"), 63, 1), true},
	{"v6 dscp", []string{"dscp:46"}, withDSCP(udp("[fd77::1]:1", "[fd77::2]:2"), 46, 0), true},
	{"v6 dscp with ECN", []string{"dscp:46"}, withDSCP(udp("[fd77::1]:1", "[fd77::2]:2"), 46, 3), true},
	{"v6 other dscp", []string{"dscp:46"}, withDSCP(udp("[fd77::1]:1", "[fd77::2]:2"), 34, 0), false},
	{"v6 dscp 0 is the default", []string{"dscp:0"}, ping("fd77::1", "fd77::2"), true},
	{"v6 dscp 63", []string{"dscp:63"}, withDSCP(ping("fd77::1", "fd77::2"), 63, 3), true},
	{"v6 dscp 1 (bits in both bytes)", []string{"dscp:1"}, withDSCP(ping("fd77::1", "fd77::2"), 1, 0), true},
	{"v6 dscp 16 (bits in byte 0 only)", []string{"dscp:16"}, withDSCP(ping("fd77::1", "fd77::2"), 1, 0), false},

	// Prefixes: source or destination, any protocol, per family.
	{"v4 prefix dst", []string{"192.168.20.0/24"}, ping("10.0.0.1", "192.168.20.9"), true},
	{"v4 prefix src", []string{"192.168.20.0/24"}, udp("192.168.20.255:1", "10.0.0.2:2"), true},
	{"v4 prefix neither", []string{"192.168.20.0/24"}, tcp("192.168.21.0:1", "192.168.19.255:2"), false},
	{"v4 host prefix", []string{"10.0.0.2/32"}, ping("10.0.0.1", "10.0.0.2"), true},
	{"v4 default route", []string{"0.0.0.0/0"}, ping("10.0.0.1", "10.0.0.2"), true},
	{"v4 default route, v6 packet", []string{"0.0.0.0/0"}, ping("fd77::1", "fd77::2"), false},
	{"v6 prefix dst", []string{"fd77:20::/48"}, udp("[fd77::1]:1", "[fd77:20:0:1::9]:2"), true},
	{"v6 prefix src", []string{"fd77:20::/48"}, ping("fd77:20::1", "fd77::2"), true},
	{"v6 prefix neither", []string{"fd77:20::/48"}, ping("fd77:21::1", "fd77::2"), false},
	{"v6 default route, v4 packet", []string{"::/0"}, ping("10.0.0.1", "10.0.0.2"), false},
	{"v6 default route", []string{"::/0"}, ping("fd77::1", "fd77::2"), true},
	{"v4-mapped v6 packet, v4 prefix", []string{"10.0.0.0/8"}, ping("::ffff:10.0.0.1", "::ffff:10.0.0.2"), false},

	// IPv4 fragments and options.
	{"v4 first fragment", []string{"udp:5004"}, frag4(udp("10.0.0.1:40000", "10.0.0.2:5004"), 0, true), true},
	{"v4 later fragment", []string{"udp:5004"}, frag4(udp("10.0.0.1:40000", "10.0.0.2:5004"), 1, false), false},
	{"v4 later fragment, more", []string{"udp:5004"}, frag4(udp("10.0.0.1:5004", "10.0.0.2:5004"), 0x1fff, true), false},
	{"v4 later fragment, dscp", []string{"udp:5004", "dscp:46"}, withDSCP(frag4(udp("10.0.0.1:1", "10.0.0.2:5004"), 1, false), 46, 0), true},
	{"v4 later fragment, prefix", []string{"udp:5004", "10.0.0.2/32"}, frag4(udp("10.0.0.1:1", "10.0.0.2:5004"), 1, false), true},
	{"v4 options", []string{"udp:5004"}, opts4(udp("10.0.0.1:40000", "10.0.0.2:5004"), 3), true},
	{"v4 options max", []string{"tcp:443"}, opts4(tcp("10.0.0.1:443", "10.0.0.2:40000"), 10), true},
	// With IHL 4, the "ports" would be the destination address 10.0.0.2: 2560 and 2.
	{"v4 IHL below 5", []string{"udp:2560"}, func() []byte { p := udp("10.0.0.1:5004", "10.0.0.2:5004"); p[0] = 0x44; return p }(), false},
	{"v4 IHL past the end", []string{"udp:5004"}, func() []byte { p := udp("10.0.0.1:5004", "10.0.0.2:5004")[:30]; p[0] = 0x47; return p }(), false},

	// IPv6 extension headers.
	{"v6 hop-by-hop", []string{"udp:5004"}, ext6(udp("[fd77::1]:40000", "[fd77::2]:5004"), hbh), true},
	{"v6 hop-by-hop, routing, dest opts", []string{"tcp:443"}, ext6(tcp("[fd77::1]:443", "[fd77::2]:40000"), hbh, destOpts, routing, destOpts), true},
	{"v6 first fragment", []string{"udp:5004"}, ext6(udp("[fd77::1]:40000", "[fd77::2]:5004"), firstFrag), true},
	{"v6 hop-by-hop, first fragment", []string{"udp:5004"}, ext6(udp("[fd77::1]:40000", "[fd77::2]:5004"), hbh, firstFrag, destOpts), true},
	{"v6 later fragment", []string{"udp:5004"}, ext6(udp("[fd77::1]:5004", "[fd77::2]:5004"), laterFrag), false},
	{"v6 later fragment, dscp", []string{"udp:5004", "dscp:46"}, withDSCP(ext6(udp("[fd77::1]:5004", "[fd77::2]:5004"), laterFrag), 46, 0), true},
	{"v6 later fragment, prefix", []string{"udp:5004", "fd77::2/128"}, ext6(udp("[fd77::1]:5004", "[fd77::2]:5004"), laterFrag), true},
	{"v6 8 extension headers", []string{"udp:5004"}, ext6(udp("[fd77::1]:1", "[fd77::2]:5004"), hbh, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts), true},
	{"v6 9 extension headers", []string{"udp:5004"}, ext6(udp("[fd77::1]:1", "[fd77::2]:5004"), hbh, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts, destOpts), false},
	{"v6 ESP", []string{"udp:5004"}, func() []byte { p := udp("[fd77::1]:5004", "[fd77::2]:5004"); p[6] = 50; return p }(), false},
	{"v6 no next header", []string{"udp:5004"}, func() []byte { p := udp("[fd77::1]:5004", "[fd77::2]:5004"); p[6] = 59; return p }(), false},
	{"v6 extension header past the end", []string{"udp:5004"}, ext6(udp("[fd77::1]:5004", "[fd77::2]:5004"), ext{typ: protoDestOpts, units: 255})[:60], false},

	// Truncated packets and length fields: ports are read only inside the IP packet.
	{"v4 ports cut off", []string{"udp:5004"}, udp("10.0.0.1:40000", "10.0.0.2:5004")[:23], false},
	{"v4 ports just there", []string{"udp:5004"}, udp("10.0.0.1:40000", "10.0.0.2:5004")[:24], true},
	{"v4 total length before the ports", []string{"udp:5004"}, withLen(udp("10.0.0.1:40000", "10.0.0.2:5004"), 22), false},
	{"v4 total length 0", []string{"udp:5004"}, withLen(udp("10.0.0.1:5004", "10.0.0.2:5004"), 0), false},
	{"v4 trailing bytes", []string{"udp:5004"}, append(udp("10.0.0.1:40000", "10.0.0.2:5004"), 0, 0, 0, 0), true},
	{"v4 header cut off", []string{"dscp:0", "0.0.0.0/0"}, ping("10.0.0.1", "10.0.0.2")[:19], false},
	{"v6 ports cut off", []string{"udp:5004"}, udp("[fd77::1]:40000", "[fd77::2]:5004")[:43], false},
	{"v6 ports cut off, dscp", []string{"udp:5004", "dscp:0"}, udp("[fd77::1]:40000", "[fd77::2]:5004")[:42], true},
	{"v6 ports just there", []string{"udp:5004"}, udp("[fd77::1]:40000", "[fd77::2]:5004")[:44], true},
	{"v6 payload length before the ports", []string{"udp:5004"}, withLen(udp("[fd77::1]:40000", "[fd77::2]:5004"), 42), false},
	{"v6 payload length 0 (jumbogram)", []string{"udp:5004"}, withLen(udp("[fd77::1]:5004", "[fd77::2]:5004"), 40), false},
	{"v6 payload length ends in an extension header", []string{"udp:5004"}, withLen(ext6(udp("[fd77::1]:5004", "[fd77::2]:5004"), hbh, destOpts), 50), false},
	{"v6 header cut off", []string{"dscp:0", "::/0"}, ping("fd77::1", "fd77::2")[:39], false},
	{"empty packet", []string{"dscp:0", "0.0.0.0/0", "::/0"}, []byte{}, false},
	{"nil packet", []string{"dscp:0", "0.0.0.0/0", "::/0"}, nil, false},
	{"version 5", []string{"dscp:0", "0.0.0.0/0", "::/0"}, func() []byte { p := ping("10.0.0.1", "10.0.0.2"); p[0] = 0x55; return p }(), false},
	{"version 0", []string{"dscp:0", "0.0.0.0/0", "::/0"}, make([]byte, 60), false},

	// Sets with several kinds of rules.
	{"mixed, port", []string{"udp:5004", "dscp:46", "192.168.20.0/24", "fd77:20::/48"}, udp("[fd77::1]:5004", "[fd77::2]:1"), true},
	{"mixed, none", []string{"udp:5004", "dscp:46", "192.168.20.0/24", "fd77:20::/48"}, tcp("10.0.0.1:5004", "10.0.0.2:1"), false},
	{"no rules", nil, ping("10.0.0.1", "10.0.0.2"), false},
}

func newSet(t testing.TB, rules []string) *Set {
	t.Helper()
	rs := make([]Rule, len(rules))
	for i, s := range rules {
		rs[i] = MustParseRule(s)
	}
	return NewSet(rs)
}

func TestMatch(t *testing.T) {
	for _, tt := range matchTests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSet(t, tt.rules)
			if got := s.Match(tt.pkt); got != tt.want {
				t.Errorf("Set%q.Match(% x) = %v, want %v", tt.rules, tt.pkt, got, tt.want)
			}
		})
	}
}

func TestEmptySet(t *testing.T) {
	pkt := ping("10.0.0.1", "10.0.0.2")
	var nilSet *Set
	for name, s := range map[string]*Set{"nil": nilSet, "zero": {}, "NewSet(nil)": NewSet(nil), "zero rules": NewSet([]Rule{{}, {}})} {
		if s.Match(pkt) {
			t.Errorf("%s Set matches %x", name, pkt)
		}
	}
	if NewSet(nil) == nil {
		t.Errorf("NewSet(nil) = nil")
	}
}

// allocPackets is one packet of each shape that Match reads differently.
var allocPackets = [][]byte{
	udp("10.0.0.1:40000", "10.0.0.2:5004"),
	tcp("10.0.0.1:40000", "10.0.0.2:8050"),
	opts4(udp("10.0.0.1:40000", "10.0.0.2:40000"), 2),
	frag4(udp("10.0.0.1:40000", "10.0.0.2:5004"), 1, false),
	ping("10.0.0.1", "192.168.20.1"),
	udp("[fd77::1]:40000", "[fd77::2]:5004"),
	tcp("[fd77::1]:40000", "[fd77::2]:40000"),
	ext6(udp("[fd77::1]:40000", "[fd77::2]:40000"), hbh, destOpts, routing, firstFrag),
	withDSCP(ping("fd77::1", "fd77:20::1"), 46, 0),
}

var allocRules = []string{"udp:5004", "udp:16384-32767", "tcp:8000-8100", "dscp:46", "192.168.20.0/24", "fd77:20::/48"}

func TestMatchAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation may allocate; run without -race")
	}
	s := newSet(t, allocRules)
	n := testing.AllocsPerRun(1000, func() {
		for _, p := range allocPackets {
			s.Match(p)
		}
	})
	if n != 0 {
		t.Errorf("Match: %v allocations per %d packets, want 0", n, len(allocPackets))
	}
}

func BenchmarkMatch(b *testing.B) {
	s := newSet(b, allocRules)
	for _, bb := range []struct {
		name string
		pkt  []byte
	}{
		{"v4 udp miss", udp("10.0.0.1:40000", "10.0.0.2:40000")},
		{"v4 udp hit", udp("10.0.0.1:40000", "10.0.0.2:5004")},
		{"v6 ext headers miss", ext6(udp("[fd77::1]:40000", "[fd77::2]:40000"), hbh, destOpts)},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match(bb.pkt)
			}
		})
	}
	b.Run("empty set", func(b *testing.B) {
		var s *Set
		p := udp("10.0.0.1:40000", "10.0.0.2:5004")
		for b.Loop() {
			s.Match(p)
		}
	})
}

// FuzzMatch checks that Match never panics, that a Set matches exactly
// when one of its rules alone does, and that bytes after the IP packet's
// length change nothing.
func FuzzMatch(f *testing.F) {
	for _, tt := range matchTests {
		f.Add(tt.pkt)
	}
	all := newSet(f, allocRules)
	single := make([]*Set, len(allocRules))
	for i, r := range allocRules {
		single[i] = newSet(f, []string{r})
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		got := all.Match(pkt)
		some := false
		for _, s := range single {
			some = some || s.Match(pkt)
		}
		if got != some {
			t.Fatalf("Set.Match = %v, but its rules one by one give %v", got, some)
		}
		if ipLen(pkt) <= len(pkt) {
			if longer := all.Match(append(slices.Clip(pkt), 0x11, 0x8c, 0x11, 0x8c)); longer != got {
				t.Fatalf("Match = %v, %v with bytes after the packet's end", got, longer)
			}
		}
	})
}

// ipLen returns the length an IPv4 or IPv6 packet's header gives it, or
// a huge value when pkt has no such field.
func ipLen(pkt []byte) int {
	switch {
	case len(pkt) >= 20 && pkt[0]>>4 == 4:
		return int(binary.BigEndian.Uint16(pkt[2:4]))
	case len(pkt) >= 40 && pkt[0]>>4 == 6:
		return 40 + int(binary.BigEndian.Uint16(pkt[4:6]))
	}
	return 1 << 30
}
