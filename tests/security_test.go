// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// refusalWords are the words one of which a log line explaining a refused
// peer must contain (case-insensitive).
var refusalWords = []string{"refus", "reject", "unknown", "not pinned", "mismatch", "not allowed", "not authorized", "unauthorized", "untrusted", "denied"}

func refusals(d *labtest.Daemon) []string {
	var found []string
	for line := range strings.Lines(strings.ToLower(d.Output())) {
		for _, w := range refusalWords {
			if strings.Contains(line, w) {
				found = append(found, strings.TrimSpace(line))
				break
			}
		}
	}
	return found
}

// TestWrongKey checks that key pinning holds both ways: a site whose key the
// hub does not know, and a site that pins a key other than the hub's, never
// connect, carry no traffic, and the refusing side says why.
func TestWrongKey(t *testing.T) {
	labtest.RequireRoot(t)
	tests := []struct {
		name     string
		badSite  bool // the hub pins another key for the site
		refuserH bool // the hub is the side that must log the refusal
	}{
		{name: "unknown-site-key", badSite: true, refuserH: true},
		{name: "wrong-hub-key", badSite: false, refuserH: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTopo(t, 1, false)
			s := tp.sites[0]
			other := genKey(t, tp.lab, "other")
			hc := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
			sc := tp.siteConf(s, false)
			if tt.badSite {
				hc.peers[0].pub = other.pub
			} else {
				sc.peers[0].pub = other.pub
			}
			hub := tp.start(t, tp.hub, hc)
			site := tp.start(t, s.ns, sc)
			refuser := site
			if tt.refuserH {
				refuser = hub
			}
			if !labtest.Eventually(10*time.Second, func() bool { return len(refusals(refuser)) > 0 }) {
				t.Errorf("%s log shows no refusal (a line with one of %q) within 10 s", refuser.Name, refusalWords)
			}
			h4, _ := tunAddrs(0)
			r, err := s.ns.Ping(h4, 10, 200*time.Millisecond, 500*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if r.Received != 0 {
				t.Errorf("ping %v from the site: %d of %d replies, want none", h4, r.Received, r.Sent)
			}
			for _, d := range []*labtest.Daemon{hub, site} {
				if l := d.LogLines("peer connected"); len(l) > 0 {
					t.Errorf("%s logged %q, want no connection", d.Name, l)
				}
				if code, err := d.Wait(0); err == nil {
					t.Errorf("%s exited with %d, want it to keep running", d.Name, code)
				}
			}
			if !tt.refuserH {
				// The hub says so too, and how to fix it.
				hub.WaitLog(t, 5*time.Second, "level=WARN", "a peer refused this node's key")
			}
			// The site's `godwit show` says why it is not connected.
			p := site.Peer(t, "hub")
			if p.State != "connecting" || p.LastError == "" || p.LastErrorAt.IsZero() {
				t.Errorf("site: godwit show peer hub: state %s, last error %q at %v; want connecting with the reason", p.State, p.LastError, p.LastErrorAt)
			} else {
				t.Logf("site's last error: %s", p.LastError)
			}
			t.Logf("refusal in %s: %q", refuser.Name, refusals(refuser)[:min(1, len(refusals(refuser)))])
		})
	}
}

