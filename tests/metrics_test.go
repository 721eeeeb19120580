// SPDX-License-Identifier: MIT

package tests

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// metricsAddr is where the hub serves metrics, on its own loopback.
const metricsAddr = "127.0.0.1:9586"

// scrapeIn fetches http://addr/metrics from inside ns (see
// labtest.Scrape).
func scrapeIn(t *testing.T, ns *netlab.NS, addr string) map[string]float64 {
	t.Helper()
	c := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, a string) (net.Conn, error) { return ns.DialTCP(ctx, a) },
		},
	}
	return labtest.Scrape(t, c, "http://"+addr+"/metrics")
}

// TestMetrics runs a hub with metrics_listen, sends pings from a site and
// checks that /metrics shows the counters of `godwit show --json`, taken
// just before and just after the scrape, and the path figures.
func TestMetrics(t *testing.T) {
	tp, hub, _ := opsLab(t, fmt.Sprintf("metrics_listen = %q", metricsAddr))
	s := tp.sites[0]
	pingThrough(t, tp)

	before := hub.Status(t)
	got := scrapeIn(t, tp.hub, metricsAddr)
	after := hub.Status(t)

	pb, pa := labtest.PeerOf(t, before, s.name()), labtest.PeerOf(t, after, s.name())
	peer := fmt.Sprintf(`{peer=%q}`, s.name())
	counters := []struct {
		sample        string
		before, after uint64
	}{
		{"godwit_peer_rx_packets_total" + peer, pb.RxPackets, pa.RxPackets},
		{"godwit_peer_tx_packets_total" + peer, pb.TxPackets, pa.TxPackets},
		{"godwit_peer_rx_bytes_total" + peer, pb.RxBytes, pa.RxBytes},
		{"godwit_peer_tx_bytes_total" + peer, pb.TxBytes, pa.TxBytes},
		{"godwit_rx_packets_total", before.Interface.RxPackets, after.Interface.RxPackets},
		{"godwit_udp_send_calls_total", before.Interface.UDPSendCalls, after.Interface.UDPSendCalls},
		{"godwit_udp_send_segments_total", before.Interface.UDPSendSegments, after.Interface.UDPSendSegments},
	}
	for _, c := range counters {
		v, ok := got[c.sample]
		switch {
		case !ok:
			t.Errorf("no sample %s", c.sample)
		case v < float64(c.before) || v > float64(c.after):
			t.Errorf("%s = %v, want between show's %d (before) and %d (after)", c.sample, v, c.before, c.after)
		case strings.Contains(c.sample, "packets") && v < pingCount-2:
			t.Errorf("%s = %v, want at least the pings (%d)", c.sample, v, pingCount)
		}
	}
	if v := got["godwit_peer_connected"+peer]; v != 1 {
		t.Errorf("godwit_peer_connected%s = %v, want 1", peer, v)
	}
	if v, ok := got[fmt.Sprintf(`godwit_peer_state{peer=%q,state="connected"}`, s.name())]; !ok || v != 1 {
		t.Errorf("godwit_peer_state connected = %v (present %v), want 1", v, ok)
	}
	if v := got["godwit_peer_last_handshake_timestamp_seconds"+peer]; v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last handshake timestamp %v, want within the last minute", v)
	}
	if v := got[fmt.Sprintf(`godwit_peer_drops_total{direction="inbound",peer=%q,reason="bad_source"}`, s.name())]; v != 0 {
		t.Errorf("bad-source drops %v, want 0", v)
	}

	if len(pa.Paths) != 1 {
		t.Fatalf("show: %d paths, want 1", len(pa.Paths))
	}
	// The hub's one socket and UDP: no port in the label, so a new
	// connection continues the series.
	path := `path="default/udp"`
	for _, kind := range []string{"smoothed", "min", "latest"} {
		sample := fmt.Sprintf(`godwit_path_rtt_seconds{kind=%q,%s,peer=%q}`, kind, path, s.name())
		if v, ok := got[sample]; !ok || v <= 0 || v > 5 {
			t.Errorf("%s = %v (present %v), want > 0 and sane", sample, v, ok)
		}
	}
	for _, name := range []string{"godwit_path_congestion_window_bytes", "godwit_path_datagram_limit_bytes"} {
		sample := fmt.Sprintf(`%s{%s,peer=%q}`, name, path, s.name())
		if v, ok := got[sample]; !ok || v < 1000 {
			t.Errorf("%s = %v (present %v), want a real size", sample, v, ok)
		}
	}
	if _, ok := got[fmt.Sprintf(`godwit_path_lost_packets_total{%s,peer=%q}`, path, s.name())]; !ok {
		t.Errorf("no godwit_path_lost_packets_total for %s", path)
	}
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no sample %s", name)
		}
	}
}
