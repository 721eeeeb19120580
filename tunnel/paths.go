// SPDX-License-Identifier: MIT

package tunnel

// Multipath: a peer may have a set of connections (paths), one per uplink
// of the site, instead of one current connection. The peer's sender then
// asks its schedule, per packet, which paths carry it:
//
//   - Failover: the best usable path. On a site the best is the lowest
//     rank (the uplinks' order of preference); on a hub (Follow) it is the
//     path the peer's latest packet arrived on, so the hub answers where
//     the site sends, and the best usable one when that path is not.
//   - Redundant: the two best usable paths (all with RedundancyAll); the
//     far end keeps the first copy.
//   - Aggregate: one of the usable paths chosen by the flow (addresses,
//     protocol and ports) through a table of flow buckets, so a flow's
//     packets never take two paths; bulk flows are spread in proportion
//     to the paths' measured capacities, light ones take the shortest
//     path, and a path far slower or far longer than the best gets none
//     (aggregate.go).
//   - Duplicate rules (any mode): a matching packet also goes on the next
//     usable path.
//
// With no usable path at all, every path carries: one of them may still
// work, and that is cheaper than an outage.
//
// When a peer has more than one path and all of them announced it, every
// datagram starts with the sequenced header (package seq, first nibble
// seqNibble): the receiver keeps the first copy of each sequence number and
// counts the others. Plain datagrams (first nibble 4 or 6) are always
// accepted as well. A sender's numbers start at a random point, so the
// receiver's window sees a restarted peer as a jump and starts over.
//
// The schedule is an immutable snapshot, rebuilt under t.mu when a path
// joins or leaves, the policy changes or the caller reports a health change
// (PathsChanged); the sender only loads it.

import (
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tunnel/classify"
	"github.com/godwit-vpn/godwit/tunnel/internal/seq"
)

// Mode is how a peer's packets use its paths.
type Mode uint8

// The modes; see the package's multipath overview in paths.go.
const (
	Failover Mode = iota
	Redundant
	Aggregate
)

