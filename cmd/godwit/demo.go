// SPDX-License-Identifier: MIT

package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/routing/netlab"
)

// The demo topology: two LANs joined by a Godwit tunnel between a hub and a
// site that has two uplinks (Wi-Fi preferred, cellular as standby), each
// namespace made (and removed) by the demo. The hub listens on an address
// on its loopback, reachable from the site over either uplink. The hub
// drops underlay packets whose source lies behind the tunnel (rp_filter),
// so LAN traffic only ever crosses inside the tunnel. Both daemons are
// named gw0; each has its control socket in the demo's directory
// (GODWIT_SOCKET), which is how the demo reads their status. For the
// silent-failure scenes the hub's namespace also gets table inet gwdemo,
// which drops everything on the hub's end of the Wi-Fi link while wifi0
// stays up (see silenceWifi).
const demoTopology = `
  hublan  eth0 192.0.2.2                            sitelan  eth0 198.51.100.2
            |                                                  |
  hub     lan0 192.0.2.1                            site     lan0 198.51.100.1
          lo   198.18.0.1/32, QUIC on :4433                  uplinks = ["wifi0", "cell0"]
          wifi0h 198.18.1.1/24 ===== Wi-Fi ======== wifi0 198.18.1.2/24  default route, metric 100
          cell0h 198.18.2.1/24 ===== cellular ===== cell0 198.18.2.2/24  default route, metric 200
          gw0 198.19.0.1/24  <-------- QUIC ------>  gw0 198.19.0.2/24
`

var (
	hubLANHost = netip.MustParseAddr("192.0.2.2")
	hubInner6  = netip.MustParseAddr("2001:db8:77::1")
)

// demoUplink is one of the site's uplinks in the demo.
type demoUplink struct {
	siteIf, hubIf string
	site, hub     string // prefixes on siteIf and hubIf
	gw            string // the site's gateway: the hub's address
	metric        string // of the site's default route through it
}

var (
	demoWifi = demoUplink{siteIf: "wifi0", hubIf: "wifi0h", site: "198.18.1.2/24", hub: "198.18.1.1/24",
		gw: "198.18.1.1", metric: "100"}
	demoCell = demoUplink{siteIf: "cell0", hubIf: "cell0h", site: "198.18.2.2/24", hub: "198.18.2.1/24",
		gw: "198.18.2.1", metric: "200"}
)

// Demo timings. The ping runs at 50 Hz; every wait is bounded.
const (
	demoPingInterval = 20 * time.Millisecond
	demoPingMax      = 30 * time.Second // a pinger stops by itself after this
	demoSwitchWithin = 10 * time.Second
	demoSettle       = 500 * time.Millisecond // steady pinging before a change and after a switch
)

// cmdDemo runs `godwit demo`: it builds the topology above, starts both
// daemons, shows pings, a TCP transfer, an uplink switch and back, a site
// restart, and a silent Wi-Fi failure with one connection and with the
// site restarted in multipath failover and redundant mode, and removes
// everything on return, also when ctx is cancelled (Ctrl-C).
func cmdDemo(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	transfer := fs.Int("mb", 64, "MiB to send through the tunnel")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return exitError{code: 2, msg: "usage: godwit demo [-mb N]"}
	}
	if os.Geteuid() != 0 {
		return exitError{code: 1, msg: "godwit demo: must run as root (it creates network namespaces and TUN devices)"}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}

	// A demo killed with -9 could not clean up: its namespaces and its
	// directory (with both private keys) go now.
	if removed, err := netlab.RemoveStale("gwdemo"); err != nil {
		fmt.Fprintln(os.Stderr, "removing what an earlier demo left:", err)
	} else if len(removed) > 0 {
		fmt.Printf("removed what %d earlier demo(s) killed without cleaning up left behind\n", len(removed))
	}
	lab, err := netlab.New("gwdemo")
	if err != nil {
		return err
	}
	defer func() {
		step("removing namespaces, links and processes")
		if err := lab.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "cleanup:", err)
		}
	}()
	fmt.Print("Godwit demo: a hub and a site with two uplinks, each with a LAN behind it, in network namespaces\n", demoTopology, "\n")

	step("building the namespaces")
	n, err := demoNamespaces(lab)
	if err != nil {
		return err
	}

	step("generating keys and configs")
	hubCfg, siteCfg, err := demoConfigs(lab.Dir)
	if err != nil {
		return err
	}
	fmt.Printf("    hub config:  %s\n    site config: %s\n", hubCfg, siteCfg)
	d := &demoRun{ns: n, exe: exe, siteCfg: siteCfg, dir: lab.Dir}

	step("starting both daemons")
	start := time.Now()
	if d.hub, err = n.hub.StartDaemon("hub", exe, hubCfg); err != nil {
		return err
	}
	if d.site, err = n.site.StartDaemon("site", exe, siteCfg); err != nil {
		return err
	}
	if err := n.siteLAN.WaitPing(hubLANHost, 15*time.Second); err != nil {
		return d.failed(fmt.Errorf("tunnel did not come up: %w", err))
	}
	fmt.Printf("    tunnel up: first LAN-to-LAN ping answered %v after start\n", time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		return nil
	}

	step("ping 198.51.100.2 (site LAN) -> 192.0.2.2 (hub LAN), 20 packets")
	if err := demoPing(n.siteLAN, hubLANHost); err != nil {
		return err
	}
	step("ping 2001:db8:77::1 (hub, inner IPv6) from the site")
	if err := demoPing(n.site, hubInner6); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}

	step(fmt.Sprintf("TCP: %d MiB from the site LAN to the hub LAN", *transfer))
	if err := demoTransfer(ctx, n.siteLAN, n.hubLAN, *transfer); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return nil
	}

	step("uplink switch: 50 Hz ping from the site LAN to the hub LAN, then wifi0 goes down")
	if err := d.uplinkSwitch(ctx); ctx.Err() != nil {
		return demoInterrupted()
	} else if err != nil {
		return d.failed(err)
	}
	step("site restart: SIGTERM the site daemon, start it again with the same state dir")
	if err := d.restartSite(ctx); ctx.Err() != nil {
		return demoInterrupted()
	} else if err != nil {
		return d.failed(err)
	}

	if err := d.silentScenes(ctx); ctx.Err() != nil {
		return demoInterrupted()
	} else if err != nil {
		return d.failed(err)
	}

	step("stopping both daemons (SIGTERM)")
	for _, p := range []*netlab.Daemon{d.site, d.hub} {
		if err := p.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		code, err := p.Wait(5 * time.Second)
		if err != nil {
			return fmt.Errorf("%s did not stop: %w", p.Name, err)
		}
		fmt.Printf("    %s exited with status %d\n", p.Name, code)
	}
	if out, err := n.hub.Exec("ip", "-brief", "link", "show", "gw0"); err == nil && strings.HasPrefix(out, "gw0") {
		return errors.New("the hub's gw0 is still there after stop")
	}
	fmt.Println("    gw0 and its routes are gone on both sides")
	return nil
}

