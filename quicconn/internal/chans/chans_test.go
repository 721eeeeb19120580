// SPDX-License-Identifier: MIT

package chans

import "testing"

func TestClosed(t *testing.T) {
	ch := make(chan struct{})
	if Closed(ch) {
		t.Error("Closed(open channel) = true")
	}
	close(ch)
	if !Closed(ch) {
		t.Error("Closed(closed channel) = false")
	}
	if Closed(nil) {
		t.Error("Closed(nil) = true")
	}
}
