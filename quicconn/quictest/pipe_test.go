// SPDX-License-Identifier: MIT

package quictest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestPipe(t *testing.T) {
	a, b := Pipe()
	defer a.Close()
	ctx := context.Background()

	msg := []byte("datagram")
	if err := a.SendDatagram(msg); err != nil {
		t.Fatalf("SendDatagram: %v", err)
	}
	msg[0] = 'X' // SendDatagram must have copied
	got, err := b.ReceiveDatagram(ctx)
	if err != nil || string(got) != "datagram" {
		t.Fatalf("ReceiveDatagram = %q, %v, want %q, nil", got, err, "datagram")
	}

	b.SetLimit(4)
	err = b.SendDatagram([]byte("12345"))
	var dl interface{ DatagramLimit() int }
	if !errors.As(err, &dl) || dl.DatagramLimit() != 4 {
		t.Fatalf("SendDatagram over limit = %v, want an error with DatagramLimit() = 4", err)
	}
	if err := b.SendDatagram([]byte("1234")); err != nil {
		t.Fatalf("SendDatagram at limit: %v", err)
	}
	if got, _ := a.ReceiveDatagram(ctx); string(got) != "1234" {
		t.Errorf("ReceiveDatagram = %q, want %q", got, "1234")
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.ReceiveDatagram(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ReceiveDatagram(cancelled) = %v, want context.Canceled", err)
	}
}

func TestPipeStallAndClose(t *testing.T) {
	a, b := Pipe()
	a.Stall()
	sent := make(chan error, 1)
	go func() { sent <- a.SendDatagram([]byte("x")) }()
	select {
	case err := <-sent:
		t.Fatalf("SendDatagram on a stalled pipe returned %v, want it to block", err)
	case <-time.After(50 * time.Millisecond):
	}
	a.Unstall()
	if err := <-sent; err != nil {
		t.Fatalf("SendDatagram after Unstall: %v", err)
	}
	if got, err := b.ReceiveDatagram(context.Background()); err != nil || string(got) != "x" {
		t.Fatalf("ReceiveDatagram = %q, %v, want %q, nil", got, err, "x")
	}

	a.Stall()
	go func() { sent <- a.SendDatagram([]byte("y")) }()
	recv := make(chan error, 1)
	go func() {
		_, err := a.ReceiveDatagram(context.Background())
		recv <- err
	}()
	b.Close()
	for _, c := range []chan error{sent, recv} {
		select {
		case err := <-c:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("blocked call after Close = %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("blocked call not released by Close")
		}
	}
	if _, err := b.ReceiveDatagram(context.Background()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReceiveDatagram after Close = %v, want net.ErrClosed", err)
	}
}
