// SPDX-License-Identifier: MIT

package quicconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

func TestIsNetGone(t *testing.T) {
	wrap := func(e error) error {
		return &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmsg", e)}
	}
	tests := []struct {
		err  error
		want bool
	}{
		{wrap(syscall.ENETUNREACH), true},
		{wrap(syscall.EHOSTUNREACH), true},
		{wrap(syscall.EADDRNOTAVAIL), true},
		{wrap(syscall.ENETDOWN), true},
		{wrap(syscall.EPERM), true},
		{wrap(syscall.EMSGSIZE), false},
		{wrap(syscall.EBADF), false},
		{net.ErrClosed, false},
		{errors.New("other"), false},
	}
	for _, tt := range tests {
		if got := isNetGone(tt.err); got != tt.want {
			t.Errorf("isNetGone(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// getsockoptInt reads the integer socket option level/opt of c; only the
// getsockopt call's own error is returned.
func getsockoptInt(t *testing.T, c syscall.Conn, level, opt int) (int, error) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	return v, gerr
}

func TestFwMark(t *testing.T) {
	labtest.RequireRoot(t)
	var n atomic.Uint64
	sc, err := listenUDP("127.0.0.1:0", 0x4711, &n)
	if err != nil {
		t.Fatalf("listenUDP with mark: %v", err)
	}
	defer sc.Close()
	mark, gerr := getsockoptInt(t, sc, unix.SOL_SOCKET, unix.SO_MARK)
	if gerr != nil {
		t.Fatalf("getsockopt SO_MARK: %v", gerr)
	}
	if mark != 0x4711 {
		t.Errorf("SO_MARK = %#x, want 0x4711", mark)
	}
}

// TestUnreachableIsLoss sends from a fresh network namespace that has no
// route at all (its lo is down), so the kernel answers ENETUNREACH without
// a packet leaving: the wrapper must report success and count it.
func TestUnreachableIsLoss(t *testing.T) {
	labtest.RequireRoot(t)
	type result struct {
		err        error
		count      uint64
		plainErr   error
		wrappedErr error
	}
	res := make(chan result, 1)
	go func() {
		// The thread stays locked and dies with this goroutine, taking
		// the anonymous namespace with it.
		runtime.LockOSThread()
		var r result
		defer func() { res <- r }()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("unshare: %w", err)
			return
		}
		var n atomic.Uint64
		sc, err := listenUDP("0.0.0.0:0", 0, &n)
		if err != nil {
			r.err = err
			return
		}
		defer sc.Close()
		dst := &net.UDPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 9}
		_, _, r.plainErr = sc.UDPConn.WriteMsgUDP([]byte("x"), nil, dst)
		_, _, r.wrappedErr = sc.WriteMsgUDP([]byte("x"), nil, dst)
		if _, err := sc.WriteTo([]byte("x"), dst); err != nil && r.wrappedErr == nil {
			r.wrappedErr = err
		}
		r.count = n.Load()
	}()
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !errors.Is(r.plainErr, syscall.ENETUNREACH) {
		t.Fatalf("plain send in an empty namespace = %v, want ENETUNREACH (test premise)", r.plainErr)
	}
	if r.wrappedErr != nil {
		t.Errorf("wrapped send = %v, want nil (treated as loss)", r.wrappedErr)
	}
	if r.count != 2 {
		t.Errorf("unreachable counter = %d, want 2", r.count)
	}
}

// cmsg encodes one control message the way quic-go's
// appendUDPSegmentSizeMsg does (a unix.Cmsghdr, then the data, padded to
// the alignment).
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

// segmentMsg is a UDP_SEGMENT control message for size.
func segmentMsg(size uint16) []byte {
	return cmsg(unix.IPPROTO_UDP, unix.UDP_SEGMENT, binary.NativeEndian.AppendUint16(nil, size))
}

func TestGSOSegmentSize(t *testing.T) {
	ecn4 := cmsg(unix.IPPROTO_IP, unix.IP_TOS, []byte{2, 0, 0, 0})
	ecn6 := cmsg(unix.IPPROTO_IPV6, unix.IPV6_TCLASS, []byte{2, 0, 0, 0})
	pktinfo := unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: [4]byte{127, 0, 0, 1}})
	join := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	short := segmentMsg(1350)
	short = short[:unix.CmsgLen(0)+1]
	tests := []struct {
		name string
		oob  []byte
		want int
	}{
		{"none", nil, 0},
		{"ECN only", ecn4, 0},
		{"segment alone", segmentMsg(1350), 1350},
		{"after ECN", join(ecn4, segmentMsg(1228)), 1228},
		{"after packet info and ECN", join(pktinfo, ecn6, segmentMsg(1452)), 1452},
		{"first one counts", join(segmentMsg(1000), segmentMsg(1200)), 1000},
		{"truncated header", segmentMsg(1350)[:unix.CmsgLen(0)-1], 0},
		{"truncated data", short, 0},
		{"length past the end", append(ecn4[:len(ecn4):len(ecn4)], segmentMsg(1350)[:unix.CmsgLen(2)-1]...), 0},
		{"UDP_GRO is not UDP_SEGMENT", cmsg(unix.IPPROTO_UDP, unix.UDP_GRO, []byte{0x10, 0x05}), 0},
	}
	for _, tt := range tests {
		if got := gsoSegmentSize(tt.oob); got != tt.want {
			t.Errorf("gsoSegmentSize(%s) = %d, want %d", tt.name, got, tt.want)
		}
	}
	oob := join(pktinfo, ecn6, segmentMsg(1452))
	if n := testing.AllocsPerRun(100, func() { _ = gsoSegmentSize(oob) }); n != 0 {
		t.Errorf("gsoSegmentSize allocates %v times, want 0", n)
	}
}

