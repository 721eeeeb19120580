// SPDX-License-Identifier: MIT

package tcppath

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

func TestRoundTrip(t *testing.T) {
	checkGoroutines(t)
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	c := h.dial(t, site)

	from := h.register(t, c)
	a, ok := from.(Addr)
	if !ok || a.ID() != 1 || a.TCP() != addrPortOf(c.LocalAddr()) {
		t.Fatalf("hub sees the site as %#v, want Addr #1 at %v", from, c.LocalAddr())
	}
	if got, want := a.String(), c.LocalAddr().String()+"#1"; got != want {
		t.Errorf("Addr.String() = %q, want %q", got, want)
	}
	for _, size := range []int{1, 100, 1200, DefaultMaxPacket} {
		p := bytes.Repeat([]byte{byte(size)}, size)
		writeTo(t, h, p, from)
		got, hubAddr := readFrom(t, c, 5*time.Second)
		if !bytes.Equal(got, p) {
			t.Errorf("site read %d bytes, want the hub's %d", len(got), size)
		}
		if hubAddr != c.RemoteAddr() {
			t.Errorf("site read from %v, want %v", hubAddr, c.RemoteAddr())
		}
		writeTo(t, c, p, c.RemoteAddr())
		if got, _ := readFrom(t, h, 5*time.Second); !bytes.Equal(got, p) {
			t.Errorf("hub read %d bytes, want the site's %d", len(got), size)
		}
	}
	st := h.Stats()
	if st.Accepted != 1 || st.Clients != 1 || st.Pending != 0 {
		t.Errorf("Stats() = %+v, want 1 accepted and connected, none pending", st)
	}
}

// TestNotUDP checks that quic-go's Transport sees neither conn as a UDP
// socket: no OOB path (GSO, ECN, batched reads), no SyscallConn (DF,
// socket buffer sizes), but a SetReadBuffer and SetWriteBuffer that
// succeed, so that it logs no buffer warning (TestNoBufferWarning).
func TestNotUDP(t *testing.T) {
	for _, pc := range []net.PacketConn{(*PacketConn)(nil), (*Listener)(nil)} {
		if _, ok := pc.(quic.OOBCapablePacketConn); ok {
			t.Errorf("%T is a quic.OOBCapablePacketConn", pc)
		}
		if _, ok := pc.(interface {
			SyscallConn() (syscall.RawConn, error)
		}); ok {
			t.Errorf("%T has SyscallConn", pc)
		}
		if _, ok := pc.(interface {
			SetReadBuffer(int) error
			SetWriteBuffer(int) error
		}); !ok {
			t.Errorf("%T lacks SetReadBuffer/SetWriteBuffer", pc)
		}
	}
}

func TestServerKeyPinned(t *testing.T) {
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, h.LocalAddr().String(), ClientConfig{PrivateKey: site.priv, PeerKey: newIdentity(t).pub})
	if err == nil {
		c.Close()
		t.Fatal("Dial to a hub with another key succeeded")
	}
	if !strings.Contains(err.Error(), "server key mismatch") {
		t.Errorf("Dial error = %v, want a server key mismatch", err)
	}
	waitFor(t, "the hub to count the failed handshake", func() bool { return h.Stats().HandshakeErrors == 1 })
	if st := h.Stats(); st.Accepted != 0 || st.Clients != 0 {
		t.Errorf("Stats() = %+v, want nothing accepted", st)
	}
}

func TestUnknownClientRefused(t *testing.T) {
	site, stranger := newIdentity(t), newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// In TLS 1.3 the client's handshake ends before the server has
	// checked the client's certificate, so Dial succeeds; the refusal
	// comes as an alert, the first thing the stranger reads.
	c, err := Dial(ctx, h.LocalAddr().String(), ClientConfig{PrivateKey: stranger.priv, PeerKey: h.id.pub})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	c.WriteTo([]byte{0xc0, 1, 2, 3}, c.RemoteAddr()) // may or may not reach the hub's kernel

	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadFrom(make([]byte, 2000))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("stranger's ReadFrom error = %v, want ErrRefused with the hub's bad certificate alert", err)
	}
	if isTimeout(err) {
		t.Fatal("the hub did not close the stranger's connection")
	}
	// Not a single frame reached the hub's ReadFrom.
	h.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, from, err := h.ReadFrom(make([]byte, 2000)); !isTimeout(err) {
		t.Errorf("hub ReadFrom = %d bytes from %v, %v; want a timeout", n, from, err)
	}
	st := h.Stats()
	if st.RefusedKeys != 1 || st.Accepted != 0 || st.Clients != 0 {
		t.Errorf("Stats() = %+v, want 1 refused key and nothing accepted", st)
	}
	if got := h.keys.refusedKeys(); len(got) != 1 || got[0] != stranger.pub {
		t.Errorf("Refused saw %v, want [%v]", got, stranger.pub)
	}

	// The hub is not disturbed: its site connects.
	c2 := h.dial(t, site)
	h.register(t, c2)
}

