// SPDX-License-Identifier: MIT

package ctl

// The Prometheus view of a Status: what `godwit run` serves at /metrics
// (metrics_listen).

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metricDescs are the metrics of statusCollector. Counters of a peer
// count since it was configured; path figures are quic-go's, per
// connection, and restart at zero with each new connection (Prometheus
// rate() treats that as a counter reset). The path label is the path's
// uplink and transport (see pathLabels), so a reconnect or a restart
// continues the same series.
var metricDescs = struct {
	info, peerConnected, peerHandshake, peerLastRx, peerLastTx            *prometheus.Desc
	peerRxPackets, peerRxBytes, peerTxPackets, peerTxBytes, peerDrops     *prometheus.Desc
	pathRTT, pathCwnd, pathLimit, pathLost, pathSentBytes, pathRecvBytes  *prometheus.Desc
	ifRxPackets, ifRxBytes, ifTxPackets, ifTxBytes, ifDrops, icmpSent     *prometheus.Desc
	icmpLimited, unreachableSends, tunWriteErrors, tunTooManySegs, uptime *prometheus.Desc
	pathQUICDrops, pathPTO, pathMaxPacket, udpRcvbufErrors                *prometheus.Desc
	pathRole, pathLoss, pathShare, pathDupSent, pathDupDiscarded          *prometheus.Desc
	connEvents, lastRedialOutage, udpSendCalls, udpSendSegments           *prometheus.Desc
	pathTransport, peerOnTCP, tcpListenerEvents, tcpListenerConns         *prometheus.Desc
	tcpSendDrops, peerState, peerMigrations, peerMigrationOutage          *prometheus.Desc
	pathCarrying, hubFailovers, peerPreferred                             *prometheus.Desc
}{
	hubFailovers: prometheus.NewDesc("godwit_hub_failovers_total",
		"Changes of the hub that carries the prefixes a site shares between its hubs (priority).", nil, nil),
	peerPreferred: prometheus.NewDesc("godwit_peer_preferred",
		"On a site, 1 while this hub (a peer with priority) carries its shared prefixes; on a hub, 1 while the site (a peer that dials in) uses this hub; else 0.",
		[]string{"peer"}, nil),
	peerState: prometheus.NewDesc("godwit_peer_state",
		"1 for the peer's connection state (connected, connecting: this side dials; idle: waiting for the peer to dial in), 0 for the others.",
		[]string{"peer", "state"}, nil),
	peerMigrations: prometheus.NewDesc("godwit_peer_migrations_total",
		"Moves of the peer's connection from one uplink to another; restarts at zero with each new connection.",
		[]string{"peer"}, nil),
	peerMigrationOutage: prometheus.NewDesc("godwit_peer_last_migration_outage_seconds",
		"Measured outage of the peer's latest migration; absent until one was measured.",
		[]string{"peer"}, nil),
	pathCarrying: prometheus.NewDesc("godwit_path_carrying",
		"1 on the path that carries the peer's traffic now, 0 on standby paths and multipath connections that do not.",
		[]string{"peer", "path"}, nil),
	tcpSendDrops: prometheus.NewDesc("godwit_tcp_send_drops_total",
		"Packets the TCP paths (dialed and the listener's) dropped because a send queue stayed full.", nil, nil),
	tcpListenerEvents: prometheus.NewDesc("godwit_tcp_listener_events_total",
		"What the TCP listener (listen_tcp) did with connections and packets: accepted, refused_keys, handshake_timeouts, handshake_errors, evicted (oldest handshake closed to make room), bad_frames, idle_closes, send_drops (a client's send queue full for its wait), receive_waits (the shared receive queue full: the client's TCP held back).",
		[]string{"event"}, nil),
	tcpListenerConns: prometheus.NewDesc("godwit_tcp_listener_connections",
		"TCP listener connections now, by state: client (authenticated) or handshake (in progress).",
		[]string{"state"}, nil),
	pathTransport: prometheus.NewDesc("godwit_path_transport", "1, labelled with how the path reaches the peer: udp, tcp (TLS on TCP) or tcp via proxy.",
		[]string{"peer", "path", "transport"}, nil),
	peerOnTCP: prometheus.NewDesc("godwit_peer_on_tcp", "1 while a peer with endpoint_tcp is on its TCP fallback (no UDP connection usable), else 0.",
		[]string{"peer"}, nil),
	udpSendCalls: prometheus.NewDesc("godwit_udp_send_calls_total",
		"sendmsg calls of the QUIC sockets.", nil, nil),
	udpSendSegments: prometheus.NewDesc("godwit_udp_send_segments_total",
		"UDP datagrams the sendmsg calls carried (more than the calls with GSO).", nil, nil),
	connEvents: prometheus.NewDesc("godwit_connection_events_total",
		"Connection events of the endpoint: zero_rtt_attempted, zero_rtt_accepted, zero_rtt_rejected, early_accepted, early_refused_replay, early_refused_restart, early_refused_other, redials, redials_after_reset, tcp_fallbacks (a peer moved to its TCP path), udp_returns (and back to UDP), retries_sent (Retry above 16 pending handshakes), refused_keys, handshakes_abandoned (never completed), refused_busy, control_floods (peers closed for flooding the control stream).",
		[]string{"event"}, nil),
	lastRedialOutage: prometheus.NewDesc("godwit_last_redial_outage_seconds",
		"Time from a connection's death to the first datagram on its redialed successor, for the latest redial.", nil, nil),
	pathQUICDrops: prometheus.NewDesc("godwit_path_quic_drops_total",
		"Datagrams or packets dropped inside quic-go, by reason (receive_queue_full, send_too_large, dos_prevention).",
		[]string{"peer", "path", "reason"}, nil),
	pathRole: prometheus.NewDesc("godwit_path_role", "1 for a multipath connection's role (carrying, warm, down) and health (up, silent, lossy).",
		[]string{"peer", "path", "role", "health"}, nil),
	pathLoss: prometheus.NewDesc("godwit_path_loss_ratio", "Recent QUIC packet loss ratio of a multipath connection, as its health monitor sees it.",
		[]string{"peer", "path"}, nil),
	pathShare: prometheus.NewDesc("godwit_path_traffic_share", "Fraction of the peer's tunnel packets sent on a multipath connection.",
		[]string{"peer", "path"}, nil),
	pathDupSent: prometheus.NewDesc("godwit_path_duplicates_sent_total", "Extra copies of packets sent on a multipath connection (redundant mode, duplicate rules).",
		[]string{"peer", "path"}, nil),
	pathDupDiscarded: prometheus.NewDesc("godwit_path_duplicates_discarded_total", "Packets received on a multipath connection after their other copy: discarded.",
		[]string{"peer", "path"}, nil),
	pathPTO: prometheus.NewDesc("godwit_path_consecutive_probe_timeouts", "Consecutive QUIC probe timeouts on the path right now (rising: the path stopped answering).",
		[]string{"peer", "path"}, nil),
	pathMaxPacket: prometheus.NewDesc("godwit_path_max_packet_size_bytes", "UDP payload size reached by path MTU discovery.",
		[]string{"peer", "path"}, nil),
	udpRcvbufErrors: prometheus.NewDesc("godwit_udp_rcvbuf_errors_total",
		"UDP datagrams the kernel dropped for a full receive buffer in this network namespace (all sockets).", nil, nil),
	info: prometheus.NewDesc("godwit_info", "Constant 1, labelled with the version and interface.",
		[]string{"version", "interface"}, nil),
	uptime: prometheus.NewDesc("godwit_start_time_seconds", "When the daemon started, in Unix seconds.", nil, nil),

	peerConnected: prometheus.NewDesc("godwit_peer_connected", "1 if the peer has a live connection, else 0.",
		[]string{"peer"}, nil),
	peerHandshake: prometheus.NewDesc("godwit_peer_last_handshake_timestamp_seconds",
		"When the QUIC handshake of the peer's current or last connection completed; absent if it never connected.",
		[]string{"peer"}, nil),
	peerLastRx: prometheus.NewDesc("godwit_peer_last_rx_timestamp_seconds",
		"When the latest IP packet from the peer arrived (250 ms resolution); absent if none did.",
		[]string{"peer"}, nil),
	peerLastTx: prometheus.NewDesc("godwit_peer_last_tx_timestamp_seconds",
		"When the latest IP packet to the peer was sent (250 ms resolution); absent if none was.",
		[]string{"peer"}, nil),
	peerRxPackets: prometheus.NewDesc("godwit_peer_rx_packets_total", "IP packets received from the peer and written to the TUN.",
		[]string{"peer"}, nil),
	peerRxBytes: prometheus.NewDesc("godwit_peer_rx_bytes_total", "IP bytes received from the peer and written to the TUN.",
		[]string{"peer"}, nil),
	peerTxPackets: prometheus.NewDesc("godwit_peer_tx_packets_total", "IP packets sent to the peer.",
		[]string{"peer"}, nil),
	peerTxBytes: prometheus.NewDesc("godwit_peer_tx_bytes_total", "IP bytes sent to the peer.",
		[]string{"peer"}, nil),
	peerDrops: prometheus.NewDesc("godwit_peer_drops_total", "IP packets to or from the peer dropped, by direction and reason.",
		[]string{"peer", "direction", "reason"}, nil),

	pathRTT: prometheus.NewDesc("godwit_path_rtt_seconds", "Round-trip time estimate of the path, by kind (smoothed, min, latest).",
		[]string{"peer", "path", "kind"}, nil),
	pathCwnd: prometheus.NewDesc("godwit_path_congestion_window_bytes", "Congestion window of the path.",
		[]string{"peer", "path"}, nil),
	pathLimit: prometheus.NewDesc("godwit_path_datagram_limit_bytes", "Largest datagram payload the path accepts right now.",
		[]string{"peer", "path"}, nil),
	pathLost: prometheus.NewDesc("godwit_path_lost_packets_total", "QUIC packets declared lost on the path's connection.",
		[]string{"peer", "path"}, nil),
	pathSentBytes: prometheus.NewDesc("godwit_path_sent_bytes_total", "UDP payload bytes sent on the path's connection.",
		[]string{"peer", "path"}, nil),
	pathRecvBytes: prometheus.NewDesc("godwit_path_received_bytes_total", "UDP payload bytes received on the path's connection.",
		[]string{"peer", "path"}, nil),

	ifRxPackets: prometheus.NewDesc("godwit_rx_packets_total", "IP packets received from all peers, removed ones included.", nil, nil),
	ifRxBytes:   prometheus.NewDesc("godwit_rx_bytes_total", "IP bytes received from all peers, removed ones included.", nil, nil),
	ifTxPackets: prometheus.NewDesc("godwit_tx_packets_total", "IP packets sent to all peers, removed ones included.", nil, nil),
	ifTxBytes:   prometheus.NewDesc("godwit_tx_bytes_total", "IP bytes sent to all peers, removed ones included.", nil, nil),
	ifDrops: prometheus.NewDesc("godwit_drops_total", "IP packets dropped, by direction and reason, including those of no peer (no_route).",
		[]string{"direction", "reason"}, nil),
	icmpSent:         prometheus.NewDesc("godwit_icmp_sent_total", "ICMP errors written to the TUN (unreachable, packet too big).", nil, nil),
	icmpLimited:      prometheus.NewDesc("godwit_icmp_rate_limited_total", "ICMP errors suppressed by the rate limit.", nil, nil),
	unreachableSends: prometheus.NewDesc("godwit_unreachable_sends_total", "UDP sends that failed because the network was gone, counted as loss.", nil, nil),
	tunWriteErrors:   prometheus.NewDesc("godwit_tun_write_errors_total", "Failed TUN writes (the rest of that batch is lost).", nil, nil),
	tunTooManySegs:   prometheus.NewDesc("godwit_tun_too_many_segments_total", "TUN reads that lost part of a coalesced segment.", nil, nil),
}

