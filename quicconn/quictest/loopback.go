// SPDX-License-Identifier: MIT

// Package quictest has test doubles for package quicconn: real QUIC
// connection pairs over loopback (LoopbackPair) and in-memory datagram
// pipes.
package quictest

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"

	"github.com/godwit-vpn/godwit/quicconn"
)

// LoopbackPair returns two connected Conns over real QUIC on 127.0.0.1:
// two Endpoints with generated keys, pinned to each other, the client
// named "client" and the server "server". Everything is closed by
// t.Cleanup. It calls t.Fatal if the pair cannot be set up within 10 s.
func LoopbackPair(t testing.TB) (client, server *quicconn.Conn) {
	t.Helper()
	cpub, cpriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	spub, spriv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := quicconn.NewEndpoint(quicconn.Config{
		PrivateKey: spriv,
		NodeName:   "server",
		Listen:     "127.0.0.1:0",
		Authorize:  func(k key.Public) bool { return k == key.Public(cpub) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	// Listen on loopback too (Authorize nil accepts nobody), so the test
	// socket is not bound to the wildcard address.
	cli, err := quicconn.NewEndpoint(quicconn.Config{PrivateKey: cpriv, NodeName: "client", Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   *quicconn.Conn
		err error
	}
	acc := make(chan result, 1)
	go func() {
		c, err := srv.Accept(ctx)
		acc <- result{c, err}
	}()
	client, err = cli.Dial(ctx, srv.LocalAddr().String(), key.Public(spub))
	if err != nil {
		t.Fatalf("quictest: dial: %v", err)
	}
	r := <-acc
	if r.err != nil {
		t.Fatalf("quictest: accept: %v", r.err)
	}
	return client, r.c
}