// rawClient is an authorized client that writes frames by hand.
func rawClient(t *testing.T, h *hub, site identity) *tls.Conn {
	t.Helper()
	cert, err := newCertificate(site.priv)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", h.LocalAddr().String(), clientTLSConfig(cert, h.id.pub, ""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestBadFrameClosesOnlyThatClient(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
	}{
		{"above MaxPacket", append([]byte{0x05, 0xad}, make([]byte, DefaultMaxPacket+1)...)},
		{"65535 bytes announced", []byte{0xff, 0xff, 1, 2, 3}},
		{"zero length", []byte{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good, bad := newIdentity(t), newIdentity(t)
			h := newHub(t, ServerConfig{}, good.pub, bad.pub)
			c := h.dial(t, good)
			from := h.register(t, c)

			raw := rawClient(t, h, bad)
			if _, err := raw.Write([]byte{0, 2, 0xc0, 0xff}); err != nil { // a good frame first
				t.Fatal(err)
			}
			if got, _ := readFrom(t, h, 5*time.Second); !bytes.Equal(got, []byte{0xc0, 0xff}) {
				t.Fatalf("hub read % x, want c0 ff", got)
			}
			if _, err := raw.Write(tt.frame); err != nil {
				t.Fatal(err)
			}
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			if n, err := raw.Read(make([]byte, 100)); err == nil || isTimeout(err) {
				t.Fatalf("bad client read %d bytes, %v; want its connection closed", n, err)
			}
			waitFor(t, "BadFrames", func() bool { return h.Stats().BadFrames == 1 })

			// The other client is unaffected, both ways.
			writeTo(t, c, []byte{0xc1}, c.RemoteAddr())
			if got, _ := readFrom(t, h, 5*time.Second); !bytes.Equal(got, []byte{0xc1}) {
				t.Errorf("hub read % x, want c1", got)
			}
			writeTo(t, h, []byte{0xc2}, from)
			if got, _ := readFrom(t, c, 5*time.Second); !bytes.Equal(got, []byte{0xc2}) {
				t.Errorf("site read % x, want c2", got)
			}
			if st := h.Stats(); st.Clients != 1 {
				t.Errorf("Stats().Clients = %d, want 1", st.Clients)
			}
		})
	}
}

func TestClientBadFrame(t *testing.T) {
	// A hub that sends a frame above the site's MaxPacket: the site's
	// ReadFrom fails (and quic-go's Transport would close).
	site := newIdentity(t)
	h := newHub(t, ServerConfig{MaxPacket: 2000}, site.pub)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, h.LocalAddr().String(), ClientConfig{PrivateKey: site.priv, PeerKey: h.id.pub})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	from := h.register(t, c)
	writeTo(t, h, make([]byte, 1500), from)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadFrom(make([]byte, 2000)); !errors.Is(err, ErrFrameSize) {
		t.Errorf("ReadFrom error = %v, want ErrFrameSize", err)
	}
	if _, _, err := c.ReadFrom(make([]byte, 2000)); !errors.Is(err, ErrFrameSize) {
		t.Errorf("second ReadFrom error = %v, want ErrFrameSize again", err)
	}
	if _, err := c.WriteTo([]byte{1}, c.RemoteAddr()); !errors.Is(err, ErrFrameSize) {
		t.Errorf("WriteTo after the failure = %v, want ErrFrameSize", err)
	}
	if st := c.Stats(); st.BadFrames != 1 {
		t.Errorf("Stats().BadFrames = %d, want 1", st.BadFrames)
	}
}

