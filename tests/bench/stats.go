// SPDX-License-Identifier: MIT

package main

import (
	"slices"
	"time"

	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// pingStats summarises a series of round trips.
type pingStats struct {
	Sent     int     `json:"sent"`
	Received int     `json:"received"`
	MinMs    float64 `json:"min_ms"`
	MedianMs float64 `json:"median_ms"`
	P90Ms    float64 `json:"p90_ms"`
}

// summarise computes the statistics of rtts out of sent probes.
// Percentiles use the nearest-rank method.
func summarise(sent int, rtts []time.Duration) pingStats {
	st := pingStats{Sent: sent, Received: len(rtts)}
	if len(rtts) == 0 {
		return st
	}
	s := slices.Clone(rtts)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	st.MinMs = ms(s[0])
	st.MedianMs = ms(s[measure.Rank(len(s), 50)])
	st.P90Ms = ms(s[measure.Rank(len(s), 90)])
	return st
}
