// SPDX-License-Identifier: MIT

// Package ctl is what Godwit tells its operator: the [Status] document
// that `godwit run` serves on its control socket ([Listen], [Server]),
// `godwit show` asks for ([Query]) and prints ([Format]; --json prints the
// document itself), and the metrics endpoint exports to Prometheus
// ([NewRegistry]). The daemon builds a Status from its parts
// (cmd/godwit/ctl.go); the tests and benchmarks read it with Query.
//
// The JSON field names are an interface for scripts (`godwit show --json`):
// they do not change.
//
// Protocol: `godwit run` listens on /run/godwit/<iface>.sock (directory
// 0700, socket 0600; the environment variable GODWIT_SOCKET moves it) and
// answers one JSON request per connection. The client sends one JSON
// object, {"cmd":"status"}, and reads one JSON object back,
// {"status":{...}} (a Status) or {"error":"..."}; then the daemon closes
// the connection.
package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

const (
	// Dir holds the control sockets, one per interface. The systemd unit
	// creates it (RuntimeDirectory=godwit, mode 0700); the daemon creates it
	// when it is missing and tightens its mode when it is looser.
	Dir = "/run/godwit"
	// SocketEnv names the environment variable that overrides the control
	// socket path for both `godwit run` and `godwit show` (two daemons with
	// the same interface name in different network namespaces, the system
	// tests, runs without /run/godwit). `godwit show --socket` overrides it
	// in turn.
	SocketEnv = "GODWIT_SOCKET"
	// Timeout bounds one control connection, request and answer, on both
	// sides.
	Timeout = 5 * time.Second
)

// SocketPath returns the default control socket of interface iface, in
// [NetnsDir].
func SocketPath(iface string) string {
	return filepath.Join(NetnsDir(), iface+".sock")
}

// NetnsDir is the directory of the control sockets of the daemons in the
// calling process's network namespace: Dir/net-INODE in a namespace named
// with `ip netns` (INODE is the namespace's inode number), else [Dir]. So
// daemons with the same interface name in different named namespaces do
// not share a socket, and `godwit show` run in a namespace (`ip netns exec
// NS godwit show`) finds the daemons of that namespace.
func NetnsDir() string {
	own, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return Dir
	}
	entries, _ := os.ReadDir(netnsRun)
	for _, e := range entries {
		fi, err := os.Stat(filepath.Join(netnsRun, e.Name()))
		if err != nil || !os.SameFile(fi, own) {
			continue
		}
		if st, ok := own.Sys().(*syscall.Stat_t); ok {
			return filepath.Join(Dir, fmt.Sprintf("net-%d", st.Ino))
		}
	}
	return Dir
}

// netnsRun is where `ip netns` keeps its named namespaces.
const netnsRun = "/run/netns"

// Request is what a client sends: {"cmd":"status"}.
type Request struct {
	Cmd string `json:"cmd"`
}

// Response is the daemon's answer: a Status or an error, never both.
type Response struct {
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
	// Reloaded answers a successful "reload".
	Reloaded bool `json:"reloaded,omitempty"`
}

// Status is the answer to the "status" command: a snapshot of the daemon,
// its interface and every configured peer. `godwit show --json` prints it.
// Times are RFC 3339 in the daemon's clock (compare them with Now, not with
// the reader's clock); fields ending in _ns are durations in nanoseconds.
type Status struct {
	Version   string          `json:"version"`
	Now       time.Time       `json:"now"`     // when the snapshot was taken
	Started   time.Time       `json:"started"` // when the daemon started
	Interface InterfaceStatus `json:"interface"`
	Peers     []PeerStatus    `json:"peers"` // in config order
}

