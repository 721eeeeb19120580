// SPDX-License-Identifier: MIT

package tunnel

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/tunnel/internal/seq"
)

// attachment is one conn attached to a peer, with its receiver.
type attachment struct {
	c      DatagramConn
	cancel context.CancelFunc // stops the receiver; nil until started
	// path is the conn's path in the peer's path set, nil when it was
	// attached with Attach (or has left the set).
	path atomic.Pointer[path]
}

// peer is one peer: its outbound queue and sender, its current conn and the
// receivers of its attached conns. The table maps its allowed-IPs to it.
type peer struct {
	t   *Tunnel
	id  key.Public
	out chan outPacket // outbound queue; the sender owns what it takes off

	// wake has capacity 1; Attach signals it so a sender waiting for a conn
	// looks again.
	wake  chan struct{}
	conn  atomic.Pointer[attachment] // current conn, or nil
	stats counters
	// stalled is set when readTUN waited outboundWait for room in out in
	// vain: it drops this peer's packets without waiting until the sender
	// has taken out down to half (see routeBatch).
	stalled atomic.Bool

	// Multipath (paths.go): the schedule over the path set, nil while the
	// peer has no paths; the path of the latest packet received (for
	// PathPolicy.Follow); the sequence numbers sent and the window of
	// those received.
	sched      atomic.Pointer[schedule]
	lastRxPath atomic.Pointer[path]
	seqTx      *seq.Sender
	window     seq.Window
	seed       maphash.Seed

	// carrying: the peer carries at least one shared prefix (select.go).
	carrying atomic.Bool
	// mtuWarned: a packet above the TUN's MTU came from the peer (logged
	// once).
	mtuWarned atomic.Bool
	// v6LimitWarned: the datagram limit below 1280 last logged for an
	// IPv6 packet that could not be sent (0: none).
	v6LimitWarned atomic.Int64

	// These fields are guarded by t.mu.
	name   string
	log    *slog.Logger
	recv   map[DatagramConn]*attachment // attached conns, current or not
	paths  map[DatagramConn]*path       // the path set (AttachPath)
	policy PathPolicy
	agg    *aggState       // Aggregate's flow table, made by SetPathPolicy
	ctx    context.Context // non-nil while started
	cancel context.CancelFunc
	// Hub selection (select.go): shared is set for a member of a shared
	// slot; wasUsable since upSince; failed once it lost usability;
	// eligible to carry; reported is the carrying state last passed to
	// Config.CarryingChanged.
	shared, wasUsable, failed, eligible, reported bool
	upSince                                       time.Time
}

func (t *Tunnel) newPeer(id key.Public, name string) *peer {
	return &peer{
		t:     t,
		id:    id,
		out:   make(chan outPacket, t.queueLen),
		wake:  make(chan struct{}, 1),
		name:  name,
		log:   t.log.With("peer", id.String(), "name", name),
		recv:  make(map[DatagramConn]*attachment),
		seed:  maphash.MakeSeed(),
		seqTx: seq.NewSender(),
	}
}

// startPeerLocked starts p's sender and the receivers of its conns. t.mu
// must be held and Run must be running.
func (t *Tunnel) startPeerLocked(p *peer) {
	p.ctx, p.cancel = context.WithCancel(t.runCtx)
	t.wg.Add(1)
	go p.send(p.ctx, p.log)
	for _, a := range p.recv {
		p.startReceiverLocked(a)
	}
}

// startReceiverLocked starts the receiver of a. t.mu must be held and p
// must be started.
func (p *peer) startReceiverLocked(a *attachment) {
	var ctx context.Context
	ctx, a.cancel = context.WithCancel(p.ctx)
	p.t.wg.Add(1)
	go p.receive(ctx, a, p.log)
}

// stopLocked stops p's goroutines (they exit once their blocking calls
// return) and forgets its conns. t.mu must be held.
func (p *peer) stopLocked() {
	if p.cancel != nil {
		p.cancel()
	}
	for c, a := range p.recv {
		if a.cancel != nil {
			a.cancel()
		}
		delete(p.recv, c)
	}
	clear(p.paths)
	p.rescheduleLocked()
	p.conn.Store(nil)
}

// connDead is called by the receiver of a when its ReceiveDatagram failed:
// the conn is dead, so it is forgotten and, if current, the peer has no
// conn until the next Attach.
func (p *peer) connDead(a *attachment) {
	p.t.mu.Lock()
	defer p.t.mu.Unlock()
	if p.recv[a.c] == a {
		delete(p.recv, a.c)
		p.removePathLocked(a.c)
	}
	p.conn.CompareAndSwap(a, nil)
	if p.shared {
		p.t.selectLocked()
	}
}
