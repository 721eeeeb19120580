// SPDX-License-Identifier: MIT

//go:build !race

package quicconn

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