// InterfaceStatus is this node: its TUN interface and its QUIC endpoint.
type InterfaceStatus struct {
	Name      string         `json:"name"`
	PublicKey string         `json:"public_key"` // base64
	Addresses []netip.Prefix `json:"addresses"`
	MTU       int            `json:"mtu"`
	Listen    string         `json:"listen,omitempty"` // as configured; "" when not listening
	LocalAddr netip.AddrPort `json:"local_addr"`       // the UDP socket's address
	// ListenTCP is the TCP listener's address (listen_tcp, with the port
	// the kernel chose for port 0); zero when not listening on TCP.
	ListenTCP netip.AddrPort `json:"listen_tcp,omitzero"`
	// TCPListener counts what the TCP listener did since start; nil when
	// not listening on TCP.
	TCPListener   *TCPListenerStatus `json:"tcp_listener,omitempty"`
	MetricsListen string             `json:"metrics_listen,omitempty"`
	// Routes is when the peers' routes exist ("always" or "connected"),
	// RouteProtocol their protocol number, HubFailovers how many times
	// this site's carrying hub changed.
	Routes        string `json:"routes"`
	RouteProtocol int    `json:"route_protocol"`
	HubFailovers  uint64 `json:"hub_failovers"`
	// Traffic and Drops are totals since start, including peers removed
	// since and drops that belong to no peer (outbound/no_route,
	// outbound/malformed).
	Traffic
	Drops map[string]uint64 `json:"drops"` // by "direction/reason", every reason present
	// ICMPSent counts ICMP errors the tunnel wrote to the TUN (unreachable,
	// too big); ICMPRateLimited those it suppressed.
	ICMPSent        uint64 `json:"icmp_sent"`
	ICMPRateLimited uint64 `json:"icmp_rate_limited"`
	// TUNTooManySegments counts TUN reads that lost part of a coalesced
	// segment; TUNWriteErrors failed TUN writes.
	TUNTooManySegments uint64 `json:"tun_too_many_segments"`
	TUNWriteErrors     uint64 `json:"tun_write_errors"`
	// UnreachableSends counts UDP sends that failed because the network
	// was gone and were treated as loss.
	UnreachableSends uint64 `json:"unreachable_sends"`
	// TCPSendDrops counts packets the TCP paths (dialed and the
	// listener's) dropped because a send queue stayed full.
	TCPSendDrops uint64 `json:"tcp_send_drops"`
	// Connections are the endpoint's connection events since start: 0-RTT
	// attempts and their answers, incoming 0-RTT accepted or refused
	// (replayed or pre-restart tickets resume without 0-RTT), redials and
	// the latest redial's outage.
	Connections ConnEvents `json:"connections"`
	// UDPRcvbufErrors is the kernel's count of UDP datagrams dropped for a
	// full socket receive buffer in this network namespace (all UDP
	// sockets, /proc/net/snmp and snmp6); SocketReceiveBuffer and
	// SocketSendBuffer are the sizes the kernel granted Godwit's socket.
	UDPRcvbufErrors     uint64 `json:"udp_rcvbuf_errors"`
	SocketReceiveBuffer int    `json:"socket_receive_buffer_bytes"`
	SocketSendBuffer    int    `json:"socket_send_buffer_bytes"`
	// UDPSendCalls counts the sendmsg calls of Godwit's QUIC sockets and
	// UDPSendSegments the UDP datagrams they carried: with GSO one call
	// carries several (docs/PERFORMANCE.md).
	UDPSendCalls    uint64 `json:"udp_send_calls"`
	UDPSendSegments uint64 `json:"udp_send_segments"`
}

// TCPListenerStatus is the TCP listener's view (see tcppath.Stats): the
// clients it serves, the handshakes in progress, and since start the
// handshakes completed and those that failed, by cause.
type TCPListenerStatus struct {
	Clients           int    `json:"clients"`
	Pending           int    `json:"pending_handshakes"`
	Accepted          uint64 `json:"accepted"`
	RefusedKeys       uint64 `json:"refused_keys"`
	HandshakeTimeouts uint64 `json:"handshake_timeouts"`
	HandshakeErrors   uint64 `json:"handshake_errors"`
	Evicted           uint64 `json:"evicted"` // oldest handshakes closed to make room
	BadFrames         uint64 `json:"bad_frames"`
	IdleCloses        uint64 `json:"idle_closes"`
	SendDrops         uint64 `json:"send_drops"`
	ReceiveWaits      uint64 `json:"receive_waits"`
}

