// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// topo is the hub-and-spoke lab drawn in the package doc.
type topo struct {
	lab   *netlab.Lab
	hub   *netlab.NS
	hubK  key
	sites []*site
	lanH  *netlab.NS // host behind the hub; nil without LANs
}

// site is spoke i (1-based) of a topo.
type site struct {
	i   int
	ns  *netlab.NS
	k   key
	lan *netlab.NS // host behind the site; nil without LANs
}

func (s *site) name() string { return fmt.Sprintf("s%d", s.i) }

// tunAddrs returns the tunnel addresses of the hub (i == 0) or site i:
// 198.19.0.1 and 2001:db8:77::1, ... (the test ranges of TESTING.md, as
// every address in these tests).
func tunAddrs(i int) (v4, v6 netip.Addr) {
	return netip.AddrFrom4([4]byte{198, 19, 0, byte(i + 1)}), netip.MustParseAddr(fmt.Sprintf("2001:db8:77::%d", i+1))
}

// underlay returns the hub's (end 1) or the site's (end 2) underlay
// addresses on the link to site i.
func underlay(i, end int) (v4, v6 netip.Addr) {
	return netip.AddrFrom4([4]byte{198, 18, byte(i), byte(end)}), netip.MustParseAddr(fmt.Sprintf("2001:db8:%d::%d", i, end))
}

// lanNet returns the LAN prefixes behind the hub (i == 0) or site i:
// 198.19.10.0/24 and 2001:db8:f10::/64, 198.19.20.0/24 and 2001:db8:f20::/64, ...
func lanNet(i int) (v4, v6 netip.Prefix) {
	n := 10 * (i + 1)
	return netip.MustParsePrefix(fmt.Sprintf("198.19.%d.0/24", n)), netip.MustParsePrefix(fmt.Sprintf("2001:db8:f%d::/64", n))
}

// lanHost returns the addresses of the host in the LAN behind node i.
func lanHost(i int) (v4, v6 netip.Addr) {
	p4, p6 := lanNet(i)
	return p4.Addr().Next().Next(), p6.Addr().Next().Next()
}

// newTopo builds the hub, n sites with underlay links, keys for all, and
// (with lans) a LAN namespace behind every node. Forwarding is on in the
// hub and the sites. No daemon runs yet.
func newTopo(t *testing.T, n int, lans bool) *topo {
	t.Helper()
	l := labtest.NewLab(t, "gwt")
	tp := &topo{lab: l}
	var err error
	tp.hub, err = l.NS("hub")
	must(t, err)
	tp.hubK = genKey(t, l, "hub")
	fwd := func(ns *netlab.NS) {
		must(t, ns.Sysctl("net.ipv4.ip_forward", "1"))
		must(t, ns.Sysctl("net.ipv6.conf.all.forwarding", "1"))
	}
	fwd(tp.hub)
	for i := 1; i <= n; i++ {
		s := &site{i: i}
		s.ns, err = l.NS(fmt.Sprintf("s%d", i))
		must(t, err)
		s.k = genKey(t, l, s.name())
		fwd(s.ns)
		hubIf := fmt.Sprintf("up%d", i)
		must(t, l.Link(tp.hub, hubIf, s.ns, "up0"))
		h4, h6 := underlay(i, 1)
		s4, s6 := underlay(i, 2)
		must(t, tp.hub.Addr(hubIf, netip.PrefixFrom(h4, 24).String()))
		must(t, tp.hub.Addr(hubIf, netip.PrefixFrom(h6, 64).String()))
		must(t, s.ns.Addr("up0", netip.PrefixFrom(s4, 24).String()))
		must(t, s.ns.Addr("up0", netip.PrefixFrom(s6, 64).String()))
		tp.sites = append(tp.sites, s)
	}
	if lans {
		tp.lanH = addLAN(t, l, tp.hub, 0)
		for _, s := range tp.sites {
			s.lan = addLAN(t, l, s.ns, s.i)
		}
	}
	return tp
}

