// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestReceiveBackpressure: a receiver slower than its sender loses nothing
// to quic-go's per-connection queue (the fork's back-pressure: the socket
// buffer holds the burst; upstream drops it as "dos_prevention").
func TestReceiveBackpressure(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	var got atomic.Int64
	all := make(chan struct{})
	const n = 2000
	s.SetDatagramHandler(func(b []byte) {
		// 20 datagrams a millisecond at best: far slower than a burst.
		if got.Add(1)%20 == 0 {
			time.Sleep(time.Millisecond)
		}
		if got.Load() == n {
			close(all)
		}
		s.ReleaseDatagram(b)
	})
	payload := make([]byte, 1200)
	payload[0] = 0x45
	for range n {
		if err := c.SendDatagram(payload); err != nil {
			t.Fatalf("SendDatagram: %v", err)
		}
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Errorf("received %d of %d datagrams", got.Load(), n)
	}
	if d := s.Stats().PacketsDroppedDoS; d != 0 {
		t.Errorf("PacketsDroppedDoS = %d, want 0", d)
	}
}

// TestStuckConnDoesNotStallEndpoint: a connection whose run loop takes
// nothing (its datagram handler blocks) holds up the listener's other
// connections once, for the fork's bounded wait, not for as long as it is
// stuck.
func TestStuckConnDoesNotStallEndpoint(t *testing.T) {
	p := newTestPair(t, nil)
	c1, s1 := p.connect(t)
	c2, s2 := p.connect(t) // same key; the server keeps both
	unblock := make(chan struct{})
	s1.SetDatagramHandler(func(b []byte) {
		<-unblock
		s1.ReleaseDatagram(b)
	})
	defer close(unblock)
	payload := make([]byte, 1200)
	payload[0] = 0x45
	for range 1000 { // fills s1's queue and more
		if err := c1.SendDatagram(payload); err != nil {
			t.Fatalf("SendDatagram: %v", err)
		}
	}
	// c2's datagrams must get through while s1 stays stuck.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 20 {
		if err := c2.SendDatagram(payload); err != nil {
			t.Fatalf("SendDatagram on c2: %v", err)
		}
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s2.ReceiveDatagram(rctx)
		rcancel()
		if err != nil {
			t.Fatalf("datagram %d on the second conn: %v (the stuck conn holds up the endpoint)", i, err)
		}
	}
	if d := s1.Stats().PacketsDroppedDoS; d == 0 {
		t.Error("the stuck conn dropped nothing; want its excess dropped once it is stalled")
	}
}
