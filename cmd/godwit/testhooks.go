// SPDX-License-Identifier: MIT

package main

// The test hooks: behaviour that only Godwit's own tests and benchmarks
// turn on, each through an environment variable read in this file and
// nowhere else. None is ever to be set in production.
//
//   - GODWIT_DEBUG_WEDGE=control or =datapath wedges the control loop
//     (run.go's select) or the data path (the first TUN write), so that the
//     watchdog tests (tests/systemd_test.go, and the real-systemd test of
//     the unit) can watch WATCHDOG=1 stop and systemd restart the daemon.
//     `godwit run` refuses any other value.
//   - GODWIT_DEBUG_WEDGE_AFTER (a Go duration, default 2s) is how long
//     after the start the wedge happens.
//   - GODWIT_PPROF=1 makes the metrics endpoint (metrics_listen) also serve
//     the Go profiler at /debug/pprof/ (tests/bench -profile).
//   - GODWIT_DEBUG_REDIAL_MAX (a Go duration, 250ms to 15s) lowers the cap
//     of the dial loops' backoff (quicconn.Config.RedialMax, 15 s), so
//     that the system test of the TCP fallback (tests/tcpfallback_test.go)
//     sees the UDP retries that end a fallback within seconds. With it,
//     the handshake timeout of each UDP attempt (quicconn's
//     HandshakeTimeout) is lowered to 2 s too: a UDP attempt into a
//     blocked network waits that long before the next one.
//
// Not test hooks, although the tests use them: GODWIT_SOCKET moves the
// control socket (ctl.go; operators need it for two daemons with one
// interface name in different network namespaces), and GODWIT_BIN and
// GODWIT_E2E are read by the tests themselves (routing/netlab,
// routing/netlab/labtest), not by the daemon. README.md lists every
// environment variable.

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/godwit-vpn/godwit/tun"
)

// The environment variables of the test hooks.
const (
	envWedge      = "GODWIT_DEBUG_WEDGE"
	envWedgeAfter = "GODWIT_DEBUG_WEDGE_AFTER"
	envPprof      = "GODWIT_PPROF"
	envRedialMax  = "GODWIT_DEBUG_REDIAL_MAX"
)

// redialFromEnv reads the redial hook: the RedialMax and HandshakeTimeout
// to set in quicconn.Config, zero (the defaults) when it is unset.
func redialFromEnv() (redialMax, handshake time.Duration, err error) {
	s := os.Getenv(envRedialMax)
	if s == "" {
		return 0, 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 250*time.Millisecond || d > 15*time.Second {
		return 0, 0, fmt.Errorf("%s=%q: want a duration from 250ms to 15s", envRedialMax, s)
	}
	return d, 2 * time.Second, nil
}

// debugWedge is the parsed wedge hook: which loop to wedge, and when. The
// control loop blocks forever in its select (see wedgeControlLoop); the
// data path blocks in the first TUN Write after the delay, until the
// device is closed, so it needs a packet to write to wedge: inbound
// traffic or an ICMP error the tunnel generates.
type debugWedge struct {
	loop  string // "", "control" or "datapath"
	after time.Duration
}

// wedgeFromEnv reads the wedge hook from the environment.
func wedgeFromEnv() (debugWedge, error) {
	w := debugWedge{loop: os.Getenv(envWedge), after: 2 * time.Second}
	switch w.loop {
	case "":
		return w, nil
	case "control", "datapath":
	default:
		return w, fmt.Errorf("%s=%q: want control or datapath", envWedge, w.loop)
	}
	if s := os.Getenv(envWedgeAfter); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return w, fmt.Errorf("%s=%q: want a duration like 2s", envWedgeAfter, s)
		}
		w.after = d
	}
	return w, nil
}

// controlTimer returns a channel that fires when the control loop is due
// to wedge, nil (never) when w does not wedge it, and a function that
// stops the timer.
func (w debugWedge) controlTimer(log *slog.Logger) (<-chan time.Time, func()) {
	if w.loop != "control" {
		return nil, func() {}
	}
	log.Warn("debug: the control loop will wedge (test hook)", "env", envWedge, "after", w.after)
	t := time.NewTimer(w.after)
	return t.C, func() { t.Stop() }
}

// wedgeControlLoop blocks the calling control loop forever, after saying
// so in the log and on the notify socket: only a signal that kills ends
// the process.
func wedgeControlLoop(log *slog.Logger, n *notifier) {
	log.Warn("debug: wedging the control loop (test hook)", "env", envWedge)
	n.send("STATUS=debug: wedged the control loop")
	select {}
}

// wedgeDataPath returns dev itself unless the wedge hook asks to wedge the
// data path, in which case it returns dev wrapped so that its first Write
// after the delay blocks until Close.
func wedgeDataPath(dev tun.Device, log *slog.Logger) tun.Device {
	w, err := wedgeFromEnv()
	if err != nil || w.loop != "datapath" {
		return dev // cmdRun has reported a bad hook before starting
	}
	log.Warn("debug: the data path will wedge (test hook)", "env", envWedge, "after", w.after)
	return &wedgedDevice{Device: dev, log: log, at: time.Now().Add(w.after), closed: make(chan struct{})}
}

// wedgedDevice is the data path's wedge: see wedgeDataPath.
type wedgedDevice struct {
	tun.Device
	log       *slog.Logger
	at        time.Time
	once      sync.Once
	closed    chan struct{}
	closeOnce sync.Once
}

func (d *wedgedDevice) Write(bufs [][]byte, offset int) (int, error) {
	if time.Now().Before(d.at) {
		return d.Device.Write(bufs, offset)
	}
	d.once.Do(func() {
		d.log.Warn("debug: wedging the data path (test hook)", "env", envWedge)
		_, _ = sd.SdNotify(false, "STATUS=debug: wedged the data path")
	})
	<-d.closed
	return 0, os.ErrClosed
}

func (d *wedgedDevice) Close() error {
	d.closeOnce.Do(func() { close(d.closed) })
	return d.Device.Close()
}

// servePprofHook adds the Go profiler (CPU, heap, allocs, goroutine,
// trace) at /debug/pprof/ to the metrics server's mux when GODWIT_PPROF=1,
// and only then: profiles expose memory contents and cost CPU while taken,
// so it is meant for a metrics_listen bound to loopback.
func servePprofHook(mux *http.ServeMux, addr net.Addr, log *slog.Logger) {
	if os.Getenv(envPprof) != "1" {
		return
	}
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	log.Warn("pprof endpoint enabled by "+envPprof+"=1 (test hook)", "url", "http://"+addr.String()+"/debug/pprof/")
}