func (m Mode) String() string {
	switch m {
	case Failover:
		return "failover"
	case Redundant:
		return "redundant"
	case Aggregate:
		return "aggregate"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// seqNibble is the first nibble of a sequenced datagram.
const seqNibble = 1

// MaxPaths is the most paths a peer may have; AttachPath refuses more with
// ErrTooManyPaths.
const MaxPaths = 8

// ErrTooManyPaths is returned by AttachPath for a peer that has MaxPaths.
var ErrTooManyPaths = errors.New("tunnel: too many paths for one peer")

// aggregateRTTSlack: in Aggregate, a path whose minimum RTT exceeds
// aggregateRTTFactor times the best path's plus this slack gets no flows
// (its packets would arrive far behind the others'). Only bulk flows go
// there (light ones take the shortest path), and a bulk flow keeps its
// path, so the slack can be wide: with 20 ms, a 1 ms Wi-Fi next to a
// 21 ms cellular link sat on the boundary, and the benchmark's 40+40 with
// 20 ms more on one got 36 instead of 72 Mbit/s in 1 run of 5. A
// satellite link (600 ms) next to cellular (50 ms) is still out.
const (
	aggregateRTTFactor = 3
	aggregateRTTSlack  = 50 * time.Millisecond
)

// PathPolicy is how a peer uses its paths.
type PathPolicy struct {
	Mode Mode
	// RedundancyAll makes Redundant send on every usable path instead of
	// the two best.
	RedundancyAll bool
	// Duplicate, if not nil, selects packets that are also sent on a
	// second path, in any mode.
	Duplicate *classify.Set
	// Follow makes Failover carry on the path the peer's latest packet
	// arrived on (a hub: it answers where the site sends).
	Follow bool
}

// PathHealth is what a path's health function reports.
type PathHealth struct {
	Usable bool          // carrying traffic makes sense now
	Lossy  bool          // usable but losing packets: a path that is not comes first, but a copy on it still helps
	Rank   int           // lower is preferred (the uplink's order); ties go by SRTT
	SRTT   time.Duration // smoothed round-trip time, 0 if unknown
	// MinRTT is the path's lowest RTT (without queues), 0 if unknown; and
	// Loss its recent loss ratio, 0 to 1. Aggregate measures capacity with
	// them (aggregate.go).
	MinRTT time.Duration
	Loss   float64
}

// PathOptions describe a connection that joins a peer's path set.
type PathOptions struct {
	// Name identifies the path in logs and PathStats (an uplink name, or
	// the peer's address).
	Name string
	// Sequenced reports that the peer understands sequenced datagrams on
	// this connection.
	Sequenced bool
	// Health reports the path's health; it is called under the tunnel's
	// lock when the schedule is rebuilt, so it must be fast and must not
	// call back into the tunnel. Nil means always usable, rank 0.
	Health func() PathHealth
	// Carrying, if not nil, is told after every rebuild of the schedule
	// whether the path carries traffic (in the schedule's carry set), under
	// the same rules as Health. A site probes its carrying paths more often
	// than its warm ones.
	Carrying func(bool)
}

// path is one connection of a peer's path set.
type path struct {
	a        *attachment
	name     string
	seqOK    bool // these three are written and read under t.mu
	health   func() PathHealth
	carrying func(bool)

	txPackets, txBytes, dupSent atomic.Uint64
	rxPackets, rxBytes, dupDrop atomic.Uint64
	tooOld                      atomic.Uint64
	since                       time.Time
	est                         pathEst // Aggregate; guarded by t.mu
}

// schedule is an immutable snapshot of a peer's paths and policy.
type schedule struct {
	pol   PathPolicy
	paths []*path      // every path, best first
	hs    []PathHealth // health of paths[i] when the snapshot was made
	carry []*path      // Failover: [best]; Redundant: the copies; Aggregate: the eligible
	seq   bool         // every datagram gets the sequenced header
	seed  maphash.Seed // Aggregate's flow hash
	// Aggregate: the bucket counters, and the index in paths of each
	// bucket's path (aggregate.go).
	agg    *aggState
	aggIdx *[aggBuckets]uint8
}

// PathStats describes one path of a peer, for status and metrics.
type PathStats struct {
	Conn DatagramConn
	Name string
	// Role is "carrying" (sends this peer's traffic now), "warm" (usable,
	// standing by) or "down" (not usable).
	Role                  string
	SRTT                  time.Duration
	TxPackets, TxBytes    uint64
	RxPackets, RxBytes    uint64
	DupSent, DupDiscarded uint64    // extra copies sent; copies received second
	TooOld                uint64    // sequence numbers behind the window
	Since                 time.Time // when the path joined
	Sequenced, Usable     bool
	Rank                  int
	Mode                  Mode
}

// AttachPath adds c to the path set of peer id and starts its receiver.
// From then on the peer's sender schedules packets over its paths (see the
// overview in paths.go) instead of a single current connection. A peer has
// at most MaxPaths paths; the next is refused with ErrTooManyPaths and
// not attached. Attaching a path that is already there updates its
// Sequenced, Health and Carrying (not its Name); a conn attached with Attach keeps
// its receiver and becomes a path. The tunnel does not take ownership of
// c.
func (t *Tunnel) AttachPath(id key.Public, c DatagramConn, o PathOptions) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[id]; p != nil && c != nil && p.paths[c] == nil && len(p.paths) >= MaxPaths {
		p.stats.pathsRefused.Add(1)
		return fmt.Errorf("%w (%d)", ErrTooManyPaths, MaxPaths)
	}
	p, err := t.attachLocked(id, c, "attach path")
	if err != nil {
		return err
	}
	if ph := p.paths[c]; ph != nil {
		ph.seqOK, ph.health, ph.carrying = o.Sequenced, o.Health, o.Carrying
		p.rescheduleLocked()
		return nil
	}
	if p.paths == nil {
		p.paths = make(map[DatagramConn]*path)
	}
	a := p.recv[c]
	p.conn.CompareAndSwap(a, nil) // attached with Attach first: now a path
	np := &path{a: a, name: o.Name, seqOK: o.Sequenced, health: o.Health, carrying: o.Carrying, since: time.Now()}
	p.paths[c] = np
	a.path.Store(np)
	p.rescheduleLocked()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	p.log.Info("tunnel: path attached", "path", o.Name, "paths", len(p.paths), "sequenced", o.Sequenced)
	return nil
}

// SetPathPolicy sets how peer id uses its paths. It does nothing for an
// unknown peer.
func (t *Tunnel) SetPathPolicy(id key.Public, pol PathPolicy) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[id]; p != nil {
		p.policy = pol
		if pol.Mode == Aggregate && p.agg == nil {
			p.agg = newAggState()
		}
		p.rescheduleLocked()
	}
}

// PathsChanged makes peer id's schedule read its paths' health again. The
// caller calls it when a path's health changed.
func (t *Tunnel) PathsChanged(id key.Public) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.peers[id]; p != nil {
		p.rescheduleLocked()
	}
}

