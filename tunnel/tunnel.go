// SPDX-License-Identifier: MIT

package tunnel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tun"
)

// DatagramConn is the side of a QUIC connection the tunnel uses: unreliable
// datagrams, one IP packet each. A quicconn.Conn satisfies it. The
// tunnel never closes a DatagramConn: its owner does.
//
// The dynamic type must be comparable (a pointer, in practice): the tunnel
// uses conns as map keys.
type DatagramConn interface {
	// SendDatagram sends one datagram; it copies b (the caller may reuse b
	// once it returns) and may block for a long time (congestion).
	// When b is larger than the connection's current limit it returns an
	// error e for which errors.As(err, &x) with
	// x interface{ DatagramLimit() int } succeeds; the limit is the live
	// maximum payload.
	SendDatagram(b []byte) error
	// ReceiveDatagram blocks for the next datagram; the caller owns the
	// returned slice. It returns an error once the connection is dead, and
	// ctx's error when ctx is done.
	ReceiveDatagram(ctx context.Context) ([]byte, error)
}

// DatagramReleaser is what a DatagramConn may implement to take back a
// slice ReceiveDatagram returned (or a datagram handler was given) once
// the tunnel has copied it out: the next datagram then reuses the buffer.
// *quicconn.Conn implements it; the daemon asserts so at compile time.
type DatagramReleaser interface{ ReleaseDatagram(b []byte) }

// DatagramHandlerSetter is what a DatagramConn may implement to hand each
// received datagram to f on its own goroutine instead of ReceiveDatagram;
// the tunnel then takes the fast receive path. f must not block and owns
// its argument. The tunnel's f checks the packet and queues it to the TUN
// writer, which passes it to ReleaseDatagram (when the conn has it) once
// written; when that queue is full f waits up to inboundWait, then drops.
// *quicconn.Conn implements it; the daemon asserts so at compile time.
type DatagramHandlerSetter interface{ SetDatagramHandler(f func(b []byte)) }

// DatagramOwnedSender is what a DatagramConn may implement to send a
// datagram without copying it: b is the conn's until it calls
// done.DatagramSent() (from any goroutine); on an error nothing was sent
// and the caller keeps b; a datagram the conn drops unsent may never be
// handed back. *quicconn.Conn implements it.
type DatagramOwnedSender interface {
	SendDatagramOwned(b []byte, done interface{ DatagramSent() }) error
}

// datagramLimiter is what a "datagram too large" error implements.
type datagramLimiter interface{ DatagramLimit() int }

// Config configures a Tunnel. The zero value is usable.
type Config struct {
	// Logger receives state changes at Info and goroutine start/stop at
	// Debug; never a line per packet. Nil means discard.
	Logger *slog.Logger
	// Addresses are the TUN's own addresses. The first address of each
	// family is the source of the ICMP errors the tunnel generates for
	// packets of that family; without one, the source is the offending
	// packet's destination.
	Addresses []netip.Prefix
	// MTU is the TUN MTU, checked to be in [68, 65535]; 0 means ask the
	// device. It is also the largest outbound packet: the buffers of the
	// peers' queues hold 16 + MTU bytes, and a larger packet read from the
	// TUN (possible only through a route with a larger MTU) is answered
	// with an ICMP too big at MTU and counted as TooBig.
	MTU int
	// QueueLen is the length of each peer's outbound queue, in packets;
	// 0 means 1024. A peer whose connection stalls holds at most
	// QueueLen + 1 buffers of 16 + MTU bytes (the queue and the packet in
	// SendDatagram): 1.3 MiB at the defaults with MTU 1300.
	QueueLen int
	// HoldDown is how long a peer that shares allowed-IPs with others
	// (PeerConfig.Priority) and failed must be usable again before its
	// shared prefixes return to it (select.go); 0 means at once.
	HoldDown time.Duration
	// CarryingChanged, if not nil, is called when a peer that shares
	// allowed-IPs starts or stops carrying at least one shared prefix
	// (see [Tunnel.Carrying]), on a goroutine of Run's: it may call the
	// Tunnel, and the next change waits for it to return.
	CarryingChanged func(id key.Public, carrying bool)

	// outWait and inWait replace outboundWait and inboundWait when not
	// zero (tests).
	outWait, inWait time.Duration
}

// PeerConfig is one peer for [Tunnel.SetPeers].
type PeerConfig struct {
	ID   key.Public // the peer's Ed25519 public key; must not be all zero
	Name string     // for logs
	// AllowedIPs are the prefixes routed to this peer, and the only source
	// addresses accepted from it. They may overlap another peer's only
	// when the two have different priorities.
	AllowedIPs []netip.Prefix
	// Priority ranks peers whose allowed-IPs overlap (a site's hubs):
	// the packets of a shared prefix go to the most preferred (lowest)
	// usable one (select.go). Peers that do not share prefixes ignore it.
	Priority int
}