// TestPendingLimitAndHandshakeTimeout holds the hub's handshake slots
// with mute connections: each newcomer beyond MaxPending closes the oldest
// at once, a real client gets through while every slot is held, and the
// mute ones left are closed at the handshake timeout.
func TestPendingLimitAndHandshakeTimeout(t *testing.T) {
	checkGoroutines(t)
	site := newIdentity(t)
	const timeout = 500 * time.Millisecond
	h := newHub(t, ServerConfig{MaxPending: 2, HandshakeTimeout: timeout}, site.pub)
	mute := func() net.Conn {
		c, err := net.Dial("tcp", h.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err != nil && !isTimeout(err)
	}
	start := time.Now()
	m1 := mute()
	waitFor(t, "one pending handshake", func() bool { return h.Stats().Pending == 1 })
	m2 := mute()
	waitFor(t, "two pending handshakes", func() bool { return h.Stats().Pending == 2 })

	// A third closes the oldest at once, long before the handshake
	// timeout, and takes its slot.
	m3 := mute()
	if !closed(m1) {
		t.Fatal("the oldest mute connection is still open after a third came")
	}
	if d := time.Since(start); d >= timeout {
		t.Errorf("oldest connection closed after %v, want at once (before the %v timeout)", d, timeout)
	}
	waitFor(t, "Evicted", func() bool { st := h.Stats(); return st.Evicted == 1 && st.Pending == 2 })

	// A real client gets through with every slot held: it evicts m2.
	c := h.dial(t, site)
	h.register(t, c)
	if !closed(m2) {
		t.Fatal("the second mute connection is still open after the client came")
	}

	// m3 is closed at the timeout.
	if !closed(m3) {
		t.Fatal("the third mute connection is still open after the timeout")
	}
	if d := time.Since(start); d < timeout {
		t.Errorf("mute connection closed after %v, before the %v timeout", d, timeout)
	}
	waitFor(t, "HandshakeTimeouts", func() bool { return h.Stats().HandshakeTimeouts == 1 })
	if st := h.Stats(); st.Pending != 0 || st.Accepted != 1 || st.Evicted != 2 {
		t.Errorf("Stats() = %+v, want nothing pending, 1 accepted, 2 evicted", st)
	}
}

// TestSlowClientDoesNotBlockOthers stalls a client that never reads, then
// keeps writing to it while another client is served at full speed.
func TestSlowClientDoesNotBlockOthers(t *testing.T) {
	slow, fast := newIdentity(t), newIdentity(t)
	// A WriteTo to the stalled client waits SendWait before it drops.
	h := newHub(t, ServerConfig{SendQueue: 16, SendWait: time.Millisecond}, slow.pub, fast.pub)
	cs, cf := h.dial(t, slow), h.dial(t, fast)
	toSlow, toFast := h.register(t, cs), h.register(t, cf)

	// Fill the slow client's socket buffers and queue, until every packet
	// to it is dropped.
	p := make([]byte, 1400)
	start := time.Now()
	for {
		before := h.Stats().SendDrops
		for range 1000 {
			writeTo(t, h, p, toSlow)
		}
		if h.Stats().SendDrops-before == 1000 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("a client that does not read still takes packets after 10 s")
		}
		time.Sleep(time.Millisecond) // let the writer fill the socket
	}
	stalled := h.Stats().SendDrops

	// The fast client gets every packet, one round trip each, while the
	// slow one's packets keep being dropped; no WriteTo waits longer than
	// SendWait.
	var slowest time.Duration
	for i := range 200 {
		t0 := time.Now()
		for range 10 {
			writeTo(t, h, p, toSlow)
		}
		p[0] = byte(i)
		writeTo(t, h, p, toFast)
		slowest = max(slowest, time.Since(t0))
		if got, _ := readFrom(t, cf, 5*time.Second); got[0] != byte(i) {
			t.Fatalf("fast client read packet %d, want %d", got[0], i)
		}
	}
	if slowest > 100*time.Millisecond {
		t.Errorf("slowest batch of 11 WriteTo calls took %v", slowest)
	}
	st := h.Stats()
	if st.SendDrops < stalled+2000 {
		t.Errorf("Stats().SendDrops = %d, want at least %d: every packet to the stalled client dropped", st.SendDrops, stalled+2000)
	}
	t.Logf("slowest batch of WriteTo calls %v; %d packets to the slow client dropped", slowest, st.SendDrops)
}