// PathStats returns the paths of peer id, best first, or nil.
func (t *Tunnel) PathStats(id key.Public) []PathStats {
	t.mu.Lock()
	p := t.peers[id]
	t.mu.Unlock()
	if p == nil {
		return nil
	}
	s := p.sched.Load()
	if s == nil {
		return nil
	}
	follow := p.lastRxPath.Load()
	out := make([]PathStats, 0, len(s.paths))
	for i, ph := range s.paths {
		h := s.hs[i]
		role := "down"
		switch {
		case s.carries(ph, follow):
			role = "carrying"
		case h.Usable:
			role = "warm"
		}
		out = append(out, PathStats{
			Conn: ph.a.c, Name: ph.name, Role: role, SRTT: h.SRTT, Rank: h.Rank, Usable: h.Usable,
			TxPackets: ph.txPackets.Load(), TxBytes: ph.txBytes.Load(),
			RxPackets: ph.rxPackets.Load(), RxBytes: ph.rxBytes.Load(),
			DupSent: ph.dupSent.Load(), DupDiscarded: ph.dupDrop.Load(), TooOld: ph.tooOld.Load(),
			Since: ph.since, Sequenced: s.seq, Mode: s.pol.Mode,
		})
	}
	return out
}

// carries reports whether ph carries traffic in s (for PathStats; in
// Aggregate, every eligible path carries some flows).
func (s *schedule) carries(ph, follow *path) bool {
	if s.pol.Mode == Failover && s.pol.Follow && s.usable(follow) {
		return ph == follow
	}
	return slices.Contains(s.carry, ph)
}

// refreshAggregate measures the paths and flows of every peer in Aggregate
// mode and rebuilds its schedule, every clockTick: the paths' rates and
// queues change without a change of health state (aggregate.go).
func (t *Tunnel) refreshAggregate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.peers {
		if p.agg != nil && p.policy.Mode == Aggregate && len(p.paths) > 1 {
			p.agg.measure(p.paths)
			p.rescheduleLocked()
		}
	}
}

// removePathLocked takes c out of p's path set, if it is there. t.mu must
// be held.
func (p *peer) removePathLocked(c DatagramConn) {
	ph := p.paths[c]
	if ph == nil {
		return
	}
	delete(p.paths, c)
	ph.a.path.Store(nil)
	p.lastRxPath.CompareAndSwap(ph, nil)
	p.rescheduleLocked()
	p.log.Info("tunnel: path detached", "path", ph.name, "paths", len(p.paths))
}

// rescheduleLocked rebuilds p's schedule from its paths' health. t.mu must
// be held.
func (p *peer) rescheduleLocked() {
	p.reschedule()
	if p.shared {
		p.t.selectLocked()
	}
}

// reschedule is rescheduleLocked without the hub selection.
func (p *peer) reschedule() {
	if len(p.paths) == 0 {
		p.sched.Store(nil)
		return
	}
	s := &schedule{pol: p.policy, seed: p.seed}
	type ranked struct {
		ph *path
		h  PathHealth
	}
	rs := make([]ranked, 0, len(p.paths))
	seqOK := len(p.paths) > 1
	for _, ph := range p.paths {
		h := PathHealth{Usable: true}
		if ph.health != nil {
			h = ph.health()
		}
		rs = append(rs, ranked{ph, h})
		seqOK = seqOK && ph.seqOK
	}
	slices.SortFunc(rs, func(a, b ranked) int {
		switch {
		case a.h.Usable != b.h.Usable:
			if a.h.Usable {
				return -1
			}
			return 1
		case a.h.Lossy != b.h.Lossy:
			if b.h.Lossy {
				return -1
			}
			return 1
		case a.h.Rank != b.h.Rank:
			return a.h.Rank - b.h.Rank
		case a.h.SRTT != b.h.SRTT:
			if a.h.SRTT < b.h.SRTT {
				return -1
			}
			return 1
		}
		return a.ph.since.Compare(b.ph.since)
	})
	usable := 0
	for _, r := range rs {
		s.paths = append(s.paths, r.ph)
		s.hs = append(s.hs, r.h)
		if r.h.Usable {
			usable++
		}
	}
	s.seq = seqOK
	switch {
	case usable == 0:
		s.carry = s.paths // nothing known to work: try them all
	case s.pol.Mode == Failover:
		s.carry = s.paths[:1]
	case s.pol.Mode == Redundant && s.pol.RedundancyAll:
		s.carry = s.paths[:usable]
	case s.pol.Mode == Redundant:
		s.carry = s.paths[:min(2, usable)]
	case s.pol.Mode == Aggregate && p.agg != nil:
		s.agg = p.agg
		p.agg.place(s, usable)
	default: // Aggregate before SetPathPolicy made its state: cannot happen
		s.carry = s.paths[:1]
	}
	p.sched.Store(s)
	for _, ph := range s.paths {
		if ph.carrying != nil {
			ph.carrying(slices.Contains(s.carry, ph))
		}
	}
}

