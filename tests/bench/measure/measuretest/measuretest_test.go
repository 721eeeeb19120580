// SPDX-License-Identifier: MIT

package measuretest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that records failures instead of stopping the
// test; everything else goes to the real test.
type recorder struct {
	testing.TB
	errs, fatals, logs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}
func (r *recorder) Logf(format string, args ...any) {
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Failed() bool { return len(r.errs)+len(r.fatals) > 0 }

func TestCheckParse(t *testing.T) {
	r := &recorder{TB: t}
	parse := func(in string) (int, error) {
		n, err := strconv.Atoi(in)
		if in == "zero" {
			return 3, errors.New("not zero")
		}
		return n, err
	}
	CheckParse(r, "atoi", parse, map[string]int{
		"7": 7,
		"8": 9, // wrong value
		"y": 0, // fails
	}, []string{
		"x",
		"1",    // succeeds
		"zero", // fails with 3, not the zero value
	})
	want := []string{
		`atoi("8") = 8, <nil>; want 9`,
		`atoi("y") = 0, strconv.Atoi: parsing "y": invalid syntax; want 0`,
		`atoi("1") = 1, <nil>; want 0 and an error`,
		`atoi("zero") = 3, not zero; want 0 and an error`,
	}
	if got := strings.Join(r.errs, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("CheckParse reported\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
}

func TestCheckFlags(t *testing.T) {
	parse := func(args []string, _ io.Writer) (int, error) {
		if len(args) > 1 {
			return 0, errors.New("too many")
		}
		return len(args), nil
	}
	r := &recorder{TB: t}
	CheckFlags(r, parse, [][]string{nil, {"a"}, {"a", "b"}}, [][]string{{"a", "b", "c"}, {}})
	want := `flags ["a" "b"]: too many, want no error` + "\n" + `flags [] accepted, want an error`
	if got := strings.Join(r.errs, "\n"); got != want {
		t.Errorf("CheckFlags reported\n%s\nwant\n%s", got, want)
	}
}

func TestRunJSON(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command to count network namespaces")
	}
	errRun := errors.New("boom")
	run := func(ctx context.Context, o string, log *slog.Logger, stdout, stderr io.Writer) error {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("run got a context without deadline")
		}
		log.Info("progress")
		fmt.Fprint(stdout, o)
		fmt.Fprint(stderr, "the table\n")
		return errRun
	}
	var rep struct{ A int }
	stderr, err := RunJSON(t, "gwmt-", run, `{"A": 3}`, time.Minute, &rep)
	if rep.A != 3 || stderr != "the table\n" || err != errRun {
		t.Errorf("RunJSON = %+v, %q, %v; want A 3, the table, boom", rep, stderr, err)
	}

	r := &recorder{TB: t}
	t.Run("not JSON", func(t *testing.T) {
		r.TB = t
		RunJSON(r, "gwmt-", run, "x", time.Minute, &rep)
	})
	if len(r.fatals) != 1 || !strings.HasPrefix(r.fatals[0], "stdout is not JSON: ") || !strings.Contains(r.fatals[0], "(run: boom)\nx\nstderr:\nthe table\n") {
		t.Errorf("RunJSON of a non-JSON stdout: Fatalf %q", r.fatals)
	}
	if len(r.logs) != 1 || !strings.Contains(r.logs[0], "msg=progress") {
		t.Errorf("RunJSON of a failed run logged %q, want the run's log", r.logs)
	}
}
