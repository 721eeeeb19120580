// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
)

// TestTunnelIsARouterHop is scenario S6 (c) on real daemons: the tunnel
// forwards like a router. A ping with TTL 64 from the site to the hub's
// tunnel address comes back with TTL 63 (the hub answers with 64, and the
// site's tunnel takes one off, as the hub's took one off the request);
// a ping with TTL 1 is not delivered to the hub, which answers with an
// ICMP time exceeded from its tunnel address instead.
func TestTunnelIsARouterHop(t *testing.T) {
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	tp.up(t, false)
	h4, h6 := tunAddrs(0)
	for _, a := range []netip.Addr{h4, h6} {
		pingOK(t, s.ns, a)
		dst := a.String()
		out, _ := s.ns.Exec("ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", "-t", "64", dst)
		ttls := regexp.MustCompile(`(?:ttl|hlim)=(\d+)`).FindAllStringSubmatch(out, -1)
		if len(ttls) == 0 {
			t.Errorf("ping -t 64 %s: no replies:\n%s", dst, out)
		}
		for _, m := range ttls {
			if m[1] != "63" {
				t.Errorf("ping -t 64 %s: reply with TTL %s, want 63 (one tunnel hop):\n%s", dst, m[1], out)
				break
			}
		}
		out, _ = s.ns.Exec("ping", "-n", "-c", "2", "-i", "0.2", "-W", "2", "-t", "1", dst)
		if !strings.Contains(out, "0 received") || !strings.Contains(strings.ToLower(out), "time exceeded") && !strings.Contains(out, "Time to live exceeded") {
			t.Errorf("ping -t 1 %s: want no reply and a time exceeded:\n%s", dst, out)
		}
		if !strings.Contains(out, fmt.Sprintf("From %s ", dst)) {
			t.Errorf("ping -t 1 %s: want the time exceeded from the hub's tunnel address %s:\n%s", dst, dst, out)
		}
	}
}
