// SPDX-License-Identifier: MIT

package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Error is one problem in a configuration, with where it is. Parse, Load and
// Validate return every problem they find as *Error values joined with
// [errors.Join]; use [errors.As] to get the first one, or unwrap the joined
// error (interface{ Unwrap() []error }) to walk them all.
type Error struct {
	File string // config file as given to Parse or Load; "" when unnamed
	Line int    // 1-based line in File; 0 when the problem is not at one line
	Msg  string // what is wrong, lower case, without the file and line
	Err  error  // underlying cause (for errors.Is), or nil
}

// Error returns "file:line: msg", "file: msg" when Line is 0, and uses
// "config" in place of an empty File.
func (e *Error) Error() string {
	f := e.File
	if f == "" {
		f = "config"
	}
	if e.Line <= 0 {
		return f + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", f, e.Line, e.Msg)
}

// Unwrap returns the underlying cause, or nil.
func (e *Error) Unwrap() error { return e.Err }

// problems collects *Error values for one file.
type problems struct {
	file string
	errs []*Error
}

// addf records a problem at line.
func (p *problems) addf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// addErr records a problem at line whose message is msg and cause err.
func (p *problems) addErr(line int, msg string, err error) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: msg, Err: err})
}

// err returns all problems sorted by line (stable, so problems on one line
// keep the order they were found in), joined; nil when there are none.
func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}
