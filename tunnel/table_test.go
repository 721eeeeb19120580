// SPDX-License-Identifier: MIT

package tunnel

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/godwit-vpn/godwit/config/key"
)

// testPeer returns a peer with id n (not attached to any tunnel).
func testPeer(n byte) *peer { return &peer{id: key.Public{n}} }

func TestTableLookup(t *testing.T) {
	a, b, c := testPeer(1), testPeer(2), testPeer(3)
	tbl, err := buildTable([]route{
		{netip.MustParsePrefix("203.0.113.0/24"), c, 0},
		{netip.MustParsePrefix("203.0.113.0/28"), c, 0},
		{netip.MustParsePrefix("192.0.2.0/24"), a, 0},
		{netip.MustParsePrefix("192.0.2.128/25"), a, 0},
		{netip.MustParsePrefix("198.51.100.7/32"), b, 0},
		{netip.MustParsePrefix("2001:db8::/32"), a, 0},
		{netip.MustParsePrefix("2001:db8:1::/48"), a, 0},
		{netip.MustParsePrefix("2001:db9::1/128"), b, 0},
		{netip.MustParsePrefix("2001:dc0::/29"), b, 0},
	})
	if err != nil {
		t.Fatalf("buildTable: %v", err)
	}
	tests := []struct {
		addr string
		want *peer
	}{
		{"192.0.2.1", a},
		{"192.0.2.200", a},
		{"198.51.100.7", b},
		{"198.51.100.8", nil},
		{"203.0.113.1", c},
		{"203.0.113.200", c},
		{"203.0.114.1", nil},
		{"2001:db8::1", a},
		{"2001:db8:1::1", a},
		{"2001:db9::1", b},
		{"2001:db9::2", nil},
		{"2001:dc7:ffff::1", b},
		{"2001:dc8::1", nil},
		{"::1", nil},
	}
	for _, tt := range tests {
		if got := carrierOf(tbl.lookup(netip.MustParseAddr(tt.addr))); got != tt.want {
			t.Errorf("lookup(%s) = %v, want %v", tt.addr, peerName(got), peerName(tt.want))
		}
	}
}

// carrierOf returns s's carrier, nil for a nil slot.
func carrierOf(s *slot) *peer {
	if s == nil {
		return nil
	}
	return s.carrier()
}

func peerName(p *peer) string {
	if p == nil {
		return "<nil>"
	}
	return p.id.String()
}

