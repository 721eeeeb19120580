// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// TestRun runs the whole program, shortened, once per daemon (Godwit built
// from this module, wireguard-go from the module proxy) and checks the
// report and the cleanup.
func TestRun(t *testing.T) {
	labtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds the daemons and runs traffic; skipped with -short")
	}
	tests := []struct {
		only    string
		get     func(*report) (mine, other *result)
		wantMTU int // 0: any positive
	}{
		{"godwit", func(r *report) (*result, *result) { return r.Godwit, r.WireGuard }, 0},
		{"wireguard", func(r *report) (*result, *result) { return r.WireGuard, r.Godwit }, 1420},
	}
	for _, tt := range tests {
		t.Run(tt.only, func(t *testing.T) {
			labtest.CheckNamespacesRemoved(t, "gwb-")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			o := options{duration: time.Second, warmup: 200 * time.Millisecond, json: true, only: tt.only, pings: 20,
				rows: rowSet{streams: []int{1, 2}, ping: true, impair: []impairment{{Key: "loss5", LossPct: 5}, {Key: "tbf50", RateMbit: 50}}}}
			if tt.only == "godwit" {
				o.profile = t.TempDir()
			}
			var stdout, stderr bytes.Buffer
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			if err := run(ctx, o, log, &stdout, &stderr); err != nil {
				t.Fatalf("run: %v\n%s", err, stderr.String())
			}
			var rep report
			if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
				t.Fatalf("stdout is not JSON: %v\n%s", err, stdout.String())
			}
			w, other := tt.get(&rep)
			if other != nil {
				t.Errorf("report has %s results with -only %s", other.Name, tt.only)
			}
			if w == nil || w.Error != "" {
				t.Fatalf("result = %+v, want one without error", w)
			}
			if w.MTU <= 0 || tt.wantMTU != 0 && w.MTU != tt.wantMTU {
				t.Errorf("inner MTU = %d, want %d (0: any positive)", w.MTU, tt.wantMTU)
			}
			if len(w.TCP) != 4 {
				t.Fatalf("got %d TCP results, want 4", len(w.TCP))
			}
			for _, r := range w.TCP {
				if r.Bytes == 0 || r.Mbps <= 0 || r.CPUSeconds <= 0 || r.CPUPerGB <= 0 {
					t.Errorf("TCP result %+v, want positive bytes, rate and daemon CPU", r)
				}
			}
			if r := w.TCP[2]; r.Impairment != "loss5" || r.UnderlayDropPct == nil || *r.UnderlayDropPct < 1 || *r.UnderlayDropPct > 15 {
				t.Errorf("loss5 result %+v (drop %v), want impairment loss5 with about 5 %% dropped", r, r.UnderlayDropPct)
			}
			// tbf at 50 Mbit/s: the rate limit must show (generous bounds).
			if r := w.TCP[3]; r.Impairment != "tbf50" || r.Mbps > 60 {
				t.Errorf("tbf50 result %+v, want impairment tbf50 and at most 60 Mbit/s", r)
			}
			if tt.only == "godwit" {
				kinds := map[string]bool{}
				for _, p := range w.Profiles {
					if p.Error != "" || !strings.Contains(p.Top, "flat%") {
						t.Errorf("profile %s %s %s: error %q, top %q; want a pprof listing", p.Daemon, p.Kind, p.Sort, p.Error, p.Top)
					}
					kinds[p.Daemon+"/"+p.Kind+"/"+p.Sort] = true
				}
				if len(kinds) != 8 {
					t.Errorf("profiles %v, want cpu and allocs, flat and cum, of hub and site", kinds)
				}
				for _, f := range []string{"godwit-hub.cpu.pb.gz", "godwit-site.allocs.pb.gz", "godwit-hub.heap.pb.gz"} {
					if st, err := os.Stat(filepath.Join(o.profile, f)); err != nil || st.Size() == 0 {
						t.Errorf("profile file %s: %v, want a non-empty file", f, err)
					}
				}
			}
			for name, p := range map[string]*pingStats{"tunnel": w.PingTunnel, "veth": w.PingVeth} {
				if p == nil || p.Sent != 20 || p.Received < 15 || p.MinMs <= 0 || p.MinMs > p.MedianMs || p.MedianMs > p.P90Ms {
					t.Errorf("ping %s = %+v, want 20 sent, most answered, 0 < min <= median <= p90", name, p)
				}
			}
			if !strings.Contains(stderr.String(), "TCP 2 streams (Mbit/s)") {
				t.Errorf("table on stderr lacks the 2-stream row:\n%s", stderr.String())
			}
		})
	}
}
