// SPDX-License-Identifier: MIT

package tunnel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
)

// table is an immutable allowed-IPs table: longest-prefix match from an
// address to the peer whose allowed-IPs contain it. It is built off to the
// side by SetPeers and swapped in with an atomic.Pointer, so lookups take
// no lock. Lookups do not allocate.
//
// Each family keeps one map per distinct prefix length, longest first,
// keyed by the address masked to that length. A lookup costs at most one
// map access per distinct length in use (a handful in practice).
type table struct {
	v4 []level4
	v6 []level6
}

type level4 struct {
	bits int
	mask uint32
	m    map[uint32]*peer
}

type level6 struct {
	bits   int
	hi, lo uint64 // mask
	m      map[[2]uint64]*peer
}

func mask4(bits int) uint32 {
	if bits == 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

func mask6(bits int) (hi, lo uint64) {
	switch {
	case bits == 0:
		return 0, 0
	case bits <= 64:
		return ^uint64(0) << (64 - bits), 0
	case bits == 128:
		return ^uint64(0), ^uint64(0)
	default:
		return ^uint64(0), ^uint64(0) << (128 - bits)
	}
}

// lookup4 returns the peer for the IPv4 address a, or nil.
func (t *table) lookup4(a [4]byte) *peer {
	if t == nil {
		return nil
	}
	x := binary.BigEndian.Uint32(a[:])
	for i := range t.v4 {
		l := &t.v4[i]
		if p := l.m[x&l.mask]; p != nil {
			return p
		}
	}
	return nil
}

// lookup6 returns the peer for the IPv6 address a, or nil.
func (t *table) lookup6(a [16]byte) *peer {
	if t == nil {
		return nil
	}
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	for i := range t.v6 {
		l := &t.v6[i]
		if p := l.m[[2]uint64{hi & l.hi, lo & l.lo}]; p != nil {
			return p
		}
	}
	return nil
}

// lookup returns the peer for a (either family), or nil.
func (t *table) lookup(a netip.Addr) *peer {
	if a.Is4() {
		return t.lookup4(a.As4())
	}
	if a.Is6() {
		return t.lookup6(a.As16())
	}
	return nil
}

// route is one allowed-IPs entry for buildTable.
type route struct {
	prefix netip.Prefix
	peer   *peer
}

// buildTable builds a table from routes. Prefixes must be valid and not
// IPv4-mapped IPv6; they are masked. It returns an error when the same or
// overlapping prefixes belong to different peers (overlap within one peer
// is fine: the peer gets both).
func buildTable(routes []route) (*table, error) {
	rs := slices.Clone(routes)
	for i, r := range rs {
		if !r.prefix.IsValid() {
			return nil, fmt.Errorf("tunnel: invalid prefix %v", r.prefix)
		}
		if r.prefix.Addr().Is4In6() {
			return nil, fmt.Errorf("tunnel: IPv4-mapped prefix %v: use the IPv4 form", r.prefix)
		}
		rs[i].prefix = r.prefix.Masked()
	}
	// Shortest first, so that every prefix is checked against the shorter
	// (or equal) ones already inserted: containment in either direction is
	// seen from the longer prefix.
	slices.SortStableFunc(rs, func(a, b route) int { return a.prefix.Bits() - b.prefix.Bits() })
	t := &table{}
	for _, r := range rs {
		if other := t.lookup(r.prefix.Addr()); other != nil && other != r.peer {
			return nil, fmt.Errorf("tunnel: allowed-ips %v of peer %v overlaps allowed-ips of peer %v",
				r.prefix, r.peer.id, other.id)
		}
		t.insert(r.prefix, r.peer)
	}
	slices.SortFunc(t.v4, func(a, b level4) int { return b.bits - a.bits })
	slices.SortFunc(t.v6, func(a, b level6) int { return b.bits - a.bits })
	return t, nil
}

// insert adds p for the masked prefix pfx. Only buildTable calls it.
func (t *table) insert(pfx netip.Prefix, p *peer) {
	bits := pfx.Bits()
	if pfx.Addr().Is4() {
		i := slices.IndexFunc(t.v4, func(l level4) bool { return l.bits == bits })
		if i < 0 {
			t.v4 = append(t.v4, level4{bits: bits, mask: mask4(bits), m: map[uint32]*peer{}})
			i = len(t.v4) - 1
		}
		a := pfx.Addr().As4()
		t.v4[i].m[binary.BigEndian.Uint32(a[:])] = p
		return
	}
	i := slices.IndexFunc(t.v6, func(l level6) bool { return l.bits == bits })
	if i < 0 {
		hi, lo := mask6(bits)
		t.v6 = append(t.v6, level6{bits: bits, hi: hi, lo: lo, m: map[[2]uint64]*peer{}})
		i = len(t.v6) - 1
	}
	a := pfx.Addr().As16()
	t.v6[i].m[[2]uint64{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}] = p
}
