// SPDX-License-Identifier: MIT

package tunnel

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/quicconn/quictest"
	"github.com/godwit-vpn/godwit/tun/tuntest"
	"github.com/godwit-vpn/godwit/tunnel/classify"
	"github.com/godwit-vpn/godwit/tunnel/internal/seq"
)

// fakeHealth is a path's health that a test changes.
type fakeHealth struct {
	usable atomic.Bool
	rank   atomic.Int64
}

func newFakeHealth(rank int) *fakeHealth {
	h := &fakeHealth{}
	h.usable.Store(true)
	h.rank.Store(int64(rank))
	return h
}

func (h *fakeHealth) get() PathHealth {
	return PathHealth{Usable: h.usable.Load(), Rank: int(h.rank.Load())}
}

// mpLink is a site tunnel A and a hub tunnel B joined by n pipes, each
// attached as a path on both sides: path i has rank i on A; B follows.
type mpLink struct {
	ta, tb     *Tunnel
	devA, devB *tuntest.Channel
	a, b       []*quictest.PipeConn // a[i]: A's end of path i
	health     []*fakeHealth        // A's view of path i
}

func (h *harness) multipath(n int, pol PathPolicy, sequenced bool) *mpLink {
	h.t.Helper()
	l := &mpLink{}
	l.ta, l.devA = h.tunnel(Config{}, 4, PeerConfig{ID: idB, Name: "b", AllowedIPs: []netip.Prefix{prefB4, prefB6}})
	l.tb, l.devB = h.tunnel(Config{}, 4, PeerConfig{ID: idA, Name: "a", AllowedIPs: []netip.Prefix{prefA4, prefA6}})
	l.ta.SetPathPolicy(idB, pol)
	l.tb.SetPathPolicy(idA, PathPolicy{Mode: pol.Mode, RedundancyAll: pol.RedundancyAll, Follow: true})
	for i := range n {
		ca, cb := h.pipe()
		fh := newFakeHealth(i)
		if err := l.ta.AttachPath(idB, ca, PathOptions{Name: string(rune('0' + i)), Sequenced: sequenced, Health: fh.get}); err != nil {
			h.t.Fatalf("A: AttachPath: %v", err)
		}
		if err := l.tb.AttachPath(idA, cb, PathOptions{Name: string(rune('0' + i)), Sequenced: sequenced}); err != nil {
			h.t.Fatalf("B: AttachPath: %v", err)
		}
		l.a, l.b, l.health = append(l.a, ca), append(l.b, cb), append(l.health, fh)
	}
	return l
}

// sent returns how many datagrams A sent on each path.
func (l *mpLink) sent() []uint64 {
	out := make([]uint64, len(l.a))
	for i, c := range l.a {
		out[i] = c.Sent()
	}
	return out
}

// expectSent waits until A has sent want datagrams on each path.
func (l *mpLink) expectSent(t *testing.T, want ...uint64) {
	t.Helper()
	eventually(t, fmt.Sprintf("sent per path %v", want), func() bool { return slices.Equal(l.sent(), want) })
}

// ping sends n pings from A to B and checks that B delivers each once.
func (l *mpLink) ping(t *testing.T, first, n int) {
	t.Helper()
	for i := range n {
		pkt := tuntest.Ping(hostA4, hostB4, 1, uint16(first+i), 56)
		l.devA.ToTunnel <- bytes.Clone(pkt)
		expectPacket(t, l.devB.FromTunnel, pkt)
	}
}

func TestMultipathFailover(t *testing.T) {
	h := newHarness(t)
	l := h.multipath(2, PathPolicy{Mode: Failover}, true)
	l.ping(t, 0, 10)
	l.expectSent(t, 10, 0) // all on the preferred path
	// The preferred path goes bad: the traffic moves at once.
	l.health[0].usable.Store(false)
	l.ta.PathsChanged(idB)
	l.ping(t, 10, 10)
	l.expectSent(t, 10, 10)
	// B answers on the path A's traffic now arrives on (Follow).
	pkt := tuntest.Ping(hostB4, hostA4, 2, 1, 56)
	l.devB.ToTunnel <- bytes.Clone(pkt)
	expectPacket(t, l.devA.FromTunnel, pkt)
	eventually(t, "B answered on path 1, where A's traffic arrives", func() bool { return l.b[0].Sent() == 0 && l.b[1].Sent() == 1 })
	// Back on the preferred path when it is healthy again.
	l.health[0].usable.Store(true)
	l.ta.PathsChanged(idB)
	l.ping(t, 20, 5)
	l.expectSent(t, 15, 10)
	ps := l.ta.PathStats(idB)
	if len(ps) != 2 || ps[0].Role != "carrying" || ps[1].Role != "warm" || !ps[0].Sequenced {
		t.Fatalf("PathStats = %+v, want path 0 carrying, path 1 warm, sequenced", ps)
	}
	statsEventually(t, l.tb, "B received 25, no duplicates or drops", func(s Stats) bool {
		got := s.Peers[idA]
		return got.Duplicates == 0 && got.Drops.Total() == 0 && got.RxPackets == 25
	})
}

