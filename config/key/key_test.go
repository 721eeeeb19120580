// SPDX-License-Identifier: MIT

package key

import (
	"crypto/ed25519"
	"encoding/hex"
	"strings"
	"testing"
)

// RFC 8032 section 7.1, TEST 1.
const (
	rfcSeed   = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	rfcPublic = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
)

func TestPrivatePublic(t *testing.T) {
	seed, _ := hex.DecodeString(rfcSeed)
	var k Private
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
	k, err := NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	if k == k2 {
		t.Fatalf("NewPrivate returned the same key twice")
	}
	if s := k.String(); len(s) != 44 {
		t.Errorf("len(String()) = %d, want 44", len(s))
	}
	got, err := ParsePrivate("  " + k.String() + "\n")
	if err != nil || got != k {
		t.Errorf("ParsePrivate(String()+newline) = %v, %v; want the key", got, err)
	}
	var viaText Private
	text, _ := k.MarshalText()
	if err := viaText.UnmarshalText(text); err != nil || viaText != k {
		t.Errorf("Private text round trip = %v, %v", viaText, err)
	}
	if err := viaText.UnmarshalText([]byte("bad")); err == nil || viaText != k {
		t.Errorf("Private UnmarshalText(bad) = %v, left %v; want an error and the key unchanged", err, viaText)
	}
	pub := k.Public()
	pp, err := ParsePublic(pub.String())
	if err != nil || pp != pub {
		t.Errorf("ParsePublic(String()) = %v, %v; want %v", pp, err, pub)
	}
	var viaPub Public
	text, _ = pub.MarshalText()
	if err := viaPub.UnmarshalText(text); err != nil || viaPub != pub {
		t.Errorf("Public text round trip = %v, %v", viaPub, err)
	}
	if err := viaPub.UnmarshalText([]byte("bad")); err == nil || viaPub != pub {
		t.Errorf("Public UnmarshalText(bad) = %v, left %v; want an error and the key unchanged", err, viaPub)
	}
	if pub.IsZero() || !(Public{}).IsZero() {
		t.Errorf("IsZero wrong: %v for a real key, %v for the zero key", pub.IsZero(), (Public{}).IsZero())
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
		_, err := ParsePublic(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePublic(%q) error = %v, want one containing %q", tt.in, err, tt.want)
		}
	}
	secret := "secretsecretsecretsecret"
	_, err := ParsePrivate(secret)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("ParsePrivate(%q) error = %v, want an error that does not quote the input", secret, err)
	}
}
