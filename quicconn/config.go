// SPDX-License-Identifier: MIT

package quicconn

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// alpn is the TLS application protocol both sides require.
const alpn = "godwit/1"

// initialPacketSize is the default of Config.InitialPacketSize: a floor
// for the datagram limit that survives migrations (1350 - 37 = 1313 bytes
// of payload), large enough for inner IPv6 QUIC. quic-go resets the packet
// size to InitialPacketSize on every migration (to 1200 when it is left
// at 0, a 1163-byte datagram limit) and raises it again only as path MTU
// probes succeed.
const initialPacketSize = 1350

// Bounds of Config.InitialPacketSize and the per-packet cost of a DATAGRAM
// frame that quic-go reserves: the datagram limit is the packet size minus
// DatagramOverhead.
const (
	// MaxInitialPacketSize is the largest UDP payload a 1500-byte IPv6 path
	// carries (1500 - 40 - 8), quic-go's own maximum.
	MaxInitialPacketSize = 1452
	// DatagramOverhead is what quic-go keeps free in a packet for a
	// DATAGRAM frame's header, the short header and the AEAD tag.
	DatagramOverhead = 37
)

// framingHeadroom is what InitialPacketSizeFor leaves above
// DatagramOverhead for a TUN below the default size: the tunnel's own
// framing (the 8-byte header of sequenced datagrams) and a little more, as
// the default 1350 does for the default TUN MTU of 1300.
const framingHeadroom = initialPacketSize - 1300 - DatagramOverhead

// InitialPacketSizeFor returns the InitialPacketSize that lets a TUN of the
// given MTU send full-size packets from the first packet on, without
// waiting for path MTU discovery: mtu + DatagramOverhead, plus
// framingHeadroom up to the default 1350, at least quic-go's minimum 1200
// and at most MaxInitialPacketSize. A larger MTU than MaxInitialPacketSize
// - DatagramOverhead (1415) never fits. A smaller MTU than 1300 gives a
// smaller size than the default, so that a path that carries less than
// 1350-byte UDP payloads still carries the handshake and the tunnel: mtu
// 1200 needs 1250 (a 1278-byte IPv4 packet), 1180 fits a 1280-byte IPv6
// path.
func InitialPacketSizeFor(mtu int) int {
	size := max(mtu+DatagramOverhead, min(mtu+DatagramOverhead+framingHeadroom, initialPacketSize))
	return min(max(size, minPacketSize), MaxInitialPacketSize)
}

// minPacketSize is the smallest UDP payload QUIC allows (RFC 9000 14) and
// quic-go's smallest InitialPacketSize.
const minPacketSize = 1200

// connectionIDLength is the same on every Transport so that a connection
// can move between them: a Transport parses connection IDs of its own
// length only, so a path probed on a Transport with another length never
// validates (quic-go's Probe times out silently).
const connectionIDLength = 8

