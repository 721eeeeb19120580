// SPDX-License-Identifier: MIT

package quicconn

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// sentCounter counts DatagramSent calls.
type sentCounter struct{ n atomic.Int64 }

func (c *sentCounter) DatagramSent() { c.n.Add(1) }

// TestSendDatagramOwned: datagrams sent without a copy arrive intact and
// every buffer is handed back once; a datagram over the limit fails, and
// the caller keeps its buffer; so does one sent after Close.
func TestSendDatagramOwned(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 200
	var done sentCounter
	for i := range n {
		b := bytes.Repeat([]byte{byte(i)}, 1000)
		if err := c.SendDatagramOwned(b, &done); err != nil {
			t.Fatalf("SendDatagramOwned %d: %v", i, err)
		}
		got, err := s.ReceiveDatagram(ctx)
		if err != nil {
			t.Fatalf("ReceiveDatagram %d: %v", i, err)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{byte(i)}, 1000)) {
			t.Fatalf("datagram %d arrived changed", i)
		}
		s.ReleaseDatagram(got)
	}
	if got := done.n.Load(); got != n {
		t.Errorf("%d buffers handed back after %d datagrams arrived, want %d", got, n, n)
	}

	var kept sentCounter
	limit := c.Stats().DatagramLimit
	err := c.SendDatagramOwned(make([]byte, limit+1), &kept)
	var dl interface{ DatagramLimit() int }
	if !errors.As(err, &dl) || dl.DatagramLimit() != limit {
		t.Errorf("SendDatagramOwned(limit+1) = %v, want the limit %d", err, limit)
	}
	c.Close("test over")
	<-c.Done()
	// quic-go closes its datagram queue on its own run loop, soon after.
	for {
		if err := c.SendDatagramOwned([]byte("late"), &sentCounter{}); err != nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("SendDatagramOwned still succeeds 10 s after Close")
		}
		time.Sleep(time.Millisecond)
	}
	if got := kept.n.Load(); got != 0 {
		t.Errorf("%d failed sends handed their buffer back, want 0", got)
	}
}
