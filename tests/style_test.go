// SPDX-License-Identifier: MIT

package tests

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestHouseStyle checks every Go file of the module: it starts with the
// SPDX line and a blank line (so the header never becomes a doc comment),
// each package has its doc comment in exactly one non-test file, and no
// test file carries one.
func TestHouseStyle(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	docs := make(map[string][]string) // package dir -> files with a package doc
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "dist") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != root {
				return filepath.SkipDir // another module: quicconn/third_party/quic-go, upstream's style
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(string(src), "// SPDX-License-Identifier: MIT\n\n") {
			t.Errorf("%s: does not start with the SPDX line and a blank line", rel)
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, src, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		dir := filepath.Dir(rel)
		if _, ok := docs[dir]; !ok && !strings.HasSuffix(path, "_test.go") {
			docs[dir] = nil
		}
		if f.Doc == nil {
			return nil
		}
		if strings.HasSuffix(path, "_test.go") {
			t.Errorf("%s: a test file carries a package doc comment", rel)
			return nil
		}
		docs[dir] = append(docs[dir], filepath.Base(path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dirs := make([]string, 0, len(docs))
	for dir := range docs {
		dirs = append(dirs, dir)
	}
	slices.Sort(dirs)
	for _, dir := range dirs {
		if n := len(docs[dir]); n != 1 {
			t.Errorf("package %s: doc comment in %d files %v, want exactly one", dir, n, docs[dir])
		}
	}
	if len(dirs) < 10 {
		t.Errorf("checked only %d packages; is the module root right?", len(dirs))
	}
}
