// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// firewallTable is the site's nftables table (routing/firewall.go).
const firewallTable = "godwit_" + tunName

// TestTunnelAddressFromOutside is S7 (CVE-2019-14899): a neighbour on the
// site's physical link sends to the site's tunnel address (TCP SYNs, 20/s
// for 1 s) and UDP that claims to come from the hub's tunnel address. The
// site must answer nothing (0 RSTs) and deliver nothing; without its table
// (the positive control) both get through.
func TestTunnelAddressFromOutside(t *testing.T) {
	tp := newTopo(t, 1, false)
	_, sites := tp.up(t, false)
	s, site := tp.sites[0], sites[0]
	site4, _ := tunAddrs(s.i)
	hub4, _ := tunAddrs(0)
	su4, _ := underlay(s.i, 2)
	// The neighbour (the hub's namespace, off the tunnel) routes the
	// site's tunnel address over the physical link.
	if _, err := tp.hub.Exec("ip", "route", "add", site4.String()+"/32", "via", su4.String()); err != nil {
		t.Fatal(err)
	}
	// RSTs the site sends back over its physical link, counted on their
	// way out (the hub's own table would drop them on arrival: their
	// source is the site's tunnel address).
	loadNft(t, s.ns, tp.lab.Dir+"/s7.nft", `table inet s7 {
	counter rst {}
	chain out {
		type filter hook postrouting priority 0; policy accept;
		oifname "up0" tcp flags & rst != 0 counter name "rst"
	}
}
`)
	rstSent := func() int { p, _ := nftCounterIn(t, s.ns, "s7", "rst"); return int(p) }
	const udpPort = 9099
	lc, err := s.ns.ListenUDP(fmt.Sprintf("0.0.0.0:%d", udpPort))
	must(t, err)
	defer lc.Close()

	probe := func() (rsts, delivered int) {
		t.Helper()
		before := rstSent()
		for i := range 20 {
			_ = tp.hub.Do(func() error {
				c, err := net.DialTimeout("tcp", netip.AddrPortFrom(site4, 22).String(), 50*time.Millisecond)
				if err == nil {
					c.Close()
				}
				return err
			})
			// UDP from the hub's own tunnel address, over the physical link.
			must(t, tp.hub.Do(func() error {
				c, err := net.DialUDP("udp", &net.UDPAddr{IP: hub4.AsSlice()}, &net.UDPAddr{IP: site4.AsSlice(), Port: udpPort})
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write([]byte{byte(i)})
				return err
			}))
		}
		rsts = rstSent() - before
		buf := make([]byte, 16)
		for {
			_ = lc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if _, _, err := lc.ReadFrom(buf); err != nil {
				break
			}
			delivered++
		}
		return rsts, delivered
	}
	rsts, delivered := probe()
	if rsts != 0 || delivered != 0 {
		t.Errorf("with the site's table: %d RSTs to 20 SYNs, %d of 20 spoofed datagrams delivered; want 0 and 0", rsts, delivered)
	}
	t.Logf("S7 with the table: %d RSTs, %d spoofed datagrams delivered", rsts, delivered)

	// Positive control: without the table both get through, so the probe
	// can tell.
	if _, err := s.ns.Exec("nft", "delete", "table", "inet", firewallTable); err != nil {
		t.Fatal(err)
	}
	rsts, delivered = probe()
	if rsts == 0 || delivered == 0 {
		t.Errorf("without the table: %d RSTs, %d datagrams delivered; the probe cannot tell", rsts, delivered)
	}
	t.Logf("S7 positive control without the table: %d RSTs, %d of 20 spoofed datagrams delivered", rsts, delivered)
	site.Stop(t, 5*time.Second)
}

