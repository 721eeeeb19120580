// SPDX-License-Identifier: MIT

package main

// The control socket: `godwit run` listens on /run/godwit/<iface>.sock
// (directory 0700, socket 0600) and answers one JSON request per
// connection; `godwit show` (show.go) is its client, and the Prometheus
// collector (metrics.go) reads the same snapshot in-process.
//
// Protocol: the client sends one JSON object, {"cmd":"status"}, and reads
// one JSON object back, {"status":{...}} (a Status) or {"error":"..."};
// then the daemon closes the connection.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/godwit-vpn/godwit/config/key"

	"golang.org/x/sys/unix"

	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/tunnel"
)

const (
	// ctlDir holds the control sockets, one per interface. The systemd unit
	// creates it (RuntimeDirectory=godwit, mode 0700); the daemon creates it
	// when it is missing and tightens its mode when it is looser.
	ctlDir = "/run/godwit"
	// socketEnv names an environment variable that overrides the control
	// socket path for both `godwit run` and `godwit show` (tests, runs
	// without /run/godwit). `godwit show --socket` overrides it in turn.
	socketEnv = "GODWIT_SOCKET"

	// ctlTimeout bounds one control connection, request and answer.
	ctlTimeout = 5 * time.Second
	// maxRequest caps the size of a request; real ones are ~20 bytes.
	maxRequest = 4 << 10
	// maxCtlConns bounds the connections served at once; more are closed
	// at once.
	maxCtlConns = 8
)

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
	Name          string         `json:"name"`
	PublicKey     string         `json:"public_key"` // base64
	Addresses     []netip.Prefix `json:"addresses"`
	MTU           int            `json:"mtu"`
	Listen        string         `json:"listen,omitempty"` // as configured; "" when not listening
	LocalAddr     netip.AddrPort `json:"local_addr"`       // the UDP socket's address
	MetricsListen string         `json:"metrics_listen,omitempty"`
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
	Paths []PathStatus `json:"paths"`
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
}

// RTT holds quic-go's round-trip estimates of a path.
type RTT struct {
	Smoothed      time.Duration `json:"smoothed_ns"`
	Min           time.Duration `json:"min_ns"`
	Latest        time.Duration `json:"latest_ns"`
	MeanDeviation time.Duration `json:"mean_deviation_ns"`
}

// ctlRequest and ctlResponse are the wire format of the control socket.
type ctlRequest struct {
	Cmd string `json:"cmd"`
}

