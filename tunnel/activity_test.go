// SPDX-License-Identifier: MIT

package tunnel

import (
	"bytes"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/tun/tuntest"
)

// TestLastPacketTimes checks the per-peer LastRx/LastTx stamps: zero
// before any traffic, within a clock tick of the real time after it, set
// only for the direction that carried packets, and the latest of all
// peers in Total.
func TestLastPacketTimes(t *testing.T) {
	h := newHarness(t)
	ta, devA, tb, devB := h.linkedAB()

	if s := ta.Stats().Peers[idB]; !s.LastRx.IsZero() || !s.LastTx.IsZero() {
		t.Fatalf("before traffic: LastRx = %v, LastTx = %v, want zero times", s.LastRx, s.LastTx)
	}
	// The stamps come from a clock that advances every clockTick, so a
	// stamp may be up to one tick older than the packet; allow another
	// tick for a tick delivered late on a busy machine.
	slack := 2 * clockTick
	before := time.Now()
	pkt := tuntest.Ping(hostA4, hostB4, 1, 1, 56)
	devA.ToTunnel <- bytes.Clone(pkt)
	expectPacket(t, devB.FromTunnel, pkt)
	statsEventually(t, ta, "A counted the packet sent to B", func(s Stats) bool { return s.Peers[idB].TxPackets == 1 })
	statsEventually(t, tb, "B counted the packet from A", func(s Stats) bool { return s.Peers[idA].RxPackets == 1 })
	after := time.Now()

	inWindow := func(got time.Time) bool {
		return !got.Before(before.Add(-slack)) && !got.After(after)
	}
	sa, sb := ta.Stats(), tb.Stats()
	tests := []struct {
		name string
		got  time.Time
		set  bool
	}{
		{"A->B LastTx", sa.Peers[idB].LastTx, true},
		{"A->B LastRx", sa.Peers[idB].LastRx, false},
		{"B<-A LastRx", sb.Peers[idA].LastRx, true},
		{"B<-A LastTx", sb.Peers[idA].LastTx, false},
		{"A Total.LastTx", sa.Total.LastTx, true},
		{"B Total.LastRx", sb.Total.LastRx, true},
	}
	for _, tt := range tests {
		switch {
		case tt.set && !inWindow(tt.got):
			t.Errorf("%s = %v, want within [%v, %v]", tt.name, tt.got, before.Add(-slack), after)
		case !tt.set && !tt.got.IsZero():
			t.Errorf("%s = %v, want the zero time (no packet that way)", tt.name, tt.got)
		}
	}

	// A later packet moves the stamp forward once the clock has ticked.
	first := sa.Peers[idB].LastTx
	time.Sleep(2 * clockTick)
	devA.ToTunnel <- bytes.Clone(pkt)
	expectPacket(t, devB.FromTunnel, pkt)
	statsEventually(t, ta, "A's LastTx after a later packet", func(s Stats) bool {
		return s.Peers[idB].TxPackets == 2 && s.Peers[idB].LastTx.After(first)
	})
}

func TestCountersAddKeepsLatest(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t1 := t0.Add(time.Second)
	tests := []struct {
		name           string
		a, b           Counters
		wantRx, wantTx time.Time
	}{
		{"zero plus zero", Counters{}, Counters{}, time.Time{}, time.Time{}},
		{"zero plus set", Counters{}, Counters{LastRx: t0, LastTx: t1}, t0, t1},
		{"later wins", Counters{LastRx: t1, LastTx: t0}, Counters{LastRx: t0, LastTx: t1}, t1, t1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.a
			got.add(tt.b)
			if !got.LastRx.Equal(tt.wantRx) || !got.LastTx.Equal(tt.wantTx) {
				t.Errorf("add: LastRx, LastTx = %v, %v, want %v, %v", got.LastRx, got.LastTx, tt.wantRx, tt.wantTx)
			}
		})
	}
}
