// SPDX-License-Identifier: MIT

package netlab

import (
	"context"
	"path/filepath"
	"time"

	"github.com/godwit-vpn/godwit/cmd/godwit/ctl"
)

// Daemon is a `godwit run` started by [NS.StartDaemon].
type Daemon struct {
	*Proc
	// NS is the namespace the daemon runs in.
	NS *NS
	// Socket is the daemon's control socket, Dir/<name>.sock; read it
	// with ctl.Query.
	Socket string
}

// inheritedEnv are the environment variables a daemon does not inherit
// from this process: systemd's, when the tests run under systemd, and the
// daemon's test hooks (cmd/godwit/testhooks.go). StartDaemon's env may set
// them again.
var inheritedEnv = []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
	"GODWIT_DEBUG_WEDGE", "GODWIT_DEBUG_WEDGE_AFTER", "GODWIT_PPROF"}

// StartDaemon runs `bin run -c config` in the background inside the
// namespace, as [NS.Start] does under name (its log is Dir/<name>.log).
// Its control socket is Dir/<name>.sock (through the GODWIT_SOCKET
// environment variable), so that daemons of parallel labs, which may all
// name their interface gw0, never share /run/godwit/gw0.sock. env adds
// "NAME=value" environment variables. StartDaemon does not wait for
// anything.
func (n *NS) StartDaemon(name, bin, config string, env ...string) (*Daemon, error) {
	sock := filepath.Join(n.lab.Dir, name+".sock")
	args := []string{"env"}
	for _, v := range inheritedEnv {
		args = append(args, "-u", v)
	}
	args = append(args, ctl.SocketEnv+"="+sock)
	args = append(args, env...)
	// env execs, so the process is the daemon itself.
	p, err := n.Start(name, append(args, bin, "run", "-c", config)...)
	if err != nil {
		return nil, err
	}
	return &Daemon{Proc: p, NS: n, Socket: sock}, nil
}

// Status asks the daemon for its status over its control socket.
func (d *Daemon) Status(ctx context.Context) (*ctl.Status, error) {
	return ctl.Query(ctx, d.Socket)
}

// WaitConnected waits until the daemon logs that peer is connected (see
// [Proc.WaitLog]).
func (d *Daemon) WaitConnected(ctx context.Context, within time.Duration, peer string) error {
	return d.WaitLog(ctx, within, "peer connected", "peer="+peer)
}
