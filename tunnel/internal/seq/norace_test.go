// SPDX-License-Identifier: MIT

//go:build !race

package seq

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
