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

// cmdShow prints the status of the running daemons, read from their
// control sockets: -i picks the interface, --socket a socket path
// (default: the GODWIT_SOCKET environment variable, else every socket of
// this network namespace's daemons, as `wg show` shows every interface).
// With several daemons --json prints an array.
func cmdShow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("show", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	iface := fs.String("i", "", "interface `name`")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	sock := fs.String("socket", socketOverride(), "control socket `path`")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return exitError{code: 2, msg: showUsage}
	}
	paths := []string{*sock}
	if *sock == "" {
		var err error
		if paths, err = findSockets(ctl.NetnsDir(), *iface); err != nil {
			return err
		}
	}
	var sts []*ctl.Status
	var errs []error
	for _, path := range paths {
		st, err := ctl.Query(ctx, path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sts = append(sts, st)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		var err error
		switch {
		case len(paths) == 1 && len(sts) == 1:
			err = enc.Encode(sts[0])
		case len(sts) > 0:
			err = enc.Encode(sts)
		}
		errs = append(errs, err)
	} else {
		for i, st := range sts {
			if i > 0 {
				fmt.Println()
			}
			if _, err := io.WriteString(os.Stdout, ctl.Format(st)); err != nil {
				return err
			}
		}
	}
	return errors.Join(errs...)
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
		if path, err = findSocket(ctl.NetnsDir(), *iface); err != nil {
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
	paths, err := findSockets(dir, iface)
	if err != nil {
		return "", err
	}
	if len(paths) > 1 {
		names := make([]string, len(paths))
		for i, p := range paths {
			names[i] = strings.TrimSuffix(filepath.Base(p), ".sock")
		}
		return "", fmt.Errorf("several godwit daemons are running (%s): choose one with -i", strings.Join(names, ", "))
	}
	return paths[0], nil
}

// findSockets returns the socket of iface in dir, or with iface "" every
// socket there, sorted.
func findSockets(dir, iface string) ([]string, error) {
	if iface != "" {
		return []string{filepath.Join(dir, iface+".sock")}, nil
	}
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("no godwit socket in %s: is the daemon running?", dir)
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("permission denied reading %s: run godwit as root", dir)
	case err != nil:
		return nil, err
	}
	var paths []string
	for _, e := range entries {
		if _, ok := strings.CutSuffix(e.Name(), ".sock"); ok && e.Type()&os.ModeSocket != 0 {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no godwit socket in %s: is the daemon running?", dir)
	}
	slices.Sort(paths)
	return paths, nil
}
