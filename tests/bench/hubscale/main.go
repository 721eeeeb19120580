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
	case o.duration < time.Second || o.duration > 10*time.Minute:
		return o, fmt.Errorf("hubscale: -duration %v: want 1s to 10m", o.duration)
	}
	return o, nil
}

func main() {
	os.Exit(measure.Main("hubscale", os.Args[1:], os.Stdout, os.Stderr, parseFlags, run))
}
