// SPDX-License-Identifier: MIT

// Package quicconn is Godwit's QUIC layer and nothing else: the UDP socket
// (with SO_MARK and a wrapper that turns "network gone" send errors into
// packet loss), one long-lived [quic.Transport] per [Endpoint], the TLS
// identity made from the node's Ed25519 key with key pinning on both sides,
// the quic-go configuration, dialing and accepting, the control stream
// (hello, heartbeat, goodbye; its codec is quicconn/internal/ctlmsg) and the
// client's redial loop ([Endpoint.DialLoop]), and what can be observed of
// them: a counting tracer on every connection ([ConnStats]), optional qlog
// files and TLS key logs ([Config]), and the UDP buffer sizes and kernel
// drop counters ([Endpoint.SocketBuffers], [BufferAdvice],
// [UDPRcvbufErrors]).
//
// A [Conn] carries one IP packet per QUIC DATAGRAM frame. Its first
// bidirectional stream, opened by the dialer, is the control stream. Callers
// never see quic-go types: package tunnel uses a [Conn] through a small
// interface of its own.
//
// Mobility: a dialing Endpoint can hold one more Transport per uplink
// interface ([Endpoint.AddUplink], bound to the device, same connection-ID
// length and reset key), dial on one ([Endpoint.DialVia]), validate standby
// paths on the others ([Conn.ProbeUplink]) and move a live connection to
// one without a new handshake ([Conn.SwitchUplink]), counting each
// migration and its outage. [Mobility.PathDead] reports a silent path long
// before the idle timeout; the policy that uses all this ([Mobility]) is
// package quicconn/mobility.
//
// Multipath: a site may instead keep one connection per uplink to a peer
// ([Endpoint.DialLoopOn]: pinned connections that never move), which the
// peer groups into a set. [Config.Multipath] announces this in the hello
// exchange with the Endpoint's [Endpoint.Instance] and, from the dialer,
// the [MultipathMode] the peer should use ([Conn.Multipath]).
// [Conn.MonitorPath] judges each connection's path within a few RTTs
// under traffic and within a second when idle ([Conn.PathHealth], Up,
// Silent, Lossy or Down, reported on every change); health.go explains
// how.
//
// Floods (flood.go): a listener sends a Retry to new clients while more
// than 16 handshakes are pending, takes every connection out of quic-go's
// accept queue at once, logs refusals one by one only up to a budget and
// otherwise as one summary line per 10 s, and closes a peer that floods
// its control stream; [EndpointStats] counts all of it. The patched
// quic-go keeps the amplification limit before address validation.
//
// Restarts: [Config.StateDir] keeps the stateless-reset, session-ticket and
// token keys and the client's session tickets, so a restarted listener
// resets its peers' old connections at once and a restarted dialer sends
// its first datagrams in 0-RTT ([Endpoint.Dial]). Tickets are single-use
// on the listener, so a replayed first flight never delivers twice; the
// details are in zerortt.go and quicconn/internal/state.
package quicconn
