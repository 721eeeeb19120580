// SPDX-License-Identifier: MIT

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
)

// num is a float64 that encodes +Inf (a ratio against zero) as the JSON
// string "inf", which plain JSON numbers cannot hold.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(n), 1) {
		return []byte(`"inf"`), nil
	}
	return json.Marshal(float64(n))
}

// spread is the median, min and max of a row's values over the rounds.
type spread struct {
	Median num `json:"median"`
	Min    num `json:"min"`
	Max    num `json:"max"`
	N      int `json:"n"` // rounds that gave a value
}

// spreadOf returns the spread of v, or nil when v is empty. The median of
// an even count is the mean of the middle two.
func spreadOf(v []float64) *spread {
	if len(v) == 0 {
		return nil
	}
	s := slices.Clone(v)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return &spread{Median: num(m), Min: num(s[0]), Max: num(s[len(s)-1]), N: len(s)}
}

// cmpKind is how a row compares the daemons per round.
type cmpKind int

const (
	cmpRatio cmpKind = iota // Godwit / wireguard-go
	cmpDiff                 // Godwit - wireguard-go, in the row's unit
	cmpNone                 // not compared
)

// ratioOf is g/w; two zeros (counts, such as drops) are 1, and g > 0
// against a zero w is +Inf.
func ratioOf(g, w float64) float64 {
	switch {
	case w != 0:
		return g / w
	case g == 0:
		return 1
	}
	return math.Inf(1)
}

// target is a goal of the data-path performance issue for one row. At
// most one of its conditions is set.
type target struct {
	minRatio float64 // the median of the per-round Godwit/wireguard-go ratios must be at least this
	maxRatio float64 // ... at most this
	maxPlus  float64 // the median of the per-round Godwit - wireguard-go must be at most this
	zero     bool    // Godwit alone must be 0 in every round
	below    float64 // Godwit's median must be below this (mobility rows)
	atMost   float64 // Godwit's median must be at most this (mobility and multipath rows)
	atLeast  float64 // Godwit's median must be at least this (multipath rows)
	// atMostZero: Godwit's median must be at most 0 (a count: none).
	atMostZero bool
	text       string // how the table shows it
}

// The targets.
var (
	targetTCP      = target{minRatio: 1.0, text: ">= 1.00x"}
	targetImpaired = target{minRatio: 1.0, text: ">= 1.00x"}
	targetCPU      = target{maxRatio: 1.2, text: "<= 1.20x"}
	targetPing     = target{maxPlus: 0.050, text: "<= wg + 0.050 ms"}
	targetRetrans  = target{maxRatio: 1.01, text: "<= wg + 1 %"}
	targetDrops    = target{zero: true, text: "0 in every round"}
	// targetTCPPath is the fallback issue's: one stream over the TCP path
	// at least 0.7x the same daemon over UDP.
	targetTCPPath = target{atLeast: 0.7, text: ">= 0.70x"}
)

// eps absorbs floating-point noise at a target's limit (0.25 - 0.2 is
// not exactly 0.05).
const eps = 1e-9

// judge returns the verdict, "PASS" or "FAIL" ("" when the values it needs
// are missing), and in how many of the n rounds that give the values the
// target held on its own. g are Godwit's values, ratios and diffs the
// per-round comparisons.
func (tg *target) judge(g, ratios, diffs []float64) (verdict string, met, n int) {
	if tg == nil {
		return "", 0, 0
	}
	var vals []float64
	var ok func(float64) bool
	switch {
	case tg.minRatio > 0:
		vals, ok = ratios, func(r float64) bool { return r >= tg.minRatio-eps }
	case tg.maxRatio > 0:
		vals, ok = ratios, func(r float64) bool { return r <= tg.maxRatio+eps }
	case tg.maxPlus > 0:
		vals, ok = diffs, func(d float64) bool { return d <= tg.maxPlus+eps }
	case tg.zero:
		vals, ok = g, func(v float64) bool { return v == 0 }
	case tg.below > 0:
		vals, ok = g, func(v float64) bool { return v < tg.below }
	case tg.atMost > 0:
		vals, ok = g, func(v float64) bool { return v <= tg.atMost+eps }
	case tg.atLeast > 0:
		vals, ok = g, func(v float64) bool { return v >= tg.atLeast-eps }
	case tg.atMostZero:
		vals, ok = g, func(v float64) bool { return v <= eps }
	}
	sp := spreadOf(vals)
	if sp == nil || ok == nil {
		return "", 0, 0
	}
	for _, v := range vals {
		if ok(v) {
			met++
		}
	}
	pass := ok(float64(sp.Median))
	if tg.zero {
		pass = met == len(vals)
	}
	if pass {
		return "PASS", met, len(vals)
	}
	return "FAIL", met, len(vals)
}

