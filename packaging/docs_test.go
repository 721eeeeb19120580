// SPDX-License-Identifier: MIT

package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	manCommand    = "man/godwit.8"
	manConfig     = "man/godwit.toml.5"
	bashComplete  = "completion/godwit.bash"
	configDocFile = "../config/doc.go"
)

// helpCommands returns the commands `godwit help` lists, in its order.
func helpCommands(t *testing.T) []string {
	t.Helper()
	bin, why := godwitBinary(t)
	if bin == "" {
		t.Fatalf("cannot ask godwit help: %s", why)
	}
	out, code := run(t, time.Minute, nil, bin, "help")
	if code != 0 {
		t.Fatalf("godwit help: exit %d\n%s", code, out)
	}
	var cmds []string
	for _, m := range regexp.MustCompile(`(?m)^  ([a-z]+)\b`).FindAllStringSubmatch(out, -1) {
		cmds = append(cmds, m[1])
	}
	if len(cmds) < 5 {
		t.Fatalf("godwit help lists %q, want the commands:\n%s", cmds, out)
	}
	return append(cmds, "help")
}

// renderMan formats a man page as groff does for man(1), with every
// warning on (-ww), and fails the test on any warning. It returns the
// text without overstriking.
func renderMan(t *testing.T, page string) string {
	t.Helper()
	groff := requireTool(t, "groff")
	out, code := run(t, time.Minute, []string{"LC_ALL=C.UTF-8"}, groff, "-man", "-Tutf8", "-ww", "-z", page)
	if code != 0 || out != "" {
		t.Errorf("groff -man -Tutf8 -ww %s: exit %d, want 0 and no warnings:\n%s", page, code, out)
	}
	text, code := run(t, time.Minute, []string{"LC_ALL=C.UTF-8", "MANWIDTH=80"}, groff, "-man", "-Tutf8", "-P-cbou", page)
	if code != 0 {
		t.Fatalf("groff -man -Tutf8 %s: exit %d\n%s", page, code, text)
	}
	return text
}

// manSection returns the lines of section name ("COMMANDS") of rendered
// man page text.
func manSection(t *testing.T, text, name string) string {
	t.Helper()
	_, rest, ok := strings.Cut(text, "\n"+name+"\n")
	if !ok {
		t.Fatalf("no section %s in:\n%s", name, text)
	}
	if i := regexp.MustCompile(`\n[^ \n]`).FindStringIndex(rest); i != nil {
		rest = rest[:i[0]]
	}
	return rest
}

// manItems returns the tags of the tagged paragraphs (.TP) of a rendered
// section: the first word of each line indented by exactly 7 spaces.
func manItems(section string) []string {
	var items []string
	for _, m := range regexp.MustCompile(`(?m)^ {7}([^ \n]+)`).FindAllStringSubmatch(section, -1) {
		items = append(items, m[1])
	}
	return items
}

// TestManCommand: godwit.8 renders without a warning and documents, in its
// synopsis and its COMMANDS section, every command `godwit help` lists.
func TestManCommand(t *testing.T) {
	text := renderMan(t, manCommand)
	synopsis := manSection(t, text, "SYNOPSIS")
	commands := manItems(manSection(t, text, "COMMANDS"))
	for _, cmd := range helpCommands(t) {
		if !regexp.MustCompile(`(?m)^ +godwit ` + cmd + `\b`).MatchString(synopsis) {
			t.Errorf("%s: SYNOPSIS has no line for godwit %s:\n%s", manCommand, cmd, synopsis)
		}
		if !slices.Contains(commands, cmd) {
			t.Errorf("%s: COMMANDS does not describe %s (it has %q)", manCommand, cmd, commands)
		}
	}
	for _, s := range []string{"EXIT STATUS", "ENVIRONMENT", "FILES", "SEE ALSO"} {
		manSection(t, text, s)
	}
}

