// SPDX-License-Identifier: MIT

package netlab

import (
	"testing"
	"time"
)

// TestLongestGap checks the outage a Pinger measures: the longest time
// without a reply in a window, counted from the last reply before it.
func TestLongestGap(t *testing.T) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return base.Add(time.Duration(n) * time.Millisecond) }
	every20 := func(from, to int) []time.Time {
		var at []time.Time
		for i := from; i <= to; i += 20 {
			at = append(at, ms(i))
		}
		return at
	}
	tests := []struct {
		name     string
		at       []time.Time
		from, to int
		want     time.Duration
	}{
		{"steady 50 Hz", every20(0, 1000), 100, 900, 20 * time.Millisecond},
		{"gap across from", append(every20(0, 95), every20(215, 1000)...), 100, 900, 135 * time.Millisecond},
		{"gap inside", append(every20(0, 400), every20(700, 1000)...), 100, 900, 300 * time.Millisecond},
		{"gap before the window ignored", append(every20(0, 20), every20(500, 1000)...), 600, 900, 20 * time.Millisecond},
		{"replies after to ignored", append(every20(0, 500), ms(2000)), 100, 900, 400 * time.Millisecond},
		{"no reply at all", nil, 100, 900, 800 * time.Millisecond},
		{"no reply before from", every20(300, 1000), 100, 900, 200 * time.Millisecond},
		{"reply exactly at from", []time.Time{ms(100), ms(150)}, 100, 200, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := longestGap(tt.at, ms(tt.from), ms(tt.to)); got != tt.want {
				t.Errorf("longestGap = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPingLoss counts the requests sent in a window and the unanswered
// ones.
func TestPingLoss(t *testing.T) {
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	sent := make([]time.Time, 10) // seq i sent at i*20 ms
	for i := range sent {
		sent[i] = base.Add(time.Duration(i) * 20 * time.Millisecond)
	}
	all := map[int]bool{}
	for i := range sent {
		all[i] = true
	}
	tests := []struct {
		name           string
		answered       map[int]bool
		from, to       time.Duration
		wantLost, want int
	}{
		{"all answered", all, 0, 200 * time.Millisecond, 0, 10},
		{"none answered", map[int]bool{}, 0, 200 * time.Millisecond, 10, 10},
		{"window edges inclusive", map[int]bool{2: true}, 40 * time.Millisecond, 80 * time.Millisecond, 2, 3},
		{"losses outside the window ignored", map[int]bool{5: true, 6: true}, 100 * time.Millisecond, 120 * time.Millisecond, 0, 2},
		{"empty window", all, 300 * time.Millisecond, 400 * time.Millisecond, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lost, n := pingLoss(sent, tt.answered, base.Add(tt.from), base.Add(tt.to))
			if lost != tt.wantLost || n != tt.want {
				t.Errorf("pingLoss = %d lost of %d, want %d of %d", lost, n, tt.wantLost, tt.want)
			}
		})
	}
}
