// SPDX-License-Identifier: MIT

package tunnel

import (
	"iter"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// Drops counts dropped packets by reason. The reasons and their names (see
// All) are:
//
// Outbound (read from the TUN):
//   - NoRoute ("no_route"): no peer's allowed-IPs contain the destination;
//     an ICMP destination unreachable goes back into the TUN (rate-limited).
//   - QueueFull ("queue_full"): the peer's outbound queue was full.
//   - TooBig ("too_big"): larger than the connection's datagram limit or
//     than the tunnel's MTU; an ICMP fragmentation needed / packet too big
//     goes back into the TUN.
//   - SendError ("send_error"): SendDatagram failed otherwise.
//   - OutMalformed ("malformed"): too short, bad version or bad length.
//
// Inbound (received from a peer):
//   - BadSource ("bad_source"): the inner source address is not in the
//     sending peer's allowed-IPs.
//   - InMalformed ("malformed"): empty, shorter than its header, or an IP
//     length field larger than the datagram.
//   - UnknownFormat ("unknown_format"): first nibble neither 4 nor 6 (these
//     are reserved for later datagram formats).
//   - TUNQueueFull ("tun_queue_full"): the queue to the TUN writer was full.
//     ICMP errors the tunnel generates itself go through the same queue;
//     their drops count here too, in Stats.Total but in no peer's Counters.
//   - SeqTooOld ("seq_too_old"): a sequenced datagram whose number is
//     behind the duplicate window (replayed, forged, or a copy far later
//     than the first).
//   - TTLExpired ("ttl_expired"): an IPv4 TTL or IPv6 hop limit of 0 or
//     1, which the tunnel, a router hop, may not forward; an ICMP time
//     exceeded goes back to the peer (rate-limited).
type Drops struct {
	NoRoute, QueueFull, TooBig, SendError, OutMalformed uint64
	BadSource, InMalformed, UnknownFormat, TUNQueueFull uint64
	SeqTooOld, TTLExpired                               uint64
}

// All yields each reason's direction-qualified name ("outbound/no_route",
// ..., "inbound/tun_queue_full") and count, in a fixed order, for metrics.
func (d Drops) All() iter.Seq2[string, uint64] {
	return func(yield func(string, uint64) bool) {
		_ = yield("outbound/no_route", d.NoRoute) &&
			yield("outbound/queue_full", d.QueueFull) &&
			yield("outbound/too_big", d.TooBig) &&
			yield("outbound/send_error", d.SendError) &&
			yield("outbound/malformed", d.OutMalformed) &&
			yield("inbound/bad_source", d.BadSource) &&
			yield("inbound/malformed", d.InMalformed) &&
			yield("inbound/unknown_format", d.UnknownFormat) &&
			yield("inbound/tun_queue_full", d.TUNQueueFull) &&
			yield("inbound/seq_too_old", d.SeqTooOld) &&
			yield("inbound/ttl_expired", d.TTLExpired)
	}
}

// Total returns the sum of all drop counts.
func (d Drops) Total() uint64 {
	var n uint64
	for _, v := range d.All() {
		n += v
	}
	return n
}

func (d *Drops) add(o Drops) {
	d.NoRoute += o.NoRoute
	d.QueueFull += o.QueueFull
	d.TooBig += o.TooBig
	d.SendError += o.SendError
	d.OutMalformed += o.OutMalformed
	d.BadSource += o.BadSource
	d.InMalformed += o.InMalformed
	d.UnknownFormat += o.UnknownFormat
	d.TUNQueueFull += o.TUNQueueFull
	d.SeqTooOld += o.SeqTooOld
	d.TTLExpired += o.TTLExpired
}

// Counters are traffic and drop counts. Rx is inbound (received from a
// peer and queued to the TUN), Tx is outbound (sent to a peer); bytes are
// IP packet bytes.
type Counters struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	Drops              Drops
	// Duplicates counts sequenced datagrams received a second time (the
	// other copy of a redundant or duplicated packet): discarded, not
	// lost. SeqResets counts jumps of the peer's sequence numbers that
	// restarted the window (the peer restarted). PathsRefused counts
	// connections refused because the peer had MaxPaths.
	Duplicates, SeqResets, PathsRefused uint64
	// LastRx and LastTx are when the latest packet was received or sent
	// (the zero time if none was), read from the tunnel's coarse clock:
	// they may be up to clockTick (250 ms) early. In a sum (Stats.Total)
	// they are the latest of the parts.
	LastRx, LastTx time.Time
}