func TestBuildTableErrors(t *testing.T) {
	a, b := testPeer(1), testPeer(2)
	tests := []struct {
		name   string
		routes []route
		want   string // substring of the error; "" for success
	}{
		{"same prefix two peers", []route{{netip.MustParsePrefix("192.0.2.0/24"), a, 0}, {netip.MustParsePrefix("192.0.2.0/24"), b, 0}}, "overlaps"},
		{"contained", []route{{netip.MustParsePrefix("192.0.2.0/24"), a, 0}, {netip.MustParsePrefix("192.0.2.64/26"), b, 0}}, "overlaps"},
		{"contains", []route{{netip.MustParsePrefix("192.0.2.64/26"), b, 0}, {netip.MustParsePrefix("192.0.0.0/16"), a, 0}}, "overlaps"},
		{"default v6", []route{{netip.MustParsePrefix("2001:db8::/32"), b, 0}, {netip.MustParsePrefix("::/0"), a, 0}}, "overlaps"},
		{"unmasked same", []route{{netip.MustParsePrefix("192.0.2.1/24"), a, 0}, {netip.MustParsePrefix("192.0.2.2/24"), b, 0}}, "overlaps"},
		{"same peer overlap ok", []route{{netip.MustParsePrefix("192.0.2.0/24"), a, 0}, {netip.MustParsePrefix("192.0.2.0/25"), a, 0}}, ""},
		{"v4 and v6 disjoint", []route{{netip.MustParsePrefix("0.0.0.0/0"), a, 0}, {netip.MustParsePrefix("::/0"), b, 0}}, ""},
		{"same priority", []route{{netip.MustParsePrefix("0.0.0.0/0"), a, 1}, {netip.MustParsePrefix("192.0.2.0/24"), b, 1}}, "overlaps"},
		{"different priorities", []route{{netip.MustParsePrefix("0.0.0.0/0"), a, 1}, {netip.MustParsePrefix("0.0.0.0/0"), b, 2}}, ""},
		{"invalid", []route{{netip.Prefix{}, a, 0}}, "invalid prefix"},
		{"mapped", []route{{netip.MustParsePrefix("::ffff:192.0.2.0/120"), a, 0}}, "IPv4-mapped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildTable(tt.routes)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("buildTable = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("buildTable = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// refLookup is the linear longest-prefix-match reference.
func refLookup(routes []route, a netip.Addr) *peer {
	best, bits := (*peer)(nil), -1
	for _, r := range routes {
		if r.prefix.Contains(a) && r.prefix.Bits() > bits {
			best, bits = r.peer, r.prefix.Bits()
		}
	}
	return best
}

// refOverlap reports whether prefixes of different peers overlap.
func refOverlap(routes []route) bool {
	for i, r := range routes {
		for _, s := range routes[i+1:] {
			if r.peer != s.peer && r.prefix.Overlaps(s.prefix) {
				return true
			}
		}
	}
	return false
}

// randomRoutes returns up to n routes clustered in a small address space,
// so that containment and overlap are common, over up to 8 peers.
func randomRoutes(r *rand.Rand, n int, peers []*peer) []route {
	var routes []route
	for range n {
		var pfx netip.Prefix
		if r.IntN(2) == 0 {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], 0xc0000000|r.Uint32()&0x0003ffff)
			pfx = netip.PrefixFrom(netip.AddrFrom4(a), 12+r.IntN(21))
		} else {
			var a [16]byte
			binary.BigEndian.PutUint64(a[:], 0x20010db800000000|r.Uint64()&0x3ffff)
			binary.BigEndian.PutUint64(a[8:], r.Uint64()&0xff)
			pfx = netip.PrefixFrom(netip.AddrFrom16(a), 40+r.IntN(89))
		}
		routes = append(routes, route{pfx.Masked(), peers[r.IntN(len(peers))], 0})
	}
	return routes
}

// randomAddr returns an address in (or near) the space of randomRoutes.
func randomAddr(r *rand.Rand) netip.Addr {
	if r.IntN(2) == 0 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], 0xc0000000|r.Uint32()&0x0007ffff)
		return netip.AddrFrom4(a)
	}
	var a [16]byte
	binary.BigEndian.PutUint64(a[:], 0x20010db800000000|r.Uint64()&0x7ffff)
	binary.BigEndian.PutUint64(a[8:], r.Uint64()&0x1ff)
	return netip.AddrFrom16(a)
}

// checkTableRandom builds a table from random routes and compares it with
// the linear reference, as wireguard-go's TestTrieRandom does.
func checkTableRandom(t *testing.T, seed1, seed2 uint64, n, npeers int) {
	r := rand.New(rand.NewPCG(seed1, seed2))
	peers := make([]*peer, max(1, npeers))
	for i := range peers {
		peers[i] = testPeer(byte(i + 1))
	}
	routes := randomRoutes(r, n, peers)
	tbl, err := buildTable(routes)
	if overlap := refOverlap(routes); overlap != (err != nil) {
		t.Fatalf("buildTable(%v) error = %v, reference overlap = %v", routes, err, overlap)
	}
	if err != nil {
		return
	}
	for range 200 {
		a := randomAddr(r)
		if got, want := carrierOf(tbl.lookup(a)), refLookup(routes, a); got != want {
			t.Fatalf("lookup(%v) = %v, want %v (routes %v)", a, peerName(got), peerName(want), routes)
		}
	}
	for _, rt := range routes { // every prefix's own address
		if got, want := carrierOf(tbl.lookup(rt.prefix.Addr())), refLookup(routes, rt.prefix.Addr()); got != want {
			t.Fatalf("lookup(%v) = %v, want %v", rt.prefix.Addr(), peerName(got), peerName(want))
		}
	}
}

