// SPDX-License-Identifier: MIT

package quicconn

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/ctlmsg"

	"github.com/quic-go/quic-go"
)

type testKey struct {
	pub  key.Public
	priv ed25519.PrivateKey
}

func newKey(t testing.TB) testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{key.Public(pub), priv}
}

func newEndpoint(t testing.TB, cfg Config) *Endpoint {
	t.Helper()
	e, err := NewEndpoint(cfg)
	if err != nil {
		t.Fatalf("NewEndpoint: %v", err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// background runs f on its own goroutine with a context that stop cancels;
// stop returns a channel that is closed when f has returned. The test's
// cleanup stops f and waits for it.
func background(t testing.TB, f func(ctx context.Context)) (stop func() <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ctx)
	}()
	stop = func() <-chan struct{} {
		cancel()
		return done
	}
	t.Cleanup(func() { <-stop() })
	return stop
}

// testPair is a server endpoint accepting the client key, and a client
// endpoint; mutate may adjust both configs first.
type testPair struct {
	ck, sk testKey
	cli    *Endpoint
	srv    *Endpoint
	allow  atomic.Bool // the server's Authorize answer for ck
}

func newTestPair(t testing.TB, mutate func(cli, srv *Config)) *testPair {
	t.Helper()
	p := &testPair{ck: newKey(t), sk: newKey(t)}
	p.allow.Store(true)
	scfg := Config{
		PrivateKey: p.sk.priv,
		NodeName:   "hub",
		Listen:     "127.0.0.1:0",
		Authorize:  func(k key.Public) bool { return k == p.ck.pub && p.allow.Load() },
	}
	ccfg := Config{PrivateKey: p.ck.priv, NodeName: "boat-1", Listen: "127.0.0.1:0"}
	if mutate != nil {
		mutate(&ccfg, &scfg)
	}
	p.srv = newEndpoint(t, scfg)
	p.cli = newEndpoint(t, ccfg)
	return p
}

// connect dials the server and accepts on it.
func (p *testPair) connect(t testing.TB) (client, server *Conn) {
	t.Helper()
	return p.connectVia(t, p.srv.LocalAddr().String())
}

// connectVia dials the server at addr, its own or that of a relay in front
// of it, and accepts on it.
func (p *testPair) connectVia(t testing.TB, addr string) (client, server *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acc := make(chan *Conn, 1)
	go func() {
		c, _ := p.srv.Accept(ctx)
		acc <- c
	}()
	client, err := p.cli.Dial(ctx, addr, p.sk.pub)
	if err != nil {
		t.Fatalf("Dial %s: %v", addr, err)
	}
	server = <-acc
	if server == nil {
		t.Fatalf("Accept of a dial to %s returned no conn", addr)
	}
	return client, server
}

// dialLoop runs the client's DialLoop to the server, which sends every conn
// it brings up to ups. stop cancels the loop and returns a channel closed
// when it has returned; the loop is stopped when the test ends at the latest.
func (p *testPair) dialLoop(t testing.TB) (ups <-chan *Conn, stop func() <-chan struct{}) {
	up := make(chan *Conn, 4)
	stop = background(t, func(ctx context.Context) {
		p.cli.DialLoop(ctx, p.srv.LocalAddr().String(), p.sk.pub, func(c *Conn) { up <- c })
	})
	return up, stop
}

// expectNoAccept fails if the server's Accept returns a conn within d.
func (p *testPair) expectNoAccept(t testing.TB, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if c, err := p.srv.Accept(ctx); err == nil {
		t.Errorf("Accept returned a conn from %s (%q), want none", keyString(c.PeerKey()), c.PeerName())
	}
}

func waitDone(t testing.TB, c *Conn, d time.Duration) {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(d):
		t.Fatalf("conn still alive after %v", d)
	}
}

