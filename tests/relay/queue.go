// SPDX-License-Identifier: MIT

package relay

import (
	"container/heap"
	"sync"
	"time"
)

// item is a queued datagram; the queue owns pkt.
type item struct {
	at  time.Time // release time
	seq uint64    // arrival order, breaks ties so equal times keep order
	c   *client
	pkt []byte
}

// items is a min-heap ordered by (at, seq).
type items []item

func (h items) Len() int { return len(h) }
func (h items) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h items) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *items) Push(x any)   { *h = append(*h, x.(item)) }
func (h *items) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = item{} // drop references for the GC
	*h = old[:len(old)-1]
	return it
}

// queue is a bounded release-time priority queue with one consumer. Its
// methods are safe for concurrent use.
type queue struct {
	wake chan struct{} // receives a token when the head may have changed

	max int // capacity in datagrams

	// mu guards the following fields.
	mu  sync.Mutex
	h   items
	seq uint64
}

func newQueue(max int) *queue {
	return &queue{wake: make(chan struct{}, 1), max: max}
}

// push queues pkt for release at at. It reports false, and does not keep
// pkt, when the queue is full.
func (q *queue) push(at time.Time, c *client, pkt []byte) bool {
	q.mu.Lock()
	if len(q.h) >= q.max {
		q.mu.Unlock()
		return false
	}
	q.seq++
	heap.Push(&q.h, item{at: at, seq: q.seq, c: c, pkt: pkt})
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// pop removes and returns the head if it is due at now. Otherwise ok is
// false and wait is how long until the head is due, or 0 if the queue is
// empty.
func (q *queue) pop(now time.Time) (it item, wait time.Duration, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.h) == 0 {
		return item{}, 0, false
	}
	if d := q.h[0].at.Sub(now); d > 0 {
		return item{}, d, false
	}
	return heap.Pop(&q.h).(item), 0, true
}

// len returns the number of queued datagrams.
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.h)
}
