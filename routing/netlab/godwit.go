// SPDX-License-Identifier: MIT

package netlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

var build struct {
	once sync.Once
	path string
	err  error
}

// Godwit returns the path of a godwit binary. If the environment variable
// GODWIT_BIN is set, it names the binary to use (a prebuilt one, for
// instance to compare two builds in the benchmarks). Otherwise the first call builds ./cmd/godwit of
// this module into a temporary directory with `go build`, and later calls
// in the same process return the same binary (or the same error). The
// binary is shared by every lab of the process; [RemoveBuild] removes it
// (a test package's TestMain calls it after m.Run).
func Godwit() (string, error) {
	if p := os.Getenv("GODWIT_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("netlab: GODWIT_BIN: %w", err)
		}
		return p, nil
	}
	build.once.Do(func() { build.path, build.err = buildGodwit() })
	return build.path, build.err
}

// RemoveBuild removes the binary Godwit built, if it built one, so that
// test runs do not leave 19 MB each in the temporary directory. Later
// calls to Godwit in the process fail.
func RemoveBuild() {
	build.once.Do(func() { build.err = errors.New("netlab: the godwit build was removed") })
	if build.path != "" {
		_ = os.RemoveAll(filepath.Dir(build.path))
	}
}

func buildGodwit() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "godwit-bin-")
	if err != nil {
		return "", fmt.Errorf("netlab: %w", err)
	}
	bin := filepath.Join(dir, "godwit")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/godwit")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("netlab: go build ./cmd/godwit in %s: %w: %s", root, err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// moduleRoot finds the directory holding this module's go.mod: from this
// source file's location when it is available, else from `go env GOMOD`.
func moduleRoot() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		for dir := filepath.Dir(file); ; dir = filepath.Dir(dir) {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/godwit-vpn/godwit\n") {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("netlab: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("netlab: cannot find the godwit module (set GODWIT_BIN or run inside the module)")
	}
	return filepath.Dir(gomod), nil
}