func (c *Counters) add(o Counters) {
	c.RxPackets += o.RxPackets
	c.RxBytes += o.RxBytes
	c.TxPackets += o.TxPackets
	c.TxBytes += o.TxBytes
	c.Drops.add(o.Drops)
	c.Duplicates += o.Duplicates
	c.SeqResets += o.SeqResets
	c.PathsRefused += o.PathsRefused
	if o.LastRx.After(c.LastRx) {
		c.LastRx = o.LastRx
	}
	if o.LastTx.After(c.LastTx) {
		c.LastTx = o.LastTx
	}
}

// Stats is a snapshot of a Tunnel's counters, made by [Tunnel.Stats].
type Stats struct {
	// Total sums everything since New, including peers since removed and
	// drops that belong to no peer (NoRoute, OutMalformed, and
	// TUNQueueFull of the tunnel's own ICMP errors).
	Total Counters
	// Peers has the counters of each current peer since it was added.
	Peers map[key.Public]Counters
	// ICMPSent counts ICMP errors the tunnel queued to the TUN.
	ICMPSent uint64
	// ICMPLimited counts ICMP errors suppressed by the rate limit.
	ICMPLimited uint64
	// TooManySegments counts TUN reads that returned
	// wgtun.ErrTooManySegments (some packets of a coalesced segment lost).
	TooManySegments uint64
	// TUNWriteErrors counts failed TUN writes: batches of which some
	// packets were not written (and are lost).
	TUNWriteErrors uint64
}

// counters is the live, atomic form of Counters.
type counters struct {
	rxPackets, rxBytes, txPackets, txBytes atomic.Uint64

	noRoute, queueFull, tooBig, sendError, outMalformed atomic.Uint64
	badSource, inMalformed, unknownFormat, tunQueueFull atomic.Uint64
	seqTooOld, dupDiscarded, seqResets, pathsRefused    atomic.Uint64
	ttlExpired                                          atomic.Uint64

	// lastRx and lastTx hold coarse-clock readings (Unix nanoseconds, 0
	// for never); see stamp.
	lastRx, lastTx atomic.Int64
}

// stamp sets *last to now unless it already holds now. With a coarse
// clock that is one store per peer and clock tick, not one per packet,
// so a busy peer does not keep writing the cache line.
func stamp(last *atomic.Int64, now int64) {
	if last.Load() != now {
		last.Store(now)
	}
}

// unixTime converts a coarse-clock reading to a time; 0 is the zero time.
func unixTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (c *counters) snapshot() Counters {
	return Counters{
		RxPackets: c.rxPackets.Load(),
		RxBytes:   c.rxBytes.Load(),
		TxPackets: c.txPackets.Load(),
		TxBytes:   c.txBytes.Load(),
		Drops: Drops{
			NoRoute:       c.noRoute.Load(),
			QueueFull:     c.queueFull.Load(),
			TooBig:        c.tooBig.Load(),
			SendError:     c.sendError.Load(),
			OutMalformed:  c.outMalformed.Load(),
			BadSource:     c.badSource.Load(),
			InMalformed:   c.inMalformed.Load(),
			UnknownFormat: c.unknownFormat.Load(),
			TUNQueueFull:  c.tunQueueFull.Load(),
			SeqTooOld:     c.seqTooOld.Load(),
			TTLExpired:    c.ttlExpired.Load(),
		},
		Duplicates:   c.dupDiscarded.Load(),
		SeqResets:    c.seqResets.Load(),
		PathsRefused: c.pathsRefused.Load(),
		LastRx:       unixTime(c.lastRx.Load()),
		LastTx:       unixTime(c.lastTx.Load()),
	}
}
