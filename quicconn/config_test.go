// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

func TestInitialPacketSizeFor(t *testing.T) {
	for _, tt := range []struct{ mtu, want int }{
		{576, 1200},  // QUIC's minimum
		{1150, 1200}, // 1150 + 37 + 13
		{1180, 1230}, // fits a 1280-byte IPv6 path (1232)
		{1200, 1250}, // fits a 1280-byte IPv4 path (1252)
		{1299, 1349},
		{1300, 1350}, // the default MTU fits the default packet size
		{1313, 1350}, // exactly the default limit
		{1314, 1351},
		{1400, 1437},
		{1415, 1452}, // the largest that fits
		{1500, 1452}, // clamped: larger inner packets get ICMP too big
	} {
		if got := InitialPacketSizeFor(tt.mtu); got != tt.want {
			t.Errorf("InitialPacketSizeFor(%d) = %d, want %d", tt.mtu, got, tt.want)
		}
	}
}

// TestInitialPacketSizeSetsFirstLimit: with InitialPacketSize 1452 the very
// first datagram of a connection may carry 1415 bytes, with no wait for
// path MTU discovery.
func TestInitialPacketSizeSetsFirstLimit(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) {
		cli.InitialPacketSize, srv.InitialPacketSize = 1452, 1452
	})
	c, s := p.connect(t)
	var tl *datagramTooLargeError
	if err := c.SendDatagram(make([]byte, 1416)); !errors.As(err, &tl) || tl.Limit != 1452-DatagramOverhead {
		t.Fatalf("SendDatagram(1416 bytes) = %v, want *datagramTooLargeError with Limit %d", err, 1452-DatagramOverhead)
	}
	exchange(t, c, s, make([]byte, 1452-DatagramOverhead))
	exchange(t, s, c, make([]byte, 1452-DatagramOverhead))
}

// TestReleaseDatagram: a released payload buffer is reused by the next
// received datagram (one allocation fewer per datagram), and the contents
// of every datagram stay intact.
func TestReleaseDatagram(t *testing.T) {
	perDatagram := func(release bool) float64 {
		p := newTestPair(t, nil)
		client, server := p.connect(t)
		defer client.Close("test done")
		payload := make([]byte, 1200)
		lost, seq := 0, byte(0)
		n := testing.AllocsPerRun(1000, func() {
			seq++
			payload[0], payload[len(payload)-1] = seq, seq
			if err := client.SendDatagram(payload); err != nil {
				t.Fatalf("SendDatagram: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			b, err := server.ReceiveDatagram(ctx)
			if err != nil {
				lost++
				return
			}
			if len(b) != len(payload) || b[0] != seq || b[len(b)-1] != seq {
				t.Fatalf("datagram %d: got %d bytes starting %d, ending %d", seq, len(b), b[0], b[len(b)-1])
			}
			if release {
				server.ReleaseDatagram(b)
			}
		})
		if lost > 10 {
			t.Fatalf("release=%v: %d of 1000 datagrams lost on loopback", release, lost)
		}
		return n
	}
	kept, released := perDatagram(false), perDatagram(true)
	t.Logf("allocations per datagram: %.1f kept, %.1f released", kept, released)
	if raceEnabled {
		t.Log("not checking the allocation count: sync.Pool drops items at random under the race detector")
		return
	}
	if kept-released < 0.9 {
		t.Errorf("releasing saves %.1f allocations per datagram (%.1f kept, %.1f released), want >= 1", kept-released, kept, released)
	}
}

// TestDatagramHandler: with a handler set, every datagram goes to it in
// order, intact, instead of ReceiveDatagram; nil restores the queue; the
// end of the connection still ends ReceiveDatagram.
func TestDatagramHandler(t *testing.T) {
	p := newTestPair(t, nil)
	client, server := p.connect(t)
	got := make(chan []byte, 16)
	server.SetDatagramHandler(func(b []byte) {
		got <- append([]byte(nil), b...)
		server.ReleaseDatagram(b)
	})
	for i := range 10 {
		payload := []byte{byte(i), 1, 2, 3}
		if err := client.SendDatagram(payload); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-got:
			if string(b) != string(payload) {
				t.Fatalf("handler got %x, want %x", b, payload)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("datagram %d did not reach the handler", i)
		}
	}
	server.SetDatagramHandler(nil)
	exchange(t, client, server, []byte("queued again"))
	if len(got) != 0 {
		t.Errorf("handler got %d datagrams after it was removed", len(got))
	}
	server.SetDatagramHandler(func(b []byte) {})
	done := make(chan error, 1)
	go func() {
		_, err := server.ReceiveDatagram(context.Background())
		done <- err
	}()
	client.Close("test over")
	select {
	case err := <-done:
		if err == nil {
			t.Error("ReceiveDatagram returned a datagram, want the connection's end")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReceiveDatagram did not return after the peer closed")
	}
}

// TestKeepAliveFor: a peer's own keep-alive overrides the Endpoint's for
// the connections dialed to it; 0 keeps the Endpoint's; accepted
// connections have none of their own.
func TestKeepAliveFor(t *testing.T) {
	a, b := key.Public{1}, key.Public{2}
	e := &Endpoint{cfg: Config{KeepAlive: 15 * time.Second, DisableTracer: true,
		KeepAliveFor: func(p key.Public) time.Duration {
			if p == a {
				return 3 * time.Second
			}
			return 0
		}}}
	if got := e.quicConfig(&a).KeepAlivePeriod; got != 3*time.Second {
		t.Errorf("peer with its own keepalive: %v, want 3s", got)
	}
	if got := e.quicConfig(&b).KeepAlivePeriod; got != 15*time.Second {
		t.Errorf("peer without: %v, want the endpoint's 15s", got)
	}
	if got := e.quicConfig(nil).KeepAlivePeriod; got != 0 {
		t.Errorf("accepted connections: %v, want 0", got)
	}
}
