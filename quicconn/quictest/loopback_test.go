// SPDX-License-Identifier: MIT

package quictest

import (
	"bytes"
	"context"
	"testing"
	"time"
)

func TestLoopbackPair(t *testing.T) {
	client, server := LoopbackPair(t)
	if got, want := client.PeerName(), "server"; got != want {
		t.Errorf("client.PeerName() = %q, want %q", got, want)
	}
	if got, want := server.PeerName(), "client"; got != want {
		t.Errorf("server.PeerName() = %q, want %q", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg := []byte{0x45, 1, 2, 3}
	if err := client.SendDatagram(msg); err != nil {
		t.Fatalf("SendDatagram: %v", err)
	}
	got, err := server.ReceiveDatagram(ctx)
	if err != nil {
		t.Fatalf("ReceiveDatagram: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Errorf("ReceiveDatagram() = %x, want %x", got, msg)
	}
}