// Config configures an [Endpoint]. The zero value of every field except
// PrivateKey is a documented default. NewEndpoint copies the Config; later
// changes to it have no effect, except what Authorize itself reads.
type Config struct {
	// PrivateKey is this node's identity. Required.
	PrivateKey ed25519.PrivateKey
	// NodeName is sent to peers in the Hello. Empty is allowed.
	NodeName string
	// Listen is the "host:port" to accept peers on. Empty means do not
	// accept; a UDP socket on an ephemeral port of the wildcard address is
	// still opened for dialing.
	Listen string
	// ListenTCP, when not empty and Listen is set too, is the TCP
	// "host:port" to also accept peers on over TLS on TCP (package
	// tcppath), for sites whose network blocks UDP: a second Transport
	// with the same keys, TLS and QUIC configuration, whose connections
	// Accept returns like the UDP ones. Ignored without Listen.
	ListenTCP string
	// FwMark is set as SO_MARK on the UDP socket when non-zero (needs
	// CAP_NET_ADMIN), so routing can keep the daemon's own traffic out of
	// the tunnel.
	FwMark uint32
	// StateDir, when not empty, is a directory (created with mode 0700 if
	// missing) where the Endpoint keeps what must survive a restart, in
	// files of mode 0600 that are replaced atomically: reset.key (the
	// stateless-reset key, so a restarted node resets its peers' old
	// connections at once), ticket.keys (session-ticket keys, current
	// first), token.key (address-validation tokens) and, in tickets/, the
	// session ticket of each peer this Endpoint dialed (named by the peer
	// key in URL-safe base64), so that the first dial after a restart
	// sends 0-RTT. Missing files are created; a key file that cannot be
	// read or has the wrong size makes NewEndpoint fail with an error
	// naming it; a ticket file that does not parse is removed and logged.
	// Empty means all of it lives in memory and dies with the Endpoint.
	StateDir string
	// Authorize reports whether an incoming peer with this raw Ed25519
	// public key may connect. It is called during every handshake,
	// including resumed ones, from quic-go's goroutines, so it must be
	// safe for concurrent use and fast; it may read the caller's own
	// atomic state so that removing a peer takes effect at the next
	// handshake. Nil refuses everyone.
	Authorize func(peer key.Public) bool
	// Logger receives state changes (Info) and details (Debug). Nil
	// discards.
	Logger *slog.Logger
	// HandshakeTimeout bounds the QUIC handshake (quic-go
	// HandshakeIdleTimeout), the hello exchange, and the delivery of each
	// control message once its first byte arrived. Zero means 8 s.
	HandshakeTimeout time.Duration
	// IdleTimeout is quic-go's MaxIdleTimeout, set on both sides. Zero
	// means 30 s.
	IdleTimeout time.Duration
	// KeepAlive is quic-go's KeepAlivePeriod on dialed connections. Zero
	// means 10 s.
	KeepAlive time.Duration
	// Heartbeat is the control-stream heartbeat interval. Zero means 2 s.
	Heartbeat time.Duration
	// DeadAfter closes a connection whose peer sent nothing on the control
	// stream for this long ("heartbeat timeout"). Zero means
	// max(4*Heartbeat, 3*smoothed RTT + 1 s), recomputed at every check.
	DeadAfter time.Duration
	// RedialMin and RedialMax bound DialLoop's exponential backoff, which
	// has +-50 % jitter and is capped at RedialMax. Zero means 250 ms and
	// 15 s.
	RedialMin, RedialMax time.Duration

	// Multipath announces on every connection, dialed and accepted, that
	// this node keeps several connections to a peer at once (one per
	// uplink; see multipath.go): its Hello carries the capability and a
	// Multipath message with [Endpoint.Instance] follows. [Conn.Multipath]
	// reports the peer's announcement when both sides set it. A peer
	// without it is unaffected; its own announcement, if any, is read and
	// ignored. False sends nothing new.
	Multipath bool
	// MultipathMode, if not nil, returns the mode a dialed peer should use
	// for its direction ([PeerMultipath]), and whether it should send every
	// packet redundantly. It is called on every dial with Multipath set
	// (again when a rejected 0-RTT Hello is resent), on the Endpoint's
	// goroutines, so it must be safe for concurrent use and fast; the
	// answer is fixed for the connection's life. Nil, or a mode above MultipathAggregate
	// (logged), announces MultipathFailover. An acceptor always announces
	// MultipathFailover, which dialers ignore.
	MultipathMode func(peer key.Public) (mode MultipathMode, redundancyAll bool)

	// KeepAliveFor, if not nil, returns the keep-alive period of the
	// connections dialed to peer, overriding KeepAlive when it is not 0.
	// It is called on every dial.
	KeepAliveFor func(peer key.Public) time.Duration

	// Preference, if not nil, makes every dialed connection tell the peer
	// (a hub) whether this node sends its traffic through it: the Hello
	// carries the capability and a Preference message with f(peer)
	// follows (preference.go). Like MultipathMode it is called on every
	// dial, on the Endpoint's goroutines. Later changes are sent with
	// [Conn.SetPreferred].
	Preference func(peer key.Public) bool
	// PreferenceChanged, if not nil, is called on the connection's control
	// reader goroutine each time the peer sends a Preference message after
	// the hello ([Conn.PeerPreference] has it). It must not block.
	PreferenceChanged func(c *Conn)

	// PathDeadFloor is added to 3 smoothed RTTs to declare a path suspect
	// (Mobility.PathDead). Zero means 1 s.
	PathDeadFloor time.Duration
	// QlogDir, when not empty, is a directory (created with mode 0750 if
	// missing) where every QUIC connection of the Endpoint writes a qlog
	// file (JSON-SEQ, for qvis), named
	// <UTC time>_<peer>_<key>_<odcid>_<client|server>.sqlog: peer is
	// PeerLabel's name for the peer key or else the name from the peer's
	// Hello, key the first 8 characters of the peer key in URL-safe base64
	// (standard base64 with '-' for '+' and '_' for '/'). Both are
	// "unknown" until the hello exchange, and stay so for connections that
	// never complete it. Files are never removed or rotated, and they grow
	// by a few hundred bytes per packet: for debugging only. Empty means no
	// qlog (the QLOGDIR environment variable is not read here).
	QlogDir string
	// PeerLabel, if not nil, names a peer key in qlog file names (the
	// peer's name in the daemon's config). It is called from quic-go's and
	// the Endpoint's goroutines and must be safe for concurrent use. Nil,
	// or "" for a key, falls back to the name in the peer's Hello.
	PeerLabel func(peer key.Public) string
	// KeyLogWriter, if not nil, receives the TLS secrets of every
	// connection, dialed and accepted, in NSS key log format (what
	// Wireshark reads; see tls.Config.KeyLogWriter). crypto/tls serializes
	// the writes. Anyone holding the output can decrypt the tunnel: for
	// debugging only. The Endpoint never closes it.
	KeyLogWriter io.Writer
	// DisableTracer turns off the tracer that every connection otherwise
	// gets to count the ConnStats fields quic-go reports nowhere else
	// (DatagramsDroppedQueueFull, DatagramsDroppedTooLarge,
	// PacketsDroppedDoS, PTOCount, MaxPacketSize, PathChanges; they stay 0
	// without it). With any tracer, quic-go builds an event for every
	// packet: BenchmarkDatagramTracer measured about 6 % more CPU time and
	// 8 more allocations per 1200-byte datagram. A QlogDir overrides it.
	// The tracer is diagnostics only: 0-RTT and everything else work the
	// same without it.
	DisableTracer bool
	// InitialPacketSize is the UDP payload size of the first packets on
	// every path (quic-go's InitialPacketSize): the datagram limit starts at
	// InitialPacketSize - DatagramOverhead and path MTU discovery raises it
	// from there, up to MaxInitialPacketSize. A path that drops packets of
	// this size (a path MTU black hole, no ICMP) is noticed by the patched
	// quic-go (third_party/quic-go/GODWIT.md): after 2 probe timeouts
	// during the handshake, or 3 loss events of only larger packets later,
	// the packet size falls to 1200 (limit 1163) and path MTU discovery
	// climbs again from there; until then such a path carries nothing
	// large. 0 means 1350 (limit 1313); it is clamped to [1200,
	// MaxInitialPacketSize].
	InitialPacketSize int
	// OuterCongestionControl turns quic-go's congestion control (NewReno
	// with pacing) on for the connection's packets. Off by default: like
	// WireGuard, the tunnel leaves congestion control to the inner flows.
	// An outer controller halved single-stream TCP throughput under 1-5 %
	// random loss, queued inner packets in front of its window, and with a
	// full window on a dead path it blocks the path probes of a migration
	// (docs/PERFORMANCE.md). Loss detection and retransmission of the
	// control stream work either way.
	OuterCongestionControl bool
}

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 8*time.Second)
	def(&c.IdleTimeout, 30*time.Second)
	def(&c.KeepAlive, 10*time.Second)
	def(&c.Heartbeat, 2*time.Second)
	def(&c.RedialMin, 250*time.Millisecond)
	def(&c.RedialMax, 15*time.Second)
	def(&c.PathDeadFloor, time.Second)
	if c.InitialPacketSize <= 0 {
		c.InitialPacketSize = initialPacketSize
	}
	c.InitialPacketSize = min(max(c.InitialPacketSize, minPacketSize), MaxInitialPacketSize)
	if c.RedialMax < c.RedialMin {
		c.RedialMax = c.RedialMin
	}
	return c
}

func (c *Config) validate() error {
	if len(c.PrivateKey) != ed25519.PrivateKeySize {
		return fmt.Errorf("quicconn: private key has %d bytes, want %d", len(c.PrivateKey), ed25519.PrivateKeySize)
	}
	return nil
}
