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
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := fs.String("c", "", "config `file`")
	if err := fs.Parse(args); err != nil || *path == "" || fs.NArg() > 0 {
		return exitError{code: 2, msg: "usage: godwit check -c FILE"}
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return configError(err)
	}
	fmt.Printf("%s: ok (interface %s, %d peers)\n", *path, cfg.Interface.Name, len(cfg.Peers))
	return nil
}

// configError turns a config problem into exit status 78 with every
// problem on its own line.
func configError(err error) error {
	return exitError{code: exitConfig, msg: err.Error()}
}
