// SPDX-License-Identifier: MIT

// Package nspawntest boots a real systemd (Debian 12's, 252) as PID 1 of
// a systemd-nspawn container for tests: the cached minimal Debian root
// ([Root]), booting it under a volatile overlay so the cache is never
// changed ([Boot]), running commands in it and writing files into its
// tmpfs layer, and halting it when the test ends, also when it failed.
//
// tests/ runs the shipped unit in it (TestNspawn) and packaging/ installs
// and purges the .deb in it (TestDeb), so neither changes the host. It
// imports package testing, so only tests may import it.
package nspawntest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

const (
	// Suite is the Debian release of the container: bookworm has systemd
	// 252, the oldest the unit is written for.
	Suite = "bookworm"
	// Packages go into the minimal root besides minbase: systemd as PID 1
	// and dbus for systemctl. Not procps: the unit must work without
	// /bin/kill.
	Packages = "systemd,systemd-sysv,dbus"
	// Cache holds the cached root; it belongs to this package, which
	// removes roots of other suites or package lists from it.
	Cache = "/var/cache/godwit-tests/nspawn"
)

// Require skips t (fails it with GODWIT_E2E=1) unless it runs as root
// with systemd-nspawn and nsenter installed.
func Require(t testing.TB) {
	t.Helper()
	labtest.RequireRoot(t)
	for _, tool := range []struct{ cmd, pkg string }{
		{"systemd-nspawn", "systemd-container"},
		{"nsenter", "util-linux"},
	} {
		if _, err := exec.LookPath(tool.cmd); err != nil {
			labtest.SkipOrFail(t, "%s is not installed (apt-get install %s)", tool.cmd, tool.pkg)
		}
	}
}

// Root returns the cached minimal Debian root, building it first if it
// is missing. A file lock serialises test processes; the root is built in
// a sibling directory and renamed into place, so a half-built root is
// never used (a leftover from a killed build is removed).
func Root(t testing.TB) string {
	t.Helper()
	sum := sha256.Sum256([]byte("minbase " + Suite + " " + Packages))
	name := Suite + "-" + hex.EncodeToString(sum[:6])
	root := filepath.Join(Cache, name)
	must(t, os.MkdirAll(Cache, 0o700))
	lock, err := os.OpenFile(filepath.Join(Cache, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	must(t, err)
	defer lock.Close()
	must(t, unix.Flock(int(lock.Fd()), unix.LOCK_EX))
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)

	// Roots of other suites or package lists are stale: remove them.
	entries, err := os.ReadDir(Cache)
	must(t, err)
	for _, e := range entries {
		if e.IsDir() && e.Name() != name {
			must(t, os.RemoveAll(filepath.Join(Cache, e.Name())))
		}
	}
	if _, err := os.Stat(filepath.Join(root, "usr/lib/systemd/systemd")); err == nil {
		return root
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		labtest.SkipOrFail(t, "no cached root in %s and debootstrap is not installed (apt-get install debootstrap)", Cache)
	}
	mirror, err := AptMirror(Suite)
	if err != nil {
		labtest.SkipOrFail(t, "no mirror for debootstrap: %v", err)
	}
	partial := root + ".partial"
	must(t, os.RemoveAll(partial))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	at := time.Now()
	out, err := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+Packages,
		Suite, partial, mirror).CombinedOutput()
	if err != nil {
		os.RemoveAll(partial)
		t.Fatalf("debootstrap %s from %s: %v\n%s", Suite, mirror, err, Tail(string(out), 30))
	}
	must(t, os.Rename(partial, root))
	t.Logf("built %s with debootstrap from %s in %v", root, mirror, time.Since(at).Round(time.Second))
	return root
}