func exchange(t testing.TB, from, to *Conn, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Datagrams are unreliable: resend until one arrives.
	got := make(chan []byte, 1)
	go func() {
		b, err := to.ReceiveDatagram(ctx)
		if err == nil {
			got <- b
		}
		close(got)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := from.SendDatagram(payload); err != nil {
			t.Fatalf("SendDatagram: %v", err)
		}
		select {
		case b, ok := <-got:
			if !ok {
				t.Fatalf("ReceiveDatagram: no datagram: %v", ctx.Err())
			}
			if !bytes.Equal(b, payload) {
				t.Fatalf("ReceiveDatagram() = %x, want %x", b, payload)
			}
			return
		case <-tick.C:
		}
	}
}

func TestDatagramsBothWays(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	for _, qc := range []*quic.Conn{c.qc, s.qc} {
		if st := qc.ConnectionState().SupportsDatagrams; !st.Local || !st.Remote {
			t.Errorf("SupportsDatagrams = %+v, want local and remote", st)
		}
	}
	exchange(t, c, s, []byte{0x45, 0, 0, 20, 1})
	exchange(t, s, c, []byte{0x60, 0, 0, 0, 2})

	// The slice passed to SendDatagram may be reused at once.
	buf := []byte{0x45, 7, 7, 7}
	exchange(t, c, s, buf)
	buf[1] = 8
	exchange(t, c, s, buf)
}

func TestHelloAndKeys(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	if got, want := c.PeerName(), "hub"; got != want {
		t.Errorf("client PeerName() = %q, want %q", got, want)
	}
	if got, want := s.PeerName(), "boat-1"; got != want {
		t.Errorf("server PeerName() = %q, want %q", got, want)
	}
	if got := c.PeerKey(); got != p.sk.pub {
		t.Errorf("client PeerKey() = %s, want %s", keyString(got), keyString(p.sk.pub))
	}
	if got := s.PeerKey(); got != p.ck.pub {
		t.Errorf("server PeerKey() = %s, want %s", keyString(got), keyString(p.ck.pub))
	}
	if got, want := c.RemoteAddr().String(), p.srv.LocalAddr().String(); got != want {
		t.Errorf("client RemoteAddr() = %s, want %s", got, want)
	}
	if got, want := s.RemoteAddr().String(), c.LocalAddr().String(); got != want {
		t.Errorf("server RemoteAddr() = %s, want %s", got, want)
	}
	if st := c.Stats(); st.HandshakeDone.IsZero() || st.SmoothedRTT <= 0 {
		t.Errorf("client Stats() = %+v, want HandshakeDone and SmoothedRTT set", st)
	}
	if got := p.srv.Stats().Conns; got != 1 {
		t.Errorf("server endpoint Stats().Conns = %d, want 1", got)
	}
}

func TestDatagramTooLarge(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	err := c.SendDatagram(make([]byte, 5000))
	var tl *datagramTooLargeError
	if !errors.As(err, &tl) {
		t.Fatalf("SendDatagram(5000 bytes) = %v, want *datagramTooLargeError", err)
	}
	// 1350-byte initial packets give 1313 bytes; DPLPMTUD may raise it to
	// at most 1452 - 37.
	if tl.Limit < initialPacketSize-37 || tl.Limit > 1452-37 {
		t.Errorf("Limit = %d, want in [%d, %d]", tl.Limit, initialPacketSize-37, 1452-37)
	}
	var iface interface{ DatagramLimit() int }
	if !errors.As(err, &iface) || iface.DatagramLimit() != tl.Limit {
		t.Errorf("error does not expose DatagramLimit() = %d", tl.Limit)
	}
	if got := c.Stats().DatagramLimit; got < tl.Limit {
		t.Errorf("Stats().DatagramLimit = %d, want >= %d", got, tl.Limit)
	}
	full := bytes.Repeat([]byte{0x45}, tl.Limit)
	exchange(t, c, s, full)
}

// BenchmarkConnStats measures Conn.Stats, which the daemon calls for every
// peer on each status request and metrics scrape.
func BenchmarkConnStats(b *testing.B) {
	p := newTestPair(b, nil)
	c, _ := p.connect(b)
	b.ReportAllocs()
	for b.Loop() {
		if c.Stats().DatagramLimit == 0 {
			b.Fatal("Stats().DatagramLimit = 0")
		}
	}
}

