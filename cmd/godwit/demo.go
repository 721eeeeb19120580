// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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
// (GODWIT_SOCKET), which is how the demo reads their status.
const demoTopology = `
  hublan  eth0 192.168.10.2                         sitelan  eth0 192.168.20.2
            |                                                  |
  hub     lan0 192.168.10.1                         site     lan0 192.168.20.1
          lo   198.18.0.1/32, QUIC on :4433                  uplinks = ["wifi0", "cell0"]
          wifi0h 198.18.1.1/24 ===== Wi-Fi ======== wifi0 198.18.1.2/24  default route, metric 100
          cell0h 198.18.2.1/24 ===== cellular ===== cell0 198.18.2.2/24  default route, metric 200
          gw0 10.77.0.1/24  <-------- QUIC ------->  gw0 10.77.0.2/24
`

var (
	hubLANHost = netip.MustParseAddr("192.168.10.2")
	hubInner6  = netip.MustParseAddr("fd77::1")
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
// daemons, shows pings, a TCP transfer, an uplink switch and back and a
// site restart, and removes everything on return, also when ctx is
// cancelled (Ctrl-C).
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
	d := &demoRun{ns: n, exe: exe, siteCfg: siteCfg}

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

	step("ping 192.168.20.2 (site LAN) -> 192.168.10.2 (hub LAN), 20 packets")
	if err := demoPing(n.siteLAN, hubLANHost); err != nil {
		return err
	}
	step("ping fd77::1 (hub, inner IPv6) from the site")
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
		{addr{n.hubLAN, "eth0", "192.168.10.2/24"}, addr{n.hub, "lan0", "192.168.10.1/24"}},
		{addr{n.hub, demoWifi.hubIf, demoWifi.hub}, addr{n.site, demoWifi.siteIf, demoWifi.site}},
		{addr{n.hub, demoCell.hubIf, demoCell.hub}, addr{n.site, demoCell.siteIf, demoCell.site}},
		{addr{n.site, "lan0", "192.168.20.1/24"}, addr{n.siteLAN, "eth0", "192.168.20.2/24"}},
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
		{n.hubLAN, []string{"ip", "route", "add", "default", "via", "192.168.10.1"}},
		{n.siteLAN, []string{"ip", "route", "add", "default", "via", "192.168.20.1"}},
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
addresses = ["10.77.0.1/24", "fd77::1/64"]
listen = "198.18.0.1:4433"
state_dir = %q

[[peer]]
name = "site"
public_key = %q
allowed_ips = ["10.77.0.2/32", "fd77::2/128", "192.168.20.0/24"]
`, filepath.Join(dir, "hub.key"), filepath.Join(dir, "hub-state"), siteKey.Public())
	site := fmt.Sprintf(`# the site: dials the hub over Wi-Fi, moves to cellular when Wi-Fi goes away
[interface]
name = "gw0"
private_key_file = %q
addresses = ["10.77.0.2/24", "fd77::2/64"]
uplinks = ["wifi0", "cell0"]
state_dir = %q

[[peer]]
name = "hub"
public_key = %q
allowed_ips = ["10.77.0.1/32", "fd77::1/128", "192.168.10.0/24"]
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
	hub, site    *netlab.Daemon
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
