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

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/tests/netlab"
)

// The demo topology: two LANs joined by a Godwit tunnel between a hub and a
// site, each namespace made (and removed) by the demo.
//
//	hublan             hub                          site              sitelan
//	eth0 ---------- lan0    up0 ==== underlay ==== up0    lan0 ---------- eth0
//	192.168.10.2    192.168.10.1  198.18.0.1   198.18.0.2  192.168.20.1   192.168.20.2
//	                gw0 10.77.0.1/24  <-- QUIC -->  gw0 10.77.0.2/24
const demoTopology = `
  hublan             hub                          site              sitelan
  eth0 ---------- lan0    up0 ==== underlay ==== up0    lan0 ---------- eth0
  192.168.10.2    192.168.10.1  198.18.0.1   198.18.0.2  192.168.20.1   192.168.20.2
                  gw0 10.77.0.1/24  <-- QUIC -->  gw0 10.77.0.2/24
`

var (
	hubLANHost = netip.MustParseAddr("192.168.10.2")
	hubInner6  = netip.MustParseAddr("fd77::1")
)

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
	os.Setenv("GODWIT_BIN", exe)

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
	fmt.Print("Godwit demo: a hub and a site, each with a LAN behind it, in network namespaces\n", demoTopology, "\n")

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

	step("starting both daemons")
	start := time.Now()
	hub, err := n.hub.Start("hub", exe, "run", "-c", hubCfg)
	if err != nil {
		return err
	}
	site, err := n.site.Start("site", exe, "run", "-c", siteCfg)
	if err != nil {
		return err
	}
	if err := n.siteLAN.WaitPing(hubLANHost, 15*time.Second); err != nil {
		return fmt.Errorf("tunnel did not come up: %w\n--- hub log ---\n%s--- site log ---\n%s", err, hub.Output(), site.Output())
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

	step("stopping both daemons (SIGTERM)")
	for _, p := range []*netlab.Proc{site, hub} {
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
		{addr{n.hub, "up0", "198.18.0.1/24"}, addr{n.site, "up0", "198.18.0.2/24"}},
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
	for _, ns := range []*netlab.NS{n.hub, n.site} {
		if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
	}
	return &n, nil
}

// demoConfigs writes keys and the two TOML files into dir.
func demoConfigs(dir string) (hubPath, sitePath string, err error) {
	hubKey, err := config.GeneratePrivateKey()
	if err != nil {
		return "", "", err
	}
	siteKey, err := config.GeneratePrivateKey()
	if err != nil {
		return "", "", err
	}
	for name, k := range map[string]config.PrivateKey{"hub.key": hubKey, "site.key": siteKey} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(k.String()+"\n"), 0o600); err != nil {
			return "", "", err
		}
	}
	hub := fmt.Sprintf(`# the hub: accepts the site on its underlay address
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
	site := fmt.Sprintf(`# the site: dials the hub
[interface]
name = "gw0"
private_key_file = %q
addresses = ["10.77.0.2/24", "fd77::2/64"]
state_dir = %q

[[peer]]
name = "hub"
public_key = %q
allowed_ips = ["10.77.0.1/32", "fd77::1/128", "192.168.10.0/24"]
endpoint = "198.18.0.1:4433"
`, filepath.Join(dir, "site.key"), filepath.Join(dir, "site-state"), hubKey.Public())
	hubPath, sitePath = filepath.Join(dir, "hub.toml"), filepath.Join(dir, "site.toml")
	if err := os.WriteFile(hubPath, []byte(hub), 0o600); err != nil {
		return "", "", err
	}
	return hubPath, sitePath, os.WriteFile(sitePath, []byte(site), 0o600)
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
