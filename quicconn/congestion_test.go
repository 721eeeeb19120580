// SPDX-License-Identifier: MIT

package quicconn

import (
	"testing"
	"time"
)

// TestNoOuterCongestionControl: with the path black-holed, a connection
// without outer congestion control keeps sending every datagram it is
// given, while NewReno stops at its window (32 packets at the start) and
// only sends PTO probes. This is what lets a migration probe the new path
// while the old one died with a full window: quic-go sends a client's
// PATH_CHALLENGE only when the congestion controller allows a packet.
func TestNoOuterCongestionControl(t *testing.T) {
	const n = 300
	for _, tt := range []struct {
		name     string
		outerCC  bool
		min, max uint64 // packets sent while black-holed
	}{
		{"default, no outer congestion control", false, n * 9 / 10, 10 * n},
		{"OuterCongestionControl", true, 0, n / 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPair(t, func(cli, srv *Config) { cli.OuterCongestionControl = tt.outerCC })
			proxy, c, _ := dialViaProxy(t, p)
			proxy.drop.Store(true)
			before := c.Stats().PacketsSent
			payload := make([]byte, 1200)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range n {
					if c.SendDatagram(payload) != nil {
						return
					}
				}
			}()
			// Without outer congestion control all n go out; with NewReno,
			// SendDatagram blocks once quic-go's queue is full and the
			// window stays full: wait for the sender, at most 3 s (the
			// suite runs under -race on 2 loaded cores).
			select {
			case <-done:
			case <-time.After(3 * time.Second):
			}
			time.Sleep(50 * time.Millisecond) // the last packets leave the run loop
			sent := c.Stats().PacketsSent - before
			if sent < tt.min || sent > tt.max {
				t.Errorf("packets sent into a black hole = %d, want %d..%d", sent, tt.min, tt.max)
			}
			c.Close("test over")
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("SendDatagram still blocked 5 s after Close")
			}
		})
	}
}
