// SPDX-License-Identifier: MIT

//go:build unix

package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ownerProblem says why the key file fi (fstat of the open file at path)
// must not be trusted because of who owns it, or "". Like OpenSSH's
// secure_filename, the owner must be this process's user or root:
// another user could rewrite the key, or read it after a chmod.
func ownerProblem(path string, fi fs.FileInfo) string {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	if euid := os.Geteuid(); int(st.Uid) != euid && st.Uid != 0 {
		return fmt.Sprintf("private key file %s is owned by uid %d, not by this process's user (uid %d) or root: another user controls the key (chown %d %s)",
			path, st.Uid, euid, euid, path)
	}
	return ""
}

// dirProblem says why the directories the key file at path lies in make
// it untrustworthy, or "": a directory, up to the root, that is not owned
// by this process's user or root, or that group or others may write to
// (who can write to a directory can replace the files in it), unless its
// sticky bit is set (/tmp: only a file's owner can remove or rename it).
// The directories of the path as given and of the file a symbolic link
// leads to are checked.
func dirProblem(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	dirs := []string{filepath.Dir(abs)}
	if real, err := filepath.EvalSymlinks(abs); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	euid := os.Geteuid()
	seen := make(map[string]bool)
	for _, d := range dirs {
		for ; !seen[d]; d = filepath.Dir(d) {
			seen[d] = true
			fi, err := os.Stat(d)
			if err != nil {
				return ""
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				return ""
			}
			perm := fi.Mode().Perm()
			switch {
			case int(st.Uid) != euid && st.Uid != 0:
				return fmt.Sprintf("private key file %s is in directory %s, owned by uid %d, not by this process's user (uid %d) or root: its owner could replace the key",
					path, d, st.Uid, euid)
			case perm&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
				return fmt.Sprintf("private key file %s is in directory %s with mode %04o, which group or others may write to: they could replace the key (chmod go-w %s)",
					path, d, perm, d)
			}
		}
	}
	return ""
}
