// SPDX-License-Identifier: MIT

package tunnel

// Aggregate: flows over paths in proportion to what each path can carry.
//
// A flow (addresses, protocol, ports) hashes to one of aggBuckets buckets,
// and a table maps each bucket to a path, so a flow's packets never take
// two paths; a bucket moves only when the table is rebalanced, and the
// flows in it are reordered once then. The sender counts the bytes of each
// bucket; every clockTick (refreshAggregate) the tunnel measures, under
// t.mu:
//
//   - each path's send rate (its bytes in the last tick) and its queue:
//     the smoothed RTT above the path's base RTT (PathHealth.MinRTT: the
//     daemon gives the least RTT sample of the last 10-20 s). A path whose queue
//     exceeds max(aggQueue, minRTT/4), or whose loss is at least aggLoss,
//     while it sends more than aggLightRate, at two ticks in a row, is
//     saturated: what it
//     delivers (rate x (1 - loss)) is its capacity, and it stays "limited"
//     at that capacity for aggCapTTL. A path that is not saturated can
//     carry at least what it delivers.
//   - each bucket's rate; a bucket above aggLightRate is heavy (a bulk
//     flow), the others light (a ping, a voice call, DNS, new flows).
//
// The paths' weights are their capacities, a path never found limited
// counting as much as the best capacity seen on any path (it may well
// carry more: it has not been filled yet). A usable path gets flows when
// its weight is at least 1/aggSlowFactor of the best weight and its
// minimum RTT at most aggregateRTTFactor times the best's plus
// aggregateRTTSlack: a path far slower or far longer than the best would
// only hold back the flows placed on it.
//
// Light buckets go to the eligible path with the lowest RTT, so
// interactive traffic never waits behind the longer path. Heavy buckets
// stay where they are, unless their path is no longer eligible, or a
// saturated path carries more than its share (the total rate in
// proportion to the weights) while a path that is not saturated carries
// less: then heavy buckets move from the one to the other, largest first,
// as much as the smaller of the two differences (at least one bucket,
// when that does not make the imbalance worse), each bucket at most once
// per aggPin. One TCP flow on the slower of two paths therefore moves to
// the faster one after it filled the slower one, and eight flows started
// together on one path are split between two within a tick or two.

import (
	"slices"
	"sync/atomic"
	"time"
)

const (
	// aggBuckets is the number of flow buckets; flows in one bucket
	// share a path.
	aggBuckets = 256
	// aggLightRate (bytes per second) divides light buckets from heavy
	// ones, and is the least rate at which a path's queue says anything
	// about its capacity.
	aggLightRate = 64 << 10
	// aggQueue is the least queue (SRTT above the minimum RTT) that makes
	// a busy path saturated.
	aggQueue = 5 * time.Millisecond
	// aggLoss is the least loss ratio that makes a busy path saturated.
	aggLoss = 0.05
	// aggCapTTL is how long a capacity measured on a saturated path
	// limits its weight.
	aggCapTTL = 30 * time.Second
	// aggSlowFactor: a path whose weight is below the best's divided by
	// this gets no flows.
	aggSlowFactor = 4
	// aggPin is the least time between two moves of one bucket.
	aggPin = 2 * time.Second
	// aggImbalance: a saturated path is rebalanced only when it carries
	// more than its share times this.
	aggImbalance = 1.1
)

// pathEst is the Aggregate estimate of one path; it is guarded by t.mu.
type pathEst struct {
	seen      bool    // lastTx is valid
	lastTx    uint64  // the path's txBytes at the latest tick
	rate      float64 // bytes per second sent in the latest tick
	capacity  float64 // bytes per second: measured when limited, else a lower bound
	limitedAt time.Time
	queued    bool          // a queue or loss at the latest tick
	saturated bool          // queued at the latest two ticks
	baseRTT   time.Duration // minimum RTT, or SRTT when unknown
}

// limited reports whether e's capacity was measured within aggCapTTL.
func (e *pathEst) limited(now time.Time) bool {
	return !e.limitedAt.IsZero() && now.Sub(e.limitedAt) < aggCapTTL
}

