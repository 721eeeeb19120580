// SPDX-License-Identifier: MIT

package quicconn

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/quicconn/tcppath"
)

// newTCPPair is a testPair whose server also listens on TCP (ListenTCP).
func newTCPPair(t testing.TB) *testPair {
	t.Helper()
	return newTestPair(t, func(_, srv *Config) { srv.ListenTCP = "127.0.0.1:0" })
}

// connectTCP dials the server's TCP listener and accepts on the server.
func (p *testPair) connectTCP(t testing.TB) (client, server *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	acc := make(chan *Conn, 1)
	go func() {
		c, _ := p.srv.Accept(ctx)
		acc <- c
	}()
	client, err := p.cli.DialTCP(ctx, p.srv.TCPListenAddr().String(), p.sk.pub, nil)
	if err != nil {
		t.Fatalf("DialTCP: %v", err)
	}
	server = <-acc
	if server == nil {
		t.Fatal("Accept of a TCP dial returned no conn")
	}
	return client, server
}

// TestTCPPath runs a connection over the hub's TCP listener beside a UDP
// one of the same client: both are accepted, both carry datagrams, each
// names its transport, and the TCP one ends at once when its Transport's
// TCP connection is cut.
func TestTCPPath(t *testing.T) {
	p := newTCPPair(t)
	uc, us := p.connect(t)
	tc, ts := p.connectTCP(t)
	for _, tt := range []struct {
		c    *Conn
		want string
	}{{uc, "udp"}, {us, "udp"}, {tc, "tcp"}, {ts, "tcp"}} {
		if got := tt.c.Transport(); got != tt.want {
			t.Errorf("Transport() = %q, want %q", got, tt.want)
		}
	}
	if !tc.Pinned() {
		t.Error("a TCP path is not pinned: a mobility policy could try to move it")
	}
	if got, want := AddrPort(ts.RemoteAddr()), AddrPort(tc.LocalAddr()); got != want || !got.IsValid() {
		t.Errorf("hub sees the TCP path from %v, the site's TCP socket is %v", got, want)
	}
	if ts.PeerKey() != p.ck.pub || tc.PeerKey() != p.sk.pub {
		t.Error("the TCP path's peer keys are not the pinned ones")
	}
	exchange(t, tc, ts, []byte{0x45, 1, 2, 3})
	exchange(t, ts, tc, []byte{0x60, 4, 5, 6})
	exchange(t, uc, us, []byte{0x45, 7})
	// A TCP path carries full-size datagrams from the first packet on.
	if got, want := tc.qc.MaxDatagramPayloadSize(), p.cli.cfg.InitialPacketSize-DatagramOverhead; got != want {
		t.Errorf("datagram limit on TCP = %d, want %d", got, want)
	}

	st, ok := p.srv.TCPListenerStats()
	if !ok || st.Clients != 1 || st.Accepted != 1 {
		t.Errorf("TCPListenerStats() = %+v, %v; want one client", st, ok)
	}

	// Closing the site's TCP side ends the connection at once on both
	// ends (not after the idle timeout) and leaves the UDP one alone.
	p.cli.tcp.mu.Lock()
	for d := range p.cli.tcp.dials {
		d.pc.Close()
	}
	p.cli.tcp.mu.Unlock()
	waitDone(t, tc, 5*time.Second)
	waitDone(t, ts, 5*time.Second)
	if !strings.Contains(ts.Err().Error(), "tcp connection gone") {
		t.Errorf("hub's TCP conn ended with %v, want \"tcp connection gone\"", ts.Err())
	}
	exchange(t, uc, us, []byte{0x45, 8})
}

// TestTCPPathUnknownKeyRefused checks that a site whose key the hub does not
// authorize is refused during the outer TLS handshake: nothing reaches the
// QUIC listener, and the dial fails well before the handshake timeout.
func TestTCPPathUnknownKeyRefused(t *testing.T) {
	p := newTCPPair(t)
	p.allow.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	c, err := p.cli.DialTCP(ctx, p.srv.TCPListenAddr().String(), p.sk.pub, nil)
	if err == nil {
		c.Close("test")
		t.Fatal("DialTCP by an unauthorized site succeeded")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("refusal took %v", took)
	}
	t.Logf("refused after %v: %v", time.Since(start).Round(time.Millisecond), err)
	p.expectNoAccept(t, 300*time.Millisecond)
	st, _ := p.srv.TCPListenerStats()
	if st.RefusedKeys != 1 || st.Clients != 0 {
		t.Errorf("TCPListenerStats() = %+v, want 1 refused, no client", st)
	}
}

// TestTCPPathWrongHubKey checks that a site pins the hub's key on the
// outer TLS too.
func TestTCPPathWrongHubKey(t *testing.T) {
	p := newTCPPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.cli.DialTCP(ctx, p.srv.TCPListenAddr().String(), newKey(t).pub, nil)
	if err == nil {
		c.Close("test")
		t.Fatal("DialTCP to a hub with another key succeeded")
	}
	if st, _ := p.srv.TCPListenerStats(); st.Clients != 0 || st.Accepted != 0 {
		t.Errorf("TCPListenerStats() = %+v, want no client", st)
	}
}

// TestListenTCPInUse checks that a TCP port in use fails NewEndpoint with
// an error naming listen_tcp and the address, and leaves the UDP port free.
func TestListenTCPInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpAddr := udp.LocalAddr().String()
	udp.Close()
	e, err := NewEndpoint(Config{PrivateKey: newKey(t).priv, Listen: udpAddr, ListenTCP: busy.Addr().String()})
	if err == nil {
		e.Close()
		t.Fatal("NewEndpoint with a TCP port in use succeeded")
	}
	if msg := err.Error(); !strings.Contains(msg, "listen_tcp "+busy.Addr().String()) || !strings.Contains(msg, "address already in use") {
		t.Errorf("NewEndpoint error = %q, want it to name listen_tcp, the address and the cause", msg)
	}
	again, err := net.ListenPacket("udp", udpAddr)
	if err != nil {
		t.Fatalf("the UDP port was left bound after the failed start: %v", err)
	}
	again.Close()
}

