// SPDX-License-Identifier: MIT

package main

import "github.com/godwit-vpn/godwit/tests/bench/measure"

// cpuOf returns the summed CPU seconds of all pids.
func cpuOf(pids []int) (float64, error) {
	var sum float64
	for _, p := range pids {
		s, err := measure.ProcCPU(p)
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}
