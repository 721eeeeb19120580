// SPDX-License-Identifier: MIT

package seq

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// n returns the sequence number i modulo 2^56, so that tests can write the
// numbers just before the wrap as n(-1), n(-2) and so on.
func n(i int64) uint64 { return uint64(i) & mask }

type step struct {
	seq  uint64
	want Verdict
}

// accept returns steps that check each of seqs and want Accept.
func accept(seqs ...uint64) []step {
	s := make([]step, len(seqs))
	for i, q := range seqs {
		s[i] = step{q, Accept}
	}
	return s
}

// run checks the steps in order on w.
func run(t *testing.T, w *Window, steps ...[]step) {
	t.Helper()
	i := 0
	for _, ss := range steps {
		for _, s := range ss {
			if got := w.Check(s.seq); got != s.want {
				t.Errorf("step %d: Check(%#x) = %v, want %v", i, s.seq, got, s.want)
			}
			i++
		}
	}
}

func TestWindow(t *testing.T) {
	const x = 1 << 40 // an arbitrary place to start, far from 0 and from the wrap
	tests := []struct {
		name  string
		steps [][]step
	}{
		{"first number zero", [][]step{accept(0, 1, 2)}},
		{"first number last", [][]step{accept(n(-1), 0)}},
		{"in order", [][]step{accept(x, x+1, x+2, x+3, x+4)}},
		{"reordered within the window", [][]step{
			accept(x, x+3, x+1, x+2, x+10, x+4, x+9, x+5, x+8, x+6, x+7),
			accept(x+8000, x+20, x+7999, x+11, x+8001, x+12),
		}},
		{"duplicates", [][]step{
			accept(x),
			{{x, Duplicate}},
			accept(x + 1),
			{{x, Duplicate}, {x + 1, Duplicate}},
			accept(x + 5),
			{{x + 5, Duplicate}, {x + 1, Duplicate}},
			accept(x + 3),
			{{x + 3, Duplicate}},
		}},
		{"numbers are taken modulo 2^56", [][]step{
			accept(5),
			{{1<<56 + 5, Duplicate}, {1<<63 | 5, Duplicate}},
			accept(1<<60 + 6),
			{{6, Duplicate}},
		}},
		{"edge of the window", [][]step{
			accept(x),
			accept(x+8129, x+1), // x is 8,129 behind now, x+1 is 8,128 behind
			{{x, TooOld}, {x + 1, Duplicate}, {x - 1, TooOld}},
			accept(x + 2),
		}},
		{"behind the first number", [][]step{
			accept(x, x-8128, x-1),
			{{x - 8129, TooOld}, {x - 8128, Duplicate}},
			accept(x+1, x-8127),
		}},
		{"behind the first number after a reset", [][]step{
			accept(x),
			{{x + 1<<30, Reset}},
			accept(x+1<<30-8128, x+1<<30-1),
			{{x + 1<<30 - 8129, TooOld}, {x + 1<<30 - 8128, Duplicate}},
			accept(x + 1<<30 + 1),
		}},
		{"too old, 2^24-1 and 2^24 behind", [][]step{
			accept(x),
			{{x - (1<<24 - 1), TooOld}, {x - 1<<24, TooOld}},
			accept(x + 1),
			{{x, Duplicate}},
		}},
		{"reset, 2^24+1 behind", [][]step{
			accept(x, x+1),
			{{x - (1<<24 + 1), Reset}},
			accept(x - 1<<24), // the window restarted there: next in order
			{{x - (1<<24 + 1), Duplicate}},
			accept(x), // exactly 2^24 ahead of the new top: no reset
			{{x, Duplicate}},
			accept(x + 1), // seen before the reset, which forgot it
		}},
		{"reset, far ahead", [][]step{
			accept(x, x+1),
			{{x + 1<<40, Reset}, {x + 1<<40, Duplicate}},
			accept(x + 1<<40 - 1),
			{{x + 1, Reset}, {x + 1<<40, Reset}},
		}},
		{"reset, 2^24+1 ahead", [][]step{
			accept(x),
			{{x + 1<<24 + 1, Reset}, {x, Reset}},
		}},
		{"exactly 2^24 ahead clears the window", [][]step{
			accept(x, x+1),
			accept(x+1<<24, x+1<<24-1, x+1<<24-8128),
			{{x + 1<<24 - 8128 - 1, TooOld}, {x + 1, TooOld}},
		}},
		{"half the space away", [][]step{
			accept(x),
			{{x + 1<<55, Reset}, {x, Reset}, {n(x - 1<<55), Reset}},
		}},
		{"wrap in order", [][]step{
			accept(n(-10), n(-9), n(-8), n(-7), n(-6), n(-5), n(-4), n(-3), n(-2), n(-1)),
			accept(0, 1, 2, 3, 4, 5, 6, 7, 8, 9),
		}},
		{"wrap reordered, with duplicates", [][]step{
			accept(n(-10), n(-9), n(-8), n(-7), n(-5), n(-6), n(-3), n(-1)),
			accept(1, n(-2), 0, n(-4), 3, 2, 4, 5, 9, 6, 8, 7),
			{{n(-1), Duplicate}, {0, Duplicate}, {n(-10), Duplicate}, {9, Duplicate}, {1<<56 + 9, Duplicate}},
			{{n(-10 + 1<<56), Duplicate}},
		}},
		{"wrap, too old and reset behind", [][]step{
			accept(n(-3), 5),
			{{n(5 - 8128 - 1), TooOld}, {n(-3), Duplicate}},
			accept(n(5 - 8128)),
			{{n(5 - 1<<24 - 1), Reset}},
		}},
		{"wrap, a jump of 2^24 across it", [][]step{
			accept(n(-5), 1<<24-5),
			{{n(-5), TooOld}, {n(-4), TooOld}},
			accept(1 << 24),
			{{1<<24 + 1<<24 + 1, Reset}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w Window
			run(t, &w, tt.steps...)
		})
	}
}

// TestWindowRingWrap sends more than three laps of the filter's ring of
// 8,192 bits in order, with late packets, then duplicates of recent and
// old numbers late in the stream, starting both far from and just before
// the 56-bit wrap.
func TestWindowRingWrap(t *testing.T) {
	const count = 4*8192 + 100
	for _, start := range []uint64{0, 1 << 40, n(-3 * 8192), n(-count)} {
		t.Run(fmt.Sprintf("start %#x", start), func(t *testing.T) {
			var w Window
			var late []uint64 // numbers held back, sent 100 numbers later
			check := func(i int, want Verdict) {
				t.Helper()
				if got := w.Check(start + uint64(i)); got != want {
					t.Fatalf("Check(start+%d) = %v, want %v", i, got, want)
				}
			}
			for i := range count {
				if i%97 == 1 {
					late = append(late, uint64(i))
				} else {
					check(i, Accept)
				}
				if len(late) > 0 && late[0]+100 == uint64(i) {
					check(int(late[0]), Accept)
					late = late[1:]
				}
				if i > 3*8192 && i%13 == 0 && i%97 > 2 { // neither i nor i-1 is late
					check(i, Duplicate)
					check(i-1, Duplicate)
					check(i-100, Duplicate)
					check(i-8128, Duplicate)
					check(i-8128-1, TooOld)
				}
			}
		})
	}
}

// TestWindowEdge pins windowSize to replay.Filter's window: a number
// exactly 8,128 behind the top, never seen, is still accepted, and one
// more behind is too old.
func TestWindowEdge(t *testing.T) {
	var w Window
	const x = 1 << 30
	for i := uint64(0); i <= 9000; i++ {
		if i != 9000-8128 && i != 9000-8128-1 {
			if got := w.Check(x + i); got != Accept {
				t.Fatalf("Check(x+%d) = %v, want accept", i, got)
			}
		}
	}
	run(t, &w, []step{
		{x + 9000 - 8128 - 1, TooOld},
		{x + 9000 - 8128, Accept},
		{x + 9000 - 8128, Duplicate},
		{x + 9000 - 8128 + 1, Duplicate},
	})
}

// TestWindowCounterLimit checks that the window restarts rather than let
// the filter's counter overflow.
func TestWindowCounterLimit(t *testing.T) {
	var w Window
	run(t, &w, accept(100))
	// Move the filter to the brink, as 2^7 laps of the 56-bit space
	// would; no test can run that long.
	w.filter.Reset()
	w.counter = counterLimit - resetDistance - 1
	w.filter.ValidateCounter(w.counter, 1<<64-1)
	run(t, &w,
		[]step{{99, Accept}, {100, Duplicate}, {50, Accept}},
		[]step{{101, Accept}, {102, Reset}, {102, Duplicate}},
		accept(101, 103))
	if w.counter != counterBase+1 {
		t.Errorf("counter after the restart = %#x, want %#x", w.counter, counterBase+1)
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{0: "invalid", Accept: "accept", Duplicate: "duplicate", TooOld: "too-old", Reset: "reset", Reset + 1: "invalid"} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", v, got, want)
		}
	}
}

