// SPDX-License-Identifier: MIT

package measure

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Main is the body of a benchmark program's main function; the program
// calls os.Exit(Main(...)). It parses args with parse, which writes usage
// and flag errors to stderr, and returns 0 for -h/-help (flag.ErrHelp) and
// 2 after printing any other parse error. Otherwise it calls run with a
// context cancelled by SIGINT or SIGTERM and a [NewLogger] on stderr, and
// returns 0, or 1 after logging "<name> failed" with the error. Main blocks
// until run returns.
func Main[O any](name string, args []string, stdout, stderr io.Writer,
	parse func(args []string, stderr io.Writer) (O, error),
	run func(ctx context.Context, o O, log *slog.Logger, stdout, stderr io.Writer) error,
) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := NewLogger(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, o, log, stdout, stderr)
	stop()
	if err != nil {
		log.Error(name+" failed", "err", err)
		return 1
	}
	return 0
}

// NewLogger returns a text logger on w without the time attribute, so that
// the progress lines of a benchmark stay short.
func NewLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{}
			}
			return a
		},
	}))
}

// Sleep waits for d or until ctx is done, and returns ctx.Err() in the
// latter case. For d <= 0 it returns ctx.Err() at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Rank returns the zero-based nearest-rank index of percentile p (1..100)
// among n > 0 sorted values: the smallest index i with (i+1)/n >= p/100.
func Rank(n, p int) int {
	r := (p*n + 99) / 100 // ceil(p*n/100)
	return max(r, 1) - 1
}

// WriteJSON writes v to w as JSON indented by two spaces, with a final
// newline.
func WriteJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	if err := e.Encode(v); err != nil {
		return fmt.Errorf("measure: json: %w", err)
	}
	return nil
}

// WriteReport prints a program's report: with asJSON, rep as JSON on
// stdout (see [WriteJSON]) and then the table on stderr; otherwise only the
// table, on stdout. table writes the table to the writer it is given.
func WriteReport(stdout, stderr io.Writer, asJSON bool, rep any, table func(io.Writer)) error {
	if !asJSON {
		table(stdout)
		return nil
	}
	if err := WriteJSON(stdout, rep); err != nil {
		return err
	}
	table(stderr)
	return nil
}

// JoinClose closes c and joins its error, if any, into *errp. It is meant
// for a deferred call in a function with a named error result:
//
//	lab, err := netlab.New("gwb")
//	if err != nil {
//		return err
//	}
//	defer measure.JoinClose(&err, lab)
func JoinClose(errp *error, c io.Closer) {
	if cerr := c.Close(); cerr != nil {
		*errp = errors.Join(*errp, cerr)
	}
}
