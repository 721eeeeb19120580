// SPDX-License-Identifier: MIT

package tunnel

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// aggLab drives an aggState directly: paths with a health the test sets,
// a clock the test advances, and flows whose bytes the test adds to their
// buckets and to the txBytes of the path the table puts them on.
type aggLab struct {
	t      *testing.T
	a      *aggState
	clock  time.Time
	paths  []*path
	health map[*path]*PathHealth
	s      *schedule
}

func newAggLab(t *testing.T, n int) *aggLab {
	l := &aggLab{t: t, a: newAggState(), clock: time.Unix(1000, 0), health: make(map[*path]*PathHealth)}
	l.a.now = func() time.Time { return l.clock }
	l.a.bh = func(ph *path) PathHealth { return *l.health[ph] }
	for i := range n {
		ph := &path{name: fmt.Sprintf("p%d", i)}
		l.paths = append(l.paths, ph)
		l.health[ph] = &PathHealth{Usable: true, Rank: i, SRTT: 10 * time.Millisecond, MinRTT: 10 * time.Millisecond}
	}
	l.place()
	return l
}

// place rebuilds the schedule as rescheduleLocked does: usable paths
// first, by rank.
func (l *aggLab) place() {
	s := &schedule{pol: PathPolicy{Mode: Aggregate}, agg: l.a}
	usable := 0
	ps := slices.Clone(l.paths)
	slices.SortStableFunc(ps, func(x, y *path) int {
		hx, hy := l.health[x], l.health[y]
		if hx.Usable != hy.Usable {
			if hx.Usable {
				return -1
			}
			return 1
		}
		return hx.Rank - hy.Rank
	})
	for _, ph := range ps {
		s.paths = append(s.paths, ph)
		s.hs = append(s.hs, *l.health[ph])
		if l.health[ph].Usable {
			usable++
		}
	}
	l.a.place(s, usable)
	l.s = s
}

// pathOf returns the path bucket b is on in the latest schedule.
func (l *aggLab) pathOf(b uint8) *path { return l.s.paths[l.s.aggIdx[b]] }

// tick sends rate[b] bytes per second in each bucket for one clockTick,
// each on its bucket's path, capped per path at capacity (bytes per second;
// 0: no cap) shared in proportion, then measures and places. Paths whose
// offered load exceeds their cap get a queue.
func (l *aggLab) tick(rates map[uint8]float64, capacity map[*path]float64) {
	dt := clockTick.Seconds()
	offered := map[*path]float64{}
	for b, r := range rates {
		offered[l.pathOf(b)] += r
	}
	for b, r := range rates {
		ph := l.pathOf(b)
		if c := capacity[ph]; c > 0 && offered[ph] > c {
			r *= c / offered[ph]
		}
		n := uint64(r * dt)
		l.a.bytes[b].Add(n)
		ph.txBytes.Add(n)
	}
	for _, ph := range l.paths {
		h := l.health[ph]
		h.SRTT = h.MinRTT
		if c := capacity[ph]; c > 0 && offered[ph] > c {
			h.SRTT = h.MinRTT + 25*time.Millisecond // a full tbf queue
		}
	}
	l.clock = l.clock.Add(clockTick)
	m := map[DatagramConn]*path{}
	for i, ph := range l.paths {
		m[fakeConn(i)] = ph
	}
	l.a.measure(m)
	l.place()
}

// fakeConn is a map key standing for a conn.
type fakeConn int

