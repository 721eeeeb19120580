// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// retryIn matches the delay of a dial loop's log line.
var retryIn = regexp.MustCompile(`retry_in=([0-9.]+[mµn]?s)`)

// redialDelays returns the retry_in delays of the dial loop's log lines
// among lines.
func redialDelays(t *testing.T, lines []string) []time.Duration {
	t.Helper()
	var ds []time.Duration
	for _, l := range lines {
		if m := retryIn.FindStringSubmatch(l); m != nil {
			d, err := time.ParseDuration(m[1])
			if err != nil {
				t.Fatalf("retry_in in %q: %v", l, err)
			}
			ds = append(ds, d)
		}
	}
	return ds
}

// TestRevokedSiteBacksOff removes a site from its hub (SIGHUP) while the
// site is down, then starts the site again: it holds a session ticket
// from before, so it dials with 0-RTT and its connection exists until the
// hub refuses the handshake. That must count as a failed dial: the site
// tells systemd READY with "0/1 peers connected" (after ready_wait), logs
// no "peer connected", and backs off to the cap (lowered to 2 s with
// GODWIT_DEBUG_REDIAL_MAX) instead of redialing every RedialMin (0.31 s
// measured before the fix).
func TestRevokedSiteBacksOff(t *testing.T) {
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	full := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
	hubPath := full.write(t, tp.lab)
	hub := labtest.StartDaemon(t, tp.hub, "hub", hubPath)
	const redialMax = 2 * time.Second
	env := "GODWIT_DEBUG_REDIAL_MAX=" + redialMax.String()
	sitePath := tp.siteConf(s, false).write(t, tp.lab)
	setInterfaceKey(t, sitePath, `ready_wait = "3s"`)
	site := labtest.StartDaemon(t, s.ns, "s1", sitePath, env)
	site.WaitConnected(t, "hub")
	hub.WaitConnected(t, s.name())
	site.WaitLog(t, 5*time.Second, "saved session ticket")
	site.Stop(t, 5*time.Second)

	// Revoke: the hub forgets the site's key.
	revoked := full
	revoked.peers = nil
	revoked.write(t, tp.lab)
	must(t, hub.Signal(syscall.SIGHUP))
	hub.WaitLog(t, 5*time.Second, "peer removed")

	start := time.Now()
	site2, n := startNotified(t, tp.lab, s.ns, "s1b", sitePath, env)
	r := n.next(t, 15*time.Second, "READY", "1")
	if st := r.fields["STATUS"]; !strings.Contains(st, "0/1 peers connected") {
		t.Errorf("revoked site: STATUS with READY=1 = %q, want 0/1 peers connected", st)
	}
	if len(site2.LogLines("loaded session ticket")) == 0 {
		t.Errorf("the restarted site loaded no session ticket: the test does not cover 0-RTT")
	}
	const watch = 12 * time.Second
	time.Sleep(watch - time.Since(start))
	if got := site2.LogLines("peer connected"); len(got) > 0 {
		t.Errorf("the revoked site logged %q", got)
	}
	ds := redialDelays(t, site2.LogLines(""))
	t.Logf("redial delays of the revoked site over %v: %v", watch, ds)
	// 250 ms doubling to the 2 s cap, +-50 %: about 9 attempts in 12 s;
	// every RedialMin would be about 40.
	if len(ds) > 14 {
		t.Errorf("the revoked site redialed %d times in %v, want at most 14 (backing off to %v)", len(ds), watch, redialMax)
	}
	if len(ds) < 3 || ds[len(ds)-1] < redialMax/2 {
		t.Errorf("redial delays %v: want them to grow to about %v", ds, redialMax)
	}
	if got := len(hub.LogLines("peer connected")); got != 1 {
		t.Errorf("the hub logged %d \"peer connected\", want the one before the revocation", got)
	}
}
