// SPDX-License-Identifier: MIT

package tunnel

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/quictest"
	"github.com/godwit-vpn/godwit/tun/tuntest"
)

var _ DatagramConn = (*quictest.PipeConn)(nil)

// waitTimeout bounds every wait in these tests; generous for shared 2-core
// machines under -race.
const waitTimeout = 20 * time.Second

var (
	idA, idB, idC, idD, idH = key.Public{0xa}, key.Public{0xb}, key.Public{0xc}, key.Public{0xd}, key.Public{0xee}

	prefA4, prefA6 = netip.MustParsePrefix("192.0.2.0/26"), netip.MustParsePrefix("2001:db8:a::/48")
	prefB4, prefB6 = netip.MustParsePrefix("192.0.2.64/26"), netip.MustParsePrefix("2001:db8:b::/48")
	prefC4, prefC6 = netip.MustParsePrefix("192.0.2.128/26"), netip.MustParsePrefix("2001:db8:c::/48")
	prefD4         = netip.MustParsePrefix("203.0.113.0/24")

	hostC4 = netip.MustParseAddr("192.0.2.130")
	hostC6 = netip.MustParseAddr("2001:db8:c::10")
	ownA4  = netip.MustParsePrefix("192.0.2.1/26")
	ownA6  = netip.MustParsePrefix("2001:db8:a::1/64")
)

// goroutineLeakCheck fails the test if goroutines started during it are
// still running at its end (wireguard-go's device_test.go).
func goroutineLeakCheck(t *testing.T) {
	goroutines := func() (int, []byte) {
		p := pprof.Lookup("goroutine")
		b := new(bytes.Buffer)
		p.WriteTo(b, 1)
		return p.Count(), b.Bytes()
	}
	start, startStacks := goroutines()
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		deadline := time.Now().Add(waitTimeout)
		for time.Now().Before(deadline) {
			if runtime.NumGoroutine() <= start {
				return
			}
			time.Sleep(time.Millisecond)
		}
		end, endStacks := goroutines()
		t.Logf("starting stacks:\n%s\n", startStacks)
		t.Logf("ending stacks:\n%s\n", endStacks)
		t.Fatalf("expected %d goroutines, got %d, leak?", start, end)
	})
}

// harness runs Tunnels over tuntest Channels and quictest Pipes and shuts
// them down in the documented order in t.Cleanup.
type harness struct {
	t       *testing.T
	ctx     context.Context
	cancel  context.CancelFunc
	pipes   []*quictest.PipeConn
	devs    []*tuntest.Channel
	runs    []chan error
	cleanup []func()
}

func newHarness(t *testing.T) *harness {
	goroutineLeakCheck(t)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, ctx: ctx, cancel: cancel}
	t.Cleanup(h.shutdown)
	return h
}

func (h *harness) shutdown() {
	h.cancel()
	for _, f := range h.cleanup {
		f()
	}
	for _, p := range h.pipes {
		p.Close()
	}
	for _, d := range h.devs {
		d.Close()
	}
	for i, c := range h.runs {
		select {
		case err := <-c:
			if err != nil {
				h.t.Errorf("tunnel %d: Run = %v, want nil", i, err)
			}
		case <-time.After(waitTimeout):
			h.t.Errorf("tunnel %d: Run did not return after shutdown", i)
		}
	}
}

