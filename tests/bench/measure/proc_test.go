// SPDX-License-Identifier: MIT

package measure

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/tests/bench/measure/measuretest"
)

// statLine is a real /proc/<pid>/stat line, with utime=1234 and stime=56.
const statLine = "4242 (wireguard) S 1 4242 4242 0 -1 4194560 1040 0 0 0 1234 56 0 0 20 0 9 0 12345 1262829568 2560 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

// shortStatLine ends right after the fields ParseStatTicks needs, and its
// command name has a space.
const shortStatLine = "4242 (go dwit) S 1 4242 4242 0 -1 4194560 1040 0 0 0 1234 56 0 0 20 0 9 0 12345 1262829568 2560 18446744073709551615\n"

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    uint64
		wantErr bool
	}{
		{"real line", statLine, 1290, false},
		{"comm with spaces and parens", strings.Replace(statLine, "(wireguard)", "(a) S 1 2 (b c)", 1), 1290, false},
		{"short line, comm with a space", shortStatLine, 1290, false},
		{"no comm", "4242 S 1 2 3", 0, true},
		{"no comm, short", "4242 S 1", 0, true},
		{"few fields", "4242 (x) S 1 2 3", 0, true},
		{"truncated", "4242 (x) S 1 4242 4242 0 -1 4194560 1040 0 0 0 1234", 0, true},
		{"not a number", strings.Replace(statLine, " 1234 ", " 12x4 ", 1), 0, true},
		{"stime not a number", strings.Replace(shortStatLine, " 56 ", " x ", 1), 0, true},
		{"overflow", strings.Replace(statLine, " 1234 ", " 18446744073709551615 ", 1), 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatTicks([]byte(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseStatTicks(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseStatTicks(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzParseStatTicks(f *testing.F) {
	f.Add([]byte(statLine))
	f.Add([]byte(shortStatLine))
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("1 () R 0 0 0 0 0 0 0 0 0 0 18446744073709551615 1 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseStatTicks(b)
		if err != nil {
			return
		}
		// Accepted implies well-formed: rebuilding the line from the
		// fields after the last ')' with utime=got, stime=0 gives got.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		f[11], f[12] = fmt.Sprint(got), "0"
		again, err := ParseStatTicks([]byte("1 (x) " + strings.Join(f, " ")))
		if err != nil || again != got {
			t.Fatalf("reparse of %q = %d, %v; want %d", b, again, err, got)
		}
	})
}

func TestProcCPU(t *testing.T) {
	before, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn at least 200 ms of CPU (20 ticks), bounded in wall time.
	start := time.Now()
	x := 0
	for time.Since(start) < 300*time.Millisecond {
		for i := range 100000 {
			x += i
		}
	}
	after, err := ProcCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 0.05 || after-before > 60 {
		t.Errorf("ProcCPU grew by %.3f s over a 300 ms busy loop (x=%d), want 0.05..60", after-before, x)
	}
	if _, err := ProcCPU(-1); err == nil {
		t.Error("ProcCPU(-1) succeeded, want error")
	}
}

func TestParseVmRSS(t *testing.T) {
	parse := func(in string) (uint64, error) { return ParseVmRSS([]byte(in)) }
	measuretest.CheckParse(t, "ParseVmRSS", parse, map[string]uint64{
		"Name:\tgodwit\nVmPeak:\t 1 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n": 12345,
		"VmRSS: 7 kB": 7,
	}, []string{"Name: x\n", "VmRSS: 7 MB\n", "VmRSS: x kB\n"})
	if rss, err := VmRSS(os.Getpid()); err != nil || rss == 0 {
		t.Errorf("VmRSS(self) = %d, %v; want > 0", rss, err)
	}
	if _, err := VmRSS(-1); err == nil {
		t.Error("VmRSS(-1) succeeded, want error")
	}
}

func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t   12345 kB\n"))
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseVmRSS(b)
		if err != nil {
			return
		}
		// Accepted implies a well-formed line carrying got.
		found := false
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(v)
				if len(f) == 2 && f[1] == "kB" {
					n, err := strconv.ParseUint(f[0], 10, 64)
					found = err == nil && n == got
				}
				break
			}
		}
		if !found {
			t.Fatalf("ParseVmRSS(%q) = %d without a well-formed VmRSS line", b, got)
		}
	})
}

func TestReadTrim(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("  6.8.0-1 \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, want string
	}{
		{p, "6.8.0-1"},
		{filepath.Join(dir, "missing"), "unknown"},
	}
	for _, tt := range tests {
		if got := ReadTrim(tt.path); got != tt.want {
			t.Errorf("ReadTrim(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestLoadAvg(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"0.52 0.58 0.59 1/389 12345\n", "0.52 0.58 0.59"},
		{"1.00 2.00 3.00", "1.00 2.00 3.00"},
		{"0.52 0.58\n", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := loadAvg([]byte(tt.in)); got != tt.want {
			t.Errorf("loadAvg(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := LoadAvg(); len(strings.Fields(got)) != 3 {
		t.Errorf("LoadAvg() = %q, want three fields", got)
	}
}
