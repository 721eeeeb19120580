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
// [Put] writes the header, [Parse] reads it, and a [Sender] numbers one
// peer's outbound packets. Sequence numbers are serial numbers modulo 2^56
// (RFC 1982): the number after 2^56-1 is 0, and it is ahead of 2^56-1.
package seq
