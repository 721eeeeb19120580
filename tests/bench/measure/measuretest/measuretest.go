// SPDX-License-Identifier: MIT

// Package measuretest holds what the tests of the benchmark programs,
// tests/bench and tests/bench/hubscale, and of package measure share: a
// table runner for a parse function, one for a program's flags, and a run
// of the whole program that decodes its JSON report. It imports package
// testing, so only tests may import it.
package measuretest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// CheckParse calls parse with each input of ok, for which it must return
// the value ok maps it to and no error, and with each input of bad, which
// it must reject with T's zero value; it fails t for each that does not.
// name is parse's in the messages.
func CheckParse[T any](t testing.TB, name string, parse func(string) (T, error), ok map[string]T, bad []string) {
	t.Helper()
	for _, in := range slices.Sorted(maps.Keys(ok)) {
		if got, err := parse(in); err != nil || !reflect.DeepEqual(got, ok[in]) {
			t.Errorf("%s(%q) = %+v, %v; want %+v", name, in, got, err, ok[in])
		}
	}
	var zero T
	for _, in := range bad {
		if got, err := parse(in); err == nil || !reflect.DeepEqual(got, zero) {
			t.Errorf("%s(%q) = %+v, %v; want %+v and an error", name, in, got, err, zero)
		}
	}
}

// CheckFlags calls a program's flag parser (the parse of [measure.Main])
// with each command line of ok and of bad, and fails t where one of ok is
// rejected or one of bad accepted.
func CheckFlags[O any](t testing.TB, parse func(args []string, stderr io.Writer) (O, error), ok, bad [][]string) {
	t.Helper()
	for _, args := range ok {
		if _, err := parse(args, io.Discard); err != nil {
			t.Errorf("flags %q: %v, want no error", args, err)
		}
	}
	for _, args := range bad {
		if _, err := parse(args, io.Discard); err == nil {
			t.Errorf("flags %q accepted, want an error", args)
		}
	}
}

// RunJSON runs a benchmark program's run function (the run of
// [measure.Main]) with o, which must ask for JSON, under a context that
// ends after timeout, and decodes what it printed on stdout into rep. It
// returns what run wrote on stderr (the table) and run's error; run's log
// is shown if t fails. RunJSON fails t at once when stdout is not JSON,
// and when t ends with more network namespaces named prefix* than before
// the run.
func RunJSON[O any](t testing.TB, prefix string, run func(ctx context.Context, o O, log *slog.Logger, stdout, stderr io.Writer) error,
	o O, timeout time.Duration, rep any,
) (stderr string, err error) {
	t.Helper()
	labtest.CheckNamespacesRemoved(t, prefix)
	var stdout, errw, logw bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- log of the run ---\n%s", logw.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err = run(ctx, o, slog.New(slog.NewTextHandler(&logw, nil)), &stdout, &errw)
	if jerr := json.Unmarshal(stdout.Bytes(), rep); jerr != nil {
		t.Fatalf("stdout is not JSON: %v (run: %v)\n%s\nstderr:\n%s", jerr, err, stdout.String(), errw.String())
	}
	return errw.String(), err
}