// ConnEvents counts the endpoint's connection events (see
// quicconn.EndpointStats).
type ConnEvents struct {
	ZeroRTTAttempted    uint64        `json:"zero_rtt_attempted"`
	ZeroRTTAccepted     uint64        `json:"zero_rtt_accepted"`
	ZeroRTTRejected     uint64        `json:"zero_rtt_rejected"`
	EarlyAccepted       uint64        `json:"early_accepted"`
	EarlyRefusedReplay  uint64        `json:"early_refused_replay"`
	EarlyRefusedRestart uint64        `json:"early_refused_restart"`
	EarlyRefusedOther   uint64        `json:"early_refused_other"`
	Redials             uint64        `json:"redials"`
	RedialsAfterReset   uint64        `json:"redials_after_reset"`
	LastRedialOutage    time.Duration `json:"last_redial_outage_ns"`
	// TCPFallbacks counts the moves of peers to their TCP path (UDP
	// blocked), UDPReturns the moves back to UDP.
	TCPFallbacks uint64 `json:"tcp_fallbacks"`
	UDPReturns   uint64 `json:"udp_returns"`
	// Incoming handshakes (see quicconn.EndpointStats): pending now, Retries
	// sent (above 16 pending), refused for an unknown key, abandoned
	// half-open, refused because 1,024 were being served; ControlFloods
	// counts peers closed for flooding the control stream.
	HandshakesPending   int    `json:"handshakes_pending"`
	RetriesSent         uint64 `json:"retries_sent"`
	RefusedKeys         uint64 `json:"refused_keys"`
	HandshakesAbandoned uint64 `json:"handshakes_abandoned"`
	RefusedBusy         uint64 `json:"refused_busy"`
	ControlFloods       uint64 `json:"control_floods"`
}

// Traffic is IP packets and bytes carried through the tunnel: Rx received
// from peers, Tx sent to peers.
type Traffic struct {
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
}

// PeerState is a peer's connection state.
type PeerState string

// The peer states.
const (
	StateConnected  PeerState = "connected"  // has a live connection
	StateConnecting PeerState = "connecting" // no connection; this side dials it
	StateIdle       PeerState = "idle"       // no connection; waiting for it to dial in
)

// PeerStatus is one configured peer.
type PeerStatus struct {
	Name       string         `json:"name"`
	PublicKey  string         `json:"public_key"`         // base64
	Endpoint   string         `json:"endpoint,omitempty"` // as configured; "" when the peer dials in
	AllowedIPs []netip.Prefix `json:"allowed_ips"`
	State      PeerState      `json:"state"`
	// ConnectedSince is when the current (or, when not connected, the
	// last) connection was attached; LastHandshake when its QUIC handshake
	// completed. Both are zero when the peer never connected.
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	LastHandshake  time.Time `json:"last_handshake,omitzero"`
	// LastRx and LastTx are when the latest IP packet came from or went to
	// the peer (within 250 ms); zero if none did.
	LastRx time.Time `json:"last_rx,omitzero"`
	LastTx time.Time `json:"last_tx,omitzero"`
	// Traffic and Drops count since the peer was configured, across its
	// connections. Drops by "direction/reason" (see tunnel.Drops), every
	// reason present.
	Traffic
	Drops map[string]uint64 `json:"drops"`
	// Resumed reports whether the current connection resumed a TLS
	// session; false when not connected.
	Resumed bool `json:"resumed"`
	// HeartbeatRTT is the latest round trip on the control stream.
	HeartbeatRTT time.Duration `json:"heartbeat_rtt_ns"`
	// ZeroRTT reports 0-RTT on the current connection; zero when not
	// connected.
	ZeroRTT ZeroRTT `json:"zero_rtt"`
	// Migrations counts the current connection's switches between
	// uplinks; LastMigrationOutage is the measured outage of the latest
	// one (0 until measured).
	Migrations          uint64        `json:"migrations"`
	LastMigrationOutage time.Duration `json:"last_migration_outage_ns"`
	// Paths are the current connection's network paths, the active one
	// first, then validated or probing standby paths on other uplinks;
	// empty when not connected. Standby paths carry only their addresses.
	// For a multipath peer they are its connections instead, one per
	// path, best first, each Active with its own figures and Multipath.
	Paths []PathStatus `json:"paths"`
	// Multipath is the mode of a peer with a connection set ("failover",
	// "redundant", "aggregate"); "" for a single connection.
	Multipath string `json:"multipath,omitempty"`
	// Fallback is the TCP fallback of a peer with endpoint_tcp; nil
	// without one.
	Fallback *FallbackStatus `json:"fallback,omitempty"`

	// LastError is why the latest dial to the peer failed (a wrong key, a
	// refused handshake, no answer) and LastErrorAt when; empty once a
	// dial succeeded.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`

	// Several hubs (a site): Priority is the hub's priority, nil without
	// one; Carrying reports that this site sends the traffic of the
	// prefixes it shares with other hubs through this one now, and
	// Carries lists those prefixes.
	Priority *int           `json:"priority,omitempty"`
	Carrying bool           `json:"carrying"`
	Carries  []netip.Prefix `json:"carries,omitempty"`
	// A hub: Preferred reports that the site (a peer that dials in) uses
	// this hub for its traffic (a connected site that says nothing does);
	// RoutesInstalled that the kernel routes its allowed-IPs into the
	// TUN (always with routes = "always").
	Preferred       bool `json:"preferred"`
	RoutesInstalled bool `json:"routes_installed"`
}

