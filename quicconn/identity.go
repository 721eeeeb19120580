// SPDX-License-Identifier: MIT

package quicconn

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/quicconn/internal/state"
)

// newCertificate makes the self-signed certificate this node presents. Its
// only job is to carry the Ed25519 public key: peers pin the key, not the
// certificate, so the name is short and the validity long.
func newCertificate(priv ed25519.PrivateKey) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quicconn: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "godwit"},
		NotBefore:    now.Add(-24 * time.Hour), // tolerate clock skew between nodes
		NotAfter:     now.AddDate(100, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quicconn: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("quicconn: parse own certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// peerKeyOf returns the raw Ed25519 key of the peer's leaf certificate.
func peerKeyOf(cs tls.ConnectionState) (key.Public, error) {
	if len(cs.PeerCertificates) == 0 {
		return key.Public{}, errors.New("quicconn: peer sent no certificate")
	}
	pk, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || len(pk) != ed25519.PublicKeySize {
		return key.Public{}, fmt.Errorf("quicconn: peer key is %T, want ed25519", cs.PeerCertificates[0].PublicKey)
	}
	return key.Public(pk), nil
}

// serverTLSConfig requires a client certificate and admits only keys that
// Authorize accepts. VerifyConnection (not VerifyPeerCertificate) runs on
// resumed sessions too, so a removed peer cannot come back on an old ticket.
// refused, if not nil, hears of every key it turned away.
func serverTLSConfig(cert tls.Certificate, authorize func(key.Public) bool, refused func(key.Public)) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAnyClientCert,
		NextProtos:   []string{alpn},
		VerifyConnection: func(cs tls.ConnectionState) error {
			key, err := peerKeyOf(cs)
			if err != nil {
				return err
			}
			if authorize == nil || !authorize(key) {
				if refused != nil {
					refused(key)
				}
				return fmt.Errorf("quicconn: peer key %s not authorized", keyString(key))
			}
			return nil
		},
	}
}

// clientTLSConfig pins the server's key to peer.
func clientTLSConfig(cert tls.Certificate, peer key.Public, cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpn},
		// ServerName is the session-cache key: one per pinned peer key,
		// stable across address and DNS changes.
		ServerName:         state.ServerName(peer),
		ClientSessionCache: cache,
		// InsecureSkipVerify only turns off CA chain and host name checks,
		// which mean nothing for self-signed identities. crypto/tls still
		// checks the server's CertificateVerify signature (proof that it
		// holds the key), and VerifyConnection below pins the key; it also
		// runs on resumed sessions.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			key, err := peerKeyOf(cs)
			if err != nil {
				return err
			}
			if key != peer {
				return fmt.Errorf("quicconn: server key mismatch: got %s, want %s", keyString(key), keyString(peer))
			}
			return nil
		},
	}
}

// keyString formats a raw public key as standard base64, the form used in
// configuration files and by `godwit pubkey`.
func keyString(k key.Public) string {
	return base64.StdEncoding.EncodeToString(k[:])
}
