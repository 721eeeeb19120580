// SPDX-License-Identifier: MIT

package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindSocket(t *testing.T) {
	mkSock := func(t *testing.T, dir, name string) {
		t.Helper()
		ln, err := net.Listen("unix", filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
	}
	tests := []struct {
		name    string
		socks   []string
		files   []string // regular files that are not sockets
		iface   string
		want    string // base name of the path
		wantErr string
	}{
		{name: "none", wantErr: "no godwit socket in"},
		{name: "not a socket", files: []string{"gw0.sock"}, wantErr: "is the daemon running?"},
		{name: "one", socks: []string{"gw0.sock"}, want: "gw0.sock"},
		{name: "one and a lock", socks: []string{"gw1.sock"}, files: []string{"gw1.sock.lock"}, want: "gw1.sock"},
		{name: "two", socks: []string{"gw0.sock", "gw1.sock"}, wantErr: "several godwit daemons are running (gw0, gw1): choose one with -i"},
		{name: "two with -i", socks: []string{"gw0.sock", "gw1.sock"}, iface: "gw1", want: "gw1.sock"},
		{name: "-i without a socket", iface: "gw5", want: "gw5.sock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, s := range tt.socks {
				mkSock(t, dir, s)
			}
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := findSocket(dir, tt.iface)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("findSocket = %q, %v; want error containing %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != filepath.Join(dir, tt.want) {
				t.Fatalf("findSocket = %q, %v; want %q", got, err, filepath.Join(dir, tt.want))
			}
		})
	}
	t.Run("missing dir", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		_, err := findSocket(dir, "")
		if want := "no godwit socket in " + dir + ": is the daemon running?"; err == nil || err.Error() != want {
			t.Fatalf("findSocket(missing) = %v, want %q", err, want)
		}
	})
	t.Run("unreadable dir", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root reads any directory")
		}
		dir := t.TempDir()
		if err := os.Chmod(dir, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
		_, err := findSocket(dir, "")
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("findSocket(unreadable) = %v, want a permission error", err)
		}
	})
}
