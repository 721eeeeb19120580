// SPDX-License-Identifier: MIT

package tests

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"
)

// faultTable is the hub namespace's nft table for the fault tests: a
// blackhole of the site's underlay traffic.
const faultTable = "faults"

// loadFaults loads table inet faults in the hub's namespace: the
// addresses in its set blackhole lose everything from and to them.
func loadFaults(t *testing.T, tp *topo) {
	t.Helper()
	loadNft(t, tp.hub, tp.lab.Dir+"/faults.nft", fmt.Sprintf(`table inet %s {
	set blackhole { type ipv4_addr; }
	chain in {
		type filter hook prerouting priority -350; policy accept;
		ip saddr @blackhole drop
	}
	chain out {
		type filter hook postrouting priority -350; policy accept;
		ip daddr @blackhole drop
	}
}
`, faultTable))
}

// setBlackhole drops (on) or passes (off) the site's underlay traffic at
// the hub.
func setBlackhole(t *testing.T, tp *topo, s *site, on bool) {
	t.Helper()
	su4, _ := underlay(s.i, 2)
	op := "delete"
	if on {
		op = "add"
	}
	if _, err := tp.hub.Exec("nft", op, "element", "inet", faultTable, "blackhole", "{ "+su4.String()+" }"); err != nil {
		t.Fatal(err)
	}
}

// innerTransfer sends n bytes of random data over inner TCP from the site
// to a listener on the hub's tunnel address, at most rate bytes/s, and
// reports whether the hub received exactly them (SHA-256) and how long it
// took. It gives up after limit.
func innerTransfer(t *testing.T, tp *topo, s *site, tcpPort uint16, n int, rate int, limit time.Duration) (ok bool, took time.Duration) {
	t.Helper()
	hub4, _ := tunAddrs(0)
	addr := netip.AddrPortFrom(hub4, tcpPort).String()
	ln, err := tp.hub.ListenTCP(addr)
	must(t, err)
	defer ln.Close()
	got := make(chan [32]byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(got)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(limit))
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			close(got)
			return
		}
		got <- [32]byte(h.Sum(nil))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c, err := s.ns.DialTCP(ctx, addr)
	must(t, err)
	_ = c.SetDeadline(time.Now().Add(limit))
	start := time.Now()
	h := sha256.New()
	rnd := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 64<<10)
	for sent := 0; sent < n; {
		chunk := buf[:min(len(buf), n-sent)]
		for i := range chunk {
			chunk[i] = byte(rnd.Uint32())
		}
		if _, err := c.Write(chunk); err != nil {
			t.Errorf("inner TCP write after %d bytes: %v", sent, err)
			c.Close()
			return false, time.Since(start)
		}
		h.Write(chunk)
		sent += len(chunk)
		if rate > 0 {
			if ahead := time.Duration(float64(sent)/float64(rate)*float64(time.Second)) - time.Since(start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	c.(*net.TCPConn).CloseWrite()
	sum, received := <-got
	c.Close()
	return received && sum == [32]byte(h.Sum(nil)), time.Since(start)
}

// TestBlackholeInterop is S14: 60 MB of inner TCP (paced to last about
// 30 s) while the underlay is blackholed for 2 s every 5 s, 6 times: the
// transfer completes with the right checksum over exactly one QUIC
// connection (no new handshake).
func TestBlackholeInterop(t *testing.T) {
	t.Parallel() // 30 s, mostly waiting
	tp := newTopo(t, 1, false)
	hub, sites := tp.up(t, false)
	s, site := tp.sites[0], sites[0]
	loadFaults(t, tp)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 6 {
			time.Sleep(3 * time.Second)
			setBlackhole(t, tp, s, true)
			time.Sleep(2 * time.Second)
			setBlackhole(t, tp, s, false)
		}
	}()
	ok, took := innerTransfer(t, tp, s, 9014, 60<<20, 2<<20, 120*time.Second)
	<-done
	if !ok {
		t.Errorf("60 MB inner TCP across 6 blackholes of 2 s: not received intact")
	}
	for _, d := range []struct {
		name string
		n    int
	}{{"site", len(site.LogLines(`msg="peer connected"`))}, {"hub", len(hub.LogLines(`msg="peer connected"`))}} {
		if d.n != 1 {
			t.Errorf("%s logged %d connections, want exactly 1 (no new handshake)", d.name, d.n)
		}
	}
	t.Logf("S14: 60 MB across 6 blackholes of 2 s in %v, intact %v", took.Round(100*time.Millisecond), ok)
}

// TestIdleThenLoss is S16 (the quic-go #5340 class): after 20 s of idle
// (keep-alives only), a burst whose first 3 QUIC packets are dropped must
// still be delivered at once, not at the idle timeout: 64 KiB of inner TCP
// (its retransmissions repair the 3 drops) arrives within 1 s.
func TestIdleThenLoss(t *testing.T) {
	t.Parallel() // 20 s of idle
	tp := newTopo(t, 1, false)
	tp.up(t, false)
	s := tp.sites[0]
	hub4, _ := tunAddrs(0)
	pingOK(t, s.ns, hub4)
	// The inner TCP connection exists before the idle time, as a long
	// lived one would.
	addr := netip.AddrPortFrom(hub4, 9016).String()
	ln, err := tp.hub.ListenTCP(addr)
	must(t, err)
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			acc <- c
		}
	}()
	c, err := s.ns.DialTCP(context.Background(), addr)
	must(t, err)
	defer c.Close()
	srv := <-acc
	defer srv.Close()

	time.Sleep(20 * time.Second)
	su4, _ := underlay(s.i, 2)
	loadNft(t, tp.hub, tp.lab.Dir+"/drop3.nft", fmt.Sprintf(`table inet drop3 {
	chain in {
		type filter hook prerouting priority -350; policy accept;
		ip saddr %s udp dport %d numgen inc mod 1000000 < 3 counter drop
	}
}
`, su4, port))
	const n = 64 << 10
	start := time.Now()
	go func() { _, _ = c.Write(make([]byte, n)) }()
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadFull(srv, make([]byte, n))
	took := time.Since(start)
	if err != nil || got != n {
		t.Fatalf("after 20 s idle and 3 dropped packets: %d of %d bytes, %v", got, n, err)
	}
	if took > time.Second {
		t.Errorf("after 20 s idle and 3 dropped packets the burst took %v, want at most 1 s", took)
	}
	out, _ := tp.hub.Exec("nft", "list", "table", "inet", "drop3")
	t.Logf("S16: burst delivered %v after 20 s idle, first 3 QUIC packets dropped (%s)", took.Round(time.Millisecond), firstCounter(out))
}

// firstCounter returns the "packets N bytes M" part of an nft listing.
func firstCounter(listing string) string {
	var p, b int
	for i := range listing {
		if _, err := fmt.Sscanf(listing[i:], "counter packets %d bytes %d", &p, &b); err == nil {
			return fmt.Sprintf("%d packets dropped", p)
		}
	}
	return "counter not found"
}
