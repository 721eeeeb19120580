// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// writeConfig writes text (with /etc/godwit/hub.key replaced by keyFile) to
// dir/name.
func writeConfig(t *testing.T, dir, name, text, keyFile string) string {
	t.Helper()
	return writeFile(t, dir, name, strings.ReplaceAll(text, "/etc/godwit/hub.key", keyFile), 0o644)
}

func TestLoad(t *testing.T) {
	k, dir := newKeyDir(t)
	keyFile := writeKey(t, dir, "hub.key", k, 0o600)
	path := writeConfig(t, dir, "hub.toml", string(mustRead(t, "testdata/hub.toml")), keyFile)
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Interface.PrivateKey != k {
		t.Errorf("PrivateKey not loaded from %s", keyFile)
	}
	if c.Path != path || len(c.Peers) != 2 {
		t.Errorf("Load = Path %q with %d peers, want %q with 2", c.Path, len(c.Peers), path)
	}
}

func TestLoadErrors(t *testing.T) {
	k, dir := newKeyDir(t)
	hub := string(mustRead(t, "testdata/hub.toml"))
	good := writeKey(t, dir, "good.key", k, 0o600)
	open := writeKey(t, dir, "open.key", k, 0o644)
	garbage := writeFile(t, dir, "garbage.key", "not a key\n", 0o600)
	missing := filepath.Join(dir, "missing.key")
	// The hub with its own public key configured as a peer.
	self := hub + "\n[[peer]]\nname = \"self\"\npublic_key = \"" + k.Public().String() + "\"\nallowed_ips = [\"10.77.0.9/32\"]\n"

	tests := []struct {
		name, text, keyFile string
		want                []problem
	}{
		{"world-readable key", hub, open, []problem{{4, "private key file " + open + " has mode 0644; it must not be accessible by group or others (chmod 600 " + open + ")"}}},
		{"missing key file", hub, missing, []problem{{4, "private key file " + missing + " does not exist (create it with: (umask 077; godwit genkey > " + missing + "))"}}},
		{"garbage key file", hub, garbage, []problem{{4, "private key file " + garbage + " does not hold a base64 Ed25519 private key: not standard base64"}}},
		{"own key as peer", self, good, []problem{{26, `peer "self" has this node's own public key (the key in ` + good + `): a node cannot be its own peer`}}},
		{"other problems too", hub + "mtu = 1\n", open, []problem{{4, "has mode 0644"}, {23, "unknown key \"mtu\" in peer \"field-2\""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, dir, "test.toml", tt.text, tt.keyFile)
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load = %+v, nil; want an error", c)
			}
			checkProblems(t, path, err, tt.want)
		})
	}

	_, err := Load(filepath.Join(dir, "none.toml"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "config: ") {
		t.Errorf("Load(missing file) = %v, want a config: error wrapping fs.ErrNotExist", err)
	}
	path := writeConfig(t, dir, "missing.toml", hub, missing)
	if _, err := Load(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load with a missing key file = %v, want errors.Is fs.ErrNotExist", err)
	}
}

// TestLoadTooBig refuses a file over MaxFileSize before parsing it, and
// says what the limit is.
func TestLoadTooBig(t *testing.T) {
	_, dir := newKeyDir(t)
	path := writeFile(t, dir, "big.toml", "# "+strings.Repeat("x", MaxFileSize)+"\n", 0o644)
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), "over the limit of 4194304 bytes (4 MiB) for a config file") || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(%d-byte file) = %v, want the size limit named", MaxFileSize+3, err)
	}
}
