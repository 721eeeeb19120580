// SPDX-License-Identifier: MIT

package config

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileHeaders checks the house rules for this package's files: the SPDX
// line and a blank line first, and exactly one package doc comment.
func TestFileHeaders(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	docs := 0
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(src), "// SPDX-License-Identifier: MIT\n\n") {
			t.Errorf("%s does not start with the SPDX line and a blank line", f)
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if af.Doc != nil && !strings.HasSuffix(f, "_test.go") {
			docs++
			if !strings.HasPrefix(af.Doc.Text(), "Package config ") {
				t.Errorf("%s: package doc starts %q, want \"Package config \"", f, af.Doc.Text()[:min(20, len(af.Doc.Text()))])
			}
		}
	}
	if docs != 1 {
		t.Errorf("found %d package doc comments, want exactly 1 (in doc.go)", docs)
	}
}
