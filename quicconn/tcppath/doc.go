// SPDX-License-Identifier: MIT

// Package tcppath carries Godwit's QUIC packets, unchanged, over TLS 1.3 on
// TCP, for networks that block UDP (issue 12). It offers each end as a
// net.PacketConn for a quic.Transport of its own, so that all of Godwit's
// QUIC machinery (key pinning, the control stream, datagrams, 0-RTT) works
// over TCP as it does over UDP, with no second protocol.
//
// # Wire format
//
// The client opens a TCP connection to the hub, through an HTTP proxy with
// CONNECT if configured ([ClientConfig.Proxy], Basic credentials from the
// URL), and runs a TLS 1.3 handshake with ALPN [ALPN] ("godwit-tcp/1").
// Both sides present a self-signed certificate made from their Ed25519
// node key and pin the other's key, as quicconn does for QUIC: the client
// requires [ClientConfig.PeerKey], the hub asks [ServerConfig.Authorize].
// The hub issues no session tickets. Then each direction is a sequence of
// frames, one QUIC packet each:
//
//	frame = length (2 bytes, big-endian) || QUIC packet (length bytes)
//
// A length of 0 or above the receiver's MaxPacket (default
// [DefaultMaxPacket], 1452 bytes, quic-go's largest packet) closes that TCP
// connection, and only that one; there is no other message. Nothing is
// sent but frames, and neither side sends a TLS close_notify.
//
// # Bounds on the hub
//
// A [Listener] spends on a connection that has not proven an authorized
// key at most one goroutine and one TLS handshake's state, for at most
// [ServerConfig.HandshakeTimeout] (default 5 s), and at most
// [ServerConfig.MaxPending] (default 256) such connections exist at once:
// one accepted beyond that resets the oldest, so that a flood of
// connections that never finish TLS holds a slot only until 256 newer
// ones came, while a real client's handshake needs a round trip or two.
// A client whose key Authorize
// refuses is closed during the handshake, before a single frame is read.
// An authorized client costs two goroutines (its receive loop and its
// writer), about 64 KiB of buffers, and its send queue
// ([ServerConfig.SendQueue] packets, default 128). WriteTo waits for room
// in a full send queue at most [ServerConfig.SendWait] (default 5 ms): a
// client that stops reading loses its own packets, counted, and is closed
// after [ServerConfig.IdleTimeout] without write progress; a client that
// sends nothing for that long is closed too. All clients share one
// receive queue ([ServerConfig.ReceiveQueue] packets, default 1024); when
// it is full the receive loops wait and stop reading, so TCP's flow
// control holds the clients back and no packet TCP delivered is dropped.
// [Listener.Stats] counts each of these events.
//
// quic-go's congestion control is off on this path (TCP has its own), so
// nothing but the send queue paces it: a dialer's WriteTo waits for room
// up to [ClientConfig.SendWait] (default 20 ms) before it drops, so that
// a burst larger than the queue waits for TCP instead of being lost.
//
// # Use
//
// The hub runs a second quic.Transport with the Listener as its Conn,
// beside the UDP one, with the same ConnectionIDLength,
// StatelessResetKey and TokenGeneratorKey, and listens on it with the same
// TLS configuration (so session tickets, and so 0-RTT, work on either).
// Each client's packets come from its own [Addr], so quic-go tells the
// clients apart; a client that reconnects its TCP connection is a new
// address, like a NAT rebinding.
//
// The site dials one [PacketConn] per TCP path and gives it a
// quic.Transport of its own (same ConnectionIDLength as its UDP
// Transports), then dials the QUIC connection to [PacketConn.RemoteAddr].
// When the TCP connection fails, or the hub closes it, ReadFrom fails,
// the Transport closes and the QUIC connections on it end at once, not
// after the idle timeout: redial.
//
// A QUIC connection lives on the hub's Transport that accepted it: each
// Transport has its own table of connection IDs. So a connection cannot
// move between a UDP path and a TCP path (AddPath on the other kind of
// Transport): the hub's other Transport does not know its connection IDs,
// and the probe goes unanswered until its deadline (the connection stays
// where it was; TestNoMigrationBetweenUDPAndTCP). A move between UDP and
// TCP is a new connection (0-RTT makes it cheap), or another connection of
// the peer's multipath set.
//
// The QUIC configuration on a TCP path keeps quic-go's congestion control
// off (Godwit's quic.Config.DisableCongestionControl, as on UDP): TCP has
// its own, and a second controller on top would read TCP's queueing and
// retransmissions as congestion and throttle the tunnel for nothing. Set
// DisablePathMTUDiscovery: there is no UDP MTU to discover (quic-go does
// not probe here anyway, since these conns report no Don't Fragment
// support, but the setting says so and does not depend on it). Any
// InitialPacketSize up to MaxPacket works from the first packet on: the
// datagram limit is InitialPacketSize - 37 for the connection's life.
//
// # What quic-go sees
//
// [PacketConn] and [Listener] are deliberately not
// quic.OOBCapablePacketConn and have no SyscallConn: quic-go reads them
// one packet at a time into 1452-byte buffers (its limit for such conns)
// and writes one packet per WriteTo, with no GSO, no ECN and no DF bit;
// it compares their [Addr]s by String, which is made once per
// connection, so that costs no allocation per packet. They have a
// SetReadBuffer and a SetWriteBuffer that do nothing: quic-go calls them
// on every conn and, when they are missing, logs a buffer-size warning
// through the standard library's global logger, once per process, which
// would then also hide the warning about a real UDP socket. WriteTo never
// blocks, as a UDP send almost never does: quic-go may call it from a
// connection's run loop.
package tcppath
