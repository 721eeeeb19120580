// SPDX-License-Identifier: MIT

// Package ctlmsg is the codec of Godwit's control stream: the first
// bidirectional stream of every connection, opened by the dialer, which
// carries [Hello], [Multipath], [Preference], [Heartbeat] and [Goodbye] messages. It encodes with
// [Append] and decodes with [Read]; the wire format is below. It is
// internal to quicconn, which runs the stream.
//
// Every message is framed as
//
//	type    QUIC varint
//	length  QUIC varint, the payload length in bytes, at most maxSize
//	payload length bytes
//
// Payloads of the known types (all integers big-endian, fixed width):
//
//	Hello     (1): version u16 | capabilities u64 | name (rest, UTF-8, <= maxNameLen)
//	Heartbeat (2): seq u64 | sent unix nanoseconds i64 | flags u8 (0 = request, 1 = reply)
//	Goodbye   (3): code u64 | reason (rest, UTF-8, <= maxReasonLen)
//	Multipath (4): instance u64 (not 0) | mode u8 (0 failover, 1 redundant, 2 aggregate) | flags u8 (bit 0: redundancy all)
//	Preference (5): flags u8 (bit 0: preferred, from a site; bit 1: leaving, from a hub)
//
// Capability bits of a Hello: [CapMultipath] (bit 0) announces that a
// Multipath message follows the Hello at once; [CapPreference] (bit 1)
// announces that a Preference message follows the Hello (after the
// Multipath message, if any) and that later changes are sent as
// Preference messages too. No other bit is defined.
// A peer that does not know a bit ignores it, and skips a Multipath or
// Preference message as an unknown type. A mode above 2 is malformed (a new mode
// needs a new capability); the flags other than bit 0 are reserved: sent
// as 0 and ignored, so that a later version can add hints.
//
// A known message must fill its payload exactly; anything else is malformed.
// Messages of other types are skipped (within maxSize): new features
// arrive as new message types, and an incompatible change bumps Version.
package ctlmsg

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/quic-go/quic-go/quicvarint"
)

// Version is the control protocol's major version sent in every Hello.
// Peers whose Hello carries a different version are incompatible and are
// closed with CodeVersionMismatch.
const Version uint16 = 1

// Limits of the control protocol.
const (
	// maxSize is the hard cap on one message's payload in bytes.
	maxSize = 64 << 10
	// maxNameLen is the longest node name in a Hello, in bytes.
	maxNameLen = 255
	// maxReasonLen is the longest reason in a Goodbye, in bytes.
	maxReasonLen = 1024
)

// Message types on the control stream.
const (
	typeHello      uint64 = 1
	typeHeartbeat  uint64 = 2
	typeGoodbye    uint64 = 3
	typeMultipath  uint64 = 4
	typePreference uint64 = 5
)

const (
	helloFixedLen     = 2 + 8
	heartbeatLen      = 8 + 8 + 1
	goodbyeFixedLen   = 8
	heartbeatReplyBit = 1
	multipathLen      = 8 + 1 + 1
	redundancyAllBit  = 1
	preferenceLen     = 1
	preferredBit      = 1
	leavingBit        = 2
)

// CapMultipath is the Hello capability bit that announces a [Multipath]
// message right after the Hello.
const CapMultipath uint64 = 1 << 0

// CapPreference is the Hello capability bit that announces a [Preference]
// message right after the Hello (and its Multipath message).
const CapPreference uint64 = 1 << 1

// Multipath modes, the values of Multipath.Mode.
const (
	ModeFailover  uint8 = 0 // all traffic on the best healthy path
	ModeRedundant uint8 = 1 // each packet on the two best paths
	ModeAggregate uint8 = 2 // flows spread over the paths
	// MaxMode is the largest defined mode; a larger one is malformed.
	MaxMode = ModeAggregate
)

// Application error codes used in CONNECTION_CLOSE and in Goodbye.Code.
const (
	// CodeNoError is a normal close.
	CodeNoError uint64 = 0
	// CodeProtocolError means a malformed, over-long, unexpected or too
	// slowly delivered control message.
	CodeProtocolError uint64 = 1
	// CodeVersionMismatch means the peer's Hello has an incompatible
	// Version.
	CodeVersionMismatch uint64 = 2
	// CodeHeartbeatTimeout means the peer stopped answering heartbeats.
	CodeHeartbeatTimeout uint64 = 3
	// CodeControlStream means the control stream failed (closed by the
	// peer, or blocked by flow control because the peer does not read it).
	CodeControlStream uint64 = 4
)

// ErrMalformed is wrapped by every error [Read] returns for bytes that are
// not a well-formed message.
var ErrMalformed = errors.New("quicconn: malformed control message")

// ErrTooLarge is wrapped by the error [Read] returns for a message whose
// declared length exceeds maxSize.
var ErrTooLarge = errors.New("quicconn: control message too large")

