// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
)

// hookTimeout bounds one post_up or pre_down command.
const hookTimeout = 30 * time.Second

// runHooks runs the post_up or pre_down commands (what) in order with
// /bin/sh -c, "%i" replaced by iface, which is also GODWIT_INTERFACE in
// their environment, as wg-quick runs PostUp and PreDown. It stops at the
// first failure and returns it, with the command's output.
func runHooks(ctx context.Context, log *slog.Logger, what string, cmds []string, iface string) error {
	for _, c := range cmds {
		c = strings.ReplaceAll(c, "%i", iface)
		cctx, cancel := context.WithTimeout(ctx, hookTimeout)
		cmd := exec.CommandContext(cctx, "/bin/sh", "-c", c)
		cmd.Env = append(os.Environ(), "GODWIT_INTERFACE="+iface)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("%s command %q failed: %w: %s", what, c, err, strings.TrimSpace(string(out)))
		}
		log.Info(what+" command ran", "command", c, "output", strings.TrimSpace(string(out)))
	}
	return nil
}

// keepAliveFor is quicconn's Config.KeepAliveFor: a peer's own keepalive,
// or 0 for the [interface]'s.
func (d *daemon) keepAliveFor(id key.Public) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ps := d.peers[id]; ps != nil {
		return ps.cfg.KeepAlive
	}
	return 0
}
