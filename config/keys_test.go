// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/godwit-vpn/godwit/config/key"
)

// newKeyDir returns a new private key and a new directory for the files a
// test writes.
func newKeyDir(t *testing.T) (key.Private, string) {
	t.Helper()
	k, err := key.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return k, t.TempDir()
}

// writeFile writes data to a new file of exactly the given mode in dir.
func writeFile(t *testing.T, dir, name, data string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeKey writes k to a new file of the given mode in dir.
func writeKey(t *testing.T, dir, name string, k key.Private, mode os.FileMode) string {
	t.Helper()
	return writeFile(t, dir, name, k.String()+"\n", mode)
}

func TestReadPrivateKeyFile(t *testing.T) {
	k, dir := newKeyDir(t)
	good := writeKey(t, dir, "good.key", k, 0o600)
	readOnly := writeKey(t, dir, "ro.key", k, 0o400)
	open := writeKey(t, dir, "open.key", k, 0o644)
	group := writeKey(t, dir, "group.key", k, 0o640)
	linkGood := filepath.Join(dir, "link-good.key")
	linkOpen := filepath.Join(dir, "link-open.key")
	if err := os.Symlink(good, linkGood); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(open, linkOpen); err != nil {
		t.Fatal(err)
	}
	garbage := writeFile(t, dir, "garbage.key", "-----BEGIN PRIVATE KEY-----\n", 0o600)
	huge := writeFile(t, dir, "huge.key", strings.Repeat("A", 10000), 0o600)
	missing := filepath.Join(dir, "missing.key")

	tests := []struct {
		name, path, wantErr string
	}{
		{"mode 0600", good, ""},
		{"mode 0400", readOnly, ""},
		{"symlink to 0600", linkGood, ""},
		{"world-readable", open, "config: private key file " + open + " has mode 0644; it must not be accessible by group or others (chmod 600 " + open + ")"},
		{"group-readable", group, "has mode 0640"},
		{"symlink to world-readable", linkOpen, "config: private key file " + linkOpen + " has mode 0644"},
		{"missing", missing, "config: private key file " + missing + " does not exist"},
		{"garbage", garbage, "config: private key file " + garbage + " does not hold a base64 Ed25519 private key"},
		{"too long", huge, "longer than 4096 bytes"},
		{"directory", dir, "is not a regular file"},
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
			if err != nil && strings.Contains(err.Error(), k.String()) {
				t.Errorf("error %q contains the private key", err)
			}
		})
	}
	if _, err := ReadPrivateKeyFile(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadPrivateKeyFile(missing) = %v, want errors.Is fs.ErrNotExist", err)
	}
}
