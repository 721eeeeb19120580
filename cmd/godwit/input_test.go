// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// runGodwit runs the godwit binary with args and stdin, sends sig after
// signalAfter (0: never), and returns its exit code and stderr. It fails
// the test when the process is still running after 10 s (and kills it).
func runGodwit(t *testing.T, stdin *os.File, sig os.Signal, signalAfter time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(labtest.Godwit(t), args...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stderr = stdin, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if signalAfter > 0 {
		time.AfterFunc(signalAfter, func() { _ = cmd.Process.Signal(sig) })
	}
	kill := time.AfterFunc(10*time.Second, func() {
		t.Errorf("godwit %s still running after 10 s; killed", strings.Join(args, " "))
		_ = cmd.Process.Kill()
	})
	defer kill.Stop()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatalf("godwit %s: %v", strings.Join(args, " "), err)
	return 0, ""
}

// TestCheckNotRegular runs `godwit check` on what is not a config file:
// it must refuse at once with exit 78, not run out of memory on
// /dev/zero or hang on a FIFO.
func TestCheckNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "gw0.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, path := range []string{"/dev/zero", fifo} {
		start := time.Now()
		code, stderr := runGodwit(t, nil, nil, 0, "check", "-c", path)
		if code != exitConfig || !strings.Contains(stderr, path+" is not a regular file") {
			t.Errorf("godwit check -c %s = exit %d, %q; want exit %d saying it is not a regular file", path, code, stderr, exitConfig)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("godwit check -c %s took %v", path, d)
		}
	}
}

// TestSignalBeforeDaemon sends SIGTERM and SIGINT to commands that block
// before any daemon runs (pubkey waiting for its standard input, which
// never comes): they must end at once with 128+signal, not ignore the
// signal until SIGKILL because main took it over for a daemon that never
// started.
func TestSignalBeforeDaemon(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close() // never written: pubkey blocks reading r
	for _, tt := range []struct {
		sig  syscall.Signal
		code int
	}{{syscall.SIGTERM, 143}, {syscall.SIGINT, 130}} {
		start := time.Now()
		code, stderr := runGodwit(t, r, tt.sig, 300*time.Millisecond, "pubkey")
		if code != tt.code {
			t.Errorf("godwit pubkey after %v = exit %d (%q), want %d", tt.sig, code, stderr, tt.code)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("godwit pubkey took %v to end after %v", d, tt.sig)
		}
	}
}

// TestCheckKeyTrust runs `godwit check` and `godwit run` on a config whose
// key lies in a directory anyone may write to (scenario S10): both exit
// 78 at once, naming the file and the problem; run touches nothing.
func TestCheckKeyTrust(t *testing.T) {
	labtest.Godwit(t) // built before the clock starts
	dir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "gw0.key")
	if err := os.WriteFile(keyFile, []byte("iLkSW8jHbDGt52sE4ruhLJCCbvbsxbVUKJHrpzI3lNY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "gw0.toml")
	text := "[interface]\nprivate_key_file = \"" + keyFile + "\"\naddresses = [\"198.18.0.1/24\"]\nlisten = \":4433\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check", "run"} {
		start := time.Now()
		code, stderr := runGodwit(t, nil, nil, 0, cmd, "-c", cfg)
		want := "private key file " + keyFile + " is in directory " + dir + " with mode 0777"
		if code != exitConfig || !strings.Contains(stderr, want) {
			t.Errorf("godwit %s = exit %d, %q; want exit %d with %q", cmd, code, stderr, exitConfig, want)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("godwit %s took %v, want < 1 s", cmd, d)
		}
	}
}
