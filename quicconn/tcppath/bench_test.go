// SPDX-License-Identifier: MIT

package tcppath

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// benchPair returns a site's QUIC connection to an echoing hub, over UDP
// on loopback or over a TCP path, with the same quic.Config.
func benchPair(b *testing.B, kind string) *quic.Conn {
	b.Helper()
	srvTLS, cliTLS := quicTLS(b)
	switch kind {
	case "udp":
		listen := func() *net.UDPConn {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close() })
			return c
		}
		hc, sc := listen(), listen()
		htr := &quic.Transport{Conn: hc, ConnectionIDLength: 8}
		str := &quic.Transport{Conn: sc, ConnectionIDLength: 8}
		b.Cleanup(func() { str.Close(); htr.Close() })
		ln, err := htr.Listen(srvTLS, quicConfig())
		if err != nil {
			b.Fatal(err)
		}
		go echoQUIC(ln)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := str.Dial(ctx, hc.LocalAddr(), cliTLS, quicConfig())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.CloseWithError(0, "") })
		return conn
	default:
		site := newIdentity(b)
		h := newHub(b, ServerConfig{}, site.pub)
		htr := &quic.Transport{Conn: h, ConnectionIDLength: 8}
		b.Cleanup(func() { htr.Close() })
		ln, err := htr.Listen(srvTLS, quicConfig())
		if err != nil {
			b.Fatal(err)
		}
		go echoQUIC(ln)
		return dialQUIC(b, h, site, cliTLS).conn
	}
}

// BenchmarkQUICStream measures a QUIC stream echoed by the hub (so both
// directions carry the bytes), over UDP and over a TCP path.
func BenchmarkQUICStream(b *testing.B) {
	for _, kind := range []string{"udp", "tcp"} {
		b.Run(kind, func(b *testing.B) {
			conn := benchPair(b, kind)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := conn.OpenStreamSync(ctx)
			if err != nil {
				b.Fatal(err)
			}
			chunk := make([]byte, 64<<10)
			done := make(chan int64)
			go func() {
				n, _ := io.Copy(io.Discard, s)
				done <- n
			}()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				if _, err := s.Write(chunk); err != nil {
					b.Fatal(err)
				}
			}
			s.Close()
			if n := <-done; n != int64(b.N*len(chunk)) {
				b.Fatalf("echoed %d bytes, want %d", n, b.N*len(chunk))
			}
		})
	}
}

// BenchmarkQUICDatagramRoundTrip measures one 1200-byte datagram echoed
// by the hub, over UDP and over a TCP path.
func BenchmarkQUICDatagramRoundTrip(b *testing.B) {
	for _, kind := range []string{"udp", "tcp"} {
		b.Run(kind, func(b *testing.B) {
			s := &quicSite{conn: benchPair(b, kind)}
			p := make([]byte, 1200)
			p[0] = 0x45
			b.ResetTimer()
			for range b.N {
				s.echoDatagram(b, p)
			}
		})
	}
}
