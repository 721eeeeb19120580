// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/tests/bench/measure"
)

// godwitPort is the hub's QUIC listen port, godwitTCPPort its listen_tcp
// port for the overtcp rows.
const (
	godwitPort    = 4433
	godwitTCPPort = 443
)

// udpBlockTable is the nft table of the overtcp rows: in the hub
// namespace, it drops every UDP packet to the hub's QUIC port, silently.
const udpBlockTable = "gwbudpblock"

func udpBlockRules(port int) string {
	return fmt.Sprintf(`table inet %s {
	chain in {
		type filter hook input priority 0; policy accept;
		udp dport %d counter drop
	}
}
`, udpBlockTable, port)
}

// godwitConfig renders a Godwit TOML config with one peer. listen,
// endpoint and metrics may be invalid (zero) to leave them out. An mtu of 0
// leaves the MTU to the daemon's default.
func godwitConfig(ifname, keyFile, stateDir string, addr netip.Prefix, mtu int, listen netip.AddrPort, peerName, peerPub string, peerAllowed netip.Prefix, endpoint, metrics netip.AddrPort) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[interface]\nname = %q\nprivate_key_file = %q\naddresses = [%q]\nstate_dir = %q\n", ifname, keyFile, addr.String(), stateDir)
	if mtu != 0 {
		fmt.Fprintf(&b, "mtu = %d\n", mtu)
	}
	if listen.IsValid() {
		fmt.Fprintf(&b, "listen = %q\n", listen.String())
	}
	if metrics.IsValid() {
		fmt.Fprintf(&b, "metrics_listen = %q\n", metrics.String())
	}
	fmt.Fprintf(&b, "\n[[peer]]\nname = %q\npublic_key = %q\nallowed_ips = [%q]\n", peerName, peerPub, peerAllowed.String())
	if endpoint.IsValid() {
		fmt.Fprintf(&b, "endpoint = %q\n", endpoint.String())
	}
	return b.String()
}

// startGodwit writes keys and configs for a hub and a site into a
// directory of their own (godwit-<tag>), starts both (the hub under
// taskset with opts.hubCPUs) and waits until the site logs "peer
// connected". The returned tunnelUp (non-nil once a process was started,
// also with an error) lists the processes to stop; its drops reads both
// daemons' control sockets.
func startGodwit(ctx context.Context, t *topo, opts startOpts) (*tunnelUp, error) {
	ifname := "gw" + t.lab.ID
	hubIn, siteIn := netip.MustParsePrefix("198.19.0.1/24"), netip.MustParsePrefix("198.19.0.2/32")
	dir := filepath.Join(t.lab.Dir, "godwit-"+opts.tag)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	type node struct {
		name, keyFile, pub string
	}
	nodes := []*node{{name: "hub"}, {name: "site"}}
	for _, n := range nodes {
		priv, err := commandOutput(ctx, "", t.godwitBin, "genkey")
		if err != nil {
			return nil, err
		}
		if n.pub, err = commandOutput(ctx, priv+"\n", t.godwitBin, "pubkey"); err != nil {
			return nil, err
		}
		n.keyFile = filepath.Join(dir, n.name+".key")
		if err := os.WriteFile(n.keyFile, []byte(priv+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		if err := os.Mkdir(filepath.Join(dir, n.name+"-state"), 0o700); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	hub, site := nodes[0], nodes[1]
	listen := netip.AddrPortFrom(t.hubVethIP, godwitPort)
	// With -profile each daemon serves pprof on loopback of its own
	// namespace, so both use the same port.
	var metrics netip.AddrPort
	var env []string
	if t.profile {
		metrics = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pprofPort)
		env = append(env, "GODWIT_PPROF=1")
	}
	cfgs := map[string]string{
		"hub": godwitConfig(ifname, hub.keyFile, filepath.Join(dir, "hub-state"), hubIn, t.mtu, listen,
			"site", site.pub, siteIn, netip.AddrPort{}, metrics),
		"site": godwitConfig(ifname, site.keyFile, filepath.Join(dir, "site-state"), siteIn, t.mtu, netip.AddrPort{},
			"hub", hub.pub, hubIn.Masked(), listen, metrics),
	}

	up := &tunnelUp{hubAddr: hubIn.Addr(), proto: "udp", port: godwitPort}
	if opts.overTCP {
		// The hub listens on TCP too, the site knows it (and so runs in
		// failover mode), and UDP to the hub never arrives: the site falls
		// back to its TCP path a second after its start.
		tcp := netip.AddrPortFrom(t.hubVethIP, godwitTCPPort)
		cfgs["hub"] = strings.Replace(cfgs["hub"], "\n[[peer]]", fmt.Sprintf("listen_tcp = %q\n\n[[peer]]", tcp), 1)
		cfgs["site"] += fmt.Sprintf("endpoint_tcp = %q\n", tcp)
		if _, err := nsCommand(ctx, t.hub, udpBlockRules(godwitPort), "nft", "-f", "-"); err != nil {
			return nil, err
		}
		up.proto, up.port = "tcp", godwitTCPPort
		up.cleanup = func() { _, _ = t.hub.Exec("nft", "delete", "table", "inet", udpBlockTable) }
	}
	if v, err := commandOutput(ctx, "", t.godwitBin, "version"); err == nil {
		up.version = strings.SplitN(v, "\n", 2)[0]
	}
	sockets := map[string]string{}
	for i, ns := range []*netlab.NS{t.hub, t.site} {
		n := nodes[i]
		path := filepath.Join(dir, n.name+".toml")
		if err := os.WriteFile(path, []byte(cfgs[n.name]), 0o600); err != nil {
			return up, fmt.Errorf("bench: %w", err)
		}
		bin := t.godwitBin
		if n.name == "hub" && opts.hubCPUs > 0 {
			// StartDaemon runs bin with the daemon's arguments, so taskset
			// goes into a script that execs it (the pid stays the daemon's).
			if strings.Contains(t.godwitBin, "'") {
				return up, fmt.Errorf("bench: godwit binary path %q has a quote", t.godwitBin)
			}
			bin = filepath.Join(dir, "godwit-taskset")
			script := fmt.Sprintf("#!/bin/sh\nexec taskset -c %s '%s' \"$@\"\n", cpuList(opts.hubCPUs), t.godwitBin)
			if err := os.WriteFile(bin, []byte(script), 0o700); err != nil {
				return up, fmt.Errorf("bench: %w", err)
			}
		}
		d, err := ns.StartDaemon("godwit-"+n.name+"-"+opts.tag, bin, path, env...)
		if err != nil {
			return up, err
		}
		up.procs = append(up.procs, d.Proc)
		sockets[n.name] = d.Socket
	}
	up.drops = godwitDrops(sockets)
	// The site dials, so its log shows the connection first.
	connected := []string{"peer connected", "peer=hub"}
	if opts.overTCP {
		connected = append(connected, "transport=tcp")
	}
	err := netlab.WaitFor(ctx, 20*time.Second, "connection from the godwit site", func() (bool, error) {
		if len(up.procs[1].LogLines(connected...)) > 0 {
			return true, nil
		}
		if up.procs[0].Exited() || up.procs[1].Exited() {
			return false, errors.New("godwit exited before connecting")
		}
		return false, nil
	})
	if err != nil {
		return up, fmt.Errorf("bench: %w%s", err, measure.ProcLogs(up.procs...))
	}
	if up.mtu, err = linkMTU(t.site, ifname); err != nil {
		return up, err
	}
	return up, nil
}
