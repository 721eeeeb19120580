// SPDX-License-Identifier: MIT

package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml reports positions for syntax and type errors only, not for
// decoded keys. The locator below is a second, small pass over text that the
// TOML decoder has already accepted: it records the line of every table
// header and of every "key =" (the line where the key starts, also for values
// that span lines), so that validation errors can say where they are.
//
// Locations are keyed by a path: table names and keys, with "[n]" for the n-th
// (0-based) table of an array of tables: "interface", "interface\x00mtu",
// "peer\x00[1]", "peer\x00[1]\x00endpoint". The first occurrence wins.
// Keys inside inline tables are not recorded; lookups fall back to the
// nearest recorded parent.

// pathSep separates the parts of a location path; it cannot occur in a key
// that the locator records under another meaning.
const pathSep = "\x00"

// locPath joins parts into a location path.
func locPath(parts ...string) string { return strings.Join(parts, pathSep) }

// child returns the path of key k under the path p, which is "" at the top.
func child(p, k string) string {
	if p == "" {
		return k
	}
	return p + pathSep + k
}

// index returns the path part for the n-th table of an array of tables.
func index(n int) string { return "[" + strconv.Itoa(n) + "]" }

// locate returns the line of every header and key in src, which must be text
// that toml.Decode accepted. On other text it returns a partial result; it
// never panics.
func locate(src string) map[string]int {
	l := locator{src: src, line: 1, lines: make(map[string]int), arrays: make(map[string]int)}
	l.run()
	return l.lines
}

type locator struct {
	src    string
	pos    int
	line   int
	lines  map[string]int // path -> line
	arrays map[string]int // path of an array of tables -> tables seen so far
}

func (l *locator) record(path string, line int) {
	if _, ok := l.lines[path]; !ok {
		l.lines[path] = line
	}
}

func (l *locator) peek(off int) byte {
	if l.pos+off < len(l.src) {
		return l.src[l.pos+off]
	}
	return 0
}

// skipSpace skips blanks, and newlines and comments when multiline is set.
func (l *locator) skipSpace(multiline bool) {
	for l.pos < len(l.src) {
		switch c := l.src[l.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			l.pos++
		case c == '\n' && multiline:
			l.pos++
			l.line++
		case c == '#':
			for l.pos < len(l.src) && l.src[l.pos] != '\n' {
				l.pos++
			}
		default:
			return
		}
	}
}

// skipLine moves to the start of the next line.
func (l *locator) skipLine() {
	for l.pos < len(l.src) && l.src[l.pos] != '\n' {
		l.pos++
	}
	if l.pos < len(l.src) {
		l.pos++
		l.line++
	}
}

func (l *locator) run() {
	table := "" // resolved path of the current table
	for l.pos < len(l.src) {
		l.skipSpace(true)
		if l.pos >= len(l.src) {
			return
		}
		line := l.line
		if l.src[l.pos] == '[' {
			array := l.peek(1) == '['
			if array {
				l.pos += 2
			} else {
				l.pos++
			}
			keys := l.keyPath()
			table = l.resolve(keys, array, line)
			l.skipLine()
			continue
		}
		start := l.pos
		keys := l.keyPath()
		if l.pos == start || len(keys) == 0 {
			l.skipLine() // not a key: cannot happen in accepted TOML
			continue
		}
		p := table
		for _, k := range keys {
			p = child(p, k)
			l.record(p, line)
		}
		l.skipAssigned()
		l.skipLine()
	}
}

// resolve returns the path of the table named by keys, where every prefix that
// is an array of tables refers to its latest table, and records header lines.
func (l *locator) resolve(keys []string, array bool, line int) string {
	p := ""
	for i, k := range keys {
		p = child(p, k)
		l.record(p, line) // an implicit parent table: its first mention
		last := i == len(keys)-1
		if last && array {
			n := l.arrays[p]
			l.arrays[p] = n + 1
			p += pathSep + index(n)
		} else if n, ok := l.arrays[p]; ok && n > 0 {
			p += pathSep + index(n-1)
		}
	}
	l.record(p, line)
	return p
}