// tunnel starts a Tunnel with the given peers over a new Channel.
func (h *harness) tunnel(cfg Config, batch int, peers ...PeerConfig) (*Tunnel, *tuntest.Channel) {
	h.t.Helper()
	dev := tuntest.NewChannel(batch)
	tu, err := New(dev, cfg)
	if err != nil {
		h.t.Fatalf("New: %v", err)
	}
	if err := tu.SetPeers(peers); err != nil {
		h.t.Fatalf("SetPeers: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- tu.Run(h.ctx) }()
	h.devs = append(h.devs, dev)
	h.runs = append(h.runs, done)
	return tu, dev
}

func (h *harness) pipe() (a, b *quictest.PipeConn) {
	a, b = quictest.Pipe()
	h.pipes = append(h.pipes, a)
	return a, b
}

// attachPipe attaches one end of a new pipe to peer id of tu and returns
// both ends: local, the tunnel's, and remote, the peer's.
func (h *harness) attachPipe(tu *Tunnel, id key.Public) (local, remote *quictest.PipeConn) {
	h.t.Helper()
	local, remote = h.pipe()
	attach(h.t, tu, id, local)
	return local, remote
}

// linkedAB returns tunnels A and B, each with the other as its peer (named
// "b" and "a", with both address families), connected by a pipe.
func (h *harness) linkedAB() (ta *Tunnel, devA *tuntest.Channel, tb *Tunnel, devB *tuntest.Channel) {
	h.t.Helper()
	ta, devA = h.tunnel(Config{}, 4, PeerConfig{ID: idB, Name: "b", AllowedIPs: []netip.Prefix{prefB4, prefB6}})
	tb, devB = h.tunnel(Config{}, 4, PeerConfig{ID: idA, Name: "a", AllowedIPs: []netip.Prefix{prefA4, prefA6}})
	_, cb := h.attachPipe(ta, idB)
	attach(h.t, tb, idA, cb)
	return ta, devA, tb, devB
}

// attach attaches c to peer id of tu or fails the test.
func attach(t *testing.T, tu *Tunnel, id key.Public, c DatagramConn) {
	t.Helper()
	if err := tu.Attach(id, c); err != nil {
		t.Fatalf("Attach(%v): %v", id, err)
	}
}

// forwarded returns a copy of pkt as the tunnel forwards it: one hop less
// in its TTL or hop limit (see decrementTTL).
func forwarded(pkt []byte) []byte {
	b := bytes.Clone(pkt)
	decrementTTL(b)
	return b
}

// expectPacket waits for the next packet on ch, a TUN's FromTunnel, and
// compares it with want as the tunnel forwards it (forwarded).
func expectPacket(t *testing.T, ch <-chan []byte, want []byte) {
	t.Helper()
	want = forwarded(want)
	select {
	case got := <-ch:
		if !bytes.Equal(got, want) {
			t.Fatalf("got packet\n% x\nwant\n% x", got, want)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for a packet")
	}
}

// expectICMPError waits for the next packet on ch and parses it as an ICMP
// or ICMPv6 error.
func expectICMPError(t *testing.T, ch <-chan []byte) icmpError {
	t.Helper()
	select {
	case got := <-ch:
		e, err := parseICMPError(got)
		if err != nil {
			t.Fatalf("parseICMPError: %v", err)
		}
		return e
	case <-time.After(waitTimeout):
		t.Fatal("no ICMP error")
	}
	return icmpError{}
}

// receive waits for the next datagram on c.
func receive(t *testing.T, c *quictest.PipeConn) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	d, err := c.ReceiveDatagram(ctx)
	if err != nil {
		t.Fatalf("ReceiveDatagram: %v", err)
	}
	return d
}

// expectNothing checks that ch stays empty for a short while.
func expectNothing(t *testing.T, ch <-chan []byte) {
	t.Helper()
	select {
	case got := <-ch:
		t.Fatalf("got unexpected packet % x", got)
	case <-time.After(100 * time.Millisecond):
	}
}

// statsEventually polls tu.Stats until cond holds or waitTimeout passes,
// and then reports the last Stats.
func statsEventually(t *testing.T, tu *Tunnel, what string, cond func(Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		s := tu.Stats()
		if cond(s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; stats: %+v", what, s)
		}
		time.Sleep(time.Millisecond)
	}
}

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestTwoTunnelPing(t *testing.T) {
	h := newHarness(t)
	ta, devA, tb, devB := h.linkedAB()

	tests := []struct {
		name     string
		from, to *tuntest.Channel
		pkt      []byte
	}{
		{"v4 a->b", devA, devB, tuntest.Ping(hostA4, hostB4, 1, 1, 56)},
		{"v4 b->a", devB, devA, tuntest.Ping(hostB4, hostA4, 1, 1, 56)},
		{"v6 a->b", devA, devB, tuntest.Ping(hostA6, hostB6, 1, 1, 56)},
		{"v6 b->a", devB, devA, tuntest.Ping(hostB6, hostA6, 1, 1, 56)},
		{"udp4 a->b", devA, devB, tuntest.UDP(netip.AddrPortFrom(hostA4, 1000), netip.AddrPortFrom(hostB4, 53), []byte("q"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for seq := range 10 {
				tt.pkt[len(tt.pkt)-1] = byte(seq) // vary the payload; the tunnel does not check transport checksums
				tt.from.ToTunnel <- bytes.Clone(tt.pkt)
				expectPacket(t, tt.to.FromTunnel, tt.pkt)
			}
		})
	}
	// Counters are bumped after the hand-off, so wait for them to settle.
	statsEventually(t, ta, "A's stats for B: 30 tx, 20 rx, no drops", func(s Stats) bool {
		got := s.Peers[idB]
		return got.TxPackets == 30 && got.RxPackets == 20 && got.Drops.Total() == 0
	})
	statsEventually(t, tb, "B's totals: 20 tx, 30 rx", func(s Stats) bool {
		return s.Total.TxPackets == 20 && s.Total.RxPackets == 30
	})
}

func TestHubForwardsBetweenSpokes(t *testing.T) {
	h := newHarness(t)
	hub, hubDev := h.tunnel(Config{}, 8,
		PeerConfig{ID: idA, AllowedIPs: []netip.Prefix{prefA4, prefA6}},
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4, prefB6}})
	// The spokes route the other spoke's prefixes to the hub.
	spokeA, devA := h.tunnel(Config{}, 8, PeerConfig{ID: idH, AllowedIPs: []netip.Prefix{prefB4, prefB6}})
	spokeB, devB := h.tunnel(Config{}, 8, PeerConfig{ID: idH, AllowedIPs: []netip.Prefix{prefA4, prefA6}})
	_, a2 := h.attachPipe(hub, idA)
	attach(t, spokeA, idH, a2)
	_, b2 := h.attachPipe(hub, idB)
	attach(t, spokeB, idH, b2)

	// The hub's kernel forwards what the tunnel writes back into the TUN.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case p := <-hubDev.FromTunnel:
				select {
				case hubDev.ToTunnel <- p:
				case <-stop:
					return
				}
			case <-stop:
				return
			}
		}
	}()
	h.cleanup = append(h.cleanup, func() { close(stop); wg.Wait() })

	for _, tt := range []struct {
		from, to *tuntest.Channel
		pkt      []byte
	}{
		{devA, devB, tuntest.Ping(hostA4, hostB4, 7, 1, 100)},
		{devB, devA, tuntest.Ping(hostB4, hostA4, 7, 1, 100)},
		{devA, devB, tuntest.Ping(hostA6, hostB6, 7, 2, 100)},
		{devB, devA, tuntest.Ping(hostB6, hostA6, 7, 2, 100)},
	} {
		tt.from.ToTunnel <- bytes.Clone(tt.pkt)
		// Two router hops: the hub's tunnel and the spoke's.
		expectPacket(t, tt.to.FromTunnel, forwarded(tt.pkt))
	}
	statsEventually(t, hub, "2 rx and 2 tx per spoke", func(s Stats) bool {
		return s.Peers[idA].RxPackets == 2 && s.Peers[idA].TxPackets == 2 && s.Peers[idB].RxPackets == 2 && s.Peers[idB].TxPackets == 2
	})
}