// FuzzGSOSegmentSize checks gsoSegmentSize against x/sys's parser: where
// unix.ParseSocketControlMessage accepts oob, the result is the data of
// its first UDP_SEGMENT message (0 if that is shorter than 2 bytes or
// there is none); anything else must not panic and gives a uint16.
func FuzzGSOSegmentSize(f *testing.F) {
	f.Add([]byte{})
	f.Add(segmentMsg(1350))
	f.Add(append(cmsg(unix.IPPROTO_IP, unix.IP_TOS, []byte{2, 0, 0, 0}), segmentMsg(1228)...))
	f.Add(append(unix.PktInfo6(&unix.Inet6Pktinfo{}), segmentMsg(1452)...))
	f.Add(cmsg(unix.IPPROTO_UDP, unix.UDP_SEGMENT, nil))
	f.Fuzz(func(t *testing.T, oob []byte) {
		got := gsoSegmentSize(oob)
		if got < 0 || got > 0xffff {
			t.Fatalf("gsoSegmentSize = %d, not a uint16", got)
		}
		msgs, err := unix.ParseSocketControlMessage(oob)
		if err != nil {
			return
		}
		want := 0
		for _, m := range msgs {
			if m.Header.Level == unix.IPPROTO_UDP && m.Header.Type == unix.UDP_SEGMENT {
				if len(m.Data) >= 2 {
					want = int(binary.NativeEndian.Uint16(m.Data))
				}
				break
			}
		}
		if got != want {
			t.Fatalf("gsoSegmentSize = %d, x/sys parses %d", got, want)
		}
	})
}

// TestSendCounts sends through the wrapper with and without GSO over
// loopback and checks both the counters and what arrives.
func TestSendCounts(t *testing.T) {
	var n atomic.Uint64
	sc, err := listenUDP("127.0.0.1:0", 0, &n)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	rcv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	dst := rcv.LocalAddr().(*net.UDPAddr)
	tests := []struct {
		name      string
		len       int
		oob       []byte
		wantSizes []int // datagrams that arrive
	}{
		{"plain", 500, nil, []int{500}},
		{"ECN only", 700, cmsg(unix.IPPROTO_IP, unix.IP_TOS, []byte{2, 0, 0, 0}), []int{700}},
		{"GSO, even", 3000, segmentMsg(1000), []int{1000, 1000, 1000}},
		{"GSO, short last segment", 2500, segmentMsg(1000), []int{1000, 1000, 500}},
		{"GSO, one segment", 800, segmentMsg(1000), []int{800}},
	}
	buf := make([]byte, 1<<16)
	for _, tt := range tests {
		c0, s0 := sc.sendCalls.Load(), sc.sendSegments.Load()
		if _, _, err := sc.WriteMsgUDP(make([]byte, tt.len), tt.oob, dst); err != nil {
			t.Fatalf("%s: WriteMsgUDP: %v", tt.name, err)
		}
		if c, s := sc.sendCalls.Load()-c0, sc.sendSegments.Load()-s0; c != 1 || s != uint64(len(tt.wantSizes)) {
			t.Errorf("%s: counted %d calls, %d segments; want 1, %d", tt.name, c, s, len(tt.wantSizes))
		}
		for i, want := range tt.wantSizes {
			_ = rcv.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, _, err := rcv.ReadFromUDP(buf)
			if err != nil {
				t.Fatalf("%s: datagram %d: %v", tt.name, i, err)
			}
			if got != want {
				t.Errorf("%s: datagram %d has %d bytes, want %d", tt.name, i, got, want)
			}
		}
	}
	c0, s0 := sc.sendCalls.Load(), sc.sendSegments.Load()
	if _, err := sc.WriteTo([]byte("x"), dst); err != nil {
		t.Fatal(err)
	}
	if c, s := sc.sendCalls.Load()-c0, sc.sendSegments.Load()-s0; c != 1 || s != 1 {
		t.Errorf("WriteTo: counted %d calls, %d segments; want 1, 1", c, s)
	}
	// A failed send is not counted.
	c0, s0 = sc.sendCalls.Load(), sc.sendSegments.Load()
	if _, _, err := sc.WriteMsgUDP(make([]byte, 1<<17), nil, dst); err == nil {
		t.Fatal("sending 128 KiB in one datagram succeeded")
	}
	if c, s := sc.sendCalls.Load()-c0, sc.sendSegments.Load()-s0; c != 0 || s != 0 {
		t.Errorf("failed send: counted %d calls, %d segments; want 0, 0", c, s)
	}
}

// TestListenIPv4Only: listen = "0.0.0.0:PORT" listens on IPv4 only (Go's
// plain "udp" would take IPv6 too); an empty host or "[::]" keeps both.
func TestListenIPv4Only(t *testing.T) {
	for _, tt := range []struct{ addr, want string }{
		{"0.0.0.0:4433", "udp4"}, {"192.0.2.1:4433", "udp4"}, {":4433", "udp"},
		{"[::]:4433", "udp"}, {"[2001:db8::1]:4433", "udp"}, {"bad", "udp"},
	} {
		if got := listenNetwork("udp", tt.addr); got != tt.want {
			t.Errorf("listenNetwork(udp, %q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
	c, err := listenUDPOn("0.0.0.0:0", "", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := c.LocalAddr().(*net.UDPAddr).Port
	v6, err := net.DialUDP("udp6", nil, &net.UDPAddr{IP: net.IPv6loopback, Port: port})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer v6.Close()
	if _, err := v6.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, _, err := c.ReadFromUDP(make([]byte, 16)); err == nil {
		t.Errorf("a socket listening on 0.0.0.0 received a datagram sent to [::1]")
	}
}
