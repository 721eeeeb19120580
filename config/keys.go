// SPDX-License-Identifier: MIT

package config

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// PublicKey is an Ed25519 public key. Its text form is the standard base64
// encoding of the 32 bytes (44 characters, with padding), as printed by
// `godwit pubkey`. The zero value is the all-zero key, which no peer may use.
type PublicKey [32]byte

// PrivateKey is an Ed25519 private key held as its 32-byte seed (RFC 8032
// section 5.1.5). Its text form is the standard base64 encoding of the seed,
// as printed by `godwit genkey`.
type PrivateKey [32]byte

// maxKeyFileSize bounds how much of a private key file is read: a key is 44
// characters, anything much longer is not a key file.
const maxKeyFileSize = 4096

// String returns the key in standard base64.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether k is the all-zero key (the zero value).
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// MarshalText implements [encoding.TextMarshaler] with the base64 form.
func (k PublicKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]; it accepts what
// [ParsePublicKey] accepts.
func (k *PublicKey) UnmarshalText(text []byte) error {
	p, err := ParsePublicKey(string(text))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// String returns the seed in standard base64. It is the secret: do not log it.
func (k PrivateKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText implements [encoding.TextMarshaler] with the base64 form.
func (k PrivateKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]; it accepts what
// [ParsePrivateKey] accepts.
func (k *PrivateKey) UnmarshalText(text []byte) error {
	p, err := ParsePrivateKey(string(text))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// Ed25519 returns the expanded private key for crypto/ed25519 and crypto/tls.
// The result is a new slice owned by the caller.
func (k PrivateKey) Ed25519() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(k[:]) }

// Public returns the public key that belongs to k.
func (k PrivateKey) Public() PublicKey {
	var p PublicKey
	copy(p[:], k.Ed25519().Public().(ed25519.PublicKey))
	return p
}

// GeneratePrivateKey returns a new random private key from crypto/rand.
func GeneratePrivateKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := io.ReadFull(rand.Reader, k[:]); err != nil {
		return PrivateKey{}, fmt.Errorf("config: generate private key: %w", err)
	}
	return k, nil
}

// decodeKey decodes the standard base64 form of a 32-byte key. Its error
// never contains s, which may be a secret.
func decodeKey(s string) ([32]byte, error) {
	var k [32]byte
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	// The decoder skips '\r' and '\n' anywhere; a key has none.
	if err != nil || strings.ContainsAny(s, "\r\n") {
		return k, errors.New("not standard base64 (a key is 44 characters ending in '=')")
	}
	if len(b) != len(k) {
		return k, fmt.Errorf("decodes to %d bytes, want %d", len(b), len(k))
	}
	copy(k[:], b)
	return k, nil
}

// ParsePublicKey parses the standard base64 form of a public key.
func ParsePublicKey(s string) (PublicKey, error) {
	k, err := decodeKey(s)
	if err != nil {
		return PublicKey{}, fmt.Errorf("config: public key %q: %w", clip(s), err)
	}
	return PublicKey(k), nil
}

// ParsePrivateKey parses the standard base64 form of a private key seed,
// ignoring surrounding white space such as the newline of a key file. The
// error never quotes s.
func ParsePrivateKey(s string) (PrivateKey, error) {
	k, err := decodeKey(strings.TrimSpace(s))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("config: private key: %w", err)
	}
	return PrivateKey(k), nil
}

// ReadPrivateKeyFile reads a private key written by `godwit genkey`. It
// follows symbolic links and refuses a target that is not a regular file or
// whose mode gives group or others any access, naming the file, its mode and
// the fix. The file is checked through the open descriptor, so what is
// checked is what is read.
func ReadPrivateKeyFile(path string) (PrivateKey, error) {
	k, err := readPrivateKeyFile(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("config: %w", err)
	}
	return k, nil
}

// readPrivateKeyFile is ReadPrivateKeyFile without the package prefix on its
// errors, so that Load can put the config file and line in front.
func readPrivateKeyFile(path string) (PrivateKey, error) {
	// Refuse a FIFO before opening it: opening one blocks until a writer
	// comes. The descriptor is checked again below.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return PrivateKey{}, fmt.Errorf("private key file %s is not a regular file (%v)", path, fi.Mode().Type())
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return PrivateKey{}, fmt.Errorf("private key file %s does not exist (create it with: (umask 077; godwit genkey > %s)): %w", path, path, err)
		}
		return PrivateKey{}, fmt.Errorf("private key file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return PrivateKey{}, fmt.Errorf("private key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return PrivateKey{}, fmt.Errorf("private key file %s is not a regular file (%v)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return PrivateKey{}, fmt.Errorf("private key file %s has mode %04o; it must not be accessible by group or others (chmod 600 %s)", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("private key file %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return PrivateKey{}, fmt.Errorf("private key file %s does not hold a private key: it is longer than %d bytes", path, maxKeyFileSize)
	}
	k, err := decodeKey(strings.TrimSpace(string(b)))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("private key file %s does not hold a base64 Ed25519 private key: %w", path, err)
	}
	return PrivateKey(k), nil
}

// clip shortens s for quoting in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