func TestStalledPeerDoesNotStallOthers(t *testing.T) {
	h := newHarness(t)
	const queueLen = 32
	hub, dev := h.tunnel(Config{QueueLen: queueLen}, 16,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}},
		PeerConfig{ID: idC, AllowedIPs: []netip.Prefix{prefC4}})
	b1, b2 := h.attachPipe(hub, idB)
	_, c2 := h.attachPipe(hub, idC)
	b1.Stall() // B's SendDatagram blocks until Unstall

	const rounds, burst = 100, 20
	toB := tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostB4, 2), make([]byte, 500))
	toC := tuntest.UDP(netip.AddrPortFrom(hostA4, 1), netip.AddrPortFrom(hostC4, 2), make([]byte, 500))
	for r := range rounds {
		for range burst {
			dev.ToTunnel <- toB
			dev.ToTunnel <- toC
		}
		for i := range burst {
			if got := receive(t, c2); !bytes.Equal(got, toC) {
				t.Fatalf("round %d packet %d to C differs", r, i)
			}
		}
	}
	const nB = rounds * burst
	// B's sender holds one packet in the stalled SendDatagram, its queue
	// holds queueLen, the rest is dropped.
	eventually(t, "B's drops", func() bool { return hub.Stats().Peers[idB].Drops.QueueFull == nB-queueLen-1 })
	statsEventually(t, hub, "C: all tx, no drops; B: no tx", func(s Stats) bool {
		c, b := s.Peers[idC], s.Peers[idB]
		return c.TxPackets == nB && c.Drops.Total() == 0 && b.TxPackets == 0 && b.Drops.Total() == nB-queueLen-1
	})

	b1.Unstall() // what waited in B's queue goes out, in order
	for range queueLen + 1 {
		if got := receive(t, b2); !bytes.Equal(got, toB) {
			t.Fatalf("packet to B differs")
		}
	}
	eventually(t, "B's tx", func() bool { return hub.Stats().Peers[idB].TxPackets == queueLen+1 })
}

