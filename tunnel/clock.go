// SPDX-License-Identifier: MIT

package tunnel

import (
	"context"
	"time"
)

// clockTick is the resolution of the tunnel's coarse clock, which stamps
// each peer's last packet received and sent (Counters.LastRx, LastTx).
// The data path reads the clock with one atomic load instead of calling
// time.Now per packet.
const clockTick = 250 * time.Millisecond

// tick advances t.clock every clockTick until ctx is done. Run starts it.
func (t *Tunnel) tick(ctx context.Context) {
	defer t.wg.Done()
	tk := time.NewTicker(clockTick)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.clock.Store(now.UnixNano())
			t.refreshAggregate()
			t.mu.Lock()
			if t.holdPending {
				t.selectLocked()
			}
			t.mu.Unlock()
		}
	}
}