func step(s string) { fmt.Printf("==> %s\n", s) }

// demoInterrupted reports a Ctrl-C (or SIGTERM) in the middle of a step:
// not an error, the deferred clean-up follows.
func demoInterrupted() error {
	fmt.Println("    interrupted")
	return nil
}

type demoNS struct{ hubLAN, hub, site, siteLAN *netlab.NS }

func demoNamespaces(lab *netlab.Lab) (*demoNS, error) {
	var n demoNS
	var err error
	for _, x := range []struct {
		p    **netlab.NS
		name string
	}{{&n.hubLAN, "hublan"}, {&n.hub, "hub"}, {&n.site, "site"}, {&n.siteLAN, "sitelan"}} {
		if *x.p, err = lab.NS(x.name); err != nil {
			return nil, err
		}
	}
	type addr struct {
		ns     *netlab.NS
		ifname string
		prefix string
	}
	links := []struct{ a, b addr }{
		{addr{n.hubLAN, "eth0", "192.0.2.2/24"}, addr{n.hub, "lan0", "192.0.2.1/24"}},
		{addr{n.hub, demoWifi.hubIf, demoWifi.hub}, addr{n.site, demoWifi.siteIf, demoWifi.site}},
		{addr{n.hub, demoCell.hubIf, demoCell.hub}, addr{n.site, demoCell.siteIf, demoCell.site}},
		{addr{n.site, "lan0", "198.51.100.1/24"}, addr{n.siteLAN, "eth0", "198.51.100.2/24"}},
	}
	for _, l := range links {
		if err := lab.Link(l.a.ns, l.a.ifname, l.b.ns, l.b.ifname); err != nil {
			return nil, err
		}
		for _, e := range []addr{l.a, l.b} {
			if err := e.ns.Addr(e.ifname, e.prefix); err != nil {
				return nil, err
			}
		}
	}
	if err := n.hub.Addr("lo", "198.18.0.1/32"); err != nil {
		return nil, err
	}
	cmds := []struct {
		ns   *netlab.NS
		args []string
	}{
		{n.hubLAN, []string{"ip", "route", "add", "default", "via", "192.0.2.1"}},
		{n.siteLAN, []string{"ip", "route", "add", "default", "via", "198.51.100.1"}},
	}
	for _, c := range cmds {
		if _, err := c.ns.Exec(c.args...); err != nil {
			return nil, err
		}
	}
	for _, u := range []demoUplink{demoWifi, demoCell} {
		if err := demoRoute(n.site, u); err != nil {
			return nil, err
		}
	}
	for _, ns := range []*netlab.NS{n.hub, n.site} {
		for _, key := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"} {
			if err := ns.Sysctl(key, "1"); err != nil {
				return nil, err
			}
		}
	}
	// Strict reverse-path filtering: the hub drops a packet from the site
	// LAN that arrives on an uplink instead of gw0 (the site's LAN traffic
	// leaks onto its default routes while its daemon is down).
	return &n, n.hub.Sysctl("net.ipv4.conf.all.rp_filter", "1")
}

// demoRoute (re)adds the site's default route through u. Right after a
// link comes back up the kernel may refuse the gateway for a moment, so it
// retries for up to a second.
func demoRoute(site *netlab.NS, u demoUplink) error {
	var err error
	if netlab.WaitFor(context.Background(), time.Second, "", func() (bool, error) {
		_, err = site.Exec("ip", "route", "replace", "default", "via", u.gw, "dev", u.siteIf, "metric", u.metric)
		return err == nil, nil
	}) == nil {
		return nil
	}
	return err
}

