// SPDX-License-Identifier: MIT

//go:build race

package tcppath

// raceEnabled reports whether the race detector is on: it makes sync.Pool
// drop items at random, so allocation gates cannot hold.
const raceEnabled = true
