// SPDX-License-Identifier: MIT

package seq

import (
	"math"
	"sync"

	"golang.zx2c4.com/wireguard/replay"
)

const (
	// windowSize is how far behind the highest number seen a number is
	// still told apart: replay.Filter's window (127 blocks of 64 bits;
	// the filter does not export it). TestWindowEdge pins it.
	windowSize = 8128
	// resetDistance is the largest jump, behind or ahead of the highest
	// number seen, that does not restart the window.
	resetDistance = 1 << 24
	// counterBase is the filter counter of the number that restarts the
	// window. It must be at least windowSize (127 blocks of 64 bits), so
	// that the counters of the numbers behind it do not go below 0, and
	// so that the first call after replay.Filter.Reset, which clears one
	// block only, clears the rest of the ring.
	counterBase = 1 << 16
	// counterLimit is where counters stop growing: the window restarts
	// rather than overflow.
	counterLimit = 1 << 63
)

// A Verdict is what [Window.Check] decides about a sequence number.
type Verdict uint8

// Verdicts of [Window.Check]. The zero Verdict is none of them.
const (
	// Accept means the number was not seen before: deliver the packet.
	Accept Verdict = iota + 1
	// Duplicate means the number was seen before, within the window:
	// drop the packet.
	Duplicate
	// TooOld means the number is behind the window, so the window cannot
	// tell whether it was seen: drop the packet.
	TooOld
	// Reset means the number is more than 2^24 behind or ahead of the
	// highest number seen: the window restarted there, and the packet is
	// to be delivered, as for Accept.
	Reset
)

var verdictNames = [...]string{
	Accept:    "accept",
	Duplicate: "duplicate",
	TooOld:    "too-old",
	Reset:     "reset",
}

// String returns the verdict's name in lower case ("too-old"), suitable as
// a metric label.
func (v Verdict) String() string {
	if v == 0 || int(v) >= len(verdictNames) {
		return "invalid"
	}
	return verdictNames[v]
}

// A Window is the duplicate filter of the packets received from one peer,
// on all its connections. It is safe for concurrent use. The zero Window is
// empty and ready to use; its first number is accepted and starts it.
type Window struct {
	mu sync.Mutex
	// mu guards the following fields.
	started bool
	top     uint64        // highest number seen, modulo 2^56
	counter uint64        // filter counter of top: the filter's last
	filter  replay.Filter // numbers seen, indexed by counter
}

// Check reports whether the packet numbered seq (modulo 2^56) is new, and
// records it. Call it after every other check of the packet, so that a
// packet dropped for another reason neither takes its number nor restarts
// the window. Check does not allocate.
func (w *Window) Check(seq uint64) Verdict {
	seq &= mask
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.started {
		w.started = true
		w.restartLocked(seq)
		return Accept
	}
	// The serial distance from top to seq, sign-extended from 56 bits.
	d := int64((seq-w.top)<<8) >> 8
	switch {
	case d > resetDistance || d < -resetDistance:
		w.restartLocked(seq)
		return Reset
	case d < -windowSize:
		return TooOld
	case d > 0 && w.counter >= counterLimit-resetDistance:
		w.restartLocked(seq)
		return Reset
	}
	c := w.counter + uint64(d) // d < 0: two's complement; c >= counter-windowSize >= 0
	if !w.filter.ValidateCounter(c, math.MaxUint64) {
		return Duplicate
	}
	if d > 0 {
		w.top, w.counter = seq, c
	}
	return Accept
}

// restartLocked empties the window and records seq as its highest number.
func (w *Window) restartLocked(seq uint64) {
	w.filter.Reset()
	w.top, w.counter = seq, counterBase
	w.filter.ValidateCounter(counterBase, math.MaxUint64)
}
