// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/godwit-vpn/godwit/config"
)

func cmdRun(ctx context.Context, args []string) error {
	// A bad config must never touch the host: load and validate it before
	// anything else happens.
	path, cfg, err := loadConfigArg("run", args)
	if err != nil {
		return err
	}
	// From here on a signal stops the daemon in order (ctx): it may have
	// touched the host.
	signalsHandled.Store(true)
	log := newLogger(cfg.Interface.LogLevel)

	wedge, err := wedgeFromEnv() // test hook, see testhooks.go
	if err != nil {
		return exitError{code: 2, msg: "godwit run: " + err.Error()}
	}
	if _, _, err := redialFromEnv(); err != nil { // test hook, see testhooks.go
		return exitError{code: 2, msg: "godwit run: " + err.Error()}
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	d, err := startDaemon(ctx, cfg, log)
	if err != nil {
		log.Error("start failed", "err", err)
		if errors.Is(err, errInterfaceInUse) {
			return exitError{code: 1, msg: "godwit run: " + err.Error()}
		}
		if errors.Is(err, errKeylog) {
			return exitError{code: exitConfig, msg: "godwit run: " + err.Error()}
		}
		return exitError{code: 1}
	}
	n := &notifier{log: log}

	wd, err := newWatchdog(log, d.tn.Probe)
	if err != nil {
		log.Warn("systemd watchdog off", "err", err)
	}
	var asks chan chan struct{} // nil, so never selected, without a watchdog
	if wd != nil {
		asks = wd.asks
		wctx, wcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			wd.run(wctx)
		}()
		defer func() { wcancel(); <-done }()
	}
	wedgeControl, stopWedge := wedge.controlTimer(log) // test hook: nil without it
	defer stopWedge()

	// A hub is ready once it listens: startDaemon returns with the TUN,
	// its addresses and routes and the listener up. A site is ready once
	// its first peer is connected, so that units ordered after it find the
	// tunnel up; if that takes longer than ready_wait it reports ready
	// anyway and says what is missing.
	readyWait := cfg.Interface.ReadyWait
	var readyTimeout <-chan time.Time
	if d.dials() && readyWait > 0 {
		t := time.NewTimer(readyWait)
		defer t.Stop()
		readyTimeout = t.C
	} else {
		status, _ := d.status()
		n.markReady(status)
	}
	// reload applies the file again (SIGHUP, `godwit reload`) and says
	// how it went to systemd and to the caller.
	reload := func() error {
		n.reloading()
		log.Info("reloading", "file", path)
		err := d.reload(path)
		// The parse of the file (up to config.MaxFileSize) is garbage
		// now: give it back to the system at once rather than keep a
		// reload's peak as the daemon's size until the scavenger gets
		// to it. Reloads are rare; this costs one GC.
		debug.FreeOSMemory()
		status, _ := d.status()
		switch {
		case errors.Is(err, errRoutesIncomplete):
			status = fmt.Sprintf("%s; %s", oneLine(err), status)
		case err != nil:
			status = fmt.Sprintf("reload failed: %s; running the previous config; %s", oneLine(err), status)
		}
		n.markReady(status)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			n.send(sd.SdNotifyStopping, "STATUS=stopping")
			log.Info("stopping", "reason", "signal")
			return d.stop()
		case <-d.failed:
			log.Error("data path failed", "err", d.fatalErr)
			n.send(sd.SdNotifyStopping, "STATUS=data path failed: "+oneLine(d.fatalErr))
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
				missing := unconnectedPeers(d)
				log.Warn("ready without a connected peer", "waited", readyWait, "not_connected", strings.Join(missing, ","))
				n.markReady(fmt.Sprintf("%s; not connected after %v: %s", status, readyWait, strings.Join(missing, ", ")))
			}
		case <-hup:
			reload()
		case reply := <-d.reloads:
			reply <- reload()
		case reply := <-asks:
			close(reply)
		case <-wedgeControl:
			wedgeControlLoop(log, n) // never returns
		}
	}
}

// unconnectedPeers returns the names of the configured peers without a
// connection, sorted.
func unconnectedPeers(d *daemon) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var names []string
	for _, ps := range d.peers {
		if !ps.connected() {
			names = append(names, ps.cfg.Name)
		}
	}
	slices.Sort(names)
	return names
}

// oneLine joins the lines of err (errors.Join, config problems) with "; "
// for a STATUS= line, which must not contain a newline.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// logLevel is the daemon's log level; a reload may change it.
var logLevel slog.LevelVar

// newLogger logs key=value lines to stderr without timestamps: journald
// (or the terminal) adds its own.
func newLogger(level slog.Level) *slog.Logger {
	logLevel.Set(level)
	h := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{
		Level: &logLevel,
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
	for _, f := range []struct {
		name    string
		changed bool
	}{
		{"name", a.Name != b.Name},
		{"private key", a.PrivateKey != b.PrivateKey},
		{"listen", a.Listen != b.Listen},
		{"listen_tcp", a.ListenTCP != b.ListenTCP},
		{"mtu", a.MTU != b.MTU},
		{"fwmark", a.FwMark != b.FwMark},
		{"table", a.Table != b.Table || a.TableOff != b.TableOff},
		{"addresses", !slices.Equal(a.Addresses, b.Addresses)},
		{"state_dir", a.StateDir != b.StateDir},
		{"metrics_listen", a.MetricsListen != b.MetricsListen},
		{"qlog_dir", a.QlogDir != b.QlogDir},
		{"keylog_file", a.KeylogFile != b.KeylogFile},
		{"uplinks", !slices.Equal(a.Uplinks, b.Uplinks) || a.UplinksAny != b.UplinksAny},
		{"keepalive", a.KeepAlive != b.KeepAlive},
		{"hold_down", a.HoldDown != b.HoldDown},
		{"kill_switch", a.KillSwitch != b.KillSwitch},
		{"post_up", !slices.Equal(a.PostUp, b.PostUp)},
		{"pre_down", !slices.Equal(a.PreDown, b.PreDown)},
	} {
		if f.changed {
			diffs = append(diffs, f.name)
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return fmt.Errorf("%w (%s changed)", errReloadInterface, strings.Join(diffs, ", "))
}
