// SPDX-License-Identifier: MIT

package measure

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestMainExitCode(t *testing.T) {
	errBoom := errors.New("boom")
	tests := []struct {
		name       string
		parseErr   error
		runErr     error
		want       int
		wantRun    bool
		wantStderr []string // substrings
		notStderr  []string
	}{
		{"ok", nil, nil, 0, true, nil, []string{"failed"}},
		{"help", flag.ErrHelp, nil, 0, false, nil, []string{"help"}},
		{"bad flag", errors.New("prog: -x 3: want 1 to 2"), nil, 2, false, []string{"prog: -x 3: want 1 to 2\n"}, nil},
		{"run fails", nil, errBoom, 1, true, []string{`level=ERROR msg="prog failed" err=boom`}, []string{"time="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ran := false
			parse := func(args []string, w io.Writer) (string, error) {
				if w != &stderr {
					t.Errorf("parse got writer %v, want stderr", w)
				}
				return strings.Join(args, "+"), tt.parseErr
			}
			run := func(ctx context.Context, o string, log *slog.Logger, out, errw io.Writer) error {
				ran = true
				if o != "a+b" {
					t.Errorf("run got options %q, want a+b", o)
				}
				if ctx.Err() != nil || out != &stdout || errw != &stderr || log == nil {
					t.Errorf("run got ctx err %v, stdout ok %v, stderr ok %v, log %v; want a live context and the writers",
						ctx.Err(), out == &stdout, errw == &stderr, log)
				}
				log.Info("progress", "k", 1)
				return tt.runErr
			}
			got := Main("prog", []string{"a", "b"}, &stdout, &stderr, parse, run)
			if got != tt.want || ran != tt.wantRun {
				t.Errorf("Main = %d, ran %v; want %d, ran %v", got, ran, tt.want, tt.wantRun)
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr.String())
				}
			}
			for _, s := range tt.notStderr {
				if strings.Contains(stderr.String(), s) {
					t.Errorf("stderr has %q:\n%s", s, stderr.String())
				}
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	NewLogger(&b).WithGroup("g").Info("lab ready", "time", "kept", "hub", "gwb-hub-1")
	if got, want := b.String(), "level=INFO msg=\"lab ready\" g.time=kept g.hub=gwb-hub-1\n"; got != want {
		t.Errorf("log line = %q, want %q", got, want)
	}
}

func TestSleep(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want error
	}{
		{"short", context.Background(), time.Millisecond, nil},
		{"zero", context.Background(), 0, nil},
		{"negative", context.Background(), -time.Second, nil},
		{"cancelled", cancelled, time.Hour, context.Canceled},
		{"cancelled, zero", cancelled, 0, context.Canceled},
	}
	for _, tt := range tests {
		start := time.Now()
		if got := Sleep(tt.ctx, tt.d); !errors.Is(got, tt.want) || got == nil && tt.want != nil {
			t.Errorf("%s: Sleep(%v) = %v, want %v", tt.name, tt.d, got, tt.want)
		}
		if el := time.Since(start); el < tt.d && tt.want == nil || el > 10*time.Second {
			t.Errorf("%s: Sleep(%v) took %v", tt.name, tt.d, el)
		}
	}
}

func TestRank(t *testing.T) {
	tests := []struct{ n, p, want int }{
		{1, 50, 0}, {1, 99, 0}, {1, 1, 0},
		{10, 50, 4}, {10, 90, 8}, {10, 91, 9}, {10, 100, 9}, {10, 1, 0},
		{100, 50, 49}, {100, 90, 89}, {100, 99, 98},
		{5, 99, 4}, {5, 50, 2},
	}
	for _, tt := range tests {
		if got := Rank(tt.n, tt.p); got != tt.want {
			t.Errorf("Rank(%d, %d) = %d, want %d", tt.n, tt.p, got, tt.want)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	var b strings.Builder
	v := struct {
		A int      `json:"a"`
		B []string `json:"b"`
	}{1, []string{"x"}}
	if err := WriteJSON(&b, v); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "{\n  \"a\": 1,\n  \"b\": [\n    \"x\"\n  ]\n}\n"; got != want {
		t.Errorf("WriteJSON = %q, want %q", got, want)
	}
	if err := WriteJSON(io.Discard, func() {}); err == nil || !strings.HasPrefix(err.Error(), "measure: json: ") {
		t.Errorf("WriteJSON(func) = %v, want a measure: json: error", err)
	}
}

func TestWriteReport(t *testing.T) {
	table := func(w io.Writer) { io.WriteString(w, "the table\n") }
	tests := []struct {
		name           string
		asJSON         bool
		rep            any
		stdout, stderr string
		wantErr        bool
	}{
		{"table", false, 1, "the table\n", "", false},
		{"json", true, 1, "1\n", "the table\n", false},
		{"json fails", true, func() {}, "", "", true},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		err := WriteReport(&stdout, &stderr, tt.asJSON, tt.rep, table)
		if stdout.String() != tt.stdout || stderr.String() != tt.stderr || (err != nil) != tt.wantErr {
			t.Errorf("%s: stdout %q, stderr %q, err %v; want %q, %q, error %v", tt.name, stdout.String(), stderr.String(), err, tt.stdout, tt.stderr, tt.wantErr)
		}
	}
}

type closer struct {
	err    error
	closed int
}

func (c *closer) Close() error { c.closed++; return c.err }

func TestJoinClose(t *testing.T) {
	e1, e2 := errors.New("run"), errors.New("close")
	tests := []struct {
		name          string
		before, close error
		want          []error // errors.Is must hold for each
		wantNil       bool
	}{
		{"both nil", nil, nil, nil, true},
		{"close fails", nil, e2, []error{e2}, false},
		{"run failed", e1, nil, []error{e1}, false},
		{"both", e1, e2, []error{e1, e2}, false},
	}
	for _, tt := range tests {
		c := &closer{err: tt.close}
		err := tt.before
		JoinClose(&err, c)
		if c.closed != 1 || (err == nil) != tt.wantNil {
			t.Errorf("%s: closed %d times, err %v; want once, nil %v", tt.name, c.closed, err, tt.wantNil)
		}
		for _, w := range tt.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: err = %v, want it to hold %v", tt.name, err, w)
			}
		}
	}
}
