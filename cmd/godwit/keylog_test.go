// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestOpenKeylog(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	private := write("private.log", 0o600)
	world := write("world.log", 0o644)
	group := write("group.log", 0o640)
	link := filepath.Join(dir, "link.log")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, wantErr string
	}{
		{"new file", filepath.Join(dir, "new.log"), ""},
		{"existing 0600", private, ""},
		{"world-readable", world, "key log file " + world + " has mode 0644: others could read the TLS secrets in it and decrypt the tunnel; remove it or chmod 600 " + world},
		{"group-readable", group, "has mode 0640"},
		{"symbolic link", link, "key log file " + link + " is not a regular file"},
		{"fifo", fifo, "key log file " + fifo + " is not a regular file"},
	}
	if os.Geteuid() == 0 {
		owned := write("owned.log", 0o600)
		if err := os.Chown(owned, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ name, path, wantErr string }{"owned by another user", owned, "is owned by uid 65534"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := openKeylog(tt.path)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("openKeylog(%s) = %v, want it opened", tt.path, err)
				}
				defer f.Close()
				fi, err := os.Stat(tt.path)
				if err != nil || fi.Mode().Perm() != 0o600 {
					t.Errorf("%s after openKeylog: %v, %v; want mode 0600", tt.path, fi.Mode(), err)
				}
				return
			}
			if err == nil {
				f.Close()
				t.Fatalf("openKeylog(%s) opened it, want %q", tt.path, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errKeylog) {
				t.Errorf("openKeylog(%s) = %v, want errKeylog with %q", tt.path, err, tt.wantErr)
			}
		})
	}
}
