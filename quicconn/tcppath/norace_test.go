// SPDX-License-Identifier: MIT

//go:build !race

package tcppath

// raceEnabled reports whether the race detector is on.
const raceEnabled = false
