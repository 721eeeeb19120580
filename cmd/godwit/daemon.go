// SPDX-License-Identifier: MIT

package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn"
	"github.com/godwit-vpn/godwit/quicconn/fallback"
	"github.com/godwit-vpn/godwit/quicconn/mobility"
	"github.com/godwit-vpn/godwit/routing"
	"github.com/godwit-vpn/godwit/tun"
	"github.com/godwit-vpn/godwit/tunnel"
)

// daemon wires the parts together: the TUN device, the host routes, the
// tunnel engine and the QUIC endpoint. It holds no packet logic itself.
type daemon struct {
	log *slog.Logger
	dev tun.Device
	rm  *routing.Manager
	tn  *tunnel.Tunnel
	ep  *quicconn.Endpoint
	ops *ops             // godwit show socket and metrics (ctl.go); nil until started
	mob *mobility.Policy // uplinks and migration; nil without uplinks

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // accept loop, dial loops, conn watchers

	keylog *os.File // TLS key log, or nil

	tnCancel context.CancelFunc
	tnDone   chan struct{}
	failed   chan struct{} // closed when the data path died; fatalErr says why
	fatalErr error
	changed  chan struct{} // signalled (cap 1) when a peer connects or disconnects
	// stopping is set by stop: a clean stop, which lifts the kill switch.
	stopping atomic.Bool
	// ifc is the [interface] the daemon started with; a reload never
	// changes it (interfaceChanged), so it is read without mu.
	ifc config.Interface
	// routesDirty (cap 1) wakes the route loop of a routes = "connected"
	// node (hubs.go).
	routesDirty chan struct{}
	// reloads carries `godwit reload` requests to the run loop, which
	// answers each on its channel (cmdRun).
	reloads chan chan error
	// prefDirty (cap 1) wakes the preference loop of a site with ranked
	// hubs (hubs.go).
	prefDirty chan struct{}

	// authorized maps the keys that may connect to their peer names. It is
	// read during every TLS handshake, so it is swapped, never mutated.
	authorized atomic.Pointer[map[key.Public]string]

	// tcpFallbacks and udpReturns count the TCP fallback policies' moves
	// to TCP and back to UDP, over all peers.
	tcpFallbacks, udpReturns atomic.Uint64

	mu sync.Mutex
	// mu guards the following fields.
	cfg   *config.Config
	peers map[key.Public]*peerState
}

// The tunnel finds the fast receive path of a connection by type
// assertion: these make a change in quicconn that would lose it a compile
// error instead of a silent fall-back to the slow path.
var (
	_ tunnel.DatagramConn          = (*quicconn.Conn)(nil)
	_ tunnel.DatagramReleaser      = (*quicconn.Conn)(nil)
	_ tunnel.DatagramHandlerSetter = (*quicconn.Conn)(nil)
	_ tunnel.DatagramOwnedSender   = (*quicconn.Conn)(nil)
)

// peerState is the daemon's view of one configured peer.
type peerState struct {
	cfg      config.Peer
	conn     *quicconn.Conn     // current connection, or nil
	stopDial context.CancelFunc // non-nil while a dial loop runs
	// paths is a multipath peer's connection set (multipath.go), each with
	// when it joined; instance is the peer daemon's that the set belongs to.
	paths    map[*quicconn.Conn]time.Time
	instance uint64
	pinned   bool // dialed with one connection per uplink (stopDial ends that)
	// yielded: both sides have an endpoint and the peer dials (mutual.go):
	// this node's dial loop is stopped while the peer's connection is up.
	yielded bool
	// fallback is the TCP fallback policy of a peer with endpoint_tcp
	// (fallback.go), or nil; stopDial ends it.
	fallback *fallback.Fallback
	// For godwit show (ctl.go): when the current or last conn was
	// attached, and when its handshake completed.
	since, handshake time.Time
}

