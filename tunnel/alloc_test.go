// SPDX-License-Identifier: MIT

package tunnel

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/tun/tuntest"
	"github.com/godwit-vpn/godwit/tunnel/internal/seq"
)

// gateDev is a tun.Device that neither allocates nor copies beyond what
// the contract requires, so allocation gates measure the tunnel alone.
// Read delivers the packets sent on in; Write signals the number of
// packets of each batch on wrote.
type gateDev struct {
	in     chan []byte
	wrote  chan int
	closed chan struct{}
}

func newGateDev() *gateDev {
	return &gateDev{in: make(chan []byte), wrote: make(chan int, 1), closed: make(chan struct{})}
}

func (d *gateDev) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case p := <-d.in:
		sizes[0] = copy(bufs[0][offset:], p)
		return 1, nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

func (d *gateDev) Write(bufs [][]byte, offset int) (int, error) {
	select {
	case d.wrote <- len(bufs):
		return len(bufs), nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

func (d *gateDev) BatchSize() int        { return 8 }
func (d *gateDev) MTU() (int, error)     { return 1420, nil }
func (d *gateDev) Name() (string, error) { return "gate", nil }
func (d *gateDev) Close() error          { close(d.closed); return nil }

// gateConn is a DatagramConn that does not allocate: SendDatagram signals
// the length on sent; ReceiveDatagram returns a copy of what is sent on rx
// in one of a few buffers of its own, which the tunnel owns until it hands
// it back with ReleaseDatagram (the tunnel decrements the TTL in place).
type gateConn struct {
	sent   chan int
	rx     chan []byte
	free   chan []byte
	closed chan struct{}
}

func newGateConn() *gateConn {
	c := &gateConn{sent: make(chan int, 1), rx: make(chan []byte), free: make(chan []byte, 4), closed: make(chan struct{})}
	for range cap(c.free) {
		c.free <- make([]byte, 2048)
	}
	return c
}

var errGateClosed = errors.New("gate conn closed")

func (c *gateConn) SendDatagram(b []byte) error {
	select {
	case c.sent <- len(b):
		return nil
	case <-c.closed:
		return errGateClosed
	}
}

// SendDatagramOwned sends like SendDatagram and hands b back at once, so
// that the gates cover the tunnel's send without a copy.
func (c *gateConn) SendDatagramOwned(b []byte, done interface{ DatagramSent() }) error {
	if err := c.SendDatagram(b); err != nil {
		return err
	}
	done.DatagramSent()
	return nil
}

func (c *gateConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	select {
	case d := <-c.rx:
		b := <-c.free // a buffer comes back before the test sends the next datagram
		return b[:copy(b[:cap(b)], d)], nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.closed:
		return nil, errGateClosed
	}
}

func (c *gateConn) ReleaseDatagram(b []byte) { c.free <- b[:cap(b)] }

// runGate runs tu until the test ends, then closes conns and dev and
// checks that Run returned nil.
func runGate(t *testing.T, tu *Tunnel, dev *gateDev, conns ...*gateConn) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- tu.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for _, c := range conns {
			close(c.closed)
		}
		dev.Close()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return")
		}
	})
}

// TestAllocs gates the per-packet paths at zero allocations in steady
// state: outbound from the TUN read through the table lookup and the queue
// to SendDatagram, and inbound from ReceiveDatagram through validation,
// the source check and the copy to the TUN Write. Both run through the
// real goroutines; the fakes at both ends do not allocate.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector; run without -race")
	}
	goroutineLeakCheck(t)
	dev := newGateDev()
	tu, err := New(dev, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tu.SetPeers([]PeerConfig{{ID: idB, AllowedIPs: []netip.Prefix{prefB4, prefB6}}}); err != nil {
		t.Fatal(err)
	}
	conn := newGateConn()
	if err := tu.Attach(idB, conn); err != nil {
		t.Fatal(err)
	}
	runGate(t, tu, dev, conn)

	out4 := tuntest.Ping(hostA4, hostB4, 1, 1, 1000)
	out6 := tuntest.Ping(hostA6, hostB6, 1, 1, 1000)
	in4 := tuntest.Ping(hostB4, hostA4, 1, 1, 1000)
	in6 := tuntest.Ping(hostB6, hostA6, 1, 1, 1000)
	gates := []struct {
		name string
		f    func()
	}{
		{"outbound", func() {
			dev.in <- out4
			<-conn.sent
			dev.in <- out6
			<-conn.sent
		}},
		{"inbound", func() {
			conn.rx <- in4
			<-dev.wrote
			conn.rx <- in6
			<-dev.wrote
		}},
	}
	for _, g := range gates {
		t.Run(g.name, func(t *testing.T) {
			for range 100 { // warm up the pool
				g.f()
			}
			if got := testing.AllocsPerRun(1000, g.f); got != 0 {
				t.Errorf("%s: %v allocations per packet pair, want 0", g.name, got)
			}
		})
	}
	s := tu.Stats().Peers[idB]
	if s.TxPackets < 2*1100 || s.RxPackets < 2*1100 || s.Drops.Total() != 0 {
		t.Errorf("stats %+v: the gates did not go through the data path", s)
	}
}

// TestAllocsMultipath gates the multipath paths at zero allocations: a
// packet sent on two paths with the sequenced header (Redundant), and a
// sequenced datagram through the duplicate window to the TUN.
func TestAllocsMultipath(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector; run without -race")
	}
	goroutineLeakCheck(t)
	dev := newGateDev()
	tu, err := New(dev, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := tu.SetPeers([]PeerConfig{{ID: idB, AllowedIPs: []netip.Prefix{prefB4, prefB6}}}); err != nil {
		t.Fatal(err)
	}
	tu.SetPathPolicy(idB, PathPolicy{Mode: Redundant})
	conns := make([]*gateConn, 2)
	for i := range conns {
		conns[i] = newGateConn()
		if err := tu.AttachPath(idB, conns[i], PathOptions{Name: "p", Sequenced: true}); err != nil {
			t.Fatal(err)
		}
	}
	runGate(t, tu, dev, conns...)

	out := tuntest.Ping(hostA4, hostB4, 1, 1, 1000)
	in := tuntest.Ping(hostB4, hostA4, 1, 1, 1000)
	dg := make([]byte, seq.HeaderLen+len(in))
	copy(dg[seq.HeaderLen:], in)
	var n uint64
	gates := []struct {
		name string
		f    func()
	}{
		{"outbound on two paths", func() {
			dev.in <- out
			if <-conns[0].sent != seq.HeaderLen+len(out) || <-conns[1].sent != seq.HeaderLen+len(out) {
				t.Fatal("datagram without the sequenced header")
			}
		}},
		{"inbound sequenced", func() {
			n++
			seq.Put(dg, n)
			conns[n%2].rx <- dg
			<-dev.wrote
		}},
	}
	for _, g := range gates {
		t.Run(g.name, func(t *testing.T) {
			for range 100 { // warm up the pool
				g.f()
			}
			if got := testing.AllocsPerRun(1000, g.f); got != 0 {
				t.Errorf("%s: %v allocations per packet, want 0", g.name, got)
			}
		})
	}
	if s := tu.Stats().Peers[idB]; s.TxPackets < 1100 || s.RxPackets < 1100 || s.Drops.Total() != 0 {
		t.Errorf("stats %+v: the gates did not go through the data path", s)
	}
}
