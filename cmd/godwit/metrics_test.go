// SPDX-License-Identifier: MIT

package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

func TestMetricsEndpoint(t *testing.T) {
	st := fixtureStatus()
	s, err := listenMetrics("127.0.0.1:0", func() *ctl.Status { return st }, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	base := "http://" + s.addr().String()
	got := labtest.Scrape(t, nil, base+"/metrics")

	path := `path="198.18.1.1:4433->198.18.1.2:51234"`
	tests := []struct {
		sample string
		want   float64
	}{
		{`godwit_info{interface="gw0",version="v1.2.3"}`, 1},
		{`godwit_start_time_seconds`, float64(st.Started.Unix())},
		{`godwit_peer_connected{peer="boat-1"}`, 1},
		{`godwit_peer_connected{peer="van-2"}`, 0},
		{`godwit_peer_rx_packets_total{peer="boat-1"}`, 10},
		{`godwit_peer_rx_bytes_total{peer="boat-1"}`, 840},
		{`godwit_peer_tx_packets_total{peer="boat-1"}`, 12},
		{`godwit_peer_tx_bytes_total{peer="boat-1"}`, 13e6},
		{`godwit_peer_tx_packets_total{peer="van-2"}`, 0},
		{`godwit_peer_drops_total{direction="inbound",peer="boat-1",reason="bad_source"}`, 2},
		{`godwit_peer_drops_total{direction="outbound",peer="van-2",reason="no_route"}`, 0},
		{`godwit_peer_last_handshake_timestamp_seconds{peer="boat-1"}`, float64(st.Now.Unix() - 72)},
		{`godwit_peer_last_rx_timestamp_seconds{peer="boat-1"}`, float64(st.Now.Unix() - 2)},
		{`godwit_peer_last_tx_timestamp_seconds{peer="boat-1"}`, float64(st.Now.UnixMilli()-500) / 1e3},
		{`godwit_path_rtt_seconds{kind="smoothed",` + path + `,peer="boat-1"}`, 0.001234},
		{`godwit_path_rtt_seconds{kind="min",` + path + `,peer="boat-1"}`, 0.0009},
		{`godwit_path_rtt_seconds{kind="latest",` + path + `,peer="boat-1"}`, 0.0011},
		{`godwit_path_congestion_window_bytes{` + path + `,peer="boat-1"}`, 39321},
		{`godwit_path_datagram_limit_bytes{` + path + `,peer="boat-1"}`, 1252},
		{`godwit_path_lost_packets_total{` + path + `,peer="boat-1"}`, 3},
		{`godwit_path_sent_bytes_total{` + path + `,peer="boat-1"}`, 14e6},
		{`godwit_rx_packets_total`, 10},
		{`godwit_tx_bytes_total`, 13e6},
		{`godwit_drops_total{direction="outbound",reason="no_route"}`, 3},
		{`godwit_icmp_sent_total`, 3},
	}
	for _, tt := range tests {
		v, ok := got[tt.sample]
		if !ok {
			t.Errorf("no sample %s", tt.sample)
			continue
		}
		if v != tt.want {
			t.Errorf("%s = %v, want %v", tt.sample, v, tt.want)
		}
	}
	// Absent, not zero: a peer that never connected has no handshake time
	// and no path.
	for sample := range got {
		if strings.Contains(sample, `peer="van-2"`) && (strings.HasPrefix(sample, "godwit_path_") || strings.Contains(sample, "timestamp")) {
			t.Errorf("sample %s for a peer that never connected", sample)
		}
	}
	// The process and Go collectors are registered too.
	for _, name := range []string{"process_start_time_seconds", "go_goroutines"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no sample %s", name)
		}
	}

	// A changed snapshot shows on the next scrape: no caching.
	st.Peers[0].RxPackets = 11
	if v := labtest.Scrape(t, nil, base+"/metrics")[`godwit_peer_rx_packets_total{peer="boat-1"}`]; v != 11 {
		t.Errorf("after the counter moved: rx packets = %v, want 11", v)
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
	s, err := listenMetrics("127.0.0.1:0", fixtureStatus, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	// The same address again must fail at start, not later.
	if s2, err := listenMetrics(s.addr().String(), fixtureStatus, discard); err == nil {
		s2.close()
		t.Fatal("listenMetrics on a busy address succeeded")
	} else if !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Errorf("listenMetrics error = %q, want the metrics: prefix", err)
	}
}
