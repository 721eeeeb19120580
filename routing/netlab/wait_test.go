// SPDX-License-Identifier: MIT

package netlab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWaitFor(t *testing.T) {
	errBoom := errors.New("boom")
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		cond    func(calls int) (bool, error)
		want    string // "" for nil, else a substring of the error
		minCall int
	}{
		{"at once", context.Background(), func(int) (bool, error) { return true, nil }, "", 1},
		{"third call", context.Background(), func(n int) (bool, error) { return n == 3, nil }, "", 3},
		{"error", context.Background(), func(n int) (bool, error) { return false, errBoom }, "boom", 1},
		{"never", context.Background(), func(int) (bool, error) { return false, nil }, "no thing within 100ms", 2},
		{"cancelled", cancelled, func(int) (bool, error) { return false, nil }, context.Canceled.Error(), 1},
	}
	for _, tt := range tests {
		calls := 0
		err := WaitFor(tt.ctx, 100*time.Millisecond, "thing", func() (bool, error) { calls++; return tt.cond(calls) })
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: WaitFor = %v, want %q", tt.name, err, tt.want)
		}
		if calls < tt.minCall {
			t.Errorf("%s: cond called %d times, want at least %d", tt.name, calls, tt.minCall)
		}
	}
}

func TestLogLines(t *testing.T) {
	log := filepath.Join(t.TempDir(), "d.log")
	if err := os.WriteFile(log, []byte("a msg=peer connected peer=hub\nb msg=other\n  c msg=peer connected peer=s1  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Name: "d", Log: log, done: make(chan struct{})}
	if got := strings.Join(p.LogLines("peer connected"), "|"); got != "a msg=peer connected peer=hub|c msg=peer connected peer=s1" {
		t.Errorf("LogLines(peer connected) = %q", got)
	}
	if got := p.LogLines("peer connected", "peer=s1"); len(got) != 1 {
		t.Errorf("LogLines(peer connected, peer=s1) = %q, want one line", got)
	}
	if err := p.WaitLog(context.Background(), time.Second, "peer=hub"); err != nil {
		t.Errorf("WaitLog(present line) = %v", err)
	}
	if err := p.WaitLog(context.Background(), 50*time.Millisecond, "absent"); err == nil || !strings.Contains(err.Error(), `no log line with ["absent"] within 50ms`) {
		t.Errorf("WaitLog(absent line) = %v, want a timeout", err)
	}
	p.code = 3
	close(p.done)
	if err := p.WaitLog(context.Background(), time.Second, "absent"); err == nil || !strings.Contains(err.Error(), "exited with 3") {
		t.Errorf("WaitLog after exit = %v, want one saying it exited", err)
	}
}
