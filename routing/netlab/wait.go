// SPDX-License-Identifier: MIT

package netlab

import (
	"context"
	"fmt"
	"time"
)

// PollInterval is how often [WaitFor] checks its condition.
const PollInterval = 20 * time.Millisecond

// WaitFor calls cond at once and then every [PollInterval] until cond
// reports true (WaitFor returns nil) or an error (WaitFor returns it),
// ctx is done (ctx.Err()), or within has passed: then the error says
// "no <what> within <within>". It is the one polling loop of the labs,
// their tests (package labtest) and the benchmarks.
func WaitFor(ctx context.Context, within time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(within)
	t := time.NewTimer(PollInterval)
	defer t.Stop()
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %s within %v", what, within)
		}
		t.Reset(PollInterval)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