// transparentUDP opens a UDP socket in ns bound to src, which need not be a
// local address (IP_TRANSPARENT), so the kernel sends with that source.
func transparentUDP(t *testing.T, ns *netlab.NS, src netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() error {
		family := unix.AF_INET
		if src.Addr().Is6() {
			family = unix.AF_INET6
		}
		fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var sa unix.Sockaddr
		if src.Addr().Is6() {
			err = unix.SetsockoptInt(fd, unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
			sa = &unix.SockaddrInet6{Port: int(src.Port()), Addr: src.Addr().As16()}
		} else {
			err = unix.SetsockoptInt(fd, unix.SOL_IP, unix.IP_TRANSPARENT, 1)
			sa = &unix.SockaddrInet4{Port: int(src.Port()), Addr: src.Addr().As4()}
		}
		if err == nil {
			err = unix.Bind(fd, sa)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("transparent socket on %v: %w", src, err)
		}
		f := os.NewFile(uintptr(fd), src.String())
		defer f.Close()
		fc, err := net.FilePacketConn(f)
		if err != nil {
			return err
		}
		c = fc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSpoofedSource sends UDP from the site into the tunnel with inner
// sources outside the site's allowed-IPs: the hub must drop them, while
// packets from the site's real tunnel address arrive.
func TestSpoofedSource(t *testing.T) {
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	nftCounters(t, tp.lab, s.ns, map[string]string{
		"spoof4": `oifname "gw0" ip saddr { 198.19.0.99, 192.0.2.77 } udp dport 9100`,
		"spoof6": `oifname "gw0" ip6 saddr { 2001:db8:77::99, 2001:db8:ff::77 } udp dport 9100`,
	})
	tp.up(t, false)
	h4, h6 := tunAddrs(0)
	s4, s6 := tunAddrs(1)
	for _, fam := range []struct {
		name    string
		dst     netip.Addr
		legit   netip.Addr
		spoofs  []netip.Addr
		counter string
	}{
		{"v4", h4, s4, []netip.Addr{netip.MustParseAddr("198.19.0.99"), netip.MustParseAddr("192.0.2.77")}, "spoof4"},
		{"v6", h6, s6, []netip.Addr{netip.MustParseAddr("2001:db8:77::99"), netip.MustParseAddr("2001:db8:ff::77")}, "spoof6"},
	} {
		t.Run(fam.name, func(t *testing.T) {
			dst := netip.AddrPortFrom(fam.dst, 9100)
			ln, err := tp.hub.ListenUDP(dst.String())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := make(chan netip.Addr, 1000)
			go func() {
				buf := make([]byte, 2048)
				for {
					_, from, err := ln.ReadFromUDPAddrPort(buf)
					if err != nil {
						close(got)
						return
					}
					got <- from.Addr().Unmap()
				}
			}()
			var spoofers []*net.UDPConn
			for _, a := range fam.spoofs {
				c := transparentUDP(t, s.ns, netip.AddrPortFrom(a, 9200))
				defer c.Close()
				spoofers = append(spoofers, c)
			}
			legit := transparentUDP(t, s.ns, netip.AddrPortFrom(fam.legit, 9200))
			defer legit.Close()

			// Rounds of spoofed packets, each followed by a legitimate one,
			// until a legitimate one arrives: by then the spoofed packets
			// sent before it have had their chance to arrive too.
			arrived := false
			var spoofed []netip.Addr
			deadline := time.After(10 * time.Second)
		rounds:
			for round := 0; round < 40 && !arrived; round++ {
				for _, c := range spoofers {
					for range 5 {
						if _, err := c.WriteToUDPAddrPort([]byte("spoofed"), dst); err != nil {
							t.Fatalf("spoofed send: %v", err)
						}
					}
				}
				if _, err := legit.WriteToUDPAddrPort([]byte("legit"), dst); err != nil {
					t.Fatalf("legitimate send: %v", err)
				}
				wait := time.After(250 * time.Millisecond)
				for {
					select {
					case a := <-got:
						if a == fam.legit {
							arrived = true
						} else {
							spoofed = append(spoofed, a)
						}
						continue
					case <-wait:
					case <-deadline:
						break rounds
					}
					break
				}
			}
			if !arrived {
				t.Fatalf("no packet from the legitimate source %v reached %v", fam.legit, dst)
			}
			time.Sleep(300 * time.Millisecond)
			for len(got) > 0 {
				if a := <-got; a != fam.legit {
					spoofed = append(spoofed, a)
				}
			}
			if len(spoofed) > 0 {
				t.Errorf("the hub delivered %d packets with spoofed sources %v, want none", len(spoofed), spoofed)
			}
			// The spoofed packets really went into the site's TUN: the
			// hub, not the site's kernel, is what stopped them.
			if n := nftCounter(t, s.ns, fam.counter); n == 0 {
				t.Errorf("nft counter %s = 0: no spoofed packet entered the site's TUN, so the test proved nothing", fam.counter)
			}
		})
	}
}
