// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
	"github.com/godwit-vpn/godwit/tun/tuntest"
	"github.com/godwit-vpn/godwit/tunnel"
)

// attachDaemon returns a daemon with only what attach needs: a tunnel on an
// in-memory TUN with one peer, the one srv belongs to. The tunnel is not
// running yet.
func attachDaemon(t *testing.T, srv *quicconn.Conn) (*daemon, *tunnel.Tunnel, *tuntest.Channel) {
	t.Helper()
	dev := tuntest.NewChannel(1)
	tn, err := tunnel.New(dev, tunnel.Config{MTU: 1300, Addresses: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24")}})
	if err != nil {
		t.Fatal(err)
	}
	id := srv.PeerKey()
	allowed := []netip.Prefix{netip.MustParsePrefix("198.19.0.2/32")}
	if err := tn.SetPeers([]tunnel.PeerConfig{{ID: id, Name: "site", AllowedIPs: allowed}}); err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		log:     slog.New(slog.DiscardHandler),
		tn:      tn,
		changed: make(chan struct{}, 1),
		peers: map[key.Public]*peerState{
			id: {cfg: config.Peer{Name: "site", PublicKey: id, AllowedIPs: allowed}},
		},
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	t.Cleanup(func() {
		d.cancel()
		_ = srv.Close("test done")
		d.wg.Wait()
		_ = dev.Close()
	})
	return d, tn, dev
}

// runTunnel runs tn until the test ends.
func runTunnel(t *testing.T, tn *tunnel.Tunnel, dev *tuntest.Channel) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tn.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		_ = dev.Close()
		<-done
	})
}

// waitConnected waits up to 10 s until status reports want connected peers.
func waitConnected(t *testing.T, d *daemon, want int) {
	t.Helper()
	var (
		line string
		got  int
	)
	if !labtest.Eventually(10*time.Second, func() bool { line, got = d.status(); return got == want }) {
		t.Fatalf("status = %q (%d connected), want %d connected", line, got, want)
	}
}

// TestAttachLifecycle attaches a connection: the daemon counts it, the
// tunnel sends over it, and it is forgotten once it dies.
func TestAttachLifecycle(t *testing.T) {
	cli, srv := loopbackPair(t)
	d, tn, dev := attachDaemon(t, srv)
	runTunnel(t, tn, dev)

	d.attach(srv)
	if _, got := d.status(); got != 1 {
		t.Fatalf("connected after attach = %d, want 1", got)
	}
	pkt := tuntest.Ping(netip.MustParseAddr("198.19.0.1"), netip.MustParseAddr("198.19.0.2"), 1, 1, 32)
	dev.ToTunnel <- bytes.Clone(pkt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := cli.ReceiveDatagram(ctx)
	if err != nil {
		t.Fatalf("peer received nothing through the attached conn: %v", err)
	}
	if !bytes.Equal(got, pkt) {
		t.Fatalf("peer received %x, want %x", got, pkt)
	}

	_ = cli.Close("test: peer leaves")
	waitConnected(t, d, 0)
}

// TestAttachTunnelClosed attaches a connection after the tunnel stopped:
// the connection is closed and the peer is not counted as connected (it
// used to stay attached in the daemon's view, pointing at a closed conn
// that nothing would ever clear).
func TestAttachTunnelClosed(t *testing.T) {
	_, srv := loopbackPair(t)
	d, tn, dev := attachDaemon(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- tn.Run(ctx) }()
	_ = dev.Close()
	<-done

	d.attach(srv)
	select {
	case <-srv.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("attach to a stopped tunnel did not close the conn")
	}
	if line, got := d.status(); got != 0 {
		t.Errorf("status after a failed attach = %q, want 0 connected", line)
	}
	if names := unconnectedPeers(d); len(names) != 1 {
		t.Errorf("unconnected peers after a failed attach = %q, want [site]", names)
	}
}

// TestStopBounded: a teardown that hangs (here a daemon goroutine that
// holds the daemon lock for good, as the stuck site of the mobility
// benchmark did) must not keep the process from exiting after SIGTERM:
// stop gives up after stopTimeout and reports exit status 1.
func TestStopBounded(t *testing.T) {
	d := &daemon{log: slog.New(slog.DiscardHandler), cfg: &config.Config{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	locked := make(chan struct{})
	d.wg.Go(func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		close(locked)
		<-release // ignores d.ctx: stuck
	})
	<-locked
	start := time.Now()
	err := d.stop()
	took := time.Since(start)
	if ee, ok := err.(exitError); !ok || ee.code != 1 {
		t.Errorf("stop of a stuck daemon = %v, want exit status 1", err)
	}
	if took < stopTimeout || took > stopTimeout+time.Second {
		t.Errorf("stop of a stuck daemon took %v, want about %v", took, stopTimeout)
	}
}

// loopbackPair returns two connected Conns over real QUIC on 127.0.0.1:
// two Endpoints with generated keys, pinned to each other, the client
// named "client" and the server "server". Everything is closed by
// t.Cleanup. It calls t.Fatal if the pair cannot be set up within 10 s.
func loopbackPair(t testing.TB) (client, server *quicconn.Conn) {
	t.Helper()
	cpub, cpriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	spub, spriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := quicconn.NewEndpoint(quicconn.Config{
		PrivateKey: spriv,
		NodeName:   "server",
		Listen:     "127.0.0.1:0",
		Authorize:  func(k key.Public) bool { return k == key.Public(cpub) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	// Listen on loopback too (Authorize nil accepts nobody), so the test
	// socket is not bound to the wildcard address.
	cli, err := quicconn.NewEndpoint(quicconn.Config{PrivateKey: cpriv, NodeName: "client", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   *quicconn.Conn
		err error
	}
	acc := make(chan result, 1)
	go func() {
		c, err := srv.Accept(ctx)
		acc <- result{c, err}
	}()
	client, err = cli.Dial(ctx, srv.LocalAddr().String(), key.Public(spub))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	return client, r.c
}

// TestInterfaceChangedListenTCP checks that a reload cannot change
// listen_tcp (the listener is made at start), and says so.
func TestInterfaceChangedListenTCP(t *testing.T) {
	a := config.Interface{Listen: ":4433"}
	b := a
	b.ListenTCP = ":443"
	err := interfaceChanged(&a, &b)
	if !errors.Is(err, errReloadInterface) || !strings.Contains(err.Error(), "listen_tcp changed") {
		t.Errorf("interfaceChanged(listen_tcp added) = %v, want errReloadInterface naming listen_tcp", err)
	}
	if err := interfaceChanged(&b, &b); err != nil {
		t.Errorf("interfaceChanged(same) = %v", err)
	}
}
