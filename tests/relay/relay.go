// SPDX-License-Identifier: MIT

// Package relay is a userspace UDP relay for tests: it sits between QUIC
// clients and a server and adds what the kernels of the test machines
// cannot (they have no sch_netem): a per-packet one-way delay, scripted
// drops, a switchable blackhole and the replay of a client's first flight.
// It is modelled on quic-go's integrationtests/tools/proxy.
//
// A [Relay] listens on one UDP socket. For every client address it sees,
// it opens one upstream socket to the target, so the server sees the
// relay's address and a distinct port per client, as behind a NAT.
//
//	client A ──▶ listen conn ──▶ [ToServer queue] ──▶ upstream A ──▶ target
//	client A ◀── listen conn ◀── [ToClient queue] ◀── upstream A ◀── target
//
// Goroutines: one reader on the listen socket, one reader per upstream
// socket, and one sender per direction that owns a priority queue keyed by
// release time (arrival + Delay). Packets leave in arrival order unless
// Delay returns a decreasing sequence. Each queue holds at most
// Config.MaxQueued packets; more are dropped and counted as overflow, so
// memory stays bounded however the callbacks behave.
//
// Packet numbers n given to Delay and Drop count per direction across all
// clients, starting at 1, in the order the readers received the packets.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// maxDatagram is the largest UDP payload the relay reads.
const maxDatagram = 1<<16 - 1

// Direction is the way a packet travels through the relay.
type Direction int

const (
	// ToServer is from a client to the target.
	ToServer Direction = iota
	// ToClient is from the target back to a client.
	ToClient
)

