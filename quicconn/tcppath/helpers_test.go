// SPDX-License-Identifier: MIT

package tcppath

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// identity is a test node's key pair.
type identity struct {
	priv ed25519.PrivateKey
	pub  key.Public
}

func newIdentity(t testing.TB) identity {
	t.Helper()
	k, err := key.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return identity{priv: k.Ed25519(), pub: k.Public()}
}

// keySet is an Authorize function over a set of keys, safe for
// concurrent use, that also records the keys it refused.
type keySet struct {
	mu      sync.Mutex
	allowed map[key.Public]bool
	refused []key.Public
}

func allow(keys ...key.Public) *keySet {
	s := &keySet{allowed: make(map[key.Public]bool)}
	for _, k := range keys {
		s.allowed[k] = true
	}
	return s
}

func (s *keySet) authorize(k key.Public) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.allowed[k]
}

func (s *keySet) refuse(k key.Public) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refused = append(s.refused, k)
}

func (s *keySet) refusedKeys() []key.Public {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]key.Public(nil), s.refused...)
}

// hub is a Listener on loopback with its identity and key set.
type hub struct {
	*Listener
	id   identity
	keys *keySet
}

// newHub starts a Listener on 127.0.0.1 that admits the keys in clients;
// cfg's PrivateKey, Authorize and Refused are filled in. It is closed at
// the end of the test.
func newHub(t testing.TB, cfg ServerConfig, clients ...key.Public) *hub {
	t.Helper()
	h := &hub{id: newIdentity(t), keys: allow(clients...)}
	cfg.PrivateKey = h.id.priv
	cfg.Authorize = h.keys.authorize
	cfg.Refused = h.keys.refuse
	ln, err := Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h.Listener = ln
	return h
}

// dial connects site to h and closes the connection at the end of the
// test.
func (h *hub) dial(t testing.TB, site identity) *PacketConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, h.LocalAddr().String(), ClientConfig{PrivateKey: site.priv, PeerKey: h.id.pub})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readFrom reads one packet from pc within d.
func readFrom(t testing.TB, pc net.PacketConn, d time.Duration) ([]byte, net.Addr) {
	t.Helper()
	pc.SetReadDeadline(time.Now().Add(d))
	defer pc.SetReadDeadline(time.Time{})
	b := make([]byte, 2000)
	n, from, err := pc.ReadFrom(b)
	if err != nil {
		t.Fatalf("ReadFrom: %v", err)
	}
	return b[:n], from
}

// writeTo sends p to addr on pc.
func writeTo(t testing.TB, pc net.PacketConn, p []byte, addr net.Addr) {
	t.Helper()
	if n, err := pc.WriteTo(p, addr); err != nil || n != len(p) {
		t.Fatalf("WriteTo(%d bytes, %v) = %d, %v", len(p), addr, n, err)
	}
}

// register sends a packet from c to h and returns the Addr h sees it
// from: the hub can only write to a client it has heard from.
func (h *hub) register(t testing.TB, c *PacketConn) net.Addr {
	t.Helper()
	p := []byte{0xc0, byte(len(t.Name()))}
	writeTo(t, c, p, c.RemoteAddr())
	got, from := readFrom(t, h, 5*time.Second)
	if !bytes.Equal(got, p) {
		t.Fatalf("hub read % x, want % x", got, p)
	}
	return from
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkGoroutines fails the test if, once it and its cleanups are done,
// more goroutines run than before it started (wireguard-go's
// goroutineLeakCheck). Call it first, so that its cleanup runs last.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// isTimeout reports whether err is a timeout that net.PacketConn users
// (quic-go's Transport among them) treat as temporary.
func isTimeout(err error) bool {
	var ne interface {
		net.Error
		Temporary() bool
	}
	return errors.As(err, &ne) && ne.Timeout() && ne.Temporary()
}

func mustParseURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
