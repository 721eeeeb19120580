// SPDX-License-Identifier: MIT

package tcppath

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// ALPN is the TLS application protocol of the outer TLS connection. Both
// sides require it, so a TLS client of any other protocol (a browser, a
// scanner) is refused during the handshake.
const ALPN = "godwit-tcp/1"

// errUnauthorized marks a handshake the server refused because the
// client's key is not authorized; the listener counts it as RefusedKeys.
var errUnauthorized = errors.New("key not authorized")

// newCertificate makes the self-signed certificate this node presents.
// Its only job is to carry the Ed25519 public key: peers pin the key, not
// the certificate. It is quicconn's newCertificate (quicconn/identity.go),
// copied because quicconn does not export it; both must make the same
// kind of certificate.
func newCertificate(priv ed25519.PrivateKey) (tls.Certificate, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return tls.Certificate{}, fmt.Errorf("tcppath: private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tcppath: certificate serial: %w", err)
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
		return tls.Certificate{}, fmt.Errorf("tcppath: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tcppath: parse own certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// peerKey returns the raw Ed25519 key of the peer's leaf certificate.
// crypto/tls has already checked the peer's CertificateVerify signature,
// so the peer holds the matching private key.
func peerKey(cs tls.ConnectionState) (key.Public, error) {
	if len(cs.PeerCertificates) == 0 {
		return key.Public{}, errors.New("peer sent no certificate")
	}
	pk, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok || len(pk) != ed25519.PublicKeySize {
		return key.Public{}, fmt.Errorf("peer key is %T, want ed25519", cs.PeerCertificates[0].PublicKey)
	}
	return key.Public(pk), nil
}

// serverTLSConfig requires a client certificate and admits only keys that
// authorize accepts (nil refuses everyone); refused, if not nil, hears of
// every key turned away. The check is in VerifyConnection, which also runs
// on resumed sessions, though the server issues no session tickets: a
// resumption would save no round trip here (the QUIC connection inside
// has its own 0-RTT) and a ticket would outlive the removal of a key.
func serverTLSConfig(cert tls.Certificate, authorize func(key.Public) bool, refused func(key.Public)) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cert},
		ClientAuth:             tls.RequireAnyClientCert,
		NextProtos:             []string{ALPN},
		SessionTicketsDisabled: true,
		// link.write sizes the records (writerSize).
		DynamicRecordSizingDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != ALPN {
				return fmt.Errorf("tcppath: client did not offer ALPN %q", ALPN)
			}
			k, err := peerKey(cs)
			if err != nil {
				return fmt.Errorf("tcppath: %w", err)
			}
			if authorize == nil || !authorize(k) {
				if refused != nil {
					refused(k)
				}
				return fmt.Errorf("tcppath: client key %s: %w", k, errUnauthorized)
			}
			return nil
		},
	}
}

// clientTLSConfig presents cert and pins the server's key to peer.
// serverName is sent as SNI ("" sends none).
func clientTLSConfig(cert tls.Certificate, peer key.Public, serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		ServerName:   serverName,
		// link.write sizes the records (writerSize).
		DynamicRecordSizingDisabled: true,
		// InsecureSkipVerify only turns off CA chain and host name checks,
		// which mean nothing for self-signed identities. crypto/tls still
		// checks the server's CertificateVerify signature (proof that it
		// holds the key), and VerifyConnection pins the key.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.NegotiatedProtocol != ALPN {
				return fmt.Errorf("tcppath: server did not select ALPN %q", ALPN)
			}
			k, err := peerKey(cs)
			if err != nil {
				return fmt.Errorf("tcppath: %w", err)
			}
			if k != peer {
				return fmt.Errorf("tcppath: server key mismatch: got %s, want %s", k, peer)
			}
			return nil
		},
	}
}
