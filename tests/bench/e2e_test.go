// SPDX-License-Identifier: MIT

package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
	"github.com/godwit-vpn/godwit/tests/bench/measure/measuretest"
)

// TestRun runs the whole program, shortened, once per daemon (Godwit built
// from this module, wireguard-go from the module proxy), in two rounds,
// and checks the report and the cleanup.
func TestRun(t *testing.T) {
	labtest.RequireRoot(t)
	if testing.Short() {
		t.Skip("builds the daemons and runs traffic; skipped with -short")
	}
	tests := []struct {
		only    string
		get     func(round) (mine, other *result)
		wantMTU int // 0: any positive
	}{
		{"godwit", func(r round) (*result, *result) { return r.Godwit, r.WireGuard }, 0},
		{"wireguard", func(r round) (*result, *result) { return r.WireGuard, r.Godwit }, 1420},
	}
	for _, tt := range tests {
		t.Run(tt.only, func(t *testing.T) {
			o := options{duration: time.Second, warmup: 200 * time.Millisecond, json: true, only: tt.only, pings: 20, rounds: 2,
				rows: rowSet{streams: []int{1, 2}, ping: true, impair: []impairment{{Key: "loss5", LossPct: 5}, {Key: "tbf50", RateMbit: 50}},
					pinned: []pinnedRow{{Key: "tcp1-cpu1", Streams: 1, CPUs: 1}}}}
			if tt.only == "godwit" {
				o.profile = t.TempDir()
			}
			var rep report
			stderr, err := measuretest.RunJSON(t, "gwb-", run, o, 3*time.Minute, &rep)
			if err != nil {
				t.Fatalf("run: %v\n%s", err, stderr)
			}
			if len(rep.Rounds) != 2 {
				t.Fatalf("%d rounds, want 2", len(rep.Rounds))
			}
			for i, rd := range rep.Rounds {
				w, other := tt.get(rd)
				if other != nil {
					t.Errorf("report has %s results with -only %s", other.Name, tt.only)
				}
				if w == nil || w.Error != "" || rd.Round != i+1 || len(rd.Order) != 1 {
					t.Fatalf("round %+v, want round %d with one result without error", rd, i+1)
				}
				checkResult(t, o, tt.only, w, tt.wantMTU, i == 0)
			}
			for _, want := range []string{"TCP 2 streams (Mbit/s)", "inner TCP retransmits per GB, TCP 1 stream, hub on 1 CPU",
				"drops inside the daemons per GB, TCP 2 streams"} {
				if !strings.Contains(stderr, want) {
					t.Errorf("table on stderr lacks %q:\n%s", want, stderr)
				}
			}
			if s := rep.Summary; len(s) == 0 || s[0].Label != "TCP 1 stream (Mbit/s)" || (s[0].Godwit == nil) == (s[0].WireGuard == nil) ||
				max(spreadN(s[0].Godwit), spreadN(s[0].WireGuard)) != 2 {
				t.Errorf("summary = %+v, want the TCP 1 stream row first, over 2 rounds of one daemon", s)
			}
		})
	}
}

// checkResult checks one round's result of the daemon only measured alone.
// Only the first round has profiles.
func checkResult(t *testing.T, o options, only string, w *result, wantMTU int, first bool) {
	t.Helper()
	if w.MTU <= 0 || wantMTU != 0 && w.MTU != wantMTU {
		t.Errorf("inner MTU = %d, want %d (0: any positive)", w.MTU, wantMTU)
	}
	var keys []string
	for _, r := range w.TCP {
		keys = append(keys, r.Row)
		if r.Bytes == 0 || r.Mbps <= 0 || r.CPUSeconds <= 0 || r.CPUPerGB <= 0 {
			t.Errorf("TCP result %+v, want positive bytes, rate and daemon CPU", r)
		}
		if want := r.perGB(r.Retransmits); r.RetransPerGB != want {
			t.Errorf("%s: %d retransmits, %v per GB; want %v", r.Row, r.Retransmits, r.RetransPerGB, want)
		}
		var drops uint64
		for k, v := range r.Drops {
			if inTotal(k) {
				drops += v
			}
			if !countedFor(w.Name, k) || v == 0 {
				t.Errorf("%s: drop counter %q = %d; want only non-zero counters %s has", r.Row, k, v, w.Name)
			}
		}
		if want := r.perGB(drops); r.DropsPerGB != want {
			t.Errorf("%s: drops %v, %v per GB; want %v", r.Row, r.Drops, r.DropsPerGB, want)
		}
	}
	if want := []string{"tcp1", "tcp2", "loss5", "tbf50", "tcp1-cpu1"}; !slices.Equal(keys, want) {
		t.Fatalf("TCP results %q, want %q", keys, want)
	}
	if r := w.TCP[4]; r.HubCPUs != 1 || r.Streams != 1 {
		t.Errorf("tcp1-cpu1 result %+v, want 1 stream, 1 hub CPU", r)
	}
	// 5 % of the tunnel's packets dropped make the inner TCP retransmit.
	if r := w.TCP[2]; r.Retransmits == 0 {
		t.Errorf("loss5 result %+v, want inner TCP retransmits", r)
	}
	if r := w.TCP[2]; r.Impairment != "loss5" || r.UnderlayDropPct == nil || *r.UnderlayDropPct < 1 || *r.UnderlayDropPct > 15 {
		t.Errorf("loss5 result %+v (drop %v), want impairment loss5 with about 5 %% dropped", r, r.UnderlayDropPct)
	}
	// tbf at 50 Mbit/s: the rate limit must show (generous bounds).
	if r := w.TCP[3]; r.Impairment != "tbf50" || r.Mbps > 60 {
		t.Errorf("tbf50 result %+v, want impairment tbf50 and at most 60 Mbit/s", r)
	}
	if only == "godwit" && first {
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
}

func spreadN(s *spread) int {
	if s == nil {
		return 0
	}
	return s.N
}