// statusCollector is a prometheus.Collector that takes one Status snapshot
// per scrape, so the data path pays nothing beyond its atomic counters.
type statusCollector struct {
	snap func() *Status
}

// Describe sends every metric's description.
func (c statusCollector) Describe(ch chan<- *prometheus.Desc) {
	m := &metricDescs
	for _, d := range []*prometheus.Desc{
		m.info, m.uptime, m.peerConnected, m.peerHandshake, m.peerLastRx, m.peerLastTx,
		m.peerRxPackets, m.peerRxBytes, m.peerTxPackets, m.peerTxBytes, m.peerDrops,
		m.pathRTT, m.pathCwnd, m.pathLimit, m.pathLost, m.pathSentBytes, m.pathRecvBytes,
		m.ifRxPackets, m.ifRxBytes, m.ifTxPackets, m.ifTxBytes, m.ifDrops,
		m.icmpSent, m.icmpLimited, m.unreachableSends, m.tunWriteErrors, m.tunTooManySegs,
		m.pathQUICDrops, m.pathPTO, m.pathMaxPacket, m.udpRcvbufErrors,
		m.pathRole, m.pathLoss, m.pathShare, m.pathDupSent, m.pathDupDiscarded, m.udpSendCalls, m.udpSendSegments,
		m.connEvents, m.lastRedialOutage, m.pathTransport, m.peerOnTCP,
		m.tcpListenerEvents, m.tcpListenerConns, m.tcpSendDrops,
		m.peerState, m.peerMigrations, m.peerMigrationOutage, m.pathCarrying,
	} {
		ch <- d
	}
}

