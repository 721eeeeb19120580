// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. Linux reports
// these in USER_HZ, which is 100 on every architecture Go supports.
const userHZ = 100

// procCPU returns the user plus system CPU time, in seconds, that process pid
// (all its threads) has used so far.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of pid %d: %w", pid, err)
	}
	ticks, err := parseStatTicks(b)
	if err != nil {
		return 0, fmt.Errorf("bench: cpu of pid %d: %w", pid, err)
	}
	return float64(ticks) / userHZ, nil
}

// parseStatTicks returns utime+stime (fields 14 and 15, in clock ticks) of a
// /proc/<pid>/stat line. The command name (field 2) is in parentheses and may
// itself contain spaces and parentheses, so fields are counted from the last
// closing parenthesis.
func parseStatTicks(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || bytes.IndexByte(b, '(') < 0 {
		return 0, fmt.Errorf("bench: stat line without command name")
	}
	// After ")" come fields 3 (state) onwards; utime is field 14.
	fields := bytes.Fields(b[i+1:])
	const utime = 14 - 3
	if len(fields) <= utime+1 {
		return 0, fmt.Errorf("bench: stat line has %d fields after the command name, want more than %d", len(fields), utime+1)
	}
	u, err := strconv.ParseUint(string(fields[utime]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: stat utime: %w", err)
	}
	s, err := strconv.ParseUint(string(fields[utime+1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: stat stime: %w", err)
	}
	if u+s < u {
		return 0, fmt.Errorf("bench: stat utime+stime overflows")
	}
	return u + s, nil
}

// cpuOf returns the summed CPU seconds of all pids.
func cpuOf(pids []int) (float64, error) {
	var sum float64
	for _, p := range pids {
		s, err := procCPU(p)
		if err != nil {
			return 0, err
		}
		sum += s
	}
	return sum, nil
}
