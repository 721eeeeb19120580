// SPDX-License-Identifier: MIT

// Command godwit is the Godwit VPN daemon and its tools: run, check, show, reload,
// genkey, pubkey, demo and version.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// version is stamped at build time with -ldflags "-X main.version=...".
var version = "devel"

const usage = `usage: godwit <command> [arguments]

commands:
  run -c FILE     run the daemon with the TOML config FILE (as root)
  check -c FILE   validate FILE and print every problem with its line
  show [-i IFACE] [--json] [--socket PATH]
                  print the running daemon's interface, peers and paths
  reload [-i IFACE] [--socket PATH]
                  make the running daemon apply its config file again; fails on a bad file
  genkey          print a new private key (base64)
  pubkey          read a private key on stdin and print its public key
  demo            build a hub and a site in network namespaces and show traffic (as root)
  version         print the version
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := notifyContext()
	defer stop()
	err := dispatch(ctx, os.Args[1], os.Args[2:])
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintln(os.Stderr, ee.msg)
		}
		stop()
		os.Exit(ee.code)
	default:
		fmt.Fprintf(os.Stderr, "godwit %s: %v\n", os.Args[1], err)
		stop()
		os.Exit(1)
	}
}

// signalsHandled is set once the command watches its context: until
// then SIGINT and SIGTERM end the process at once (see notifyContext).
var signalsHandled atomic.Bool

// notifyContext returns a context that SIGINT or SIGTERM cancels, like
// signal.NotifyContext, installed before anything else runs. Until a
// command says it watches the context (signalsHandled), which `run` does
// only once its config is loaded, a signal ends the process at once with
// 128+signal, as the default action would: a `check` stuck on a slow file
// or a `run` that has not started its daemon must not ignore Ctrl-C.
func notifyContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				if !signalsHandled.Load() {
					n := 0
					if sn, ok := s.(syscall.Signal); ok {
						n = int(sn)
					}
					fmt.Fprintf(os.Stderr, "godwit: %v\n", s)
					os.Exit(128 + n)
				}
				cancel()
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		select {
		case <-done:
		default:
			close(done)
		}
		cancel()
	}
}

func dispatch(ctx context.Context, cmd string, args []string) error {
	switch cmd {
	case "run":
		return cmdRun(ctx, args)
	case "check":
		return cmdCheck(args)
	case "show":
		signalsHandled.Store(true)
		return cmdShow(ctx, args)
	case "reload":
		signalsHandled.Store(true)
		return cmdReload(ctx, args)
	case "genkey":
		return cmdGenkey(args)
	case "pubkey":
		return cmdPubkey(args)
	case "demo":
		signalsHandled.Store(true)
		return cmdDemo(ctx, args)
	case "version", "--version", "-v":
		fmt.Println("godwit", version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return exitError{code: 2, msg: fmt.Sprintf("godwit: unknown command %q", cmd)}
}

// exitError makes main exit with code after printing msg (if any).
type exitError struct {
	code int
	msg  string
}

func (e exitError) Error() string { return fmt.Sprintf("exit %d: %s", e.code, e.msg) }

// exitConfig is EX_CONFIG from sysexits.h: the unit's
// RestartPreventExitStatus=78 stops a restart loop on a bad config.
const exitConfig = 78