// AptMirror returns the first URI that apt's sources (deb822 *.sources
// files or one-line sources.list entries) use for suite's binary packages.
func AptMirror(suite string) (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for stanza := range strings.SplitSeq(string(b), "\n\n") {
			fields := make(map[string][]string)
			for line := range strings.Lines(stanza) {
				if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, "#") {
					fields[strings.TrimSpace(k)] = strings.Fields(v)
				}
			}
			if slices.Contains(fields["Types"], "deb") && slices.Contains(fields["Suites"], suite) && len(fields["URIs"]) > 0 &&
				(fields["Enabled"] == nil || slices.Equal(fields["Enabled"], []string{"yes"})) {
				return fields["URIs"][0], nil
			}
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, lists...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(b)) {
			fs := strings.Fields(line)
			if len(fs) > 0 && fs[0] == "deb" {
				fs = fs[1:]
				if len(fs) > 0 && strings.HasPrefix(fs[0], "[") { // [arch=... signed-by=...]
					for len(fs) > 0 && !strings.HasSuffix(fs[0], "]") {
						fs = fs[1:]
					}
					if len(fs) > 0 {
						fs = fs[1:]
					}
				}
				if len(fs) >= 2 && fs[1] == suite {
					return fs[0], nil
				}
			}
		}
	}
	return "", fmt.Errorf("apt has no source for %s in /etc/apt/sources.list{,.d}", suite)
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Bind is a host path bound into the container.
type Bind struct {
	Src, Dst string // host path, path in the container
	Writable bool   // read-only unless set
}

// Options says how to boot a container.
type Options struct {
	// Root is the directory to boot, read-only under a tmpfs overlay
	// (usually [Root]'s).
	Root string
	// Machine names the container; "" makes a random godwit-<hex> name.
	Machine string
	// NetNS is a named network namespace (/run/netns/NAME) to boot in;
	// "" gives the container a private one with only a loopback.
	NetNS string
	// Binds are bound in after the root is set up.
	Binds []Bind
	// Args are more systemd-nspawn arguments (--capability=..., ...).
	Args []string
	// Log is the file for the console's and nspawn's output; "" puts it
	// in a temporary directory of the test.
	Log string
	// Unit is whose journal to print when the test failed; "" prints the
	// tail of the whole journal.
	Unit string
}

// Container is a booted systemd-nspawn container.
type Container struct {
	Machine string
	Leader  int // the container's PID 1, as the host sees it

	unit    string
	cmd     *exec.Cmd // systemd-nspawn
	done    chan struct{}
	console string
}

// Boot boots o.Root and waits until its systemd finished booting. When the
// test ends it prints the journal (on failure), halts the container and
// checks that nothing of it is left.
func Boot(t testing.TB, o Options) *Container {
	t.Helper()
	c := &Container{Machine: o.Machine, unit: o.Unit, done: make(chan struct{}), console: o.Log}
	if c.Machine == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.Machine = "godwit-" + hex.EncodeToString(b)
	}
	if c.console == "" {
		c.console = filepath.Join(t.TempDir(), "nspawn.log")
	}
	f, err := os.Create(c.console)
	must(t, err)
	defer f.Close()
	args := []string{
		"--directory=" + o.Root, "--volatile=overlay", "--boot", "--machine=" + c.Machine,
		// There is no host systemd to register with or to make a scope.
		"--register=no", "--keep-unit",
		"--console=pipe",
	}
	if o.NetNS != "" {
		args = append(args, "--network-namespace-path=/run/netns/"+o.NetNS)
	} else {
		args = append(args, "--private-network")
	}
	for _, b := range o.Binds {
		flag := "--bind-ro="
		if b.Writable {
			flag = "--bind="
		}
		args = append(args, flag+b.Src+":"+b.Dst)
	}
	c.cmd = exec.Command("systemd-nspawn", append(args, o.Args...)...)
	c.cmd.Stdout, c.cmd.Stderr = f, f
	// SIGTERM makes nspawn halt the container if the test dies.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	must(t, c.cmd.Start())
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.halt(t) })

	ourPIDNS, err := os.Readlink("/proc/self/ns/pid")
	must(t, err)
	labtest.WaitFor(t, 10*time.Second, "the container's PID 1", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%[1]d/children", c.cmd.Process.Pid))
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			pidns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
			if strings.TrimSpace(string(comm)) == "systemd" && pidns != "" && pidns != ourPIDNS {
				c.Leader = pid
				return true
			}
		}
		return false
	})
	var state string
	labtest.WaitFor(t, 60*time.Second, "the container's systemd booted", func() bool {
		out, _ := c.Exec(t, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(out)
		return state == "running" || state == "degraded"
	})
	if state == "degraded" {
		out, _ := c.Systemctl(t, "--failed")
		t.Logf("the container booted degraded:\n%s", out)
	}
	return c
}

