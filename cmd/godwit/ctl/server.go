// SPDX-License-Identifier: MIT

package ctl

// The daemon's side of the control socket.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// maxRequest caps the size of a request; real ones are ~20 bytes.
	maxRequest = 4 << 10
	// maxConns bounds the connections served at once; more are closed
	// at once.
	maxConns = 8
)

// Server answers requests on the control socket: the daemon's side of
// the protocol. Make one with [Listen].
type Server struct {
	path string
	log  *slog.Logger
	snap func() *Status
	ln   *net.UnixListener
	lock *os.File // flock'ed path+".lock"; held while serving
	sem  chan struct{}
	wg   sync.WaitGroup
	// reload, if set, applies the config file again ("reload").
	reload atomic.Pointer[func() error]
}

// HandleReload makes the "reload" command call f: its error, if any, is
// the answer's Error, so that `godwit reload` fails loudly.
func (s *Server) HandleReload(f func() error) { s.reload.Store(&f) }

// ErrBusy means another live daemon holds the socket's lock.
var ErrBusy = errors.New("control socket in use by another running daemon")

// Listen creates the control socket at path and serves it until Close:
// every "status" request is answered with snap(). The socket belongs to
// whoever holds an flock on path+".lock", so a socket left by a crashed
// daemon is replaced, but a live daemon's socket is not (two daemons with
// the same interface name in different network namespaces share Dir):
// then Listen fails with an error wrapping [ErrBusy]. The directory of
// path is created (mode 0700) when missing, and tightened to 0700 when it
// is Dir.
func Listen(path string, snap func() *Status, log *slog.Logger) (_ *Server, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if dir == Dir {
		// Only our own directory: an override may live in a shared one.
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
	}
	lock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	// We hold the lock, so a socket file here is a dead daemon's.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket: removing stale socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s := &Server{path: path, log: log, snap: snap, ln: ln, lock: lock, sem: make(chan struct{}, maxConns)}
	s.wg.Go(s.serve)
	log.Debug("control socket listening", "socket", path)
	return s, nil
}

// lockFile opens and flocks path without blocking. It returns ErrBusy
// when another process holds the lock. It checks after locking that path
// still names the locked file, since a stopping daemon unlinks it.
func lockFile(path string) (*os.File, error) {
	for range 5 {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("control socket: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, ErrBusy
			}
			return nil, fmt.Errorf("control socket: lock %s: %w", path, err)
		}
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return f, nil
		}
		f.Close() // unlinked by its previous owner after we opened it
	}
	return nil, fmt.Errorf("control socket: %s keeps changing", path)
}

func (s *Server) serve() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("control socket accept", "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. EMFILE; do not spin
			continue
		}
		select {
		case s.sem <- struct{}{}:
		default:
			c.Close() // too many at once
			continue
		}
		s.wg.Go(func() {
			defer func() { <-s.sem }()
			s.handle(c)
		})
	}
}

// handle answers the one request on c and closes it.
func (s *Server) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(Timeout))
	var req Request
	var resp Response
	if err := json.NewDecoder(io.LimitReader(c, maxRequest)).Decode(&req); err != nil {
		resp.Error = fmt.Sprintf("bad request: %v", err)
	} else {
		switch req.Cmd {
		case "status":
			resp.Status = s.snap()
		case "reload":
			if f := s.reload.Load(); f == nil {
				resp.Error = "this daemon cannot reload"
			} else if err := (*f)(); err != nil {
				resp.Error = err.Error()
			} else {
				resp.Reloaded = true
			}
		default:
			resp.Error = fmt.Sprintf("unknown command %q", req.Cmd)
		}
	}
	if err := json.NewEncoder(c).Encode(&resp); err != nil {
		s.log.Debug("control socket write", "err", err)
	}
}

// Close stops serving, waits for the connections being answered, removes
// the socket and releases the lock.
func (s *Server) Close() {
	s.ln.Close() // unlinks the socket file
	s.wg.Wait()
	_ = os.Remove(s.path + ".lock") // while holding the lock: see lockFile
	s.lock.Close()
	if dir := filepath.Dir(s.path); filepath.Dir(dir) == Dir {
		_ = os.Remove(dir) // a namespace's directory (NetnsDir), if no other daemon uses it
	}
}
