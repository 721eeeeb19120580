// SPDX-License-Identifier: MIT

package tunnel

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"net/netip"
	"testing"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tun/tuntest"
	"github.com/godwit-vpn/godwit/tunnel/internal/seq"
)

var (
	hostA4 = netip.MustParseAddr("192.0.2.10")
	hostB4 = netip.MustParseAddr("192.0.2.70")
	hostA6 = netip.MustParseAddr("2001:db8:a::10")
	hostB6 = netip.MustParseAddr("2001:db8:b::10")
)

func TestCheckPacket(t *testing.T) {
	ping4 := tuntest.Ping(hostA4, hostB4, 1, 1, 10)
	ping6 := tuntest.Ping(hostA6, hostB6, 1, 1, 10)
	withIHL := func(p []byte, ihl byte) []byte {
		q := bytes.Clone(p)
		q[0] = 0x40 | ihl
		return q
	}
	withLen4 := func(p []byte, n uint16) []byte {
		q := bytes.Clone(p)
		binary.BigEndian.PutUint16(q[2:], n)
		return q
	}
	withLen6 := func(p []byte, n uint16) []byte {
		q := bytes.Clone(p)
		binary.BigEndian.PutUint16(q[4:], n)
		return q
	}
	tests := []struct {
		name  string
		in    []byte
		wantN int
		wantV verdict
	}{
		{"empty", nil, 0, verdictMalformed},
		{"v4", ping4, len(ping4), verdictOK},
		{"v4 trailing", append(bytes.Clone(ping4), 1, 2, 3), len(ping4), verdictOK},
		{"v4 short", ping4[:19], 0, verdictMalformed},
		{"v4 ihl 4", withIHL(ping4, 4), 0, verdictMalformed},
		{"v4 ihl beyond", withIHL(ping4[:24], 15), 0, verdictMalformed},
		{"v4 length beyond", withLen4(ping4, uint16(len(ping4)+1)), 0, verdictMalformed},
		{"v4 length below header", withLen4(ping4, 19), 0, verdictMalformed},
		{"v4 header only", withLen4(ping4, 20), 20, verdictOK},
		{"v6", ping6, len(ping6), verdictOK},
		{"v6 trailing", append(bytes.Clone(ping6), 9), len(ping6), verdictOK},
		{"v6 short", ping6[:39], 0, verdictMalformed},
		{"v6 length beyond", withLen6(ping6, uint16(len(ping6))), 0, verdictMalformed},
		{"v6 header only", withLen6(ping6, 0), 40, verdictOK},
		{"nibble 0", []byte{0x00, 1, 2}, 0, verdictUnknownFormat},
		{"nibble 5", []byte{0x50}, 0, verdictUnknownFormat},
		{"nibble 15", bytes.Repeat([]byte{0xff}, 60), 0, verdictUnknownFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, v := checkPacket(tt.in)
			if n != tt.wantN || v != tt.wantV {
				t.Errorf("checkPacket = %d, %d, want %d, %d", n, v, tt.wantN, tt.wantV)
			}
		})
	}
}

// icmpError is an ICMP error parsed back by parseICMPError.
type icmpError struct {
	src, dst   netip.Addr
	typ, code  byte
	mtu        int
	quote      []byte
	totalBytes int
}

