// SPDX-License-Identifier: MIT

package main

// The server side of the control socket: `godwit run` builds a ctl.Status
// snapshot of itself and serves it on /run/godwit/<iface>.sock, one JSON
// request per connection. Package ctl holds the schema, the protocol and
// the client (`godwit show`, the tests, the benchmarks); the Prometheus
// collector (metrics.go) reads the same snapshot in-process.

import (
	"cmp"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/tunnel"
)

// dropMap turns tunnel drops into the "direction/reason" map of Status.
func dropMap(d tunnel.Drops) map[string]uint64 {
	m := make(map[string]uint64, 9)
	for k, v := range d.All() {
		m[k] = v
	}
	return m
}

func trafficOf(c tunnel.Counters) ctl.Traffic {
	return ctl.Traffic{RxPackets: c.RxPackets, RxBytes: c.RxBytes, TxPackets: c.TxPackets, TxBytes: c.TxBytes}
}

// snapshot builds the Status. It holds d.mu only to copy the peer states;
// the connection statistics are read after releasing it.
func (d *daemon) snapshot(started time.Time) *ctl.Status {
	type peerCopy struct {
		ps        peerState
		cur       *quicconn.Conn // nil when not connected
		set       bool           // a multipath peer with a connection set
		preferred bool           // a site that dials in prefers this hub
		routed    bool           // its allowed-IPs are routed into the TUN
	}
	d.mu.Lock()
	cfg := d.cfg
	peers := make([]peerCopy, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		ps := d.peers[p.PublicKey]
		if ps == nil {
			continue
		}
		peers = append(peers, peerCopy{ps: *ps, cur: ps.current(), set: len(ps.paths) > 0,
			preferred: ps.cfg.Endpoint == "" && ps.current() != nil && ps.prefersUs(), routed: d.routed(cfg, ps)})
	}
	d.mu.Unlock()

	ts := d.tn.Stats()
	ifc := &cfg.Interface
	es := d.ep.Stats()
	st := &ctl.Status{
		Version: version,
		Now:     time.Now(),
		Started: started,
		Interface: ctl.InterfaceStatus{
			Name:               ifc.Name,
			PublicKey:          ifc.PrivateKey.Public().String(),
			Addresses:          ifc.Addresses,
			MTU:                ifc.MTU,
			Listen:             ifc.Listen,
			LocalAddr:          quicconn.AddrPort(d.ep.LocalAddr()),
			ListenTCP:          tcpListenAddr(d.ep),
			MetricsListen:      ifc.MetricsListen,
			Routes:             ifc.Routes.String(),
			RouteProtocol:      ifc.RouteProtocol,
			HubFailovers:       d.tn.HubFailovers(),
			Traffic:            trafficOf(ts.Total),
			Drops:              dropMap(ts.Total.Drops),
			ICMPSent:           ts.ICMPSent,
			ICMPRateLimited:    ts.ICMPLimited,
			TUNTooManySegments: ts.TooManySegments,
			TUNWriteErrors:     ts.TUNWriteErrors,
			UnreachableSends:   es.UnreachableDrops,
			TCPSendDrops:       d.ep.TCPSendDrops(),
			Connections: ctl.ConnEvents{
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
				TCPFallbacks:        d.tcpFallbacks.Load(),
				UDPReturns:          d.udpReturns.Load(),
				HandshakesPending:   es.HandshakesPending,
				RetriesSent:         es.RetriesSent,
				RefusedKeys:         es.RefusedKeys,
				HandshakesAbandoned: es.HandshakesAbandoned,
				RefusedBusy:         es.RefusedBusy,
				ControlFloods:       es.ControlFloods,
			},
		},
		Peers: make([]ctl.PeerStatus, 0, len(peers)),
	}
	if ls, ok := d.ep.TCPListenerStats(); ok {
		st.Interface.TCPListener = &ctl.TCPListenerStatus{Clients: ls.Clients, Pending: ls.Pending,
			Accepted: ls.Accepted, RefusedKeys: ls.RefusedKeys, HandshakeTimeouts: ls.HandshakeTimeouts,
			HandshakeErrors: ls.HandshakeErrors, Evicted: ls.Evicted, BadFrames: ls.BadFrames,
			IdleCloses: ls.IdleCloses, SendDrops: ls.SendDrops, ReceiveWaits: ls.ReceiveWaits}
	}
	st.Interface.UDPRcvbufErrors, _ = quicconn.UDPRcvbufErrors()
	st.Interface.SocketReceiveBuffer, st.Interface.SocketSendBuffer, _ = d.ep.SocketBuffers()
	st.Interface.UDPSendCalls, st.Interface.UDPSendSegments = d.ep.UDPSendStats()
	carriers := d.tn.Carriers()
	for _, pc := range peers {
		ps := &pc.ps
		c := ts.Peers[ps.cfg.PublicKey]
		p := ctl.PeerStatus{
			Name:           ps.cfg.Name,
			PublicKey:      ps.cfg.PublicKey.String(),
			Endpoint:       ps.cfg.Endpoint,
			AllowedIPs:     ps.cfg.AllowedIPs,
			State:          ctl.StateIdle,
			ConnectedSince: ps.since,
			LastHandshake:  ps.handshake,
			LastRx:         c.LastRx,
			LastTx:         c.LastTx,
			Traffic:        trafficOf(c),
			Drops:          dropMap(c.Drops),
			Paths:          []ctl.PathStatus{},

			Preferred:       pc.preferred,
			RoutesInstalled: pc.routed,
		}
		if ps.cfg.Endpoint != "" {
			p.LastError, p.LastErrorAt = d.ep.LastDialError(ps.cfg.PublicKey)
		}
		if ps.cfg.HasPriority {
			prio := ps.cfg.Priority
			p.Priority = &prio
			p.Carries = carriers[ps.cfg.PublicKey]
			p.Carrying = len(p.Carries) > 0
		}
		switch {
		case pc.cur != nil:
			p.State = ctl.StateConnected
		case ps.cfg.Endpoint != "":
			p.State = ctl.StateConnecting
		}
		if pc.cur != nil {
			cs := pc.cur.Stats()
			if !cs.HandshakeDone.IsZero() {
				// A connection attached in 0-RTT completes its handshake
				// after it was attached: the latest handshake is its own.
				p.LastHandshake = cs.HandshakeDone
			}
			p.Resumed = cs.Resumed
			p.HeartbeatRTT = cs.HeartbeatRTT
			p.ZeroRTT = ctl.ZeroRTT{Used: cs.Used0RTT, Rejected: cs.Rejected0RTT}
			p.Migrations, p.LastMigrationOutage = pc.cur.Migrations()
		}
		if ps.fallback != nil {
			fs := ps.fallback.Status()
			p.Fallback = &ctl.FallbackStatus{OnTCP: fs.OnTCP, Reason: fs.Reason, Since: fs.Since, Fallbacks: fs.Fallbacks, Returns: fs.Returns}
		}
		switch {
		case pc.set:
			p.Paths = d.multipathStatus(ps.cfg.PublicKey, &p)
		case pc.cur != nil:
			paths := pc.cur.Paths() // mobility: active path first, then standbys
			p.Paths = append(p.Paths, connPath(pc.cur, paths[0].Uplink))
			for _, sp := range paths[1:] {
				p.Paths = append(p.Paths, ctl.PathStatus{Uplink: sp.Uplink, Local: sp.Local, Remote: sp.Remote,
					Validated: sp.Validated, QUICDrops: map[string]uint64{}, Transport: "udp"})
			}
		}
		st.Peers = append(st.Peers, p)
	}
	return st
}