// expectDialFails dials the server expecting the key srvKey: the dial must
// fail with an error containing want, and the server accept nothing within
// d.
func (p *testPair) expectDialFails(t testing.TB, srvKey key.Public, want string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.cli.Dial(ctx, p.srv.LocalAddr().String(), srvKey)
	if err == nil {
		c.Close("test")
		t.Fatalf("Dial succeeded, want an error containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Dial error = %v, want one containing %q", err, want)
	}
	p.expectNoAccept(t, d)
}

func TestWrongServerKeyRefused(t *testing.T) {
	p := newTestPair(t, nil)
	p.expectDialFails(t, newKey(t).pub, "server key mismatch", 500*time.Millisecond)
}

func TestUnauthorizedClientRefused(t *testing.T) {
	tests := []struct {
		name      string
		authorize func(key.Public) bool
	}{
		{"nil authorize", nil},
		{"other key", func(key.Public) bool { return false }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newTestPair(t, func(_, srv *Config) { srv.Authorize = tt.authorize })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			acc := make(chan *Conn, 1)
			actx, acancel := context.WithCancel(ctx)
			defer acancel()
			go func() {
				c, _ := p.srv.Accept(actx)
				acc <- c
			}()
			c, err := p.cli.Dial(ctx, p.srv.LocalAddr().String(), p.sk.pub)
			if err == nil {
				c.Close("test")
				t.Fatal("Dial by an unauthorized client succeeded")
			}
			select {
			case s := <-acc:
				t.Fatalf("Accept returned %v for an unauthorized client", s)
			case <-time.After(300 * time.Millisecond):
			}
		})
	}
}

func TestRefusedKeyLoggedOncePerMinute(t *testing.T) {
	h := &logRecorder{}
	e := newEndpoint(t, Config{PrivateKey: newKey(t).priv, Logger: slog.New(h)})
	a, b := newKey(t).pub, newKey(t).pub
	for _, k := range []key.Public{a, a, b, a, b} {
		e.logRefused(k)
	}
	// A 0-RTT refusal for the same key is limited on its own.
	e.countRefused(a, refusedReplay)
	const msg = "quicconn: refused a peer whose key is not configured"
	if got, want := h.count(msg), 2; got != want {
		t.Errorf("%q logged %d times for keys a, a, b, a, b, want %d", msg, got, want)
	}
	if got, want := h.count("quicconn: refused 0-RTT data"), 1; got != want {
		t.Errorf("0-RTT refusal logged %d times after the key refusals, want %d", got, want)
	}
}

func TestRemovedPeerCannotComeBack(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	if c.Stats().Resumed {
		t.Error("first connection resumed a session")
	}
	c.Close("bye")
	waitDone(t, s, 5*time.Second)

	// With a session ticket the second handshake resumes, and is still
	// checked.
	c, s = p.connect(t)
	// A 0-RTT Dial returns before the handshake: wait for the hello.
	if !waitFor(5*time.Second, func() bool { return c.PeerName() != "" }) || !c.Stats().Resumed {
		t.Error("second connection did not resume; the refusal below would not test resumption")
	}
	c.Close("bye")
	waitDone(t, s, 5*time.Second)

	p.allow.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The client holds a 0-RTT ticket, so Dial may return before the
	// server refuses it; then the conn must die, and the server must hand
	// out nothing (not even for the 0-RTT datagram sent at once).
	if c, err := p.cli.Dial(ctx, p.srv.LocalAddr().String(), p.sk.pub); err == nil {
		_ = c.SendDatagram([]byte{0x45, 9})
		waitDone(t, c, 10*time.Second)
		if c.Err() == nil || c.PeerName() != "" {
			t.Fatalf("Dial by a removed peer: conn ended with %v after hello from %q, want a refused handshake", c.Err(), c.PeerName())
		}
	}
	p.expectNoAccept(t, 300*time.Millisecond)
}

func TestVersionMismatch(t *testing.T) {
	p := newTestPair(t, nil)
	p.cli.version = ctlmsg.Version + 1
	p.expectDialFails(t, p.sk.pub, "incompatible protocol version", 300*time.Millisecond)
}

