// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// sockConn is the UDP socket handed to quic-go. It embeds *net.UDPConn, so
// it still satisfies [quic.OOBCapablePacketConn] (GSO, ECN, recvmmsg, DF),
// and it turns "network gone" send errors into packet loss: quic-go closes
// a connection on any send error but EMSGSIZE, which would kill every
// connection the moment an uplink goes away (the next sendmsg fails with
// ENETUNREACH, EADDRNOTAVAIL, EHOSTUNREACH or EPERM).
type sockConn struct {
	*net.UDPConn
	unreachable *atomic.Uint64 // send errors swallowed; shared with the Endpoint

	// Sends the kernel took: sendmsg/sendto calls, and the UDP datagrams
	// they carried (a GSO call carries several). Written by quic-go's send
	// queue, read by Endpoint.UDPSendStats.
	sendCalls, sendSegments atomic.Uint64
}

var _ quic.OOBCapablePacketConn = (*sockConn)(nil)

// isNetGone reports whether err is a send error that means "no route right
// now" rather than a broken socket.
func isNetGone(err error) bool {
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENETDOWN) ||
		errors.Is(err, syscall.EPERM)
}

// WriteMsgUDP is the path of every quic-go send on Linux. A successful
// call is counted with the number of UDP datagrams it carried: one, or
// with GSO (a UDP_SEGMENT control message in oob) len(b) divided by the
// segment size, rounded up.
func (s *sockConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	n, oobn, err := s.UDPConn.WriteMsgUDP(b, oob, addr)
	if err != nil {
		if isNetGone(err) {
			s.unreachable.Add(1)
			return len(b), len(oob), nil
		}
		return n, oobn, err
	}
	segs := uint64(1)
	if size := gsoSegmentSize(oob); size > 0 && len(b) > size {
		segs = uint64((len(b) + size - 1) / size)
	}
	s.sendCalls.Add(1)
	s.sendSegments.Add(segs)
	return n, oobn, nil
}

// WriteTo is used only when quic-go cannot use the OOB path.
func (s *sockConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := s.UDPConn.WriteTo(b, addr)
	if err != nil {
		if isNetGone(err) {
			s.unreachable.Add(1)
			return len(b), nil
		}
		return n, err
	}
	s.sendCalls.Add(1)
	s.sendSegments.Add(1)
	return n, nil
}

// gsoSegmentSize returns the segment size of the first UDP_SEGMENT control
// message (level IPPROTO_UDP, a native-endian uint16) in oob, or 0 if
// there is none or oob is malformed. It does not allocate.
func gsoSegmentSize(oob []byte) int {
	for len(oob) >= unix.CmsgLen(0) { // ParseOneSocketControlMessage reads a whole header
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if hdr.Level == unix.IPPROTO_UDP && hdr.Type == unix.UDP_SEGMENT {
			if len(data) < 2 {
				return 0
			}
			return int(binary.NativeEndian.Uint16(data))
		}
		oob = rest
	}
	return 0
}

// UDPSendStats returns how many send calls (sendmsg, or sendto where
// quic-go cannot use control messages) the kernel took on the Endpoint's
// socket and on the sockets of its open uplinks, and how many UDP
// datagrams they carried. segments/calls is the GSO batch size: 1 without
// GSO. Failed sends are not counted (those quic-go treats as loss are in
// EndpointStats.UnreachableDrops). The counts only grow, except that the
// counts of an uplink's socket leave the sum when the socket closes.
// Safe for concurrent use; two atomic loads per socket.
func (e *Endpoint) UDPSendStats() (calls, segments uint64) {
	calls, segments = e.sock.sendCalls.Load(), e.sock.sendSegments.Load()
	e.upMu.Lock()
	defer e.upMu.Unlock()
	for _, u := range e.upl.byName { // closed uplinks leave both maps
		calls += u.sock.sendCalls.Load()
		segments += u.sock.sendSegments.Load()
	}
	for u := range e.upl.lingering {
		calls += u.sock.sendCalls.Load()
		segments += u.sock.sendSegments.Load()
	}
	return calls, segments
}

// listenUDP opens the endpoint's socket on addr ("" = wildcard, ephemeral
// port), with SO_MARK set to mark when it is non-zero and the buffers
// raised as far as allowed (raiseBuffers).
func listenUDP(addr string, mark uint32, unreachable *atomic.Uint64) (*sockConn, error) {
	return listenUDPOn(addr, "", mark, unreachable)
}

// listenNetwork is network ("udp" or "tcp") for listening on addr: with
// an IPv4 literal host ("0.0.0.0:4433") the IPv4-only variant, because Go
// listens on both families for the IPv4 wildcard with the plain network,
// which a user who wrote 0.0.0.0 did not ask for. An empty host or an IPv6
// literal keeps the plain network.
func listenNetwork(network, addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return network
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		return network + "4"
	}
	return network
}

// listenUDPOn is listenUDP with the socket bound to the interface dev
// (SO_BINDTODEVICE) when dev is not "" (an uplink, see uplink.go).
func listenUDPOn(addr, dev string, mark uint32, unreachable *atomic.Uint64) (*sockConn, error) {
	if addr == "" {
		addr = ":0"
	}
	lc := net.ListenConfig{
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			if err := rc.Control(func(fd uintptr) {
				raiseBuffers(int(fd))
				if mark != 0 {
					if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
						serr = fmt.Errorf("set SO_MARK %#x: %w", mark, err)
						return
					}
				}
				if dev != "" {
					if err := unix.BindToDevice(int(fd), dev); err != nil {
						serr = fmt.Errorf("bind to device %s: %w", dev, err)
					}
				}
			}); err != nil {
				return err
			}
			return serr
		},
	}
	pc, err := lc.ListenPacket(context.Background(), listenNetwork("udp", addr), addr)
	if err != nil {
		return nil, fmt.Errorf("quicconn: listen udp %s: %w", addr, err)
	}
	return &sockConn{UDPConn: pc.(*net.UDPConn), unreachable: unreachable}, nil
}
