// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// modeColors give each mode of the plot its colour: Okabe-Ito, readable
// by the colour-blind.
var modeColors = map[string]color.Color{
	"failover":  color.RGBA{0, 114, 178, 255},   // blue
	"redundant": color.RGBA{0, 158, 115, 255},   // green
	"duplicate": color.RGBA{204, 121, 167, 255}, // purple
	"single":    color.RGBA{213, 94, 0, 255},    // vermilion
}

// modeNames are the plot's legend entries.
var modeNames = map[string]string{
	"failover":  "multipath failover",
	"redundant": "multipath redundant",
	"duplicate": "failover + duplicate rule",
	"single":    "one connection that moves (no multipath)",
}

// plotModes are the modes the plot shows, in legend order: the duplicate
// mode's ping is not duplicated, so it repeats failover.
var plotModes = []string{"single", "failover", "redundant"}

// writePlot draws the probes' RTT across the silent failure, one line per
// mode, to file (SVG or PNG by its extension). A lost probe breaks its
// mode's line and is marked with a cross in the mode's lane below zero.
func writePlot(file string, traces []mpTrace) error {
	p, err := silentPlot(traces)
	if err != nil {
		return err
	}
	if err := p.Save(20*vg.Centimeter, 11*vg.Centimeter, file); err != nil {
		return fmt.Errorf("bench: plot %s: %w", filepath.Base(file), err)
	}
	return nil
}

// silentPlot builds the plot of writePlot.
func silentPlot(traces []mpTrace) (*plot.Plot, error) {
	var shown []mpTrace
	for _, m := range plotModes {
		if i := slices.IndexFunc(traces, func(t mpTrace) bool { return t.Mode == m }); i >= 0 {
			shown = append(shown, traces[i])
		}
	}
	if len(shown) == 0 {
		return nil, fmt.Errorf("bench: plot: no trace of modes %v", plotModes)
	}
	top := 0.0
	var rtts []float64
	for _, t := range shown {
		rtts = append(rtts, t.RTTMs)
		for _, pt := range t.Points {
			if !pt.Lost {
				top = max(top, pt.RTTMs)
			}
		}
	}
	// Lanes for the lost probes below zero, one per mode.
	lane := math.Max(top, 1) / 12
	p := plot.New()
	slices.Sort(rtts)
	p.Title.Text = fmt.Sprintf("Inner ping (50 Hz UDP probes) when the carrying uplink goes silent, RTT about %.0f ms", rtts[len(rtts)/2])
	p.X.Label.Text = "seconds after wifi0 went silent (the link stays up); x below 0: a lost probe"
	p.Y.Label.Text = "probe round trip (ms)"
	p.Legend.Top = true
	p.Legend.Left = false
	ticks := plot.DefaultTicks{}.Ticks(0, top*1.05)
	for i, t := range shown {
		c := modeColors[t.Mode]
		lostY := -float64(i+1) * lane
		var seg, lost plotter.XYs
		var first *plotter.Line
		flush := func() error {
			if len(seg) == 0 {
				return nil
			}
			l, err := plotter.NewLine(seg)
			if err != nil {
				return fmt.Errorf("bench: plot: %w", err)
			}
			l.Color, l.Width = c, vg.Points(1.2)
			p.Add(l)
			if first == nil {
				first = l
			}
			seg = nil
			return nil
		}
		for _, pt := range t.Points {
			if pt.Lost {
				lost = append(lost, plotter.XY{X: pt.T, Y: lostY})
				if err := flush(); err != nil {
					return nil, err
				}
				continue
			}
			seg = append(seg, plotter.XY{X: pt.T, Y: pt.RTTMs})
		}
		if err := flush(); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("%s: %d of %d lost", cmpName(t.Mode), len(lost), len(t.Points))
		if len(lost) > 0 {
			s, err := plotter.NewScatter(lost)
			if err != nil {
				return nil, fmt.Errorf("bench: plot: %w", err)
			}
			s.GlyphStyle = draw.GlyphStyle{Color: c, Radius: vg.Points(2.2), Shape: draw.CrossGlyph{}}
			p.Add(s)
		}
		if first != nil {
			p.Legend.Add(name, first)
		}
		ticks = append(ticks, plot.Tick{Value: lostY, Label: "lost, " + t.Mode})
	}
	p.Y.Tick.Marker = plot.ConstantTicks(ticks)
	// Room above the lines for the legend.
	p.Y.Min, p.Y.Max = -float64(len(shown))*lane-lane/2, top*1.6
	zero, err := plotter.NewLine(plotter.XYs{{X: 0, Y: p.Y.Min}, {X: 0, Y: p.Y.Max}})
	if err != nil {
		return nil, fmt.Errorf("bench: plot: %w", err)
	}
	zero.Color, zero.Dashes = color.Gray{Y: 100}, []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(zero)
	return p, nil
}

// cmpName is the legend's name of a mode.
func cmpName(mode string) string {
	if n, ok := modeNames[mode]; ok {
		return n
	}
	return mode
}
