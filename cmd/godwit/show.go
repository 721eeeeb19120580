// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
)

const showUsage = "usage: godwit show [-i IFACE] [--json] [--socket PATH]"

// cmdShow prints the status of a running daemon, read from its control
// socket: -i picks the interface, --socket a socket path (default: the
// GODWIT_SOCKET environment variable, else the only socket in /run/godwit).
func cmdShow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	iface := fs.String("i", "", "interface `name`")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	sock := fs.String("socket", socketOverride(), "control socket `path`")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return exitError{code: 2, msg: showUsage}
	}
	path := *sock
	if path == "" {
		var err error
		if path, err = findSocket(ctl.Dir, *iface); err != nil {
			return err
		}
	}
	st, err := ctl.Query(ctx, path)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	_, err = io.WriteString(os.Stdout, ctl.Format(st))
	return err
}

const reloadUsage = "usage: godwit reload [-i IFACE] [--socket PATH]"

// cmdReload makes a running daemon read its config file again and apply
// it, like SIGHUP, but says how it went: exit 0 when applied, 1 with the
// reason when the file is bad (the daemon keeps running the previous
// config) or could be applied only in part. The unit's ExecReload runs it.
func cmdReload(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	iface := fs.String("i", "", "interface `name`")
	sock := fs.String("socket", socketOverride(), "control socket `path`")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return exitError{code: 2, msg: reloadUsage}
	}
	path := *sock
	if path == "" {
		var err error
		if path, err = findSocket(ctl.Dir, *iface); err != nil {
			return err
		}
	}
	if err := ctl.Reload(ctx, path); err != nil {
		return err
	}
	fmt.Println("reloaded")
	return nil
}

// findSocket returns the socket of iface in dir, or with iface "" the
// only socket there.
func findSocket(dir, iface string) (string, error) {
	if iface != "" {
		return filepath.Join(dir, iface+".sock"), nil
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("no godwit socket in %s: is the daemon running?", dir)
	case errors.Is(err, os.ErrPermission):
		return "", fmt.Errorf("permission denied reading %s: run godwit as root", dir)
	case err != nil:
		return "", err
	}
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".sock"); ok && e.Type()&os.ModeSocket != 0 {
			names = append(names, n)
		}
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("no godwit socket in %s: is the daemon running?", dir)
	case 1:
		return filepath.Join(dir, names[0]+".sock"), nil
	}
	slices.Sort(names)
	return "", fmt.Errorf("several godwit daemons are running (%s): choose one with -i", strings.Join(names, ", "))
}
