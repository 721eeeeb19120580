// SPDX-License-Identifier: MIT

package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/godwit-vpn/godwit/config/key"
)

// maxKeyFileSize bounds how much of a private key file is read: a key is 44
// characters, anything much longer is not a key file.
const maxKeyFileSize = 4096

// ReadPrivateKeyFile reads a private key written by `godwit genkey`. It
// follows symbolic links and refuses a target that is not a regular file,
// whose mode gives group or others any access, that is owned by another user
// than this process's or root, or that lies in a directory that another user
// could write to (see dirProblem), naming the file, the problem and the fix. The file is checked through the open descriptor, so what is
// checked is what is read.
func ReadPrivateKeyFile(path string) (key.Private, error) {
	k, err := readPrivateKeyFile(path)
	if err != nil {
		return key.Private{}, fmt.Errorf("config: %w", err)
	}
	return k, nil
}

// readPrivateKeyFile is ReadPrivateKeyFile without the package prefix on its
// errors, so that Load can put the config file and line in front.
func readPrivateKeyFile(path string) (key.Private, error) {
	// Refuse a FIFO before opening it: opening one blocks until a writer
	// comes. The descriptor is checked again below.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return key.Private{}, fmt.Errorf("private key file %s is not a regular file (%s)", path, fileKind(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return key.Private{}, fmt.Errorf("private key file %s does not exist (create it with: (umask 077; godwit genkey > %s)): %w", path, path, err)
		}
		return key.Private{}, fmt.Errorf("private key file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return key.Private{}, fmt.Errorf("private key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return key.Private{}, fmt.Errorf("private key file %s is not a regular file (%s)", path, fileKind(fi.Mode()))
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return key.Private{}, fmt.Errorf("private key file %s has mode %04o; it must not be accessible by group or others (chmod 600 %s)", path, perm, path)
	}
	if why := ownerProblem(path, fi); why != "" {
		return key.Private{}, errors.New(why)
	}
	if why := dirProblem(path); why != "" {
		return key.Private{}, errors.New(why)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return key.Private{}, fmt.Errorf("private key file %s: %w", path, err)
	}
	if len(b) > maxKeyFileSize {
		return key.Private{}, fmt.Errorf("private key file %s does not hold a private key: it is longer than %d bytes", path, maxKeyFileSize)
	}
	k, err := key.Decode(strings.TrimSpace(string(b)))
	if err != nil {
		return key.Private{}, fmt.Errorf("private key file %s does not hold a base64 Ed25519 private key: %w", path, err)
	}
	return key.Private(k), nil
}

// clip shortens s for quoting in an error message.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
