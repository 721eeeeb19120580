// SPDX-License-Identifier: MIT

package tunnel

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/quictest"
	"github.com/godwit-vpn/godwit/tun/tuntest"
)

// carryLog records CarryingChanged calls.
type carryLog struct {
	mu  sync.Mutex
	now map[key.Public]bool
	n   int
}

func (l *carryLog) changed(id key.Public, carrying bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.now == nil {
		l.now = make(map[key.Public]bool)
	}
	l.now[id] = carrying
	l.n++
}

func (l *carryLog) is(want map[key.Public]bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, c := range want {
		if l.now[id] != c {
			return false
		}
	}
	return true
}

// TestHubSelection: a site with hubs A (priority 1) and B (priority 2)
// that share a prefix sends it to A while A is usable, to B when A fails,
// back to A only after A was usable for the hold-down, and accepts packets
// from either. A prefix of B's own stays on B throughout.
func TestHubSelection(t *testing.T) {
	h := newHarness(t)
	const hold = 400 * time.Millisecond
	shared := netip.MustParsePrefix("198.51.100.0/24")
	var log carryLog
	tu, dev := h.tunnel(Config{HoldDown: hold, CarryingChanged: log.changed}, 4,
		PeerConfig{ID: idA, Name: "hub-a", AllowedIPs: []netip.Prefix{shared}, Priority: 1},
		PeerConfig{ID: idB, Name: "hub-b", AllowedIPs: []netip.Prefix{shared, prefB4}, Priority: 2},
	)
	ha, hb := newFakeHealth(0), newFakeHealth(0)
	ca, ra := h.pipe()
	cb, rb := h.pipe()
	if err := tu.AttachPath(idA, ca, PathOptions{Name: "a", Health: ha.get}); err != nil {
		t.Fatal(err)
	}
	if err := tu.AttachPath(idB, cb, PathOptions{Name: "b", Health: hb.get}); err != nil {
		t.Fatal(err)
	}
	src := netip.MustParseAddr("192.0.2.1")
	dst := netip.MustParseAddr("198.51.100.7")
	seq := uint16(0)
	send := func() []byte {
		seq++
		pkt := tuntest.Ping(src, dst, 1, seq, 56)
		dev.ToTunnel <- bytes.Clone(pkt)
		return pkt
	}
	expectOn := func(want, other interface{ Sent() uint64 }, what string) {
		t.Helper()
		w0, o0 := want.Sent(), other.Sent()
		send()
		eventually(t, what, func() bool { return want.Sent() == w0+1 })
		if other.Sent() != o0 {
			t.Fatalf("%s: a packet also went the other way", what)
		}
	}
	expectOn(ca, cb, "shared prefix to hub A")
	eventually(t, "A carrying, B not", func() bool { return log.is(map[key.Public]bool{idA: true, idB: false}) })
	if !tu.Carrying(idA) || tu.Carrying(idB) {
		t.Errorf("Carrying(A), Carrying(B) = %v, %v; want true, false", tu.Carrying(idA), tu.Carrying(idB))
	}
	// B's own prefix goes to B.
	before := cb.Sent()
	dev.ToTunnel <- tuntest.Ping(src, netip.MustParseAddr("192.0.2.70"), 1, 99, 56)
	eventually(t, "B's own prefix to B", func() bool { return cb.Sent() == before+1 })

	// A fails: the shared prefix moves to B at once.
	ha.usable.Store(false)
	tu.PathsChanged(idA)
	expectOn(cb, ca, "shared prefix to hub B after A failed")
	eventually(t, "B carrying, A not", func() bool { return log.is(map[key.Public]bool{idA: false, idB: true}) })
	if n := tu.HubFailovers(); n != 1 {
		t.Errorf("HubFailovers = %d, want 1", n)
	}
	if got := tu.Carriers(); len(got[idB]) != 1 || got[idB][0] != shared || len(got[idA]) != 0 {
		t.Errorf("Carriers = %v, want B: [%v]", got, shared)
	}
	// Replies from the shared prefix are accepted from both hubs.
	for _, r := range []*quictest.PipeConn{ra, rb} {
		reply := tuntest.Ping(dst, src, 0, seq, 56)
		if err := r.SendDatagram(reply); err != nil {
			t.Fatal(err)
		}
		expectPacket(t, dev.FromTunnel, reply)
	}

	// A is back: held down, so B keeps the traffic for the hold-down,
	// then A takes it back.
	ha.usable.Store(true)
	back := time.Now()
	tu.PathsChanged(idA)
	expectOn(cb, ca, "still hub B during A's hold-down")
	eventually(t, "A carrying again after the hold-down", func() bool { return tu.Carrying(idA) })
	if waited := time.Since(back); waited < hold {
		t.Errorf("A carried again after %v, want at least the hold-down %v", waited, hold)
	}
	expectOn(ca, cb, "shared prefix back to hub A")
	eventually(t, "A carrying, B not, again", func() bool { return log.is(map[key.Public]bool{idA: true, idB: false}) })
	if n := tu.HubFailovers(); n != 2 {
		t.Errorf("HubFailovers = %d, want 2", n)
	}

	// B fails, then A: the carrier stays A (nothing is known to work).
	hb.usable.Store(false)
	tu.PathsChanged(idB)
	ha.usable.Store(false)
	tu.PathsChanged(idA)
	expectOn(ca, cb, "shared prefix stays on A while nothing is usable")
}

// TestHubSelectionFirstUse: a hub that was never usable is used as soon as
// it is, without a hold-down; a site that starts with only its second hub
// reachable uses that one meanwhile.
func TestHubSelectionFirstUse(t *testing.T) {
	h := newHarness(t)
	shared := netip.MustParsePrefix("198.51.100.0/24")
	tu, dev := h.tunnel(Config{HoldDown: time.Hour}, 4,
		PeerConfig{ID: idA, Name: "hub-a", AllowedIPs: []netip.Prefix{shared}, Priority: 1},
		PeerConfig{ID: idB, Name: "hub-b", AllowedIPs: []netip.Prefix{shared}, Priority: 2},
	)
	cb, _ := h.pipe()
	if err := tu.AttachPath(idB, cb, PathOptions{Name: "b"}); err != nil {
		t.Fatal(err)
	}
	dev.ToTunnel <- tuntest.Ping(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7"), 1, 1, 56)
	eventually(t, "hub B carries while A has no connection", func() bool { return cb.Sent() == 1 })
	ca, _ := h.pipe()
	if err := tu.AttachPath(idA, ca, PathOptions{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	dev.ToTunnel <- tuntest.Ping(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.7"), 1, 2, 56)
	eventually(t, "hub A carries as soon as it connected", func() bool { return ca.Sent() == 1 })
}