// String returns "to-server" or "to-client".
func (d Direction) String() string {
	switch d {
	case ToServer:
		return "to-server"
	case ToClient:
		return "to-client"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// Config configures a [Relay]. The zero value of every field except Target
// is a documented default. New copies the Config.
type Config struct {
	// Listen is the address New binds when it is given a nil conn, in the
	// namespace of the calling thread. It is ignored when New gets a conn
	// (for a socket inside a network namespace, make it with netlab's
	// NS.ListenUDP and pass it in).
	Listen netip.AddrPort
	// Target is the server's address. Required.
	Target netip.AddrPort
	// Delay returns the one-way delay of packet n in direction dir. Nil
	// means no delay. A constant gives a real RTT of twice the constant;
	// a decreasing sequence reorders. It is called from the reader
	// goroutines, ToServer and ToClient concurrently, so it must be safe
	// for concurrent use and must not block. Negative values count as 0.
	Delay func(dir Direction, n uint64) time.Duration
	// Drop reports whether to discard packet n in direction dir. Nil drops
	// nothing. It is called like Delay; it must not retain or modify pkt.
	Drop func(dir Direction, n uint64, pkt []byte) bool
	// Upstream makes the socket that carries the traffic of client to
	// Target, or of a replay (client is then the address whose datagram
	// was recorded first). It may return a socket connected to Target or
	// an unconnected one. The relay owns and closes the socket. Nil means
	// net.DialUDP to Target in the namespace of the calling goroutine's
	// thread, which is only right outside network namespaces: a relay in
	// a namespace needs an Upstream that makes its sockets there (for
	// example with netlab's NS.DialUDP).
	Upstream func(client netip.AddrPort) (*net.UDPConn, error)
	// MaxQueued caps the packets waiting for their release time, per
	// direction. Zero means 4096.
	MaxQueued int
	// MaxClients caps the client addresses (and so upstream sockets);
	// datagrams from further clients are dropped and counted as ToServer
	// overflow. Zero means 64.
	MaxClients int
	// Record is how many client-to-server datagrams, the first ones the
	// relay receives, it keeps for Replay. Zero means 32.
	Record int
	// Logger receives new clients (Info) and goroutine start and stop
	// (Debug). Nil discards.
	Logger *slog.Logger
}

// Stats are the relay's counters, see [Relay.Stats].
type Stats struct {
	// ToServer and ToClient count each direction.
	ToServer, ToClient DirStats
	// Replayed counts datagrams sent by Replay.
	Replayed uint64
	// ReplayReplies counts datagrams the target sent back to replay
	// sockets; the relay discards them.
	ReplayReplies uint64
	// Clients is the number of client addresses seen so far.
	Clients int
}

// DirStats count one direction of a [Relay].
type DirStats struct {
	// Packets and Bytes count datagrams received in this direction.
	Packets, Bytes uint64
	// Forwarded and ForwardedBytes count datagrams written out.
	Forwarded, ForwardedBytes uint64
	// Dropped counts datagrams discarded by Config.Drop.
	Dropped uint64
	// Blackholed counts datagrams discarded while the blackhole was on,
	// on arrival or at their release time.
	Blackholed uint64
	// Overflow counts datagrams discarded because the queue (or, ToServer,
	// the client table) was full.
	Overflow uint64
	// Errors counts failed writes.
	Errors uint64
}

// dirCounters is the atomic form of DirStats.
type dirCounters struct {
	n                                   atomic.Uint64 // packet numbers handed out
	packets, bytes, forwarded, fwdBytes atomic.Uint64
	dropped, blackholed, overflow, errs atomic.Uint64
}

func (d *dirCounters) snapshot() DirStats {
	return DirStats{
		Packets: d.packets.Load(), Bytes: d.bytes.Load(),
		Forwarded: d.forwarded.Load(), ForwardedBytes: d.fwdBytes.Load(),
		Dropped: d.dropped.Load(), Blackholed: d.blackholed.Load(),
		Overflow: d.overflow.Load(), Errors: d.errs.Load(),
	}
}

// client is one client address and its upstream socket.
type client struct {
	addr      netip.AddrPort
	up        *net.UDPConn
	connected bool // up is connected to the target: use Write, not WriteTo
}

// Relay is a running UDP relay. Create it with [New], then call
// [Relay.Run]. Its methods are safe for concurrent use.
type Relay struct {
	cfg    Config
	conn   *net.UDPConn
	log    *slog.Logger
	queues [2]*queue
	dirs   [2]dirCounters

	blackhole     atomic.Bool
	replayed      atomic.Uint64
	replayReplies atomic.Uint64
	running       atomic.Bool
	done          chan struct{} // closed when Run starts to stop
	wg            sync.WaitGroup

	// mu guards the following fields.
	mu       sync.Mutex
	stopped  bool
	clients  map[netip.AddrPort]*client
	recorded []recorded
	replays  []*net.UDPConn // replay sockets, closed when Run stops
}

// recorded is a client-to-server datagram kept for Replay.
type recorded struct {
	from netip.AddrPort
	pkt  []byte
}

// New makes a relay that receives on conn and forwards to cfg.Target.
// The relay owns conn from then on and closes it when Run returns (or
// leaves it open if Run is never called). With a nil conn, New binds
// cfg.Listen itself.
func New(conn *net.UDPConn, cfg Config) (*Relay, error) {
	if !cfg.Target.IsValid() {
		return nil, errors.New("relay: no target")
	}
	if cfg.MaxQueued < 0 || cfg.MaxClients < 0 || cfg.Record < 0 {
		return nil, errors.New("relay: negative limit")
	}
	if cfg.MaxQueued == 0 {
		cfg.MaxQueued = 4096
	}
	if cfg.MaxClients == 0 {
		cfg.MaxClients = 64
	}
	if cfg.Record == 0 {
		cfg.Record = 32
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Upstream == nil {
		target := net.UDPAddrFromAddrPort(cfg.Target)
		cfg.Upstream = func(netip.AddrPort) (*net.UDPConn, error) {
			return net.DialUDP("udp", nil, target)
		}
	}
	if conn == nil {
		if !cfg.Listen.IsValid() {
			return nil, errors.New("relay: neither a conn nor a listen address")
		}
		var err error
		conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(cfg.Listen))
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
	}
	r := &Relay{
		cfg:     cfg,
		conn:    conn,
		log:     cfg.Logger,
		done:    make(chan struct{}),
		clients: make(map[netip.AddrPort]*client),
	}
	for d := range r.queues {
		r.queues[d] = newQueue(cfg.MaxQueued)
	}
	return r, nil
}

// Addr returns the address the relay listens on.
func (r *Relay) Addr() netip.AddrPort {
	return r.conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// SetBlackhole turns the blackhole on or off. While it is on, the relay
// discards every datagram in both directions, also datagrams that arrived
// earlier and reach their release time while it is on.
func (r *Relay) SetBlackhole(on bool) {
	r.blackhole.Store(on)
	r.log.Info("relay: blackhole", "on", on)
}

// Stats returns a snapshot of the counters. It never blocks on traffic.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	n := len(r.clients)
	r.mu.Unlock()
	return Stats{
		ToServer:      r.dirs[ToServer].snapshot(),
		ToClient:      r.dirs[ToClient].snapshot(),
		Replayed:      r.replayed.Load(),
		ReplayReplies: r.replayReplies.Load(),
		Clients:       n,
	}
}

// Start runs [Relay.Run] on a goroutine of its own until stop is called.
// stop ends Run and returns its result, or an error when Run has not
// returned within `within` of it; call it once.
func (r *Relay) Start() (stop func(within time.Duration) error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	return func(within time.Duration) error {
		cancel()
		t := time.NewTimer(within)
		defer t.Stop()
		select {
		case err := <-errc:
			return err
		case <-t.C:
			return fmt.Errorf("relay: Run did not return within %v of its stop", within)
		}
	}
}

// Run relays until ctx is done, then closes every socket, waits for its
// goroutines and returns nil. It returns an error if the listen socket
// fails for another reason, or if Run was called before. It blocks.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("relay: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	r.wg.Add(3)
	go func() {
		defer r.wg.Done()
		errc <- r.readClients()
	}()
	go r.send(ctx, ToServer)
	go r.send(ctx, ToClient)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Shutdown order: refuse new clients and replays, close every socket
	// (which unblocks the readers), stop the senders, then wait.
	r.mu.Lock()
	r.stopped = true
	close(r.done)
	socks := []*net.UDPConn{r.conn}
	for _, c := range r.clients {
		socks = append(socks, c.up)
	}
	socks = append(socks, r.replays...)
	r.mu.Unlock()
	for _, s := range socks {
		s.Close()
	}
	cancel()
	r.wg.Wait()
	return err
}

// readClients reads datagrams from clients until the listen socket is
// closed. It returns nil when the relay stops and the read error otherwise.
func (r *Relay) readClients() error {
	r.log.Debug("relay: client reader started")
	defer r.log.Debug("relay: client reader stopped")
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if r.isStopped() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("relay: read from clients: %w", err)
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		pkt := buf[:n]
		r.record(from, pkt)
		c, err := r.client(from)
		if err != nil {
			r.dirs[ToServer].packets.Add(1)
			r.dirs[ToServer].bytes.Add(uint64(n))
			r.dirs[ToServer].overflow.Add(1)
			r.log.Debug("relay: no upstream for client", "client", from, "err", err)
			continue
		}
		r.accept(ToServer, c, pkt)
	}
}

