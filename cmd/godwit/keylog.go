// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// errKeylog marks a key log file that the daemon refuses to write to; run
// exits with exitConfig on it, since only the operator can fix it.
var errKeylog = errors.New("key log file refused")

// openKeylog opens the TLS key log file at path for appending, creating it
// with mode 0600. It refuses a file that is not a regular file (opening a
// FIFO could block), that group or others may read or write (they could
// decrypt the tunnel, or have planted the file), or that another user owns:
// the secrets would go where others can read them. Such errors wrap
// errKeylog.
func openKeylog(path string) (*os.File, error) {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: key log file %s %s", errKeylog, path, fmt.Sprintf(format, args...))
	}
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, refuse("is not a regular file (%v): give the path of a new file, or remove keylog_file", fi.Mode().Type())
	}
	// O_NOFOLLOW: a symbolic link planted at path must not redirect the
	// secrets; Lstat above names the problem, this closes the race.
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("key log file %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("key log file %s: %w", path, err)
	}
	switch st, _ := fi.Sys().(*syscall.Stat_t); {
	case !fi.Mode().IsRegular():
		f.Close()
		return nil, refuse("is not a regular file (%v): give the path of a new file, or remove keylog_file", fi.Mode().Type())
	case fi.Mode().Perm()&0o077 != 0:
		f.Close()
		return nil, refuse("has mode %04o: others could read the TLS secrets in it and decrypt the tunnel; remove it or chmod 600 %s", fi.Mode().Perm(), path)
	case st != nil && int(st.Uid) != os.Geteuid():
		f.Close()
		return nil, refuse("is owned by uid %d, not by this process's user (uid %d): remove it or chown it", st.Uid, os.Geteuid())
	}
	return f, nil
}