// TestWindowConcurrent calls Check from four goroutines, as the receivers
// of four connections of one peer do, in rounds of 4,096 numbers that
// cross the 56-bit wrap and the filter's ring: every number must be
// accepted exactly once.
func TestWindowConcurrent(t *testing.T) {
	const goroutines, rounds, round = 4, 8, 4096
	const start = 1<<56 - 3*round - 7
	for _, overlap := range []bool{false, true} {
		t.Run(map[bool]string{false: "disjoint", true: "overlapping"}[overlap], func(t *testing.T) {
			var w Window
			var accepted [rounds * round]atomic.Int32
			var bad atomic.Int32 // verdicts other than Accept and Duplicate
			for r := range rounds {
				// Between rounds, every goroutine has finished: the
				// numbers of a round are never more than one round
				// ahead of the top, so never too old.
				var wg sync.WaitGroup
				for g := range goroutines {
					wg.Go(func() {
						rng := rand.New(rand.NewPCG(uint64(r), uint64(g)))
						for _, i := range rng.Perm(round) {
							if !overlap && i%goroutines != g {
								continue
							}
							i += r * round
							switch w.Check(start + uint64(i)) {
							case Accept:
								accepted[i].Add(1)
							case Duplicate:
							default:
								bad.Add(1)
							}
						}
					})
				}
				wg.Wait()
			}
			if b := bad.Load(); b != 0 {
				t.Errorf("%d verdicts were neither accept nor duplicate", b)
			}
			for i := range accepted {
				if got := accepted[i].Load(); got != 1 {
					t.Errorf("number start+%d accepted %d times, want once", i, got)
				}
			}
		})
	}
}

