// SPDX-License-Identifier: MIT

package main

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

var discard = slog.New(slog.DiscardHandler)

// TestMetricsEndpoint: /metrics serves the status's figures, nothing else
// is served, and only GET.
func TestMetricsEndpoint(t *testing.T) {
	st := &ctl.Status{Interface: ctl.InterfaceStatus{Name: "gw0"}, Version: "v1.2.3"}
	s, err := listenMetrics("127.0.0.1:0", func() *ctl.Status { return st }, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	base := "http://" + s.addr().String()
	if v := labtest.Scrape(t, nil, base+"/metrics")[`godwit_info{interface="gw0",version="v1.2.3"}`]; v != 1 {
		t.Errorf("godwit_info = %v, want 1", v)
	}
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusNotFound},
		{"POST", "/metrics", http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tt.method, base+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.want)
		}
	}
}

func TestMetricsListenError(t *testing.T) {
	s, err := listenMetrics("127.0.0.1:0", func() *ctl.Status { return &ctl.Status{} }, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	// The same address again must fail at start, not later.
	if s2, err := listenMetrics(s.addr().String(), func() *ctl.Status { return &ctl.Status{} }, discard); err == nil {
		s2.close()
		t.Fatal("listenMetrics on a busy address succeeded")
	} else if !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Errorf("listenMetrics error = %q, want the metrics: prefix", err)
	}
}
