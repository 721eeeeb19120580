// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// TestDemoConfigs checks that the configs the demo writes load and give
// the site its two uplinks in order and the hub its loopback address.
func TestDemoConfigs(t *testing.T) {
	dir := t.TempDir()
	hubPath, sitePath, err := demoConfigs(dir)
	if err != nil {
		t.Fatal(err)
	}
	hub, err := config.Load(hubPath)
	if err != nil {
		t.Fatalf("hub config: %v", err)
	}
	site, err := config.Load(sitePath)
	if err != nil {
		t.Fatalf("site config: %v", err)
	}
	if got, want := site.Interface.Uplinks, []string{demoWifi.siteIf, demoCell.siteIf}; !slices.Equal(got, want) {
		t.Errorf("site uplinks = %q, want %q", got, want)
	}
	if len(hub.Interface.Uplinks) != 0 {
		t.Errorf("hub uplinks = %q, want none", hub.Interface.Uplinks)
	}
	if got, want := len(site.Peers), 1; got != want {
		t.Fatalf("site peers = %d, want %d", got, want)
	}
	if got, want := site.Peers[0].Endpoint, "198.18.0.1:4433"; got != want {
		t.Errorf("site endpoint = %q, want %q", got, want)
	}
	if got, want := site.Interface.StateDir, dir+"/site-state"; got != want {
		t.Errorf("site state_dir = %q, want %q", got, want)
	}
	for _, m := range demoModes {
		if m.multipath == "" {
			continue
		}
		path, err := demoMultipathConfig(sitePath, m.multipath)
		if err != nil {
			t.Fatal(err)
		}
		mp, err := config.Load(path)
		if err != nil {
			t.Fatalf("site config with multipath = %q: %v", m.multipath, err)
		}
		if got, want := mp.PathMode(&mp.Peers[0]).String(), m.multipath; got != want {
			t.Errorf("%s: multipath = %q, want %q", path, got, want)
		}
		if got, want := mp.Interface.Uplinks, site.Interface.Uplinks; !slices.Equal(got, want) {
			t.Errorf("%s: uplinks = %q, want %q as in the site's config", path, got, want)
		}
	}
	for _, u := range []demoUplink{demoWifi, demoCell} {
		sp, hp := netip.MustParsePrefix(u.site), netip.MustParsePrefix(u.hub)
		if gw := netip.MustParseAddr(u.gw); !sp.Contains(gw) || hp.Addr() != gw || sp.Masked() != hp.Masked() {
			t.Errorf("uplink %s: site %v, hub %v, gateway %v: want one subnet, the hub as gateway", u.siteIf, sp, hp, gw)
		}
	}
}

// demoSilentRow is a row of the demo's silent-failure summary: mode, the
// time until the traffic was off wifi0, the longest gap between ping
// replies, pings lost of sent, the time until the traffic was back, pings
// lost of sent on the way back, and the second copies the hub and the
// site discarded.
var demoSilentRow = regexp.MustCompile(`(?m)^    (one connection|failover|redundant) +(\S+) +(\S+) +(\d+) of (\d+) +(\S+) +(\d+) of (\d+) +(\d+)/(\d+)$`)