func TestIdleTimeout(t *testing.T) {
	site := newIdentity(t)
	h := newHub(t, ServerConfig{IdleTimeout: 300 * time.Millisecond}, site.pub)
	c := h.dial(t, site)
	h.register(t, c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadFrom(make([]byte, 2000)); err == nil || isTimeout(err) {
		t.Fatalf("silent site's ReadFrom = %v, want the hub to close it", err)
	}
	waitFor(t, "IdleCloses", func() bool { st := h.Stats(); return st.IdleCloses == 1 && st.Clients == 0 })
}

func TestWriteToAddresses(t *testing.T) {
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	c := h.dial(t, site)
	from := h.register(t, c)
	udp := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443}

	// The hub: an address of no client (never, or no more) swallows the
	// packet; another kind of address is an error.
	if n, err := h.WriteTo([]byte{1}, newAddr(from.(Addr).TCP(), 99)); n != 1 || err != nil {
		t.Errorf("hub WriteTo(unknown Addr) = %d, %v; want 1, nil", n, err)
	}
	if _, err := h.WriteTo([]byte{1}, udp); err == nil {
		t.Error("hub WriteTo(*net.UDPAddr) succeeded")
	}
	// The site: only the hub's address.
	if _, err := c.WriteTo([]byte{1}, udp); err == nil {
		t.Error("site WriteTo(*net.UDPAddr) succeeded")
	}
	if _, err := c.WriteTo([]byte{1}, from); err == nil {
		t.Error("site WriteTo(another Addr) succeeded")
	}
	// Above MaxPacket: EMSGSIZE, as UDP (quic-go knows it).
	if _, err := h.WriteTo(make([]byte, DefaultMaxPacket+1), from); !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("hub WriteTo(%d bytes) = %v, want EMSGSIZE", DefaultMaxPacket+1, err)
	}
	if _, err := c.WriteTo(make([]byte, DefaultMaxPacket+1), c.RemoteAddr()); !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("site WriteTo(%d bytes) = %v, want EMSGSIZE", DefaultMaxPacket+1, err)
	}
	// Nothing of the above reached either side.
	writeTo(t, h, []byte{2}, from)
	if got, _ := readFrom(t, c, 5*time.Second); !bytes.Equal(got, []byte{2}) {
		t.Errorf("site read % x, want 02", got)
	}
}