func TestMultipathRedundant(t *testing.T) {
	h := newHarness(t)
	l := h.multipath(3, PathPolicy{Mode: Redundant}, true)
	l.ping(t, 0, 20) // each delivered once (ping checks the next packet; a duplicate would show below)
	statsEventually(t, l.tb, "B discarded 20 duplicates", func(s Stats) bool {
		p := s.Peers[idA]
		return p.RxPackets == 20 && p.Duplicates == 20
	})
	expectNothing(t, l.devB.FromTunnel)
	l.expectSent(t, 20, 20, 0) // the two best
	// One of the two goes bad: the copies go on the two best usable ones.
	l.health[1].usable.Store(false)
	l.ta.PathsChanged(idB)
	l.ping(t, 20, 5)
	l.expectSent(t, 25, 20, 5)
	// RedundancyAll: every usable path.
	l.ta.SetPathPolicy(idB, PathPolicy{Mode: Redundant, RedundancyAll: true})
	l.health[1].usable.Store(true)
	l.ta.PathsChanged(idB)
	l.ping(t, 25, 5)
	l.expectSent(t, 30, 25, 10)
}

func TestMultipathAggregateKeepsFlowsOnOnePath(t *testing.T) {
	h := newHarness(t)
	l := h.multipath(2, PathPolicy{Mode: Aggregate}, true)
	used := map[int]bool{}
	for flow := range 32 {
		before := l.sent()
		for i := range 5 {
			pkt := tuntest.UDP(netip.AddrPortFrom(hostA4, uint16(1000+flow)), netip.AddrPortFrom(hostB4, 53), []byte{byte(i)})
			l.devA.ToTunnel <- bytes.Clone(pkt)
			expectPacket(t, l.devB.FromTunnel, pkt)
		}
		var after []uint64
		eventually(t, "5 more sent", func() bool {
			after = l.sent()
			return after[0]+after[1] == before[0]+before[1]+5
		})
		var paths []int
		for i := range after {
			if after[i] != before[i] {
				paths = append(paths, i)
				used[i] = true
			}
		}
		if len(paths) != 1 || after[paths[0]]-before[paths[0]] != 5 {
			t.Fatalf("flow %d: sent per path went %v -> %v, want all 5 on one path", flow, before, after)
		}
	}
	// Light flows all take the path with the lowest RTT (aggregate.go);
	// aggregate_test.go spreads heavy ones.
	if len(used) != 1 {
		t.Fatalf("32 light flows used paths %v, want one", used)
	}
}

func TestMultipathDuplicateRule(t *testing.T) {
	h := newHarness(t)
	rule, err := classify.ParseRule("udp:5004")
	if err != nil {
		t.Fatal(err)
	}
	l := h.multipath(2, PathPolicy{Mode: Failover, Duplicate: classify.NewSet([]classify.Rule{rule})}, true)
	voice := tuntest.UDP(netip.AddrPortFrom(hostA4, 40000), netip.AddrPortFrom(hostB4, 5004), []byte("rtp"))
	bulk := tuntest.UDP(netip.AddrPortFrom(hostA4, 40000), netip.AddrPortFrom(hostB4, 5005), []byte("bulk"))
	for range 10 {
		l.devA.ToTunnel <- bytes.Clone(voice)
		expectPacket(t, l.devB.FromTunnel, voice)
		l.devA.ToTunnel <- bytes.Clone(bulk)
		expectPacket(t, l.devB.FromTunnel, bulk)
	}
	l.expectSent(t, 20, 10) // every packet on path 0, the matched ones also on path 1
	statsEventually(t, l.tb, "B discarded the 10 second copies", func(s Stats) bool { return s.Peers[idA].Duplicates == 10 })
	if ps := l.ta.PathStats(idB); ps[1].DupSent != 10 {
		t.Fatalf("path 1 DupSent = %d, want 10", ps[1].DupSent)
	}
}

