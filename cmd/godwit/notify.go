// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"log/slog"
	"strings"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// notifier speaks systemd's notify protocol (sd_notify(3)). Without
// NOTIFY_SOCKET every call is a no-op. It is used by the control loop only
// (not safe for concurrent use); the watchdog sends its pings itself.
type notifier struct {
	log        *slog.Logger
	ready      bool   // READY=1 was sent at least once
	lastStatus string // the last STATUS= sent
}

func (n *notifier) send(states ...string) {
	if _, err := sd.SdNotify(false, strings.Join(states, "\n")); err != nil {
		n.log.Debug("sd_notify", "err", err)
	}
}

// status sends STATUS= when s differs from the last one sent.
func (n *notifier) status(s string) {
	if s == n.lastStatus {
		return
	}
	n.lastStatus = s
	n.send("STATUS=" + s)
}

// markReady sends READY=1 together with a status line: at start-up, and
// again after every reload (RELOADING=1 must be followed by READY=1).
func (n *notifier) markReady(status string) {
	n.ready = true
	n.lastStatus = status
	n.send(sd.SdNotifyReady, "STATUS="+status)
}

// reloading sends RELOADING=1 with the MONOTONIC_USEC that systemd >= 253
// requires to match the reload with its READY=1.
func (n *notifier) reloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	n.send(sd.SdNotifyReloading, fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000))
}