func TestSpoofedSourceDropped(t *testing.T) {
	h := newHarness(t)
	hub, dev := h.tunnel(Config{}, 4,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4, prefB6}},
		PeerConfig{ID: idC, AllowedIPs: []netip.Prefix{prefC4, prefC6}})
	_, b2 := h.attachPipe(hub, idB)

	spoofed := []netip.Addr{
		netip.MustParseAddr("198.51.100.9"), // nobody's
		hostC4,                              // C's prefix, sent by B
		hostC6,
		netip.MustParseAddr("2001:db8:ffff::1"),
		netip.MustParseAddr("::ffff:192.0.2.70"), // B's address, mapped (sent as IPv6)
	}
	for _, src := range spoofed {
		dst := hostA4
		if src.Is6() {
			dst = hostA6
		}
		if err := b2.SendDatagram(tuntest.Ping(src, dst, 1, 1, 8)); err != nil {
			t.Fatal(err)
		}
	}
	good := tuntest.Ping(hostB4, hostA4, 1, 1, 8)
	if err := b2.SendDatagram(good); err != nil {
		t.Fatal(err)
	}
	expectPacket(t, dev.FromTunnel, good) // the receiver is sequential
	statsEventually(t, hub, "B: bad_source for each spoofed packet, 1 rx", func(s Stats) bool {
		return s.Peers[idB].Drops.BadSource == uint64(len(spoofed)) && s.Peers[idB].RxPackets == 1
	})
	expectNothing(t, dev.FromTunnel)
}

func TestTooBigICMP(t *testing.T) {
	h := newHarness(t)
	// MTU 1500: the packets fit the TUN, and only the datagram limit
	// stops them (packets over the MTU: TestOverMTUTooBigICMP).
	ta, devA := h.tunnel(Config{Addresses: []netip.Prefix{ownA4, ownA6}, MTU: 1500}, 4,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4, prefB6}})
	c1, c2 := h.attachPipe(ta, idB)

	tests := []struct {
		name     string
		limit    int
		pkt      []byte
		wantICMP bool
		typ      byte
		code     byte
		src      netip.Addr
	}{
		// From the original destination, not our own address (a
		// martian source on the TUN): see sendICMP.
		{"v4", 1000, tuntest.Ping(hostA4, hostB4, 1, 1, 1200), true, 3, 4, hostB4},
		{"v4 live limit changes", 700, tuntest.Ping(hostA4, hostB4, 1, 2, 1200), true, 3, 4, hostB4},
		{"v6", 1300, tuntest.Ping(hostA6, hostB6, 1, 1, 1400), true, 2, 0, hostB6},
		{"v6 limit below 1280", 1200, tuntest.Ping(hostA6, hostB6, 1, 2, 1400), false, 0, 0, netip.Addr{}},
	}
	var tooBig uint64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c1.SetLimit(tt.limit)
			devA.ToTunnel <- bytes.Clone(tt.pkt)
			tooBig++
			eventually(t, "too_big count", func() bool { return ta.Stats().Peers[idB].Drops.TooBig == tooBig })
			if !tt.wantICMP {
				expectNothing(t, devA.FromTunnel)
				return
			}
			e := expectICMPError(t, devA.FromTunnel)
			if e.typ != tt.typ || e.code != tt.code || e.mtu != tt.limit {
				t.Errorf("type/code/mtu = %d/%d/%d, want %d/%d/%d", e.typ, e.code, e.mtu, tt.typ, tt.code, tt.limit)
			}
			if e.src != tt.src || e.dst != srcAddr(tt.pkt) {
				t.Errorf("ICMP %v -> %v, want %v -> %v", e.src, e.dst, tt.src, srcAddr(tt.pkt))
			}
			if !bytes.Equal(e.quote, tt.pkt[:len(e.quote)]) || len(e.quote) < 28 {
				t.Errorf("quote (%d bytes) is not a prefix of the original", len(e.quote))
			}
		})
	}
	c1.SetLimit(0)
	small := tuntest.Ping(hostA4, hostB4, 1, 3, 1200)
	devA.ToTunnel <- bytes.Clone(small)
	if got := receive(t, c2); !bytes.Equal(got, small) {
		t.Errorf("packet after the limit was lifted differs")
	}
}