// TestKillSwitch is S13: a full-tunnel site with kill_switch = true sends
// nothing in clear (probes to the hub's physical address: TCP :1337, UDP
// :53, ICMP) in every state: connecting (hub down), connected, daemon
// killed, restarting, and after a restart that fails on a bad config. A
// clean stop lifts it. The positive control, without the kill switch, leaks
// after the kill.
func TestKillSwitch(t *testing.T) {
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	hu4, _ := underlay(s.i, 1)
	su4, _ := underlay(s.i, 2)
	// The hub's namespace counts what reaches it from the site in clear
	// (everything but the QUIC port).
	loadNft(t, tp.hub, tp.lab.Dir+"/leak.nft", fmt.Sprintf(`table inet leak {
	counter clear {}
	chain in {
		type filter hook prerouting priority -400; policy accept;
		ip saddr %s udp dport != %d counter name "clear"
		ip saddr %s meta l4proto != udp counter name "clear"
	}
}
`, su4, port, su4))
	leaked := func() uint64 { p, _ := nftCounterIn(t, tp.hub, "leak", "clear"); return p }
	probe := func() {
		t.Helper()
		_ = s.ns.Do(func() error {
			if c, err := net.DialTimeout("tcp", netip.AddrPortFrom(hu4, 1337).String(), 100*time.Millisecond); err == nil {
				c.Close()
			}
			if c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: hu4.AsSlice(), Port: 53}); err == nil {
				_, _ = c.Write([]byte("dns?"))
				c.Close()
			}
			return nil
		})
		_, _ = s.ns.Ping(hu4, 1, 50*time.Millisecond, 200*time.Millisecond)
	}
	conf := tp.fullTunnelConf(s)
	conf.extra = append(conf.extra, "kill_switch = true")
	hubConf := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))

	check := func(state string) {
		t.Helper()
		before := leaked()
		probe()
		time.Sleep(100 * time.Millisecond)
		if n := leaked() - before; n != 0 {
			t.Errorf("kill switch, %s: %d probe packets reached the hub in clear, want 0", state, n)
		} else {
			t.Logf("kill switch, %s: 0 probe packets in clear", state)
		}
	}

	site := tp.start(t, s.ns, conf)
	site.WaitLog(t, 10*time.Second, "godwit running")
	check("connecting (hub down)")
	hub := tp.start(t, tp.hub, hubConf)
	site.WaitConnected(t, "hub")
	check("connected")
	must(t, site.Signal(syscall.SIGKILL))
	_, _ = site.Wait(5 * time.Second)
	check("daemon killed")
	conf.name = "site-again"
	site = tp.start(t, s.ns, conf)
	check("restarting")
	site.WaitConnected(t, "hub")
	must(t, site.Signal(syscall.SIGKILL))
	_, _ = site.Wait(5 * time.Second)
	bad := conf
	bad.name = "site-bad"
	bad.extra = append(bad.extra, "mtu = 1")
	b := tp.start(t, s.ns, bad)
	if code, err := b.Wait(10 * time.Second); err != nil || code != 78 {
		t.Errorf("bad config: exit %d, %v; want 78", code, err)
	}
	check("after a start that failed on a bad config")

	// A clean stop lifts the kill switch: the probes leave again.
	conf.name = "site-last"
	site = tp.start(t, s.ns, conf)
	site.WaitConnected(t, "hub")
	site.Stop(t, 5*time.Second)
	if linkExists(t, s.ns, tunName) {
		t.Fatalf("%s still there after the stop", tunName)
	}
	before := leaked()
	probe()
	if leaked() == before {
		t.Errorf("after a clean stop the probes still do not leave: the kill switch was not lifted")
	}

	// Positive control: without the kill switch, a killed daemon leaks.
	noKS := tp.fullTunnelConf(s)
	noKS.name = "site-noks"
	site = tp.start(t, s.ns, noKS)
	site.WaitConnected(t, "hub")
	must(t, site.Signal(syscall.SIGKILL))
	_, _ = site.Wait(5 * time.Second)
	before = leaked()
	probe()
	if leaked() == before {
		t.Errorf("positive control: without the kill switch a killed daemon's probes did not leak; the probe cannot tell")
	} else {
		t.Logf("positive control without the kill switch: %d probe packets in clear after the kill", leaked()-before)
	}
	hub.Stop(t, 5*time.Second)
}
