// SPDX-License-Identifier: MIT

package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var discard = slog.New(slog.DiscardHandler)

func TestStatusJSONRoundTrip(t *testing.T) {
	want := fixtureStatus()
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var got Status
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("Status round trip:\n got %+v\nwant %+v", got, *want)
	}

	// The field names are the interface for scripts: pin the important
	// ones, and that zero times are left out rather than "0001-01-01".
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	peers := m["peers"].([]any)
	p0, p1 := peers[0].(map[string]any), peers[1].(map[string]any)
	path := p0["paths"].([]any)[0].(map[string]any)
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"interface.name", m["interface"].(map[string]any)["name"], "gw0"},
		{"interface.rx_packets", m["interface"].(map[string]any)["rx_packets"], 10.0},
		{"peers[0].state", p0["state"], "connected"},
		{"peers[0].tx_bytes", p0["tx_bytes"], 13e6},
		{"peers[0].drops[inbound/bad_source]", p0["drops"].(map[string]any)["inbound/bad_source"], 2.0},
		{"peers[0].last_handshake", p0["last_handshake"], "2026-05-01T11:58:48Z"},
		{"peers[0].zero_rtt", p0["zero_rtt"], map[string]any{"used": false, "rejected": false}},
		{"paths[0].remote", path["remote"], "198.18.1.2:51234"},
		{"paths[0].rtt.smoothed_ns", path["rtt"].(map[string]any)["smoothed_ns"], 1234e3},
		{"paths[0].datagram_limit_bytes", path["datagram_limit_bytes"], 1252.0},
		{"peers[1].last_handshake present", p1["last_handshake"] != nil, false},
		{"peers[1].paths", p1["paths"], []any{}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("JSON %s = %#v, want %#v", tt.name, tt.got, tt.want)
		}
	}
}

// startTestCtl serves snap on a socket in a fresh directory.
func startTestCtl(t *testing.T, snap func() *Status) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "gw0.sock")
	s, err := Listen(path, snap, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, path
}

func TestControlSocket(t *testing.T) {
	var calls atomic.Int32
	_, path := startTestCtl(t, func() *Status {
		calls.Add(1)
		return fixtureStatus()
	})

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode = %v, want 0700", di.Mode().Perm())
	}

	ctx := context.Background()
	for i := range 3 {
		st, err := Query(ctx, path)
		if err != nil {
			t.Fatalf("queryStatus #%d: %v", i, err)
		}
		if !reflect.DeepEqual(st, fixtureStatus()) {
			t.Fatalf("queryStatus #%d = %+v, want the fixture", i, st)
		}
	}
	if got := calls.Load(); got != 3 {
		t.Errorf("snapshots taken = %d, want 3 (one per request)", got)
	}

	raw := func(req string) (string, error) {
		t.Helper()
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		c.(*net.UnixConn).CloseWrite()
		b, err := io.ReadAll(c)
		return string(b), err
	}
	tests := []struct {
		name, req, want string
		mayReset        bool // the daemon closes with the rest unread
	}{
		{"unknown command", `{"cmd":"reboot"}`, `{"error":"unknown command \"reboot\""}`, false},
		{"not JSON", `hello`, `{"error":"bad request: invalid character 'h' looking for beginning of value"}`, false},
		{"too long", `{"cmd":"` + strings.Repeat("x", maxRequest) + `"}`, `{"error":"bad request: unexpected EOF"}`, true},
	}
	for _, tt := range tests {
		got, err := raw(tt.req)
		if err != nil && !(tt.mayReset && errors.Is(err, syscall.ECONNRESET)) {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got = strings.TrimSpace(got); got != tt.want && !(tt.mayReset && got == "") {
			t.Errorf("%s: answer %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestControlSocketOwnership(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gw0.sock")
	snap := func() *Status { return &Status{Version: "first"} }

	// A socket file left by a crashed daemon (nobody listens, nobody holds
	// the lock) is replaced.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := Query(context.Background(), path); err == nil || !strings.Contains(err.Error(), "is it running?") {
		t.Fatalf("queryStatus on a stale socket = %v, want a not-running error", err)
	}
	s1, err := Listen(path, snap, discard)
	if err != nil {
		t.Fatalf("newCtlServer over a stale socket: %v", err)
	}
	if st, err := Query(context.Background(), path); err != nil || st.Version != "first" {
		t.Fatalf("queryStatus = %+v, %v; want the first server", st, err)
	}

	// A live daemon's socket is not taken over.
	if _, err := Listen(path, func() *Status { return &Status{Version: "second"} }, discard); !errors.Is(err, ErrBusy) {
		t.Fatalf("second newCtlServer = %v, want ErrBusy", err)
	}
	if st, err := Query(context.Background(), path); err != nil || st.Version != "first" {
		t.Fatalf("after a refused second server: queryStatus = %+v, %v; want the first server", st, err)
	}

	// Close removes the socket and the lock file; the next daemon starts.
	s1.Close()
	for _, p := range []string{path, path + ".lock"} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("after close: stat %s = %v, want not exist", p, err)
		}
	}
	if _, err := Query(context.Background(), path); err == nil || !strings.Contains(err.Error(), "no godwit daemon on "+path+": is it running?") {
		t.Errorf("queryStatus after close = %v, want a not-running error", err)
	}
	s2, err := Listen(path, func() *Status { return &Status{Version: "third"} }, discard)
	if err != nil {
		t.Fatalf("newCtlServer after close: %v", err)
	}
	defer s2.Close()
	if st, err := Query(context.Background(), path); err != nil || st.Version != "third" {
		t.Fatalf("queryStatus = %+v, %v; want the third server", st, err)
	}
}

