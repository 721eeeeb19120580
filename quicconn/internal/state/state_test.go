// SPDX-License-Identifier: MIT

package state

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/godwit-vpn/godwit/config/key"
)

func newKey(t testing.TB) key.Public {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return key.Public(pub)
}

// logCounter counts log records by message.
type logCounter struct {
	mu   sync.Mutex // guards msgs
	msgs map[string]int
}

func (h *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (h *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logCounter) WithGroup(string) slog.Handler            { return h }
func (h *logCounter) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msgs == nil {
		h.msgs = make(map[string]int)
	}
	h.msgs[r.Message]++
	return nil
}

func (h *logCounter) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.msgs[msg]
}

var discard = slog.New(slog.DiscardHandler)

func TestLoadCreatesAndReloads(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s1, err := Load(dir, discard)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
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
	s2, err := Load(dir, discard)
	if err != nil {
		t.Fatalf("second Load: %v", err)
	}
	if s2.resetKey != s1.resetKey || s2.tokenKey != s1.tokenKey || s2.TicketKeys[0] != s1.TicketKeys[0] {
		t.Error("a second Load of the same dir has other keys")
	}
	s3, err := Load("", discard)
	if err != nil {
		t.Fatalf("Load in memory: %v", err)
	}
	if s3.resetKey == s1.resetKey || len(s3.TicketKeys) != 1 {
		t.Errorf("Load(\"\") reuses the persisted reset key or has %d ticket keys, want fresh keys and 1", len(s3.TicketKeys))
	}
}

func TestLoadBadKeyFile(t *testing.T) {
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
			_, err := Load(dir, discard)
			if err == nil {
				t.Fatalf("Load with a bad %s succeeded, want an error", tt.file)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error = %q, want it to name %s and say %q", err, path, tt.want)
			}
		})
	}
}

func TestLoadSeveralTicketKeys(t *testing.T) {
	dir := t.TempDir()
	keys := bytes.Repeat([]byte{1}, 32)
	keys = append(keys, bytes.Repeat([]byte{2}, 32)...)
	if err := os.WriteFile(filepath.Join(dir, ticketKeysFile), keys, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir, discard)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := len(s.TicketKeys); got != 2 || s.TicketKeys[0][0] != 1 || s.TicketKeys[1][0] != 2 {
		t.Errorf("ticket keys %d (%v...), want 2 in file order", got, s.TicketKeys)
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
	k := newKey(t)
	if got, ok := peerOfServerName(ServerName(k)); !ok || got != k {
		t.Errorf("peerOfServerName(ServerName(k)) = %x, %v, want %x", got, ok, k)
	}
	for _, bad := range []string{"", "example.com", "abc.godwit", strings.Repeat("a", 51) + ".godwit", strings.Repeat("1", 52) + ".godwit", base64.RawURLEncoding.EncodeToString(k[:])} {
		if _, ok := peerOfServerName(bad); ok {
			t.Errorf("peerOfServerName(%q) ok, want not", bad)
		}
	}
}

// TestLoadRemovesUnusableTicketFiles checks that Load removes and logs a
// ticket file whose session state does not parse and a file whose name
// is not a peer key, and fails for neither.
func TestLoadRemovesUnusableTicketFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, ticketsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	peer := newKey(t)
	bad := TicketFile(dir, peer)
	worse := filepath.Join(dir, ticketsDir, "not-a-key")
	damaged, _ := appendTicketFile(nil, []byte("ticket"), []byte("not a session state"))
	for path, b := range map[string][]byte{bad: damaged, worse: []byte("junk")} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h := &logCounter{}
	s, err := Load(dir, slog.New(h))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, path := range []string{bad, worse} {
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("unusable ticket file %s still there (%v), want it removed", filepath.Base(path), err)
		}
	}
	if got := h.count("quicconn: removing unusable session ticket"); got != 2 {
		t.Errorf("%d log lines about unusable tickets, want 2", got)
	}
	if _, ok := s.Sessions.Get(ServerName(peer)); ok {
		t.Error("the session cache holds the damaged ticket")
	}
}

func TestTicketBook(t *testing.T) {
	b, err := NewTicketBook()
	if err != nil {
		t.Fatal(err)
	}
	a, c := newKey(t), newKey(t)
	ta, err := b.Issue(a)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := FindTicket([][]byte{[]byte("quic-go's entry"), ta.Append(nil)})
	if !ok || got != ta {
		t.Fatalf("FindTicket(extras with %+v) = %+v, %v", ta, got, ok)
	}
	if _, ok := FindTicket([][]byte{ta.Append(nil)[:ticketLen-1]}); ok {
		t.Error("FindTicket accepted a short entry")
	}
	stolen := ta
	stolen.Peer = c
	if err := b.Redeem(stolen); !errors.Is(err, errTicketUsed) {
		t.Errorf("Redeem(a's ticket with c's key) = %v, want errTicketUsed", err)
	}
	if err := b.Redeem(ta); err != nil {
		t.Errorf("first Redeem = %v, want nil", err)
	}
	if err := b.Redeem(ta); !errors.Is(err, errTicketUsed) {
		t.Errorf("second Redeem = %v, want errTicketUsed", err)
	}
	other, err := NewTicketBook()
	if err != nil {
		t.Fatal(err)
	}
	tc, _ := other.Issue(c)
	if err := b.Redeem(tc); !errors.Is(err, ErrTicketRestart) {
		t.Errorf("Redeem(another book's ticket) = %v, want ErrTicketRestart", err)
	}
	// A client holds at most maxTicketsPerPeer tickets; the oldest go first.
	var ts []Ticket
	for range maxTicketsPerPeer + 1 {
		tk, _ := b.Issue(c)
		ts = append(ts, tk)
	}
	if err := b.Redeem(ts[0]); !errors.Is(err, errTicketUsed) {
		t.Errorf("Redeem(oldest of %d) = %v, want errTicketUsed", len(ts), err)
	}
	for _, tk := range ts[1:] {
		if err := b.Redeem(tk); err != nil {
			t.Errorf("Redeem(a newer ticket) = %v, want nil", err)
		}
	}
}
