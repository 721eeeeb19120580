// SPDX-License-Identifier: MIT

package config

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func TestLocate(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want map[string]int // path with "/" for the separator -> line
	}{
		{
			name: "tables and keys",
			src:  "a = 1\n[interface]\nname = \"gw0\" # comment\n  mtu=1300\n",
			want: map[string]int{"a": 1, "interface": 2, "interface/name": 3, "interface/mtu": 4},
		},
		{
			name: "array of tables and sub-table",
			src:  "[[peer]]\nname = \"a\"\n\n[[peer]]\nname = \"b\"\n[peer.sub]\nx = 1\n",
			want: map[string]int{"peer": 1, "peer/[0]": 1, "peer/[0]/name": 2, "peer/[1]": 4, "peer/[1]/name": 5, "peer/[1]/sub": 6, "peer/[1]/sub/x": 7},
		},
		{
			name: "multi-line array with comments and brackets in strings",
			src:  "[peer]\nips = [\n  \"a]\", # ] not the end\n  'b[',\n  [1, [2]],\n]\nnext = 2\n",
			want: map[string]int{"peer": 1, "peer/ips": 2, "peer/next": 7},
		},
		{
			name: "multi-line strings",
			src:  "a = \"\"\"\nx = 1\n\\\"\"\"\n\"\"\"\nb = '''\n[t]\n'''''\nc = 3\n",
			want: map[string]int{"a": 1, "b": 5, "c": 8},
		},
		{
			name: "dotted and quoted keys",
			src:  "[interface]\nx.y = 1\n\"quoted key\" = 2\n'lit' = 3\n[ \"a.b\" . c ]\nd = 4\n",
			want: map[string]int{"interface": 1, "interface/x": 2, "interface/x/y": 2, "interface/quoted key": 3, "interface/lit": 4, "a.b": 5, "a.b/c": 5, "a.b/c/d": 6},
		},
		{
			name: "inline table over lines",
			src:  "t = {a = 1, b = [\n2]}\nu = 5\n",
			want: map[string]int{"t": 1, "u": 3},
		},
		{
			name: "CRLF and escapes",
			src:  "[interface]\r\nname = \"a\\\"b\" \r\nmtu = 1\r\n",
			want: map[string]int{"interface": 1, "interface/name": 2, "interface/mtu": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if _, err := toml.Decode(tt.src, &m); err != nil {
				t.Fatalf("test input is not TOML: %v", err)
			}
			got := locate(tt.src)
			for k, want := range tt.want {
				path := strings.ReplaceAll(k, "/", pathSep)
				if g, ok := got[path]; !ok || g != want {
					t.Errorf("line of %q = %d (found %v), want %d", k, g, ok, want)
				}
			}
		})
	}
}

// TestLocateNeverPanics runs the locator on text that is not TOML.
func TestLocateNeverPanics(t *testing.T) {
	for _, s := range []string{"", "[", "[[", "\"", "'''", "a = \"\\", "a = [", "a = {", "= 1", "]]]", "a.\n", "\"\"\"\\", "x = '''a''"} {
		locate(s)
	}
}

// FuzzLocate runs the locator on any text, TOML or not: it must not panic
// or loop, and every line it records must lie within the text.
func FuzzLocate(f *testing.F) {
	for _, s := range []string{"", "[", "[[", "\"", "'''", "a = \"\\", "a = [", "a = {", "= 1", "]]]", "a.\n", "\"\"\"\\", "x = '''a''",
		"[interface]\nname = \"gw0\"\n\n[[peer]]\nname = \"a\"\nallowed_ips = [\n  \"10.0.0.0/8\",\n]\n",
		"a = \"\"\"\nx\\\n\"\"\"\n'b.c'.\"d\" = { e = [1, {f = 2}] }\n[[t]]\n[[t]]\n[t.u]\nk = 1 # c\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		last := strings.Count(s, "\n") + 1
		for path, line := range locate(s) {
			if line < 1 || line > last {
				t.Fatalf("locate(%q): %q at line %d, text has %d lines", s, path, line, last)
			}
		}
	})
}