type ctlResponse struct {
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// dropMap turns tunnel drops into the "direction/reason" map of Status.
func dropMap(d tunnel.Drops) map[string]uint64 {
	m := make(map[string]uint64, 9)
	for k, v := range d.All() {
		m[k] = v
	}
	return m
}

func trafficOf(c tunnel.Counters) Traffic {
	return Traffic{RxPackets: c.RxPackets, RxBytes: c.RxBytes, TxPackets: c.TxPackets, TxBytes: c.TxBytes}
}

// addrPort converts a net.Addr from quicconn (a *net.UDPAddr) to netip.
func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// snapshot builds the Status. It holds d.mu only to copy the peer states;
// the connection statistics are read after releasing it.
func (d *daemon) snapshot(started time.Time) *Status {
	type peerCopy struct {
		ps        peerState
		connected bool
	}
	d.mu.Lock()
	cfg := d.cfg
	peers := make([]peerCopy, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		ps := d.peers[key.Public(p.PublicKey)]
		if ps == nil {
			continue
		}
		peers = append(peers, peerCopy{ps: *ps, connected: ps.conn != nil})
	}
	d.mu.Unlock()

	ts := d.tn.Stats()
	ifc := &cfg.Interface
	es := d.ep.Stats()
	st := &Status{
		Version: version,
		Now:     time.Now(),
		Started: started,
		Interface: InterfaceStatus{
			Name:               ifc.Name,
			PublicKey:          ifc.PrivateKey.Public().String(),
			Addresses:          ifc.Addresses,
			MTU:                ifc.MTU,
			Listen:             ifc.Listen,
			LocalAddr:          addrPort(d.ep.LocalAddr()),
			MetricsListen:      ifc.MetricsListen,
			Traffic:            trafficOf(ts.Total),
			Drops:              dropMap(ts.Total.Drops),
			ICMPSent:           ts.ICMPSent,
			ICMPRateLimited:    ts.ICMPLimited,
			TUNTooManySegments: ts.TooManySegments,
			TUNWriteErrors:     ts.TUNWriteErrors,
			UnreachableSends:   es.UnreachableDrops,
			Connections: ConnEvents{
				ZeroRTTAttempted:    es.ZeroRTTAttempted,
				ZeroRTTAccepted:     es.ZeroRTTAccepted,
				ZeroRTTRejected:     es.ZeroRTTRejected,
				EarlyAccepted:       es.EarlyAccepted,
				EarlyRefusedReplay:  es.EarlyRefusedReplay,
				EarlyRefusedRestart: es.EarlyRefusedRestart,
				EarlyRefusedOther:   es.EarlyRefusedOther,
				Redials:             es.Redials,
				RedialsAfterReset:   es.RedialsAfterReset,
				LastRedialOutage:    es.LastOutage,
			},
		},
		Peers: make([]PeerStatus, 0, len(peers)),
	}
	st.Interface.UDPRcvbufErrors, _ = quicconn.UDPRcvbufErrors()
	st.Interface.SocketReceiveBuffer, st.Interface.SocketSendBuffer, _ = d.ep.SocketBuffers()
	st.Interface.UDPSendCalls, st.Interface.UDPSendSegments = d.ep.UDPSendStats()
	for _, pc := range peers {
		ps := &pc.ps
		c := ts.Peers[key.Public(ps.cfg.PublicKey)]
		p := PeerStatus{
			Name:           ps.cfg.Name,
			PublicKey:      ps.cfg.PublicKey.String(),
			Endpoint:       ps.cfg.Endpoint,
			AllowedIPs:     ps.cfg.AllowedIPs,
			State:          StateIdle,
			ConnectedSince: ps.since,
			LastHandshake:  ps.handshake,
			LastRx:         c.LastRx,
			LastTx:         c.LastTx,
			Traffic:        trafficOf(c),
			Drops:          dropMap(c.Drops),
			Paths:          []PathStatus{},
		}
		switch {
		case pc.connected:
			p.State = StateConnected
		case ps.cfg.Endpoint != "":
			p.State = StateConnecting
		}
		if pc.connected {
			cs := ps.conn.Stats()
			p.Resumed = cs.Resumed
			p.HeartbeatRTT = cs.HeartbeatRTT
			p.ZeroRTT = ZeroRTT{Used: cs.Used0RTT, Rejected: cs.Rejected0RTT}
			p.Migrations, p.LastMigrationOutage = ps.conn.Migrations()
			paths := ps.conn.Paths() // mobility: active path first, then standbys
			p.Paths = append(p.Paths, PathStatus{
				Uplink:    paths[0].Uplink,
				Local:     addrPort(ps.conn.LocalAddr()),
				Remote:    addrPort(ps.conn.RemoteAddr()),
				Active:    true,
				Validated: true,
				RTT: RTT{
					Smoothed:      cs.SmoothedRTT,
					Min:           cs.MinRTT,
					Latest:        cs.LatestRTT,
					MeanDeviation: cs.MeanDeviation,
				},
				CongestionWindow: cs.CongestionWindow,
				DatagramLimit:    cs.DatagramLimit,
				BytesSent:        cs.BytesSent,
				PacketsSent:      cs.PacketsSent,
				BytesReceived:    cs.BytesReceived,
				PacketsReceived:  cs.PacketsReceived,
				BytesLost:        cs.BytesLost,
				PacketsLost:      cs.PacketsLost,
				QUICDrops: map[string]uint64{
					"receive_queue_full": cs.DatagramsDroppedQueueFull,
					"send_too_large":     cs.DatagramsDroppedTooLarge,
					"dos_prevention":     cs.PacketsDroppedDoS,
				},
				PTOCount:      cs.PTOCount,
				MaxPacketSize: cs.MaxPacketSize,
			})
			for _, sp := range paths[1:] {
				p.Paths = append(p.Paths, PathStatus{Uplink: sp.Uplink, Local: sp.Local, Remote: sp.Remote,
					Validated: sp.Validated, QUICDrops: map[string]uint64{}})
			}
		}
		st.Peers = append(st.Peers, p)
	}
	return st
}

// ops runs the daemon's operational interfaces: the control socket and,
// when configured, the metrics endpoint. Its methods are not safe for
// concurrent use; the daemon calls startOps once and close once.
type ops struct {
	log     *slog.Logger
	started time.Time
	ctl     *ctlServer     // nil when another daemon holds the socket
	metrics *metricsServer // nil without metrics_listen
}

// startOps starts the control socket and the metrics endpoint of d. d's
// tunnel, endpoint and config must be set.
func startOps(d *daemon) (*ops, error) {
	o := &ops{log: d.log, started: time.Now()}
	snap := func() *Status { return d.snapshot(o.started) }
	ifc := &d.cfg.Interface
	var err error
	o.ctl, err = listenCtl(socketPath(ifc.Name), snap, d.log.With("part", "ctl"))
	if err != nil {
		return nil, err
	}
	if ifc.MetricsListen != "" {
		o.metrics, err = listenMetrics(ifc.MetricsListen, snap, d.log.With("part", "metrics"))
		if err != nil {
			o.close()
			return nil, err
		}
	}
	return o, nil
}

// close stops both servers and removes the socket. Safe on a nil ops.
func (o *ops) close() {
	if o == nil {
		return
	}
	if o.metrics != nil {
		o.metrics.close()
	}
	if o.ctl != nil {
		o.ctl.close()
	}
}

// socketPath returns the control socket of interface iface.
func socketPath(iface string) string {
	if p := os.Getenv(socketEnv); p != "" {
		return p
	}
	return filepath.Join(ctlDir, iface+".sock")
}

// ctlServer answers requests on the control socket.
type ctlServer struct {
	path string
	log  *slog.Logger
	snap func() *Status
	ln   *net.UnixListener
	lock *os.File // flock'ed path+".lock"; held while serving
	sem  chan struct{}
	wg   sync.WaitGroup
}

// errCtlBusy means another live daemon holds the socket's lock.
var errCtlBusy = errors.New("control socket in use by another running daemon")

// listenCtl creates the control socket at path and serves it until close.
// The socket belongs to whoever holds an flock on path+".lock", so a
// socket left by a crashed daemon is replaced, but a live daemon's socket
// is not (two daemons with the same interface name in different network
// namespaces share /run/godwit): then listenCtl logs a warning and returns
// a nil server and no error, and `godwit show` cannot reach this daemon.
func listenCtl(path string, snap func() *Status, log *slog.Logger) (*ctlServer, error) {
	s, err := newCtlServer(path, snap, log)
	if errors.Is(err, errCtlBusy) {
		log.Warn("godwit show will not reach this daemon: its control socket is held by another one",
			"socket", path, "fix", "set "+socketEnv+" to another path")
		return nil, nil
	}
	return s, err
}

func newCtlServer(path string, snap func() *Status, log *slog.Logger) (_ *ctlServer, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if dir == ctlDir {
		// Only our own directory: an override may live in a shared one.
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	// We hold the lock, so a socket file here is a dead daemon's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: removing stale socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &ctlServer{path: path, log: log, snap: snap, ln: ln, lock: lock, sem: make(chan struct{}, maxCtlConns)}
	s.wg.Go(s.serve)
	log.Debug("control socket listening", "socket", path)
	return s, nil
}

// lockFile opens and flocks path without blocking. It returns errCtlBusy
// when another process holds the lock. It checks after locking that path
// still names the locked file, since a stopping daemon unlinks it.
func lockFile(path string) (*os.File, error) {
	for range 5 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errCtlBusy
			}
			return nil, fmt.Errorf("control socket: lock %s: %w", path, err)
		}
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return f, nil
		}
		f.Close() // unlinked by its previous owner after we opened it
	}
	return nil, fmt.Errorf("control socket: %s keeps changing", path)
}