// Message is one control-stream message: [Hello], [Multipath],
// [Preference], [Heartbeat], [Goodbye] or [Unknown]. The set is closed; other packages cannot add types.
type Message interface {
	messageType() uint64
}

// Hello is the first message on the control stream in each direction.
type Hello struct {
	Version      uint16 // the sender's protocol Version
	Capabilities uint64 // feature bits: CapMultipath; others are ignored
	Name         string // the sender's node name, for logs and status
}

// Heartbeat is sent by both sides every heartbeat interval; each side
// answers the other's requests with a reply that echoes Seq and SentUnixNano.
type Heartbeat struct {
	Seq          uint64 // sender's sequence number, echoed in the reply
	SentUnixNano int64  // requester's send time, echoed in the reply
	Reply        bool   // false: a request; true: the answer to one
}

// Multipath follows a Hello that has CapMultipath: it tells the peer which
// running daemon sent it and, from a dialer, how the peer should schedule
// its packets over the set of connections between them.
type Multipath struct {
	// Instance identifies the sender's running Endpoint: random, never 0,
	// the same on all its connections and new after every restart.
	Instance uint64
	// Mode is one of the Mode constants, at most MaxMode; an acceptor
	// sends ModeFailover.
	Mode uint8
	// RedundancyAll asks for every packet to be sent redundantly (flags
	// bit 0).
	RedundancyAll bool
}

// Preference is what a site with several hubs tells each of them, right
// after its Hello and whenever it changes: whether it sends its traffic
// through this hub (Preferred), so that a hub that announces routes over
// BGP announces the site's only while it is used. A hub sends one with
// Leaving set when it shuts down, so that its sites move away before it
// closes. The other flag bits are reserved: sent as 0, ignored.
type Preference struct {
	Preferred bool // flags bit 0
	Leaving   bool // flags bit 1
}

// Goodbye announces a deliberate close and its reason.
type Goodbye struct {
	Code   uint64 // one of the Code constants
	Reason string // human-readable, at most maxReasonLen bytes
}

// Unknown stands for a message of a type this version does not know. Its
// payload has been skipped; callers ignore it.
type Unknown struct {
	Type uint64 // the wire type; never one of the known types
}

func (Hello) messageType() uint64      { return typeHello }
func (Heartbeat) messageType() uint64  { return typeHeartbeat }
func (Goodbye) messageType() uint64    { return typeGoodbye }
func (Multipath) messageType() uint64  { return typeMultipath }
func (Preference) messageType() uint64 { return typePreference }
func (m Unknown) messageType() uint64  { return m.Type }

// Append appends the wire encoding of m to b and returns the extended
// slice. Strings longer than their limit are cut at a UTF-8 boundary and
// invalid UTF-8 is replaced, so the result always decodes. An Unknown is
// encoded with an empty payload (its Type capped at 2^62-1); an Unknown
// with a known type, a Multipath with Instance 0 or a Mode above MaxMode
// (which would not decode), or a nil m, appends nothing.
func Append(b []byte, m Message) []byte {
	switch m := m.(type) {
	case Hello:
		name := clampString(m.Name, maxNameLen)
		b = appendHeader(b, typeHello, helloFixedLen+len(name))
		b = binary.BigEndian.AppendUint16(b, m.Version)
		b = binary.BigEndian.AppendUint64(b, m.Capabilities)
		return append(b, name...)
	case Heartbeat:
		b = appendHeader(b, typeHeartbeat, heartbeatLen)
		b = binary.BigEndian.AppendUint64(b, m.Seq)
		b = binary.BigEndian.AppendUint64(b, uint64(m.SentUnixNano))
		var flags byte
		if m.Reply {
			flags = heartbeatReplyBit
		}
		return append(b, flags)
	case Goodbye:
		reason := clampString(m.Reason, maxReasonLen)
		b = appendHeader(b, typeGoodbye, goodbyeFixedLen+len(reason))
		b = binary.BigEndian.AppendUint64(b, m.Code)
		return append(b, reason...)
	case Multipath:
		if m.Instance == 0 || m.Mode > MaxMode {
			return b
		}
		b = appendHeader(b, typeMultipath, multipathLen)
		b = binary.BigEndian.AppendUint64(b, m.Instance)
		var flags byte
		if m.RedundancyAll {
			flags = redundancyAllBit
		}
		return append(b, m.Mode, flags)
	case Preference:
		var flags byte
		if m.Preferred {
			flags |= preferredBit
		}
		if m.Leaving {
			flags |= leavingBit
		}
		return append(appendHeader(b, typePreference, preferenceLen), flags)
	case Unknown:
		switch m.Type {
		case typeHello, typeHeartbeat, typeGoodbye, typeMultipath, typePreference:
			return b // an empty payload would be malformed for these
		}
		return appendHeader(b, min(m.Type, quicvarint.Max), 0)
	}
	return b
}

