// SPDX-License-Identifier: MIT

package ctl

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestMetrics(t *testing.T) {
	st := fixtureStatus()
	reg, err := NewRegistry(func() *Status { return st })
	if err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)

	path := `path="default/udp"`
	tests := []struct {
		sample string
		want   float64
	}{
		{`godwit_info{interface="gw0",version="v1.2.3"}`, 1},
		{`godwit_start_time_seconds`, float64(st.Started.Unix())},
		{`godwit_peer_connected{peer="boat-1"}`, 1},
		{`godwit_peer_connected{peer="van-2"}`, 0},
		{`godwit_peer_state{peer="boat-1",state="connected"}`, 1},
		{`godwit_peer_state{peer="boat-1",state="connecting"}`, 0},
		{`godwit_peer_state{peer="boat-1",state="idle"}`, 0},
		{`godwit_peer_state{peer="van-2",state="connected"}`, 0},
		{`godwit_peer_state{peer="van-2",state="connecting"}`, 1},
		{`godwit_peer_state{peer="van-2",state="idle"}`, 0},
		{`godwit_peer_migrations_total{peer="boat-1"}`, 0},
		{`godwit_path_carrying{` + path + `,peer="boat-1"}`, 1},
		{`godwit_path_consecutive_probe_timeouts{` + path + `,peer="boat-1"}`, 2},
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
	// Absent, not zero: a peer that never connected has no handshake time,
	// no path and no migration outage.
	for sample := range got {
		if strings.Contains(sample, `peer="van-2"`) && (strings.HasPrefix(sample, "godwit_path_") || strings.Contains(sample, "timestamp") || strings.Contains(sample, "outage")) {
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
		{`godwit_path_transport{path="default/tcp",peer="van-2",transport="tcp via proxy"}`, 1},
		{`godwit_path_carrying{path="default/tcp",peer="van-2"}`, 1},
	} {
		if v, ok := got[tt.sample]; !ok || v != tt.want {
			t.Errorf("%s = %v (present %v), want %v", tt.sample, v, ok, tt.want)
		}
	}
	if _, ok := got[`godwit_peer_on_tcp{peer="boat-1"}`]; ok {
		t.Error("godwit_peer_on_tcp for a peer without endpoint_tcp")
	}
}

// mobileStatus is fixtureStatus seen from a site with two uplinks: boat-1
// (the hub) is connected on wlan0 with a validated standby path on wwan0,
// after 3 migrations, the latest with an outage of 120 ms.
func mobileStatus() *Status {
	st := fixtureStatus()
	boat := &st.Peers[0]
	boat.Migrations, boat.LastMigrationOutage = 3, 120*time.Millisecond
	boat.Paths[0].Uplink, boat.Paths[0].Transport = "wlan0", "udp"
	boat.Paths = append(boat.Paths, PathStatus{
		Uplink:    "wwan0",
		Local:     netip.MustParseAddrPort("198.51.100.7:40001"),
		Remote:    netip.MustParseAddrPort("198.18.1.2:51234"),
		Validated: true,
		QUICDrops: map[string]uint64{},
		Transport: "udp",
	})
	st.Peers[1].State = StateIdle
	return st
}

// multipathStatus is fixtureStatus seen from a hub whose peer van-2 is a
// multipath site with three connections on the hub's one socket: two UDP,
// the second carrying, and its TCP path.
func multipathStatus() *Status {
	st := fixtureStatus()
	van := &st.Peers[1]
	van.State, van.Multipath = StateConnected, "failover"
	mp := func(local, remote, transport, role string) PathStatus {
		return PathStatus{
			Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort(remote),
			Active: true, Validated: true, Transport: transport,
			QUICDrops: map[string]uint64{"receive_queue_full": 0, "send_too_large": 0, "dos_prevention": 0},
			Multipath: &MultipathStatus{Role: role, Health: "up"},
		}
	}
	van.Paths = []PathStatus{
		mp("198.18.1.1:4433", "198.51.100.9:41000", "udp", "warm"),
		mp("198.18.1.1:4433", "203.0.113.9:42000", "udp", "carrying"),
		mp("198.18.1.1:443", "203.0.113.9:42001", "tcp", "down"),
	}
	return st
}

func TestMetricsMobility(t *testing.T) {
	st := mobileStatus()
	reg, err := NewRegistry(func() *Status { return st })
	if err != nil {
		t.Fatal(err)
	}
	got := gather(t, reg)
	for _, tt := range []struct {
		sample string
		want   float64
	}{
		{`godwit_peer_migrations_total{peer="boat-1"}`, 3},
		{`godwit_peer_last_migration_outage_seconds{peer="boat-1"}`, 0.12},
		{`godwit_path_carrying{path="wlan0/udp",peer="boat-1"}`, 1},
		{`godwit_path_carrying{path="wwan0/udp",peer="boat-1"}`, 0},
		{`godwit_path_rtt_seconds{kind="smoothed",path="wlan0/udp",peer="boat-1"}`, 0.001234},
		{`godwit_peer_state{peer="van-2",state="idle"}`, 1},
		{`godwit_peer_state{peer="van-2",state="connecting"}`, 0},
	} {
		if v, ok := got[tt.sample]; !ok || v != tt.want {
			t.Errorf("%s = %v (present %v), want %v", tt.sample, v, ok, tt.want)
		}
	}
	// The standby path has no QUIC figures of its own.
	for sample := range got {
		if strings.Contains(sample, `path="wwan0/udp"`) && !strings.HasPrefix(sample, "godwit_path_carrying{") {
			t.Errorf("sample %s for a standby path", sample)
		}
	}
}

func TestMetricsMultipath(t *testing.T) {
	st := multipathStatus()
	reg, err := NewRegistry(func() *Status { return st })
	if err != nil {
		t.Fatal(err) // also: two series with the same labels
	}
	got := gather(t, reg)
	for _, tt := range []struct {
		sample string
		want   float64
	}{
		{`godwit_path_carrying{path="default/udp",peer="van-2"}`, 0},
		{`godwit_path_carrying{path="default/udp#2",peer="van-2"}`, 1},
		{`godwit_path_carrying{path="default/tcp",peer="van-2"}`, 0},
		{`godwit_path_role{health="up",path="default/udp#2",peer="van-2",role="carrying"}`, 1},
		{`godwit_path_transport{path="default/tcp",peer="van-2",transport="tcp"}`, 1},
		{`godwit_path_quic_drops_total{path="default/udp#2",peer="van-2",reason="dos_prevention"}`, 0},
	} {
		if v, ok := got[tt.sample]; !ok || v != tt.want {
			t.Errorf("%s = %v (present %v), want %v", tt.sample, v, ok, tt.want)
		}
	}
}

func TestPathLabels(t *testing.T) {
	p := func(uplink, transport string) PathStatus { return PathStatus{Uplink: uplink, Transport: transport} }
	tests := []struct {
		name  string
		paths []PathStatus
		want  []string
	}{
		{"none", nil, []string{}},
		{"hub or site without uplinks", []PathStatus{p("", "udp")}, []string{"default/udp"}},
		{"transport not reported", []PathStatus{p("", "")}, []string{"default/udp"}},
		{"uplinks", []PathStatus{p("wwan0", "udp"), p("wlan0", "udp")}, []string{"wwan0/udp", "wlan0/udp"}},
		{"tcp and tcp via proxy are one path", []PathStatus{p("", "tcp via proxy"), p("wlan0", "udp")}, []string{"default/tcp", "wlan0/udp"}},
		{"a hub's multipath site", []PathStatus{p("", "udp"), p("", "tcp"), p("", "udp"), p("", "udp")},
			[]string{"default/udp", "default/tcp", "default/udp#2", "default/udp#3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pathLabels(tt.paths); !slices.Equal(got, tt.want) {
				t.Errorf("pathLabels = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMetricsSameSeriesAfterReconnect: a new connection (new ports, a
// roaming site's new address) continues the series of the old one.
func TestMetricsSameSeriesAfterReconnect(t *testing.T) {
	for _, fixture := range []func() *Status{fixtureStatus, mobileStatus, multipathStatus, fallbackStatus} {
		before, after := fixture(), fixture()
		for i := range after.Peers {
			for j := range after.Peers[i].Paths {
				pa := &after.Peers[i].Paths[j]
				pa.Local = netip.AddrPortFrom(pa.Local.Addr(), pa.Local.Port()+1000)
				pa.Remote = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.99"), pa.Remote.Port()+7)
			}
		}
		keys := func(st *Status) []string {
			reg, err := NewRegistry(func() *Status { return st })
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for k := range gather(t, reg) {
				if strings.HasPrefix(k, "godwit_") {
					out = append(out, k)
				}
			}
			slices.Sort(out)
			return out
		}
		if b, a := keys(before), keys(after); !slices.Equal(b, a) {
			t.Errorf("series differ after a reconnect on other ports:\nbefore %q\nafter  %q", b, a)
		}
	}
}

// TestMetricsLint runs the linter of `promtool check metrics` (promlint:
// Prometheus's naming rules: _total only on counters, no reserved
// suffixes, base units, help text) over every fixture.
func TestMetricsLint(t *testing.T) {
	for name, fixture := range map[string]func() *Status{
		"fixture": fixtureStatus, "mobile": mobileStatus, "multipath": multipathStatus, "fallback": fallbackStatus,
	} {
		st := fixture()
		reg, err := NewRegistry(func() *Status { return st })
		if err != nil {
			t.Fatal(err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
	}
}

// TestMetricsShipped checks that the alert rules and the Grafana dashboard
// in packaging/ use only metric names the collector exports, so a renamed
// metric cannot leave them silently empty.
func TestMetricsShipped(t *testing.T) {
	ch := make(chan *prometheus.Desc)
	go func() {
		statusCollector{}.Describe(ch)
		close(ch)
	}()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	exported := make(map[string]bool)
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no fqName in %s", d)
		}
		exported[m[1]] = true
	}
	name := regexp.MustCompile(`\bgodwit_[a-z0-9_]+`)
	for _, f := range []string{"../../../packaging/prometheus/godwit-alerts.yml", "../../../packaging/grafana/godwit-dashboard.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		used := name.FindAllString(string(b), -1)
		if len(used) == 0 {
			t.Errorf("%s: no godwit_ metric names", f)
		}
		for _, n := range used {
			if !exported[n] {
				t.Errorf("%s uses %s, which godwit does not export", f, n)
			}
		}
	}
}