const (
	defaultQueueLen = 1024
	// inboundQueueLen is the length of the queue to the TUN writer, shared
	// by all receivers.
	inboundQueueLen = 1024
	// inboundWait bounds how long a receiver waits for room in that queue
	// before it drops the packet (see waitInbound). outboundWait bounds
	// how long readTUN waits for room in a peer's queue before it counts
	// the peer as stalled (see routeBatch). Both only bound a fault (a
	// stuck TUN writer, a peer without a connection): in the benchmark's
	// bulk rows with 10 ms, one round of five on a 2-core machine under
	// extra load timed out (111 drops per GB); a healthy queue frees a slot
	// within microseconds. quic-go's receive queue waits longer (100 ms),
	// so a stuck TUN writer is counted here, not as a QUIC drop.
	inboundWait  = 50 * time.Millisecond
	outboundWait = 50 * time.Millisecond

	// ICMP rate limits, per tunnel. The unreachable bucket is small: a
	// scan of unrouted addresses should not turn into an ICMP flood on the
	// TUN. Too-big errors are what makes inner TCP adapt its MSS, so they
	// get more room.
	unreachableRate, unreachableBurst = 20, 10
	tooBigRate, tooBigBurst           = 200, 50
)

// ErrClosed is returned by SetPeers and Attach once Run has returned.
var ErrClosed = errors.New("tunnel: closed")

// Tunnel is the engine between one TUN device and the peers. Create it with
// New, configure peers with SetPeers, attach connections with Attach and
// call Run once. All methods are safe for concurrent use.
type Tunnel struct {
	dev      tun.Device
	log      *slog.Logger
	batch    int
	mtu      int
	queueLen int
	// outWait and inWait bound the waits for room in a peer's queue and
	// in the TUN writer's (outboundWait and inboundWait by default).
	outWait, inWait time.Duration

	src4 netip.Addr // ICMP source for IPv4, or invalid
	src6 netip.Addr // ICMP source for IPv6, or invalid

	table   atomic.Pointer[table] // never nil
	inbound chan packet           // to writeTUN; receivers own what they fail to send
	outPool sync.Pool             // *outBuf of outBufSize bytes; see getOutBuf

	stats           counters // drops that belong to no peer
	icmpSent        atomic.Uint64
	icmpLimited     atomic.Uint64
	tooManySegments atomic.Uint64
	tunWriteErrors  atomic.Uint64

	// readBusy and writeBusy tell Probe whether readTUN and writeTUN make
	// progress: each is incremented when its loop starts on a batch and
	// again when it is done with it, so an odd value means "busy with
	// batch number value/2", an even one "waiting for work".
	readBusy, writeBusy atomic.Uint64

	// clock is a coarse wall clock in Unix nanoseconds, set by Run and
	// advanced by tick; 0 before Run.
	clock atomic.Int64

	holdDown        time.Duration
	carryingChanged func(id key.Public, carrying bool)
	carryChanged    chan struct{} // cap 1: a peer's carrying state changed
	hubFailovers    atomic.Uint64 // changes of a shared prefix's carrier

	unreachableLimit  *tokenBucket
	tooBigLimit       *tokenBucket
	timeExceededLimit *tokenBucket // ICMP time exceeded, to peers
	logLimit          *tokenBucket // for rate-limited debug logs of errors

	wg sync.WaitGroup // every goroutine the tunnel started

	// mu guards the following fields.
	mu      sync.Mutex
	peers   map[key.Public]*peer
	started bool            // Run was called
	runCtx  context.Context // Run's context while running, else nil
	done    bool            // Run has returned or is returning
	retired Counters        // counters of removed peers
	// holdPending: a peer of a shared slot waits out its hold-down, so
	// the tick runs the selection (select.go).
	holdPending bool
}