// TestTableShared: peers with priorities share prefixes. A prefix's slot
// lists every peer whose allowed-IPs contain it, most preferred first; its
// carrier starts as the first.
func TestTableShared(t *testing.T) {
	a, b, c := testPeer(1), testPeer(2), testPeer(3)
	tbl, err := buildTable([]route{
		{netip.MustParsePrefix("198.51.100.0/24"), c, 1}, // more specific, most preferred
		{netip.MustParsePrefix("0.0.0.0/0"), b, 20},
		{netip.MustParsePrefix("0.0.0.0/0"), a, 10},
		{netip.MustParsePrefix("192.0.2.0/24"), b, 20},
	})
	if err != nil {
		t.Fatalf("buildTable: %v", err)
	}
	tests := []struct {
		addr    string
		members []*peer
	}{
		{"203.0.113.1", []*peer{a, b}},
		{"192.0.2.1", []*peer{a, b}},
		{"198.51.100.1", []*peer{c, a, b}},
	}
	for _, tt := range tests {
		s := tbl.lookup(netip.MustParseAddr(tt.addr))
		if s == nil || len(s.members) != len(tt.members) {
			t.Fatalf("lookup(%s) = %+v, want members %v", tt.addr, s, tt.members)
		}
		for i, m := range tt.members {
			if s.members[i] != m {
				t.Errorf("lookup(%s) member %d = %v, want %v", tt.addr, i, peerName(s.members[i]), peerName(m))
			}
		}
		if s.carrier() != tt.members[0] {
			t.Errorf("lookup(%s) carrier = %v, want %v", tt.addr, peerName(s.carrier()), peerName(tt.members[0]))
		}
	}
	if len(tbl.shared) != 3 {
		t.Errorf("%d shared slots, want 3", len(tbl.shared))
	}
}

// TestTableSharedRandom checks slots against a linear reference when
// every peer has its own priority: the members of an address's slot are
// exactly the peers with a prefix that contains it, by priority.
func TestTableSharedRandom(t *testing.T) {
	for i := range uint64(300) {
		r := rand.New(rand.NewPCG(i, i*31))
		peers := make([]*peer, 1+int(i%5))
		for j := range peers {
			peers[j] = testPeer(byte(j + 1))
		}
		routes := randomRoutes(r, 1+int(i%40), peers)
		for k := range routes {
			routes[k].prio = 100 - int(routes[k].peer.id[0]) // peer 1 least preferred
		}
		tbl, err := buildTable(routes)
		if err != nil {
			t.Fatalf("buildTable with distinct priorities: %v", err)
		}
		for range 100 {
			a := randomAddr(r)
			var want []*peer
			for _, rt := range routes {
				if rt.prefix.Contains(a) && !slices.Contains(want, rt.peer) {
					want = append(want, rt.peer)
				}
			}
			slices.SortFunc(want, func(x, y *peer) int { return int(y.id[0]) - int(x.id[0]) })
			s := tbl.lookup(a)
			if len(want) == 0 {
				if s != nil {
					t.Fatalf("lookup(%v) = %v, want none", a, s.members)
				}
				continue
			}
			if s == nil || !slices.Equal(s.members, want) || s.carrier() != want[0] {
				t.Fatalf("lookup(%v) = %+v, want members %v (routes %v)", a, s, want, routes)
			}
		}
	}
}

func TestTableRandom(t *testing.T) {
	for i := range uint64(500) {
		checkTableRandom(t, i, i*7919, 1+int(i%60), 1+int(i%4))
	}
}

func FuzzAllowedIPs(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint8(10), uint8(1))
	f.Add(uint64(3), uint64(4), uint8(40), uint8(3))
	f.Add(uint64(5), uint64(6), uint8(200), uint8(1))
	f.Fuzz(func(t *testing.T, s1, s2 uint64, n, npeers uint8) {
		checkTableRandom(t, s1, s2, int(n), int(npeers%8))
	})
}

func BenchmarkTableLookup(b *testing.B) {
	var routes []route
	for i := range 1000 {
		p := testPeer(byte(i))
		routes = append(routes,
			route{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24), p, 0},
			route{netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i)}), 48), p, 0},
			route{netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 32), p, 0},
		)
	}
	tbl, err := buildTable(routes)
	if err != nil {
		b.Fatal(err)
	}
	a4 := [4]byte{10, 3, 7, 99}
	a6 := [16]byte{0x20, 0x01, 0x0d, 0xb8, 3, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	b.Run("v4", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tbl.lookup4(a4) == nil {
				b.Fatal("no match")
			}
		}
	})
	b.Run("v6", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if tbl.lookup6(a6) == nil {
				b.Fatal("no match")
			}
		}
	})
	b.Run("v4-miss", func(b *testing.B) {
		b.ReportAllocs()
		miss := [4]byte{198, 51, 100, 1}
		for b.Loop() {
			if tbl.lookup4(miss) != nil {
				b.Fatal("unexpected match")
			}
		}
	})
}