// configKeys returns the keys of the [interface] and [[peer]] tables as
// config/doc.go lists them (the package's reference of accepted keys).
func configKeys(t *testing.T) (iface, peer []string) {
	t.Helper()
	b, err := os.ReadFile(configDocFile)
	if err != nil {
		t.Fatal(err)
	}
	keyRE := regexp.MustCompile(`^//\t([a-z_]+) = `)
	var cur *[]string
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "//\t[interface]":
			cur = &iface
		case line == "//\t[[peer]]":
			cur = &peer
		case cur != nil:
			if m := keyRE.FindStringSubmatch(line); m != nil {
				*cur = append(*cur, m[1])
			}
		}
	}
	if len(iface) < 10 || len(peer) < 5 {
		t.Fatalf("%s: found [interface] keys %q and [[peer]] keys %q; has its format changed?", configDocFile, iface, peer)
	}
	return iface, peer
}

// TestManConfig: godwit.toml.5 renders without a warning and describes
// every key of config/doc.go in the section of its table, and no other.
func TestManConfig(t *testing.T) {
	text := renderMan(t, manConfig)
	iface, peer := configKeys(t)
	for _, tt := range []struct {
		section string
		keys    []string
	}{{"[interface]", iface}, {"[[peer]]", peer}} {
		items := manItems(manSection(t, text, tt.section))
		for _, k := range tt.keys {
			if !slices.Contains(items, k) {
				t.Errorf("%s: section %s does not describe %s", manConfig, tt.section, k)
			}
		}
		for _, it := range items {
			if !slices.Contains(tt.keys, it) {
				t.Errorf("%s: section %s describes %q, which config/doc.go does not list", manConfig, tt.section, it)
			}
		}
	}
}

// complete runs the completion function for the command line words (the
// last one is the word being completed) in a bash with the completion
// script sourced, in dir, and returns the candidates.
func complete(t *testing.T, dir string, words ...string) []string {
	t.Helper()
	bash := requireTool(t, "bash")
	script, err := filepath.Abs(bashComplete)
	if err != nil {
		t.Fatal(err)
	}
	prog := `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
_godwit && printf '%s\n' "${COMPREPLY[@]}"`
	out, code := run(t, time.Minute, nil, bash, append([]string{"--norc", "--noprofile", "-c", "cd " + dir + " && " + prog, "bash", script}, words...)...)
	if code != 0 {
		t.Fatalf("completing %q: exit %d\n%s", words, code, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			got = append(got, l)
		}
	}
	slices.Sort(got)
	return got
}

// TestBashCompletion: the script parses (bash -n), completes the commands
// `godwit help` lists, each command's options and config files for -c.
func TestBashCompletion(t *testing.T) {
	bash := requireTool(t, "bash")
	if out, code := run(t, time.Minute, nil, bash, "-n", bashComplete); code != 0 || out != "" {
		t.Fatalf("bash -n %s: exit %d\n%s", bashComplete, code, out)
	}
	dir := t.TempDir()
	for _, f := range []string{"gw0.toml", "gw1.toml", "gw0.key", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmds := helpCommands(t)
	slices.Sort(cmds)
	tests := []struct {
		words []string
		want  []string
	}{
		{[]string{"godwit", ""}, cmds},
		{[]string{"godwit", "sh"}, []string{"show"}},
		{[]string{"godwit", "show", "-"}, []string{"--json", "--socket", "-i"}},
		{[]string{"godwit", "show", "--json", "--s"}, []string{"--socket"}},
		{[]string{"godwit", "run", ""}, []string{"-c"}},
		{[]string{"godwit", "check", "-c", ""}, []string{"gw0.toml", "gw1.toml", "sub"}},
		{[]string{"godwit", "check", "-c", "gw1"}, []string{"gw1.toml"}},
		{[]string{"godwit", "demo", ""}, []string{"-mb"}},
		{[]string{"godwit", "genkey", ""}, nil},
	}
	for _, tt := range tests {
		if got := complete(t, dir, tt.words...); !slices.Equal(got, tt.want) {
			t.Errorf("completing %q: %q, want %q", tt.words, got, tt.want)
		}
	}
}