func TestNoRouteICMPRateLimited(t *testing.T) {
	h := newHarness(t)
	ta, devA := h.tunnel(Config{Addresses: []netip.Prefix{ownA4, ownA6}}, 32,
		PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})

	unrouted := netip.MustParseAddr("198.51.100.1")
	pkt := tuntest.Ping(hostA4, unrouted, 1, 1, 8)
	devA.ToTunnel <- bytes.Clone(pkt)
	got := <-devA.FromTunnel
	e, err := parseICMPError(got)
	if err != nil {
		t.Fatalf("parseICMPError: %v", err)
	}
	if e.typ != 3 || e.code != 1 || e.src != ownA4.Addr() || e.dst != hostA4 || !bytes.Equal(e.quote, pkt) {
		t.Errorf("ICMP = %+v, want host unreachable from %v to %v quoting the packet", e, ownA4.Addr(), hostA4)
	}

	// An ICMP error about an unroutable packet gets no ICMP error back.
	icmpErr := bytes.Clone(got)
	copy(icmpErr[16:20], unrouted.AsSlice()) // now an ICMP error to an unrouted address
	devA.ToTunnel <- icmpErr
	eventually(t, "no_route 2", func() bool { return ta.Stats().Total.Drops.NoRoute == 2 })

	const n = 300
	start := time.Now()
	for range n {
		devA.ToTunnel <- bytes.Clone(pkt)
	}
	eventually(t, "no_route count", func() bool { return ta.Stats().Total.Drops.NoRoute == n+2 })
	elapsed := time.Since(start)
	s := ta.Stats()
	if max := uint64(unreachableBurst + unreachableRate*elapsed.Seconds() + 1); s.ICMPSent > max+1 {
		t.Errorf("ICMPSent = %d after %v, want at most %d (rate limit)", s.ICMPSent, elapsed, max+1)
	}
	if s.ICMPSent+s.ICMPLimited != n+1 {
		t.Errorf("ICMPSent %d + ICMPLimited %d = %d, want %d", s.ICMPSent, s.ICMPLimited, s.ICMPSent+s.ICMPLimited, n+1)
	}
	if s.ICMPLimited == 0 {
		t.Errorf("ICMPLimited = 0 after %d unroutable packets, want > 0", n)
	}
	for range s.ICMPSent - 1 {
		<-devA.FromTunnel
	}
	expectNothing(t, devA.FromTunnel)
}

func TestMalformedAndUnknownFormat(t *testing.T) {
	h := newHarness(t)
	ta, devA := h.tunnel(Config{}, 4, PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4, prefB6}})
	_, c2 := h.attachPipe(ta, idB)

	good := tuntest.Ping(hostB4, hostA4, 1, 1, 20)
	badLen := bytes.Clone(good)
	binary.BigEndian.PutUint16(badLen[2:], uint16(len(good)+1))
	malformed := [][]byte{
		{},
		{0x45},
		good[:19],
		badLen,
		tuntest.Ping(hostB6, hostA6, 1, 1, 20)[:39],
	}
	unknown := [][]byte{{0x00}, {0x1f, 0xff}, bytes.Repeat([]byte{0xf0}, 100), {0x50, 0, 0, 0}}
	for _, d := range append(malformed, unknown...) {
		if err := c2.SendDatagram(d); err != nil {
			t.Fatal(err)
		}
	}
	// A datagram longer than its IP length is trimmed to it.
	if err := c2.SendDatagram(append(bytes.Clone(good), 0xde, 0xad)); err != nil {
		t.Fatal(err)
	}
	expectPacket(t, devA.FromTunnel, good)
	d := ta.Stats().Peers[idB].Drops
	if d.InMalformed != uint64(len(malformed)) || d.UnknownFormat != uint64(len(unknown)) {
		t.Errorf("malformed, unknown_format = %d, %d, want %d, %d", d.InMalformed, d.UnknownFormat, len(malformed), len(unknown))
	}

	// Outbound: garbage from the TUN is counted, the reader carries on.
	for _, p := range [][]byte{{0x45, 0, 0}, {0x60}, {0x00, 1}} {
		devA.ToTunnel <- p
	}
	pkt := tuntest.Ping(hostA4, hostB4, 1, 1, 20)
	devA.ToTunnel <- bytes.Clone(pkt)
	if got := receive(t, c2); !bytes.Equal(got, pkt) {
		t.Errorf("packet after garbage differs")
	}
	if got := ta.Stats().Total.Drops.OutMalformed; got != 3 {
		t.Errorf("outbound malformed = %d, want 3", got)
	}
}