// pick returns the paths that carry pkt, at most len(buf), in buf.
// follow is the path of the peer's latest received packet (Follow).
func (s *schedule) pick(pkt []byte, follow *path, buf *[MaxPaths]*path) []*path {
	out := buf[:0]
	switch {
	case s.pol.Mode == Failover && s.pol.Follow && s.usable(follow):
		out = append(out, follow)
	case s.agg != nil:
		b := aggBucket(flowHash(s.seed, pkt))
		s.agg.bytes[b].Add(uint64(len(pkt)))
		out = append(out, s.paths[s.aggIdx[b]])
	default:
		out = append(out, s.carry...)
	}
	if s.pol.Duplicate != nil && len(out) == 1 && s.pol.Duplicate.Match(pkt) {
		for i, ph := range s.paths {
			if ph != out[0] && s.hs[i].Usable {
				out = append(out, ph)
				break
			}
		}
	}
	return out
}

// usable reports whether ph is a usable path of s; false for nil. A scan:
// a set has at most MaxPaths paths, and it runs per packet on a hub.
func (s *schedule) usable(ph *path) bool {
	for i, q := range s.paths {
		if q == ph {
			return ph != nil && s.hs[i].Usable
		}
	}
	return false
}

// flowHash hashes the flow of an IP packet accepted by checkPacket: its
// addresses and protocol and, for the first fragment of TCP and UDP, its
// ports.
func flowHash(seed maphash.Seed, b []byte) uint64 {
	var k [37]byte
	var n int
	var proto byte
	var l4 []byte
	if b[0]>>4 == 4 {
		n = copy(k[:], b[12:20])
		proto = b[9]
		ihl := int(b[0]&0x0f) * 4
		if b[6]&0x1f == 0 && b[7] == 0 && len(b) >= ihl+4 { // fragment offset 0
			l4 = b[ihl:]
		}
	} else {
		n = copy(k[:], b[8:40])
		proto = b[6]
		l4 = b[ipv6HeaderLen:]
	}
	k[n] = proto
	n++
	if (proto == 6 || proto == 17) && len(l4) >= 4 {
		n += copy(k[n:], l4[:4])
	}
	return maphash.Bytes(seed, k[:n])
}

// sendOnPaths sends the packet in pkt on the paths the schedule s picks:
// with the sequenced header when s.seq, written into the buffer's headroom.
// It returns the buffer to the pool.
func (p *peer) sendOnPaths(s *schedule, pkt outPacket, log *slog.Logger) {
	defer p.t.putOutBuf(pkt.buf)
	data := pkt.data()
	var buf [MaxPaths]*path
	paths := s.pick(data, p.lastRxPath.Load(), &buf)
	d := data
	if s.seq {
		start := packetOffset - seq.HeaderLen
		seq.Put(pkt.buf.b[start:packetOffset], p.seqTx.Next())
		d = pkt.buf.b[start : packetOffset+pkt.n]
	}
	sent := false
	for i, ph := range paths {
		err := ph.a.c.SendDatagram(d)
		if err != nil {
			p.sendFailed(err, data, s.seq, log)
			continue
		}
		ph.txPackets.Add(1)
		ph.txBytes.Add(uint64(pkt.n))
		if i > 0 {
			ph.dupSent.Add(1)
		}
		sent = true
	}
	if sent {
		p.stats.txPackets.Add(1)
		p.stats.txBytes.Add(uint64(pkt.n))
		stamp(&p.stats.lastTx, p.t.clock.Load())
	}
}

// parseSequenced reads the header of the sequenced datagram d and returns
// its number and the IP packet behind it; ok is false (counted) for a
// header cut short or of a later version.
func (p *peer) parseSequenced(d []byte) (num uint64, pkt []byte, ok bool) {
	num, pkt, err := seq.Parse(d)
	switch {
	case errors.Is(err, seq.ErrVersion): // a later version of the format
		p.stats.unknownFormat.Add(1)
		return 0, nil, false
	case err != nil:
		p.stats.inMalformed.Add(1)
		return 0, nil, false
	}
	return num, pkt, true
}

// firstCopy records the sequence number num of a valid packet received on
// path ph (nil when its conn is not in the path set) and reports whether
// it is the first copy; a copy already received, or a number behind the
// window, is counted and dropped.
func (p *peer) firstCopy(ph *path, num uint64) bool {
	switch p.window.Check(num) {
	case seq.Duplicate:
		if ph != nil {
			ph.dupDrop.Add(1)
		}
		p.stats.dupDiscarded.Add(1)
		return false
	case seq.TooOld:
		if ph != nil {
			ph.tooOld.Add(1)
		}
		p.stats.seqTooOld.Add(1)
		return false
	case seq.Reset:
		p.stats.seqResets.Add(1)
	}
	return true
}
