// SPDX-License-Identifier: MIT

//go:build !linux

package routing

import "errors"

func newNetlink() (netlinker, error) {
	return nil, errors.New("routing: only supported on linux")
}