func (s *ctlServer) serve() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("control socket accept", "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. EMFILE; do not spin
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			c.Close() // too many at once
			continue
		}
		s.wg.Go(func() {
			defer func() { <-s.sem }()
			s.handle(c)
		})
	}
}

// handle answers the one request on c and closes it.
func (s *ctlServer) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ctlTimeout))
	var req ctlRequest
	var resp ctlResponse
	if err := json.NewDecoder(io.LimitReader(c, maxRequest)).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("bad request: %v", err)
	} else {
		switch req.Cmd {
		case "status":
			resp.Status = s.snap()
		default:
			resp.Error = fmt.Sprintf("unknown command %q", req.Cmd)
		}
	}
	if err := json.NewEncoder(c).Encode(&resp); err != nil {
		s.log.Debug("control socket write", "err", err)
	}
}

// close stops serving, waits for the connections being answered, removes
// the socket and releases the lock.
func (s *ctlServer) close() {
	s.ln.Close() // unlinks the socket file
	s.wg.Wait()
	_ = os.Remove(s.path + ".lock") // while holding the lock: see lockFile
	s.lock.Close()
}

// queryStatus asks the daemon on the socket at path for its Status.
func queryStatus(ctx context.Context, path string) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, ctlTimeout)
	defer cancel()
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("permission denied on %s: run godwit show as root", path)
		case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("no godwit daemon on %s: is it running?", path)
		}
		return nil, err
	}
	defer c.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	if err := json.NewEncoder(c).Encode(ctlRequest{Cmd: "status"}); err != nil {
		return nil, fmt.Errorf("sending to %s: %w", path, err)
	}
	var resp ctlResponse
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("reading from %s: %w", path, err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("daemon: %s", resp.Error)
	}
	if resp.Status == nil {
		return nil, fmt.Errorf("reading from %s: empty answer", path)
	}
	return resp.Status, nil
}
