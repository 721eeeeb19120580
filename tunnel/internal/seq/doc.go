// SPDX-License-Identifier: MIT

// Package seq is the sequenced-datagram format of multipath sets and the
// receiver's duplicate window (issue 11).
//
// A plain datagram payload is one IP packet, first nibble 4 or 6. When a
// peer has more than one connection and both ends announced the
// capability, every payload carries a sequence number instead, so that the
// receiver can keep the first copy of a packet sent on several
// connections ("redundant" mode) and drop the others:
//
//	byte 0      0x10  (first nibble 1 = sequenced; low nibble 0 = version 0; anything else in the low nibble is malformed)
//	bytes 1..7  sequence number, 56 bits big-endian, per peer and per direction
//	bytes 8..   the IP packet (first nibble 4 or 6; the caller validates the packet itself)
//
// [Put] writes the header, [Parse] reads it, a [Sender] numbers one
// peer's outbound packets and a [Window] filters one peer's inbound
// packets. Sequence numbers are serial numbers modulo 2^56 (RFC 1982): the
// number after 2^56-1 is 0, and it is ahead of 2^56-1.
//
// # The window
//
// A [Window] remembers the last 8,128 numbers behind the highest number
// seen, the window of RFC 6479 as implemented by
// [golang.zx2c4.com/wireguard/replay.Filter], which does the bookkeeping.
// That filter wants monotonically increasing uint64 counters rather than
// serial numbers, so the window maps each number s onto a counter: it
// keeps the highest number seen, top, and its counter, and s becomes
// counter(top) + d, where d is the signed serial distance from top to s
// (-2^55 <= d < 2^55). Counters restart at 2^16 whenever the window
// restarts: that leaves room below for the numbers behind the window, and
// the first call after the filter's Reset (which clears one block only,
// and counts on counters starting at 0) clears the rest of its ring. A
// counter grows only as fast as the sender's numbers do; should one reach
// 2^63 (2^7 laps of the 56-bit space: centuries for a sender that counts
// by one), the window restarts rather than let it overflow.
//
// A number more than 2^24 away from top, behind or ahead, restarts the
// window: the sender restarted, or was silent or cut off for a long time.
// The packet is accepted, and [Window.Check] says [Reset] so that callers
// can count it. A restarted [Sender] is recognised because it starts at a
// random number below 2^48: the odds that it lands less than 2^24 behind
// the old top instead, where its packets would be dropped as too old
// until it caught up, are about 2^-24 (landing ahead is harmless).
package seq
