// SPDX-License-Identifier: MIT

//go:build race

package config

// raceEnabled reports whether the race detector is on: its instrumentation
// may allocate, so allocation gates cannot hold.
const raceEnabled = true