// aggState is a peer's flow table in Aggregate mode. The sender adds to
// bytes; the rest is guarded by t.mu.
type aggState struct {
	bytes [aggBuckets]atomic.Uint64 // bytes sent per bucket since the latest tick

	last     time.Time              // the latest tick
	measured bool                   // a tick measured since the latest rebalance
	rate     [aggBuckets]float64    // bytes per second, smoothed over ticks
	table    [aggBuckets]*path      // the path of each bucket; nil: none yet
	movedAt  [aggBuckets]time.Time  // when each bucket last moved
	moves    uint64                 // buckets moved by rebalancing, for tests
	scratch  [aggBuckets]uint8      // rebalance's candidate list
	loads    map[*path]float64      // rebalance's loads, reused
	targets  map[*path]float64      // rebalance's shares, reused
	weights  map[*path]float64      // place's weights, reused
	eligible map[*path]bool         // place's eligible paths, reused
	bh       func(*path) PathHealth // health of a path (tests may replace it)
	now      func() time.Time       // the clock (tests may replace it)
}

func newAggState() *aggState {
	return &aggState{
		loads: make(map[*path]float64), targets: make(map[*path]float64),
		weights: make(map[*path]float64), eligible: make(map[*path]bool),
		bh: pathHealthOf, now: time.Now,
	}
}

// pathHealthOf returns ph's health; a path without a health function is
// usable.
func pathHealthOf(ph *path) PathHealth {
	if ph.health == nil {
		return PathHealth{Usable: true}
	}
	return ph.health()
}

// bucket returns the bucket of a flow hash.
func aggBucket(h uint64) uint8 { return uint8(h ^ h>>8 ^ h>>16 ^ h>>32) }

// measure takes one tick's measurements of paths and buckets.
func (a *aggState) measure(paths map[DatagramConn]*path) {
	now := a.now()
	dt := now.Sub(a.last).Seconds()
	first := a.last.IsZero() || dt <= 0
	a.last = now
	for _, ph := range paths {
		e := &ph.est
		tx := ph.txBytes.Load()
		e.rate = 0
		if e.seen && !first {
			e.rate = float64(tx-e.lastTx) / dt
		}
		e.lastTx, e.seen = tx, true
		h := a.bh(ph)
		e.baseRTT = h.MinRTT
		if e.baseRTT <= 0 || (h.SRTT > 0 && h.SRTT < e.baseRTT) {
			e.baseRTT = h.SRTT
		}
		queue := h.SRTT - e.baseRTT
		delivered := e.rate * (1 - min(max(h.Loss, 0), 1))
		// Two ticks in a row: one slow tick (a busy CPU delaying the
		// ACKs) is not a bottleneck (a CI run under -race judged a path
		// limited at a fraction of its rate and dropped it for 30 s).
		queued := h.Usable && e.rate >= aggLightRate && h.SRTT > 0 &&
			(queue > max(aggQueue, e.baseRTT/4) || h.Loss >= aggLoss)
		e.saturated = queued && e.queued
		e.queued = queued
		switch {
		case e.saturated && e.limited(now):
			e.capacity = 0.75*e.capacity + 0.25*delivered
			e.limitedAt = now
		case e.saturated:
			e.capacity = delivered
			e.limitedAt = now
		case delivered > e.capacity:
			e.capacity = delivered
		}
	}
	if first {
		for b := range a.bytes {
			a.bytes[b].Store(0)
		}
		return
	}
	for b := range a.bytes {
		a.rate[b] = (a.rate[b] + float64(a.bytes[b].Swap(0))/dt) / 2
	}
	a.measured = true
}