func (fakeConn) SendDatagram([]byte) error { return nil }
func (fakeConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (l *aggLab) on(buckets []uint8) map[*path]int {
	n := map[*path]int{}
	for _, b := range buckets {
		n[l.pathOf(b)]++
	}
	return n
}

const mbit = 1e6 / 8 // bytes per second

func TestAggregateLightFlowsTakeTheShortestPath(t *testing.T) {
	l := newAggLab(t, 2)
	l.health[l.paths[0]].MinRTT = 30 * time.Millisecond // ranked first, but longer
	for range 4 {
		l.tick(map[uint8]float64{1: 1000, 2: 2000, 200: 500}, nil)
	}
	for _, b := range []uint8{1, 2, 3, 200} {
		if ph := l.pathOf(b); ph != l.paths[1] {
			t.Errorf("light bucket %d on %s, want p1 (10 ms against 30 ms)", b, ph.name)
		}
	}
}

func TestAggregateOneFlowLeavesTheSlowPath(t *testing.T) {
	l := newAggLab(t, 2)
	slow, fast := l.paths[0], l.paths[1]
	l.health[fast].MinRTT = 11 * time.Millisecond // the flow starts on the slow one
	capacity := map[*path]float64{slow: 4 * mbit, fast: 40 * mbit}
	flow := map[uint8]float64{7: 100 * mbit} // TCP takes what it gets
	for range 4 {
		l.tick(flow, capacity)
	}
	if ph := l.pathOf(7); ph != fast {
		t.Fatalf("after 1 s the flow is on %s, want the fast path", ph.name)
	}
	for range 40 {
		l.tick(flow, capacity)
		if ph := l.pathOf(7); ph != fast {
			t.Fatalf("the flow went back to %s", ph.name)
		}
	}
	if slices.Contains(l.s.carry, slow) {
		t.Errorf("the 4 Mbit/s path is still eligible next to 40 Mbit/s: carry %v", names(l.s.carry))
	}
	if got := l.a.moves; got != 1 {
		t.Errorf("%d moves, want 1", got)
	}
}

// bulkFlows returns n flows that each want 100 Mbit/s, in buckets 10, 30,
// 50, ..., and their buckets.
func bulkFlows(n int) (map[uint8]float64, []uint8) {
	flows := map[uint8]float64{}
	var buckets []uint8
	for i := range n {
		b := uint8(10 + 20*i)
		flows[b] = 100 * mbit
		buckets = append(buckets, b)
	}
	return flows, buckets
}

func TestAggregateSpreadsFlowsStartedTogether(t *testing.T) {
	l := newAggLab(t, 2)
	capacity := map[*path]float64{l.paths[0]: 40 * mbit, l.paths[1]: 40 * mbit}
	flows, buckets := bulkFlows(8)
	for range 4 {
		l.tick(flows, capacity)
	}
	n := l.on(buckets)
	if n[l.paths[0]] != 4 || n[l.paths[1]] != 4 {
		t.Fatalf("8 flows on two 40 Mbit/s paths: %d and %d, want 4 and 4", n[l.paths[0]], n[l.paths[1]])
	}
	moves := l.a.moves
	for range 40 {
		l.tick(flows, capacity)
	}
	if l.a.moves != moves {
		t.Errorf("%d more moves in 10 s with both paths full, want none", l.a.moves-moves)
	}
}

func TestAggregateSlowPathGetsNoFlows(t *testing.T) {
	l := newAggLab(t, 2)
	fast, slow := l.paths[0], l.paths[1]
	capacity := map[*path]float64{fast: 40 * mbit, slow: 4 * mbit}
	flows, buckets := bulkFlows(8)
	for range 12 {
		l.tick(flows, capacity)
	}
	if n := l.on(buckets); n[fast] != 8 {
		t.Fatalf("after 3 s, %d of 8 flows on the 40 Mbit/s path, want all", n[fast])
	}
	if slices.Contains(l.s.carry, slow) {
		t.Errorf("carry %v, want the 4 Mbit/s path out", names(l.s.carry))
	}
	// Its capacity holds aggCapTTL: then it is tried again, once, and
	// given up again within a second.
	moves := l.a.moves
	for range int(aggCapTTL/clockTick) + 4 {
		l.tick(flows, capacity)
	}
	if n := l.on(buckets); n[fast] != 8 || l.a.moves != 2*moves || slices.Contains(l.s.carry, slow) {
		t.Errorf("aggCapTTL later: %d of 8 flows on the fast path, %d moves (%d before), carry %v; want 8, one retry of the slow path, and it out again",
			n[fast], l.a.moves, moves, names(l.s.carry))
	}
}

func TestAggregateLongPathGetsNoFlows(t *testing.T) {
	l := newAggLab(t, 2)
	l.health[l.paths[1]].MinRTT = 100 * time.Millisecond
	l.tick(nil, nil)
	if slices.Contains(l.s.carry, l.paths[1]) {
		t.Errorf("carry %v, want the 100 ms path out next to a 10 ms one", names(l.s.carry))
	}
}

func TestAggregateUnusablePathLosesItsFlows(t *testing.T) {
	l := newAggLab(t, 2)
	capacity := map[*path]float64{l.paths[0]: 40 * mbit, l.paths[1]: 40 * mbit}
	flows := map[uint8]float64{3: 100 * mbit, 4: 100 * mbit, 5: 100 * mbit, 6: 100 * mbit}
	buckets := []uint8{3, 4, 5, 6}
	for range 8 {
		l.tick(flows, capacity)
	}
	if n := l.on(buckets); n[l.paths[1]] == 0 {
		t.Fatalf("no flow on p1 before the test")
	}
	l.health[l.paths[1]].Usable = false
	l.place() // a health change: PathsChanged
	if n := l.on(buckets); n[l.paths[0]] != 4 {
		t.Fatalf("after p1 became unusable: %d of 4 flows on p0", n[l.paths[0]])
	}
}

func names(ps []*path) []string {
	var out []string
	for _, ph := range ps {
		out = append(out, ph.name)
	}
	return out
}
