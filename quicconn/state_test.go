// SPDX-License-Identifier: MIT

package quicconn

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStateCreatedAndReloaded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	k := newKey(t)
	e1 := newEndpoint(t, Config{PrivateKey: k.priv, Listen: "127.0.0.1:0", StateDir: dir})
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o700 {
		t.Errorf("state dir mode %v, want 0700", got)
	}
	for _, f := range []struct {
		name string
		size int64
	}{{resetKeyFile, 32}, {tokenKeyFile, 32}, {ticketKeysFile, 32}} {
		fi, err := os.Stat(filepath.Join(dir, f.name))
		if err != nil {
			t.Errorf("%s: %v", f.name, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 || fi.Size() != f.size {
			t.Errorf("%s: mode %v size %d, want 0600 and %d", f.name, fi.Mode().Perm(), fi.Size(), f.size)
		}
	}
	s1 := *e1.state
	e1.Close()
	e2 := newEndpoint(t, Config{PrivateKey: k.priv, Listen: "127.0.0.1:0", StateDir: dir})
	if e2.state.resetKey != s1.resetKey || e2.state.tokenKey != s1.tokenKey || e2.state.ticketKeys[0] != s1.ticketKeys[0] {
		t.Error("a second Endpoint on the same StateDir has other keys")
	}
	e3 := newEndpoint(t, Config{PrivateKey: k.priv, Listen: "127.0.0.1:0"})
	if e3.state.resetKey == s1.resetKey {
		t.Error("an Endpoint without StateDir reuses the persisted reset key")
	}
}

func TestStateBadKeyFile(t *testing.T) {
	k := newKey(t)
	tests := []struct {
		name  string
		file  string
		setup func(path string) error
		want  string
	}{
		{"short reset key", resetKeyFile, func(p string) error { return os.WriteFile(p, []byte("short"), 0o600) }, "has 5 bytes, want 32"},
		{"long token key", tokenKeyFile, func(p string) error { return os.WriteFile(p, make([]byte, 33), 0o600) }, "has 33 bytes, want 32"},
		{"ticket keys not a multiple", ticketKeysFile, func(p string) error { return os.WriteFile(p, make([]byte, 40), 0o600) }, "want a multiple of 32"},
		{"too many ticket keys", ticketKeysFile, func(p string) error { return os.WriteFile(p, make([]byte, 32*(maxTicketKeys+1)), 0o600) }, "want a multiple of 32"},
		{"unreadable", resetKeyFile, func(p string) error { return os.Mkdir(p, 0o700) }, "is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.file)
			if err := tt.setup(path); err != nil {
				t.Fatal(err)
			}
			e, err := NewEndpoint(Config{PrivateKey: k.priv, StateDir: dir})
			if err == nil {
				e.Close()
				t.Fatalf("NewEndpoint with a bad %s succeeded, want an error", tt.file)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewEndpoint error = %q, want it to name %s and say %q", err, path, tt.want)
			}
		})
	}
}

