// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"
)

// amplificationRelay forwards a client's first pass datagrams to server
// and drops every later one, so that the server never sees the client's
// address validated; it forwards all the server sends and counts both
// directions.
type amplificationRelay struct {
	pc     *net.UDPConn
	server *net.UDPAddr
	pass   int

	mu                  sync.Mutex // mu guards the following fields.
	client              *net.UDPAddr
	inDgrams, outDgrams int // client->server forwarded, server->client
	inBytes, outBytes   int // UDP payload bytes of the same
}

func newAmplificationRelay(t testing.TB, server net.Addr, pass int) *amplificationRelay {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &amplificationRelay{pc: pc, server: server.(*net.UDPAddr), pass: pass}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			to := r.server
			if from.AddrPort() == r.server.AddrPort() {
				to = r.client
				r.outDgrams++
				r.outBytes += n
			} else {
				r.client = from
				if r.inDgrams >= r.pass {
					to = nil
				} else {
					r.inDgrams++
					r.inBytes += n
				}
			}
			r.mu.Unlock()
			if to != nil {
				pc.WriteToUDP(buf[:n], to)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return r
}

// udpIPv4Overhead is what an IPv4 and UDP header add to a datagram, as nft
// counts it.
const udpIPv4Overhead = 28

// TestAmplificationLimit (S8) lets only the client's first flight reach
// the listener and checks that the listener, which never sees the
// client's address validated, sends at most 3 times what it received,
// counted as UDP payload and as IPv4 packets (what nft counts), also after
// its probe timeouts.
func TestAmplificationLimit(t *testing.T) {
	for _, pass := range []int{1, 2} {
		p := newTestPair(t, nil)
		r := newAmplificationRelay(t, p.srv.LocalAddr(), pass)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := p.cli.Dial(ctx, r.pc.LocalAddr().String(), p.sk.pub)
		cancel()
		if err == nil {
			t.Fatalf("pass %d: Dial succeeded without the client's second flight", pass)
		}
		r.mu.Lock()
		in, out, inN, outN := r.inBytes, r.outBytes, r.inDgrams, r.outDgrams
		r.mu.Unlock()
		ratio := float64(out) / float64(in)
		ipRatio := float64(out+udpIPv4Overhead*outN) / float64(in+udpIPv4Overhead*inN)
		t.Logf("first %d client datagrams: in %d datagrams %d bytes, out %d datagrams %d bytes: %.2fx payload, %.2fx IPv4",
			pass, inN, in, outN, out, ratio, ipRatio)
		if ratio > 3 || ipRatio > 3 {
			t.Errorf("first %d client datagrams: listener sent %.2fx (payload) and %.2fx (IPv4) before validation, want <= 3",
				pass, ratio, ipRatio)
		}
	}
}