// FallbackStatus is the state of a peer's TCP fallback (endpoint_tcp).
type FallbackStatus struct {
	// OnTCP reports that the TCP path is wanted: no UDP connection was
	// usable, and none has been for long enough to go back.
	OnTCP bool `json:"on_tcp"`
	// Reason is why the latest change happened, e.g. "udp blocked: no
	// answer in 1s; tcp via proxy"; "" before the first change.
	Reason string `json:"reason,omitempty"`
	// Since is when the latest change happened.
	Since time.Time `json:"since,omitzero"`
	// Fallbacks and Returns count this peer's moves to TCP and back.
	Fallbacks uint64 `json:"fallbacks"`
	Returns   uint64 `json:"returns"`
}

// MultipathStatus is what the tunnel does with one connection of a
// multipath peer. Packets are the tunnel's IP packets.
type MultipathStatus struct {
	// Role is "carrying" (sends the peer's traffic now), "warm" (healthy,
	// standing by) or "down".
	Role string `json:"role"`
	// Health is the connection's monitor: "up", "silent" or "lossy", with
	// the recent loss ratio of its QUIC packets.
	Health string  `json:"health"`
	Loss   float64 `json:"loss_ratio"`
	// Share is the fraction of the peer's packets sent on this path.
	Share        float64 `json:"traffic_share"`
	TxPackets    uint64  `json:"tx_packets"`
	RxPackets    uint64  `json:"rx_packets"`
	DupSent      uint64  `json:"dup_sent"`      // extra copies (redundant, duplicate rules)
	DupDiscarded uint64  `json:"dup_discarded"` // copies received second, dropped
	// Sequenced reports that the peer's datagrams carry sequence numbers
	// (it has more than one path, and both ends announced them).
	Sequenced bool `json:"sequenced"`
}

// ZeroRTT reports 0-RTT on a connection (quicconn.ConnStats Used0RTT and
// Rejected0RTT): Used when data sent before the handshake completed was
// accepted, Rejected when the dialer's 0-RTT was rejected or this side
// refused the peer's (an old or replayed ticket); both false when 0-RTT
// was not tried.
type ZeroRTT struct {
	Used     bool `json:"used"`
	Rejected bool `json:"rejected"`
}