func startDaemon(ctx context.Context, cfg *config.Config, log *slog.Logger) (_ *daemon, err error) {
	ifc := &cfg.Interface
	// A TUN dies with the process that made it, so a link with our name
	// belongs to a live instance or to another tool: refuse, as wg-quick
	// does, instead of deleting it (and its owner's rules and routes).
	if _, err := net.InterfaceByName(ifc.Name); err == nil {
		return nil, fmt.Errorf("%w: interface %s already exists in this network namespace (another godwit, or another tool, owns it); stop it, or set another name in [interface]", errInterfaceInUse, ifc.Name)
	}
	// Always clean up first: a previous run killed with -9 may have left
	// policy rules behind (the TUN itself dies with its process).
	if err := routing.CleanUp(ifc.Name, ifc.Table, ifc.FwMark, 0); err != nil {
		log.Warn("cleaning up leftovers of an earlier run", "err", err)
	}
	// First of all the firewall: with a kill switch nothing may leave in
	// clear while the tunnel comes up (routing/firewall.go).
	if err := routing.SetFirewall(firewallConfig(ifc)); err != nil {
		if ifc.KillSwitch {
			return nil, fmt.Errorf("kill switch: %w", err)
		}
		log.Warn("no firewall rule against packets for the tunnel's addresses from other interfaces (CVE-2019-14899)", "err", err)
	}
	d := &daemon{
		log:     log,
		cfg:     cfg,
		ifc:     cfg.Interface,
		peers:   make(map[key.Public]*peerState),
		failed:  make(chan struct{}),
		changed: make(chan struct{}, 1),
		tnDone:  make(chan struct{}),

		routesDirty: make(chan struct{}, 1),
		reloads:     make(chan chan error),
		prefDirty:   make(chan struct{}, 1),
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			d.teardown()
		}
	}()

	if d.dev, err = tun.Create(ifc.Name, ifc.MTU); err != nil {
		return nil, err
	}
	d.dev = wedgeDataPath(d.dev, log) // test hook, see watchdog.go; d.dev itself without it
	if d.rm, err = routing.New(routing.Options{Logger: log.With("part", "routing")}); err != nil {
		return nil, err
	}
	d.mu.Lock()
	rc := d.routingConfig(cfg) // no peer is connected yet
	d.mu.Unlock()
	if err = d.rm.Set(rc); err != nil {
		return nil, err
	}
	d.tn, err = tunnel.New(d.dev, tunnel.Config{
		Logger:          log.With("part", "tunnel"),
		Addresses:       ifc.Addresses,
		MTU:             ifc.MTU,
		HoldDown:        ifc.HoldDown,
		CarryingChanged: d.carryingChanged,
	})
	if err != nil {
		return nil, err
	}
	if err = d.tn.SetPeers(tunnelPeers(cfg)); err != nil {
		return nil, err
	}
	d.setAuthorized(cfg)

	host, _ := os.Hostname()
	qcfg := quicconn.Config{
		PrivateKey: ifc.PrivateKey.Ed25519(),
		NodeName:   host,
		Listen:     ifc.Listen,
		ListenTCP:  ifc.ListenTCP,
		FwMark:     ifc.FwMark,
		Authorize:  d.authorize,
		PeerLabel:  d.peerName,
		QlogDir:    cmp.Or(ifc.QlogDir, os.Getenv("QLOGDIR")),
		StateDir:   ifc.StateDir, // reset and ticket keys, session tickets: 0-RTT and stateless resets across restarts
		Logger:     log.With("part", "quic"),
		KeepAlive:  ifc.KeepAlive,
		// Full-size inner packets fit from the first packet on, with no ICMP
		// "too big" while path MTU discovery probes (docs/PERFORMANCE.md).
		InitialPacketSize: quicconn.InitialPacketSizeFor(ifc.MTU),
		// Announce multipath (sequenced datagrams, connection sets) on
		// every connection, and each dialed peer's mode.
		Multipath:     true,
		MultipathMode: d.announcedMode,
		// Tell each hub whether this site carries its traffic through
		// it, and hear a hub that shuts down (hubs.go).
		Preference:        d.preferenceFor,
		PreferenceChanged: d.preferenceChanged,
		KeepAliveFor:      d.keepAliveFor,
	}
	if rmax, hs, err := redialFromEnv(); err == nil && rmax > 0 { // test hook, see testhooks.go; cmdRun refused a bad one
		qcfg.RedialMax, qcfg.HandshakeTimeout = rmax, hs
		log.Warn("debug: dial loops retry at least every "+rmax.String()+" with a "+hs.String()+" handshake timeout (test hook)", "env", envRedialMax)
	}
	if limit := quicconn.MaxInitialPacketSize - quicconn.DatagramOverhead; ifc.MTU > limit {
		log.Warn("mtu is larger than the largest datagram a 1500-byte path carries; larger inner packets get ICMP too big",
			"mtu", ifc.MTU, "datagram_limit", limit)
	}
	if qcfg.QlogDir != "" {
		log.Info("writing a qlog file per QUIC connection", "dir", qcfg.QlogDir)
	}
	if path := cmp.Or(ifc.KeylogFile, os.Getenv("SSLKEYLOGFILE")); path != "" {
		f, err := openKeylog(path)
		if err != nil {
			return nil, err
		}
		d.keylog = f
		qcfg.KeyLogWriter = f
		log.Warn("WRITING TLS SECRETS: anyone who can read the key log file can decrypt this node's tunnel traffic; use it only for debugging",
			"file", path)
	}
	if d.ep, err = quicconn.NewEndpoint(qcfg); err != nil {
		return nil, err
	}
	if rcv, snd, err := d.ep.SocketBuffers(); err == nil {
		if advice := quicconn.BufferAdvice(rcv, snd); advice != "" {
			log.Warn("UDP socket buffers are small: expect drops under load", "fix", advice)
		}
	}

	if d.ops, err = startOps(d); err != nil { // godwit show, metrics (ctl.go)
		return nil, err
	}

	tctx, tcancel := context.WithCancel(context.Background())
	d.tnCancel = tcancel
	go func() {
		defer close(d.tnDone)
		if err := d.tn.Run(tctx); err != nil {
			d.fatalErr = err
			close(d.failed)
		}
	}()

	if ifc.Uplinks != nil || ifc.UplinksAny {
		d.startMobility(cfg)
	}
	if ifc.Listen != "" {
		d.wg.Go(d.acceptLoop)
	}
	d.wg.Go(d.routeLoop)
	d.wg.Go(d.preferenceLoop)
	d.mu.Lock()
	for _, p := range cfg.Peers {
		ps := &peerState{cfg: p}
		d.peers[p.PublicKey] = ps
		d.startDialLocked(ps)
	}
	d.mu.Unlock()

	if err := runHooks(d.ctx, log, "post_up", ifc.PostUp, ifc.Name); err != nil {
		return nil, err
	}
	log.Info("godwit running", "interface", ifc.Name, "addresses", fmt.Sprint(ifc.Addresses),
		"listen", ifc.Listen, "listen_tcp", ifc.ListenTCP, "local", d.ep.LocalAddr(), "peers", len(cfg.Peers), "version", version)
	if hint := forwardingHint(cfg); hint != "" {
		// A hub forwards between its sites and their networks; a site
		// forwards only if hosts behind it use the tunnel, which it cannot
		// tell (the hub's allowed_ips for it say so): a note, not a warning.
		if ifc.Listen != "" {
			log.Warn("IP forwarding is off, so traffic to and from other hosts behind this node will not pass", "fix", hint)
		} else {
			log.Info("IP forwarding is off: fine for this host's own traffic; hosts behind it need it", "fix", hint)
		}
	}
	return d, nil
}

