// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
)

// metricsServer serves /metrics over HTTP.
type metricsServer struct {
	srv  *http.Server
	ln   net.Listener
	done sync.WaitGroup
}

// listenMetrics listens on addr (a TCP "host:port") and serves the metrics
// of snap at /metrics until close.
func listenMetrics(addr string, snap func() *ctl.Status, log *slog.Logger) (*metricsServer, error) {
	reg, err := ctl.NewRegistry(snap)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	servePprofHook(mux, ln.Addr(), log) // test hook, see testhooks.go
	s := &metricsServer{
		ln: ln,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			WriteTimeout:      15 * time.Second,
			IdleTimeout:       time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
	s.done.Go(func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	})
	log.Info("metrics endpoint listening", "addr", ln.Addr().String())
	return s, nil
}

// addr returns the address the server listens on.
func (s *metricsServer) addr() net.Addr { return s.ln.Addr() }

// close shuts the server down, waiting up to 2 s for scrapes in progress.
func (s *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
	s.done.Wait()
}
