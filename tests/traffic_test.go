// SPDX-License-Identifier: MIT

package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// transferSize is how many bytes each TCP check sends each way.
const transferSize = 3 << 20

// pingOK waits for dst to answer from ns, then requires 5 of 5 echoes.
func pingOK(t *testing.T, ns *netlab.NS, dst netip.Addr) {
	t.Helper()
	if err := ns.WaitPing(dst, 10*time.Second); err != nil {
		t.Fatalf("ping %v from %s: %v", dst, ns.Name, err)
	}
	r, err := ns.Ping(dst, 5, 20*time.Millisecond, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Received != r.Sent {
		t.Errorf("ping %v from %s: %d of %d replies, want all", dst, ns.Name, r.Received, r.Sent)
	}
}

// tcpEcho makes server echo one connection on dst and has client send
// transferSize random bytes through it, reading the echo concurrently, and
// checks that the same bytes came back.
func tcpEcho(t *testing.T, server, client *netlab.NS, dst netip.Addr, tcpPort uint16) {
	t.Helper()
	addr := netip.AddrPortFrom(dst, tcpPort).String()
	ln, err := server.ListenTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		_, err = io.Copy(c, c)
		srvErr <- err
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.DialTCP(ctx, addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, client.Name, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	want := make([]byte, transferSize)
	rand.Read(want)
	wErr := make(chan error, 1)
	go func() {
		_, err := c.Write(want)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		wErr <- err
	}()
	start := time.Now()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("TCP %s from %s: read after %d bytes: %v", addr, client.Name, len(got), err)
	}
	if err := <-wErr; err != nil {
		t.Fatalf("TCP %s from %s: write: %v", addr, client.Name, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("TCP %s from %s: echoed %d bytes differ from the %d sent", addr, client.Name, len(got), len(want))
	}
	if err := <-srvErr; err != nil {
		t.Fatalf("TCP server on %s: %v", addr, err)
	}
	t.Logf("TCP %s from %s: %d bytes each way in %v", addr, client.Name, transferSize, time.Since(start).Round(time.Millisecond))
}

// udpEcho has server answer "re:<request>" on dst and the client send
// requests (up to 10 tries, for the odd lost datagram) until one answer
// arrives from dst.
func udpEcho(t *testing.T, server, client *netlab.NS, dst netip.Addr, udpPort uint16) {
	t.Helper()
	addr := netip.AddrPortFrom(dst, udpPort).String()
	srv, err := server.ListenUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	labtest.ServeUDP(t, srv, func(b []byte, _ netip.AddrPort) []byte { return append([]byte("re:"), b...) })
	c, err := client.DialUDP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 2048)
	for try := range 10 {
		req := fmt.Sprintf("request %d from %s", try, client.Name)
		if _, err := c.Write([]byte(req)); err != nil && !errors.Is(err, net.ErrClosed) {
			t.Logf("UDP write: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			continue
		}
		if got, want := string(buf[:n]), "re:"+req; got != want {
			t.Fatalf("UDP %s from %s: got %q, want %q", addr, client.Name, got, want)
		}
		return
	}
	t.Fatalf("UDP %s from %s: no answer to 10 requests", addr, client.Name)
}
