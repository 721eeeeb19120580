// SPDX-License-Identifier: MIT

package seq

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync/atomic"
)

// HeaderLen is the length in bytes of the header of a sequenced datagram,
// in front of the IP packet.
const HeaderLen = 8

const (
	// tag is byte 0 of a version 0 sequenced datagram.
	tag = 0x10
	// mask keeps the low 56 bits: sequence numbers are taken modulo 2^56.
	mask = 1<<56 - 1
	// startLimit bounds a new Sender's first number: [0, 2^48).
	startLimit = 1 << 48
)

// Errors returned by [Parse].
var (
	// ErrShort means the datagram is shorter than [HeaderLen].
	ErrShort = errors.New("seq: datagram shorter than the header")
	// ErrVersion means byte 0 is not 0x10: not a sequenced datagram, or
	// one of a version this package does not know.
	ErrVersion = errors.New("seq: not a version 0 sequenced datagram")
)

// Put writes the header of a sequenced datagram with number seq (modulo
// 2^56) into b[:HeaderLen]. It panics if b is shorter than [HeaderLen].
func Put(b []byte, seq uint64) {
	binary.BigEndian.PutUint64(b, tag<<56|seq&mask)
}

// Parse reads the header of the sequenced datagram b and returns its
// number and the IP packet behind it, which aliases b. The packet may be
// empty: validating it is the caller's job. Parse fails with [ErrVersion]
// if byte 0 is not 0x10 and with [ErrShort] if b is shorter than
// [HeaderLen]; it never panics.
func Parse(b []byte) (seq uint64, packet []byte, err error) {
	if len(b) > 0 && b[0] != tag {
		return 0, nil, ErrVersion
	}
	if len(b) < HeaderLen {
		return 0, nil, ErrShort
	}
	return binary.BigEndian.Uint64(b) & mask, b[HeaderLen:], nil
}

// A Sender numbers the packets sent to one peer, in one direction. It is
// safe for concurrent use. The zero Sender starts at 0; [NewSender] starts
// at a random number.
type Sender struct {
	next atomic.Uint64 // the next number, before reduction modulo 2^56
}

// NewSender returns a Sender whose first number is random in [0, 2^48), so
// that a peer's [Window] sees a restarted sender as a jump and restarts
// (see the package documentation). The number comes from math/rand/v2,
// whose top-level functions draw from a ChaCha8 generator that the runtime
// seeds from the operating system: the number need not be secret, only
// different at each start, since it travels inside the encrypted QUIC
// payload to the authenticated peer alone. crypto/rand would do as well,
// with bytes to decode and nothing gained.
func NewSender() *Sender {
	s := new(Sender)
	s.next.Store(rand.Uint64N(startLimit))
	return s
}

// Next returns the next sequence number. After 2^56-1 comes 0.
func (s *Sender) Next() uint64 {
	return (s.next.Add(1) - 1) & mask
}
