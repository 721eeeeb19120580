// SPDX-License-Identifier: MIT

package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/config/key"
)

func cmdGenkey(args []string) error {
	if len(args) > 0 {
		return exitError{code: 2, msg: "usage: godwit genkey > private.key"}
	}
	k, err := key.NewPrivate()
	if err != nil {
		return err
	}
	// Like `umask 077; wg genkey > key`: when stdout is a file, make it
	// private before the key is written into it.
	if fi, err := os.Stdout.Stat(); err == nil && fi.Mode().IsRegular() {
		if err := os.Stdout.Chmod(0o600); err != nil {
			return fmt.Errorf("making the key file private: %w", err)
		}
	}
	_, err = fmt.Println(k.String())
	return err
}

func cmdPubkey(args []string) error {
	if len(args) > 0 {
		return exitError{code: 2, msg: "usage: godwit pubkey < private.key"}
	}
	line, err := bufio.NewReader(io.LimitReader(os.Stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	k, err := key.ParsePrivate(line)
	if err != nil {
		return exitError{code: 1, msg: fmt.Sprintf("godwit pubkey: %v", err)}
	}
	_, err = fmt.Println(k.Public().String())
	return err
}

func cmdCheck(args []string) error {
	path, cfg, err := loadConfigArg("check", args)
	if err != nil {
		return err
	}
	fmt.Printf("%s: ok (interface %s, %d peers)\n", path, cfg.Interface.Name, len(cfg.Peers))
	return nil
}

// loadConfigArg parses the arguments of `godwit <cmd> -c FILE` and loads
// and validates FILE. A usage error exits with status 2; a config problem
// with 78, every problem on its own line.
func loadConfigArg(cmd string, args []string) (path string, cfg *config.Config, err error) {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.StringVar(&path, "c", "", "config `file`")
	if err := fs.Parse(args); err != nil || path == "" || fs.NArg() > 0 {
		return "", nil, exitError{code: 2, msg: "usage: godwit " + cmd + " -c FILE"}
	}
	if cfg, err = config.Load(path); err != nil {
		return "", nil, exitError{code: exitConfig, msg: err.Error()}
	}
	return path, cfg, nil
}
