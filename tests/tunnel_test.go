// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// TestTwoSite carries inner IPv4 and IPv6 over an outer IPv4 and IPv6
// underlay between a hub and one site: ping, a TCP transfer with content
// check and UDP request/response, each both ways.
func TestTwoSite(t *testing.T) {
	labtest.RequireRoot(t)
	for _, outer := range []string{"v4", "v6"} {
		t.Run("outer="+outer, func(t *testing.T) {
			tp := newTopo(t, 1, false)
			_, siteD := tp.up(t, outer == "v6")
			s := tp.sites[0]
			h4, h6 := tunAddrs(0)
			s4, s6 := tunAddrs(1)
			for _, inner := range []struct {
				name      string
				hub, site netip.Addr
			}{{"v4", h4, s4}, {"v6", h6, s6}} {
				t.Run("inner="+inner.name, func(t *testing.T) {
					pingOK(t, s.ns, inner.hub)
					pingOK(t, tp.hub, inner.site)
					tcpEcho(t, tp.hub, s.ns, inner.hub, 8001)
					tcpEcho(t, s.ns, tp.hub, inner.site, 8002)
					udpEcho(t, tp.hub, s.ns, inner.hub, 9001)
					udpEcho(t, s.ns, tp.hub, inner.site, 9002)
				})
			}
			// The connection must have stayed up through the load.
			if n := len(siteD[0].LogLines("peer connected")); n != 1 {
				t.Errorf("site logged %d connects, want 1", n)
			}
			if got := fmt.Sprint(addrs(t, s.ns, tunName)); got != fmt.Sprint([]netip.Prefix{netip.PrefixFrom(s4, 24), netip.PrefixFrom(s6, 64)}) &&
				got != fmt.Sprint([]netip.Prefix{netip.PrefixFrom(s6, 64), netip.PrefixFrom(s4, 24)}) {
				t.Errorf("site %s addresses = %v, want %v/24 and %v/64", tunName, got, s4, s6)
			}
		})
	}
}

// TestHubAndSpoke has a hub and two sites, each with a LAN behind it: every
// LAN host reaches every other LAN host (spoke to spoke through the hub)
// and the hub, over IPv4 and IPv6.
func TestHubAndSpoke(t *testing.T) {
	tp := newTopo(t, 2, true)
	tp.up(t, false)
	hosts := []struct {
		name string
		i    int
	}{{"lan-hub", 0}, {"lan-s1", 1}, {"lan-s2", 2}}
	lanNS := func(i int) *netlab.NS {
		if i == 0 {
			return tp.lanH
		}
		return tp.sites[i-1].lan
	}
	h4, h6 := tunAddrs(0)
	for _, from := range hosts {
		for _, to := range hosts {
			if from == to {
				continue
			}
			d4, d6 := lanHost(to.i)
			for _, dst := range []netip.Addr{d4, d6} {
				t.Run(fmt.Sprintf("%s->%s/%v", from.name, to.name, dst), func(t *testing.T) {
					pingOK(t, lanNS(from.i), dst)
				})
			}
		}
		if from.i != 0 {
			for _, dst := range []netip.Addr{h4, h6} {
				t.Run(fmt.Sprintf("%s->hub/%v", from.name, dst), func(t *testing.T) {
					pingOK(t, lanNS(from.i), dst)
				})
			}
		}
	}
	// One TCP transfer spoke to spoke, LAN to LAN.
	d4, _ := lanHost(2)
	tcpEcho(t, tp.sites[1].lan, tp.sites[0].lan, d4, 8003)
}
