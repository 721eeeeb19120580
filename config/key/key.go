// SPDX-License-Identifier: MIT

// Package key holds Godwit's node identity types: an Ed25519 key pair, as
// configured, pinned during the TLS handshake and used to name a peer in
// the tunnel. It is the one type for a peer's public key across config,
// quicconn and tunnel, and depends on nothing but the standard library.
package key

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Public is an Ed25519 public key. Its text form is the standard base64
// encoding of the 32 bytes (44 characters, with padding), as printed by
// `godwit pubkey`. The zero value is the all-zero key, which no peer may use.
type Public [32]byte

// Private is an Ed25519 private key held as its 32-byte seed (RFC 8032
// section 5.1.5). Its text form is the standard base64 encoding of the seed,
// as printed by `godwit genkey`.
type Private [32]byte

// String returns the key in standard base64.
func (k Public) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether k is the all-zero key (the zero value).
func (k Public) IsZero() bool { return k == Public{} }

// MarshalText implements [encoding.TextMarshaler] with the base64 form.
func (k Public) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]; it accepts what
// [ParsePublic] accepts.
func (k *Public) UnmarshalText(text []byte) error { return unmarshalText(k, text, ParsePublic) }

// String returns the seed in standard base64. It is the secret: do not log it.
func (k Private) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// MarshalText implements [encoding.TextMarshaler] with the base64 form.
func (k Private) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler]; it accepts what
// [ParsePrivate] accepts.
func (k *Private) UnmarshalText(text []byte) error { return unmarshalText(k, text, ParsePrivate) }

// unmarshalText sets *k to what parse makes of text; on error it leaves *k
// as it was.
func unmarshalText[K Public | Private](k *K, text []byte, parse func(string) (K, error)) error {
	p, err := parse(string(text))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// Ed25519 returns the expanded private key for crypto/ed25519 and crypto/tls.
// The result is a new slice owned by the caller.
func (k Private) Ed25519() ed25519.PrivateKey { return ed25519.NewKeyFromSeed(k[:]) }

// Public returns the public key that belongs to k.
func (k Private) Public() Public {
	var p Public
	copy(p[:], k.Ed25519().Public().(ed25519.PublicKey))
	return p
}

// NewPrivate returns a new random private key from crypto/rand.
func NewPrivate() (Private, error) {
	var k Private
	if _, err := io.ReadFull(rand.Reader, k[:]); err != nil {
		return Private{}, fmt.Errorf("key: generate private key: %w", err)
	}
	return k, nil
}

// Decode decodes the standard base64 form of a 32-byte key. Its error
// never contains s, which may be a secret.
func Decode(s string) ([32]byte, error) {
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

// ParsePublic parses the standard base64 form of a public key.
func ParsePublic(s string) (Public, error) {
	k, err := Decode(s)
	if err != nil {
		return Public{}, fmt.Errorf("public key %q: %w", clip(s), err)
	}
	return Public(k), nil
}

// ParsePrivate parses the standard base64 form of a private key seed,
// ignoring surrounding white space such as the newline of a key file. The
// error never quotes s.
func ParsePrivate(s string) (Private, error) {
	k, err := Decode(strings.TrimSpace(s))
	if err != nil {
		return Private{}, fmt.Errorf("private key: %w", err)
	}
	return Private(k), nil
}

// clip shortens s for quoting in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