// mobilityStartWait bounds how long start-up waits for the first view of
// the uplinks before the first dial.
const mobilityStartWait = 2 * time.Second

// startMobility starts the uplink policy of a site with uplinks: the
// monitor feeds it the usable uplinks, the Endpoint asks it where to dial
// and tells it of silent paths and migrations. It waits, at most
// mobilityStartWait, until the first view of the uplinks is applied, so
// that the first dial already uses the best one.
func (d *daemon) startMobility(cfg *config.Config) {
	ifc := &cfg.Interface
	log := d.log.With("part", "mobility")
	d.mob = mobility.New(mobility.Config{Endpoint: d.ep, Logger: log, Changed: func() {
		d.notifyChanged()
		d.pathsChanged()
	}})
	d.ep.SetMobility(d.mob.Hooks())
	sel := routing.UplinkSelection{Names: ifc.Uplinks, Any: ifc.UplinksAny, Exclude: []string{ifc.Name}}
	d.wg.Go(func() { routing.WatchUplinks(d.ctx, routing.Options{Logger: log}, sel, d.mob.SetUplinks) })
	if !d.mob.WaitReady(d.ctx, mobilityStartWait) && d.ctx.Err() == nil {
		log.Warn("no view of the uplinks yet; dialing on the wildcard socket")
	}
}

func tunnelPeers(cfg *config.Config) []tunnel.PeerConfig {
	peers := make([]tunnel.PeerConfig, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		pc := tunnel.PeerConfig{ID: p.PublicKey, Name: p.Name, AllowedIPs: p.AllowedIPs}
		if p.HasPriority {
			pc.Priority = p.Priority
		}
		peers = append(peers, pc)
	}
	return peers
}

