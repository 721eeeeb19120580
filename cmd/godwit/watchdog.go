// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
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
//
// Tests wedge either loop on purpose with the GODWIT_DEBUG_WEDGE test hook
// (testhooks.go) to watch the pings stop.
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
