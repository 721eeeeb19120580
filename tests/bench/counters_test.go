// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
)

func TestParseSNMP(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 2 64\n" +
		"Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens RetransSegs\nTcp: 1 200 120000 -1 101 45\n" +
		"Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 332943 337 2299 333442 2299 3\n"
	snmp6 := "Udp6InDatagrams                 \t24\nUdp6RcvbufErrors                \t7\nUdp6SndbufErrors \t0\n\n"
	m, err := parseSNMP(snmp, snmp6)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"Ip.Forwarding": 2, "Ip.DefaultTTL": 64, "Tcp.RtoAlgorithm": 1, "Tcp.RtoMin": 200, "Tcp.RtoMax": 120000,
		"Tcp.ActiveOpens": 101, "Tcp.RetransSegs": 45, "Udp.InDatagrams": 332943, "Udp.NoPorts": 337, "Udp.InErrors": 2299,
		"Udp.OutDatagrams": 333442, "Udp.RcvbufErrors": 2299, "Udp.SndbufErrors": 3,
		"Udp6InDatagrams": 24, "Udp6RcvbufErrors": 7, "Udp6SndbufErrors": 0}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("parseSNMP = %v, want %v", m, want)
	}
	drops := map[string]uint64{}
	if err := udpDrops(drops, m, "hub"); err != nil {
		t.Fatal(err)
	}
	if want := map[string]uint64{"hub udp/rcvbuf_errors": 2306, "hub udp/sndbuf_errors": 3}; !reflect.DeepEqual(drops, want) {
		t.Errorf("udpDrops = %v, want %v", drops, want)
	}
	// Without IPv6 there is no snmp6.
	m, err = parseSNMP(snmp, "")
	if err != nil || m["Udp.RcvbufErrors"] != 2299 {
		t.Errorf("parseSNMP without snmp6 = %v, %v", m, err)
	}
	if err := udpDrops(map[string]uint64{}, map[string]uint64{"Tcp.RetransSegs": 1}, "hub"); err == nil {
		t.Error("udpDrops without Udp counters: no error")
	}
	for _, bad := range [][2]string{
		{"Tcp: RetransSegs\n", ""},                            // no value line
		{"Tcp: RetransSegs\nUdp: 1\n", ""},                    // lines of two protocols
		{"Tcp: RetransSegs Other\nTcp: 1\n", ""},              // counts differ
		{"Tcp: RetransSegs\nTcp: x\n", ""},                    // not a number
		{"Tcp RetransSegs\nTcp 1\n", ""},                      // no colon
		{"", "Udp6RcvbufErrors 1 2\n"},                        // three fields
		{"", "Udp6RcvbufErrors -1\n"},                         // negative in snmp6
		{"Tcp: RetransSegs\nTcp: 99999999999999999999\n", ""}, // overflow
	} {
		if m, err := parseSNMP(bad[0], bad[1]); err == nil {
			t.Errorf("parseSNMP(%q, %q) = %v, want an error", bad[0], bad[1], m)
		}
	}
}

func FuzzParseSNMP(f *testing.F) {
	f.Add("Tcp: RetransSegs\nTcp: 1\n", "Udp6RcvbufErrors 1\n")
	f.Fuzz(func(t *testing.T, snmp, snmp6 string) {
		_, _ = parseSNMP(snmp, snmp6)
	})
}

func TestDelta(t *testing.T) {
	a := map[string]uint64{"hub quic/dos_prevention": 10, "hub udp/rcvbuf_errors": 5, "gone": 3}
	b := map[string]uint64{"hub quic/dos_prevention": 4, "hub udp/rcvbuf_errors": 8, "new": 2}
	// dos_prevention went down: the connection was replaced, its 4 are new.
	want := map[string]uint64{"hub quic/dos_prevention": 4, "hub udp/rcvbuf_errors": 3, "new": 2}
	if got := delta(a, b); !reflect.DeepEqual(got, want) {
		t.Errorf("delta = %v, want %v", got, want)
	}
}

func TestStatusDrops(t *testing.T) {
	st := &ctl.Status{
		Interface: ctl.InterfaceStatus{
			Drops:              map[string]uint64{"inbound/tun_queue_full": 3, "outbound/queue_full": 1, "outbound/no_route": 0},
			TUNTooManySegments: 2, TUNWriteErrors: 1, UnreachableSends: 0, TCPSendDrops: 6,
		},
		Peers: []ctl.PeerStatus{
			{Name: "site", Paths: []ctl.PathStatus{
				{Active: true, QUICDrops: map[string]uint64{"dos_prevention": 5, "receive_queue_full": 1, "send_too_large": 0}},
				{QUICDrops: map[string]uint64{"dos_prevention": 2}},
			}},
			{Name: "other", Paths: []ctl.PathStatus{{Active: true, QUICDrops: map[string]uint64{"dos_prevention": 1}}}},
		},
	}
	want := map[string]uint64{
		"hub inbound/tun_queue_full": 3, "hub outbound/queue_full": 1, "hub outbound/no_route": 0,
		"hub quic/dos_prevention": 8, "hub quic/receive_queue_full": 1, "hub quic/send_too_large": 0,
		"hub tun/too_many_segments": 2, "hub tun/write_errors": 1, "hub socket/unreachable_sends": 0,
		"hub tcp/send_drops": 6,
	}
	if got := statusDrops("hub", st); !reflect.DeepEqual(got, want) {
		t.Errorf("statusDrops = %v, want %v", got, want)
	}
}

func TestCountedFor(t *testing.T) {
	for _, tt := range []struct {
		name, key string
		want      bool
	}{
		{"Godwit", "hub quic/dos_prevention", true},
		{"Godwit", "site udp/rcvbuf_errors", true},
		{"wireguard-go", "site udp/rcvbuf_errors", true},
		{"wireguard-go", "hub udp/sndbuf_errors", true},
		{"wireguard-go", "hub quic/dos_prevention", false},
		{"wireguard-go", "hub inbound/tun_queue_full", false},
	} {
		if got := countedFor(tt.name, tt.key); got != tt.want {
			t.Errorf("countedFor(%q, %q) = %v, want %v", tt.name, tt.key, got, tt.want)
		}
	}
}

func TestMeasureTCPCounters(t *testing.T) {
	var d net.Dialer
	reads := 0
	res, err := measureTCP(context.Background(), tcpParams{
		streams: 1,
		dur:     200 * time.Millisecond,
		listen:  func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
		dial: func(ctx context.Context, a net.Addr) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", a.String())
		},
		cpu: func() (float64, error) { return 0, nil },
		counters: func(context.Context) (snapshot, error) {
			reads++
			if reads == 1 {
				return snapshot{retrans: 100, drops: map[string]uint64{"hub udp/rcvbuf_errors": 7, "hub quic/dos_prevention": 1}}, nil
			}
			return snapshot{retrans: 130, drops: map[string]uint64{"hub udp/rcvbuf_errors": 9, "hub quic/dos_prevention": 1, "site outbound/queue_full": 4}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	gb := float64(res.Bytes) / 1e9
	if reads != 2 || res.Retransmits != 30 || res.RetransPerGB != 30/gb {
		t.Errorf("%d reads, %d retransmits, %v per GB; want 2, 30, %v", reads, res.Retransmits, res.RetransPerGB, 30/gb)
	}
	if want := map[string]uint64{"hub udp/rcvbuf_errors": 2, "site outbound/queue_full": 4}; !reflect.DeepEqual(res.Drops, want) || res.DropsPerGB != 6/gb {
		t.Errorf("drops %v, %v per GB; want %v, %v", res.Drops, res.DropsPerGB, want, 6/gb)
	}
}
