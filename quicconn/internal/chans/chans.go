// SPDX-License-Identifier: MIT

// Package chans holds the channel helpers that quicconn and its mobility
// policy share.
package chans

// Closed reports whether ch is closed, without blocking. It is meant for
// channels that are only ever closed, never sent on.
func Closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