func (d *daemon) setAuthorized(cfg *config.Config) {
	m := make(map[key.Public]string, len(cfg.Peers))
	for _, p := range cfg.Peers {
		m[p.PublicKey] = p.Name
	}
	d.authorized.Store(&m)
}

// peerName is the configured name of the peer with key, for qlog files.
func (d *daemon) peerName(key key.Public) string {
	return (*d.authorized.Load())[key]
}

// authorize is called by quicconn during every handshake, resumed ones too.
func (d *daemon) authorize(key key.Public) bool {
	_, ok := (*d.authorized.Load())[key]
	return ok
}

func (d *daemon) acceptLoop() {
	for {
		c, err := d.ep.Accept(d.ctx)
		if err != nil {
			if d.ctx.Err() == nil {
				d.log.Error("accepting connections stopped", "err", err)
			}
			return
		}
		d.accepted(c)
	}
}

// startDialLocked starts dialing a peer that has an endpoint: one
// connection per usable uplink for a multipath peer, else one connection.
func (d *daemon) startDialLocked(ps *peerState) {
	if ps.cfg.Endpoint == "" {
		return
	}
	if ps.cfg.EndpointTCP != "" {
		d.startFallbackDialLocked(ps)
		return
	}
	if ps.cfg.HasPriority && d.mob == nil {
		// One of a site's ranked hubs, without uplinks: one connection,
		// but in a set, so that its health monitor tells the tunnel
		// when the hub goes silent (hubs.go).
		ctx, cancel := context.WithCancel(d.ctx)
		endpoint, id := ps.cfg.Endpoint, ps.cfg.PublicKey
		d.wg.Go(func() { d.ep.DialLoopOn(ctx, "", endpoint, id, d.attachPath) })
		ps.stopDial = cancel
		ps.pinned = true
		return
	}
	if d.multipathSite(&ps.cfg) {
		id := ps.cfg.PublicKey
		d.mob.AddMultipathPeer(id, ps.cfg.Name, ps.cfg.Endpoint, d.attachPath)
		ps.stopDial = func() { d.mob.RemoveMultipathPeer(id) }
		ps.pinned = true
		return
	}
	d.startLegacyDialLocked(ps)
}

// stopDialLocked stops dialing ps, if it is dialed.
func (ps *peerState) stopDialLocked() {
	if ps.stopDial != nil {
		ps.stopDial()
		ps.stopDial = nil
	}
	ps.pinned = false
	ps.fallback = nil
}

// startLegacyDialLocked starts the dial loop of the one connection to ps.
func (d *daemon) startLegacyDialLocked(ps *peerState) {
	ctx, cancel := context.WithCancel(d.ctx)
	ps.stopDial = cancel
	endpoint, key := ps.cfg.Endpoint, ps.cfg.PublicKey
	d.wg.Go(func() { d.ep.DialLoop(ctx, endpoint, key, d.attach) })
}

// attach makes c its peer's connection. The newest connection wins: a peer
// that restarted or moved dials again while its old connection may not
// have timed out yet. attach runs on the accept loop or a dial loop and
// does not wait for the network: the replaced connection is closed on a
// goroutine of its own.
func (d *daemon) attach(c *quicconn.Conn) {
	id := c.PeerKey()
	d.mu.Lock()
	ps := d.peers[id]
	if ps == nil || d.ctx.Err() != nil {
		d.mu.Unlock()
		_ = c.Close("peer not configured")
		return
	}
	// The tunnel's connection and ps.conn change together under d.mu, so
	// that two attaches for one peer (a redial racing an incoming
	// connection) cannot leave the tunnel on the one ps.conn replaced.
	if err := d.tn.Attach(id, c); err != nil {
		name := ps.cfg.Name
		d.mu.Unlock()
		d.log.Error("attaching connection", "peer", name, "err", err)
		_ = c.Close("internal error")
		return
	}
	old := ps.conn
	ps.conn = c
	ps.since = time.Now()                            // godwit show
	if hs := c.Stats().HandshakeDone; !hs.IsZero() { // a 0-RTT conn's completes later (snapshot)
		ps.handshake = hs
	}
	name := ps.cfg.Name
	d.mu.Unlock()

	if old != nil {
		// Close waits up to half a second for the peer's answer: not on
		// the accept loop.
		d.wg.Go(func() { _ = old.Close("replaced by a newer connection") })
	}
	// A connection handed out in 0-RTT carries datagrams at once, but the
	// peer is connected only once the hello exchange completed: until
	// then the handshake may still be refused (a revoked key with an
	// old ticket), and neither the log nor systemd's READY and STATUS
	// (status counts only such connections) may say "connected".
	connected := func() {
		d.log.Info("peer connected", "peer", name, "remote", c.RemoteAddr(), "local", c.LocalAddr(), "uplink", c.Uplink(), "transport", c.Transport())
	}
	early := !helloDone(c)
	if !early {
		connected()
	} else {
		d.wg.Go(func() {
			select {
			case <-c.HelloDone():
				connected()
				d.notifyChanged()
			case <-c.Done():
			}
		})
	}
	d.notifyChanged()
	if d.mob != nil && ps.cfg.Endpoint != "" {
		d.mob.Add(c, name) // probes its standby paths; only a dialer can move
	}
	d.wg.Go(func() {
		<-c.Done()
		d.mu.Lock()
		if ps.conn == c {
			ps.conn = nil
		}
		d.mu.Unlock()
		d.tn.Detach(id, c)
		if d.mob != nil {
			d.mob.Remove(c)
		}
		if early && !helloDone(c) {
			d.log.Debug("0-RTT connection ended before its hello exchange", "peer", name, "reason", c.Err())
		} else {
			d.log.Info("peer disconnected", "peer", name, "reason", c.Err())
		}
		d.notifyChanged()
	})
}

