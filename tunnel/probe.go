// SPDX-License-Identifier: MIT

package tunnel

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// probePoll is how often Probe looks at a busy loop again.
const probePoll = 2 * time.Millisecond

// Probe reports whether the data path makes progress, for a watchdog. It
// returns nil as soon as the TUN reader and the TUN writer are each either
// waiting for work or past the batch they were handling when Probe was
// called; it returns an error naming the loop that is still on the same
// batch when ctx is done. An idle tunnel is healthy however long it has
// been idle: the loops only count as stuck while they hold work.
//
// Waiting in dev.Read is waiting for work, so a Read that hangs in the
// kernel is not detected. The per-peer senders and receivers are not
// probed: a sender blocked in SendDatagram waits for the network
// (congestion, a dead path until the QUIC idle timeout closes the
// connection), stalls only its own peer (whose queue then drops and counts
// the excess, see [Drops].QueueFull) and is not a fault of this process.
//
// Probe costs the loops two atomic increments per batch; it does not
// allocate in the loops. It is safe for concurrent use, also before Run
// and after Run has returned (both idle).
func (t *Tunnel) Probe(ctx context.Context) error {
	loops := [...]struct {
		name string
		seq  *atomic.Uint64
		at   uint64
	}{
		{name: "readTUN", seq: &t.readBusy},
		{name: "writeTUN", seq: &t.writeBusy},
	}
	for i := range loops {
		loops[i].at = loops[i].seq.Load()
	}
	start := time.Now()
	var tick *time.Ticker
	for {
		stuck := ""
		for _, l := range loops {
			if l.at%2 == 1 && l.seq.Load() == l.at {
				stuck = l.name
				break
			}
		}
		if stuck == "" {
			return nil
		}
		if tick == nil {
			tick = time.NewTicker(probePoll)
			defer tick.Stop()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tunnel: %s stuck on one batch for at least %v: %w", stuck, time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-tick.C:
		}
	}
}