// TestDemoSilentFailures runs `godwit demo` (as root, with nft) and checks
// its silent-failure scenes: every mode prints its lines, the hub's nft
// rules really dropped packets, and the summary's numbers make sense. The
// bounds are generous (a shared 2-core machine): the system tests in
// tests/multipath_test.go hold the product to its targets.
func TestDemoSilentFailures(t *testing.T) {
	needDemo(t)
	out, err := runDemo(t, nil)
	if err != nil {
		t.Fatalf("godwit demo: %v\n%s", err, out)
	}
	t.Logf("godwit demo:\n%s", out)
	for _, m := range demoModes {
		if !strings.Contains(out, "==> silent Wi-Fi, "+m.name+":") {
			t.Errorf("no silent Wi-Fi scene for %s", m.name)
		}
	}
	for _, l := range []string{"    before: wifi0 ", "    wifi0 silent: ", "later the traffic is on cell0", "    during the silence: ",
		"    wifi0 answers again (", "    on the way back: ", "    after: in 1s the site sent "} {
		if got := strings.Count(out, l); got != len(demoModes) {
			t.Errorf("%d lines with %q, want %d (one per mode)", got, l, len(demoModes))
		}
	}
	for _, m := range regexp.MustCompile(`the hub dropped (\d+) packets from the site's wifi0`).FindAllStringSubmatch(out, -1) {
		if m[1] == "0" {
			t.Errorf("%q: the silence dropped nothing", m[0])
		}
	}
	rows := demoSilentRow.FindAllStringSubmatch(out, -1)
	if len(rows) != len(demoModes) {
		t.Fatalf("%d rows in the summary, want %d", len(rows), len(demoModes))
	}
	for _, row := range rows {
		mode := row[1]
		dur := func(i int) time.Duration {
			d, err := time.ParseDuration(row[i])
			if err != nil {
				t.Errorf("%s: %v", mode, err)
			}
			return d
		}
		num := func(i int) int {
			n, err := strconv.Atoi(row[i])
			if err != nil {
				t.Errorf("%s: %v", mode, err)
			}
			return n
		}
		off, gap, lost, sent, back, backLost, backSent := dur(2), dur(3), num(4), num(5), dur(6), num(7), num(8)
		hubDup, siteDup := num(9), num(10)
		t.Logf("%s: off wifi0 after %v, gap %v, %d of %d lost; back after %v, %d of %d lost; copies discarded %d/%d",
			mode, off, gap, lost, sent, back, backLost, backSent, hubDup, siteDup)
		// About 3 s of silence at 50 Hz are 150 pings; the way back is
		// counted over 1 s at least, 50 pings.
		if sent < 100 || backSent < 50 || lost > sent || backLost > backSent {
			t.Errorf("%s: %d of %d pings lost in the silence, %d of %d on the way back: want at least 100 and 50 sent", mode, lost, sent, backLost, backSent)
		}
		if off <= 0 || off > demoNoticeWithin || back <= 0 || back > demoBackWithin {
			t.Errorf("%s: off wifi0 after %v, back after %v: want both in (0, 10s]", mode, off, back)
		}
		if backLost > 10 {
			t.Errorf("%s: %d pings lost on the way back to wifi0, want at most 10 (make-before-break)", mode, backLost)
		}
		switch mode {
		case "one connection":
			if lost == 0 || gap < 200*time.Millisecond {
				t.Errorf("one connection: %d pings lost, longest gap %v: want a visible outage (it waits for its path check)", lost, gap)
			}
		case "failover":
			if gap > 2*time.Second || lost > 100 {
				t.Errorf("failover: longest gap %v, %d pings lost: want under 2 s and 100 (target: a few round trips)", gap, lost)
			}
		case "redundant":
			if gap > time.Second || lost > 5 {
				t.Errorf("redundant: longest gap %v, %d pings lost: want under 1 s and at most 5 (target: none)", gap, lost)
			}
			if hubDup == 0 || siteDup == 0 {
				t.Errorf("redundant: %d/%d second copies discarded by the hub/site, want some on both", hubDup, siteDup)
			}
		}
	}
}

// TestDemoInterrupted interrupts `godwit demo` (SIGINT, as Ctrl-C does)
// while Wi-Fi is silent in the failover scene: a multipath site is up and
// the hub's nft rules drop packets. The demo must say so, exit 0 and
// leave no namespace (and with them no nft table) behind.
func TestDemoInterrupted(t *testing.T) {
	needDemo(t)
	inScene := false
	out, err := runDemo(t, func(line string) bool {
		inScene = inScene || strings.HasPrefix(line, "==> silent Wi-Fi, failover:")
		return inScene && strings.HasPrefix(line, "    wifi0 silent: ")
	})
	if err != nil {
		t.Fatalf("godwit demo: %v\n%s", err, out)
	}
	if !inScene {
		t.Fatalf("the demo never reached the failover scene:\n%s", out)
	}
	for _, want := range []string{"    interrupted\n", "==> removing namespaces, links and processes\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q after SIGINT:\n%s", want, out)
		}
	}
	if strings.Contains(out, "==> stopping both daemons") {
		t.Errorf("the demo went on after SIGINT:\n%s", out)
	}
}

// needDemo skips t (or fails it with GODWIT_E2E=1) where the demo cannot
// run, and makes it fail if the demo leaves a namespace behind.
func needDemo(t *testing.T) {
	t.Helper()
	labtest.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		labtest.SkipOrFail(t, "the demo's silent-failure scenes need nft: %v", err)
	}
	labtest.CheckNamespacesRemoved(t, "gwdemo-")
}

// runDemo runs `godwit demo -mb 8` and returns its output (stdout and
// stderr). When interrupt, if not nil, first reports true for a line, the
// demo gets SIGINT. It gets SIGINT after 3 minutes in any case, and
// SIGKILL 30 s later.
func runDemo(t *testing.T, interrupt func(line string) bool) (string, error) {
	t.Helper()
	bin := labtest.Godwit(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(bin, "demo", "-mb", "8")
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	stop := time.AfterFunc(3*time.Minute, func() { _ = cmd.Process.Signal(os.Interrupt) })
	defer stop.Stop()
	kill := time.AfterFunc(3*time.Minute+30*time.Second, func() { _ = cmd.Process.Kill() })
	defer kill.Stop()
	var b strings.Builder
	sc := bufio.NewScanner(r)
	for sent := false; sc.Scan(); {
		b.WriteString(sc.Text() + "\n")
		if interrupt != nil && !sent && interrupt(sc.Text()) {
			sent = cmd.Process.Signal(os.Interrupt) == nil
		}
	}
	return b.String(), cmd.Wait()
}