// tcpListenAddr is the address of ep's TCP listener, or zero.
func tcpListenAddr(ep *quicconn.Endpoint) netip.AddrPort {
	if a := ep.TCPListenAddr(); a != nil {
		return quicconn.AddrPort(a)
	}
	return netip.AddrPort{}
}

// connPath is the status of c's active path, on uplink.
func connPath(c *quicconn.Conn, uplink string) ctl.PathStatus {
	cs := c.Stats()
	return ctl.PathStatus{
		Uplink:    uplink,
		Local:     quicconn.AddrPort(c.LocalAddr()),
		Remote:    quicconn.AddrPort(c.RemoteAddr()),
		Active:    true,
		Validated: true,
		RTT: ctl.RTT{
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
		Transport:     c.Transport(),
	}
}

// multipathStatus is the status of each connection of peer id's set, best
// first, and sets p.Multipath.
func (d *daemon) multipathStatus(id key.Public, p *ctl.PeerStatus) []ctl.PathStatus {
	tps := d.tn.PathStats(id)
	var total uint64
	for _, tp := range tps {
		total += tp.TxPackets - tp.DupSent
	}
	out := make([]ctl.PathStatus, 0, len(tps))
	for _, tp := range tps {
		c, ok := tp.Conn.(*quicconn.Conn)
		if !ok {
			continue
		}
		p.Multipath = tp.Mode.String()
		h := c.PathHealth()
		ps := connPath(c, c.Uplink())
		ps.Multipath = &ctl.MultipathStatus{
			Role: tp.Role, Health: h.State.String(), Loss: h.Loss,
			TxPackets: tp.TxPackets, RxPackets: tp.RxPackets,
			DupSent: tp.DupSent, DupDiscarded: tp.DupDiscarded, Sequenced: tp.Sequenced,
		}
		if total > 0 {
			ps.Multipath.Share = float64(tp.TxPackets-tp.DupSent) / float64(total)
		}
		out = append(out, ps)
	}
	return out
}

// reloadWait bounds how long `godwit reload` waits for the run loop to
// take and apply its request (within ctl.Timeout).
const reloadWait = 4 * time.Second

// requestReload hands a `godwit reload` to the run loop and returns its
// result.
func (d *daemon) requestReload() error {
	reply := make(chan error, 1)
	t := time.NewTimer(reloadWait)
	defer t.Stop()
	select {
	case d.reloads <- reply:
	case <-d.ctx.Done():
		return errors.New("the daemon is stopping")
	case <-t.C:
		return errors.New("the daemon is busy; try again")
	}
	select {
	case err := <-reply:
		return err
	case <-t.C:
		return errors.New("the reload did not finish in time; see the log")
	}
}

// ops runs the daemon's operational interfaces: the control socket and,
// when configured, the metrics endpoint. Its methods are not safe for
// concurrent use; the daemon calls startOps once and close once.
type ops struct {
	log     *slog.Logger
	started time.Time
	ctl     *ctl.Server    // nil when another daemon holds the socket
	metrics *metricsServer // nil without metrics_listen
}

// startOps starts the control socket and the metrics endpoint of d. d's
// tunnel, endpoint and config must be set.
func startOps(d *daemon) (*ops, error) {
	o := &ops{log: d.log, started: time.Now()}
	snap := func() *ctl.Status { return d.snapshot(o.started) }
	ifc := &d.cfg.Interface
	var err error
	o.ctl, err = listenCtl(socketPath(ifc.Name), snap, d.log.With("part", "ctl"))
	if err != nil {
		return nil, err
	}
	if o.ctl != nil {
		o.ctl.HandleReload(d.requestReload)
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
		o.ctl.Close()
	}
}

// socketOverride returns the control socket path the environment
// variable GODWIT_SOCKET (ctl.SocketEnv) sets for `godwit run` and
// `godwit show`, or "".
func socketOverride() string { return os.Getenv(ctl.SocketEnv) }

// socketPath returns the control socket of interface iface.
func socketPath(iface string) string {
	return cmp.Or(socketOverride(), ctl.SocketPath(iface))
}

// listenCtl is ctl.Listen, but a socket held by another live daemon is
// only a warning: this daemon runs on without one (nil, nil), and
// `godwit show` cannot reach it.
func listenCtl(path string, snap func() *ctl.Status, log *slog.Logger) (*ctl.Server, error) {
	s, err := ctl.Listen(path, snap, log)
	if errors.Is(err, ctl.ErrBusy) {
		log.Warn("godwit show will not reach this daemon: its control socket is held by another one",
			"socket", path, "fix", "set "+ctl.SocketEnv+" to another path")
		return nil, nil
	}
	return s, err
}
