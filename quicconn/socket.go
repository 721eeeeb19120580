// SPDX-License-Identifier: MIT

package quicconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"
)

// sockConn is the UDP socket handed to quic-go. It embeds *net.UDPConn, so
// it still satisfies [quic.OOBCapablePacketConn] (GSO, ECN, recvmmsg, DF),
// and it turns "network gone" send errors into packet loss: quic-go closes
// a connection on any send error but EMSGSIZE, which would kill every
// connection the moment an uplink goes away (reference section 2.3 #3).
type sockConn struct {
	*net.UDPConn
	unreachable *atomic.Uint64 // send errors swallowed; shared with the Endpoint
}

var _ quic.OOBCapablePacketConn = (*sockConn)(nil)

// isNetGone reports whether err is a send error that means "no route right
// now" rather than a broken socket.
func isNetGone(err error) bool {
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.ENETDOWN) ||
		errors.Is(err, syscall.EPERM)
}

// WriteMsgUDP is the path of every quic-go send on Linux.
func (s *sockConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	n, oobn, err := s.UDPConn.WriteMsgUDP(b, oob, addr)
	if err != nil && isNetGone(err) {
		s.unreachable.Add(1)
		return len(b), len(oob), nil
	}
	return n, oobn, err
}

// WriteTo is used only when quic-go cannot use the OOB path.
func (s *sockConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := s.UDPConn.WriteTo(b, addr)
	if err != nil && isNetGone(err) {
		s.unreachable.Add(1)
		return len(b), nil
	}
	return n, err
}

// listenUDP opens the endpoint's socket on addr ("" = wildcard, ephemeral
// port), with SO_MARK set to mark when it is non-zero and the buffers
// raised as far as allowed (raiseBuffers).
func listenUDP(addr string, mark uint32, unreachable *atomic.Uint64) (*sockConn, error) {
	return listenUDPOn(addr, "", mark, unreachable)
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
	pc, err := lc.ListenPacket(context.Background(), "udp", addr)
	if err != nil {
		return nil, fmt.Errorf("quicconn: listen udp %s: %w", addr, err)
	}
	return &sockConn{UDPConn: pc.(*net.UDPConn), unreachable: unreachable}, nil
}