// readServer reads the target's datagrams for client c until its upstream
// socket is closed.
func (r *Relay) readServer(c *client) {
	defer r.wg.Done()
	r.log.Debug("relay: upstream reader started", "client", c.addr)
	defer r.log.Debug("relay: upstream reader stopped", "client", c.addr)
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := c.up.ReadFromUDPAddrPort(buf)
		if err != nil {
			if r.isStopped() || errors.Is(err, net.ErrClosed) {
				return
			}
			// A connected socket reports the ICMP errors of earlier
			// writes here (ECONNREFUSED while the server restarts): the
			// socket is still good, so keep reading.
			r.log.Debug("relay: upstream read", "client", c.addr, "err", err)
			continue
		}
		if !c.connected && netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != r.cfg.Target {
			continue // not from the server: a NAT would not pass it either
		}
		r.accept(ToClient, c, buf[:n])
	}
}

// accept numbers, filters and queues one datagram; pkt is the reader's
// buffer and is copied before it is queued.
func (r *Relay) accept(dir Direction, c *client, pkt []byte) {
	d := &r.dirs[dir]
	d.packets.Add(1)
	d.bytes.Add(uint64(len(pkt)))
	n := d.n.Add(1)
	if r.blackhole.Load() {
		d.blackholed.Add(1)
		return
	}
	if r.cfg.Drop != nil && r.cfg.Drop(dir, n, pkt) {
		d.dropped.Add(1)
		return
	}
	var delay time.Duration
	if r.cfg.Delay != nil {
		delay = max(r.cfg.Delay(dir, n), 0)
	}
	if !r.queues[dir].push(time.Now().Add(delay), c, append([]byte(nil), pkt...)) {
		d.overflow.Add(1)
	}
}

