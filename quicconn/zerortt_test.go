// SPDX-License-Identifier: MIT

package quicconn

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/state"
	"github.com/godwit-vpn/godwit/tests/relay"
)

// waitFor calls f every 10 ms until it returns true or d passed.
func waitFor(d time.Duration, f func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if f() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startRelay runs a relay on loopback in front of target until the test
// ends.
func startRelay(t testing.TB, target net.Addr, cfg relay.Config) *relay.Relay {
	t.Helper()
	cfg.Listen = netip.MustParseAddrPort("127.0.0.1:0")
	cfg.Target = target.(*net.UDPAddr).AddrPort()
	r, err := relay.New(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	background(t, func(ctx context.Context) {
		if err := r.Run(ctx); err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return r
}

// holdAnswers is how long the relay of startHoldingRelay holds back the
// server's answers: the server's handshake cannot complete before then, so
// anything it delivers earlier came in 0-RTT.
const holdAnswers = 300 * time.Millisecond

// startHoldingRelay runs a relay in front of p's server that holds every
// answer to the client back by holdAnswers.
func startHoldingRelay(t testing.TB, p *testPair) *relay.Relay {
	t.Helper()
	return startRelay(t, p.srv.LocalAddr(), relay.Config{
		Delay: func(d relay.Direction, _ uint64) time.Duration {
			if d == relay.ToClient {
				return holdAnswers
			}
			return 0
		},
	})
}

// newClient makes a client Endpoint with p's client key and StateDir dir:
// the site restarted.
func (p *testPair) newClient(t testing.TB, dir string) *Endpoint {
	t.Helper()
	return newEndpoint(t, Config{PrivateKey: p.ck.priv, NodeName: "boat-1", Listen: "127.0.0.1:0", StateDir: dir})
}

// newServer makes a server Endpoint with p's server key and StateDir dir,
// listening on listen, that accepts p's client: the hub restarted.
func (p *testPair) newServer(t testing.TB, listen, dir string) *Endpoint {
	t.Helper()
	return newEndpoint(t, Config{PrivateKey: p.sk.priv, NodeName: "hub", Listen: listen, StateDir: dir,
		Authorize: func(k key.Public) bool { return k == p.ck.pub }})
}

// nextConn returns the next conn from accepted; it fails the test if ctx
// ends first.
func nextConn(ctx context.Context, t testing.TB, accepted <-chan *Conn) *Conn {
	t.Helper()
	select {
	case s := <-accepted:
		return s
	case <-ctx.Done():
		t.Fatal("server Accept returned nothing")
		return nil
	}
}

// primeTicket connects a client Endpoint with StateDir dir to p's server
// once, waits until the session ticket is on disk, and closes the client
// Endpoint (a site that then stops).
func primeTicket(t testing.TB, p *testPair, dir string) {
	t.Helper()
	cli := p.newClient(t, dir)
	old := p.cli
	p.cli = cli
	c, s := p.connect(t)
	p.cli = old
	exchange(t, c, s, []byte{0x45, 0})
	if !waitFor(5*time.Second, func() bool { _, err := os.Stat(state.TicketFile(dir, p.sk.pub)); return err == nil }) {
		t.Fatal("no session ticket written to the state dir")
	}
	cli.Close()
	waitDone(t, s, 5*time.Second)
}

// acceptAll accepts on e until the test ends and sends every conn to the
// returned channel.
func acceptAll(t testing.TB, e *Endpoint) <-chan *Conn {
	t.Helper()
	ch := make(chan *Conn, 16)
	background(t, func(ctx context.Context) {
		for {
			c, err := e.Accept(ctx)
			if err != nil {
				return
			}
			ch <- c
		}
	})
	return ch
}

func TestZeroRTTAfterClientRestart(t *testing.T) { zeroRTTAfterClientRestart(t, false) }

// TestZeroRTTWithoutTracer is TestZeroRTTAfterClientRestart with
// Config.DisableTracer on both sides: the tracer is diagnostics only, and
// 0-RTT must work the same without it. (Before the fork fixed quic-go#4303,
// quicconn held every datagram of a 0-RTT handshake until the handshake
// completed when no tracer could tell it the server's transport parameters
// were about to be installed; the first datagram then reached the server
// after the held-back answer, with its handshake complete.) A goroutine
// keeps sending and reading Stats while the handshake completes, so the
// race detector sees SendDatagram and the datagram limit being read while
// quic-go installs the server's transport parameters.
func TestZeroRTTWithoutTracer(t *testing.T) { zeroRTTAfterClientRestart(t, true) }

func zeroRTTAfterClientRestart(t *testing.T, disableTracer bool) {
	p := newTestPair(t, func(cli, srv *Config) {
		cli.DisableTracer, srv.DisableTracer = disableTracer, disableTracer
	})
	dir := t.TempDir()
	primeTicket(t, p, dir)
	r := startHoldingRelay(t, p)
	accepted := acceptAll(t, p.srv)

	// The restarted client: a new Endpoint on the same state dir.
	cli := newEndpoint(t, Config{PrivateKey: p.ck.priv, NodeName: "boat-1", Listen: "127.0.0.1:0", StateDir: dir,
		DisableTracer: disableTracer})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := cli.Dial(ctx, r.Addr().String(), p.sk.pub)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if d := time.Since(start); d >= holdAnswers {
		t.Errorf("Dial took %v, want it to return before the server's first answer (%v)", d, holdAnswers)
	}
	st := c.Stats()
	if !st.HandshakeDone.IsZero() {
		t.Errorf("HandshakeDone = %v right after a 0-RTT Dial, want zero", st.HandshakeDone)
	}
	if want := initialPacketSize - DatagramOverhead; st.DatagramLimit != want {
		t.Errorf("DatagramLimit = %d right after a 0-RTT Dial, want %d", st.DatagramLimit, want)
	}
	payload := []byte{0x45, 0, 0, 20, 0x0e, 0x42}
	if err := c.SendDatagram(payload); err != nil {
		t.Fatalf("SendDatagram in 0-RTT: %v", err)
	}
	stopSending := make(chan struct{})
	sending := make(chan struct{})
	go func() {
		defer close(sending)
		for !isClosed(stopSending) {
			_ = c.SendDatagram(payload)
			_ = c.Stats()
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stopSending); <-sending }()

	s := nextConn(ctx, t, accepted)
	if s.PeerKey() != p.ck.pub {
		t.Errorf("early server conn has peer %s, want %s", keyString(s.PeerKey()), keyString(p.ck.pub))
	}
	b, err := s.ReceiveDatagram(ctx)
	if err != nil {
		t.Fatalf("server ReceiveDatagram: %v", err)
	}
	if !bytes.Equal(b, payload) {
		t.Errorf("server got %x, want %x", b, payload)
	}
	if isClosed(s.qc.HandshakeComplete()) {
		t.Error("the server's handshake was complete when the 0-RTT datagram was delivered, want it still running")
	}
	if d := time.Since(start); d >= holdAnswers {
		t.Errorf("0-RTT datagram delivered after %v, want before %v", d, holdAnswers)
	}

	// Then the handshake and the hello exchange complete in the background.
	if !waitFor(5*time.Second, func() bool { return c.PeerName() == "hub" && s.PeerName() == "boat-1" }) {
		t.Fatalf("hello exchange not done: client sees %q, server %q", c.PeerName(), s.PeerName())
	}
	cs, ss := c.Stats(), s.Stats()
	if !cs.Used0RTT || cs.Rejected0RTT || !cs.Resumed || cs.HandshakeDone.IsZero() {
		t.Errorf("client stats Used0RTT=%v Rejected0RTT=%v Resumed=%v HandshakeDone=%v, want used, resumed, done", cs.Used0RTT, cs.Rejected0RTT, cs.Resumed, cs.HandshakeDone)
	}
	if !ss.Used0RTT || !ss.Resumed {
		t.Errorf("server stats Used0RTT=%v Resumed=%v, want both", ss.Used0RTT, ss.Resumed)
	}
	if st := cli.Stats(); st.ZeroRTTAttempted != 1 || st.ZeroRTTAccepted != 1 || st.ZeroRTTRejected != 0 {
		t.Errorf("client endpoint 0-RTT attempted/accepted/rejected = %d/%d/%d, want 1/1/0", st.ZeroRTTAttempted, st.ZeroRTTAccepted, st.ZeroRTTRejected)
	}
	if st := p.srv.Stats(); st.EarlyAccepted != 1 {
		t.Errorf("server EarlyAccepted = %d, want 1", st.EarlyAccepted)
	}
	// The control stream works after a 0-RTT start: heartbeats flow.
	exchange(t, s, c, []byte{0x60, 1})
	if !waitFor(5*time.Second, func() bool { return c.Stats().HeartbeatRTT > 0 }) {
		t.Error("no heartbeat reply on a connection that started in 0-RTT")
	}
}

func TestZeroRTTRejectedResendsHello(t *testing.T) {
	p := newTestPair(t, nil)
	dir := t.TempDir()
	// A restarted server: same keys (StateDir), a new process whose book of
	// issued tickets is empty, so it refuses the 0-RTT but resumes.
	sdir := t.TempDir()
	srv1 := p.newServer(t, "127.0.0.1:0", sdir)
	p.srv = srv1
	primeTicket(t, p, dir) // the ticket now comes from srv1
	addr := srv1.LocalAddr().String()
	srv1.Close()
	srv2 := p.newServer(t, addr, sdir)
	p.srv = srv2
	accepted := acceptAll(t, srv2)

	cli := p.newClient(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cli.Dial(ctx, addr, p.sk.pub)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	s := nextConn(ctx, t, accepted)
	if !waitFor(5*time.Second, func() bool { return c.PeerName() == "hub" }) {
		t.Fatalf("no hello after the 0-RTT rejection (client err %v)", c.Err())
	}
	exchange(t, c, s, []byte{0x45, 2})
	if cs := c.Stats(); cs.Used0RTT || !cs.Rejected0RTT || !cs.Resumed {
		t.Errorf("client Used0RTT=%v Rejected0RTT=%v Resumed=%v, want rejected but resumed", cs.Used0RTT, cs.Rejected0RTT, cs.Resumed)
	}
	if st := cli.Stats(); st.ZeroRTTAttempted != 1 || st.ZeroRTTRejected != 1 {
		t.Errorf("client endpoint attempted/rejected = %d/%d, want 1/1", st.ZeroRTTAttempted, st.ZeroRTTRejected)
	}
	if st := srv2.Stats(); st.EarlyRefusedRestart != 1 || st.EarlyAccepted != 0 {
		t.Errorf("server EarlyRefusedRestart=%d EarlyAccepted=%d, want 1 and 0", st.EarlyRefusedRestart, st.EarlyAccepted)
	}
	// The next connection has a fresh ticket from srv2 and gets 0-RTT.
	c.Close("again")
	waitDone(t, s, 5*time.Second)
	if !waitFor(5*time.Second, func() bool { return cli.Stats().Conns == 0 }) {
		t.Fatal("client conn not gone")
	}
	c2, err := cli.Dial(ctx, addr, p.sk.pub)
	if err != nil {
		t.Fatalf("second Dial: %v", err)
	}
	<-accepted
	if !waitFor(5*time.Second, func() bool { return c2.Stats().Used0RTT }) {
		t.Errorf("second dial after the restart: Used0RTT false (%s), want 0-RTT with the new ticket", c2.zeroRTTString())
	}
}

func TestZeroRTTReplayDeliversOnce(t *testing.T) {
	p := newTestPair(t, nil)
	dir := t.TempDir()
	primeTicket(t, p, dir)
	r := startRelay(t, p.srv.LocalAddr(), relay.Config{})

	payload := []byte{0x45, 0, 0, 20, 0xfe, 0xed}
	d := countDeliveries(t, p.srv, payload)

	cli := p.newClient(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cli.Dial(ctx, r.Addr().String(), p.sk.pub)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if err := c.SendDatagram(payload); err != nil { // in the first flight
		t.Fatalf("SendDatagram: %v", err)
	}
	// Replay the first flight three times while the connection lives:
	// quic-go routes the copies to it by connection ID and drops them, or,
	// once it retired the client's first ID, makes a new connection that
	// presents the used ticket. Then three times more after the connection
	// closed and quic-go forgot its IDs: a new connection, or the first
	// replay's half-open one. Either way the ticket check sees a replay.
	if !waitFor(5*time.Second, func() bool { return c.Stats().Used0RTT }) {
		t.Fatalf("0-RTT not used (%s)", c.zeroRTTString())
	}
	// Replay takes what was recorded by then: at least the 4 datagrams
	// whose replays are counted below (a slow handshake may have sent 3).
	if !waitFor(5*time.Second, func() bool { return r.Stats().ToServer.Packets >= 4 }) {
		t.Fatalf("client sent %d datagrams through the relay, want 4", r.Stats().ToServer.Packets)
	}
	r.Replay(4, 3, 100*time.Millisecond)
	if !waitFor(5*time.Second, func() bool { return r.Stats().Replayed >= 12 }) {
		t.Fatal("relay did not replay")
	}
	c.Close("done")
	// quic-go keeps the closed connection's IDs (the client's first one
	// among them) for 3 PTOs, about a second with the 100 ms RTT guess of
	// a 0-RTT start; replays in that time reach the closed connection.
	refused := false
	for i := 0; i < 6 && !refused; i++ {
		r.Replay(4, 1, 500*time.Millisecond)
		refused = waitFor(time.Second, func() bool { return p.srv.Stats().EarlyRefusedReplay > 0 })
	}
	if !refused {
		// Seen in about one run in three when other tests ran before in
		// the same process: quic-go dropped every replayed Initial before
		// the ticket check (no new connection, no refusal), which is safe
		// but leaves this run without proof that the single-use check
		// fired. The system test TestZeroRTTReplayThroughRelay retries
		// until the hub logs the refusal. TODO(godwit): find which quic-go
		// path drops them (#3).
		t.Logf("replays never reached the ticket check (server %+v, relay %+v)", p.srv.Stats(), r.Stats())
	}
	time.Sleep(500 * time.Millisecond) // time for any (wrong) delivery

	n := d.count()
	t.Logf("replayed %d datagrams; server stats %+v", r.Stats().Replayed, p.srv.Stats())
	if n != 1 {
		t.Errorf("server delivered the 0-RTT datagram %d times, want exactly 1", n)
	}
	if k := len(d.conns); k != 1 {
		t.Errorf("server Accept returned %d conns, want 1 (a replay must not become a connection)", k)
	}
	if st := p.srv.Stats(); st.EarlyAccepted != 1 {
		t.Errorf("server EarlyAccepted = %d, want 1", st.EarlyAccepted)
	}
}

// deliveries counts the datagrams equal to a payload on every connection
// an Endpoint accepts until the test ends (countDeliveries).
type deliveries struct {
	mu    sync.Mutex // guards n
	n     int
	conns chan *Conn // every accepted conn
}

// countDeliveries accepts on e until the test ends and counts, on every
// accepted conn, the datagrams equal to payload.
func countDeliveries(t testing.TB, e *Endpoint, payload []byte) *deliveries {
	t.Helper()
	d := &deliveries{conns: make(chan *Conn, 16)}
	accepted := acceptAll(t, e)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	go func() {
		for s := range accepted {
			d.conns <- s
			wg.Go(func() {
				for {
					b, err := s.ReceiveDatagram(ctx)
					if err != nil {
						return
					}
					if bytes.Equal(b, payload) {
						d.mu.Lock()
						d.n++
						d.mu.Unlock()
					}
				}
			})
		}
	}()
	return d
}

// count returns how many datagrams equal to the payload arrived so far.
func (d *deliveries) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// A burst sent in 0-RTT fills quic-go's 32-slot datagram queue long before
// the server's answer arrives. SendDatagram must keep going while quic-go's
// run loop installs the server's transport parameters: quicconn once held
// a lock around its calls into quic-go that the run loop's tracer waited
// for (quic-go#4303, now fixed in the fork), and a sender blocked on the
// full queue deadlocked the handshake.
func TestZeroRTTBurstDoesNotDeadlock(t *testing.T) {
	p := newTestPair(t, nil)
	dir := t.TempDir()
	primeTicket(t, p, dir)
	r := startHoldingRelay(t, p)
	accepted := acceptAll(t, p.srv)

	// Not newEndpoint: on a deadlock its Close would hang the test binary.
	cli, err := NewEndpoint(Config{PrivateKey: p.ck.priv, NodeName: "boat-1", Listen: "127.0.0.1:0", StateDir: dir})
	if err != nil {
		t.Fatalf("NewEndpoint: %v", err)
	}
	deadlocked := false
	t.Cleanup(func() {
		if !deadlocked {
			cli.Close()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cli.Dial(ctx, r.Addr().String(), p.sk.pub)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if got := c.zeroRTTString(); got != "pending" {
		t.Fatalf("0-RTT state after Dial = %q, want pending", got)
	}
	const burst = 300
	sent := make(chan int, 1)
	go func() {
		pkt := make([]byte, 1200)
		pkt[0] = 0x45
		n := 0
		for ; n < burst; n++ {
			if c.SendDatagram(pkt) != nil {
				break
			}
		}
		sent <- n
	}()
	select {
	case n := <-sent:
		if n != burst {
			t.Errorf("sent %d datagrams before an error, want %d", n, burst)
		}
	case <-time.After(5 * time.Second):
		deadlocked = true
		t.Fatalf("SendDatagram blocked for 5 s during a 0-RTT handshake (0-RTT %s, hello from %q)", c.zeroRTTString(), c.PeerName())
	}
	if !waitFor(5*time.Second, func() bool { return c.PeerName() == "hub" }) {
		deadlocked = true
		t.Fatalf("hello exchange not done after the burst (0-RTT %s)", c.zeroRTTString())
	}
	s := nextConn(ctx, t, accepted)
	exchange(t, s, c, []byte{0x45, 1}) // the server's queue holds the burst
}

// TestCorruptTicketFileIgnored checks that a ticket file that does not
// parse neither stops NewEndpoint nor leads to a 0-RTT attempt, and that
// the next ticket is saved in its place.
func TestCorruptTicketFileIgnored(t *testing.T) {
	p := newTestPair(t, nil)
	dir := t.TempDir()
	bad := state.TicketFile(dir, p.sk.pub)
	if err := os.MkdirAll(filepath.Dir(bad), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cli = newEndpoint(t, Config{PrivateKey: p.ck.priv, Listen: "127.0.0.1:0", StateDir: dir})
	c, s := p.connect(t)
	exchange(t, c, s, []byte{0x45, 1})
	if st := p.cli.Stats(); st.ZeroRTTAttempted != 0 {
		t.Errorf("ZeroRTTAttempted = %d without a usable ticket, want 0", st.ZeroRTTAttempted)
	}
	if !waitFor(5*time.Second, func() bool {
		b, err := os.ReadFile(bad)
		return err == nil && !bytes.Equal(b, []byte("junk"))
	}) {
		t.Error("no ticket file written after a successful handshake")
	}
}

// crash stops e the way kill -9 would: no CONNECTION_CLOSE, no Goodbye.
func crash(e *Endpoint) {
	e.tr.Close()
	e.sock.Close()
}

func TestStatelessResetAfterServerRestart(t *testing.T) {
	sdir := t.TempDir()
	h := &logRecorder{}
	p := newTestPair(t, func(cli, srv *Config) {
		srv.StateDir = sdir
		cli.Logger = slog.New(h)
		cli.RedialMin = 2 * time.Second // a reset must not wait for it
		cli.RedialMax = 4 * time.Second
		cli.Heartbeat = time.Hour // only the test's datagrams reach the server
	})
	ups, _ := p.dialLoop(t)
	actx, acancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer acancel()
	s, err := p.srv.Accept(actx)
	if err != nil {
		t.Fatal(err)
	}
	c := <-ups
	exchange(t, c, s, []byte{0x45, 1})

	addr := p.srv.LocalAddr().String()
	crash(p.srv)
	srv2 := p.newServer(t, addr, sdir)
	accepted := acceptAll(t, srv2)

	start := time.Now()
	if err := c.SendDatagram([]byte{0x45, 2}); err != nil {
		t.Fatalf("SendDatagram: %v", err)
	}
	waitDone(t, c, 5*time.Second)
	var sr *quic.StatelessResetError
	if err := c.Err(); !errors.As(err, &sr) {
		t.Fatalf("client conn died of %v, want a stateless reset", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("stateless reset noticed after %v, want about one RTT (loopback)", d)
	}
	// DialLoop redials at once, not after RedialMin.
	var c2 *Conn
	select {
	case c2 = <-ups:
	case <-time.After(p.cli.cfg.RedialMin):
		t.Fatalf("no redial within RedialMin (%v) after a stateless reset", p.cli.cfg.RedialMin)
	}
	s2 := <-accepted
	exchange(t, s2, c2, []byte{0x45, 3})
	if !waitFor(5*time.Second, func() bool { return p.cli.Stats().LastOutage > 0 }) {
		t.Fatal("LastOutage not measured")
	}
	st := p.cli.Stats()
	if st.Redials != 1 || st.RedialsAfterReset != 1 || st.LastOutage > p.cli.cfg.RedialMin {
		t.Errorf("Redials=%d RedialsAfterReset=%d LastOutage=%v, want 1, 1, < %v", st.Redials, st.RedialsAfterReset, st.LastOutage, p.cli.cfg.RedialMin)
	}
	if got := h.find("quicconn: redialed", "reason", "stateless reset"); got != 1 {
		t.Errorf("%d redial log lines with reason stateless reset, want 1", got)
	}
}

// BenchmarkFirstDatagram measures, through a relay that adds 50 ms each
// way, the time from Dial to the peer's answer to the first datagram:
// with a session ticket (0-RTT: about one round trip), the same with
// Config.DisableTracer on both sides (0-RTT must not depend on the tracer),
// and without a ticket (a full handshake and the hello exchange before Dial
// returns: about three).
func BenchmarkFirstDatagram(b *testing.B) {
	const delay = 50 * time.Millisecond
	for _, tc := range []struct {
		name     string
		zeroRTT  bool
		noTracer bool
	}{{"0rtt", true, false}, {"0rtt-notracer", true, true}, {"full", false, false}} {
		b.Run(tc.name, func(b *testing.B) {
			p := newTestPair(b, func(cli, srv *Config) {
				cli.DisableTracer, srv.DisableTracer = tc.noTracer, tc.noTracer
			})
			r := startRelay(b, p.srv.LocalAddr(), relay.Config{
				Delay: func(relay.Direction, uint64) time.Duration { return delay },
			})
			if tc.zeroRTT {
				c, _ := p.connect(b) // gets the first ticket
				c.Close("primed")
			}
			accepted := acceptAll(b, p.srv)
			echoCtx, stopEcho := context.WithCancel(context.Background())
			defer stopEcho()
			go func() { // answer every first datagram
				for {
					select {
					case s := <-accepted:
						go func() {
							if d, err := s.ReceiveDatagram(echoCtx); err == nil {
								_ = s.SendDatagram(d)
							}
						}()
					case <-echoCtx.Done():
						return
					}
				}
			}()
			var total time.Duration
			for i := 0; b.Loop(); i++ {
				cli := p.cli
				if !tc.zeroRTT { // a fresh client has no ticket
					cli = newEndpoint(b, Config{PrivateKey: p.ck.priv, NodeName: "boat-1", Listen: "127.0.0.1:0"})
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				start := time.Now()
				c, err := cli.Dial(ctx, r.Addr().String(), p.sk.pub)
				if err != nil {
					b.Fatalf("Dial: %v", err)
				}
				payload := []byte{0x45, byte(i)}
				if err := c.SendDatagram(payload); err != nil {
					b.Fatalf("SendDatagram: %v", err)
				}
				if _, err := c.ReceiveDatagram(ctx); err != nil {
					b.Fatalf("no answer: %v", err)
				}
				total += time.Since(start)
				if got := c.Stats().Used0RTT || c.id.zrtt.Load() == zrttPending; got != tc.zeroRTT {
					b.Errorf("0-RTT state %s, want 0-RTT %v", c.zeroRTTString(), tc.zeroRTT)
				}
				// Wait for the new ticket before the next 0-RTT dial.
				waitFor(5*time.Second, func() bool { return c.PeerName() != "" })
				c.Close("next")
				cancel()
				if !tc.zeroRTT {
					cli.Close()
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/first-answer")
			b.ReportMetric(float64(2*delay/time.Millisecond), "ms-rtt")
		})
	}
}
