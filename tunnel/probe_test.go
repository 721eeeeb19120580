// SPDX-License-Identifier: MIT

package tunnel

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/tun/tuntest"
)

// gatedWrites is a tuntest.Channel whose Writes block while the gate is
// closed, like a wedged TUN writer.
type gatedWrites struct {
	*tuntest.Channel
	entered chan struct{} // receives once per Write that reached the gate
	gate    chan struct{} // closed to let Writes through
}

func (g *gatedWrites) Write(bufs [][]byte, offset int) (int, error) {
	g.entered <- struct{}{}
	<-g.gate
	return g.Channel.Write(bufs, offset)
}

func TestProbeWriteTUN(t *testing.T) {
	h := newHarness(t)
	dev := &gatedWrites{Channel: tuntest.NewChannel(8), entered: make(chan struct{}, 16), gate: make(chan struct{})}
	tu, err := New(dev, Config{Addresses: []netip.Prefix{ownA4}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- tu.Run(h.ctx) }()
	h.devs = append(h.devs, dev.Channel)
	h.runs = append(h.runs, done)
	h.cleanup = append(h.cleanup, func() {
		select {
		case <-dev.gate:
		default:
			close(dev.gate)
		}
	})

	probe := func(within time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), within)
		defer cancel()
		return tu.Probe(ctx)
	}
	if err := probe(waitTimeout); err != nil {
		t.Fatalf("Probe of an idle tunnel = %v, want nil", err)
	}
	// An unroutable packet makes an ICMP error for writeTUN, whose Write
	// then hangs at the gate.
	dev.ToTunnel <- tuntest.Ping(hostA4, netip.MustParseAddr("198.51.100.1"), 1, 1, 8)
	select {
	case <-dev.entered:
	case <-time.After(waitTimeout):
		t.Fatal("writeTUN never called Write")
	}
	err = probe(50 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "writeTUN") {
		t.Fatalf("Probe with writeTUN blocked in Write = %v, want an error naming writeTUN", err)
	}
	close(dev.gate)
	got := <-dev.FromTunnel
	if e, err := parseICMPError(got); err != nil || e.typ != 3 {
		t.Fatalf("written packet % x: %+v, %v; want an ICMP unreachable", got, e, err)
	}
	if err := probe(waitTimeout); err != nil {
		t.Fatalf("Probe after Write returned = %v, want nil", err)
	}
}

func TestProbeBusyLoops(t *testing.T) {
	tests := []struct {
		name     string
		read     uint64 // readBusy when Probe starts
		write    uint64
		advance  bool // whether the busy loop moves on while Probe waits
		wantStop string
	}{
		{name: "idle", read: 0, write: 0},
		{name: "idle after work", read: 6, write: 10},
		{name: "reader stuck", read: 7, write: 2, wantStop: "readTUN"},
		{name: "writer stuck", read: 2, write: 3, wantStop: "writeTUN"},
		{name: "reader moves on", read: 7, write: 2, advance: true},
		{name: "writer moves on", read: 4, write: 9, advance: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tu, err := New(tuntest.NewChannel(1), Config{})
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			tu.readBusy.Store(tt.read)
			tu.writeBusy.Store(tt.write)
			if tt.advance {
				time.AfterFunc(20*time.Millisecond, func() {
					// Finish the batch and start on the next one: still
					// busy, but progress.
					tu.readBusy.Add(2 * (tt.read % 2))
					tu.writeBusy.Add(2 * (tt.write % 2))
				})
			}
			within := 100 * time.Millisecond
			if tt.advance {
				within = waitTimeout
			}
			ctx, cancel := context.WithTimeout(context.Background(), within)
			defer cancel()
			err = tu.Probe(ctx)
			if tt.wantStop == "" {
				if err != nil {
					t.Errorf("Probe = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantStop) {
				t.Errorf("Probe = %v, want an error naming %s", err, tt.wantStop)
			}
		})
	}
}

func TestProbeAllocs(t *testing.T) {
	tu, err := New(tuntest.NewChannel(1), Config{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { _ = tu.Probe(ctx) }); n != 0 {
		t.Errorf("Probe of an idle tunnel: %v allocs, want 0", n)
	}
}
