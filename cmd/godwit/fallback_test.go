// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
	"github.com/godwit-vpn/godwit/tun/tuntest"
	"github.com/godwit-vpn/godwit/tunnel"
)

// udpGate is a UDP relay on loopback in front of the hub's UDP port that
// forwards both ways while open and drops everything while closed: UDP
// blocked, silently.
type udpGate struct {
	open atomic.Bool
	pc   net.PacketConn
}

func newUDPGate(t *testing.T, hub net.Addr) *udpGate {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &udpGate{pc: pc}
	var (
		mu       sync.Mutex
		upstream = map[string]net.PacketConn{} // by client address
		wg       sync.WaitGroup
	)
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if !g.open.Load() {
				continue
			}
			mu.Lock()
			up := upstream[from.String()]
			if up == nil {
				if up, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
					mu.Unlock()
					continue
				}
				upstream[from.String()] = up
				wg.Go(func() {
					b := make([]byte, 2048)
					for {
						n, _, err := up.ReadFrom(b)
						if err != nil {
							return
						}
						if g.open.Load() {
							_, _ = pc.WriteTo(b[:n], from)
						}
					}
				})
			}
			mu.Unlock()
			_, _ = up.WriteTo(buf[:n], hub)
		}
	})
	t.Cleanup(func() {
		pc.Close()
		mu.Lock()
		for _, up := range upstream {
			up.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return g
}

// fallbackSite is a site daemon with only what the fallback needs: an
// endpoint, a running tunnel on an in-memory TUN, and the hub as its one
// peer with endpoint (through gate) and endpoint_tcp.
func fallbackSite(t *testing.T) (d *daemon, hubEP *quicconn.Endpoint, gate *udpGate, id key.Public) {
	t.Helper()
	hpub, hpriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	spub, spriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	hubEP, err = quicconn.NewEndpoint(quicconn.Config{PrivateKey: hpriv, Listen: "127.0.0.1:0", ListenTCP: "127.0.0.1:0",
		Multipath: true, Authorize: func(k key.Public) bool { return k == key.Public(spub) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hubEP.Close() })
	go func() { // the hub accepts and keeps its conns until it closes
		for {
			if _, err := hubEP.Accept(context.Background()); err != nil {
				return
			}
		}
	}()
	gate = newUDPGate(t, hubEP.LocalAddr())

	id = key.Public(hpub)
	ep, err := quicconn.NewEndpoint(quicconn.Config{PrivateKey: spriv, Listen: "127.0.0.1:0", Multipath: true,
		RedialMax: 500 * time.Millisecond, HandshakeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	dev := tuntest.NewChannel(1)
	tn, err := tunnel.New(dev, tunnel.Config{MTU: 1300, Addresses: []netip.Prefix{netip.MustParsePrefix("198.19.0.2/24")}})
	if err != nil {
		t.Fatal(err)
	}
	allowed := []netip.Prefix{netip.MustParsePrefix("198.19.0.1/32")}
	if err := tn.SetPeers([]tunnel.PeerConfig{{ID: id, Name: "hub", AllowedIPs: allowed}}); err != nil {
		t.Fatal(err)
	}
	runTunnel(t, tn, dev)
	pc := config.Peer{Name: "hub", PublicKey: id, AllowedIPs: allowed,
		Endpoint: gate.pc.LocalAddr().String(), EndpointTCP: hubEP.TCPListenAddr().String()}
	d = &daemon{
		log:     slog.New(slog.DiscardHandler),
		tn:      tn,
		ep:      ep,
		cfg:     &config.Config{Peers: []config.Peer{pc}},
		changed: make(chan struct{}, 1),
		peers:   map[key.Public]*peerState{id: {cfg: pc}},
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() {
		d.cancel()
		_ = ep.Close()
		d.wg.Wait()
	})
	return d, hubEP, gate, id
}

// pathRoles lists the site's paths to the hub as "transport:role", best
// first, and the fallback's state.
func pathRoles(d *daemon, id key.Public) string {
	var out []string
	for _, ps := range d.tn.PathStats(id) {
		out = append(out, ps.Conn.(*quicconn.Conn).Transport()+":"+ps.Role)
	}
	d.mu.Lock()
	fb := d.peers[id].fallback
	d.mu.Unlock()
	st := fb.Status()
	return fmt.Sprintf("%s; on_tcp=%v %q", strings.Join(out, " "), st.OnTCP, st.Reason)
}

// TestFallbackLifecycle runs the site's fallback against a real hub
// endpoint on loopback: UDP blocked from the start brings up a TCP path
// that carries; opening UDP brings a UDP connection that takes the
// traffic, and then the TCP path closes; closing UDP again (silently)
// brings the TCP path back.
func TestFallbackLifecycle(t *testing.T) {
	d, _, gate, id := fallbackSite(t)
	d.mu.Lock()
	d.startDialLocked(d.peers[id])
	d.mu.Unlock()

	wait := func(within time.Duration, what, want string) {
		t.Helper()
		var got string
		if !labtest.Eventually(within, func() bool { got = pathRoles(d, id); return strings.HasPrefix(got, want) }) {
			t.Fatalf("no %s within %v: %s, want %s...", what, within, got, want)
		}
		t.Logf("%s: %s", what, got)
	}
	start := time.Now()
	wait(5*time.Second, "TCP path carrying", `tcp:carrying; on_tcp=true "udp blocked: no answer in 1s; tcp"`)
	if took := time.Since(start); took < 900*time.Millisecond {
		t.Errorf("TCP path up %v after the start, before the first wait of 1 s", took)
	}

	gate.open.Store(true)
	wait(15*time.Second, "UDP carrying beside the TCP path", "udp:carrying tcp:warm")
	wait(10*time.Second, "TCP path closed", `udp:carrying; on_tcp=false "udp back: usable for 3s; tcp closed"`)

	gate.open.Store(false)
	wait(10*time.Second, "TCP path back", "tcp:carrying")
	if got := pathRoles(d, id); !strings.Contains(got, `"udp down: every udp path silent; tcp"`) && !strings.Contains(got, `"udp down: no udp connection; tcp"`) {
		t.Errorf("reason after UDP went silent: %s", got)
	}
	if f, r := d.tcpFallbacks.Load(), d.udpReturns.Load(); f != 2 || r != 1 {
		t.Errorf("counted %d fallbacks and %d returns, want 2 and 1", f, r)
	}
}