func TestHeartbeatRTT(t *testing.T) {
	p := newTestPair(t, func(cli, srv *Config) {
		cli.Heartbeat = 50 * time.Millisecond
		srv.Heartbeat = 50 * time.Millisecond
	})
	c, s := p.connect(t)
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().HeartbeatRTT == 0 || s.Stats().HeartbeatRTT == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("HeartbeatRTT client %v server %v after 5 s, want both > 0", c.Stats().HeartbeatRTT, s.Stats().HeartbeatRTT)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if rtt := c.Stats().HeartbeatRTT; rtt > time.Second {
		t.Errorf("loopback HeartbeatRTT = %v, want < 1 s", rtt)
	}
}

func TestGoodbyeReasonReachesPeer(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	if err := c.Close("maintenance window"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitDone(t, s, 5*time.Second)
	var ce *closeError
	if err := s.Err(); !errors.As(err, &ce) || !ce.Remote || ce.Reason != "maintenance window" {
		t.Errorf("server Err() = %v, want remote close with reason %q", err, "maintenance window")
	}
	if err := c.Err(); !errors.As(err, &ce) || ce.Remote || ce.Reason != "maintenance window" {
		t.Errorf("client Err() = %v, want local close with reason %q", err, "maintenance window")
	}
	if got := p.srv.Stats().Conns; got != 0 {
		t.Errorf("server endpoint Stats().Conns = %d after close, want 0", got)
	}
}

// udpProxy relays UDP between one client and a server on loopback and can
// drop everything, or a random share of the packets in both directions.
type udpProxy struct {
	pc     *net.UDPConn
	server *net.UDPAddr
	drop   atomic.Bool
	loss   atomic.Uint32 // percent of packets dropped at random
}

// dialViaProxy connects p's client to p's server through a new udpProxy
// and returns the proxy and both ends.
func dialViaProxy(t testing.TB, p *testPair) (proxy *udpProxy, c, s *Conn) {
	t.Helper()
	proxy = newUDPProxy(t, p.srv.LocalAddr())
	c, s = p.connectVia(t, proxy.pc.LocalAddr().String())
	return proxy, c, s
}

func newUDPProxy(t testing.TB, server net.Addr) *udpProxy {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{pc: pc, server: server.(*net.UDPAddr)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var client *net.UDPAddr
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if p.drop.Load() {
				continue
			}
			if l := p.loss.Load(); l > 0 && rand.Uint32N(100) < l {
				continue
			}
			to := p.server
			if from.AddrPort() == p.server.AddrPort() {
				if client == nil {
					continue
				}
				to = client
			} else {
				client = from
			}
			pc.WriteToUDP(buf[:n], to)
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return p
}

func TestDeadPeerDetectedByHeartbeat(t *testing.T) {
	const idle = 30 * time.Second
	p := newTestPair(t, func(cli, srv *Config) {
		for _, c := range []*Config{cli, srv} {
			c.Heartbeat = 100 * time.Millisecond
			c.IdleTimeout = idle
		}
	})
	proxy, c, s := dialViaProxy(t, p)
	time.Sleep(300 * time.Millisecond) // a few heartbeats pass
	if c.Err() != nil || s.Err() != nil {
		t.Fatalf("conn died while the path worked: client %v, server %v", c.Err(), s.Err())
	}
	proxy.drop.Store(true)
	start := time.Now()
	for _, conn := range []*Conn{c, s} {
		waitDone(t, conn, 10*time.Second)
		var ce *closeError
		if err := conn.Err(); !errors.As(err, &ce) || ce.Code != ctlmsg.CodeHeartbeatTimeout || ce.Reason != "heartbeat timeout" {
			t.Errorf("Err() = %v, want local close %q", err, "heartbeat timeout")
		}
	}
	if d := time.Since(start); d > idle/3 {
		t.Errorf("dead peer detected after %v, want well before the %v idle timeout", d, idle)
	}
}

// writeRaw puts raw bytes on c's control stream.
func writeRaw(t testing.TB, c *Conn, b []byte) {
	t.Helper()
	c.ctl.mu.Lock()
	defer c.ctl.mu.Unlock()
	if err := c.ctl.st.TryWriteAll(b); err != nil {
		t.Fatalf("raw control write: %v", err)
	}
}

func TestControlStreamErrors(t *testing.T) {
	tests := []struct {
		name     string
		raw      []byte
		wantCode uint64 // 0: the conn must survive
	}{
		{"malformed heartbeat", []byte{0x02, 17, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9}, ctlmsg.CodeProtocolError},
		{"over-long message", []byte{0x02, 0x80, 0x01, 0x00, 0x01}, ctlmsg.CodeProtocolError},
		{"message never completed", []byte{0x02, 17, 0, 0}, ctlmsg.CodeProtocolError},
		{"second hello", ctlmsg.Append(nil, ctlmsg.Hello{Version: ctlmsg.Version}), ctlmsg.CodeProtocolError},
		{"multipath after the hello", ctlmsg.Append(nil, ctlmsg.Multipath{Instance: 1}), ctlmsg.CodeProtocolError},
		{"unknown type skipped", []byte{0x3f, 3, 'a', 'b', 'c'}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newTestPair(t, func(cli, srv *Config) {
				for _, c := range []*Config{cli, srv} {
					c.HandshakeTimeout = time.Second
					c.Heartbeat = 100 * time.Millisecond
				}
			})
			c, s := p.connect(t)
			writeRaw(t, c, tt.raw)
			if tt.wantCode == 0 {
				time.Sleep(1500 * time.Millisecond)
				if err := s.Err(); err != nil {
					t.Fatalf("server conn died: %v", err)
				}
				exchange(t, c, s, []byte{0x45, 1})
				return
			}
			waitDone(t, c, 10*time.Second)
			var ce *closeError
			if err := c.Err(); !errors.As(err, &ce) || !ce.Remote || ce.Code != tt.wantCode {
				t.Errorf("client Err() = %v, want remote close with code %d", err, tt.wantCode)
			}
		})
	}
}

// TestSlowClientDoesNotBlockAccept completes a QUIC handshake but never
// opens the control stream, then checks that a good client is accepted
// at once.
func TestSlowClientDoesNotBlockAccept(t *testing.T) {
	p := newTestPair(t, func(_, srv *Config) { srv.HandshakeTimeout = 5 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ua := p.srv.LocalAddr().(*net.UDPAddr)
	slow, err := p.cli.tr.Dial(ctx, ua, clientTLSConfig(p.cli.cert, p.sk.pub, nil), p.cli.quicConfig(&p.sk.pub))
	if err != nil {
		t.Fatalf("raw dial: %v", err)
	}
	defer slow.CloseWithError(0, "")
	other := newEndpoint(t, Config{PrivateKey: p.ck.priv, NodeName: "boat-2", Listen: "127.0.0.1:0"})
	start := time.Now()
	acc := make(chan *Conn, 1)
	go func() {
		s, _ := p.srv.Accept(ctx)
		acc <- s
	}()
	c, err := other.Dial(ctx, ua.String(), p.sk.pub)
	if err != nil {
		t.Fatalf("Dial while a slow client is pending: %v", err)
	}
	defer c.Close("test")
	s := <-acc
	if s == nil || s.PeerName() != "boat-2" {
		t.Fatalf("Accept = %v, want the conn from boat-2", s)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("good client accepted after %v, want well under the slow client's 5 s hello timeout", d)
	}
	// The slow client is dropped after HandshakeTimeout.
	select {
	case <-slow.Context().Done():
	case <-time.After(8 * time.Second):
		t.Error("slow client not closed after HandshakeTimeout")
	}
}

func TestDialLoopReconnects(t *testing.T) {
	p := newTestPair(t, func(cli, _ *Config) {
		cli.RedialMin = 50 * time.Millisecond
		cli.RedialMax = 200 * time.Millisecond
	})
	ups, stop := p.dialLoop(t)
	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	for i := range 2 {
		s, err := p.srv.Accept(actx)
		if err != nil {
			t.Fatalf("Accept %d: %v", i, err)
		}
		var c *Conn
		select {
		case c = <-ups:
		case <-actx.Done():
			t.Fatalf("DialLoop did not call up for connection %d", i)
		}
		exchange(t, c, s, []byte{0x45, byte(i)})
		s.Close("server restart")
		waitDone(t, c, 5*time.Second)
	}
	select {
	case <-stop():
	case <-time.After(5 * time.Second):
		t.Fatal("DialLoop did not return after cancel")
	}
}

func TestEndpointCloseNoLeaks(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		p := newTestPair(t, nil)
		c, s := p.connect(t)
		exchange(t, c, s, []byte{0x45})
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := p.srv.Accept(ctx)
			errc <- err
		}()
		if err := p.srv.Close(); err != nil {
			t.Errorf("server Close: %v", err)
		}
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
		cancel()
		waitDone(t, c, 5*time.Second)
		var ce *closeError
		if err := c.Err(); !errors.As(err, &ce) || ce.Reason != "shutting down" {
			t.Errorf("client Err() after server Close = %v, want reason %q", err, "shutting down")
		}
		if err := p.cli.Close(); err != nil {
			t.Errorf("client Close: %v", err)
		}
		if _, err := p.cli.Dial(context.Background(), "127.0.0.1:1", p.sk.pub); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Dial after Close = %v, want net.ErrClosed", err)
		}
	}()
	waitGoroutines(t, before)
}