// row is one line of the table before the rounds are summed up.
type row struct {
	label string
	unit  string     // printf verb for the values
	g, w  []*float64 // per round; a nil entry was not measured in that round
	cmp   cmpKind    // how the daemons are compared
	tgt   *target    // or nil
	na    bool       // wireguard-go is not measured for this row: "n/a"
	round bool       // the values are per round (false: one value of its own, the mobility rows)
}

// summaryRow is a row summed up over the rounds, as the table prints it
// and -json reports it.
type summaryRow struct {
	Label     string  `json:"label"`
	Godwit    *spread `json:"godwit,omitempty"`
	WireGuard *spread `json:"wireguard_go,omitempty"`
	// Ratio is the spread of the per-round Godwit/wireguard-go ratios,
	// Diff that of the per-round differences (ping rows).
	Ratio *spread `json:"ratio,omitempty"`
	Diff  *spread `json:"difference,omitempty"`
	// WireGuardNA says that wireguard-go does not have this figure.
	WireGuardNA bool   `json:"wireguard_go_na,omitempty"`
	Target      string `json:"target,omitempty"`
	Verdict     string `json:"verdict,omitempty"` // PASS, FAIL or ""
	// RoundsMet of RoundsJudged rounds met the target on their own.
	RoundsMet    int `json:"rounds_met"`
	RoundsJudged int `json:"rounds_judged"`

	unit   string // printf verb of the values
	rounds int    // rounds in the report (0 for the mobility rows)
}

// summarize sums each row up over its rounds.
func summarize(rs []row) []summaryRow {
	out := make([]summaryRow, 0, len(rs))
	for _, r := range rs {
		var g, w, ratios, diffs []float64
		for i := range max(len(r.g), len(r.w)) {
			gi, wi := at(r.g, i), at(r.w, i)
			if gi != nil {
				g = append(g, *gi)
			}
			if wi != nil {
				w = append(w, *wi)
			}
			if gi != nil && wi != nil {
				ratios = append(ratios, ratioOf(*gi, *wi))
				diffs = append(diffs, *gi-*wi)
			}
		}
		s := summaryRow{Label: r.label, Godwit: spreadOf(g), WireGuard: spreadOf(w), WireGuardNA: r.na, unit: r.unit}
		if r.round {
			s.rounds = max(len(r.g), len(r.w))
		}
		switch r.cmp {
		case cmpRatio:
			s.Ratio = spreadOf(ratios)
		case cmpDiff:
			s.Diff = spreadOf(diffs)
		}
		if r.tgt != nil {
			s.Target = r.tgt.text
			s.Verdict, s.RoundsMet, s.RoundsJudged = r.tgt.judge(g, ratios, diffs)
		}
		out = append(out, s)
	}
	return out
}

func at(v []*float64, i int) *float64 {
	if i < len(v) {
		return v[i]
	}
	return nil
}

// unitCount is the verb of per-GB counts: %.1f below 100, %.0f from there
// (by the largest value of the cell).
const unitCount = "count"

// cell formats a spread with verb: the median, and with more than one
// round "(min..max)", plus "[N of M rounds]" when some rounds gave no
// value; "-" for nil. signed adds a + to positive values (differences).
func cell(verb string, sp *spread, rounds int, signed bool) string {
	if sp == nil {
		return "-"
	}
	if signed {
		verb = strings.Replace(verb, "%", "%+", 1)
	}
	if verb == unitCount {
		// Counts per GB: one decimal while it matters, the same for the
		// whole cell.
		verb = "%.1f"
		if max(math.Abs(float64(sp.Min)), math.Abs(float64(sp.Max))) >= 100 {
			verb = "%.0f"
		}
	}
	f := func(v num) string {
		if math.IsInf(float64(v), 1) {
			return "inf"
		}
		return fmt.Sprintf(verb, float64(v))
	}
	if rounds <= 1 {
		return f(sp.Median)
	}
	s := fmt.Sprintf("%s (%s..%s)", f(sp.Median), f(sp.Min), f(sp.Max))
	if sp.N < rounds {
		s += fmt.Sprintf(" [%d of %d rounds]", sp.N, rounds)
	}
	return s
}

// columns returns the table cells of s: Godwit, wireguard-go, the
// comparison, the target and the verdict.
func (s *summaryRow) columns() [5]string {
	c := [5]string{cell(s.unit, s.Godwit, s.rounds, false), cell(s.unit, s.WireGuard, s.rounds, false), "-", s.Target, s.Verdict}
	if s.WireGuardNA {
		c[1] = "n/a"
	}
	switch {
	case s.Ratio != nil:
		c[2] = cell("%.2f", s.Ratio, s.rounds, false)
	case s.Diff != nil:
		c[2] = cell(s.unit, s.Diff, s.rounds, true)
	}
	if s.Verdict != "" && s.rounds > 1 {
		c[4] = fmt.Sprintf("%s %d/%d", s.Verdict, s.RoundsMet, s.RoundsJudged)
	}
	return c
}
