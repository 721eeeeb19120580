// SPDX-License-Identifier: MIT

//go:build unix

package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadPrivateKeyFileFIFO gives a named pipe as the key file: it must be
// refused at once, not block until something writes to the pipe.
func TestReadPrivateKeyFileFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw0.key")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ReadPrivateKeyFile(path)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadPrivateKeyFile(fifo) = %v, want a not-a-regular-file error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadPrivateKeyFile(fifo) still blocked after 10 s")
	}
}

// TestLoadNotRegular gives Load what is not a config file: it must refuse
// at once, naming the file, and not read /dev/zero until memory runs out
// or block on a FIFO until a writer comes.
func TestLoadNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "gw0.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, path := range []string{"/dev/zero", fifo, t.TempDir()} {
		done := make(chan error, 1)
		go func() {
			_, err := Load(path)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), path+" is not a regular file") {
				t.Errorf("Load(%s) = %v, want a not-a-regular-file error naming it", path, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) still running after 10 s", path)
		}
	}
}

// TestReadPrivateKeyFileTrust covers the cases of scenario S10 beyond the
// key file's own mode (TestReadPrivateKeyFile): a key owned by another
// user, a key in a directory that others may write to (also through a
// symbolic link, and further up), and the sticky /tmp-like directory,
// which is fine.
func TestReadPrivateKeyFileTrust(t *testing.T) {
	k, dir := newKeyDir(t)
	others := writeKey(t, dir, "others.key", k, 0o604)
	open := filepath.Join(dir, "open")
	openSub := filepath.Join(open, "sub")
	sticky := filepath.Join(dir, "sticky")
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{open, 0o777}, {openSub, 0o700}, {sticky, 0o777 | os.ModeSticky}} {
		if err := os.Mkdir(d.path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
	inOpen := writeKey(t, open, "gw0.key", k, 0o600)
	inOpenSub := writeKey(t, openSub, "gw0.key", k, 0o600)
	inSticky := writeKey(t, sticky, "gw0.key", k, 0o600)
	good := writeKey(t, dir, "good.key", k, 0o600)
	linkInOpen := filepath.Join(open, "link.key")
	if err := os.Symlink(good, linkInOpen); err != nil {
		t.Fatal(err)
	}
	linkToOpen := filepath.Join(dir, "link-to-open.key")
	if err := os.Symlink(inOpen, linkToOpen); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, path, wantErr string
	}{
		{"mode 0604", others, "private key file " + others + " has mode 0604"},
		{"directory 0777", inOpen, "private key file " + inOpen + " is in directory " + open + " with mode 0777, which group or others may write to: they could replace the key (chmod go-w " + open + ")"},
		{"directory above 0777", inOpenSub, "is in directory " + open + " with mode 0777"},
		{"symlink in a 0777 directory", linkInOpen, "is in directory " + open + " with mode 0777"},
		{"symlink into a 0777 directory", linkToOpen, "is in directory " + open + " with mode 0777"},
		{"sticky directory", inSticky, ""},
	}
	if os.Geteuid() == 0 {
		owned := writeKey(t, dir, "owned.key", k, 0o600)
		if err := os.Chown(owned, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ name, path, wantErr string }{"owned by another user", owned,
			"private key file " + owned + " is owned by uid 65534, not by this process's user (uid 0) or root: another user controls the key (chown 0 " + owned + ")"})
	} else {
		t.Log("not root: the case of a key owned by another user is left out")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadPrivateKeyFile(tt.path)
			if tt.wantErr == "" {
				if err != nil || got != k {
					t.Errorf("ReadPrivateKeyFile = %v, %v; want the key", got, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ReadPrivateKeyFile error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
