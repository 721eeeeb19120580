// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// TestAmplification (S8, issue 15 item 7): nft in the hub's namespace lets
// only the site's first flight in (its ClientHello fills two 1378-byte
// Initial packets, 2,756 bytes: "quota over 2800 bytes" passes exactly
// those) and counts the IP bytes each way. The hub, which never sees the
// site's address validated, must send at most 3 times what it received,
// also after its probe timeouts.
func TestAmplification(t *testing.T) {
	labtest.RequireRoot(t)
	needNft(t, "TestAmplification")
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	hc := nodeConf{name: "hub", key: tp.hubK, listen: fmt.Sprintf("0.0.0.0:%d", port),
		addrs: []string{netip.PrefixFrom(floodTun(0), 24).String()},
		peers: []peerConf{{name: s.name(), pub: s.k.pub, allowed: prefixes(floodTun(1))}}}
	loadNft(t, tp.hub, filepath.Join(tp.lab.Dir, "amp.nft"), fmt.Sprintf(`table inet amp {
	quota first { over 2800 bytes }
	counter in {}
	counter out {}
	chain in {
		type filter hook input priority -300; policy accept;
		udp dport %[1]d quota name "first" drop
		udp dport %[1]d counter name "in"
	}
	chain out {
		type filter hook output priority 0; policy accept;
		udp sport %[1]d counter name "out"
	}
}
`, port))
	tp.start(t, tp.hub, hc)
	tp.start(t, s.ns, floodSiteConf(tp, 1))
	// The site redials; the hub answers each new connection's first
	// flight only if the quota let it in, which it does once.
	time.Sleep(8 * time.Second)
	inP, in := nftCounterIn(t, tp.hub, "amp", "in")
	outP, out := nftCounterIn(t, tp.hub, "amp", "out")
	ratio := float64(out) / float64(in)
	t.Logf("before validation: hub received %d packets, %d bytes; sent %d packets, %d bytes: %.2fx", inP, in, outP, out, ratio)
	if inP != 2 {
		t.Errorf("the quota let %d packets in, want the first flight's 2", inP)
	}
	if ratio > 3 {
		t.Errorf("the hub sent %.2fx what it received before validating the site's address, want <= 3", ratio)
	}
}
