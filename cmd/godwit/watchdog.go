// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"

	"github.com/godwit-vpn/godwit/tun"
)

// watchdog sends WATCHDOG=1 every interval/2 (sd_watchdog_enabled(3)), but
// only while the control loop and the data path make progress, so that a
// wedged daemon is restarted by systemd instead of looking healthy.
//
// Progress means: the control loop (cmdRun's select) answers a question
// within answerWithin, and the tunnel's Probe finds its TUN reader and
// writer idle or moving on within the same bound. An idle daemon is
// healthy. Per-peer senders blocked in quic-go's SendDatagram are waits on
// the network, not wedges, and are not watched (see tunnel.Probe); a dead
// path ends with the QUIC idle timeout instead.
type watchdog struct {
	log      *slog.Logger
	interval time.Duration // WATCHDOG_USEC
	// asks is received from by the control loop, which closes every
	// channel it gets to show that it runs.
	asks  chan chan struct{}
	probe func(context.Context) error // the data path
	send  func(state string)          // sd_notify
}

// newWatchdog returns a watchdog for the WATCHDOG_USEC of the environment,
// or nil when systemd does not expect pings (no WATCHDOG_USEC, or a
// WATCHDOG_PID that is not ours).
func newWatchdog(log *slog.Logger, probe func(context.Context) error) (*watchdog, error) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("watchdog: %w", err)
	}
	if interval <= 0 {
		return nil, nil
	}
	return &watchdog{
		log:      log,
		interval: interval,
		asks:     make(chan chan struct{}),
		probe:    probe,
		send: func(state string) {
			if _, err := sd.SdNotify(false, state); err != nil {
				log.Debug("sd_notify", "err", err)
			}
		},
	}, nil
}

// answerWithin bounds how long a check may wait for the loops. Together
// with the ping period of interval/2 it keeps the gap between two pings
// below 3/4 of the interval even when a loop is slow but alive.
func (w *watchdog) answerWithin() time.Duration { return w.interval / 4 }

// run pings until ctx is done. It logs one line when the daemon becomes
// stuck and one when it recovers, never one per tick.
func (w *watchdog) run(ctx context.Context) {
	w.log.Info("watchdog enabled", "interval", w.interval)
	tick := time.NewTicker(w.interval / 2)
	defer tick.Stop()
	var stuck error
	for {
		err := w.check(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			w.send(sd.SdNotifyWatchdog)
			if stuck != nil {
				w.log.Warn("watchdog: progress again, pinging systemd", "was", stuck)
			}
		case stuck == nil:
			w.log.Error("watchdog: no progress, not pinging systemd", "err", err)
		}
		stuck = err
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check asks the control loop and probes the data path, both within
// answerWithin.
func (w *watchdog) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, w.answerWithin())
	defer cancel()
	var (
		wg       sync.WaitGroup
		probeErr error
	)
	wg.Go(func() { probeErr = w.probe(ctx) })
	reply := make(chan struct{})
	var ctlErr error
	select {
	case w.asks <- reply:
		select {
		case <-reply:
		case <-ctx.Done():
			ctlErr = errors.New("control loop took the question but did not answer")
		}
	case <-ctx.Done():
		ctlErr = fmt.Errorf("control loop did not answer within %v", w.answerWithin())
	}
	wg.Wait()
	return errors.Join(ctlErr, probeErr)
}

// The debug wedge is a test hook, never to be set in production: with
// GODWIT_DEBUG_WEDGE=control or =datapath, the named loop blocks forever
// once GODWIT_DEBUG_WEDGE_AFTER (a Go duration, default 2s) has passed
// since start, so that tests can watch the watchdog stop. The control loop
// then blocks in its select; the data path blocks in the first TUN Write
// after the delay (until the device is closed), so it needs a packet to
// write to wedge: inbound traffic or an ICMP error the tunnel generates.
const (
	envWedge      = "GODWIT_DEBUG_WEDGE"
	envWedgeAfter = "GODWIT_DEBUG_WEDGE_AFTER"
)

// debugWedge is the parsed test hook: which loop to wedge, and when.
type debugWedge struct {
	loop  string // "", "control" or "datapath"
	after time.Duration
}

// wedgeFromEnv reads the test hook from the environment.
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

// wedgeDataPath returns dev itself unless the test hook asks to wedge the
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

// wedgedDevice is the data path test hook: see wedgeDataPath.
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
