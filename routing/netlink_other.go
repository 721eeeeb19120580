// SPDX-License-Identifier: MIT

//go:build !linux

package routing

import (
	"context"
	"errors"
)

func newNetlink() (netlinker, error) {
	return nil, errors.New("routing: only supported on linux")
}

// Subscribe is only supported on Linux.
func Subscribe(ctx context.Context, opts Options) (<-chan Change, error) {
	return nil, errors.New("routing: only supported on linux")
}