func TestControlSocketSlowClient(t *testing.T) {
	// A client that connects and says nothing must not block the others.
	_, path := startTestCtl(t, fixtureStatus)
	idle, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	done := make(chan error, 1)
	go func() {
		_, err := Query(context.Background(), path)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(Timeout / 2):
		t.Fatal("a silent client blocked another one")
	}
}

// FuzzCtlRequest feeds arbitrary request bytes to the control server's
// handler: it must not panic, and it must answer with one JSON object that
// holds either a status (only for a "status" request) or an error.
func FuzzCtlRequest(f *testing.F) {
	for _, seed := range []string{
		`{"cmd":"status"}`, `{"cmd":"status"}` + "\n", `{"cmd":"reboot"}`, `{}`, `{"cmd":1}`,
		`{"cmd":"status","x":[1,2,{"y":null}]}`, `"status"`, `{"cmd":"stat\u0075s"}`, "", "{", "\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	s := &Server{log: discard, snap: func() *Status { return &Status{Version: "fuzz"} }}
	f.Fuzz(func(t *testing.T, req []byte) {
		a, b := net.Pipe()
		go func() {
			b.SetDeadline(time.Now().Add(5 * time.Second))
			b.Write(req)
			b.Close() // EOF ends the request
		}()
		done := make(chan []byte, 1)
		srv, cli := net.Pipe()
		go func() {
			out, _ := io.ReadAll(cli)
			done <- out
		}()
		s.handle(&splitConn{Conn: srv, r: a})
		a.Close()
		out := <-done
		var resp Response
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("answer to %q is not JSON: %v: %q", req, err, out)
		}
		if (resp.Status == nil) == (resp.Error == "") {
			t.Fatalf("answer to %q has status %v and error %q, want exactly one", req, resp.Status, resp.Error)
		}
		if resp.Status != nil {
			// The daemon decodes one JSON value; what follows it is
			// ignored. That value must be a status request.
			var first Request
			if err := json.NewDecoder(strings.NewReader(string(req))).Decode(&first); err != nil || first.Cmd != "status" {
				t.Fatalf("status answered to %q", req)
			}
		}
	})
}

// splitConn reads from r and writes to the embedded Conn, so a handler's
// input and output can be driven separately.
type splitConn struct {
	net.Conn
	r net.Conn
}

func (c *splitConn) Read(b []byte) (int, error) { return c.r.Read(b) }