// model is the window as the package documentation describes it, without
// a bitmap: it remembers every number accepted since the last restart.
type model struct {
	started bool
	top     uint64
	seen    map[uint64]bool
}

func (m *model) check(s uint64) Verdict {
	s %= 1 << 56
	restart := func() {
		m.started, m.top, m.seen = true, s, map[uint64]bool{s: true}
	}
	if !m.started {
		restart()
		return Accept
	}
	d := int64((s - m.top) % (1 << 56))
	if d >= 1<<55 {
		d -= 1 << 56
	}
	switch {
	case d > 1<<24 || d < -1<<24:
		restart()
		return Reset
	case d < -8128:
		return TooOld
	case m.seen[s]:
		return Duplicate
	}
	m.seen[s] = true
	if d > 0 {
		m.top = s
	}
	return Accept
}

// FuzzWindow feeds a Window and the model the same numbers, drawn from
// ops three bytes at a time: in order, near the top (reordered, duplicate,
// too old), near the reset distance behind or ahead, medium jumps, and
// anywhere. Their verdicts must agree, and no number may be accepted twice
// without a reset in between.
func FuzzWindow(f *testing.F) {
	f.Add(uint64(0), []byte{0, 0, 0, 1, 0, 5, 1, 0, 3, 1, 0, 5, 1, 0xff, 0xff})
	f.Add(uint64(1<<56-10), []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xfa, 1, 0xe0, 0})
	f.Add(uint64(1<<40), []byte{2, 0, 1, 6, 0xff, 0xff, 1, 0, 1, 2, 0, 0, 3, 0x40, 0, 4, 1, 2})
	f.Fuzz(func(t *testing.T, start uint64, ops []byte) {
		var w Window
		m := model{top: start}
		accepted := make(map[uint64]bool) // since the last reset
		for len(ops) >= 3 {
			k, v := ops[0], uint64(int64(int16(binary.BigEndian.Uint16(ops[1:]))))
			ops = ops[3:]
			var s uint64
			switch k % 8 {
			case 0, 1:
				s = m.top + 1
			case 2, 3:
				s = m.top + v
			case 4:
				s = m.top + 1<<24 + v
			case 5:
				s = m.top - 1<<24 + v
			case 6:
				s = m.top + v<<10
			case 7:
				s = start ^ v<<40 ^ uint64(k)
			}
			got, want := w.Check(s), m.check(s)
			if got != want {
				t.Fatalf("Check(%#x) = %v, want %v", s, got, want)
			}
			switch got {
			case Reset:
				clear(accepted)
				fallthrough
			case Accept:
				if accepted[s&mask] {
					t.Fatalf("Check(%#x) accepted it a second time", s)
				}
				accepted[s&mask] = true
			}
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	for _, bb := range []struct {
		name    string
		reorder float64 // share of packets swapped with one up to 16 later
	}{{"in-order", 0}, {"reorder-2pct", 0.02}} {
		b.Run(bb.name, func(b *testing.B) {
			const size = 1 << 16
			seqs := make([]uint64, size)
			for i := range seqs {
				seqs[i] = uint64(i)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			for i := range size - 16 {
				if rng.Float64() < bb.reorder {
					j := i + 1 + rng.IntN(16)
					seqs[i], seqs[j] = seqs[j], seqs[i]
				}
			}
			var w Window
			var base uint64 = 1<<56 - size/2 // one lap crosses the wrap
			i, drops := 0, 0
			for b.Loop() {
				if w.Check(base+seqs[i]) != Accept {
					drops++
				}
				if i++; i == size {
					i, base = 0, base+size
				}
			}
			if drops != 0 {
				b.Fatalf("%d packets not accepted, want 0", drops)
			}
		})
	}
}
