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

	"github.com/godwit-vpn/godwit/config"
	gwkey "github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
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

// lossy makes the hub's namespace drop pct % of the site's underlay
// packets, each way, at random.
func lossy(t *testing.T, tp *topo, s *site, pct int) {
	t.Helper()
	su4, _ := underlay(s.i, 2)
	loadNft(t, tp.hub, tp.lab.Dir+"/loss.nft", fmt.Sprintf(`table inet loss {
	chain in {
		type filter hook prerouting priority -350; policy accept;
		ip saddr %[1]s numgen random mod 100 < %[2]d drop
	}
	chain out {
		type filter hook postrouting priority -350; policy accept;
		ip daddr %[1]s numgen random mod 100 < %[2]d drop
	}
}
`, su4, pct))
}

// TestLoss is S17: (a) with 30 % loss each way, 50 QUIC connections to the
// hub, one after the other (a site's key, from the site's namespace), all
// come up within 300 s; (b) with 2 % loss,
// 10 MB of inner TCP arrives intact over one connection.
func TestLoss(t *testing.T) {
	t.Run("establish-30pct", func(t *testing.T) {
		t.Parallel()
		tp := newTopo(t, 1, false)
		s := tp.sites[0]
		tp.start(t, tp.hub, tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)))
		lossy(t, tp, s, 30)
		priv, err := config.ReadPrivateKeyFile(s.k.file)
		must(t, err)
		hubKey, err := gwkey.Decode(tp.hubK.pub)
		must(t, err)
		var ep *quicconn.Endpoint
		must(t, s.ns.Do(func() error {
			ep, err = quicconn.NewEndpoint(quicconn.Config{PrivateKey: priv.Ed25519(), NodeName: "s17", HandshakeTimeout: 20 * time.Second})
			return err
		}))
		defer ep.Close()
		h4, _ := underlay(s.i, 1)
		const n = 50
		start := time.Now()
		var slowest time.Duration
		for i := range n {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t0 := time.Now()
			c, err := ep.Dial(ctx, netip.AddrPortFrom(h4, port).String(), gwkey.Public(hubKey))
			cancel()
			if err != nil {
				t.Fatalf("connection %d of %d under 30 %% loss: %v", i+1, n, err)
			}
			slowest = max(slowest, time.Since(t0))
			_ = c.Close("next")
		}
		total := time.Since(start)
		if total > 300*time.Second {
			t.Errorf("%d connections under 30 %% loss took %v, want at most 300 s", n, total)
		}
		t.Logf("S17a: %d of %d connections under 30 %% loss each way in %v (slowest %v)", n, n, total.Round(100*time.Millisecond), slowest.Round(time.Millisecond))
	})
	t.Run("tcp-2pct", func(t *testing.T) {
		t.Parallel()
		tp := newTopo(t, 1, false)
		hub, sites := tp.up(t, false)
		s := tp.sites[0]
		lossy(t, tp, s, 2)
		ok, took := innerTransfer(t, tp, s, 9017, 10<<20, 0, 120*time.Second)
		if !ok {
			t.Errorf("10 MB of inner TCP under 2 %% loss: not received intact")
		}
		for _, d := range []interface{ LogLines(...string) []string }{hub, sites[0]} {
			if n := len(d.LogLines(`msg="peer connected"`)); n != 1 {
				t.Errorf("%d connections logged, want exactly 1", n)
			}
		}
		t.Logf("S17b: 10 MB of inner TCP under 2 %% loss each way in %v, intact %v", took.Round(100*time.Millisecond), ok)
	})
}
