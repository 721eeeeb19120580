// SPDX-License-Identifier: MIT

package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Proc is a background process started by [NS.Start].
type Proc struct {
	// Name is the name given to Start; the log is Dir/<Name>.log.
	Name string
	// Log is the path of the file that receives stdout and stderr.
	Log string
	// Cmd is the running command. Do not call Cmd.Wait: the lab does.
	Cmd *exec.Cmd

	done    chan struct{} // closed once the process has exited
	code    int           // exit code; -1 if killed by a signal; valid after done
	waitErr error         // error from Cmd.Wait other than a non-zero exit
}

func (p *Proc) wait() {
	err := p.Cmd.Wait()
	p.code = p.Cmd.ProcessState.ExitCode()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		p.waitErr = err
	}
	close(p.done)
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process. It fails once the process has exited.
func (p *Proc) Signal(sig os.Signal) error {
	if p.Exited() {
		return fmt.Errorf("netlab: %s already exited", p.Name)
	}
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("netlab: signal %s: %w", p.Name, err)
	}
	return nil
}

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 if a signal killed it). It returns an error on timeout, leaving
// the process running. It may be called any number of times.
func (p *Proc) Wait(timeout time.Duration) (exitCode int, err error) {
	select {
	case <-p.done:
		return p.code, p.waitErr
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.code, p.waitErr
	case <-t.C:
		return 0, fmt.Errorf("netlab: %s still running after %v", p.Name, timeout)
	}
}

// Output returns what the process has written to its log so far.
func (p *Proc) Output() string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return fmt.Sprintf("(netlab: %v)", err)
	}
	return string(b)
}

// LogLines returns the lines of the log that contain every one of subs,
// without their line ends.
func (p *Proc) LogLines(subs ...string) []string {
	var found []string
	for line := range strings.Lines(p.Output()) {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			found = append(found, strings.TrimSpace(line))
		}
	}
	return found
}

// WaitLog waits until the log has a line that contains every one of subs
// (see [WaitFor]). It fails at once when the process exits first.
func (p *Proc) WaitLog(ctx context.Context, within time.Duration, subs ...string) error {
	err := WaitFor(ctx, within, fmt.Sprintf("log line with %q", subs), func() (bool, error) {
		if len(p.LogLines(subs...)) > 0 {
			return true, nil
		}
		if p.Exited() {
			return false, fmt.Errorf("exited with %d while waiting for a log line with %q", p.code, subs)
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("netlab: %s: %w", p.Name, err)
	}
	return nil
}
