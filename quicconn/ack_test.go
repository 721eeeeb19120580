// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"errors"
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

// TestRandomLossIsNotABlackHole: bulk datagrams of two sizes (GSO pads a
// batch to its first packet's size, so real packet sizes cluster the same
// way) under 5 % random loss in both directions keep their datagram limit:
// path MTU black-hole detection must not take random loss among packets of
// the same size for a path that drops large packets. Before the fix it
// shrank the limit to 1163 within seconds, and the tunnel then answered
// every full-size inner packet with ICMP too big.
func TestRandomLossIsNotABlackHole(t *testing.T) {
	p := newTestPair(t, nil)
	proxy, c, s := dialViaProxy(t, p)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			b, err := s.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			s.ReleaseDatagram(b)
		}
	}()
	// Path MTU discovery raises the limit from the initial packet size.
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().DatagramLimit < 1400 && time.Now().Before(deadline) {
		if err := c.SendDatagram(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	limit := c.Stats().DatagramLimit
	if limit < 1400 {
		t.Fatalf("datagram limit %d after 5 s on loopback, want path MTU discovery to reach 1400", limit)
	}
	proxy.loss.Store(5)
	small, large := make([]byte, limit-30), make([]byte, limit)
	lowest := limit
	start := time.Now()
	for i := 0; i < 40000 && time.Since(start) < 4*time.Second; i++ {
		b := large
		if i%3 == 0 {
			b = small
		}
		if err := c.SendDatagram(b); err != nil {
			var dl interface{ DatagramLimit() int }
			if !errors.As(err, &dl) {
				t.Fatalf("SendDatagram: %v", err)
			}
		}
		lowest = min(lowest, c.Stats().DatagramLimit)
		if i%64 == 0 {
			time.Sleep(time.Millisecond) // let the receiver and the ACKs keep up
		}
	}
	if lowest < limit-40 {
		t.Errorf("datagram limit fell from %d to %d under 5 %% random loss", limit, lowest)
	}
}