// addLAN hangs a host namespace off router (node i) on a new LAN.
func addLAN(t *testing.T, l *netlab.Lab, router *netlab.NS, i int) *netlab.NS {
	t.Helper()
	host, err := l.NS(fmt.Sprintf("lan%d", i))
	must(t, err)
	must(t, l.Link(router, "lan0", host, "eth0"))
	p4, p6 := lanNet(i)
	h4, h6 := lanHost(i)
	r4, r6 := p4.Addr().Next(), p6.Addr().Next()
	must(t, router.Addr("lan0", netip.PrefixFrom(r4, 24).String()))
	must(t, router.Addr("lan0", netip.PrefixFrom(r6, 64).String()))
	must(t, host.Addr("eth0", netip.PrefixFrom(h4, 24).String()))
	must(t, host.Addr("eth0", netip.PrefixFrom(h6, 64).String()))
	_, err = host.Exec("ip", "route", "add", "default", "via", r4.String())
	must(t, err)
	_, err = host.Exec("ip", "-6", "route", "add", "default", "via", r6.String())
	must(t, err)
	return host
}

// prefixes formats addresses and prefixes for allowed_ips.
func prefixes(ps ...any) []string {
	var out []string
	for _, p := range ps {
		switch v := p.(type) {
		case netip.Addr:
			out = append(out, netip.PrefixFrom(v, v.BitLen()).String())
		case netip.Prefix:
			out = append(out, v.String())
		case string:
			out = append(out, v)
		default:
			panic(fmt.Sprintf("prefixes: %T", p))
		}
	}
	return out
}

// siteAllowed is what the hub accepts from site s: its tunnel addresses
// and, in a topo with LANs, its LAN.
func (tp *topo) siteAllowed(s *site) []string {
	a4, a6 := tunAddrs(s.i)
	if s.lan == nil {
		return prefixes(a4, a6)
	}
	l4, l6 := lanNet(s.i)
	return prefixes(a4, a6, l4, l6)
}

// hubAllowed is what site s routes to the hub: the hub's tunnel addresses
// and every other node's LAN.
func (tp *topo) hubAllowed(s *site) []string {
	a4, a6 := tunAddrs(0)
	out := prefixes(a4, a6)
	if tp.lanH != nil {
		l4, l6 := lanNet(0)
		out = append(out, prefixes(l4, l6)...)
	}
	for _, o := range tp.sites {
		if o != s && o.lan != nil {
			l4, l6 := lanNet(o.i)
			out = append(out, prefixes(l4, l6)...)
		}
	}
	return out
}

// hubConf is the hub's config: it listens and knows every site.
func (tp *topo) hubConf(listen string) nodeConf {
	a4, a6 := tunAddrs(0)
	c := nodeConf{name: "hub", key: tp.hubK, listen: listen,
		addrs: prefixes(netip.PrefixFrom(a4, 24), netip.PrefixFrom(a6, 64))}
	for _, s := range tp.sites {
		c.peers = append(c.peers, peerConf{name: s.name(), pub: s.k.pub, allowed: tp.siteAllowed(s)})
	}
	return c
}

// siteConf is site s's config: it dials the hub over the v4 (or, with v6,
// the v6) underlay.
func (tp *topo) siteConf(s *site, v6 bool) nodeConf {
	a4, a6 := tunAddrs(s.i)
	h4, h6 := underlay(s.i, 1)
	ep := netip.AddrPortFrom(h4, port)
	if v6 {
		ep = netip.AddrPortFrom(h6, port)
	}
	return nodeConf{name: s.name(), key: s.k,
		addrs: prefixes(netip.PrefixFrom(a4, 24), netip.PrefixFrom(a6, 64)),
		peers: []peerConf{{name: "hub", pub: tp.hubK.pub, allowed: tp.hubAllowed(s), endpoint: ep.String()}},
	}
}

// start writes c and runs a daemon with it in ns.
func (tp *topo) start(t *testing.T, ns *netlab.NS, c nodeConf) *labtest.Daemon {
	t.Helper()
	return startNode(t, tp.lab, ns, c)
}

// up starts the hub and every site with default configs and waits until
// every connection is up on both ends.
func (tp *topo) up(t *testing.T, v6 bool) (hub *labtest.Daemon, sites []*labtest.Daemon) {
	t.Helper()
	listen := fmt.Sprintf("0.0.0.0:%d", port)
	if v6 {
		listen = fmt.Sprintf("[::]:%d", port)
	}
	hub = tp.start(t, tp.hub, tp.hubConf(listen))
	for _, s := range tp.sites {
		sites = append(sites, tp.start(t, s.ns, tp.siteConf(s, v6)))
	}
	for i, s := range tp.sites {
		sites[i].WaitConnected(t, "hub")
		hub.WaitConnected(t, s.name())
	}
	return hub, sites
}
