// SPDX-License-Identifier: MIT

package tests

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// TestReloadKeepsUnchangedPeer reloads a hub with two sites, A and B, under
// a 100 Hz ping to A, with a config that removes B and changes nothing for
// A: A loses no ping, B is disconnected with a reason and its routes leave
// the hub within 1 s. Re-adding B reconnects it.
func TestReloadKeepsUnchangedPeer(t *testing.T) {
	tp := newTopo(t, 2, true)
	a, b := tp.sites[0], tp.sites[1]
	full := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
	hubPath := full.write(t, tp.lab)
	hub := labtest.StartDaemon(t, tp.hub, "hub", hubPath)
	tp.start(t, a.ns, tp.siteConf(a, false)).WaitConnected(t, "hub")
	siteB := tp.start(t, b.ns, tp.siteConf(b, false))
	siteB.WaitConnected(t, "hub")
	hub.WaitConnected(t, a.name())
	hub.WaitConnected(t, b.name())
	a4, _ := tunAddrs(a.i)
	b4, _ := tunAddrs(b.i)
	// B's tunnel addresses are inside the hub's own /24 and /64, so the
	// routes the hub adds for B are those of B's LAN.
	bl4, bl6 := lanNet(b.i)
	pingOK(t, tp.hub, a4)
	pingOK(t, tp.hub, b4)

	routesTo := func(pfxs ...netip.Prefix) []string {
		var found []string
		for _, r := range tunRoutes(t, tp.hub, tunName) {
			for _, p := range pfxs {
				if strings.Contains(r, `"dst":"`+p.String()+`"`) {
					found = append(found, r)
				}
			}
		}
		return found
	}
	if len(routesTo(bl4, bl6)) != 2 {
		t.Fatalf("hub routes to B before the reload: %q, want one for %v and one for %v", routesTo(bl4, bl6), bl4, bl6)
	}

	// 3 s of pings at 100 Hz to A, with the reload in the middle.
	const count, interval = 300, 10 * time.Millisecond
	type result struct {
		sent, received int
		err            error
	}
	pings := make(chan result, 1)
	go func() {
		r, err := tp.hub.Ping(a4, count, interval, 2*time.Second)
		pings <- result{r.Sent, r.Received, err}
	}()
	time.Sleep(time.Second)

	onlyA := full
	onlyA.peers = full.peers[:1]
	if onlyA.write(t, tp.lab) != hubPath {
		t.Fatal("the config without B went to another file")
	}
	must(t, hub.Signal(syscall.SIGHUP))
	reloaded := time.Now()
	hub.WaitLog(t, 5*time.Second, "msg=reloaded", "peers=1")
	if !labtest.Eventually(time.Second, func() bool { return len(routesTo(bl4, bl6)) == 0 }) {
		t.Errorf("hub routes to B 1 s after the reload: %q, want none", routesTo(bl4, bl6))
	}
	t.Logf("B's routes gone %v after SIGHUP", time.Since(reloaded).Round(time.Millisecond))
	siteB.WaitLog(t, 2*time.Second, "peer disconnected", "peer=hub", "peer removed from config")
	if len(hub.LogLines("peer removed", "peer="+b.name())) == 0 {
		t.Errorf("hub did not log that it removed %s", b.name())
	}

	r := <-pings
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.sent != count || r.received != r.sent {
		t.Errorf("100 Hz ping to A across the reload: %d of %d replies (%d sent), want all", r.received, count, r.sent)
	}
	if n := len(hub.LogLines("peer disconnected", "peer="+a.name())); n != 0 {
		t.Errorf("A was disconnected %d times by a reload that did not change it", n)
	}

	// Re-adding B: B's dial loop, refused meanwhile, gets through again.
	full.write(t, tp.lab)
	must(t, hub.Signal(syscall.SIGHUP))
	labtest.WaitFor(t, labtest.ConnectWithin, "second connection of "+b.name()+" after re-adding it", func() bool {
		return len(hub.LogLines("peer connected", "peer="+b.name())) >= 2
	})
	if err := tp.hub.WaitPing(b4, 10*time.Second); err != nil {
		t.Errorf("after re-adding B: %v", err)
	}
	if len(routesTo(bl4, bl6)) != 2 {
		t.Errorf("hub routes to B after re-adding it: %q, want one for %v and one for %v", routesTo(bl4, bl6), bl4, bl6)
	}
}

// TestReloadCommand: `godwit reload` (the unit's ExecReload) fails with the
// file's problem and exit 1 on a bad file, the daemon keeps its previous
// config and its peer; on a good file it exits 0.
func TestReloadCommand(t *testing.T) {
	tp := newTopo(t, 1, false)
	s := tp.sites[0]
	conf := tp.hubConf(fmt.Sprintf("0.0.0.0:%d", port))
	hubPath := conf.write(t, tp.lab)
	hub := labtest.StartDaemon(t, tp.hub, "hub", hubPath)
	tp.start(t, s.ns, tp.siteConf(s, false)).WaitConnected(t, "hub")
	hub.WaitConnected(t, s.name())
	reload := func() (code int, out string) {
		t.Helper()
		cmd := exec.Command(labtest.Godwit(t), "reload", "--socket", hub.Socket)
		b, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			code = ee.ExitCode()
		default:
			t.Fatalf("godwit reload: %v", err)
		}
		return code, string(b)
	}

	good, err := os.ReadFile(hubPath)
	must(t, err)
	must(t, os.WriteFile(hubPath, append(bytes.Clone(good), "\n[[peer]]\nname = \"broken\"\n"...), 0o600))
	code, out := reload()
	if code != 1 || !strings.Contains(out, hubPath+":") || !strings.Contains(out, "broken") {
		t.Errorf("godwit reload on a bad file: exit %d, output %q; want 1 and the file's problem with its line", code, out)
	}
	if p := hub.Peer(t, s.name()); p.State != "connected" {
		t.Errorf("after the failed reload the site is %s, want connected", p.State)
	}
	a4, _ := tunAddrs(s.i)
	pingOK(t, tp.hub, a4)

	must(t, os.WriteFile(hubPath, good, 0o600))
	if code, out := reload(); code != 0 || strings.TrimSpace(out) != "reloaded" {
		t.Errorf("godwit reload on a good file: exit %d, output %q; want 0, \"reloaded\"", code, out)
	}
	hub.WaitLog(t, 5*time.Second, "msg=reloaded")
}
