// SPDX-License-Identifier: MIT

package tests

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// TestHubRestartStatelessReset kills the hub with SIGKILL (no
// CONNECTION_CLOSE, no Goodbye) and starts it again on the same state
// directory. The site's next packet on the old connection meets the
// restarted hub, which knows the persisted stateless-reset key and answers
// with a stateless reset: the site notices at once (not at the idle
// timeout), redials without waiting for the backoff floor, and the tunnel
// carries pings again within about one round trip plus the new handshake.
func TestHubRestartStatelessReset(t *testing.T) {
	tp := newTopo(t, 1, false)
	hub, sites := tp.up(t, false)
	s, site := tp.sites[0], sites[0]
	hub4, _ := tunAddrs(0)
	if err := s.ns.WaitPing(hub4, 5*time.Second); err != nil {
		t.Fatalf("before the restart: %v", err)
	}

	must(t, hub.Signal(syscall.SIGKILL))
	if _, err := hub.Wait(5 * time.Second); err != nil {
		t.Fatalf("hub after SIGKILL: %v", err)
	}
	cfg := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port)).write(t, tp.lab) // the same file and state dir
	hub2 := labtest.StartDaemon(t, tp.hub, "hub-restarted", cfg)
	hub2.WaitLog(t, labtest.ConnectWithin, "quicconn: listening")

	start := time.Now()
	if err := s.ns.WaitPing(hub4, 3*time.Second); err != nil {
		t.Fatalf("after the hub restart: %v", err)
	}
	back := time.Since(start)
	site.WaitLog(t, 5*time.Second, "quicconn: connection ended, redialing", `reason="stateless reset"`, "retry_in=0s")
	site.WaitLog(t, 5*time.Second, "quicconn: redialed", `reason="stateless reset"`, "outage=")
	hub2.WaitConnected(t, s.name())
	// The redial resumed with 0-RTT: the latest handshake is the new
	// connection's, on both ends, not missing (a "handshake too old"
	// alert copied from WireGuard must not misfire).
	for _, side := range []struct {
		d    *labtest.Daemon
		peer string
	}{{site, "hub"}, {hub2, s.name()}} {
		if !labtest.Eventually(5*time.Second, func() bool { return !side.d.Peer(t, side.peer).LastHandshake.Before(start) }) {
			t.Errorf("%s: latest handshake of peer %s is %v, want one after the restart (%v)",
				side.d.Name, side.peer, side.d.Peer(t, side.peer).LastHandshake, start)
		}
	}
	if n := len(site.LogLines("idle timeout")); n != 0 {
		t.Errorf("site logged %d idle timeouts, want the stateless reset to end the old connection", n)
	}
	t.Logf("pings back %v after the restarted hub listened", back.Round(time.Millisecond))
}