func TestMultipathWithoutCapabilitySendsPlainPackets(t *testing.T) {
	h := newHarness(t)
	l := h.multipath(2, PathPolicy{Mode: Redundant}, false)
	pkt := tuntest.Ping(hostA4, hostB4, 1, 1, 56)
	l.devA.ToTunnel <- bytes.Clone(pkt)
	// Both copies arrive as plain packets: no header, no window.
	expectPacket(t, l.devB.FromTunnel, pkt)
	expectPacket(t, l.devB.FromTunnel, pkt)
}

func TestMultipathOnePathHasNoHeader(t *testing.T) {
	h := newHarness(t)
	ta, _ := h.tunnel(Config{}, 4, PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	ca, cb := h.pipe()
	if err := ta.AttachPath(idB, ca, PathOptions{Name: "wifi", Sequenced: true}); err != nil {
		t.Fatal(err)
	}
	h.devs[0].ToTunnel <- tuntest.Ping(hostA4, hostB4, 1, 1, 56)
	if d := receive(t, cb); d[0]>>4 != 4 {
		t.Fatalf("one path: datagram starts % x, want a plain IPv4 packet", d[:4])
	}
}

func TestMultipathSequenceChecks(t *testing.T) {
	h := newHarness(t)
	l := h.multipath(2, PathPolicy{Mode: Failover}, true)
	pkt := tuntest.Ping(hostA4, hostB4, 1, 1, 56)
	dg := func(n uint64) []byte {
		d := make([]byte, seq.HeaderLen+len(pkt))
		seq.Put(d, n)
		copy(d[seq.HeaderLen:], pkt)
		return d
	}
	send := func(n uint64) {
		t.Helper()
		if err := l.a[0].SendDatagram(dg(n)); err != nil {
			t.Fatal(err)
		}
	}
	send(100_000)
	expectPacket(t, l.devB.FromTunnel, pkt)
	send(100_000) // replayed
	send(100_000 - 9000)
	expectNothing(t, l.devB.FromTunnel)
	statsEventually(t, l.tb, "a replay and a number behind the window counted", func(s Stats) bool {
		p := s.Peers[idA]
		return p.Duplicates == 1 && p.Drops.SeqTooOld == 1 && p.RxPackets == 1
	})
	// A later version of the format (the low nibble) is dropped and
	// counted; so is a header cut short.
	bad := dg(100_001)
	bad[0] = 0x11
	if err := l.a[1].SendDatagram(bad); err != nil {
		t.Fatal(err)
	}
	if err := l.a[1].SendDatagram(dg(100_002)[:5]); err != nil {
		t.Fatal(err)
	}
	statsEventually(t, l.tb, "the unknown version and the short header counted", func(s Stats) bool {
		d := s.Peers[idA].Drops
		return d.UnknownFormat == 1 && d.InMalformed == 1
	})
	// A restarted sender (a jump of more than 2^24) restarts the window.
	send(100_000 + 1<<30)
	expectPacket(t, l.devB.FromTunnel, pkt)
	statsEventually(t, l.tb, "the restart counted", func(s Stats) bool { return s.Peers[idA].SeqResets == 1 })
}

func TestMultipathNinthPathRefused(t *testing.T) {
	h := newHarness(t)
	ta, _ := h.tunnel(Config{}, 4, PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	for i := range MaxPaths {
		c, _ := h.pipe()
		if err := ta.AttachPath(idB, c, PathOptions{Name: string(rune('a' + i))}); err != nil {
			t.Fatalf("path %d: %v", i, err)
		}
	}
	c, _ := h.pipe()
	if err := ta.AttachPath(idB, c, PathOptions{Name: "ninth"}); !errors.Is(err, ErrTooManyPaths) {
		t.Fatalf("ninth AttachPath = %v, want ErrTooManyPaths", err)
	}
	if got := ta.Stats().Peers[idB].PathsRefused; got != 1 {
		t.Fatalf("PathsRefused = %d, want 1", got)
	}
	if n := len(ta.PathStats(idB)); n != MaxPaths {
		t.Fatalf("%d paths, want %d", n, MaxPaths)
	}
}

func TestMultipathDetachLeavesOthers(t *testing.T) {
	h := newHarness(t)
	l := h.multipath(2, PathPolicy{Mode: Failover}, true)
	l.ta.Detach(idB, l.a[0])
	l.ping(t, 0, 5)
	l.expectSent(t, 0, 5)
	l.ta.Detach(idB, l.a[1])
	if ps := l.ta.PathStats(idB); ps != nil {
		t.Fatalf("PathStats = %+v after both detached, want none", ps)
	}
}

func TestMultipathPathBecomesSequenced(t *testing.T) {
	h := newHarness(t)
	ta, dev := h.tunnel(Config{}, 4, PeerConfig{ID: idB, AllowedIPs: []netip.Prefix{prefB4}})
	a0, b0 := h.pipe()
	a1, _ := h.pipe()
	for _, c := range []*quictest.PipeConn{a0, a1} {
		if err := ta.AttachPath(idB, c, PathOptions{Name: "p", Sequenced: c == a1}); err != nil {
			t.Fatal(err)
		}
	}
	// a0 does not know yet whether the peer reads the header (a 0-RTT
	// connection before its hello): plain packets on both.
	dev.ToTunnel <- tuntest.Ping(hostA4, hostB4, 1, 1, 56)
	if d := receive(t, b0); d[0]>>4 != 4 {
		t.Fatalf("before: datagram starts % x, want a plain IPv4 packet", d[:2])
	}
	if err := ta.AttachPath(idB, a0, PathOptions{Name: "p", Sequenced: true}); err != nil {
		t.Fatal(err)
	}
	dev.ToTunnel <- tuntest.Ping(hostA4, hostB4, 1, 2, 56)
	if d := receive(t, b0); d[0] != 0x10 {
		t.Fatalf("after: datagram starts % x, want the sequenced header", d[:2])
	}
}

// TestMultipathAggregateDropsLongPath: in Aggregate a path whose RTT
// rises far above the best one's gets no flows, without anyone calling
// PathsChanged (the tunnel re-reads the RTTs every clockTick).
func TestMultipathAggregateDropsLongPath(t *testing.T) {
	h := newHarness(t)
	l := h.multipath(2, PathPolicy{Mode: Aggregate}, true)
	var srtt [2]atomic.Int64
	srtt[0].Store(int64(time.Millisecond))
	srtt[1].Store(int64(time.Millisecond))
	for i := range 2 {
		if err := l.ta.AttachPath(idB, l.a[i], PathOptions{Name: "p", Sequenced: true, Health: func() PathHealth {
			return PathHealth{Usable: true, SRTT: time.Duration(srtt[i].Load())}
		}}); err != nil {
			t.Fatal(err)
		}
	}
	l.ta.PathsChanged(idB)
	carrying := func() int {
		n := 0
		for _, ps := range l.ta.PathStats(idB) {
			if ps.Role == "carrying" {
				n++
			}
		}
		return n
	}
	if n := carrying(); n != 2 {
		t.Fatalf("%d paths carrying at equal RTTs, want 2", n)
	}
	srtt[1].Store(int64(80 * time.Millisecond)) // a queue builds on path 1
	eventually(t, "path 1 no longer carrying", func() bool { return carrying() == 1 })
	ps := l.ta.PathStats(idB)
	if ps[0].Role != "carrying" || ps[0].SRTT != time.Millisecond {
		t.Fatalf("PathStats = %+v, want the 1 ms path carrying", ps)
	}
}

// TestMultipathLossyPaths: a lossy path gives way to a clean one in
// failover, but still carries copies in redundant mode.
func TestMultipathLossyPaths(t *testing.T) {
	h := newHarness(t)
	l := h.multipath(2, PathPolicy{Mode: Failover}, true)
	var lossy [2]atomic.Bool
	for i := range 2 {
		if err := l.ta.AttachPath(idB, l.a[i], PathOptions{Name: "p", Sequenced: true, Health: func() PathHealth {
			return PathHealth{Usable: true, Lossy: lossy[i].Load(), Rank: i}
		}}); err != nil {
			t.Fatal(err)
		}
	}
	lossy[0].Store(true)
	l.ta.PathsChanged(idB)
	l.ping(t, 0, 5)
	l.expectSent(t, 0, 5) // the clean path, though ranked second
	lossy[1].Store(true)
	l.ta.PathsChanged(idB)
	l.ping(t, 5, 5)
	l.expectSent(t, 5, 5) // both lossy: by rank
	l.ta.SetPathPolicy(idB, PathPolicy{Mode: Redundant})
	l.ping(t, 10, 5)
	l.expectSent(t, 10, 10) // copies on both
}