// demoConfigs writes keys and the two TOML files into dir.
func demoConfigs(dir string) (hubPath, sitePath string, err error) {
	hubKey, err := key.NewPrivate()
	if err != nil {
		return "", "", err
	}
	siteKey, err := key.NewPrivate()
	if err != nil {
		return "", "", err
	}
	for name, k := range map[string]key.Private{"hub.key": hubKey, "site.key": siteKey} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(k.String()+"\n"), 0o600); err != nil {
			return "", "", err
		}
	}
	hub := fmt.Sprintf(`# the hub: accepts the site on an address of its loopback, reachable over both uplinks
[interface]
name = "gw0"
private_key_file = %q
addresses = ["198.19.0.1/24", "2001:db8:77::1/64"]
listen = "198.18.0.1:4433"
state_dir = %q

[[peer]]
name = "site"
public_key = %q
allowed_ips = ["198.19.0.2/32", "2001:db8:77::2/128", "198.51.100.0/24"]
`, filepath.Join(dir, "hub.key"), filepath.Join(dir, "hub-state"), siteKey.Public())
	site := fmt.Sprintf(`# the site: dials the hub over Wi-Fi, moves to cellular when Wi-Fi goes away
[interface]
name = "gw0"
private_key_file = %q
addresses = ["198.19.0.2/24", "2001:db8:77::2/64"]
uplinks = ["wifi0", "cell0"]
state_dir = %q

[[peer]]
name = "hub"
public_key = %q
allowed_ips = ["198.19.0.1/32", "2001:db8:77::1/128", "192.0.2.0/24"]
endpoint = "198.18.0.1:4433"
multipath = "off"   # one connection that moves; without this line: one connection per uplink (failover)
`, filepath.Join(dir, "site.key"), filepath.Join(dir, "site-state"), hubKey.Public())
	hubPath, sitePath = filepath.Join(dir, "hub.toml"), filepath.Join(dir, "site.toml")
	if err := os.WriteFile(hubPath, []byte(hub), 0o600); err != nil {
		return "", "", err
	}
	return hubPath, sitePath, os.WriteFile(sitePath, []byte(site), 0o600)
}

// demoRun is the running demo: its namespaces and daemons (each with its
// control socket in the demo's directory, which is how the demo reads
// their status).
type demoRun struct {
	ns           *demoNS
	exe, siteCfg string
	dir          string // the lab's directory: configs, keys, logs, nft files
	hub, site    *netlab.Daemon
	nftLoaded    bool // table inet gwdemo is in the hub namespace
}

// failed adds both daemons' logs to err.
func (d *demoRun) failed(err error) error {
	var b strings.Builder
	for _, p := range []*netlab.Daemon{d.hub, d.site} {
		if p != nil {
			fmt.Fprintf(&b, "\n--- %s log ---\n%s", p.Name, p.Output())
		}
	}
	return fmt.Errorf("%w%s", err, b.String())
}

// demoPeer returns the first peer in the status of daemon d, as `godwit
// show --json` prints it.
func demoPeer(ctx context.Context, d *netlab.Daemon) (*ctl.PeerStatus, error) {
	st, err := d.Status(ctx)
	if err != nil {
		return nil, err
	}
	if len(st.Peers) == 0 {
		return nil, fmt.Errorf("%s: status has no peers", d.Name)
	}
	return &st.Peers[0], nil
}

// waitPeer polls the first peer of daemon d until ok holds, and fails
// after within naming what it waited for.
func waitPeer(ctx context.Context, d *netlab.Daemon, within time.Duration, what string, ok func(*ctl.PeerStatus) bool) (*ctl.PeerStatus, error) {
	var (
		p    *ctl.PeerStatus
		perr error
	)
	err := netlab.WaitFor(ctx, within, what, func() (bool, error) {
		p, perr = demoPeer(ctx, d)
		return perr == nil && ok(p), nil
	})
	switch {
	case err == nil:
		return p, nil
	case perr != nil:
		return nil, fmt.Errorf("%w: %w", err, perr)
	}
	return nil, fmt.Errorf("%w; last: state %s, migrations %d, paths %s", err, p.State, p.Migrations, demoPaths(p))
}

