// SPDX-License-Identifier: MIT

package measure

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. Linux reports
// these in USER_HZ, which is 100 on every architecture Go supports.
const userHZ = 100

// ProcCPU returns the user plus system CPU time, in seconds, that process
// pid (all its threads) has used so far. It reads /proc/<pid>/stat once.
func ProcCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("measure: cpu of pid %d: %w", pid, err)
	}
	ticks, err := ParseStatTicks(b)
	if err != nil {
		return 0, fmt.Errorf("measure: cpu of pid %d: %w", pid, err)
	}
	return float64(ticks) / userHZ, nil
}

// ParseStatTicks returns utime+stime (fields 14 and 15, in clock ticks) of
// a /proc/<pid>/stat line. The command name (field 2) is in parentheses and
// may itself contain spaces and parentheses, so fields are counted from the
// last closing parenthesis. b may be untrusted; it is only read.
func ParseStatTicks(b []byte) (uint64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || bytes.IndexByte(b, '(') < 0 {
		return 0, errors.New("measure: stat line without command name")
	}
	// After ")" come fields 3 (state) onwards; utime is field 14.
	fields := bytes.Fields(b[i+1:])
	const utime = 14 - 3
	if len(fields) <= utime+1 {
		return 0, fmt.Errorf("measure: stat line has %d fields after the command name, want more than %d", len(fields), utime+1)
	}
	u, err := strconv.ParseUint(string(fields[utime]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("measure: stat utime: %w", err)
	}
	s, err := strconv.ParseUint(string(fields[utime+1]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("measure: stat stime: %w", err)
	}
	if u+s < u {
		return 0, errors.New("measure: stat utime+stime overflows")
	}
	return u + s, nil
}

// VmRSS returns the resident set size of process pid in KiB, from
// /proc/<pid>/status.
func VmRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("measure: %w", err)
	}
	return ParseVmRSS(b)
}

// ParseVmRSS finds "VmRSS: N kB" in the text of /proc/<pid>/status and
// returns N. b may be untrusted; it is only read.
func ParseVmRSS(b []byte) (uint64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("measure: VmRSS line %q", line)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("measure: VmRSS: %w", err)
		}
		return n, nil
	}
	return 0, errors.New("measure: no VmRSS line")
}

// ReadTrim returns the contents of the file at path without leading and
// trailing white space, or "unknown" if it cannot be read. It is meant for
// one-line files such as /proc/sys/kernel/osrelease or /proc/<pid>/comm.
func ReadTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// LoadAvg returns the 1, 5 and 15 minute load averages from /proc/loadavg,
// separated by spaces ("0.52 0.58 0.59"), or "" if they cannot be read.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return loadAvg(b)
}

// loadAvg returns the first three fields of b, or "" if it has fewer.
func loadAvg(b []byte) string {
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