// keyPath reads a dotted key and stops after '=', ']' or ']]' is reached (not
// consumed for '=').
func (l *locator) keyPath() []string {
	var keys []string
	for l.pos < len(l.src) {
		l.skipSpace(false)
		if l.pos >= len(l.src) {
			break
		}
		switch c := l.src[l.pos]; c {
		case '=':
			return keys
		case ']':
			for l.pos < len(l.src) && l.src[l.pos] == ']' {
				l.pos++
			}
			return keys
		case '.':
			l.pos++
		case '"':
			keys = append(keys, l.basicKey())
		case '\'':
			l.pos++
			start := l.pos
			for l.pos < len(l.src) && l.src[l.pos] != '\'' && l.src[l.pos] != '\n' {
				l.pos++
			}
			keys = append(keys, l.src[start:l.pos])
			if l.pos < len(l.src) && l.src[l.pos] == '\'' {
				l.pos++
			}
		case '\n', '#':
			return keys
		default:
			start := l.pos
			for l.pos < len(l.src) {
				c := l.src[l.pos]
				if c == ' ' || c == '\t' || c == '.' || c == '=' || c == ']' || c == '\n' || c == '\r' || c == '#' || c == '"' || c == '\'' {
					break
				}
				l.pos++
			}
			if l.pos == start {
				l.pos++ // a byte no key can hold: make progress
				continue
			}
			keys = append(keys, l.src[start:l.pos])
		}
	}
	return keys
}

// basicKey reads a "quoted" key at l.pos and returns it unescaped.
func (l *locator) basicKey() string {
	start := l.pos
	l.pos++
	for l.pos < len(l.src) && l.src[l.pos] != '"' && l.src[l.pos] != '\n' {
		if l.src[l.pos] == '\\' {
			l.pos++
		}
		l.pos++
	}
	if l.pos < len(l.src) && l.src[l.pos] == '"' {
		l.pos++
	}
	if l.pos > len(l.src) {
		l.pos = len(l.src)
	}
	raw := l.src[start:l.pos]
	if s, err := strconv.Unquote(raw); err == nil {
		return s
	}
	return strings.Trim(raw, `"`)
}

// skipValue skips one value, counting the newlines inside it.
func (l *locator) skipValue() {
	l.skipSpace(false)
	if l.pos >= len(l.src) {
		return
	}
	switch l.src[l.pos] {
	case '"', '\'':
		l.skipString()
	case '[':
		l.skipElems(']', l.skipValue)
	case '{':
		l.skipElems('}', func() {
			l.keyPath()
			l.skipAssigned()
		})
	default:
		for l.pos < len(l.src) {
			switch l.src[l.pos] {
			case ',', ']', '}', '#', '\n':
				return
			}
			l.pos++
		}
	}
}

// skipElems skips the comma-separated elements of an array or inline table,
// with skip for each one, from its opening bracket at l.pos to the closing
// one.
func (l *locator) skipElems(closing byte, skip func()) {
	l.pos++
	for l.pos < len(l.src) {
		l.skipSpace(true)
		if l.pos >= len(l.src) {
			return
		}
		switch l.src[l.pos] {
		case closing:
			l.pos++
			return
		case ',':
			l.pos++
		default:
			before := l.pos
			skip()
			if l.pos == before {
				l.pos++ // a byte no element can start with: make progress
			}
		}
	}
}

// skipAssigned skips "= value" after a key, if l.pos is at the '='.
func (l *locator) skipAssigned() {
	if l.peek(0) == '=' {
		l.pos++
		l.skipValue()
	}
}

// skipString skips a basic, literal or multi-line string at l.pos.
func (l *locator) skipString() {
	q := l.src[l.pos]
	if l.peek(1) == q && l.peek(2) == q {
		l.pos += 3
		for l.pos < len(l.src) {
			c := l.src[l.pos]
			switch {
			case c == '\\' && q == '"':
				if l.peek(1) == '\n' {
					l.line++
				}
				l.pos += 2
			case c == '\n':
				l.line++
				l.pos++
			case c == q && l.peek(1) == q && l.peek(2) == q:
				l.pos += 3
				// Up to two more quotes belong to the content before the delimiter.
				for i := 0; i < 2 && l.peek(0) == q; i++ {
					l.pos++
				}
				return
			default:
				l.pos++
			}
		}
		return
	}
	l.pos++
	for l.pos < len(l.src) {
		c := l.src[l.pos]
		switch {
		case c == '\\' && q == '"':
			l.pos += 2
		case c == q || c == '\n':
			l.pos++
			return
		default:
			l.pos++
		}
	}
}