// place fills s.carry (the eligible paths) and s.aggIdx from the table,
// moving the buckets of paths that are not eligible and, after a tick's
// measurements, rebalancing. paths are s.paths[:usable], best first.
func (a *aggState) place(s *schedule, usable int) {
	now := a.now()
	rebalance := a.measured
	a.measured = false
	clear(a.weights)
	clear(a.eligible)
	cands := s.paths[:usable]
	if usable == 0 {
		cands = s.paths // nothing known to work: try them all
	}
	var best float64
	var bestRTT time.Duration
	for _, ph := range cands {
		best = max(best, ph.est.capacity)
		if bestRTT == 0 || (ph.est.baseRTT > 0 && ph.est.baseRTT < bestRTT) {
			bestRTT = ph.est.baseRTT
		}
	}
	optimistic := max(best, 1)
	best = 0
	for _, ph := range cands {
		w := ph.est.capacity
		if !ph.est.limited(now) {
			w = optimistic
		}
		a.weights[ph] = w
		best = max(best, w)
	}
	var light *path
	var lightLossy bool
	for i, ph := range cands {
		if a.weights[ph]*aggSlowFactor < best ||
			(bestRTT > 0 && ph.est.baseRTT > aggregateRTTFactor*bestRTT+aggregateRTTSlack) {
			continue
		}
		a.eligible[ph] = true
		s.carry = append(s.carry, ph)
		lossy := i < len(s.hs) && s.hs[i].Lossy
		if light == nil || (lightLossy && !lossy) ||
			(lightLossy == lossy && ph.est.baseRTT < light.est.baseRTT) {
			light, lightLossy = ph, lossy
		}
	}
	if light == nil { // cannot happen: the best weight is eligible
		light = cands[0]
		a.eligible[light] = true
		s.carry = append(s.carry, light)
	}

	// Loads and shares of the eligible paths.
	clear(a.loads)
	clear(a.targets)
	var total, wsum float64
	for b, ph := range a.table {
		if ph != nil {
			a.loads[ph] += a.rate[b]
			total += a.rate[b]
		}
	}
	for _, ph := range s.carry {
		wsum += a.weights[ph]
	}
	for _, ph := range s.carry {
		a.targets[ph] = total * a.weights[ph] / wsum
	}

	// Buckets on paths that are not eligible, and light ones, find a home.
	for b, ph := range a.table {
		heavy := a.rate[b] >= aggLightRate
		switch {
		case !heavy && ph != light:
			a.move(uint8(b), light, now, false)
		case heavy && !a.eligible[ph]:
			var to *path
			for _, q := range s.carry {
				if to == nil || a.targets[q]-a.loads[q] > a.targets[to]-a.loads[to] {
					to = q
				}
			}
			a.move(uint8(b), to, now, false)
		}
	}

	if rebalance && len(s.carry) > 1 {
		for range len(s.carry) {
			if !a.rebalance(s.carry, now) {
				break
			}
		}
	}

	idx := new([aggBuckets]uint8)
	for b, ph := range a.table {
		idx[b] = uint8(slices.Index(s.paths, ph))
	}
	s.aggIdx = idx
}

// move puts bucket b on path to, keeping the loads current; a
// rebalancing move pins the bucket for aggPin.
func (a *aggState) move(b uint8, to *path, now time.Time, pin bool) {
	from := a.table[b]
	if from == to {
		return
	}
	if from != nil {
		a.loads[from] -= a.rate[b]
	}
	a.loads[to] += a.rate[b]
	a.table[b] = to
	if pin {
		a.movedAt[b] = now
	}
}

// rebalance moves heavy buckets from the saturated path most above its
// share to the unsaturated path most below its share, if there are such;
// it reports whether it moved any.
func (a *aggState) rebalance(carry []*path, now time.Time) bool {
	var from, to *path
	for _, ph := range carry {
		over := a.loads[ph] - a.targets[ph]
		switch {
		case ph.est.saturated && a.loads[ph] > a.targets[ph]*aggImbalance:
			if from == nil || over > a.loads[from]-a.targets[from] {
				from = ph
			}
		case !ph.est.saturated && over < 0:
			if to == nil || over < a.loads[to]-a.targets[to] {
				to = ph
			}
		}
	}
	if from == nil || to == nil {
		return false
	}
	budget := min(a.loads[from]-a.targets[from], a.targets[to]-a.loads[to])
	c := a.scratch[:0]
	for b, ph := range a.table {
		if ph == from && a.rate[b] >= aggLightRate && now.Sub(a.movedAt[b]) >= aggPin {
			c = append(c, uint8(b))
		}
	}
	if len(c) == 0 {
		return false
	}
	slices.SortFunc(c, func(x, y uint8) int {
		switch {
		case a.rate[x] > a.rate[y]:
			return -1
		case a.rate[x] < a.rate[y]:
			return 1
		}
		return int(x) - int(y)
	})
	var moved float64
	n := 0
	for _, b := range c {
		if moved+a.rate[b] <= budget {
			moved += a.rate[b]
			a.move(b, to, now, true)
			n++
		}
	}
	if n == 0 {
		// Every heavy bucket is larger than the budget: move the smallest
		// if the two paths are then no further apart than now.
		b := c[len(c)-1]
		if a.rate[b] > a.loads[from]-a.loads[to] {
			return false
		}
		a.move(b, to, now, true)
		n = 1
	}
	a.moves += uint64(n)
	return true
}