func appendHeader(b []byte, typ uint64, n int) []byte {
	b = quicvarint.Append(b, typ)
	return quicvarint.Append(b, uint64(n))
}

// clampString returns s as valid UTF-8 of at most limit bytes.
func clampString(s string, limit int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= limit {
		return s
	}
	s = s[:limit]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// Read reads one message from r. It takes a *bufio.Reader (rather
// than an io.Reader) because the varint header is read byte by byte and the
// payload of an unknown type is skipped with Discard; the caller keeps the
// reader across calls, since it may hold the start of the next message.
//
// It returns io.EOF only when r ends cleanly before a message starts, and
// io.ErrUnexpectedEOF when it ends inside one. A declared length above
// maxSize fails with [ErrTooLarge] before anything is
// allocated; a payload that does not parse fails with [ErrMalformed]. A
// message of an unknown type is skipped and returned as [Unknown]. Any error
// other than io.EOF leaves r in an undefined position: the stream is unusable.
func Read(r *bufio.Reader) (Message, error) {
	typ, err := quicvarint.Read(r)
	if err != nil {
		return nil, err
	}
	n, err := quicvarint.Read(r)
	if err != nil {
		return nil, noEOF(err)
	}
	if n > maxSize {
		return nil, fmt.Errorf("%w: type %d, %d bytes (max %d)", ErrTooLarge, typ, n, maxSize)
	}
	switch typ {
	case typeHello, typeHeartbeat, typeGoodbye, typeMultipath, typePreference:
	default:
		if _, err := r.Discard(int(n)); err != nil {
			return nil, noEOF(err)
		}
		return Unknown{Type: typ}, nil
	}
	p := make([]byte, n) // n <= maxSize: bounded by the check above
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, noEOF(err)
	}
	return parsePayload(typ, p)
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func parsePayload(typ uint64, p []byte) (Message, error) {
	switch typ {
	case typeHello:
		name, err := textAfter(p, helloFixedLen, maxNameLen, "hello", "name")
		if err != nil {
			return nil, err
		}
		return Hello{
			Version:      binary.BigEndian.Uint16(p),
			Capabilities: binary.BigEndian.Uint64(p[2:]),
			Name:         string(name),
		}, nil
	case typeHeartbeat:
		if len(p) != heartbeatLen {
			return nil, fmt.Errorf("%w: heartbeat of %d bytes, want %d", ErrMalformed, len(p), heartbeatLen)
		}
		flags := p[16]
		if flags&^heartbeatReplyBit != 0 {
			return nil, fmt.Errorf("%w: heartbeat flags %#x", ErrMalformed, flags)
		}
		return Heartbeat{
			Seq:          binary.BigEndian.Uint64(p),
			SentUnixNano: int64(binary.BigEndian.Uint64(p[8:])),
			Reply:        flags == heartbeatReplyBit,
		}, nil
	case typeGoodbye:
		reason, err := textAfter(p, goodbyeFixedLen, maxReasonLen, "goodbye", "reason")
		if err != nil {
			return nil, err
		}
		return Goodbye{Code: binary.BigEndian.Uint64(p), Reason: string(reason)}, nil
	case typeMultipath:
		if len(p) != multipathLen {
			return nil, fmt.Errorf("%w: multipath of %d bytes, want %d", ErrMalformed, len(p), multipathLen)
		}
		m := Multipath{Instance: binary.BigEndian.Uint64(p), Mode: p[8]}
		flags := p[9]
		switch {
		case m.Instance == 0:
			return nil, fmt.Errorf("%w: multipath instance 0", ErrMalformed)
		case m.Mode > MaxMode:
			return nil, fmt.Errorf("%w: multipath mode %d", ErrMalformed, m.Mode)
		}
		m.RedundancyAll = flags&redundancyAllBit != 0 // other bits: reserved, ignored
		return m, nil
	case typePreference:
		if len(p) != preferenceLen {
			return nil, fmt.Errorf("%w: preference of %d bytes, want %d", ErrMalformed, len(p), preferenceLen)
		}
		return Preference{Preferred: p[0]&preferredBit != 0, Leaving: p[0]&leavingBit != 0}, nil // other bits: reserved, ignored
	}
	return nil, fmt.Errorf("%w: type %d", ErrMalformed, typ)
}

// textAfter returns the text field (a Hello's name, a Goodbye's reason)
// that follows the fixed fields, fixed bytes, of the payload p of message
// msg. The text must be UTF-8 of at most maxLen bytes.
func textAfter(p []byte, fixed, maxLen int, msg, field string) ([]byte, error) {
	if len(p) < fixed {
		return nil, fmt.Errorf("%w: %s of %d bytes", ErrMalformed, msg, len(p))
	}
	text := p[fixed:]
	if len(text) > maxLen || !utf8.Valid(text) {
		return nil, fmt.Errorf("%w: %s %s (%d bytes, must be UTF-8 of at most %d)", ErrMalformed, msg, field, len(text), maxLen)
	}
	return text, nil
}