// TestDialLoopTCPAndClose runs DialLoopTCP, then closes both endpoints and
// checks that every goroutine and TCP path is gone.
func TestDialLoopTCPAndClose(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		p := newTCPPair(t)
		up := make(chan *Conn, 4)
		stop := background(t, func(ctx context.Context) {
			p.cli.DialLoopTCP(ctx, p.srv.TCPListenAddr().String(), p.sk.pub, nil, func(c *Conn) { up <- c })
		})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := p.srv.Accept(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c := <-up
		exchange(t, c, s, []byte{0x45, 9})
		// The hub closes it: the loop redials over TCP.
		s.Close("test")
		if s2, err := p.srv.Accept(ctx); err != nil || s2.Transport() != "tcp" {
			t.Fatalf("no TCP redial: %v", err)
		}
		<-stop()
		if err := errors.Join(p.cli.Close(), p.srv.Close()); err != nil {
			t.Errorf("Close: %v", err)
		}
		p.cli.tcp.mu.Lock()
		n := len(p.cli.tcp.dials)
		p.cli.tcp.mu.Unlock()
		if n != 0 {
			t.Errorf("%d TCP paths left open after Close", n)
		}
	}()
	waitGoroutines(t, before)
}

// recorder is the net.PacketConn quic-go gets for a TCP dial in
// TestZeroRTTOverTCPReplayDeliversOnce: it keeps a copy of the first
// packets written.
type recorder struct {
	net.PacketConn
	mu   sync.Mutex // guards sent
	sent [][]byte
}

func (r *recorder) WriteTo(b []byte, a net.Addr) (int, error) {
	r.mu.Lock()
	if len(r.sent) < 4 {
		r.sent = append(r.sent, bytes.Clone(b))
	}
	r.mu.Unlock()
	return r.PacketConn.WriteTo(b, a)
}

func (r *recorder) first() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// TestZeroRTTOverTCPReplayDeliversOnce resumes a site over its TCP path
// with an IP packet in its 0-RTT first flight, then replays that flight
// to the hub on new TCP connections, while the connection lives and after
// it closed. An attacker on the path cannot do even that: the outer TLS is
// a fresh handshake with pinned keys, and replayed TLS records fail its
// integrity check. So the replays here come from a holder of the site's
// key, the worst case: the single-use tickets still deliver the packet
// once and make no second connection.
func TestZeroRTTOverTCPReplayDeliversOnce(t *testing.T) {
	p := newTCPPair(t)
	dir := t.TempDir()
	primeTicket(t, p, dir)

	payload := []byte{0x45, 0, 0, 20, 0xfa, 0xce}
	d := countDeliveries(t, p.srv, payload)

	cli := p.newClient(t, dir)
	rec := &recorder{}
	cli.tcp.wrap = func(pc net.PacketConn) net.PacketConn { rec.PacketConn = pc; return rec }
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := p.srv.TCPListenAddr().String()
	c, err := cli.DialTCP(ctx, addr, p.sk.pub, nil)
	if err != nil {
		t.Fatalf("DialTCP: %v", err)
	}
	if err := c.SendDatagram(payload); err != nil { // in the first flight
		t.Fatalf("SendDatagram: %v", err)
	}
	if !waitFor(5*time.Second, func() bool { return c.Stats().Used0RTT }) {
		t.Fatalf("0-RTT not used over TCP (%s)", c.zeroRTTString())
	}
	flight := rec.first()
	if len(flight) == 0 {
		t.Fatal("nothing recorded")
	}

	// replay sends the recorded flight on a new TCP connection with the
	// site's key, and leaves it open for the hub's answers.
	replayed := 0
	replay := func() {
		pc, err := tcppath.Dial(ctx, addr, tcppath.ClientConfig{PrivateKey: p.ck.priv, PeerKey: p.sk.pub})
		if err != nil {
			t.Fatalf("replay: %v", err)
		}
		t.Cleanup(func() { pc.Close() })
		for _, b := range flight {
			if _, err := pc.WriteTo(b, pc.RemoteAddr()); err != nil {
				t.Fatalf("replay: %v", err)
			}
			replayed++
		}
	}
	for range 3 {
		replay()
	}
	time.Sleep(200 * time.Millisecond)
	c.Close("done")
	// As over UDP, a replay reaches the ticket check once quic-go forgot
	// the closed connection's IDs (3 PTOs).
	refused := false
	for i := 0; i < 6 && !refused; i++ {
		replay()
		refused = waitFor(time.Second, func() bool { return p.srv.Stats().EarlyRefusedReplay > 0 })
	}
	time.Sleep(500 * time.Millisecond) // time for any (wrong) delivery

	n := d.count()
	t.Logf("replayed %d packets of a %d-packet flight; refused as a replay: %v; server stats %+v", replayed, len(flight), refused, p.srv.Stats())
	if n != 1 {
		t.Errorf("server delivered the 0-RTT datagram %d times, want exactly 1", n)
	}
	if !refused {
		t.Error("no replay reached the single-use ticket check")
	}
	if k := len(d.conns); k != 1 {
		t.Errorf("server Accept returned %d conns, want 1 (a replay must not become a connection)", k)
	}
	if st := p.srv.Stats(); st.EarlyAccepted != 1 {
		t.Errorf("server EarlyAccepted = %d, want 1", st.EarlyAccepted)
	}
}