// demoPaths describes p's paths in one line.
func demoPaths(p *ctl.PeerStatus) string {
	var s []string
	for _, pa := range p.Paths {
		role := "standby"
		switch {
		case pa.Active:
			role = "active"
		case !pa.Validated:
			role = "probing"
		}
		s = append(s, fmt.Sprintf("%s %s %v -> %v", role, pa.Uplink, pa.Local, pa.Remote))
	}
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

// uplinkSwitch takes wifi0 away under a 50 Hz ping and brings it back,
// printing each outage as the ping saw it and as the site daemon measured
// it.
func (d *demoRun) uplinkSwitch(ctx context.Context) error {
	p, err := waitPeer(ctx, d.site, demoSwitchWithin, "active path on wifi0 with a validated standby on cell0",
		func(p *ctl.PeerStatus) bool {
			return p.State == ctl.StateConnected && p.ActiveUplink() == "wifi0" && p.ValidatedStandby("cell0")
		})
	if err != nil {
		return err
	}
	hubPeer, err := demoPeer(ctx, d.hub)
	if err != nil {
		return err
	}
	fmt.Printf("    site paths: %s\n", demoPaths(p))
	ping, err := d.ns.siteLAN.StartPinger(hubLANHost, demoPingInterval, demoPingMax)
	if err != nil {
		return err
	}
	defer ping.Stop()
	if _, err := ping.ReplyAfter(ctx, time.Now(), 2*time.Second); err != nil {
		return fmt.Errorf("ping before the switch: %w", err)
	}
	time.Sleep(demoSettle) // a steady ping before the change

	moves := []struct {
		what, to string
		act      func() error
	}{
		{"ip link set wifi0 down", "cell0", func() error {
			_, err := d.ns.site.Exec("ip", "link", "set", demoWifi.siteIf, "down")
			return err
		}},
		{"ip link set wifi0 up, default route via 198.18.1.1 metric 100", "wifi0", func() error {
			if _, err := d.ns.site.Exec("ip", "link", "set", demoWifi.siteIf, "up"); err != nil {
				return err
			}
			return demoRoute(d.ns.site, demoWifi)
		}},
	}
	for i, m := range moves {
		if ctx.Err() != nil {
			return nil
		}
		if i > 0 {
			// The way back waits for the daemon to see wifi0 as a
			// validated standby first: make-before-break.
			fmt.Printf("==> switch back: %s\n", m.what)
		} else {
			fmt.Printf("    %s (in the site namespace)\n", m.what)
		}
		t0 := time.Now()
		if err := m.act(); err != nil {
			return err
		}
		want := uint64(i + 1)
		_, err := waitPeer(ctx, d.site, demoSwitchWithin, fmt.Sprintf("migration #%d to %s", want, m.to),
			func(p *ctl.PeerStatus) bool {
				return p.State == ctl.StateConnected && p.Migrations >= want && p.ActiveUplink() == m.to
			})
		if err != nil {
			return err
		}
		moved := time.Since(t0)
		if _, err := ping.ReplyAfter(ctx, time.Now(), 5*time.Second); err != nil {
			return fmt.Errorf("ping after the switch to %s: %w", m.to, err)
		}
		fmt.Printf("    the site moved to %s %v after the change; pings flow over it again\n",
			m.to, moved.Round(time.Millisecond))
		time.Sleep(demoSettle)
		// The daemon measures the outage at the first packet it receives
		// on the new path (the ping reply above at the latest).
		q, err := waitPeer(ctx, d.site, 2*time.Second, "measured migration outage",
			func(p *ctl.PeerStatus) bool { return p.LastMigrationOutage > 0 })
		if err != nil {
			return err
		}
		gap, lost, sent := ping.Outage(t0, time.Now())
		fmt.Printf("    outage seen by the ping (longest gap between replies): %v; %d of %d pings lost\n",
			gap.Round(time.Millisecond), lost, sent)
		fmt.Printf("    outage the site daemon reports (show --json): %v; migrations: %d\n",
			q.LastMigrationOutage.Round(100*time.Microsecond), q.Migrations)
		fmt.Printf("    site paths: %s\n", demoPaths(q))
		if err := d.sameConnection(ctx, p, hubPeer, q); err != nil {
			return err
		}
	}
	return nil
}

// sameConnection checks that the site (before, now) and the hub (before)
// still have the connection they had: no new handshake happened.
func (d *demoRun) sameConnection(ctx context.Context, before, hubBefore, now *ctl.PeerStatus) error {
	hubNow, err := demoPeer(ctx, d.hub)
	if err != nil {
		return err
	}
	if !now.LastHandshake.Equal(before.LastHandshake) || !now.ConnectedSince.Equal(before.ConnectedSince) {
		return fmt.Errorf("the site made a new connection: handshake %v, now %v", before.LastHandshake, now.LastHandshake)
	}
	if !hubNow.LastHandshake.Equal(hubBefore.LastHandshake) || !hubNow.ConnectedSince.Equal(hubBefore.ConnectedSince) {
		return fmt.Errorf("the hub has a new connection: handshake %v, now %v", hubBefore.LastHandshake, hubNow.LastHandshake)
	}
	fmt.Printf("    no new handshake: same QUIC connection on both sides (handshake at %s)\n",
		now.LastHandshake.Format("15:04:05.000"))
	return nil
}

// restartSite stops the site daemon with SIGTERM and starts it again with
// the same config and state dir, pinging the hub LAN from the site LAN at
// 50 Hz, and prints the time from the process start to the first reply
// and whether the new connection used 0-RTT.
func (d *demoRun) restartSite(ctx context.Context) error {
	t0 := time.Now()
	if err := d.site.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	code, err := d.site.Wait(10 * time.Second)
	if err != nil {
		return fmt.Errorf("the site did not stop: %w", err)
	}
	fmt.Printf("    site exited with status %d after %v\n", code, time.Since(t0).Round(time.Millisecond))
	if _, err := waitPeer(ctx, d.hub, 5*time.Second, "hub noticing the site left",
		func(p *ctl.PeerStatus) bool { return p.State != ctl.StateConnected }); err != nil {
		return err
	}
	tickets, _ := os.ReadDir(filepath.Join(filepath.Dir(d.siteCfg), "site-state", "tickets"))
	fmt.Printf("    the hub saw the site leave; the site's state dir holds %d session ticket(s)\n", len(tickets))

	ping, err := d.ns.siteLAN.StartPinger(hubLANHost, demoPingInterval, demoPingMax)
	if err != nil {
		return err
	}
	defer ping.Stop()
	// With the daemon down, the site LAN's pings take the site's default
	// route to the hub, which must drop them: no answer may come.
	time.Sleep(100 * time.Millisecond)
	if n := ping.Received(); n > 0 {
		return fmt.Errorf("the hub LAN answered %d pings while the site daemon was down: traffic bypasses the tunnel", n)
	}
	start := time.Now()
	if d.site, err = d.ns.site.StartDaemon("site-restarted", d.exe, d.siteCfg); err != nil {
		return err
	}
	first, err := ping.ReplyAfter(ctx, start, 10*time.Second)
	if err != nil {
		return fmt.Errorf("after the restart: %w", err)
	}
	fmt.Printf("    process start to first ping reply from the hub LAN: %v\n", first.Sub(start).Round(time.Millisecond))
	p, err := waitPeer(ctx, d.site, 5*time.Second, "connected hub",
		func(p *ctl.PeerStatus) bool { return p.State == ctl.StateConnected })
	if err != nil {
		return err
	}
	fmt.Printf("    0-RTT used: %v (rejected: %v)\n    site paths: %s\n", p.ZeroRTT.Used, p.ZeroRTT.Rejected, demoPaths(p))
	return nil
}

// The silent-failure scenes. wifi0 keeps its carrier, its address and its
// default route, but the hub's end of the Wi-Fi link drops every packet
// from and to the site, as behind a dead access point: table inet gwdemo
// in the hub namespace, whose two chains stay empty until silenceWifi
// fills them. The site's uplink watcher sees no change, so only the
// tunnel's own checks can tell: the path check of one connection (no
// answer to a heartbeat, sent every 2 s, within 3 RTT plus a second), or
// the health monitor of each connection of a multipath set. The table goes away with the hub
// namespace, also after Ctrl-C or a failure.
const (
	demoNftTable     = "gwdemo"
	demoSilence      = 3 * time.Second  // wifi0 stays silent at least this long
	demoNoticeWithin = 10 * time.Second // for the site to take the traffic off wifi0
	demoBackWithin   = 10 * time.Second // for the traffic to come back to wifi0
	demoWindow       = time.Second      // packets per uplink are counted over this
)

var demoNftRuleset = fmt.Sprintf(`table inet %s {
	chain from_wifi {
		type filter hook prerouting priority -300; policy accept;
	}
	chain to_wifi {
		type filter hook postrouting priority 300; policy accept;
	}
}
`, demoNftTable)

// The roles of a multipath connection in `godwit show --json`.
const (
	demoCarrying = "carrying"
	demoWarm     = "warm"
)

// demoMode is how the site reaches the hub in a silent-failure scene.
type demoMode struct {
	name      string // "one connection", "failover", "redundant"
	multipath string // the [[peer]]'s multipath key; "" for one connection
	what      string // what the mode does, in a few words
}

// demoModes are the modes of the silent-failure scenes, in their order.
var demoModes = []demoMode{
	{name: "one connection", what: "one QUIC connection that moves between uplinks"},
	{name: "failover", multipath: "failover", what: "a connection per uplink; the traffic on wifi0, cell0 warm"},
	{name: "redundant", multipath: "redundant", what: "a connection per uplink; every packet on both, the far end keeps the first copy"},
}

// ready reports whether p is as mode m has it before the failure and once
// wifi0 is back: one connection active on wifi0 with a validated standby
// on cell0; failover: wifi0 carrying, cell0 warm; redundant: both
// carrying.
func (m demoMode) ready(p *ctl.PeerStatus) bool {
	switch {
	case p.State != ctl.StateConnected || p.Multipath != m.multipath:
		return false
	case m.multipath == "":
		return p.ActiveUplink() == demoWifi.siteIf && p.ValidatedStandby(demoCell.siteIf)
	case m.multipath == "redundant":
		return demoRole(p, demoWifi.siteIf) == demoCarrying && demoRole(p, demoCell.siteIf) == demoCarrying
	}
	return demoRole(p, demoWifi.siteIf) == demoCarrying && demoRole(p, demoCell.siteIf) == demoWarm
}

// moved reports whether p's traffic is on cell0 and off wifi0.
func (m demoMode) moved(p *ctl.PeerStatus) bool {
	if m.multipath == "" {
		return p.State == ctl.StateConnected && p.ActiveUplink() == demoCell.siteIf
	}
	return demoRole(p, demoCell.siteIf) == demoCarrying && demoRole(p, demoWifi.siteIf) != demoCarrying
}

// demoRole returns the best role of p's connections on uplink (carrying,
// then warm, then down), or "" when p has none there.
func demoRole(p *ctl.PeerStatus, uplink string) string {
	best := ""
	for _, pa := range p.Paths {
		if pa.Uplink != uplink || pa.Multipath == nil {
			continue
		}
		switch r := pa.Multipath.Role; {
		case r == demoCarrying, r == demoWarm && best != demoCarrying, best == "":
			best = r
		}
	}
	return best
}

// demoRoles says in a few words what each uplink does for p: "wifi0
// carrying, cell0 warm" for a multipath set, "wifi0 active, cell0
// standby" for one connection.
func demoRoles(p *ctl.PeerStatus) string {
	var s []string
	for _, u := range []string{demoWifi.siteIf, demoCell.siteIf} {
		role := demoRole(p, u)
		if p.Multipath == "" {
			for _, pa := range p.Paths {
				switch {
				case pa.Uplink != u:
				case pa.Active:
					role = "active"
				case pa.Validated:
					role = "standby"
				default:
					role = "probing"
				}
			}
		}
		s = append(s, u+" "+cmp.Or(role, "unused"))
	}
	return strings.Join(s, ", ")
}

// demoCarrier names the uplinks that carry p's traffic: "cell0", or
// "wifi0 and cell0".
func demoCarrier(p *ctl.PeerStatus) string {
	if p.Multipath == "" {
		return cmp.Or(p.ActiveUplink(), "nothing")
	}
	var up []string
	for _, u := range []string{demoWifi.siteIf, demoCell.siteIf} {
		if demoRole(p, u) == demoCarrying {
			up = append(up, u)
		}
	}
	if len(up) == 0 {
		return "nothing"
	}
	return strings.Join(up, " and ")
}

// demoCounts are counters read at one moment of a silent-failure scene.
type demoCounts struct {
	wifiTx, cellTx  uint64 // packets the site sent on wifi0 and on cell0
	hubDup, siteDup uint64 // second copies discarded by the hub and by the site
}

// counts reads the site's uplink counters (tunnel datagrams, heartbeats,
// acks) and the copies both daemons discarded (`godwit show --json`).
func (d *demoRun) counts(ctx context.Context) (demoCounts, error) {
	var c demoCounts
	out, err := d.ns.site.Exec("cat", "/sys/class/net/"+demoWifi.siteIf+"/statistics/tx_packets",
		"/sys/class/net/"+demoCell.siteIf+"/statistics/tx_packets")
	if err != nil {
		return c, err
	}
	if _, err := fmt.Sscan(out, &c.wifiTx, &c.cellTx); err != nil {
		return c, fmt.Errorf("the site's tx_packets %q: %w", out, err)
	}
	for _, x := range []struct {
		d *netlab.Daemon
		n *uint64
	}{{d.hub, &c.hubDup}, {d.site, &c.siteDup}} {
		p, err := demoPeer(ctx, x.d)
		if err != nil {
			return c, err
		}
		for _, pa := range p.Paths {
			if pa.Multipath != nil {
				*x.n += pa.Multipath.DupDiscarded
			}
		}
	}
	return c, nil
}

// sub returns the counts from o to c. A counter that went down (its
// connection closed) counts as 0.
func (c demoCounts) sub(o demoCounts) demoCounts {
	d := func(a, b uint64) uint64 { return a - min(a, b) }
	return demoCounts{d(c.wifiTx, o.wifiTx), d(c.cellTx, o.cellTx), d(c.hubDup, o.hubDup), d(c.siteDup, o.siteDup)}
}

// String describes counts taken over a window of demoWindow.
func (c demoCounts) String() string {
	s := fmt.Sprintf("in %v the site sent %d packets on wifi0, %d on cell0", demoWindow, c.wifiTx, c.cellTx)
	if c.hubDup+c.siteDup > 0 {
		s += fmt.Sprintf("; the hub discarded %d second copies, the site %d", c.hubDup, c.siteDup)
	}
	return s
}

// silenceWifi makes the hub drop every packet that arrives on its end of
// the Wi-Fi link or leaves through it (on), or none (off). Turning the
// silence off returns how many packets it dropped from and to the site.
func (d *demoRun) silenceWifi(on bool) (fromSite, toSite uint64, err error) {
	var rules string
	if !d.nftLoaded {
		rules = demoNftRuleset
	}
	if on {
		rules += fmt.Sprintf("add rule inet %[1]s from_wifi iifname %[2]q counter drop\n"+
			"add rule inet %[1]s to_wifi oifname %[2]q counter drop\n", demoNftTable, demoWifi.hubIf)
	} else {
		if fromSite, toSite, err = d.nftDropped(); err != nil {
			return 0, 0, err
		}
		rules += fmt.Sprintf("flush chain inet %[1]s from_wifi\nflush chain inet %[1]s to_wifi\n", demoNftTable)
	}
	file := filepath.Join(d.dir, "silence.nft")
	if err := os.WriteFile(file, []byte(rules), 0o600); err != nil {
		return 0, 0, err
	}
	if _, err := d.ns.hub.Exec("nft", "-f", file); err != nil {
		return 0, 0, err
	}
	d.nftLoaded = true
	return fromSite, toSite, nil
}

// nftDropped sums the counters of the rules in the chains of table inet
// gwdemo: the packets dropped from and to the site's wifi0.
func (d *demoRun) nftDropped() (fromSite, toSite uint64, err error) {
	out, err := d.ns.hub.Exec("nft", "-j", "list", "table", "inet", demoNftTable)
	if err != nil {
		return 0, 0, err
	}
	var v struct {
		Nftables []struct {
			Rule *struct {
				Chain string                       `json:"chain"`
				Expr  []map[string]json.RawMessage `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return 0, 0, fmt.Errorf("nft -j list table inet %s: %w", demoNftTable, err)
	}
	for _, e := range v.Nftables {
		if e.Rule == nil {
			continue
		}
		for _, x := range e.Rule.Expr {
			var c struct {
				Packets uint64 `json:"packets"`
			}
			if raw, ok := x["counter"]; !ok || json.Unmarshal(raw, &c) != nil {
				continue
			}
			switch e.Rule.Chain {
			case "from_wifi":
				fromSite += c.Packets
			case "to_wifi":
				toSite += c.Packets
			}
		}
	}
	return fromSite, toSite, nil
}

// demoSilent is what one silent-failure scene measured.
type demoSilent struct {
	mode demoMode
	// off is the time from the silence to the site's status showing the
	// traffic off wifi0; gap, lost and sent what the ping saw meanwhile
	// and while the silence lasted.
	off        time.Duration
	gap        time.Duration
	lost, sent int
	// back is the time from the end of the silence to the status being
	// as before; backGap, backLost and backSent what the ping saw.
	back               time.Duration
	backGap            time.Duration
	backLost, backSent int
	dups               demoCounts // over the whole scene
}

// silentScenes shows a silent Wi-Fi failure three ways: on the site's one
// connection, then, with the site restarted each time, on a multipath set
// in failover and in redundant mode; then the three side by side.
func (d *demoRun) silentScenes(ctx context.Context) error {
	if _, err := exec.LookPath("nft"); err != nil {
		step("silent Wi-Fi failures: skipped, they need nft (apt-get install nftables)")
		return nil
	}
	var res []demoSilent
	for _, m := range demoModes {
		if m.multipath != "" {
			step(fmt.Sprintf("restarting the site with multipath = %q: %s", m.multipath, m.what))
			if err := d.restartMultipath(ctx, m); err != nil || ctx.Err() != nil {
				return err
			}
		}
		step(fmt.Sprintf("silent Wi-Fi, %s: 50 Hz ping from the site LAN to the hub LAN, then the hub drops everything on the Wi-Fi link for about %v",
			m.name, demoSilence))
		r, err := d.silentFailure(ctx, m)
		if err != nil || ctx.Err() != nil {
			return err
		}
		res = append(res, r)
	}
	if _, err := d.ns.hub.Exec("nft", "delete", "table", "inet", demoNftTable); err != nil {
		return err
	}
	d.nftLoaded = false

	step("a silent Wi-Fi uplink, three ways: what the 50 Hz ping saw")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "    mode\toff wifi0 after\tlongest gap\tpings lost\tback after\tlost on the way back\tcopies discarded hub/site")
	for _, r := range res {
		fmt.Fprintf(tw, "    %s\t%v\t%v\t%d of %d\t%v\t%d of %d\t%d/%d\n", r.mode.name,
			r.off.Round(time.Millisecond), r.gap.Round(time.Millisecond), r.lost, r.sent,
			r.back.Round(time.Millisecond), r.backLost, r.backSent, r.dups.hubDup, r.dups.siteDup)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Print(`    one connection: moves once nothing answers a heartbeat (sent every 2 s) within 3 RTT + 1 s: after 1 to 3 s
    failover: each connection's health monitor (heartbeats every 250 ms, quic-go's counters) gives the traffic to warm cell0
    redundant: every packet also went over cell0, so the ping waited for no verdict
`)
	return nil
}

// restartMultipath restarts the site with multipath = m.multipath in its
// [[peer]] and waits until its connections are as m has them.
func (d *demoRun) restartMultipath(ctx context.Context, m demoMode) error {
	cfg, err := demoMultipathConfig(d.siteCfg, m.multipath)
	if err != nil {
		return err
	}
	if err := d.site.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	if _, err := d.site.Wait(10 * time.Second); err != nil {
		return fmt.Errorf("the site did not stop: %w", err)
	}
	start := time.Now()
	if d.site, err = d.ns.site.StartDaemon("site-"+m.multipath, d.exe, cfg); err != nil {
		return err
	}
	p, err := waitPeer(ctx, d.site, demoSwitchWithin, fmt.Sprintf("%s connection set", m.multipath), m.ready)
	if err != nil {
		return err
	}
	fmt.Printf("    %s: the site's config with multipath = %q in its [[peer]]; the hub's is unchanged\n",
		filepath.Base(cfg), m.multipath)
	fmt.Printf("    %v after the start: %d connections, %s\n", time.Since(start).Round(time.Millisecond), len(p.Paths), demoRoles(p))
	return nil
}

// demoMultipathConfig writes the site's config at sitePath with its
// [[peer]]'s multipath line (the file's last table) set to mode, next to
// it, as site-<mode>.toml, and returns that path.
func demoMultipathConfig(sitePath, mode string) (string, error) {
	b, err := os.ReadFile(sitePath)
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, "multipath = ") })
	b = fmt.Appendf([]byte(strings.Join(lines, "")), "multipath = %q\n", mode)
	path := filepath.Join(filepath.Dir(sitePath), "site-"+mode+".toml")
	return path, os.WriteFile(path, b, 0o600)
}

// silentFailure runs one scene: wifi0 goes silent under a 50 Hz ping and
// answers again. It prints who carried the traffic before, during and
// after, when the site noticed and why (its log), what the ping lost, and
// the packets on each uplink.
func (d *demoRun) silentFailure(ctx context.Context, m demoMode) (demoSilent, error) {
	r := demoSilent{mode: m}
	if _, err := waitPeer(ctx, d.site, demoSwitchWithin, "wifi0 carrying, cell0 ready", m.ready); err != nil {
		return r, err
	}
	ping, err := d.ns.siteLAN.StartPinger(hubLANHost, demoPingInterval, demoPingMax)
	if err != nil {
		return r, err
	}
	defer ping.Stop()
	if _, err := ping.ReplyAfter(ctx, time.Now(), 2*time.Second); err != nil {
		return r, fmt.Errorf("ping before the failure: %w", err)
	}
	c0, err := d.counts(ctx)
	if err != nil {
		return r, err
	}
	if !demoPause(ctx, demoWindow) {
		return r, nil
	}
	c1, err := d.counts(ctx)
	if err != nil {
		return r, err
	}
	p, err := demoPeer(ctx, d.site)
	if err != nil {
		return r, err
	}
	fmt.Printf("    before: %s; %v\n", demoRoles(p), c1.sub(c0))

	mark := len(d.site.LogLines())
	t0 := time.Now()
	if _, _, err := d.silenceWifi(true); err != nil {
		return r, err
	}
	fmt.Println("    wifi0 silent: the hub drops every packet on its end of the Wi-Fi link; wifi0 keeps its carrier, address and route")
	p, err = waitPeer(ctx, d.site, demoNoticeWithin, "traffic off the silent wifi0", m.moved)
	if err != nil {
		return r, err
	}
	r.off = time.Since(t0)
	fmt.Printf("    %v later the traffic is on %s (%s)%s\n", r.off.Round(time.Millisecond), demoCarrier(p), demoRoles(p),
		d.siteSaid(mark, m, false))
	if !demoPause(ctx, max(time.Until(t0.Add(demoSilence)), demoSettle)) {
		return r, nil
	}
	c2, err := d.counts(ctx)
	if err != nil {
		return r, err
	}
	r.gap, r.lost, r.sent = ping.Outage(t0, time.Now())
	fmt.Printf("    during the silence: longest gap between ping replies %v; %d of %d pings lost\n",
		r.gap.Round(time.Millisecond), r.lost, r.sent)
	if dup := c2.sub(c1); dup.hubDup+dup.siteDup > 0 {
		fmt.Printf("    second copies discarded during the silence: %d by the hub, %d by the site\n", dup.hubDup, dup.siteDup)
	}

	mark = len(d.site.LogLines())
	from, to, err := d.silenceWifi(false)
	if err != nil {
		return r, err
	}
	t1 := time.Now()
	fmt.Printf("    wifi0 answers again (the hub dropped %d packets from the site's wifi0 and %d to it)\n", from, to)
	p, err = waitPeer(ctx, d.site, demoBackWithin, "traffic back on wifi0", m.ready)
	if err != nil {
		return r, err
	}
	r.back = time.Since(t1)
	fmt.Printf("    %v later: %s%s\n", r.back.Round(time.Millisecond), demoRoles(p), d.siteSaid(mark, m, true))
	if !demoPause(ctx, demoSettle) {
		return r, nil
	}
	c3, err := d.counts(ctx)
	if err != nil {
		return r, err
	}
	if !demoPause(ctx, demoWindow) {
		return r, nil
	}
	c4, err := d.counts(ctx)
	if err != nil {
		return r, err
	}
	r.backGap, r.backLost, r.backSent = ping.Outage(t1, time.Now())
	r.dups = c4.sub(c0)
	fmt.Printf("    on the way back: longest gap between ping replies %v; %d of %d pings lost\n",
		r.backGap.Round(time.Millisecond), r.backLost, r.backSent)
	fmt.Printf("    after: %v\n", c4.sub(c3))
	return r, nil
}

// siteSaid quotes the site daemon's log line, since its line mark, that
// explains the latest change: for one connection its path check or its
// migration back, for a multipath set wifi0's health monitor. It returns
// "" when there is no such line yet.
func (d *demoRun) siteSaid(mark int, m demoMode, back bool) string {
	var subs []string
	switch {
	case m.multipath != "" && back:
		subs = []string{`msg="quicconn: path up"`, "uplink=" + demoWifi.siteIf}
	case m.multipath != "":
		subs = []string{`msg="quicconn: path silent"`, "uplink=" + demoWifi.siteIf}
	case back:
		subs = []string{"msg=migrated", "to=" + demoWifi.siteIf}
	default:
		subs = []string{"path suspect", "uplink=" + demoWifi.siteIf}
	}
	lines := d.site.LogLines()
lines:
	for _, l := range lines[min(mark, len(lines)):] {
		for _, s := range subs {
			if !strings.Contains(l, s) {
				continue lines
			}
		}
		switch {
		case m.multipath != "" && back:
			return "; the site logged: wifi0 up, " + demoLogField(l, "reason")
		case m.multipath != "":
			return "; the site logged: wifi0 " + demoLogField(l, "reason")
		case back:
			return fmt.Sprintf("; the site logged: migrated to wifi0 (%s), outage %s", demoLogField(l, "reason"), demoLogField(l, "outage"))
		}
		return "; the site logged: path suspect, nothing received on wifi0 for " + demoLogField(l, "silent")
	}
	return ""
}

// demoLogField returns the value of key in a line of a daemon's log
// (slog's text format: key=value or key="quoted value"), or "".
func demoLogField(line, key string) string {
	m := regexp.MustCompile(`(?:^| )` + regexp.QuoteMeta(key) + `=("(?:[^"\\]|\\.)*"|\S*)`).FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	if v, err := strconv.Unquote(m[1]); err == nil {
		return v
	}
	return m[1]
}

// demoPause waits for d and reports whether ctx is still live.
func demoPause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func demoPing(from *netlab.NS, to netip.Addr) error {
	res, err := from.Ping(to, 20, 50*time.Millisecond, time.Second)
	if err != nil {
		return err
	}
	if len(res.RTTs) == 0 {
		return fmt.Errorf("no reply from %v (%d sent)", to, res.Sent)
	}
	rtts := slices.Clone(res.RTTs)
	slices.Sort(rtts)
	var sum time.Duration
	for _, r := range rtts {
		sum += r
	}
	fmt.Printf("    %d sent, %d received, rtt min/median/avg/max = %v/%v/%v/%v\n",
		res.Sent, res.Received, rtts[0].Round(time.Microsecond), rtts[len(rtts)/2].Round(time.Microsecond),
		(sum / time.Duration(len(rtts))).Round(time.Microsecond), rtts[len(rtts)-1].Round(time.Microsecond))
	return nil
}

// demoTransfer sends mib MiB over one TCP connection from src to the
// hub LAN host in dst and reports the rate the receiver saw.
func demoTransfer(ctx context.Context, src, dst *netlab.NS, mib int) error {
	ln, err := dst.ListenTCP(netip.AddrPortFrom(hubLANHost, 5201).String())
	if err != nil {
		return err
	}
	defer ln.Close()
	type result struct {
		n   int64
		dur time.Duration
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		got <- result{n, time.Since(start), err}
	}()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := src.DialTCP(dctx, netip.AddrPortFrom(hubLANHost, 5201).String())
	if err != nil {
		return err
	}
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	buf := make([]byte, 128<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	total := int64(mib) << 20
	for sent := int64(0); sent < total && ctx.Err() == nil; {
		m, err := c.Write(buf[:min(int64(len(buf)), total-sent)])
		if err != nil {
			c.Close()
			return fmt.Errorf("sending: %w", err)
		}
		sent += int64(m)
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	r := <-got
	c.Close()
	if r.err != nil {
		return fmt.Errorf("receiving: %w", r.err)
	}
	fmt.Printf("    received %.1f MiB in %v: %.0f Mbit/s\n", float64(r.n)/(1<<20), r.dur.Round(time.Millisecond),
		float64(r.n)*8/r.dur.Seconds()/1e6)
	return nil
}
