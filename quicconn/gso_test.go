// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// gsoPayload fills b with datagram number seq: seq in the first 4 bytes,
// then bytes that depend on seq and their offset, so a datagram that was
// cut, shifted or mixed with another's bytes does not check out.
func gsoPayload(b []byte, seq uint32) {
	binary.BigEndian.PutUint32(b, seq)
	for i := 4; i < len(b); i++ {
		b[i] = byte(seq*31 + uint32(i)*7)
	}
}

// gsoCheck returns the sequence number in b and whether b is exactly what
// gsoPayload wrote for it, size bytes long.
func gsoCheck(b []byte, size int) (uint32, bool) {
	if len(b) != size {
		return 0, false
	}
	seq := binary.BigEndian.Uint32(b)
	want := make([]byte, size)
	gsoPayload(want, seq)
	for i := range b {
		if b[i] != want[i] {
			return seq, false
		}
	}
	return seq, true
}

// TestDatagramGSOAndGRO sends a burst of datagrams between two Endpoints on
// loopback and checks that the sender's sendmsg calls carry several UDP
// datagrams each (GSO batching of DATAGRAM packets, which stock quic-go
// v0.65.0 never does: its GSO only batches packets of exactly the maximum
// size), and that the receiver, whose socket reads with UDP_GRO, gets them
// intact.
//
// The datagrams are 1300 bytes, the inner MTU of the default config: the
// carried patch batches packets within 1/8 of the maximum packet size,
// and DPLPMTUD raises that to about 1440 on loopback within the burst.
// 1200-byte datagrams (1228-byte packets) fall below the 7/8 mark then
// and go out one per sendmsg (1.1 to 2.5 per call were seen).
func TestDatagramGSOAndGRO(t *testing.T) {
	for _, env := range []string{"QUIC_GO_DISABLE_GSO", "QUIC_GO_DISABLE_GRO"} {
		if os.Getenv(env) != "" {
			t.Skipf("%s is set: quic-go does not use GSO/GRO", env)
		}
	}
	const (
		count = 2000
		burst = 100
		size  = 1300 // a full-size packet: see the function comment
	)
	p := newTestPair(t, nil)
	client, server := p.connect(t)
	defer client.Close("test done")

	// quic-go sets UDP_GRO on the socket when it starts reading.
	gro, gerr := getsockoptInt(t, p.srv.sock, unix.IPPROTO_UDP, unix.UDP_GRO)
	if gerr != nil || gro != 1 {
		t.Fatalf("receiver's UDP_GRO = %d (%v), want 1", gro, gerr)
	}

	var (
		mu        sync.Mutex
		seen      = make(map[uint32]bool, count)
		corrupted int
		dups      int
	)
	stop := background(t, func(ctx context.Context) {
		for {
			b, err := server.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			seq, ok := gsoCheck(b, size)
			mu.Lock()
			switch {
			case !ok || seq >= count:
				corrupted++
			case seen[seq]:
				dups++
			default:
				seen[seq] = true
			}
			mu.Unlock()
		}
	})

	// arrived waits until the receiver has seen want datagrams or nothing
	// more arrived for 300 ms, and returns how many it has seen.
	arrived := func(want int) int {
		last, lastChange := -1, time.Now()
		for {
			mu.Lock()
			n := len(seen) + corrupted + dups
			mu.Unlock()
			if n >= want {
				return n
			}
			if n != last {
				last, lastChange = n, time.Now()
			} else if time.Since(lastChange) > 300*time.Millisecond {
				return n
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Bursts of 100 as fast as SendDatagram takes them, each once the
	// receiver has the one before: quic-go's send queue holds 32, so a
	// burst is plenty for GSO, and the receiving application keeps up,
	// so what is missing was lost below it.
	calls0, segs0 := p.cli.UDPSendStats()
	deadline := time.Now().Add(15 * time.Second)
	payload := make([]byte, size)
	sent := 0
	for sent < count && time.Now().Before(deadline) {
		for range burst {
			gsoPayload(payload, uint32(sent))
			if err := client.SendDatagram(payload); err != nil {
				t.Fatalf("SendDatagram %d: %v", sent, err)
			}
			sent++
		}
		arrived(sent)
	}
	calls1, segs1 := p.cli.UDPSendStats()
	calls, segs := calls1-calls0, segs1-segs0
	dropped := server.Stats().DatagramsDroppedQueueFull
	<-stop()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("sent %d datagrams of %d bytes: %d sendmsg calls carried %d UDP datagrams (%.1f per call); "+
		"received %d intact, %d corrupted, %d duplicates; %d dropped by a full receive queue",
		sent, size, calls, segs, float64(segs)/float64(max(calls, 1)), len(seen), corrupted, dups, dropped)
	if sent != count {
		t.Errorf("sent %d datagrams in 15 s, want %d", sent, count)
	}
	if calls == 0 || float64(segs)/float64(calls) <= 2 {
		t.Errorf("%d sendmsg calls carried %d UDP datagrams, want more than 2 per call (GSO batching)", calls, segs)
	}
	if segs < uint64(len(seen)) {
		t.Errorf("counted %d UDP datagrams sent but %d datagrams arrived: the counter misses sends", segs, len(seen))
	}
	if corrupted != 0 || dups != 0 {
		t.Errorf("receiver got %d corrupted and %d duplicated datagrams, want 0", corrupted, dups)
	}
	if len(seen) < count*9/10 {
		t.Errorf("receiver got %d of %d datagrams intact, want at least %d", len(seen), sent, count*9/10)
	}
}

// TestUDPSendStatsUplinks checks that UDPSendStats adds the sends of an
// uplink's socket; it needs SO_BINDTODEVICE on lo, so root.
func TestUDPSendStatsUplinks(t *testing.T) {
	labtest.RequireRoot(t)
	e := newEndpoint(t, Config{PrivateKey: newKey(t).priv})
	if err := e.AddUplink("lo"); err != nil {
		t.Fatal(err)
	}
	calls0, segs0 := e.UDPSendStats()
	e.upMu.Lock()
	u := e.upl.byName["lo"]
	e.upMu.Unlock()
	if u == nil {
		t.Fatal("uplink lo not found after AddUplink")
	}
	// To the uplink socket itself, which is bound to the wildcard on lo.
	dst := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: u.sock.LocalAddr().(*net.UDPAddr).Port}
	if _, _, err := u.sock.WriteMsgUDP([]byte("x"), nil, dst); err != nil {
		t.Fatalf("send on the uplink socket: %v", err)
	}
	calls1, segs1 := e.UDPSendStats()
	if calls1-calls0 != 1 || segs1-segs0 != 1 {
		t.Errorf("after one send on the uplink: +%d calls, +%d segments; want +1, +1", calls1-calls0, segs1-segs0)
	}
}
