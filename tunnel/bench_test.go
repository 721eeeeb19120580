// SPDX-License-Identifier: MIT

package tunnel

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/quicconn/quictest"
	"github.com/godwit-vpn/godwit/tun/tuntest"
)

// BenchmarkTunnelThroughput pushes b.N 1400-byte UDP packets from one
// Tunnel to another over a quictest pipe and reports packets/s and the
// fraction lost (dropped on a full queue).
func BenchmarkTunnelThroughput(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	devA, devB := tuntest.NewChannel(32), tuntest.NewChannel(32)
	ta, err := New(devA, Config{})
	if err != nil {
		b.Fatal(err)
	}
	tb, err := New(devB, Config{})
	if err != nil {
		b.Fatal(err)
	}
	if err := ta.SetPeers([]PeerConfig{{ID: idB, AllowedIPs: []netip.Prefix{prefB4}}}); err != nil {
		b.Fatal(err)
	}
	if err := tb.SetPeers([]PeerConfig{{ID: idA, AllowedIPs: []netip.Prefix{prefA4}}}); err != nil {
		b.Fatal(err)
	}
	ca, cb := quictest.Pipe()
	ta.Attach(idB, ca)
	tb.Attach(idA, cb)
	errc := make(chan error, 2)
	go func() { errc <- ta.Run(ctx) }()
	go func() { errc <- tb.Run(ctx) }()
	defer func() {
		cancel()
		ca.Close()
		devA.Close()
		devB.Close()
		for range 2 {
			if err := <-errc; err != nil {
				b.Errorf("Run: %v", err)
			}
		}
	}()

	pkt := tuntest.UDP(netip.AddrPortFrom(hostA4, 1000), netip.AddrPortFrom(hostB4, 2000), make([]byte, 1400-28))
	for _, bm := range []struct {
		name   string
		window int // packets in flight; 0: unpaced flood
	}{
		{"window=256", 256},
		{"flood", 0},
	} {
		b.Run(bm.name, func(b *testing.B) {
			benchThroughput(b, devA, devB, pkt, bm.window)
		})
	}
	b.Logf("A: %+v B: %+v", ta.Stats().Total, tb.Stats().Total)
}

// benchThroughput injects b.N copies of pkt into from and counts them on
// to. With window > 0 at most window packets are in flight, like a
// congestion-controlled source; otherwise the source floods, and what the
// tunnel cannot carry is dropped (and counted as loss).
func benchThroughput(b *testing.B, from, to *tuntest.Channel, pkt []byte, window int) {
	b.SetBytes(int64(len(pkt)))
	credit := make(chan struct{}, max(window, 1))
	stop := make(chan struct{})
	defer close(stop)
	b.ResetTimer()
	start := time.Now()
	go func() {
		for range b.N {
			if window > 0 {
				select {
				case credit <- struct{}{}:
				case <-stop:
					return
				}
			}
			select {
			case from.ToTunnel <- pkt: // Read copies, so the slice may be shared
			case <-stop:
				return
			}
		}
	}()
	received, last := 0, start
	for received < b.N {
		select {
		case <-to.FromTunnel:
			received++
			last = time.Now()
			if window > 0 {
				<-credit
			}
			continue
		case <-time.After(time.Second):
		}
		break // quiet for a second: the rest was dropped
	}
	b.StopTimer()
	b.ReportMetric(float64(received)/last.Sub(start).Seconds(), "packets/s")
	b.ReportMetric(float64(b.N-received)/float64(b.N), "packet-loss")
}