func (d *daemon) notifyChanged() {
	d.routesChanged()
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// dials reports whether this node dials any peer (a site).
func (d *daemon) dials() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ps := range d.peers {
		if ps.cfg.Endpoint != "" {
			return true
		}
	}
	return false
}

// status is the one-line state for systemd's STATUS=.
func (d *daemon) status() (line string, connected int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ps := range d.peers {
		if ps.connected() {
			connected++
		}
	}
	line = fmt.Sprintf("%d/%d peers connected", connected, len(d.peers))
	if d.mob != nil {
		if m := d.mob.Status(); m != "" {
			line += "; " + m // "migrated <peer> to <uplink>"
		}
	}
	return line, connected
}

// reload re-reads the config file on SIGHUP. Only peers may change; peers
// whose config did not change keep their connections. A bad file keeps the
// old config running; the error says why, for systemd's STATUS=. When only
// the routes fail, the new config runs and the error wraps
// errRoutesIncomplete.
func (d *daemon) reload(path string) error {
	cfg, err := config.Load(path)
	if err == nil {
		err = d.apply(cfg)
	}
	switch {
	case errors.Is(err, errRoutesIncomplete):
		d.log.Error("reloaded, but not every address or route could be set", "err", err)
	case err != nil:
		d.log.Error("reload failed, keeping the running config", "err", err)
		return err
	default:
		d.log.Info("reloaded", "peers", len(cfg.Peers))
	}
	logLevel.Set(cfg.Interface.LogLevel)
	return err
}

// errRoutesIncomplete marks a reload that took effect although the host's
// addresses and routes could not all be set.
var errRoutesIncomplete = errors.New("reloaded, but the routes could not all be set")

// apply makes cfg the running config. It changes nothing when the
// [interface] changed or the tunnel rejects the peers; an error wrapping
// errRoutesIncomplete means cfg is running but routing.Set failed in part.
// It closes the connections of removed peers on goroutines of their own,
// not under d.mu: Close waits for the peer's answer.
func (d *daemon) apply(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := interfaceChanged(&d.cfg.Interface, &cfg.Interface); err != nil {
		return err
	}
	if err := d.tn.SetPeers(tunnelPeers(cfg)); err != nil {
		return err
	}
	d.setAuthorized(cfg)
	var routeErr error
	if err := d.rm.Set(d.routingConfig(cfg)); err != nil {
		routeErr = fmt.Errorf("%w: %w", errRoutesIncomplete, err)
	}
	want := make(map[key.Public]config.Peer, len(cfg.Peers))
	for _, p := range cfg.Peers {
		want[p.PublicKey] = p
	}
	for _, id := range slices.Collect(maps.Keys(d.peers)) {
		ps := d.peers[id]
		if _, ok := want[id]; ok {
			continue
		}
		ps.stopDialLocked()
		for c := range ps.allConns() {
			d.wg.Go(func() { _ = c.Close("peer removed from config") })
		}
		delete(d.peers, id)
		d.log.Info("peer removed", "peer", ps.cfg.Name)
	}
	for id, p := range want {
		ps := d.peers[id]
		if ps == nil {
			ps = &peerState{cfg: p}
			d.peers[id] = ps
			d.startDialLocked(ps)
			d.log.Info("peer added", "peer", p.Name)
			continue
		}
		redial := ps.cfg.Endpoint != p.Endpoint || ps.cfg.EndpointTCP != p.EndpointTCP || ps.cfg.TCPProxy != p.TCPProxy || ps.cfg.HasPriority != p.HasPriority ||
			multipathChanged(&ps.cfg, &p)
		ps.cfg = p
		if redial {
			ps.stopDialLocked()
			if !ps.yielded { // else it starts when the peer's connection ends (mutual.go)
				d.startDialLocked(ps)
			}
		}
	}
	d.cfg = cfg
	return routeErr
}

