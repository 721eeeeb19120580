// SPDX-License-Identifier: MIT

package relay

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHouseStyle checks that every file starts with the SPDX line and a
// blank line, and that exactly one file carries the package doc.
func TestHouseStyle(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for _, name := range files {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(src), "// SPDX-License-Identifier: MIT\n\n") {
			t.Errorf("%s: does not start with the SPDX line and a blank line", name)
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, src, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil {
			docs = append(docs, name)
			if strings.Contains(f.Doc.Text(), "SPDX") {
				t.Errorf("%s: the SPDX header became the package doc", name)
			}
		}
	}
	if len(docs) != 1 {
		t.Errorf("package doc in %v, want exactly one file", docs)
	}
}
