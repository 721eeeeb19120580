// SPDX-License-Identifier: MIT

// Command hubscale measures one Godwit hub serving many sites. Run it as
// root from the module root:
//
//	go run ./tests/bench/hubscale [-sites 200] [-duration 30s] [-json]
//
// It builds two network namespaces joined by one veth: "hub"
// (198.18.0.1/24) runs the real daemon (`godwit run`, inner 198.19.0.1/16,
// UDP port 4433, one [[peer]] per site); "sites" (198.18.0.2/24) holds this
// program's simulated sites. Each site is a quicconn.Endpoint with its own
// Ed25519 key and UDP socket, and a tunnel.Tunnel over a tuntest.Channel
// (inner 198.19.0.2 and up), kept connected by Endpoint.DialLoop.
//
// Phases: the hub alone (RSS); all sites dial at once from cold (time to
// connect per site and in total); the sites connected and idle for
// -duration (hub RSS and CPU); then every site sends one ICMP echo request
// per second to the hub's inner address for -duration, which the hub's
// kernel answers back through the tunnel (hub RSS and CPU, replies
// counted). Memory per idle site is (RSS idle - RSS alone) / sites. Hub CPU
// is utime+stime from /proc/<pid>/stat over the phase's wall time, in
// percent of one core. Everything is torn down at the end, also on error or
// Ctrl-C.
//
// With -hubs 2 (issue 13, target 3) it measures two hubs instead, and the
// failover of half the sites from one to the other:
//
//	        sites (one process, N simulated sites)
//	 198.18.0.2 /        \ 198.18.1.2
//	198.18.0.1 /          \ 198.18.1.1
//	hub-a: godwit          hub-b: godwit        routes = "connected",
//	inner 198.19.0.1/32    inner 198.19.128.1/32  proto 77 kernel routes
//	BIRD (AS 65001)        BIRD (AS 65002)        learned by BIRD
//	198.18.2.2 \          / 198.18.3.2
//	 198.18.2.1 \        / 198.18.3.1
//	        core: BIRD (AS 65000), the data-centre host 198.19.255.1 on lo
//
// Every site connects to both hubs (priorities 1 and 2; even sites prefer
// hub-a, odd ones hub-b; shared allowed_ips 198.19.0.0/16) and judges both
// connections as godwit's site does (path health, preference sent to the
// hubs). Each hub routes a site's /32 into its TUN only while the site
// prefers it; its BIRD learns those routes and announces them to the core,
// whose BIRD puts them in the core's kernel. Phases: hubs alone (RSS), all
// sites connect to both (time), idle for -duration (RSS, CPU), then every
// site sends one echo per 100 ms to 198.19.255.1 (answered by the core, the
// reply routed by what BGP learned) and hub-a is killed with SIGKILL: for
// every site that preferred hub-a, the time from the kill to its first echo
// reply to a request sent after the kill (which only hub-b can carry), and
// how long the core takes to have every site's prefix via hub-b. With
// -bgp=false there is no core: 198.19.255.1 is on each hub's loopback.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/godwit-vpn/godwit/tests/bench/measure"
	"github.com/godwit-vpn/godwit/tunnel"
)

// options are the command-line settings.
type options struct {
	sites    int           // simulated sites
	duration time.Duration // length of the idle phase and of the traffic phase
	json     bool          // JSON on stdout, the table on stderr
	conns    int           // connections per site (0 is 1): more than 1 makes multipath sets on the hub
	hubs     int           // 1 (0 is 1) or 2: two hubs, sites on both, kill -9 of one
	bgp      bool          // with hubs 2: a core namespace and BIRD on every hub and the core
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("hubscale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.sites, "sites", 200, "simulated sites (`n`, 1 to 4000)")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "length of the idle phase and of the 1 packet/s phase")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON on stdout (the table goes to stderr)")
	fs.IntVar(&o.conns, "conns", 1, "connections per site (`n`, 1 to 8): with more than 1 each site announces multipath and\n"+
		"the hub keeps a set per site, with a health monitor on every connection")
	fs.IntVar(&o.hubs, "hubs", 1, "hubs (`n`, 1 or 2): with 2, every site connects to both and prefers one (half each),\n"+
		"and hub A is killed with SIGKILL while every site pings through the tunnel")
	fs.BoolVar(&o.bgp, "bgp", true, "with -hubs 2: a core namespace whose BIRD learns the sites' routes from a BIRD on each hub over BGP")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() != 0:
		return o, fmt.Errorf("hubscale: unexpected arguments %q", fs.Args())
	case o.sites < 1 || o.sites > maxSites:
		return o, fmt.Errorf("hubscale: -sites %d: want 1 to %d", o.sites, maxSites)
	case o.conns < 1 || o.conns > tunnel.MaxPaths:
		return o, fmt.Errorf("hubscale: -conns %d: want 1 to %d", o.conns, tunnel.MaxPaths)
	case o.hubs < 1 || o.hubs > 2:
		return o, fmt.Errorf("hubscale: -hubs %d: want 1 or 2", o.hubs)
	case o.hubs == 2 && o.conns > 1:
		return o, fmt.Errorf("hubscale: -hubs 2 with -conns %d: two hubs use one connection to each", o.conns)
	case o.duration < time.Second || o.duration > 10*time.Minute:
		return o, fmt.Errorf("hubscale: -duration %v: want 1s to 10m", o.duration)
	}
	return o, nil
}

func main() {
	os.Exit(measure.Main("hubscale", os.Args[1:], os.Stdout, os.Stderr, parseFlags, run))
}
