// SPDX-License-Identifier: MIT

//go:build !race

package config

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