// stop shuts down in the order of STYLE.md 6.2 rule 9: stop dialing and
// accepting, close the QUIC connections with a reason (which unblocks the
// receivers), stop the engine and close the TUN (which unblocks its
// reader), then remove what was added to the host.
//
// A shutdown that does not complete within stopTimeout (systemd and the
// benchmarks expect a stop within 2 s of SIGTERM) is abandoned: the
// goroutines still running are written to stderr, the host's routes and
// rules are removed as a start-up would, and stop returns an exit status
// of 1, so that the process still ends.
// firewallConfig is the nftables table of the [interface] ifc.
func firewallConfig(ifc *config.Interface) *routing.FirewallConfig {
	return &routing.FirewallConfig{Interface: ifc.Name, Addrs: ifc.Addresses, KillSwitch: ifc.KillSwitch, FwMark: ifc.FwMark}
}

func (d *daemon) stop() error {
	d.stopping.Store(true) // a clean stop lifts the kill switch (teardown)
	// [interface] never changes on reload: read without d.mu, which a
	// stuck goroutine may hold (see below).
	hookErr := runHooks(context.Background(), d.log, "pre_down", d.ifc.PreDown, d.ifc.Name)
	done := make(chan error, 1)
	go func() {
		d.leave() // sites with another hub move first (hubs.go)
		done <- errors.Join(hookErr, d.teardown())
	}()
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	var err error
	select {
	case err = <-done:
	case <-t.C:
		d.log.Error("shutdown stuck; exiting anyway; goroutines follow", "waited", stopTimeout)
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		if !d.mu.TryLock() { // the stuck goroutine may hold it
			d.log.Error("not cleaning up after a stuck shutdown: the daemon lock is held; the next start removes what is left")
			return exitError{code: 1}
		}
		ifc := d.cfg.Interface // [interface] never changes on reload
		d.mu.Unlock()
		if err := routing.CleanUp(ifc.Name, ifc.Table, ifc.FwMark, 0); err != nil {
			d.log.Error("cleaning up after a stuck shutdown", "err", err)
		}
		if err := routing.RemoveFirewall(ifc.Name); err != nil {
			d.log.Error("cleaning up after a stuck shutdown", "err", err)
		}
		return exitError{code: 1}
	}
	if err != nil {
		d.log.Error("shutdown", "err", err)
		return exitError{code: 1}
	}
	d.log.Info("stopped")
	return nil
}

// errInterfaceInUse is why a start was refused: the TUN's name is taken.
var errInterfaceInUse = errors.New("interface in use")

// stopTimeout bounds stop: SIGTERM must end the process within 2 s.
const stopTimeout = 1500 * time.Millisecond

func (d *daemon) teardown() error {
	d.cancel()
	d.ops.close() // godwit show, metrics (ctl.go)
	var errs []error
	if d.ep != nil {
		if err := d.ep.Close(); err != nil {
			errs = append(errs, fmt.Errorf("quic: %w", err))
		}
	}
	d.wg.Wait()
	if d.mob != nil {
		d.mob.Close()
	}
	if d.tnCancel != nil {
		d.tnCancel()
	}
	if d.dev != nil {
		_ = d.dev.Close()
	}
	if d.tnCancel != nil {
		<-d.tnDone
	}
	if d.rm != nil {
		if err := d.rm.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	// The kill switch stays while the daemon is down for any other reason
	// than a clean stop (a failed start, which systemd restarts); the rest
	// of the table only matters while the TUN exists.
	if d.stopping.Load() || !d.ifc.KillSwitch {
		if err := routing.RemoveFirewall(d.ifc.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if d.keylog != nil {
		_ = d.keylog.Close()
	}
	return errors.Join(errs...)
}