// New returns a Tunnel for dev. The Tunnel does not take ownership of dev:
// the caller closes it (see Run). New does not start any goroutine.
func New(dev tun.Device, cfg Config) (*Tunnel, error) {
	if dev == nil {
		return nil, errors.New("tunnel: nil device")
	}
	batch := dev.BatchSize()
	if batch < 1 {
		return nil, fmt.Errorf("tunnel: device batch size %d", batch)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		var err error
		if mtu, err = dev.MTU(); err != nil {
			return nil, fmt.Errorf("tunnel: device mtu: %w", err)
		}
	}
	if mtu < 68 || mtu > 65535 {
		return nil, fmt.Errorf("tunnel: mtu %d out of range [68, 65535]", mtu)
	}
	qlen := cfg.QueueLen
	if qlen == 0 {
		qlen = defaultQueueLen
	}
	if qlen < 0 {
		return nil, fmt.Errorf("tunnel: negative queue length %d", qlen)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Tunnel{
		dev:               dev,
		log:               log,
		batch:             batch,
		mtu:               mtu,
		queueLen:          qlen,
		outWait:           cmp.Or(cfg.outWait, outboundWait),
		inWait:            cmp.Or(cfg.inWait, inboundWait),
		inbound:           make(chan packet, inboundQueueLen),
		unreachableLimit:  newTokenBucket(unreachableRate, unreachableBurst),
		tooBigLimit:       newTokenBucket(tooBigRate, tooBigBurst),
		timeExceededLimit: newTokenBucket(unreachableRate, unreachableBurst),
		logLimit:          newTokenBucket(1, 5),
		peers:             make(map[key.Public]*peer),
		holdDown:          cfg.HoldDown,
		carryingChanged:   cfg.CarryingChanged,
		carryChanged:      make(chan struct{}, 1),
	}
	for _, p := range cfg.Addresses {
		a := p.Addr().Unmap()
		switch {
		case a.Is4() && !t.src4.IsValid():
			t.src4 = a
		case a.Is6() && !t.src6.IsValid():
			t.src6 = a
		}
	}
	if mtu < 1280 && t.src6.IsValid() {
		log.Warn("tunnel: mtu below 1280 disables IPv6 on the link", "mtu", mtu)
	}
	t.table.Store(&table{})
	return t, nil
}

// Run starts the TUN reader, the TUN writer and the goroutines of the
// peers and connections configured so far (later ones start as they are
// added), and blocks until ctx is done or the device fails. Run may be
// called only once; once it returns, the Tunnel is closed (SetPeers and
// Attach return [ErrClosed]).
//
// When Run returns, every goroutine the Tunnel started has exited. Run does
// not close dev or the attached conns, and it cannot interrupt a blocking
// dev.Read or SendDatagram. So the shutdown order is: cancel ctx, close the
// conns (which unblocks their SendDatagram and ReceiveDatagram), close dev
// (which unblocks Read with os.ErrClosed), then wait for Run to return:
//
//	go func() { errc <- t.Run(ctx) }()
//	...
//	cancel()
//	for _, c := range conns { c.Close() }
//	dev.Close()
//	err := <-errc
//
// Run returns nil after a shutdown like this. It returns an error if the
// device fails, or is closed while ctx is not done.
func (t *Tunnel) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Before any receiver starts: a packet stamped with a zero clock would
	// read as "never".
	t.clock.Store(time.Now().UnixNano())
	t.mu.Lock()
	if t.started {
		t.mu.Unlock()
		return errors.New("tunnel: Run called more than once")
	}
	t.started = true
	t.runCtx = ctx
	for _, p := range t.peers {
		t.startPeerLocked(p)
	}
	t.mu.Unlock()
	t.log.Info("tunnel: running", "batch", t.batch, "mtu", t.mtu)

	errc := make(chan error, 2)
	t.wg.Add(3)
	if t.carryingChanged != nil {
		t.wg.Add(1)
		go t.notifyCarrying(ctx, t.carryingChanged)
	}
	go t.tick(ctx)
	go func() {
		defer t.wg.Done()
		errc <- t.readTUN(ctx)
	}()
	go func() {
		defer t.wg.Done()
		errc <- t.writeTUN(ctx)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	t.mu.Lock()
	t.done = true
	t.runCtx = nil
	for _, p := range t.peers {
		p.stopLocked()
	}
	t.mu.Unlock()
	t.log.Debug("tunnel: stopping, waiting for goroutines")
	t.wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	// Return the buffers still queued for the TUN. Receivers have exited,
	// so nothing is added any more.
	for {
		select {
		case p := <-t.inbound:
			p.release()
			continue
		default:
		}
		break
	}
	t.log.Info("tunnel: stopped", "err", err)
	return err
}

// isClosedErr reports whether err says that the device or connection was
// closed, which is how blocked calls end during shutdown.
func isClosedErr(err error) bool {
	return errors.Is(err, os.ErrClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled)
}

// SetPeers makes peers the tunnel's peer set: it adds new peers, removes
// missing ones (stopping their goroutines and forgetting their conns,
// which it does not close) and updates the others in place. A peer whose
// config did not change is not disturbed and loses no packet. The new
// allowed-IPs table is built aside and swapped in atomically.
//
// SetPeers rejects, changing nothing, duplicate or zero IDs, invalid or
// IPv4-mapped prefixes and allowed-IPs that overlap between peers. It
// does not block on the data path.
func (t *Tunnel) SetPeers(peers []PeerConfig) error {
	seen := make(map[key.Public]bool, len(peers))
	for _, pc := range peers {
		if pc.ID == (key.Public{}) {
			return fmt.Errorf("tunnel: peer %q: zero id", pc.Name)
		}
		if seen[pc.ID] {
			return fmt.Errorf("tunnel: duplicate peer %v", pc.ID)
		}
		seen[pc.ID] = true
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done {
		return ErrClosed
	}
	next := make(map[key.Public]*peer, len(peers))
	var routes []route
	var added []*peer
	for _, pc := range peers {
		p := t.peers[pc.ID]
		if p == nil {
			p = t.newPeer(pc.ID, pc.Name)
			added = append(added, p)
		}
		next[pc.ID] = p
		for _, pfx := range pc.AllowedIPs {
			routes = append(routes, route{prefix: pfx, peer: p, prio: pc.Priority})
		}
	}
	tbl, err := buildTable(routes)
	if err != nil {
		return err
	}

	for id, p := range t.peers {
		if next[id] == nil {
			p.stopLocked()
			t.retired.add(p.stats.snapshot())
			p.log.Info("tunnel: peer removed")
		}
	}
	for _, pc := range peers {
		p := next[pc.ID]
		if p.name != pc.Name {
			p.name = pc.Name
			p.log = t.log.With("peer", pc.ID.String(), "name", pc.Name)
		}
	}
	for _, p := range added {
		if t.runCtx != nil {
			t.startPeerLocked(p)
		}
		p.log.Info("tunnel: peer added")
	}
	t.peers = next
	markShared(tbl, next)
	t.table.Store(tbl)
	t.selectLocked()
	return nil
}

// Attach makes c the current connection of peer id, replacing any previous
// one, and starts a receiver for c (unless c is already attached). A
// replaced connection's receiver keeps delivering until its
// ReceiveDatagram fails or it is detached, so packets in flight on the old
// path are not lost. Attach returns an error for an unknown peer and
// [ErrClosed] once Run has returned. The tunnel does not take ownership of
// c.
func (t *Tunnel) Attach(id key.Public, c DatagramConn) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, err := t.attachLocked(id, c, "attach")
	if err != nil {
		return err
	}
	p.conn.Store(p.recv[c])
	select {
	case p.wake <- struct{}{}:
	default:
	}
	if p.shared {
		t.selectLocked()
	}
	p.log.Info("tunnel: connection attached")
	return nil
}

// attachLocked makes c an attached conn of peer id with a receiver, and
// returns the peer. t.mu must be held; what is the name of the operation
// for errors.
func (t *Tunnel) attachLocked(id key.Public, c DatagramConn, what string) (*peer, error) {
	if c == nil {
		return nil, fmt.Errorf("tunnel: %s nil conn", what)
	}
	if t.done {
		return nil, ErrClosed
	}
	p := t.peers[id]
	if p == nil {
		return nil, fmt.Errorf("tunnel: %s: unknown peer %v", what, id)
	}
	if p.recv[c] == nil {
		a := &attachment{c: c}
		p.recv[c] = a
		if p.ctx != nil {
			p.startReceiverLocked(a)
		}
	}
	return p, nil
}

// Detach stops the receiver of c and, if c is still the current connection
// of peer id, leaves the peer without one: its outbound packets then wait
// in its queue for the next Attach, and are dropped (QueueFull) once the
// queue is full. Detach does not close c and does nothing for an unknown
// peer or conn.
func (t *Tunnel) Detach(id key.Public, c DatagramConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.peers[id]
	if p == nil {
		return
	}
	if a := p.recv[c]; a != nil {
		delete(p.recv, c)
		if a.cancel != nil {
			a.cancel()
		}
	}
	p.removePathLocked(c)
	if cur := p.conn.Load(); cur != nil && cur.c == c {
		p.conn.Store(nil)
		p.log.Info("tunnel: connection detached")
	}
	if p.shared {
		t.selectLocked()
	}
}

// Stats returns a snapshot of the counters. Counters of different peers
// are read one after the other, not at a single instant.
func (t *Tunnel) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{
		Total:           t.retired,
		Peers:           make(map[key.Public]Counters, len(t.peers)),
		ICMPSent:        t.icmpSent.Load(),
		ICMPLimited:     t.icmpLimited.Load(),
		TooManySegments: t.tooManySegments.Load(),
		TUNWriteErrors:  t.tunWriteErrors.Load(),
	}
	s.Total.add(t.stats.snapshot())
	for id, p := range t.peers {
		c := p.stats.snapshot()
		s.Peers[id] = c
		s.Total.add(c)
	}
	return s
}
