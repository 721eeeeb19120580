// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/godwit-vpn/godwit/config"
)

func cmdRun(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	path := fs.String("c", "", "config `file`")
	if err := fs.Parse(args); err != nil || *path == "" || fs.NArg() > 0 {
		return exitError{code: 2, msg: "usage: godwit run -c FILE"}
	}
	// A bad config must never touch the host: load and validate it before
	// anything else happens.
	cfg, err := config.Load(*path)
	if err != nil {
		return configError(err)
	}
	log := newLogger(cfg.Interface.LogLevel)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d, err := startDaemon(ctx, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitError{code: 1}
	}
	n := &notifier{log: log}
	// A hub is ready once it listens. A site is ready once its first peer
	// is connected, so that units ordered after it find the tunnel up; if
	// that takes longer than readyWait it reports ready anyway and says
	// what is missing.
	var readyTimeout <-chan time.Time
	if d.dials() {
		t := time.NewTimer(readyWait)
		defer t.Stop()
		readyTimeout = t.C
	} else {
		status, _ := d.status()
		n.markReady(status)
	}
	for {
		select {
		case <-ctx.Done():
			n.send(sd.SdNotifyStopping, "STATUS=stopping")
			log.Info("stopping", "reason", "signal")
			return d.stop()
		case <-d.failed:
			log.Error("data path failed", "err", d.fatalErr)
			_ = d.stop()
			return exitError{code: 1}
		case <-d.changed:
			status, connected := d.status()
			if !n.ready && connected > 0 {
				n.markReady(status)
			} else {
				n.status(status)
			}
		case <-readyTimeout:
			if !n.ready {
				status, _ := d.status()
				n.markReady(fmt.Sprintf("%s (ready without a connected peer after %v)", status, readyWait))
			}
		case <-hup:
			n.reloading()
			d.reload(*path)
			status, _ := d.status()
			n.markReady(status)
		}
	}
}

// readyWait bounds how long a site waits for its first peer before it
// reports READY=1 to systemd.
const readyWait = 20 * time.Second

// newLogger logs key=value lines to stderr without timestamps: journald
// (or the terminal) adds its own.
func newLogger(level slog.Level) *slog.Logger {
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	})
	return slog.New(h)
}

// forwardingHint reports which IP forwarding sysctls are off although cfg
// routes prefixes for other hosts (a hub, or a site with a LAN behind it).
func forwardingHint(cfg *config.Config) string {
	routesOthers := len(cfg.Peers) > 1
	for _, p := range cfg.Peers {
		for _, pfx := range p.AllowedIPs {
			inside := false
			for _, a := range cfg.Interface.Addresses {
				if a.Masked().Contains(pfx.Addr()) && a.Bits() <= pfx.Bits() {
					inside = true
				}
			}
			if !inside {
				routesOthers = true
			}
		}
	}
	if !routesOthers {
		return ""
	}
	var off []string
	for _, k := range []string{"net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"} {
		b, err := os.ReadFile("/proc/sys/" + k)
		if err == nil && strings.TrimSpace(string(b)) == "0" {
			off = append(off, strings.ReplaceAll(k, "/", ".")+"=1")
		}
	}
	if len(off) == 0 {
		return ""
	}
	return "sysctl -w " + strings.Join(off, " ")
}

var errReloadInterface = errors.New("changing [interface] needs a restart")

// interfaceChanged reports what differs between two [interface] sections
// that a reload cannot apply.
func interfaceChanged(a, b *config.Interface) error {
	var diffs []string
	if a.Name != b.Name {
		diffs = append(diffs, "name")
	}
	if a.PrivateKey != b.PrivateKey {
		diffs = append(diffs, "private key")
	}
	if a.Listen != b.Listen {
		diffs = append(diffs, "listen")
	}
	if a.MTU != b.MTU {
		diffs = append(diffs, "mtu")
	}
	if a.FwMark != b.FwMark || a.Table != b.Table {
		diffs = append(diffs, "fwmark/table")
	}
	if fmt.Sprint(a.Addresses) != fmt.Sprint(b.Addresses) {
		diffs = append(diffs, "addresses")
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w (%s changed)", errReloadInterface, strings.Join(diffs, ", "))
}