// parseICMPError parses an IPv4 ICMP or IPv6 ICMPv6 error message and
// checks its lengths and checksums with tuntest's independent checksum.
func parseICMPError(p []byte) (icmpError, error) {
	var e icmpError
	if len(p) == 0 {
		return e, fmt.Errorf("empty")
	}
	e.totalBytes = len(p)
	var m []byte
	switch p[0] >> 4 {
	case 4:
		if len(p) < 28 || p[0] != 0x45 {
			return e, fmt.Errorf("bad IPv4 header % x", p[:min(len(p), 20)])
		}
		if got := int(binary.BigEndian.Uint16(p[2:])); got != len(p) {
			return e, fmt.Errorf("total length %d, packet %d", got, len(p))
		}
		if c := tuntest.Checksum(p[:20], 0); c != 0 {
			return e, fmt.Errorf("bad IPv4 header checksum (verifies to %#x)", c)
		}
		if p[9] != 1 {
			return e, fmt.Errorf("protocol %d, want 1", p[9])
		}
		if len(p) > 576 {
			return e, fmt.Errorf("ICMPv4 error of %d bytes exceeds 576", len(p))
		}
		e.src, e.dst = netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		m = p[20:]
		if c := tuntest.Checksum(m, 0); c != 0 {
			return e, fmt.Errorf("bad ICMP checksum (verifies to %#x)", c)
		}
		e.mtu = int(binary.BigEndian.Uint16(m[6:8]))
	case 6:
		if len(p) < 48 {
			return e, fmt.Errorf("short IPv6 packet")
		}
		if got := int(binary.BigEndian.Uint16(p[4:])) + 40; got != len(p) {
			return e, fmt.Errorf("payload length + 40 = %d, packet %d", got, len(p))
		}
		if p[6] != 58 {
			return e, fmt.Errorf("next header %d, want 58", p[6])
		}
		if len(p) > 1280 {
			return e, fmt.Errorf("ICMPv6 error of %d bytes exceeds 1280", len(p))
		}
		e.src, e.dst = netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		m = p[40:]
		if c := tuntest.Checksum(m, tuntest.PseudoHeaderSum(e.src, e.dst, 58, len(m))); c != 0 {
			return e, fmt.Errorf("bad ICMPv6 checksum (verifies to %#x)", c)
		}
		e.mtu = int(binary.BigEndian.Uint32(m[4:8]))
	default:
		return e, fmt.Errorf("version %d", p[0]>>4)
	}
	e.typ, e.code, e.quote = m[0], m[1], m[8:]
	return e, nil
}

func TestBuildICMP(t *testing.T) {
	own4, own6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:a::1")
	big4 := tuntest.Ping(hostA4, hostB4, 1, 2, 1400)
	big6 := tuntest.Ping(hostA6, hostB6, 1, 2, 1400)
	small4 := tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostB4, 2), []byte("x"))
	tests := []struct {
		name      string
		orig      []byte
		kind      icmpKind
		mtu       int
		src       netip.Addr
		wantNone  bool
		wantSrc   netip.Addr
		typ, code byte
		wantMTU   int
		wantLen   int
	}{
		{"v4 too big", big4, icmpTooBig, 1000, own4, false, own4, 3, 4, 1000, 576},
		{"v4 too big small orig", small4, icmpTooBig, 20, own4, true, own4, 0, 0, 0, 0},
		{"v4 too big small", small4, icmpTooBig, 576, own4, false, own4, 3, 4, 576, 28 + len(small4)},
		{"v4 unreachable", small4, icmpUnreachable, 0, own4, false, own4, 3, 1, 0, 28 + len(small4)},
		{"v4 no own address", small4, icmpUnreachable, 0, netip.Addr{}, false, hostB4, 3, 1, 0, 28 + len(small4)},
		{"v4 wrong family own address", small4, icmpUnreachable, 0, own6, false, hostB4, 3, 1, 0, 28 + len(small4)},
		{"v6 too big", big6, icmpTooBig, 1300, own6, false, own6, 2, 0, 1300, 1280},
		{"v6 too big below 1280", big6, icmpTooBig, 1279, own6, true, own6, 0, 0, 0, 0},
		{"v6 unreachable", big6, icmpUnreachable, 0, own6, false, own6, 1, 3, 0, 1280},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]byte, 2000)
			n := buildICMP(out, tt.orig, tt.kind, tt.mtu, tt.src)
			if tt.wantNone {
				if n != 0 {
					t.Fatalf("buildICMP = %d bytes, want none", n)
				}
				return
			}
			e, err := parseICMPError(out[:n])
			if err != nil {
				t.Fatalf("parseICMPError: %v", err)
			}
			if e.typ != tt.typ || e.code != tt.code || e.mtu != tt.wantMTU || e.totalBytes != tt.wantLen {
				t.Errorf("type/code/mtu/len = %d/%d/%d/%d, want %d/%d/%d/%d",
					e.typ, e.code, e.mtu, e.totalBytes, tt.typ, tt.code, tt.wantMTU, tt.wantLen)
			}
			if e.src != tt.wantSrc || e.dst != srcAddr(tt.orig) {
				t.Errorf("src, dst = %v, %v, want %v, %v", e.src, e.dst, tt.wantSrc, srcAddr(tt.orig))
			}
			if !bytes.Equal(e.quote, tt.orig[:len(e.quote)]) {
				t.Errorf("quote is not a prefix of the original packet")
			}
		})
	}
}

