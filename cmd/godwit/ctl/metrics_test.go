// SPDX-License-Identifier: MIT

package ctl

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	st := fixtureStatus()
	reg, err := NewRegistry(func() *Status { return st })
	if err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)

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
	if v := gather(t, reg)[`godwit_peer_rx_packets_total{peer="boat-1"}`]; v != 11 {
		t.Errorf("after the counter moved: rx packets = %v, want 11", v)
	}
}

// gather returns every sample of reg as "name{label="value",...}" (labels
// sorted by name, as in the text format) to its value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(labels)
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			var v float64
			switch {
			case m.GetCounter() != nil:
				v = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue // summaries and histograms of the Go collector
			}
			out[key] = v
		}
	}
	return out
}

func TestMetricsFallback(t *testing.T) {
	st := fallbackStatus()
	reg, err := NewRegistry(func() *Status { return st })
	if err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)
	for _, tt := range []struct {
		sample string
		want   float64
	}{
		{`godwit_connection_events_total{event="tcp_fallbacks"}`, 2},
		{`godwit_connection_events_total{event="udp_returns"}`, 1},
		{`godwit_peer_on_tcp{peer="van-2"}`, 1},
		{`godwit_tcp_listener_events_total{event="evicted"}`, 2048},
		{`godwit_tcp_listener_events_total{event="refused_keys"}`, 40},
		{`godwit_tcp_listener_events_total{event="bad_frames"}`, 0},
		{`godwit_tcp_listener_connections{state="handshake"}`, 256},
		{`godwit_tcp_listener_connections{state="client"}`, 1},
		{`godwit_path_transport{path="198.18.3.2:40000->198.18.1.1:443",peer="van-2",transport="tcp via proxy"}`, 1},
	} {
		if v, ok := got[tt.sample]; !ok || v != tt.want {
			t.Errorf("%s = %v (present %v), want %v", tt.sample, v, ok, tt.want)
		}
	}
	if _, ok := got[`godwit_peer_on_tcp{peer="boat-1"}`]; ok {
		t.Error("godwit_peer_on_tcp for a peer without endpoint_tcp")
	}
}