// Collect takes a snapshot and sends its figures.
func (c statusCollector) Collect(ch chan<- prometheus.Metric) {
	collectStatus(c.snap(), ch)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// collectStatus sends the metrics of st on ch.
func collectStatus(st *Status, ch chan<- prometheus.Metric) {
	m := &metricDescs
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	ifc := &st.Interface
	gauge(m.info, 1, st.Version, ifc.Name)
	gauge(m.uptime, unixSeconds(st.Started))
	counter(m.ifRxPackets, ifc.RxPackets)
	counter(m.ifRxBytes, ifc.RxBytes)
	counter(m.ifTxPackets, ifc.TxPackets)
	counter(m.ifTxBytes, ifc.TxBytes)
	for k, v := range ifc.Drops {
		dir, reason, _ := strings.Cut(k, "/")
		counter(m.ifDrops, v, dir, reason)
	}
	counter(m.icmpSent, ifc.ICMPSent)
	counter(m.icmpLimited, ifc.ICMPRateLimited)
	counter(m.unreachableSends, ifc.UnreachableSends)
	counter(m.tcpSendDrops, ifc.TCPSendDrops)
	counter(m.tunWriteErrors, ifc.TUNWriteErrors)
	counter(m.tunTooManySegs, ifc.TUNTooManySegments)
	counter(m.udpRcvbufErrors, ifc.UDPRcvbufErrors)
	counter(m.udpSendCalls, ifc.UDPSendCalls)
	counter(m.udpSendSegments, ifc.UDPSendSegments)
	ce := &ifc.Connections
	for _, e := range []struct {
		name string
		n    uint64
	}{
		{"zero_rtt_attempted", ce.ZeroRTTAttempted}, {"zero_rtt_accepted", ce.ZeroRTTAccepted},
		{"zero_rtt_rejected", ce.ZeroRTTRejected}, {"early_accepted", ce.EarlyAccepted},
		{"early_refused_replay", ce.EarlyRefusedReplay}, {"early_refused_restart", ce.EarlyRefusedRestart},
		{"early_refused_other", ce.EarlyRefusedOther}, {"redials", ce.Redials},
		{"redials_after_reset", ce.RedialsAfterReset}, {"tcp_fallbacks", ce.TCPFallbacks},
		{"udp_returns", ce.UDPReturns}, {"retries_sent", ce.RetriesSent}, {"refused_keys", ce.RefusedKeys},
		{"handshakes_abandoned", ce.HandshakesAbandoned}, {"refused_busy", ce.RefusedBusy},
		{"control_floods", ce.ControlFloods},
	} {
		counter(m.connEvents, e.n, e.name)
	}
	gauge(m.lastRedialOutage, ce.LastRedialOutage.Seconds())
	counter(m.hubFailovers, ifc.HubFailovers)
	if tl := ifc.TCPListener; tl != nil {
		for _, e := range []struct {
			name string
			n    uint64
		}{
			{"accepted", tl.Accepted}, {"refused_keys", tl.RefusedKeys}, {"handshake_timeouts", tl.HandshakeTimeouts},
			{"handshake_errors", tl.HandshakeErrors}, {"evicted", tl.Evicted}, {"bad_frames", tl.BadFrames},
			{"idle_closes", tl.IdleCloses}, {"send_drops", tl.SendDrops}, {"receive_waits", tl.ReceiveWaits},
		} {
			counter(m.tcpListenerEvents, e.n, e.name)
		}
		gauge(m.tcpListenerConns, float64(tl.Clients), "client")
		gauge(m.tcpListenerConns, float64(tl.Pending), "handshake")
	}

	for i := range st.Peers {
		p := &st.Peers[i]
		connected := 0.0
		if p.State == StateConnected {
			connected = 1
		}
		gauge(m.peerConnected, connected, p.Name)
		switch {
		case p.Priority != nil:
			gauge(m.peerPreferred, boolFloat(p.Carrying), p.Name)
		case p.Endpoint == "":
			gauge(m.peerPreferred, boolFloat(p.Preferred), p.Name)
		}
		for _, s := range peerStates {
			v := 0.0
			if p.State == s {
				v = 1
			}
			gauge(m.peerState, v, p.Name, string(s))
		}
		counter(m.peerMigrations, p.Migrations, p.Name)
		if p.LastMigrationOutage > 0 {
			gauge(m.peerMigrationOutage, p.LastMigrationOutage.Seconds(), p.Name)
		}
		if f := p.Fallback; f != nil {
			onTCP := 0.0
			if f.OnTCP {
				onTCP = 1
			}
			gauge(m.peerOnTCP, onTCP, p.Name)
		}
		for _, ts := range []struct {
			d *prometheus.Desc
			t time.Time
		}{{m.peerHandshake, p.LastHandshake}, {m.peerLastRx, p.LastRx}, {m.peerLastTx, p.LastTx}} {
			if !ts.t.IsZero() {
				gauge(ts.d, unixSeconds(ts.t), p.Name)
			}
		}
		counter(m.peerRxPackets, p.RxPackets, p.Name)
		counter(m.peerRxBytes, p.RxBytes, p.Name)
		counter(m.peerTxPackets, p.TxPackets, p.Name)
		counter(m.peerTxBytes, p.TxBytes, p.Name)
		for k, v := range p.Drops {
			dir, reason, _ := strings.Cut(k, "/")
			counter(m.peerDrops, v, p.Name, dir, reason)
		}
		for j, path := range pathLabels(p.Paths) {
			pa := &p.Paths[j]
			carrying := 0.0
			if pa.Multipath != nil && pa.Multipath.Role == "carrying" || pa.Multipath == nil && pa.Active {
				carrying = 1
			}
			gauge(m.pathCarrying, carrying, p.Name, path)
			if !pa.Active {
				continue // standby paths have no QUIC figures of their own
			}
			if pa.Transport != "" {
				gauge(m.pathTransport, 1, p.Name, path, pa.Transport)
			}
			gauge(m.pathRTT, pa.RTT.Smoothed.Seconds(), p.Name, path, "smoothed")
			gauge(m.pathRTT, pa.RTT.Min.Seconds(), p.Name, path, "min")
			gauge(m.pathRTT, pa.RTT.Latest.Seconds(), p.Name, path, "latest")
			gauge(m.pathCwnd, float64(pa.CongestionWindow), p.Name, path)
			gauge(m.pathLimit, float64(pa.DatagramLimit), p.Name, path)
			counter(m.pathLost, pa.PacketsLost, p.Name, path)
			counter(m.pathSentBytes, pa.BytesSent, p.Name, path)
			counter(m.pathRecvBytes, pa.BytesReceived, p.Name, path)
			gauge(m.pathPTO, float64(pa.PTOCount), p.Name, path)
			gauge(m.pathMaxPacket, float64(pa.MaxPacketSize), p.Name, path)
			for reason, v := range pa.QUICDrops {
				counter(m.pathQUICDrops, v, p.Name, path, reason)
			}
			if mp := pa.Multipath; mp != nil {
				gauge(m.pathRole, 1, p.Name, path, mp.Role, mp.Health)
				gauge(m.pathLoss, mp.Loss, p.Name, path)
				gauge(m.pathShare, mp.Share, p.Name, path)
				counter(m.pathDupSent, mp.DupSent, p.Name, path)
				counter(m.pathDupDiscarded, mp.DupDiscarded, p.Name, path)
			}
		}
	}
}

// peerStates are the values of godwit_peer_state's state label.
var peerStates = []PeerState{StateConnected, StateConnecting, StateIdle}

// pathLabels names each of paths for the "path" label, by what stays the
// same across reconnects and restarts: the uplink ("default" for the
// wildcard socket: no uplinks, or a hub) and the transport, "udp" or
// "tcp" (with or without a proxy), as in "wlan0/udp" or "default/tcp".
// Addresses are no part of it: the local port is ephemeral and a roaming
// site's address changes, and each would start new series. Paths that
// would share a name (a hub sees every connection of a multipath site on
// its one socket) get "#2", "#3", ... in the order of paths.
func pathLabels(paths []PathStatus) []string {
	labels := make([]string, len(paths))
	seen := make(map[string]int, len(paths))
	for i := range paths {
		pa := &paths[i]
		uplink, transport := pa.Uplink, "udp"
		if uplink == "" {
			uplink = "default"
		}
		if strings.HasPrefix(pa.Transport, "tcp") {
			transport = "tcp"
		}
		l := uplink + "/" + transport
		seen[l]++
		if n := seen[l]; n > 1 {
			l += "#" + strconv.Itoa(n)
		}
		labels[i] = l
	}
	return labels
}

// NewRegistry returns a private Prometheus registry with a collector that
// takes one snap() per scrape, and the process and Go runtime collectors.
func NewRegistry(snap func() *Status) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{
		statusCollector{snap: snap},
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}