// send writes the datagrams of direction dir at their release times until
// ctx is done. Datagrams still queued then are discarded.
func (r *Relay) send(ctx context.Context, dir Direction) {
	defer r.wg.Done()
	r.log.Debug("relay: sender started", "dir", dir)
	defer r.log.Debug("relay: sender stopped", "dir", dir)
	q := r.queues[dir]
	d := &r.dirs[dir]
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		it, wait, ok := q.pop(time.Now())
		if !ok {
			if wait > 0 {
				timer.Reset(wait)
			} else {
				timer.Reset(time.Hour)
			}
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
			case <-timer.C:
			}
			continue
		}
		if r.blackhole.Load() {
			d.blackholed.Add(1)
			continue
		}
		var err error
		switch {
		case dir == ToClient:
			_, err = r.conn.WriteToUDPAddrPort(it.pkt, it.c.addr)
		case it.c.connected:
			_, err = it.c.up.Write(it.pkt)
		default:
			_, err = it.c.up.WriteToUDPAddrPort(it.pkt, r.cfg.Target)
		}
		if err != nil {
			d.errs.Add(1)
			continue
		}
		d.forwarded.Add(1)
		d.fwdBytes.Add(uint64(len(it.pkt)))
	}
}

// client returns the client for addr, making its upstream socket and
// reader on first sight.
func (r *Relay) client(addr netip.AddrPort) (*client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.clients[addr]; c != nil {
		return c, nil
	}
	if r.stopped {
		return nil, errors.New("relay: stopped")
	}
	if len(r.clients) >= r.cfg.MaxClients {
		return nil, fmt.Errorf("relay: more than %d clients", r.cfg.MaxClients)
	}
	up, err := r.cfg.Upstream(addr)
	if err != nil {
		return nil, fmt.Errorf("relay: upstream for %v: %w", addr, err)
	}
	c := &client{addr: addr, up: up, connected: up.RemoteAddr() != nil}
	r.clients[addr] = c
	r.log.Info("relay: new client", "client", addr, "upstream", up.LocalAddr())
	r.wg.Add(1)
	go r.readServer(c)
	return c, nil
}

// record keeps a copy of a client datagram while fewer than Config.Record
// are kept.
func (r *Relay) record(from netip.AddrPort, pkt []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recorded) < r.cfg.Record {
		r.recorded = append(r.recorded, recorded{from: from, pkt: append([]byte(nil), pkt...)})
	}
}

func (r *Relay) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

// Replay re-sends the first `first` client-to-server datagrams the relay
// recorded (a client's first flight; at most Config.Record), `times`
// rounds back to back, once `after` has passed. It returns at once; the
// work happens in a goroutine that Run waits for, and nothing is sent if
// Run returns first. The snapshot of recorded datagrams is taken when
// `after` has passed, so Replay may be called before the client sends.
//
// Replayed datagrams bypass Delay, Drop and the blackhole and leave
// through one fresh upstream socket per Replay call (made by
// Config.Upstream for the address of the first recorded datagram), so the
// server sees them as an off-path attacker's copies from a new address,
// not as duplicates on the client's own path. Its replies are counted in
// Stats.ReplayReplies and discarded. Call Replay while Run is running or
// before it; after Run returned it does nothing.
func (r *Relay) Replay(first int, times int, after time.Duration) {
	if first <= 0 || times <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		r.log.Info("relay: replay after stop ignored")
		return
	}
	r.wg.Add(1)
	go r.replay(first, times, after)
}

func (r *Relay) replay(first, times int, after time.Duration) {
	defer r.wg.Done()
	t := time.NewTimer(after)
	defer t.Stop()
	select {
	case <-r.done:
		return
	case <-t.C:
	}
	r.mu.Lock()
	if r.stopped || len(r.recorded) == 0 {
		r.mu.Unlock()
		r.log.Info("relay: nothing to replay")
		return
	}
	pkts := r.recorded[:min(first, len(r.recorded))]
	up, err := r.cfg.Upstream(pkts[0].from)
	if err != nil {
		r.mu.Unlock()
		r.log.Info("relay: replay socket", "err", err)
		return
	}
	r.replays = append(r.replays, up)
	r.wg.Add(1)
	r.mu.Unlock()
	go r.readReplayReplies(up)

	connected := up.RemoteAddr() != nil
	r.log.Info("relay: replaying", "datagrams", len(pkts), "times", times, "from", up.LocalAddr())
	for range times {
		for _, p := range pkts {
			var err error
			if connected {
				_, err = up.Write(p.pkt)
			} else {
				_, err = up.WriteToUDPAddrPort(p.pkt, r.cfg.Target)
			}
			if err != nil {
				r.log.Info("relay: replay write", "err", err)
				return
			}
			r.replayed.Add(1)
		}
	}
}

// readReplayReplies counts what the target answers to a replay socket
// until the socket is closed.
func (r *Relay) readReplayReplies(up *net.UDPConn) {
	defer r.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		if _, _, err := up.ReadFromUDPAddrPort(buf); err != nil {
			return
		}
		r.replayReplies.Add(1)
	}
}
