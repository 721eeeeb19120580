// SPDX-License-Identifier: MIT

package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long Close waits after SIGTERM before it sends SIGKILL.
const stopGrace = 3 * time.Second

// Lab is a set of network namespaces, links and processes that belong to
// one run. Create it with [New] and always call [Lab.Close].
//
// The methods of Lab and of the [NS] and [Proc] values it hands out are
// safe for concurrent use.
type Lab struct {
	// ID is the random per-run suffix of every namespace name.
	ID string
	// Dir is a temporary directory for configs, keys and logs; Close
	// removes it.
	Dir string

	prefix    string
	closeOnce sync.Once
	closeErr  error

	// mu guards the following fields.
	mu     sync.Mutex
	closed bool
	nss    []*NS
	procs  []*Proc
}

// New makes an empty lab whose namespaces are named "<prefix>-<name>-<ID>".
// It requires root and the `ip` command and says so clearly otherwise.
// Keep prefix short; it only shows up in namespace names and Dir.
func New(prefix string) (*Lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("netlab: network namespaces need root (run as root or with sudo -E)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("netlab: the ip command (iproute2) is required: %w", err)
	}
	if prefix == "" || strings.ContainsAny(prefix, "/ \t\n") {
		return nil, fmt.Errorf("netlab: bad prefix %q", prefix)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("netlab: random id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	dir, err := os.MkdirTemp("", prefix+"-"+id+"-")
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	// Who owns the lab, for RemoveStale after a kill -9.
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("netlab: %w", err)
	}
	return &Lab{ID: id, Dir: dir, prefix: prefix}, nil
}

// ownerFile, in a lab's Dir, holds the process id of the program that made
// the lab.
const ownerFile = "owner.pid"

// RemoveStale removes what labs with prefix left behind when their program
// died without Close (kill -9): their namespaces (with every link and TUN
// in them, and so every process inside loses its network) and their
// directories (config files, private keys). A lab whose program still
// runs is left alone. It returns the directories it removed.
func RemoveStale(prefix string) ([]string, error) {
	if prefix == "" || strings.ContainsAny(prefix, "/ \t\n*?[") {
		return nil, fmt.Errorf("netlab: bad prefix %q", prefix)
	}
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), prefix+"-*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, dir := range dirs {
		rest := strings.TrimPrefix(filepath.Base(dir), prefix+"-")
		id, _, ok := strings.Cut(rest, "-")
		if !ok || len(id) != 6 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not a lab, or one being made
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			continue // its program runs (or cannot be told)
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		for _, line := range strings.Split(string(out), "\n") {
			name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			if strings.HasPrefix(name, prefix+"-") && strings.HasSuffix(name, "-"+id) {
				if err := run("ip", "netns", "del", name); err != nil {
					errs = append(errs, err)
				}
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, dir)
	}
	return removed, errors.Join(errs...)
}

// Close stops every process the lab started (SIGTERM, then SIGKILL after
// 3 s), deletes every namespace it made (which removes their links and
// TUN devices) and removes Dir. It is idempotent, safe after a partial
// setup and safe to call from a signal handler goroutine; later calls
// wait for the first one and return its result.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.close() })
	return l.closeErr
}

func (l *Lab) close() error {
	l.mu.Lock()
	l.closed = true
	procs, nss := l.procs, l.nss
	l.procs, l.nss = nil, nil
	l.mu.Unlock()

	var errs []error
	for _, p := range procs {
		if !p.Exited() {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	deadline := time.After(stopGrace)
	for _, p := range procs {
		select {
		case <-p.done:
		case <-deadline:
		}
	}
	for _, p := range procs {
		if !p.Exited() {
			_ = p.Signal(syscall.SIGKILL)
		}
		// Kill leftovers of the process group (children of a shell, say),
		// also when the leader exited by itself.
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		if !p.Exited() {
			select {
			case <-p.done:
			case <-time.After(stopGrace):
				errs = append(errs, fmt.Errorf("netlab: process %s (pid %d) did not exit after SIGKILL", p.Name, p.Cmd.Process.Pid))
			}
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "delete", nss[i].Name).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("netlab: ip netns delete %s: %w: %s", nss[i].Name, err, strings.TrimSpace(string(out))))
		}
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		errs = append(errs, fmt.Errorf("netlab: %w", err))
	}
	return errors.Join(errs...)
}

// NS creates the namespace "<prefix>-<name>-<ID>" with its loopback up.
func (l *Lab) NS(name string) (*NS, error) {
	n := &NS{Name: l.prefix + "-" + name + "-" + l.ID, lab: l}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("netlab: lab is closed")
	}
	// Track the name before creating it, so a Close racing with this call
	// still deletes it (deleting a missing namespace only yields an error).
	l.nss = append(l.nss, n)
	l.mu.Unlock()
	if err := run("ip", "netns", "add", n.Name); err != nil {
		return nil, err
	}
	if err := run("ip", "-n", n.Name, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// Link makes a veth pair with end aIf in a and end bIf in b, and sets both
// ends up. Interface names must be at most 15 bytes.
func (l *Lab) Link(a *NS, aIf string, b *NS, bIf string) error {
	if len(aIf) > 15 || len(bIf) > 15 {
		return fmt.Errorf("netlab: interface names %q/%q longer than 15 bytes", aIf, bIf)
	}
	// The netns attributes make the kernel create each end directly in its
	// namespace, so the names never collide in the caller's namespace.
	if err := run("ip", "link", "add", aIf, "netns", a.Name, "type", "veth", "peer", bIf, "netns", b.Name); err != nil {
		return err
	}
	if err := run("ip", "-n", a.Name, "link", "set", aIf, "up"); err != nil {
		return err
	}
	return run("ip", "-n", b.Name, "link", "set", bIf, "up")
}

// run runs a command and returns an error carrying the command line and its
// combined output.
func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

func output(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netlab: %s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
