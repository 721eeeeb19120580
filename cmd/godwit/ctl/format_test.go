// SPDX-License-Identifier: MIT

package ctl

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Minute, "0s"},
		{999 * time.Millisecond, "0s"},
		{time.Second, "1s"},
		{45*time.Second + 900*time.Millisecond, "45s"},
		{72 * time.Second, "1m12s"},
		{time.Hour, "1h0m"},
		{3*time.Hour + 4*time.Minute + 59*time.Second, "3h4m"},
		{53 * time.Hour, "2d5h"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.in); got != tt.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"never", time.Time{}, "never"},
		{"just now", now.Add(-300 * time.Millisecond), "now"},
		{"in the future", now.Add(time.Minute), "now"},
		{"72s", now.Add(-72 * time.Second), "1m12s ago"},
	}
	for _, tt := range tests {
		if got := ago(now, tt.t); got != tt.want {
			t.Errorf("ago(%s) = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestHumanRTT(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want string
	}{
		{0, "-"},
		{812 * time.Microsecond, "812µs"},
		{1234 * time.Microsecond, "1.23ms"},
		{45600 * time.Microsecond, "45.6ms"},
		{123 * time.Millisecond, "123ms"},
		{1200 * time.Millisecond, "1.20s"},
	}
	for _, tt := range tests {
		if got := humanRTT(tt.in); got != tt.want {
			t.Errorf("humanRTT(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		in   uint64
		want string
	}{
		{0, "0 B"},
		{1023, "1023 B"},
		{1024, "1.00 KiB"},
		{1536, "1.50 KiB"},
		{12_900_000, "12.3 MiB"},
		{1023 * 1024, "1023 KiB"},
		{1024*1024 - 1, "1.00 MiB"},
		{5 << 30, "5.00 GiB"},
		{1 << 63, "8.00 EiB"},
	}
	for _, tt := range tests {
		if got := humanBytes(tt.in); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fixtureStatus is a Status with one connected and one idle peer.
func fixtureStatus() *Status {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	drops := func(kv ...any) map[string]uint64 {
		m := map[string]uint64{"outbound/no_route": 0, "inbound/bad_source": 0}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = uint64(kv[i+1].(int))
		}
		return m
	}
	return &Status{
		Version: "v1.2.3",
		Now:     now,
		Started: now.Add(-2 * time.Hour),
		Interface: InterfaceStatus{
			Name:          "gw0",
			PublicKey:     "HUBKEYHUBKEYHUBKEYHUBKEYHUBKEYHUBKEYHUBKEYM=",
			Addresses:     []netip.Prefix{netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("fd77::1/64")},
			MTU:           1300,
			Listen:        "0.0.0.0:4433",
			LocalAddr:     netip.MustParseAddrPort("0.0.0.0:4433"),
			MetricsListen: "127.0.0.1:9586",
			Traffic:       Traffic{RxPackets: 10, RxBytes: 840, TxPackets: 12, TxBytes: 13_000_000},
			Drops:         drops("outbound/no_route", 3),
			ICMPSent:      3,
		},
		Peers: []PeerStatus{
			{
				Name:           "boat-1",
				PublicKey:      "BOATKEYBOATKEYBOATKEYBOATKEYBOATKEYBOATKEYA=",
				AllowedIPs:     []netip.Prefix{netip.MustParsePrefix("10.77.0.2/32")},
				State:          StateConnected,
				ConnectedSince: now.Add(-5*time.Minute - 3*time.Second),
				LastHandshake:  now.Add(-72 * time.Second),
				LastRx:         now.Add(-2 * time.Second),
				LastTx:         now.Add(-500 * time.Millisecond),
				Traffic:        Traffic{RxPackets: 10, RxBytes: 840, TxPackets: 12, TxBytes: 13_000_000},
				Drops:          drops("inbound/bad_source", 2),
				Resumed:        true,
				HeartbeatRTT:   1500 * time.Microsecond,
				Paths: []PathStatus{{
					Local:            netip.MustParseAddrPort("198.18.1.1:4433"),
					Remote:           netip.MustParseAddrPort("198.18.1.2:51234"),
					Active:           true,
					RTT:              RTT{Smoothed: 1234 * time.Microsecond, Min: 900 * time.Microsecond, Latest: 1100 * time.Microsecond},
					CongestionWindow: 39_321,
					DatagramLimit:    1252,
					BytesSent:        14_000_000,
					PacketsSent:      11_000,
					BytesReceived:    9_000,
					PacketsReceived:  90,
					BytesLost:        4_608,
					PacketsLost:      3,
					PTOCount:         2,
				}},
			},
			{
				Name:       "van-2",
				PublicKey:  "VANKEYVANKEYVANKEYVANKEYVANKEYVANKEYVANKEY0=",
				Endpoint:   "van.example.net:4433",
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.77.0.3/32"), netip.MustParsePrefix("192.168.30.0/24")},
				State:      StateConnecting,
				Drops:      drops(),
				Paths:      []PathStatus{},
			},
		},
	}
}

func TestFormatStatus(t *testing.T) {
	got := Format(fixtureStatus())
	// Each want is one whole line of the output.
	want := []string{
		"interface: gw0",
		"  public key: HUBKEYHUBKEYHUBKEYHUBKEYHUBKEYHUBKEYHUBKEYM=",
		"  listening on: 0.0.0.0:4433",
		"  addresses: 10.77.0.1/24, fd77::1/64",
		"  metrics: http://127.0.0.1:9586/metrics",
		"  up: 2h0m (godwit v1.2.3)",
		"  transfer: 840 B received (10 packets), 12.4 MiB sent (12 packets)",
		"  drops: outbound/no_route 3",
		"  events: 3 ICMP errors sent",
		"peer: boat-1",
		"  state: connected for 5m3s",
		"  endpoint: 198.18.1.2:51234",
		"  allowed ips: 10.77.0.2/32",
		"  latest handshake: 1m12s ago (resumed session)",
		"  latest packet: received 2s ago, sent now",
		"  drops: inbound/bad_source 2",
		"  heartbeat rtt: 1.50ms",
		"  path 198.18.1.1:4433 -> 198.18.1.2:51234 (active)",
		"    rtt: 1.23ms smoothed, 900µs min, 1.10ms latest",
		"    congestion window: 38.4 KiB, datagram limit: 1252 B",
		"    quic: 13.4 MiB sent (11000 packets), 8.79 KiB received (90 packets), 3 packets lost (4.50 KiB)",
		"peer: van-2",
		"  state: connecting",
		"  endpoint: van.example.net:4433",
		"  allowed ips: 10.77.0.3/32, 192.168.30.0/24",
		"  transfer: 0 B received (0 packets), 0 B sent (0 packets)",
	}
	lines := strings.Split(got, "\n")
	has := make(map[string]bool, len(lines))
	for _, l := range lines {
		has[l] = true
	}
	for _, w := range want {
		if !has[w] {
			t.Errorf("Format: no line %q in\n%s", w, got)
		}
	}
	// The idle-peer section must not claim a handshake, packets or paths;
	// zero drop counts are not listed.
	_, van, _ := strings.Cut(got, "peer: van-2")
	for _, bad := range []string{"handshake", "latest packet", "path ", "drops:", "0-rtt", "migrations"} {
		if strings.Contains(van, bad) {
			t.Errorf("Format: section of the connecting peer mentions %q:\n%s", bad, van)
		}
	}
}

// fallbackStatus is fixtureStatus with a TCP listener on the hub and
// van-2 connected over its TCP fallback through a proxy.
func fallbackStatus() *Status {
	st := fixtureStatus()
	st.Interface.ListenTCP = netip.MustParseAddrPort("0.0.0.0:443")
	st.Interface.TCPListener = &TCPListenerStatus{Clients: 1, Pending: 256, Accepted: 3, RefusedKeys: 40, Evicted: 2048}
	st.Interface.Connections.TCPFallbacks, st.Interface.Connections.UDPReturns = 2, 1
	van := &st.Peers[1]
	van.State = StateConnected
	van.Multipath = "failover"
	van.Fallback = &FallbackStatus{OnTCP: true, Reason: "udp blocked: no answer in 1s; tcp via proxy", Since: st.Now.Add(-12 * time.Second), Fallbacks: 2, Returns: 1}
	van.Paths = []PathStatus{{
		Local:     netip.MustParseAddrPort("198.18.3.2:40000"),
		Remote:    netip.MustParseAddrPort("198.18.1.1:443"),
		Active:    true,
		Transport: "tcp via proxy",
		Multipath: &MultipathStatus{Role: "carrying", Health: "up"},
	}}
	return st
}

func TestFormatFallback(t *testing.T) {
	got := Format(fallbackStatus())
	for _, w := range []string{
		"  listening on tcp: 0.0.0.0:443",
		"  tcp listener: 1 clients, 256 handshakes in progress, 3 accepted, 40 refused keys, 2048 handshakes evicted by newer ones",
		"  transport: tcp (udp blocked: no answer in 1s; tcp via proxy, 12s ago); 2 fallbacks to tcp, 1 returns to udp",
		"  path 198.18.3.2:40000 -> 198.18.1.1:443 over tcp via proxy (carrying; health up, loss 0.0 %)",
	} {
		if !slices.Contains(strings.Split(got, "\n"), w) {
			t.Errorf("Format: no line %q in\n%s", w, got)
		}
	}
	// A UDP path does not say so: "over udp" would be noise.
	if strings.Contains(got, "over udp") {
		t.Errorf("Format names the udp transport:\n%s", got)
	}
}