func TestStateSeveralTicketKeys(t *testing.T) {
	dir := t.TempDir()
	keys := bytes.Repeat([]byte{1}, 32)
	keys = append(keys, bytes.Repeat([]byte{2}, 32)...)
	if err := os.WriteFile(filepath.Join(dir, ticketKeysFile), keys, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newEndpoint(t, Config{PrivateKey: newKey(t).priv, StateDir: dir})
	if got := len(e.state.ticketKeys); got != 2 || e.state.ticketKeys[0][0] != 1 || e.state.ticketKeys[1][0] != 2 {
		t.Errorf("ticket keys %d (%v...), want 2 in file order", got, e.state.ticketKeys)
	}
	if fi, _ := os.Stat(filepath.Join(dir, ticketKeysFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("ticket.keys mode %v after load, want 0600", fi.Mode().Perm())
	}
}

func TestTicketFileRoundTrip(t *testing.T) {
	tests := []struct {
		name          string
		ticket, state []byte
	}{
		{"empty", nil, nil},
		{"small", []byte("ticket"), []byte("state")},
		{"max ticket", bytes.Repeat([]byte{7}, 0xffff), []byte{1}},
		{"max state", []byte{1}, bytes.Repeat([]byte{9}, maxTicketState)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := appendTicketFile(nil, tt.ticket, tt.state)
			if err != nil {
				t.Fatal(err)
			}
			ticket, st, err := parseTicketFile(b)
			if err != nil {
				t.Fatalf("parseTicketFile: %v", err)
			}
			if !bytes.Equal(ticket, tt.ticket) || !bytes.Equal(st, tt.state) {
				t.Errorf("parseTicketFile = %d, %d bytes, want %d, %d", len(ticket), len(st), len(tt.ticket), len(tt.state))
			}
		})
	}
	if _, err := appendTicketFile(nil, nil, make([]byte, maxTicketState+1)); err == nil {
		t.Error("appendTicketFile accepted an oversized state")
	}
	good, _ := appendTicketFile(nil, []byte("t"), []byte("s"))
	for _, bad := range [][]byte{nil, []byte("GWTICKET"), good[:len(good)-1], append(append([]byte{}, good...), 0), append([]byte("XWTICKET"), good[8:]...)} {
		if _, _, err := parseTicketFile(bad); !errors.Is(err, errTicketFile) {
			t.Errorf("parseTicketFile(%q) error = %v, want errTicketFile", bad, err)
		}
	}
}

func FuzzParseTicketFile(f *testing.F) {
	good, _ := appendTicketFile(nil, []byte("opaque ticket"), []byte("session state"))
	f.Add(good)
	f.Add([]byte("GWTICKET\x01\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte("GWTICKET\x02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ticket, st, err := parseTicketFile(b)
		if err != nil {
			if !errors.Is(err, errTicketFile) {
				t.Fatalf("error %v does not wrap errTicketFile", err)
			}
			return
		}
		// Accepted implies well-formed: it re-encodes to the same bytes.
		again, err := appendTicketFile(nil, ticket, st)
		if err != nil {
			t.Fatalf("accepted file does not re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}

func TestPeerOfServerName(t *testing.T) {
	k := newKey(t).pub
	if got, ok := peerOfServerName(serverName(k)); !ok || got != k {
		t.Errorf("peerOfServerName(serverName(k)) = %x, %v, want %x", got, ok, k)
	}
	for _, bad := range []string{"", "example.com", "abc.godwit", strings.Repeat("a", 51) + ".godwit", strings.Repeat("1", 52) + ".godwit", base64.RawURLEncoding.EncodeToString(k[:])} {
		if _, ok := peerOfServerName(bad); ok {
			t.Errorf("peerOfServerName(%q) ok, want not", bad)
		}
	}
}

func TestCorruptTicketFileIgnored(t *testing.T) {
	p := newTestPair(t, nil)
	dir := t.TempDir()
	tdir := filepath.Join(dir, ticketsDir)
	if err := os.MkdirAll(tdir, 0o700); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(tdir, base64.RawURLEncoding.EncodeToString(p.sk.pub[:]))
	worse := filepath.Join(tdir, "not-a-key")
	damaged, _ := appendTicketFile(nil, []byte("ticket"), []byte("not a session state"))
	for path, b := range map[string][]byte{bad: damaged, worse: []byte("junk")} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := &recordHandler{}
	cli := newEndpoint(t, Config{PrivateKey: p.ck.priv, Listen: "127.0.0.1:0", StateDir: dir, Logger: slog.New(h)})
	for _, path := range []string{bad, worse} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unusable ticket file %s still there (%v), want it removed", filepath.Base(path), err)
		}
	}
	if got := h.count("quicconn: removing unusable session ticket"); got != 2 {
		t.Errorf("%d log lines about unusable tickets, want 2", got)
	}
	p.cli = cli
	c, s := p.connect(t)
	exchange(t, c, s, []byte{0x45, 1})
	if st := cli.Stats(); st.ZeroRTTAttempted != 0 {
		t.Errorf("ZeroRTTAttempted = %d without a usable ticket, want 0", st.ZeroRTTAttempted)
	}
	// The new ticket is saved in the place of the bad one.
	if !waitFor(5*time.Second, func() bool { _, err := os.Stat(bad); return err == nil }) {
		t.Error("no ticket file written after a successful handshake")
	}
}
