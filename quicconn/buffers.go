// SPDX-License-Identifier: MIT

package quicconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// wantedBufferSize is the UDP socket buffer size quic-go asks for, for
// receiving and for sending (its desiredBufferSize, 7 MiB). Linux reports
// double the size that was set, so quic-go is content once
// getsockopt(SO_RCVBUF) reports at least this much, which a
// net.core.rmem_max of 3.5 MiB already allows.
const wantedBufferSize = 7 << 20

// raiseBuffers does what quic-go does when it first uses the socket: ask
// for wantedBufferSize with SO_RCVBUF/SO_SNDBUF (capped by
// net.core.rmem_max/wmem_max) and, if that falls short, with
// SO_RCVBUFFORCE/SO_SNDBUFFORCE (which need CAP_NET_ADMIN). Doing it when
// the socket is made means SocketBuffers reports the final sizes from
// NewEndpoint on, also for an endpoint that has not dialed yet. Failures
// are not errors: quic-go tries again and logs its own warning.
func raiseBuffers(fd int) {
	for _, o := range []struct{ set, force int }{{unix.SO_RCVBUF, unix.SO_RCVBUFFORCE}, {unix.SO_SNDBUF, unix.SO_SNDBUFFORCE}} {
		if n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.set); err == nil && n >= wantedBufferSize {
			continue
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.set, wantedBufferSize)
		if n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.set); err == nil && n >= wantedBufferSize {
			continue
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.force, wantedBufferSize)
	}
}

// SocketBuffers returns the sizes of the endpoint's UDP receive and send
// buffers in bytes as the kernel reports them (getsockopt SO_RCVBUF and
// SO_SNDBUF; on Linux double the size that was set). The endpoint has
// tried to raise them to what quic-go asks for (7 MiB) already. See
// [BufferAdvice].
// Safe for concurrent use.
func (e *Endpoint) SocketBuffers() (rcv, snd int, err error) {
	rc, err := e.sock.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("quicconn: socket buffers: %w", err)
	}
	var rerr, serr error
	if err := rc.Control(func(fd uintptr) {
		rcv, rerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		snd, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
	}); err != nil {
		return 0, 0, fmt.Errorf("quicconn: socket buffers: %w", err)
	}
	if err := errors.Join(rerr, serr); err != nil {
		return 0, 0, fmt.Errorf("quicconn: socket buffers: %w", err)
	}
	return rcv, snd, nil
}

// BufferAdvice returns "" when both rcv and snd, as returned by
// [Endpoint.SocketBuffers], reach what quic-go asks for, and otherwise one line
// for the operator that says which buffer is short and how to fix it, e.g.
//
//	UDP receive buffer is 416 KiB, quic-go wants 7168 KiB: sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000 (or install packaging/sysctl.d/60-godwit.conf), or run with CAP_NET_ADMIN
func BufferAdvice(rcv, snd int) string {
	var short []string
	if rcv < wantedBufferSize {
		short = append(short, fmt.Sprintf("receive buffer is %d KiB", rcv/1024))
	}
	if snd < wantedBufferSize {
		short = append(short, fmt.Sprintf("send buffer is %d KiB", snd/1024))
	}
	if len(short) == 0 {
		return ""
	}
	return fmt.Sprintf("UDP %s, quic-go wants %d KiB: sysctl -w net.core.rmem_max=7500000 net.core.wmem_max=7500000 "+
		"(or install packaging/sysctl.d/60-godwit.conf), or run with CAP_NET_ADMIN", strings.Join(short, " and "), wantedBufferSize/1024)
}

// UDPRcvbufErrors returns how many UDP datagrams the kernel dropped
// because a socket's receive buffer was full, summed over IPv4 ("Udp:
// RcvbufErrors" in /proc/net/snmp) and IPv6 ("Udp6RcvbufErrors" in
// /proc/net/snmp6, skipped when IPv6 is off), for all sockets of the
// network namespace of the calling thread. quic-go never sees these
// drops. The counters only grow (until they wrap); compare two readings.
func UDPRcvbufErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("quicconn: %w", err)
	}
	n, err := parseSNMP(b)
	if err != nil {
		return 0, err
	}
	b, err = os.ReadFile("/proc/net/snmp6")
	if errors.Is(err, fs.ErrNotExist) {
		return n, nil
	}
	if err != nil {
		return 0, fmt.Errorf("quicconn: %w", err)
	}
	n6, err := parseSNMP6(b)
	if err != nil {
		return 0, err
	}
	return n + n6, nil
}

// parseSNMP returns RcvbufErrors of the "Udp:" rows of /proc/net/snmp: a
// header row of field names followed by a row of values.
func parseSNMP(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	var header []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		if len(f) != len(header) {
			return 0, fmt.Errorf("quicconn: /proc/net/snmp: Udp has %d names but %d values", len(header), len(f))
		}
		for i, name := range header {
			if name == "RcvbufErrors" && i > 0 {
				n, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("quicconn: /proc/net/snmp: Udp RcvbufErrors: %w", err)
				}
				return n, nil
			}
		}
		return 0, errors.New("quicconn: /proc/net/snmp: Udp has no RcvbufErrors")
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("quicconn: /proc/net/snmp: %w", err)
	}
	return 0, errors.New("quicconn: /proc/net/snmp: no Udp values")
}

// parseSNMP6 returns the Udp6RcvbufErrors row of /proc/net/snmp6 (one
// "name value" pair per line).
func parseSNMP6(b []byte) (uint64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != "Udp6RcvbufErrors" {
			continue
		}
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("quicconn: /proc/net/snmp6: Udp6RcvbufErrors: %w", err)
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("quicconn: /proc/net/snmp6: %w", err)
	}
	return 0, errors.New("quicconn: /proc/net/snmp6: no Udp6RcvbufErrors")
}
