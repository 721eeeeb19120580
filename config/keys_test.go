// SPDX-License-Identifier: MIT

package config

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// RFC 8032 section 7.1, TEST 1.
const (
	rfcSeed   = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	rfcPublic = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
)

func TestPrivateKeyPublic(t *testing.T) {
	seed, _ := hex.DecodeString(rfcSeed)
	var k PrivateKey
	copy(k[:], seed)
	pub := k.Public()
	if got := hex.EncodeToString(pub[:]); got != rfcPublic {
		t.Errorf("Public() = %s, want %s", got, rfcPublic)
	}
	msg := []byte("godwit")
	if !ed25519.Verify(pub[:], msg, ed25519.Sign(k.Ed25519(), msg)) {
		t.Errorf("signature by Ed25519() does not verify with Public()")
	}
}

func TestKeyTextRoundTrip(t *testing.T) {
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if k == k2 {
		t.Fatalf("GeneratePrivateKey returned the same key twice")
	}
	if s := k.String(); len(s) != 44 {
		t.Errorf("len(String()) = %d, want 44", len(s))
	}
	got, err := ParsePrivateKey("  " + k.String() + "\n")
	if err != nil || got != k {
		t.Errorf("ParsePrivateKey(String()+newline) = %v, %v; want the key", got, err)
	}
	var viaText PrivateKey
	text, _ := k.MarshalText()
	if err := viaText.UnmarshalText(text); err != nil || viaText != k {
		t.Errorf("PrivateKey text round trip = %v, %v", viaText, err)
	}
	pub := k.Public()
	pp, err := ParsePublicKey(pub.String())
	if err != nil || pp != pub {
		t.Errorf("ParsePublicKey(String()) = %v, %v; want %v", pp, err, pub)
	}
	var viaPub PublicKey
	text, _ = pub.MarshalText()
	if err := viaPub.UnmarshalText(text); err != nil || viaPub != pub {
		t.Errorf("PublicKey text round trip = %v, %v", viaPub, err)
	}
	if pub.IsZero() || !(PublicKey{}).IsZero() {
		t.Errorf("IsZero wrong: %v for a real key, %v for the zero key", pub.IsZero(), (PublicKey{}).IsZero())
	}
}

func TestParseKeyErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "decodes to 0 bytes, want 32"},
		{"AAAAAAAAAAAAAAAAAAAAAA==", "decodes to 16 bytes, want 32"},
		{"u3TMwMO9CAtI3HrXudfFF2cE0qS0W9RDcIOafKUd9tc", "not standard base64"},    // no padding
		{"u3TMwMO9CAtI3HrXudfFF2cE0qS0W9RDcIOafKUd9tc=\n", "not standard base64"}, // public keys are not trimmed
		{"u3TMwMO9CAtI3HrXudfFF2cE0qS0W9RDcIOafKUd9t-=", "not standard base64"},   // URL alphabet
	}
	for _, tt := range tests {
		_, err := ParsePublicKey(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "config: ") {
			t.Errorf("ParsePublicKey(%q) error = %v, want one containing %q", tt.in, err, tt.want)
		}
	}
	secret := "secretsecretsecretsecret"
	_, err := ParsePrivateKey(secret)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("ParsePrivateKey(%q) error = %v, want an error that does not quote the input", secret, err)
	}
}

// writeKey writes k to a new file of the given mode in dir.
func writeKey(t *testing.T, dir, name string, k PrivateKey, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadPrivateKeyFile(t *testing.T) {
	dir := t.TempDir()
	k, err := GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
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
	garbage := filepath.Join(dir, "garbage.key")
	if err := os.WriteFile(garbage, []byte("-----BEGIN PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.key")
	if err := os.WriteFile(huge, []byte(strings.Repeat("A", 10000)), 0o600); err != nil {
		t.Fatal(err)
	}
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