func TestClientMigration(t *testing.T) {
	p := newTestPair(t, nil)
	c, s := p.connect(t)
	exchange(t, c, s, []byte{0x45, 1})

	var unreachable atomic.Uint64
	sock2, err := listenUDP("127.0.0.1:0", 0, &unreachable)
	if err != nil {
		t.Fatal(err)
	}
	tr2, err := newTransport(sock2)
	if err != nil {
		t.Fatal(err)
	}
	// A Transport a connection used must outlive it: close it only after
	// the client endpoint (registered first, so it runs last).
	t.Cleanup(func() {
		tr2.Close()
		sock2.Close()
	})
	t.Cleanup(func() { p.cli.Close() })

	path, err := c.qc.AddPath(tr2)
	if err != nil {
		t.Fatalf("AddPath: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := path.Probe(ctx); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if err := path.Switch(); err != nil {
		t.Fatalf("Switch: %v", err)
	}
	// quic-go's Conn.LocalAddr and RemoteAddr read the active path without
	// synchronisation (a data race with the switch in its run loop). Let
	// the switch happen, then read them only after datagrams delivered by
	// the run loop have ordered the switch before the read.
	time.Sleep(300 * time.Millisecond)
	for i := range 3 {
		exchange(t, c, s, []byte{0x45, 2, byte(i)})
		exchange(t, s, c, []byte{0x45, 3, byte(i)})
		time.Sleep(50 * time.Millisecond)
	}
	want := sock2.LocalAddr().String()
	if got := c.LocalAddr().String(); got != want {
		t.Errorf("client LocalAddr() = %s after Switch, want %s", got, want)
	}
	if got := s.RemoteAddr().String(); got != want {
		t.Errorf("server RemoteAddr() = %s after migration, want %s", got, want)
	}
	if c.Err() != nil || s.Err() != nil {
		t.Errorf("conn died during migration: client %v, server %v", c.Err(), s.Err())
	}
}

func ExampleEndpoint_Dial() {
	_, priv, _ := ed25519.GenerateKey(nil)
	e, err := NewEndpoint(Config{PrivateKey: priv, NodeName: "boat-1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer e.Close()
	var hub key.Public // the hub's public key from the configuration
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// Port 1 on loopback has no hub: the dial fails within the timeout.
	if _, err := e.Dial(ctx, "127.0.0.1:1", hub); err != nil {
		fmt.Println("dial failed")
	}
	// Output: dial failed
}

// waitGoroutines waits up to 5 s until no more goroutines run than before,
// and fails the test with every goroutine's stack if some are left.
func waitGoroutines(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}