// halt prints the journal when t failed, stops the container (SIGTERM to
// nspawn halts it in order; SIGKILL to its PID 1 ends the PID namespace if
// that takes over 15 s) and checks nothing is left.
func (c *Container) halt(t testing.TB) {
	if c.Leader != 0 && t.Failed() {
		if c.unit != "" {
			out, _ := c.Exec(t, "journalctl", "--no-pager", "-o", "short-monotonic", "-u", c.unit)
			t.Logf("--- journal of %s ---\n%s", c.unit, Tail(out, 200))
		} else {
			out, _ := c.Exec(t, "journalctl", "--no-pager", "-o", "short-monotonic")
			t.Logf("--- journal of %s ---\n%s", c.Machine, Tail(out, 100))
		}
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		t.Errorf("systemd-nspawn did not halt %s within 15 s of SIGTERM; killing it", c.Machine)
		if c.Leader != 0 {
			_ = syscall.Kill(c.Leader, syscall.SIGKILL)
		}
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	if t.Failed() {
		if b, err := os.ReadFile(c.console); err == nil {
			t.Logf("--- systemd-nspawn output ---\n%s", Tail(string(b), 60))
		}
	}
	if c.Leader != 0 {
		if err := syscall.Kill(c.Leader, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("the container's PID 1 (%d) is still there after nspawn exited: %v", c.Leader, err)
		}
	}
	// nspawn's per-machine directory for mount propagation.
	if _, err := os.Stat("/run/systemd/nspawn/propagate/" + c.Machine); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/run/systemd/nspawn/propagate/%s left after the container halted: %v", c.Machine, err)
	}
}

// Exec runs args inside the container (all its namespaces) and returns
// the combined output and exit code.
func (c *Container) Exec(t testing.TB, args ...string) (string, int) {
	t.Helper()
	// Not t.Context(): halt runs this in a cleanup, after it is done.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"-t", strconv.Itoa(c.Leader), "-a", "--"}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit) && ctx.Err() == nil:
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("in the container: %s: %v\n%s", strings.Join(args, " "), err, out)
		return "", 0
	}
}

// MustExec runs args in the container and fails t unless they exit 0.
func (c *Container) MustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, code := c.Exec(t, args...)
	if code != 0 {
		t.Fatalf("in the container: %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return out
}

// Systemctl runs systemctl in the container.
func (c *Container) Systemctl(t testing.TB, args ...string) (string, int) {
	t.Helper()
	return c.Exec(t, append([]string{"systemctl", "--no-pager"}, args...)...)
}

// Path returns the host's path of p in the container's file system.
func (c *Container) Path(p string) string {
	return filepath.Join(fmt.Sprintf("/proc/%d/root", c.Leader), p)
}

// WriteFile writes a file in the container (its tmpfs layer), making its
// directory with dirMode if needed.
func (c *Container) WriteFile(p string, data []byte, perm, dirMode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(c.Path(p)), dirMode); err != nil {
		return err
	}
	return os.WriteFile(c.Path(p), data, perm)
}

// RemoveFile removes a file in the container.
func (c *Container) RemoveFile(p string) error { return os.Remove(c.Path(p)) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