func TestDeadlines(t *testing.T) {
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	c := h.dial(t, site)
	from := h.register(t, c)

	peers := []struct {
		pc net.PacketConn
		to net.Addr
	}{{h, from}, {c, c.RemoteAddr()}}
	for _, p := range peers {
		pc := p.pc
		pc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		if _, _, err := pc.ReadFrom(make([]byte, 2000)); !isTimeout(err) {
			t.Errorf("%T ReadFrom past the deadline = %v, want a temporary timeout", pc, err)
		}
		if d := time.Since(start); d < 40*time.Millisecond || d > 2*time.Second {
			t.Errorf("%T ReadFrom timed out after %v, want about 50ms", pc, d)
		}
		pc.SetDeadline(time.Now().Add(-time.Second))
		if _, err := pc.WriteTo([]byte{1}, p.to); !isTimeout(err) {
			t.Errorf("%T WriteTo past the deadline = %v, want a timeout", pc, err)
		}
		pc.SetDeadline(time.Time{})
	}
	// Both still work after their timeouts: no frame was lost or cut.
	writeTo(t, c, []byte{0xc3, 3}, c.RemoteAddr())
	if got, _ := readFrom(t, h, 5*time.Second); !bytes.Equal(got, []byte{0xc3, 3}) {
		t.Errorf("hub read % x after timeouts, want c3 03", got)
	}
	writeTo(t, h, []byte{0xc4, 4}, from)
	if got, _ := readFrom(t, c, 5*time.Second); !bytes.Equal(got, []byte{0xc4, 4}) {
		t.Errorf("site read % x after timeouts, want c4 04", got)
	}
	// A deadline in the middle of a read unblocks it.
	for _, pc := range []net.PacketConn{h, c} {
		errc := make(chan error, 1)
		go func() {
			_, _, err := pc.ReadFrom(make([]byte, 2000))
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		pc.SetReadDeadline(time.Now())
		if err := <-errc; !isTimeout(err) {
			t.Errorf("%T ReadFrom unblocked by SetReadDeadline(now) = %v, want a timeout", pc, err)
		}
		pc.SetReadDeadline(time.Time{})
	}
}

func TestClose(t *testing.T) {
	checkGoroutines(t)
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	c := h.dial(t, site)
	h.register(t, c)
	c2 := h.dial(t, site)
	h.register(t, c2)

	// The site closes: its hub-side link goes, ReadFrom unblocks.
	errc := make(chan error, 1)
	go func() {
		_, _, err := c.ReadFrom(make([]byte, 2000))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("site ReadFrom after Close = %v, want net.ErrClosed", err)
	}
	if _, err := c.WriteTo([]byte{1}, c.RemoteAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("site WriteTo after Close = %v, want net.ErrClosed", err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	waitFor(t, "the hub to drop the closed site", func() bool { return h.Stats().Clients == 1 })

	// The hub closes: ReadFrom unblocks, the other site sees its end.
	go func() {
		_, _, err := h.ReadFrom(make([]byte, 2000))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := h.Close(); err != nil {
		t.Errorf("hub Close: %v", err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("hub ReadFrom after Close = %v, want net.ErrClosed", err)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c2.ReadFrom(make([]byte, 2000)); !errors.Is(err, io.EOF) {
		t.Errorf("site ReadFrom after the hub closed = %v, want EOF", err)
	}
	if err := h.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second hub Close = %v, want net.ErrClosed", err)
	}
}

func TestConfigErrors(t *testing.T) {
	id := newIdentity(t)
	ctx := context.Background()
	tests := []struct {
		name string
		cfg  ClientConfig
		want string
	}{
		{"no private key", ClientConfig{PeerKey: id.pub}, "PrivateKey"},
		{"no peer key", ClientConfig{PrivateKey: id.priv}, "PeerKey"},
		{"MaxPacket too small", ClientConfig{PrivateKey: id.priv, PeerKey: id.pub, MaxPacket: 1000}, "MaxPacket"},
		{"MaxPacket too big", ClientConfig{PrivateKey: id.priv, PeerKey: id.pub, MaxPacket: 70000}, "MaxPacket"},
		{"socks proxy", ClientConfig{PrivateKey: id.priv, PeerKey: id.pub, Proxy: mustParseURL(t, "socks5://p:1080")}, "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Dial(ctx, "127.0.0.1:1", tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Dial error = %v, want one about %s", err, tt.want)
			}
		})
	}
	if _, err := Listen("tcp", "127.0.0.1:0", ServerConfig{}); err == nil {
		t.Error("Listen without a private key succeeded")
	}
	if _, err := Listen("tcp", "127.0.0.1:0", ServerConfig{PrivateKey: id.priv, MaxPacket: 100}); err == nil {
		t.Error("Listen with MaxPacket 100 succeeded")
	}
}

// TestNoALPN shows that a TLS client of another protocol (an HTTPS
// client, a scanner) is refused during the handshake.
func TestNoALPN(t *testing.T) {
	site := newIdentity(t)
	h := newHub(t, ServerConfig{}, site.pub)
	cert, err := newCertificate(site.priv)
	if err != nil {
		t.Fatal(err)
	}
	for _, protos := range [][]string{nil, {"h2", "http/1.1"}} {
		conf := clientTLSConfig(cert, h.id.pub, "")
		conf.NextProtos = protos
		conf.VerifyConnection = nil
		conn, err := tls.Dial("tcp", h.LocalAddr().String(), conf)
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = bufio.NewReader(conn).ReadByte()
			conn.Close()
		}
		if err == nil || isTimeout(err) {
			t.Errorf("ALPN %q: connection stayed open (%v)", protos, err)
		}
	}
	waitFor(t, "HandshakeErrors", func() bool { return h.Stats().HandshakeErrors == 2 })
}

// TestBurstsWaitInsteadOfDropping sends a burst far larger than the
// client's send queue and the hub's receive queue while the hub reads
// nothing: the client's WriteTo waits for its writer, the hub's receive
// loop waits for room and TCP holds the client back, and once the hub
// reads, every packet arrives, in order, none dropped.
func TestBurstsWaitInsteadOfDropping(t *testing.T) {
	site := newIdentity(t)
	h := newHub(t, ServerConfig{ReceiveQueue: 4}, site.pub)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, h.LocalAddr().String(), ClientConfig{PrivateKey: site.priv, PeerKey: h.id.pub, SendQueue: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h.register(t, c)

	const n = 3000
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		p := make([]byte, 1200)
		for i := range n {
			binary.BigEndian.PutUint16(p, uint16(i))
			if _, err := c.WriteTo(p, c.RemoteAddr()); err != nil {
				t.Errorf("WriteTo: %v", err)
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the hub reads nothing meanwhile
	for i := range n {
		got, _ := readFrom(t, h, 5*time.Second)
		if v := binary.BigEndian.Uint16(got); v != uint16(i) {
			t.Fatalf("packet %d arrived as number %d: one was lost", i, v)
		}
	}
	<-sent
	st, cst := h.Stats(), c.Stats()
	if cst.SendDrops != 0 || st.ReceiveWaits == 0 {
		t.Errorf("client send drops %d (want 0), hub receive waits %d (want > 0)", cst.SendDrops, st.ReceiveWaits)
	}
	t.Logf("%d packets, none lost; hub receive waits %d", n, st.ReceiveWaits)
}