func TestNoICMPAbout(t *testing.T) {
	icmpErr4 := tuntest.Ping(hostA4, hostB4, 1, 1, 8)
	icmpErr4[20] = 3 // destination unreachable: an error
	icmpErr6 := tuntest.Ping(hostA6, hostB6, 1, 1, 8)
	icmpErr6[40] = 2 // packet too big
	frag4 := tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostB4, 2), []byte("x"))
	frag4[6], frag4[7] = 0, 10 // fragment offset 10
	mcast := tuntest.UDP(netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("224.0.0.251:5353"), nil)
	bcast := tuntest.UDP(netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("255.255.255.255:67"), nil)
	unspec6 := tuntest.UDP(netip.MustParseAddrPort("[::]:1"), netip.MustParseAddrPort("[2001:db8::1]:2"), nil)
	tests := []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"echo4", tuntest.Ping(hostA4, hostB4, 1, 1, 8), false},
		{"echo6", tuntest.Ping(hostA6, hostB6, 1, 1, 8), false},
		{"udp4", tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostB4, 2), nil), false},
		{"icmp error4", icmpErr4, true},
		{"icmp error6", icmpErr6, true},
		{"fragment4", frag4, true},
		{"multicast dst", mcast, true},
		{"broadcast dst", bcast, true},
		{"unspecified src6", unspec6, true},
	}
	for _, tt := range tests {
		if got := noICMPAbout(tt.pkt); got != tt.want {
			t.Errorf("noICMPAbout(%s) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// seedPackets are real encodings for the fuzz corpora.
func seedPackets() [][]byte {
	return [][]byte{
		tuntest.Ping(hostA4, hostB4, 1, 2, 100),
		tuntest.Ping(hostA6, hostB6, 1, 2, 100),
		tuntest.Ping(hostA4, hostB4, 1, 2, 1400),
		tuntest.UDP(netip.AddrPortFrom(hostA4, 53), netip.AddrPortFrom(hostB4, 5353), []byte("query")),
		tuntest.UDP(netip.AddrPortFrom(hostA6, 53), netip.AddrPortFrom(hostB6, 5353), []byte("query")),
		tuntest.UDP(netip.AddrPortFrom(hostB4, 53), netip.AddrPortFrom(hostA4, 5353), []byte("from b")),
		tuntest.Ping(hostB6, hostA6, 1, 2, 1400),
		{0x45},
		{0x70, 1, 2, 3},
	}
}

func FuzzInboundPacket(f *testing.F) {
	for _, p := range seedPackets() {
		f.Add(p)
	}
	tu, err := New(tuntest.NewChannel(1), Config{})
	if err != nil {
		f.Fatal(err)
	}
	idB, idC := key.Public{2}, key.Public{3}
	allowedB := []netip.Prefix{netip.MustParsePrefix("192.0.2.64/26"), netip.MustParsePrefix("2001:db8:b::/48")}
	if err := tu.SetPeers([]PeerConfig{
		{ID: idB, AllowedIPs: allowedB},
		{ID: idC, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/26"), netip.MustParsePrefix("2001:db8:a::/48")}},
	}); err != nil {
		f.Fatal(err)
	}
	pb := tu.peers[idB]
	f.Fuzz(func(t *testing.T, d []byte) {
		// receivePacket takes d (it decrements the TTL in place): compare
		// with a copy. A releaser counts that d comes back exactly once.
		orig := bytes.Clone(d)
		rel := &countingReleaser{}
		before := pb.stats.snapshot()
		pb.receivePacket(nil, d, rel)
		after := pb.stats.snapshot()
		d = orig
		accepted := after.RxPackets - before.RxPackets
		dropped := after.Drops.Total() - before.Drops.Total()
		dups := after.Duplicates - before.Duplicates // a second copy of a sequenced datagram: discarded, not lost
		if accepted+dropped+dups != 1 {
			t.Fatalf("accepted %d, dropped %d, duplicates %d, want exactly one outcome", accepted, dropped, dups)
		}
		if accepted == 0 {
			if rel.n != 1 {
				t.Fatalf("dropped datagram released %d times, want 1", rel.n)
			}
			return
		}
		pkt := <-tu.inbound
		if rel.n != 0 {
			t.Fatalf("queued datagram released %d times, want 0 until written", rel.n)
		}
		defer pkt.release()
		got := pkt.data
		if d[0]>>4 == seqNibble { // the IP packet follows the sequenced header
			d = d[seq.HeaderLen:]
		}
		if !bytes.Equal(got, forwarded(d[:len(got)])) {
			t.Fatalf("queued packet is not a prefix of the datagram, with one hop less")
		}
		var src netip.Addr
		switch got[0] >> 4 {
		case 4:
			ihl := int(got[0]&0xf) * 4
			if len(got) < 20 || ihl < 20 || ihl > len(got) || int(binary.BigEndian.Uint16(got[2:])) != len(got) {
				t.Fatalf("accepted IPv4 packet with inconsistent lengths: % x", got[:min(len(got), 20)])
			}
			src = netip.AddrFrom4([4]byte(got[12:16]))
		case 6:
			if len(got) < 40 || int(binary.BigEndian.Uint16(got[4:]))+40 != len(got) {
				t.Fatalf("accepted IPv6 packet with inconsistent lengths")
			}
			src = netip.AddrFrom16([16]byte(got[8:24]))
		default:
			t.Fatalf("accepted version %d", got[0]>>4)
		}
		if !allowedB[0].Contains(src) && !allowedB[1].Contains(src) {
			t.Fatalf("accepted source %v outside the peer's allowed-IPs", src)
		}
	})
}

func FuzzICMPTooBig(f *testing.F) {
	for _, p := range seedPackets() {
		f.Add(p, 1000, false)
		f.Add(p, 1280, true)
	}
	own4, own6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8:a::1")
	out := make([]byte, bufSize)
	f.Fuzz(func(t *testing.T, p []byte, limit int, unreachable bool) {
		n, v := checkPacket(p)
		if v != verdictOK {
			return // the outbound path only passes validated packets
		}
		orig := p[:n]
		kind := icmpTooBig
		if unreachable {
			kind = icmpUnreachable
		}
		src := own4
		if orig[0]>>4 == 6 {
			src = own6
		}
		m := buildICMP(out, orig, kind, limit, src)
		if m == 0 {
			return
		}
		e, err := parseICMPError(out[:m])
		if err != nil {
			t.Fatalf("buildICMP output does not parse: %v", err)
		}
		if e.dst != srcAddr(orig) {
			t.Fatalf("ICMP to %v, want the original source %v", e.dst, srcAddr(orig))
		}
		if !bytes.Equal(e.quote, orig[:len(e.quote)]) {
			t.Fatalf("quote is not a prefix of the original")
		}
		if minQuote := min(len(orig), 28); orig[0]>>4 == 4 && len(e.quote) < minQuote {
			t.Fatalf("quote %d bytes, want at least %d", len(e.quote), minQuote)
		}
		// Never an error about an ICMP error (checked here only for the
		// common layout without IPv6 extension headers).
		if orig[0]>>4 == 4 && orig[9] == 1 {
			if ihl := int(orig[0]&0xf) * 4; len(orig) > ihl {
				switch orig[ihl] {
				case 3, 4, 5, 11, 12:
					t.Fatalf("ICMP error about ICMP error type %d", orig[ihl])
				}
			}
		}
		if orig[0]>>4 == 6 && orig[6] == 58 && len(orig) > 40 && orig[40] < 128 {
			t.Fatalf("ICMPv6 error about ICMPv6 error type %d", orig[40])
		}
		if kind == icmpTooBig {
			switch orig[0] >> 4 {
			case 4:
				if e.typ != 3 || e.code != 4 || e.mtu != min(limit, 0xffff) || limit < 68 {
					t.Fatalf("type %d code %d mtu %d for limit %d", e.typ, e.code, e.mtu, limit)
				}
			case 6:
				if e.typ != 2 || int64(e.mtu) != min(int64(limit), math.MaxUint32) || limit < 1280 {
					t.Fatalf("type %d mtu %d for limit %d", e.typ, e.mtu, limit)
				}
			}
		}
	})
}

// countingReleaser counts ReleaseDatagram calls.
type countingReleaser struct{ n int }

func (r *countingReleaser) ReleaseDatagram([]byte) { r.n++ }
