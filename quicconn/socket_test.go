// SPDX-License-Identifier: MIT

package quicconn

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root, or fails it when GODWIT_E2E=1
// says the environment must support it.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("GODWIT_E2E") == "1" {
		t.Fatal("test needs root (GODWIT_E2E=1 is set)")
	}
	t.Skip("test needs root")
}

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

func TestFwMark(t *testing.T) {
	requireRoot(t)
	var n atomic.Uint64
	sc, err := listenUDP("127.0.0.1:0", 0x4711, &n)
	if err != nil {
		t.Fatalf("listenUDP with mark: %v", err)
	}
	defer sc.Close()
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mark int
	var gerr error
	if err := rc.Control(func(fd uintptr) { mark, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK) }); err != nil {
		t.Fatal(err)
	}
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
	requireRoot(t)
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
