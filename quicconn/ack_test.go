// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"testing"
	"time"
)

// TestDatagramRequestAnswerNoAckOnlyPackets: a request and answer of one
// datagram each way, every 5 ms, cost one packet each way plus an ACK on
// the 25 ms ACK timer: the fork does not acknowledge every second
// datagram-only packet at once. Upstream sends an ACK-only packet for every
// second request, before the answer: 1.5 packets each way per round trip.
func TestDatagramRequestAnswerNoAckOnlyPackets(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	defer c.Close("test over")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go quicEcho(ctx, s)
	q := quicPinger{c}
	buf := make([]byte, latencySize)
	ping := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if _, err := q.ping(ctx, buf); err != nil {
			t.Fatalf("ping: %v", err)
		}
	}
	// Let the handshake's ACKs and path MTU discovery settle.
	for range 20 {
		ping()
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	const n = 90
	c0, s0 := c.Stats().PacketsSent, s.Stats().PacketsSent
	for range n {
		ping()
		time.Sleep(5 * time.Millisecond)
	}
	cs, ss := c.Stats().PacketsSent-c0, s.Stats().PacketsSent-s0
	t.Logf("%d round trips: client sent %d packets, server %d", n, cs, ss)
	// An ACK on its timer every 25 ms is about one per 4-5 round trips
	// here, and there is slack for a path MTU probe or a keep-alive.
	const most = n + n/3
	if cs > most || ss > most {
		t.Errorf("packets sent for %d round trips: client %d, server %d, want at most %d each", n, cs, ss, most)
	}
}
