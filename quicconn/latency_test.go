// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// Idle round-trip benchmarks: one small datagram is echoed back, then the
// sender sleeps latencyGap, so every round trip starts from an idle
// process whose threads have gone to sleep, as a ping through an idle
// tunnel does. BenchmarkIdleRTT/quic runs it between two connected
// Endpoints on loopback; BenchmarkIdleRTT/udp over two plain UDP sockets,
// the floor. The difference is what quic-go and quicconn add per idle
// round trip. Run with a fixed count, e.g.
//
//	go test -run '^$' -bench IdleRTT -benchtime 200x -count 3 ./quicconn
//
// and read the rtt-p50-us and rtt-p90-us metrics; ns/op includes the gap.
const (
	latencyGap  = 10 * time.Millisecond
	latencySize = 100 // bytes per datagram
)

// pinger sends b (the whole datagram) and returns the echo, or an error.
type pinger interface {
	ping(ctx context.Context, b []byte) ([]byte, error)
}

func BenchmarkIdleRTT(b *testing.B) {
	b.Run("quic", func(b *testing.B) {
		p := newTestPair(b, nil)
		c, s := p.connect(b)
		defer c.Close("benchmark done")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go quicEcho(ctx, s)
		runIdleRTT(b, quicPinger{c})
	})
	b.Run("udp", func(b *testing.B) {
		cli, srv := udpPair(b)
		go udpEcho(srv)
		runIdleRTT(b, udpPinger{cli})
	})
}

// runIdleRTT does b.N round trips latencyGap apart and reports the median
// and 90th percentile round-trip times in microseconds. Each echo must
// carry the sequence number just sent, in a datagram of latencySize bytes.
func runIdleRTT(b *testing.B, p pinger) {
	b.Helper()
	buf := make([]byte, latencySize)
	rtts := make([]time.Duration, 0, b.N)
	// Warm up: the first datagrams after a handshake may wait for the
	// connection's state to settle (keys, ACKs, path MTU probes).
	for i := range 5 {
		if _, err := pingOnce(p, buf, 1<<31+uint32(i)); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(latencyGap)
	b.ResetTimer()
	for i := range b.N {
		d, err := pingOnce(p, buf, uint32(i))
		if err != nil {
			b.Fatalf("ping %d: %v", i, err)
		}
		rtts = append(rtts, d)
		time.Sleep(latencyGap)
	}
	b.StopTimer()
	slices.Sort(rtts)
	pct := func(q float64) float64 {
		return float64(rtts[int(q*float64(len(rtts)-1))]) / float64(time.Microsecond)
	}
	b.ReportMetric(pct(0.5), "rtt-p50-us")
	b.ReportMetric(pct(0.9), "rtt-p90-us")
}

// pingOnce sends seq in buf and waits up to 5 s for its echo.
func pingOnce(p pinger, buf []byte, seq uint32) (time.Duration, error) {
	binary.BigEndian.PutUint32(buf, seq)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	got, err := p.ping(ctx, buf)
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if len(got) != len(buf) || binary.BigEndian.Uint32(got) != seq {
		return 0, errors.New("echo does not carry the datagram just sent")
	}
	return d, nil
}

type quicPinger struct{ c *Conn }

func (q quicPinger) ping(ctx context.Context, b []byte) ([]byte, error) {
	if err := q.c.SendDatagram(b); err != nil {
		return nil, err
	}
	got, err := q.c.ReceiveDatagram(ctx)
	if err != nil {
		return nil, err
	}
	out := slices.Clone(got)
	q.c.ReleaseDatagram(got)
	return out, nil
}

// quicEcho sends every datagram s receives back until ctx is done or s
// dies.
func quicEcho(ctx context.Context, s *Conn) {
	for {
		b, err := s.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		err = s.SendDatagram(b)
		s.ReleaseDatagram(b)
		if err != nil {
			return
		}
	}
}

type udpPinger struct{ c *net.UDPConn }

func (u udpPinger) ping(ctx context.Context, b []byte) ([]byte, error) {
	if _, err := u.c.Write(b); err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := u.c.SetReadDeadline(dl); err != nil {
			return nil, err
		}
	}
	buf := make([]byte, 2048)
	n, err := u.c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// udpPair returns a client socket connected to a server socket, both on
// 127.0.0.1 and closed when tb ends.
func udpPair(tb testing.TB) (cli, srv *net.UDPConn) {
	tb.Helper()
	srv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	cli, err = net.DialUDP("udp4", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli, srv
}

// udpEcho sends every datagram srv receives back to its sender until srv
// is closed.
func udpEcho(srv *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		n, addr, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if _, err := srv.WriteToUDPAddrPort(buf[:n], addr); err != nil {
			return
		}
	}
}