func TestDetachAttachResumes(t *testing.T) {
	h := newHarness(t)
	const queueLen = 16
	ta, devA := h.tunnel(Config{QueueLen: queueLen}, 4, PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	c1, c2 := h.attachPipe(ta, idB)
	pkt := func(seq uint16) []byte { return tuntest.Ping(hostA4, hostB4, 1, seq, 8) }

	devA.ToTunnel <- pkt(0)
	if got := receive(t, c2); !bytes.Equal(got, pkt(0)) {
		t.Fatal("first packet differs")
	}
	ta.Detach(idB, c1)
	for i := range uint16(5) {
		devA.ToTunnel <- pkt(1 + i)
	}
	time.Sleep(50 * time.Millisecond)
	if got := c1.Sent(); got != 1 {
		t.Fatalf("old conn sent %d datagrams after Detach, want 1 in total", got)
	}
	d1, d2 := h.attachPipe(ta, idB)
	for i := range uint16(5) {
		if got := receive(t, d2); !bytes.Equal(got, pkt(1+i)) {
			t.Fatalf("queued packet %d differs after Attach", i)
		}
	}

	// Detached with a full queue: the excess is dropped and counted.
	ta.Detach(idB, d1)
	const extra = 10
	for i := range uint16(queueLen + 1 + extra) {
		devA.ToTunnel <- pkt(100 + i)
	}
	eventually(t, "queue_full", func() bool { return ta.Stats().Peers[idB].Drops.QueueFull == extra })
	e1, e2 := h.attachPipe(ta, idB)
	for i := range uint16(queueLen + 1) {
		if got := receive(t, e2); !bytes.Equal(got, pkt(100+i)) {
			t.Fatalf("queued packet %d differs after second Attach", i)
		}
	}

	// Inbound on a detached conn is not delivered any more.
	ta.Detach(idB, e1)
	e2.SendDatagram(tuntest.Ping(hostB4, hostA4, 1, 1, 8))
	expectNothing(t, devA.FromTunnel)
}

func TestReplacedConnStillDelivers(t *testing.T) {
	h := newHarness(t)
	ta, devA := h.tunnel(Config{}, 4, PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	old1, old2 := h.attachPipe(ta, idB)
	new1, new2 := h.attachPipe(ta, idB)
	in := tuntest.Ping(hostB4, hostA4, 1, 1, 8)
	old2.SendDatagram(in) // in flight on the old path
	expectPacket(t, devA.FromTunnel, in)
	out := tuntest.Ping(hostA4, hostB4, 1, 1, 8)
	devA.ToTunnel <- bytes.Clone(out)
	if got := receive(t, new2); !bytes.Equal(got, out) {
		t.Fatal("outbound did not use the new conn")
	}
	// A dead conn is forgotten: old1 errors, new1 stays current.
	old1.Close()
	devA.ToTunnel <- bytes.Clone(out)
	if got := receive(t, new2); !bytes.Equal(got, out) {
		t.Fatal("outbound after the old conn died differs")
	}
	// The current conn dying leaves the peer without one until Attach.
	new1.Close()
	eventually(t, "conn forgotten", func() bool { return ta.peerConn(idB) == nil })
}

// peerConn returns the current conn of peer id, or nil.
func (t *Tunnel) peerConn(id key.Public) DatagramConn {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a := t.peers[id].conn.Load(); a != nil {
		return a.c
	}
	return nil
}

func TestUnchangedPeerLosesNothingAcrossSetPeers(t *testing.T) {
	h := newHarness(t)
	peerB := PeerConfig{ID: idB, Name: "b", AllowedIPs: []netip.Prefix{prefB4, prefB6}}
	cfgs := [][]PeerConfig{
		{peerB, {ID: idC, AllowedIPs: []netip.Prefix{prefC4}}},
		{peerB, {ID: idC, AllowedIPs: []netip.Prefix{prefC4, prefC6}}, {ID: idD, AllowedIPs: []netip.Prefix{prefD4}}},
		{peerB},
		{{ID: idD, AllowedIPs: []netip.Prefix{prefD4}}, peerB},
	}
	ta, devA := h.tunnel(Config{QueueLen: 64}, 8, cfgs[0]...)
	_, b2 := h.attachPipe(ta, idB)

	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if err := ta.SetPeers(cfgs[i%len(cfgs)]); err != nil {
				done <- err
				return
			}
			runtime.Gosched()
		}
	}()
	const rounds, burst = 200, 16
	for r := range rounds {
		for i := range burst {
			devA.ToTunnel <- tuntest.Ping(hostA4, hostB4, uint16(r), uint16(i), 8)
		}
		for i := range burst {
			want := tuntest.Ping(hostA4, hostB4, uint16(r), uint16(i), 8)
			if got := receive(t, b2); !bytes.Equal(got, want) {
				t.Fatalf("round %d packet %d differs", r, i)
			}
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("SetPeers: %v", err)
	}
	if d := ta.Stats().Peers[idB].Drops; d.Total() != 0 {
		t.Errorf("B's drops = %+v, want none", d)
	}
}

func TestConcurrencySafety(t *testing.T) {
	h := newHarness(t)
	ta, devA := h.tunnel(Config{QueueLen: 64}, 8, PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	tb, devB := h.tunnel(Config{QueueLen: 64}, 8, PeerConfig{ID: idA, AllowedIPs: []netip.Prefix{prefA4}})
	ca, cb := h.attachPipe(ta, idB)
	attach(t, tb, idA, cb)

	var loops, drainer sync.WaitGroup
	stop := make(chan struct{})
	deadline := time.Now().Add(2 * time.Second)
	run := func(name string, iters int, f func(i int) error) {
		loops.Add(1)
		go func() {
			defer loops.Done()
			for i := 0; i < iters && time.Now().Before(deadline); i++ {
				if err := f(i); err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
			}
		}()
	}
	drainer.Add(1)
	go func() { // drain B's TUN
		defer drainer.Done()
		for {
			select {
			case <-devB.FromTunnel:
			case <-stop:
				return
			}
		}
	}()
	run("traffic", 20000, func(i int) error {
		select {
		case devA.ToTunnel <- tuntest.Ping(hostA4, hostB4, 1, uint16(i), 64):
		case <-time.After(waitTimeout):
			return errors.New("TUN channel stuck")
		}
		return nil
	})
	run("setpeers", 500, func(i int) error {
		peers := []PeerConfig{{ID: idB, AllowedIPs: []netip.Prefix{prefB4}}}
		if i%2 == 0 {
			peers = append(peers, PeerConfig{ID: idC, Name: fmt.Sprint(i), AllowedIPs: []netip.Prefix{prefC4}})
		}
		if i%5 == 0 {
			peers[0].AllowedIPs = append(peers[0].AllowedIPs, prefB6)
		}
		return ta.SetPeers(peers)
	})
	run("attach", 500, func(i int) error {
		c1, c2 := quictest.Pipe()
		defer c1.Close()
		if err := ta.Attach(idC, c1); err != nil && !strings.Contains(err.Error(), "unknown peer") {
			return err
		}
		c2.SendDatagram(tuntest.Ping(hostC4, hostA4, 1, 1, 8))
		ta.Detach(idC, c1)
		if i%10 == 0 { // detach and re-attach the busy peer
			ta.Detach(idB, ca)
			return ta.Attach(idB, ca)
		}
		return nil
	})
	run("stats", 500, func(int) error { _ = ta.Stats(); return nil })
	loops.Wait()
	close(stop)
	drainer.Wait()
	if tb.Stats().Total.RxPackets == 0 {
		t.Errorf("no packet got through under churn")
	}
}

func TestAPIErrors(t *testing.T) {
	goroutineLeakCheck(t)
	dev := tuntest.NewChannel(1)
	if _, err := New(nil, Config{}); err == nil {
		t.Error("New(nil) = nil error, want one")
	}
	if _, err := New(dev, Config{MTU: 40}); err == nil {
		t.Error("New with MTU 40 = nil error, want one")
	}
	if _, err := New(dev, Config{QueueLen: -1}); err == nil {
		t.Error("New with QueueLen -1 = nil error, want one")
	}
	tu, err := New(dev, Config{})
	if err != nil {
		t.Fatal(err)
	}
	good := []PeerConfig{{ID: idB, AllowedIPs: []netip.Prefix{prefB4}}}
	if err := tu.SetPeers(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]PeerConfig{
		{{ID: idB}, {ID: idB}},
		{{ID: key.Public{}}},
		{{ID: idB, AllowedIPs: []netip.Prefix{prefB4}}, {ID: idC, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}},
	} {
		if err := tu.SetPeers(bad); err == nil {
			t.Errorf("SetPeers(%v) = nil error, want one", bad)
		}
	}
	if tbl := tu.table.Load(); carrierOf(tbl.lookup(hostB4)) != tu.peers[idB] || len(tu.peers) != 1 {
		t.Errorf("failed SetPeers changed the configuration")
	}
	c1, _ := quictest.Pipe()
	defer c1.Close()
	if err := tu.Attach(idC, c1); err == nil {
		t.Error("Attach to unknown peer = nil error, want one")
	}
	if err := tu.Attach(idB, c1); err != nil { // before Run: fine
		t.Errorf("Attach before Run: %v", err)
	}

	// Closing the device while ctx is not done is a failure of Run.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- tu.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	dev.Close()
	c1.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Errorf("Run after the device was closed underneath = nil, want an error")
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
	}
	if err := tu.Run(ctx); err == nil {
		t.Error("second Run = nil error, want one")
	}
	if err := tu.SetPeers(good); !errors.Is(err, ErrClosed) {
		t.Errorf("SetPeers after Run = %v, want ErrClosed", err)
	}
}

// The fakes implement what they stand in for.
var (
	_ DatagramConn          = (*quictest.PipeConn)(nil)
	_ DatagramReleaser      = (*releasingConn)(nil)
	_ DatagramHandlerSetter = (*handlerConn)(nil)
)

// releasingConn is a PipeConn that implements ReleaseDatagram like
// quicconn.Conn: it counts releases and overwrites each released slice, as
// a reused buffer would be, so a tunnel that kept a released slice would
// deliver garbage.
type releasingConn struct {
	*quictest.PipeConn
	released atomic.Int64
}

func (c *releasingConn) ReleaseDatagram(b []byte) {
	c.released.Add(1)
	clear(b)
}

// TestReleaseDatagram: every received datagram is released once the tunnel
// has copied it out, also the dropped ones, and what reaches the TUN is
// intact.
func TestReleaseDatagram(t *testing.T) {
	h := newHarness(t)
	ta, devA := h.tunnel(Config{}, 4, PeerConfig{ID: idB, Name: "b", AllowedIPs: []netip.Prefix{prefB4}})
	tb, devB := h.tunnel(Config{}, 4, PeerConfig{ID: idA, Name: "a", AllowedIPs: []netip.Prefix{prefA4}})
	ca, cb := h.pipe()
	rc := &releasingConn{PipeConn: ca}
	attach(t, ta, idB, rc)
	attach(t, tb, idA, cb)
	for seq := range 20 {
		pkt := tuntest.Ping(hostB4, hostA4, 1, uint16(seq), 56)
		devB.ToTunnel <- bytes.Clone(pkt)
		expectPacket(t, devA.FromTunnel, pkt)
	}
	// A spoofed source is dropped, and its datagram released too.
	if err := cb.SendDatagram(tuntest.Ping(hostA4, hostA4, 1, 1, 56)); err != nil {
		t.Fatal(err)
	}
	statsEventually(t, ta, "20 packets in, 1 bad source", func(s Stats) bool {
		return s.Peers[idB].RxPackets == 20 && s.Peers[idB].Drops.BadSource == 1
	})
	eventually(t, "21 releases", func() bool { return rc.released.Load() == 21 })
}

// handlerConn is a PipeConn that also takes a datagram handler, like
// quicconn.Conn: deliver calls the installed handler as the conn's own
// goroutine would.
type handlerConn struct {
	releasingConn
	mu sync.Mutex
	f  func([]byte)
}

func (c *handlerConn) SetDatagramHandler(f func([]byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.f = f
}

func (c *handlerConn) deliver(t *testing.T, b []byte) {
	t.Helper()
	c.mu.Lock()
	f := c.f
	c.mu.Unlock()
	if f == nil {
		t.Fatal("no datagram handler installed")
	}
	f(b)
}

// TestDatagramHandler: a conn that takes a handler gets one on Attach;
// datagrams it hands over reach the TUN (with the source check) and are
// released; after Detach they are dropped, still released.
func TestDatagramHandler(t *testing.T) {
	h := newHarness(t)
	ta, devA := h.tunnel(Config{}, 4, PeerConfig{ID: idB, Name: "b", AllowedIPs: []netip.Prefix{prefB4}})
	ca, _ := h.pipe()
	hc := &handlerConn{releasingConn: releasingConn{PipeConn: ca}}
	attach(t, ta, idB, hc)
	eventually(t, "handler installed", func() bool { hc.mu.Lock(); defer hc.mu.Unlock(); return hc.f != nil })
	for seq := range 5 {
		pkt := tuntest.Ping(hostB4, hostA4, 1, uint16(seq), 56)
		hc.deliver(t, bytes.Clone(pkt))
		expectPacket(t, devA.FromTunnel, pkt)
	}
	hc.deliver(t, tuntest.Ping(hostA4, hostA4, 1, 1, 56)) // spoofed source
	statsEventually(t, ta, "5 packets in, 1 bad source", func(s Stats) bool {
		return s.Peers[idB].RxPackets == 5 && s.Peers[idB].Drops.BadSource == 1
	})
	ta.Detach(idB, hc)
	hc.deliver(t, tuntest.Ping(hostB4, hostA4, 1, 9, 56))
	expectNothing(t, devA.FromTunnel)
	if got := hc.released.Load(); got != 7 {
		t.Errorf("released %d datagrams, want 7", got)
	}
}
