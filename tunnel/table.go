// SPDX-License-Identifier: MIT

package tunnel

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
)

// table is an immutable allowed-IPs table: longest-prefix match from an
// address to the slot of the most specific prefix that contains it. It is
// built off to the side by SetPeers and swapped in with an
// atomic.Pointer, so lookups take no lock. Lookups do not allocate.
//
// Each family keeps one map per distinct prefix length, longest first,
// keyed by the address masked to that length. A lookup costs at most one
// map access per distinct length in use (a handful in practice).
type table struct {
	v4 []level4
	v6 []level6
	// shared are the slots with more than one member (a site's hubs with
	// priorities), whose carrier the selection (select.go) sets.
	shared []*slot
}

// slot is the entry of one prefix: every peer whose allowed-IPs contain
// it, most preferred (lowest priority) first, and the one that carries
// the prefix's packets now. Without priorities a slot has one member, its
// only carrier. A packet from a peer is accepted when the peer is a
// member of the slot of its source address.
type slot struct {
	pfx     netip.Prefix // masked
	members []*peer
	prios   []int // priority of members[i]
	cur     atomic.Pointer[peer]
}

// carrier returns the peer that packets to the slot's prefix go to.
func (s *slot) carrier() *peer { return s.cur.Load() }

// has reports whether p is a member of s (usually its only one).
func (s *slot) has(p *peer) bool { return slices.Contains(s.members, p) }

type level4 struct {
	bits int
	mask uint32
	m    map[uint32]*slot
}

type level6 struct {
	bits   int
	hi, lo uint64 // mask
	m      map[[2]uint64]*slot
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

// lookup4 returns the slot for the IPv4 address a, or nil.
func (t *table) lookup4(a [4]byte) *slot {
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

// lookup6 returns the slot for the IPv6 address a, or nil.
func (t *table) lookup6(a [16]byte) *slot {
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

// lookup returns the slot for a (either family), or nil.
func (t *table) lookup(a netip.Addr) *slot {
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
	prio   int // the peer's priority: lower is preferred
}

// buildTable builds a table from routes. Prefixes must be valid and not
// IPv4-mapped IPv6; they are masked. Overlapping prefixes of different
// peers are allowed only when the peers' priorities differ (a site's
// hubs; a peer without a priority has 0, so two such peers never
// overlap): the slot of a prefix then lists every peer whose allowed-IPs
// contain it, by priority. Overlap within one peer is fine: the peer gets
// both. Each slot's carrier starts as its first member.
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
	// seen from the longer prefix, and a prefix's slot can take the
	// members of every slot that contains it.
	slices.SortStableFunc(rs, func(a, b route) int { return a.prefix.Bits() - b.prefix.Bits() })
	t := &table{}
	for _, r := range rs {
		s := t.exact(r.prefix)
		if s == nil {
			s = &slot{pfx: r.prefix}
			for _, cover := range t.covering(r.prefix) {
				for i, m := range cover.members {
					if !s.has(m) {
						s.members, s.prios = append(s.members, m), append(s.prios, cover.prios[i])
					}
				}
			}
			t.insert(r.prefix, s)
		}
		if s.has(r.peer) {
			continue
		}
		for i, m := range s.members {
			if s.prios[i] == r.prio {
				return nil, fmt.Errorf("tunnel: allowed-ips %v of peer %v overlaps allowed-ips of peer %v", r.prefix, r.peer.id, m.id)
			}
		}
		s.members, s.prios = append(s.members, r.peer), append(s.prios, r.prio)
	}
	seen := make(map[*slot]bool)
	t.each(func(s *slot) {
		if seen[s] {
			return
		}
		seen[s] = true
		sortMembers(s)
		s.cur.Store(s.members[0])
		if len(s.members) > 1 {
			t.shared = append(t.shared, s)
		}
	})
	slices.SortFunc(t.v4, func(a, b level4) int { return b.bits - a.bits })
	slices.SortFunc(t.v6, func(a, b level6) int { return b.bits - a.bits })
	return t, nil
}

// sortMembers orders s's members by priority.
func sortMembers(s *slot) {
	idx := make([]int, len(s.members))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return s.prios[a] - s.prios[b] })
	members, prios := make([]*peer, len(idx)), make([]int, len(idx))
	for i, j := range idx {
		members[i], prios[i] = s.members[j], s.prios[j]
	}
	s.members, s.prios = members, prios
}

// exact returns the slot of exactly pfx (masked), or nil. Only buildTable
// calls it.
func (t *table) exact(pfx netip.Prefix) *slot {
	bits := pfx.Bits()
	if pfx.Addr().Is4() {
		for _, l := range t.v4 {
			if l.bits == bits {
				a := pfx.Addr().As4()
				return l.m[binary.BigEndian.Uint32(a[:])]
			}
		}
		return nil
	}
	for _, l := range t.v6 {
		if l.bits == bits {
			a := pfx.Addr().As16()
			return l.m[[2]uint64{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}]
		}
	}
	return nil
}

// covering returns the slots of the shorter prefixes that contain pfx.
// Only buildTable calls it.
func (t *table) covering(pfx netip.Prefix) []*slot {
	var out []*slot
	if pfx.Addr().Is4() {
		a := pfx.Addr().As4()
		x := binary.BigEndian.Uint32(a[:])
		for _, l := range t.v4 {
			if l.bits < pfx.Bits() {
				if s := l.m[x&l.mask]; s != nil {
					out = append(out, s)
				}
			}
		}
		return out
	}
	a := pfx.Addr().As16()
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	for _, l := range t.v6 {
		if l.bits < pfx.Bits() {
			if s := l.m[[2]uint64{hi & l.hi, lo & l.lo}]; s != nil {
				out = append(out, s)
			}
		}
	}
	return out
}

// each calls f for every slot of t (a slot once per prefix).
func (t *table) each(f func(*slot)) {
	for _, l := range t.v4 {
		for _, s := range l.m {
			f(s)
		}
	}
	for _, l := range t.v6 {
		for _, s := range l.m {
			f(s)
		}
	}
}

// insert adds s for the masked prefix pfx. Only buildTable calls it.
func (t *table) insert(pfx netip.Prefix, s *slot) {
	bits := pfx.Bits()
	if pfx.Addr().Is4() {
		i := slices.IndexFunc(t.v4, func(l level4) bool { return l.bits == bits })
		if i < 0 {
			t.v4 = append(t.v4, level4{bits: bits, mask: mask4(bits), m: map[uint32]*slot{}})
			i = len(t.v4) - 1
		}
		a := pfx.Addr().As4()
		t.v4[i].m[binary.BigEndian.Uint32(a[:])] = s
		return
	}
	i := slices.IndexFunc(t.v6, func(l level6) bool { return l.bits == bits })
	if i < 0 {
		hi, lo := mask6(bits)
		t.v6 = append(t.v6, level6{bits: bits, hi: hi, lo: lo, m: map[[2]uint64]*slot{}})
		i = len(t.v6) - 1
	}
	a := pfx.Addr().As16()
	t.v6[i].m[[2]uint64{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}] = s
}
