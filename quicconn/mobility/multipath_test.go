// SPDX-License-Identifier: MIT

package mobility

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
)

// pinnedEndpoint is a fakeEndpoint that also runs pinned dial loops: each
// loop is recorded as running until its context ends.
type pinnedEndpoint struct {
	fakeEndpoint
	mu      sync.Mutex
	running map[string]int // "peer uplink" -> loops running
	started int
}

func (e *pinnedEndpoint) DialLoopOn(ctx context.Context, uplink, addr string, peer key.Public, _ func(*quicconn.Conn)) {
	k := peer.String()[:4] + " " + uplink + " " + addr
	e.mu.Lock()
	e.running[k]++
	e.started++
	e.mu.Unlock()
	<-ctx.Done()
	e.mu.Lock()
	e.running[k]--
	if e.running[k] == 0 {
		delete(e.running, k)
	}
	e.mu.Unlock()
}

func (e *pinnedEndpoint) loops() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for k, n := range e.running {
		for range n {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func TestMultipathPeerDialsEveryUsableUplink(t *testing.T) {
	log := &opLog{}
	ep := &pinnedEndpoint{fakeEndpoint: fakeEndpoint{log: log, fail: map[string]bool{}}, running: map[string]int{}}
	p := New(Config{Endpoint: ep})
	t.Cleanup(p.Close)
	var peer key.Public
	peer[0] = 0xaa
	id := peer.String()[:4]
	wait := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Equal(ep.loops(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("dial loops = %q, want %q", ep.loops(), want)
			}
			time.Sleep(time.Millisecond)
		}
	}

	p.AddMultipathPeer(peer, "hub", "hub:4433", nil)
	time.Sleep(10 * time.Millisecond)
	wait() // nothing before the first view of the uplinks

	p.SetUplinks([]string{"wifi0", "cell0"})
	wait(id+" cell0 hub:4433", id+" wifi0 hub:4433")
	if r := p.Rank("cell0"); r != 1 {
		t.Errorf("Rank(cell0) = %d, want 1", r)
	}
	p.SetUplinks([]string{"cell0"}) // wifi0 lost: its connection closes
	wait(id + " cell0 hub:4433")
	if r := p.Rank("wifi0"); r != 1 {
		t.Errorf("Rank(wifi0) = %d after it was lost, want 1 (not usable)", r)
	}
	p.SetUplinks([]string{"wifi0", "cell0"}) // back: dialed again, cell0's loop untouched
	wait(id+" cell0 hub:4433", id+" wifi0 hub:4433")
	if ep.started != 3 {
		t.Errorf("%d dial loops started, want 3", ep.started)
	}
	p.RemoveMultipathPeer(peer)
	wait()
}
