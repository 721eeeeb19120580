// SPDX-License-Identifier: MIT

//go:build unix

package config

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadPrivateKeyFileFIFO gives a named pipe as the key file: it must be
// refused at once, not block until something writes to the pipe.
func TestReadPrivateKeyFileFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gw0.key")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ReadPrivateKeyFile(path)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("ReadPrivateKeyFile(fifo) = %v, want a not-a-regular-file error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadPrivateKeyFile(fifo) still blocked after 10 s")
	}
}

// TestLoadNotRegular gives Load what is not a config file: it must refuse
// at once, naming the file, and not read /dev/zero until memory runs out
// or block on a FIFO until a writer comes.
func TestLoadNotRegular(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "gw0.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, path := range []string{"/dev/zero", fifo, t.TempDir()} {
		done := make(chan error, 1)
		go func() {
			_, err := Load(path)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), path+" is not a regular file") {
				t.Errorf("Load(%s) = %v, want a not-a-regular-file error naming it", path, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("Load(%s) still running after 10 s", path)
		}
	}
}
