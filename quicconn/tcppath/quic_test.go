// SPDX-License-Identifier: MIT

package tcppath

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// quicTLS returns TLS configurations for the QUIC connection inside the
// TCP path: a self-signed certificate, no verification (this test is
// about transport, not identity; quicconn pins keys in its own TLS).
func quicTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	cert, err := newCertificate(newIdentity(t).priv)
	if err != nil {
		t.Fatal(err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"godwit-test"}}
	client = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"godwit-test"}, ServerName: "hub"}
	return server, client
}

// quicConfig is what the package doc asks of a Transport on a TCP path:
// no outer congestion control, no path MTU discovery, and (here, to show
// that a TCP path has no MTU) the largest packets quic-go makes.
func quicConfig() *quic.Config {
	return &quic.Config{
		EnableDatagrams:          true,
		DisableCongestionControl: true,
		DisablePathMTUDiscovery:  true,
		InitialPacketSize:        DefaultMaxPacket,
		HandshakeIdleTimeout:     5 * time.Second,
		MaxIdleTimeout:           30 * time.Second,
	}
}

// echoQUIC accepts QUIC connections on ln and echoes every datagram and
// every stream of each.
func echoQUIC(ln *quic.Listener) {
	for {
		conn, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		go func() {
			for {
				b, err := conn.ReceiveDatagram(context.Background())
				if err != nil {
					return
				}
				conn.SendDatagram(b)
			}
		}()
		go func() {
			for {
				s, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				go func() {
					io.Copy(s, s)
					s.Close()
				}()
			}
		}()
	}
}

// quicSite is a site's QUIC connection over its own TCP path.
type quicSite struct {
	pc   *PacketConn
	tr   *quic.Transport
	conn *quic.Conn
}

func dialQUIC(t testing.TB, h *hub, site identity, tlsConf *tls.Config) *quicSite {
	t.Helper()
	pc := h.dial(t, site)
	tr := &quic.Transport{Conn: pc, ConnectionIDLength: 8}
	t.Cleanup(func() { tr.Close() }) // before pc's Close (cleanups run last first)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, pc.RemoteAddr(), tlsConf, quicConfig())
	if err != nil {
		t.Fatalf("QUIC dial over TCP: %v", err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return &quicSite{pc: pc, tr: tr, conn: conn}
}

// echoDatagram sends p and waits for it to come back.
func (s *quicSite) echoDatagram(t testing.TB, p []byte) {
	t.Helper()
	if err := s.conn.SendDatagram(p); err != nil {
		t.Fatalf("SendDatagram(%d bytes): %v", len(p), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := s.conn.ReceiveDatagram(ctx)
	if err != nil {
		t.Fatalf("ReceiveDatagram: %v", err)
	}
	if !bytes.Equal(got, p) {
		t.Fatalf("echoed datagram of %d bytes differs from the %d sent", len(got), len(p))
	}
}

// echoStream sends msg on a new stream and reads the echo.
func (s *quicSite) echoStream(t testing.TB, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(st, msg); err != nil {
		t.Fatal(err)
	}
	st.Close()
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("stream echo = %q, want %q", got, msg)
	}
}

// TestQUICOverTCP runs real quic-go connections, datagrams and streams,
// from two sites through one Listener, each site on a Transport of its
// own, and cuts one site's TCP connection.
func TestQUICOverTCP(t *testing.T) {
	checkGoroutines(t)
	site1, site2 := newIdentity(t), newIdentity(t)
	h := newHub(t, ServerConfig{}, site1.pub, site2.pub)
	srvTLS, cliTLS := quicTLS(t)
	// The hub: a second Transport, on the Listener.
	htr := &quic.Transport{Conn: h, ConnectionIDLength: 8}
	t.Cleanup(func() { htr.Close() })
	ln, err := htr.Listen(srvTLS, quicConfig())
	if err != nil {
		t.Fatal(err)
	}
	go echoQUIC(ln)

	s1, s2 := dialQUIC(t, h, site1, cliTLS), dialQUIC(t, h, site2, cliTLS)
	for i, s := range []*quicSite{s1, s2} {
		cs := s.conn.ConnectionState()
		if !cs.SupportsDatagrams.Remote || cs.GSO {
			t.Errorf("site %d: datagrams %v, GSO %v; want datagrams, no GSO", i+1, cs.SupportsDatagrams.Remote, cs.GSO)
		}
		// No path MTU to find on TCP: the datagram limit is what
		// InitialPacketSize allows from the first packet on.
		if got, want := s.conn.MaxDatagramPayloadSize(), DefaultMaxPacket-37; got != want {
			t.Errorf("site %d: MaxDatagramPayloadSize() = %d, want %d", i+1, got, want)
		}
	}
	for i := range 50 {
		for j, s := range []*quicSite{s1, s2} {
			size := 1 + (i*97)%s.conn.MaxDatagramPayloadSize()
			if i == 49 {
				size = s.conn.MaxDatagramPayloadSize()
			}
			p := bytes.Repeat([]byte{byte(j + 1)}, size)
			p[0] = 0x45
			s.echoDatagram(t, p)
		}
	}
	s1.echoStream(t, "hello from site 1")
	s2.echoStream(t, strings.Repeat("site 2 ", 20000)) // 140 kB: many packets, flow control

	if st := h.Stats(); st.Clients != 2 || st.Accepted != 2 || st.SendDrops != 0 || st.ReceiveWaits != 0 {
		t.Errorf("hub Stats() = %+v, want 2 clients and no drops", st)
	}

	// Cutting site 1's TCP connection ends its QUIC connection at once
	// (its Transport's reader fails), not after the 30 s idle timeout;
	// the hub's Transport and site 2 carry on.
	start := time.Now()
	s1.pc.Close()
	select {
	case <-s1.conn.Context().Done():
		t.Logf("site 1's QUIC connection ended %v after its TCP connection closed: %v", time.Since(start), context.Cause(s1.conn.Context()))
	case <-time.After(5 * time.Second):
		t.Error("site 1's QUIC connection outlived its TCP connection by 5 s")
	}
	s2.echoDatagram(t, []byte{0x45, 2, 2})
	s2.echoStream(t, "still here")
}

// TestNoBufferWarning runs a Transport on each kind of conn in a fresh
// process (quic-go logs its buffer warning once per process) and checks
// that quic-go logged nothing: without SetReadBuffer and SetWriteBuffer
// it would log "connection doesn't allow setting of receive buffer size"
// through the standard library's global logger.
func TestNoBufferWarning(t *testing.T) {
	if os.Getenv("TCPPATH_BUFFER_WARNING_CHILD") == "1" {
		site := newIdentity(t)
		h := newHub(t, ServerConfig{}, site.pub)
		srvTLS, cliTLS := quicTLS(t)
		htr := &quic.Transport{Conn: h}
		defer htr.Close()
		ln, err := htr.Listen(srvTLS, quicConfig())
		if err != nil {
			t.Fatal(err)
		}
		go echoQUIC(ln)
		s := dialQUIC(t, h, site, cliTLS)
		s.echoDatagram(t, []byte{0x45, 1})
		fmt.Println("child done")
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoBufferWarning$", "-test.v")
	cmd.Env = append(os.Environ(), "TCPPATH_BUFFER_WARNING_CHILD=1", "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child done") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "buffer size") {
		t.Errorf("quic-go logged a buffer warning:\n%s", out)
	}
}
