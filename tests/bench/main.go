// SPDX-License-Identifier: MIT

// Command bench measures Godwit side by side with wireguard-go on this
// machine. Run it as root from the module root:
//
//	go run ./tests/bench [-duration 10s] [-streams 1,4] [-json] [-only godwit|wireguard]
//
// It builds two network namespaces joined by one veth (198.18.0.1/24 and
// 2001:db8::1/64 in "hub", 198.18.0.2/24 and 2001:db8::2/64 in "site"),
// then, one daemon after the other, starts a Godwit hub and site (inner
// 10.77.0.1/24 and 10.77.0.2/32) or two wireguard-go instances (inner
// 10.78.0.1/24 and 10.78.0.2/24, UDP port 51820) and measures bulk TCP
// throughput from site to hub for each stream count, the daemons' CPU
// seconds per GB moved, and ping round trips through the idle tunnel and
// through the bare veth. wireguard-go is built from the module proxy in the
// run and configured through its UAPI socket, without the wg tool. Each
// project keeps its own default inner MTU. Everything the run creates is
// removed at the end, also on error or Ctrl-C.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line settings.
type options struct {
	duration time.Duration // measured interval of each TCP run
	warmup   time.Duration // sending before each measured interval
	streams  []int         // parallel TCP streams, one run per entry
	json     bool          // print JSON on stdout, the table on stderr
	only     string        // "", "godwit" or "wireguard"
	pings    int           // echo requests per ping series
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var streams string
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "measured `interval` of each TCP run")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "TCP sending before the measured interval starts")
	fs.StringVar(&streams, "streams", "1,4", "comma-separated `counts` of parallel TCP streams, one run each")
	fs.BoolVar(&o.json, "json", false, "print the results as JSON on stdout (the table goes to stderr)")
	fs.StringVar(&o.only, "only", "", "measure only `godwit` or wireguard")
	fs.IntVar(&o.pings, "pings", 100, "echo requests per ping series (10 ms apart)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	var err error
	if o.streams, err = parseStreams(streams); err != nil {
		return o, err
	}
	switch {
	case o.only != "" && o.only != "godwit" && o.only != "wireguard":
		return o, fmt.Errorf("bench: -only %q: want godwit or wireguard", o.only)
	case o.duration <= 0 || o.duration > time.Hour:
		return o, fmt.Errorf("bench: -duration %v: want more than 0 and at most 1h", o.duration)
	case o.warmup < 0 || o.warmup > time.Minute:
		return o, fmt.Errorf("bench: -warmup %v: want 0 to 1m", o.warmup)
	case o.pings < 1 || o.pings > 10000:
		return o, fmt.Errorf("bench: -pings %d: want 1 to 10000", o.pings)
	}
	return o, nil
}

// parseStreams parses "1,4" into [1 4]. Counts are 1 to 64, without
// duplicates.
func parseStreams(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 64 {
			return nil, fmt.Errorf("bench: -streams %q: %q is not a count from 1 to 64", s, f)
		}
		if slices.Contains(out, n) {
			return nil, fmt.Errorf("bench: -streams %q: %d given twice", s, n)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o, log, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		log.Error("bench failed", "err", err)
		os.Exit(1)
	}
}