// PathStatus is one network path of a connection. QUIC figures are for the
// whole connection (quic-go counts per connection, and they reset when the
// connection is replaced); packets and bytes are QUIC packets and UDP
// payload bytes, not the tunnel's IP packets.
type PathStatus struct {
	// Uplink is the interface of the path's socket; "" for the wildcard
	// socket (no uplinks configured, or a hub).
	Uplink           string         `json:"uplink,omitempty"`
	Local            netip.AddrPort `json:"local"`
	Remote           netip.AddrPort `json:"remote"`
	Active           bool           `json:"active"`
	Validated        bool           `json:"validated"` // the peer answered on it; always true when Active
	RTT              RTT            `json:"rtt"`
	CongestionWindow uint64         `json:"congestion_window_bytes"`
	DatagramLimit    int            `json:"datagram_limit_bytes"` // largest datagram payload right now
	BytesSent        uint64         `json:"bytes_sent"`
	PacketsSent      uint64         `json:"packets_sent"`
	BytesReceived    uint64         `json:"bytes_received"`
	PacketsReceived  uint64         `json:"packets_received"`
	BytesLost        uint64         `json:"bytes_lost"`
	PacketsLost      uint64         `json:"packets_lost"`
	// QUICDrops are drops only quic-go's tracer sees, by reason:
	// receive_queue_full (datagrams), send_too_large (datagrams) and
	// dos_prevention (packets).
	QUICDrops map[string]uint64 `json:"quic_drops"`
	// PTOCount is the current number of consecutive probe timeouts (a
	// rising count means the path stopped answering); MaxPacketSize the
	// UDP payload size path MTU discovery has reached.
	PTOCount      uint32 `json:"pto_count"`
	MaxPacketSize int    `json:"max_packet_size_bytes"`
	// Multipath is set on the paths of a multipath peer.
	Multipath *MultipathStatus `json:"multipath,omitempty"`
	// Transport is how the path reaches the peer: "udp", "tcp" (TLS on
	// TCP) or "tcp via proxy" (through an HTTP proxy).
	Transport string `json:"transport"`
}

// RTT holds quic-go's round-trip estimates of a path.
type RTT struct {
	Smoothed      time.Duration `json:"smoothed_ns"`
	Min           time.Duration `json:"min_ns"`
	Latest        time.Duration `json:"latest_ns"`
	MeanDeviation time.Duration `json:"mean_deviation_ns"`
}

// Peer returns the peer called name, or nil.
func (s *Status) Peer(name string) *PeerStatus {
	for i := range s.Peers {
		if s.Peers[i].Name == name {
			return &s.Peers[i]
		}
	}
	return nil
}

// ActivePath returns the path p's connection sends on, or nil when p is
// not connected.
func (p *PeerStatus) ActivePath() *PathStatus {
	for i := range p.Paths {
		if p.Paths[i].Active {
			return &p.Paths[i]
		}
	}
	return nil
}

// ActiveUplink returns the uplink of p's active path: "" when p is not
// connected or its connection uses the wildcard socket.
func (p *PeerStatus) ActiveUplink() string {
	if a := p.ActivePath(); a != nil {
		return a.Uplink
	}
	return ""
}

// ValidatedStandby reports whether p's connection has a validated standby
// path on uplink, one it can move to without a new handshake.
func (p *PeerStatus) ValidatedStandby(uplink string) bool {
	for _, pa := range p.Paths {
		if !pa.Active && pa.Validated && pa.Uplink == uplink {
			return true
		}
	}
	return false
}

// Query asks the daemon on the control socket at path for its Status. It
// gives up after [Timeout] (sooner if ctx says so). Its errors say what to
// do: run as root, or start the daemon.
func Query(ctx context.Context, path string) (*Status, error) {
	resp, err := call(ctx, path, "status")
	if err != nil {
		return nil, err
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("reading from %s: empty answer", path)
	}
	return resp.Status, nil
}

// Reload asks the daemon on the control socket at path to read its config
// file again and apply it, like SIGHUP. It returns the daemon's error when
// the file is bad (the old config keeps running) or could be applied only
// in part.
func Reload(ctx context.Context, path string) error {
	resp, err := call(ctx, path, "reload")
	if err != nil {
		return err
	}
	if !resp.Reloaded {
		return fmt.Errorf("reading from %s: empty answer", path)
	}
	return nil
}

// call sends cmd to the daemon at path and returns its answer; an answer
// with an Error is returned as an error.
func call(ctx context.Context, path, cmd string) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("permission denied on %s: run godwit as root", path)
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("no godwit daemon on %s: is it running?", path)
		}
		return nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if err := json.NewEncoder(c).Encode(Request{Cmd: cmd}); err != nil {
		return nil, fmt.Errorf("sending to %s: %w", path, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("reading from %s: %w", path, err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("daemon: %s", resp.Error)
	}
	return &resp, nil
}
