// SPDX-License-Identifier: MIT

package ctl

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// fill sets every field reachable from v to a non-zero value, with one
// element in each slice and one key in each map, so that every JSON field
// shows up when v is marshalled.
func fill(v reflect.Value) {
	switch v.Interface().(type) {
	case time.Time:
		v.Set(reflect.ValueOf(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)))
		return
	case netip.Prefix:
		v.Set(reflect.ValueOf(netip.MustParsePrefix("10.77.0.1/24")))
		return
	case netip.AddrPort:
		v.Set(reflect.ValueOf(netip.MustParseAddrPort("198.18.1.1:4433")))
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fill(v.Field(i))
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Float64:
		v.SetFloat(0.5)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e)
		v.SetMapIndex(reflect.ValueOf("k"), e)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	}
}

// keys appends the JSON paths below m: "peers[].paths[].rtt.min_ns".
// Map values (drops and quic_drops, keyed by reason) end at the map.
func keys(prefix string, v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := prefix + k
			if k == "k" { // a map filled by fill, not an object
				continue
			}
			*out = append(*out, p)
			keys(p+".", e, out)
		}
	case []any:
		keys(strings.TrimSuffix(prefix, ".")+"[].", x[0], out)
	}
}

// TestJSONFieldNames pins every field name of the Status document: they
// are what scripts read from `godwit show --json`, so renaming one breaks
// them. Adding a field means adding it here.
func TestJSONFieldNames(t *testing.T) {
	var st Status
	fill(reflect.ValueOf(&st).Elem())
	b, err := json.Marshal(&st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var got []string
	keys("", m, &got)
	slices.Sort(got)
	want := []string{
		"interface",
		"interface.addresses", "interface.connections",
		"interface.connections.control_floods",
		"interface.connections.early_accepted", "interface.connections.early_refused_other",
		"interface.connections.early_refused_replay", "interface.connections.early_refused_restart",
		"interface.connections.handshakes_abandoned", "interface.connections.handshakes_pending",
		"interface.connections.last_redial_outage_ns", "interface.connections.redials",
		"interface.connections.redials_after_reset", "interface.connections.refused_busy",
		"interface.connections.refused_keys", "interface.connections.retries_sent", "interface.connections.tcp_fallbacks",
		"interface.connections.udp_returns", "interface.connections.zero_rtt_accepted",
		"interface.connections.zero_rtt_attempted", "interface.connections.zero_rtt_rejected",
		"interface.drops", "interface.hub_failovers", "interface.icmp_rate_limited", "interface.icmp_sent", "interface.listen", "interface.listen_tcp",
		"interface.local_addr", "interface.metrics_listen", "interface.mtu", "interface.name",
		"interface.public_key", "interface.route_protocol", "interface.routes", "interface.rx_bytes", "interface.rx_packets",
		"interface.socket_receive_buffer_bytes", "interface.socket_send_buffer_bytes",
		"interface.tcp_listener", "interface.tcp_listener.accepted", "interface.tcp_listener.bad_frames",
		"interface.tcp_listener.clients", "interface.tcp_listener.evicted", "interface.tcp_listener.handshake_errors",
		"interface.tcp_listener.handshake_timeouts", "interface.tcp_listener.idle_closes",
		"interface.tcp_listener.pending_handshakes", "interface.tcp_listener.receive_waits",
		"interface.tcp_listener.refused_keys", "interface.tcp_listener.send_drops", "interface.tcp_send_drops",
		"interface.tun_too_many_segments", "interface.tun_write_errors", "interface.tx_bytes",
		"interface.tx_packets", "interface.udp_rcvbuf_errors", "interface.udp_send_calls",
		"interface.udp_send_segments", "interface.unreachable_sends",
		"now", "peers",
		"peers[].allowed_ips", "peers[].carries", "peers[].carrying", "peers[].connected_since", "peers[].drops", "peers[].endpoint",
		"peers[].fallback", "peers[].fallback.fallbacks", "peers[].fallback.on_tcp", "peers[].fallback.reason",
		"peers[].fallback.returns", "peers[].fallback.since",
		"peers[].heartbeat_rtt_ns", "peers[].last_error", "peers[].last_error_at", "peers[].last_handshake", "peers[].last_migration_outage_ns",
		"peers[].last_rx", "peers[].last_tx", "peers[].migrations", "peers[].multipath", "peers[].name", "peers[].paths",
		"peers[].paths[].active", "peers[].paths[].bytes_lost", "peers[].paths[].bytes_received",
		"peers[].paths[].bytes_sent", "peers[].paths[].congestion_window_bytes",
		"peers[].paths[].datagram_limit_bytes", "peers[].paths[].local", "peers[].paths[].max_packet_size_bytes",
		"peers[].paths[].multipath", "peers[].paths[].multipath.dup_discarded", "peers[].paths[].multipath.dup_sent",
		"peers[].paths[].multipath.health", "peers[].paths[].multipath.loss_ratio", "peers[].paths[].multipath.role",
		"peers[].paths[].multipath.rx_packets", "peers[].paths[].multipath.sequenced",
		"peers[].paths[].multipath.traffic_share", "peers[].paths[].multipath.tx_packets",
		"peers[].paths[].packets_lost", "peers[].paths[].packets_received", "peers[].paths[].packets_sent",
		"peers[].paths[].pto_count", "peers[].paths[].quic_drops", "peers[].paths[].remote", "peers[].paths[].rtt",
		"peers[].paths[].rtt.latest_ns", "peers[].paths[].rtt.mean_deviation_ns", "peers[].paths[].rtt.min_ns",
		"peers[].paths[].rtt.smoothed_ns", "peers[].paths[].transport",
		"peers[].paths[].uplink", "peers[].paths[].validated", "peers[].preferred", "peers[].priority",
		"peers[].public_key", "peers[].resumed", "peers[].routes_installed", "peers[].rx_bytes", "peers[].rx_packets", "peers[].state",
		"peers[].tx_bytes", "peers[].tx_packets", "peers[].zero_rtt",
		"peers[].zero_rtt.rejected", "peers[].zero_rtt.used",
		"started", "version",
	}
	if !slices.Equal(got, want) {
		t.Errorf("JSON field names:\n got %q\nwant %q", got, want)
	}
}

func TestPeerPaths(t *testing.T) {
	st := &Status{Peers: []PeerStatus{
		{Name: "hub", State: StateConnected, Paths: []PathStatus{
			{Uplink: "wifi0", Active: true, Validated: true},
			{Uplink: "cell0", Validated: true},
			{Uplink: "sat0"},
		}},
		{Name: "idle", State: StateIdle, Paths: []PathStatus{}},
	}}
	hub := st.Peer("hub")
	if hub == nil || hub.Name != "hub" {
		t.Fatalf("Peer(hub) = %+v", hub)
	}
	if p := st.Peer("nobody"); p != nil {
		t.Errorf("Peer(nobody) = %+v, want nil", p)
	}
	if a := hub.ActivePath(); a == nil || a.Uplink != "wifi0" {
		t.Errorf("ActivePath = %+v, want the wifi0 path", a)
	}
	if got := hub.ActiveUplink(); got != "wifi0" {
		t.Errorf("ActiveUplink = %q, want wifi0", got)
	}
	for uplink, want := range map[string]bool{"wifi0": false, "cell0": true, "sat0": false, "none": false} {
		if got := hub.ValidatedStandby(uplink); got != want {
			t.Errorf("ValidatedStandby(%s) = %v, want %v", uplink, got, want)
		}
	}
	idle := st.Peer("idle")
	if a, u := idle.ActivePath(), idle.ActiveUplink(); a != nil || u != "" {
		t.Errorf("not connected: ActivePath %+v, ActiveUplink %q; want nil, \"\"", a, u)
	}
}
