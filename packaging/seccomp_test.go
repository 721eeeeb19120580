// SPDX-License-Identifier: MIT

package packaging

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
)

// syscallGroups parses `systemd-analyze syscall-filter` into group -> members
// (system calls and nested @groups).
func syscallGroups(t *testing.T, sa string) map[string][]string {
	t.Helper()
	out, code := run(t, time.Minute, nil, sa, "syscall-filter", "--no-pager")
	if code != 0 {
		t.Fatalf("systemd-analyze syscall-filter: exit %d\n%s", code, out)
	}
	groups := make(map[string][]string)
	cur := ""
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "@"):
			cur = strings.TrimSpace(line)
		case cur != "" && strings.HasPrefix(line, " "):
			if f := strings.TrimSpace(line); f != "" && !strings.HasPrefix(f, "#") {
				groups[cur] = append(groups[cur], f)
			}
		default:
			cur = ""
		}
	}
	return groups
}

// expandGroup returns the system calls in group, nested groups resolved.
func expandGroup(groups map[string][]string, group string, into map[string]bool) {
	for _, m := range groups[group] {
		if strings.HasPrefix(m, "@") {
			expandGroup(groups, m, into)
		} else {
			into[m] = true
		}
	}
}

// unitSyscallFilter returns the system calls the unit's SystemCallFilter=
// lines allow: an allow list, then "~" lines that take calls out of it.
func unitSyscallFilter(t *testing.T, groups map[string][]string) map[string]bool {
	t.Helper()
	allowed := make(map[string]bool)
	lines := unitDirectives(t, unitFile)["Service.SystemCallFilter"]
	if len(lines) == 0 || strings.HasPrefix(lines[0], "~") {
		t.Fatalf("%s: want SystemCallFilter= to start with an allow list, got %q", unitFile, lines)
	}
	for _, l := range lines {
		deny := strings.HasPrefix(l, "~")
		for _, item := range strings.Fields(strings.TrimPrefix(l, "~")) {
			set := map[string]bool{item: true}
			if strings.HasPrefix(item, "@") {
				set = make(map[string]bool)
				expandGroup(groups, item, set)
				if len(set) == 0 {
					t.Fatalf("%s: unknown syscall group %s", unitFile, item)
				}
			}
			for s := range set {
				if deny {
					delete(allowed, s)
				} else {
					allowed[s] = true
				}
			}
		}
	}
	return allowed
}

// TestUnitSyscallFilterList checks the reading of SystemCallFilter= that
// TestSyscallFilter relies on, with calls the daemon needs and calls it must
// not get.
func TestUnitSyscallFilterList(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	allowed := unitSyscallFilter(t, syscallGroups(t, sa))
	tests := []struct {
		call string
		want bool
	}{
		{"ioctl", true},      // TUNSETIFF, SIOCSIFMTU
		{"setsockopt", true}, // SO_MARK, SO_RCVBUFFORCE, UDP_SEGMENT
		{"sendmsg", true},    // quic-go with GSO
		{"recvmmsg", true},
		{"socket", true}, // AF_NETLINK, AF_INET, AF_INET6, AF_UNIX
		{"clone3", true},
		{"mount", false},
		{"chown", false}, // @chown is in @system-service, @privileged takes it out
		{"setuid", false},
		{"bpf", false},
		{"init_module", false},
	}
	for _, tt := range tests {
		if got := allowed[tt.call]; got != tt.want {
			t.Errorf("SystemCallFilter= allows %s = %v, want %v", tt.call, got, tt.want)
		}
	}
}

var traceCallRE = regexp.MustCompile(`^(\d+)\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]`)

// TestSyscallFilter runs a real hub and site under `strace -f` in two
// network namespaces (connect, traffic through the tunnel, SIGHUP reload,
// SIGTERM stop) and requires every system call they make to be allowed by
// the unit's SystemCallFilter=. Needs root, strace and ip.
func TestSyscallFilter(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	labtest.RequireRoot(t)
	strace := requireTool(t, "strace")
	ip := requireTool(t, "ip")
	bin, why := godwitBinary(t)
	if bin == "" {
		labtest.SkipOrFail(t, "cmd/godwit does not build: %s", why)
	}
	allowed := unitSyscallFilter(t, syscallGroups(t, sa))

	suffix := strconv.Itoa(os.Getpid() % 100000)
	hubNS, siteNS := "gwpkh"+suffix, "gwpks"+suffix
	mustRun := func(args ...string) {
		t.Helper()
		if out, code := run(t, time.Minute, nil, ip, args...); code != 0 {
			t.Fatalf("ip %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	for _, ns := range []string{hubNS, siteNS} {
		mustRun("netns", "add", ns)
		t.Cleanup(func() { run(t, time.Minute, nil, ip, "netns", "del", ns) })
	}
	mustRun("link", "add", "gwpkh"+suffix, "netns", hubNS, "type", "veth", "peer", "name", "gwpks"+suffix, "netns", siteNS)
	mustRun("-n", hubNS, "addr", "add", "192.0.2.1/24", "dev", "gwpkh"+suffix)
	mustRun("-n", siteNS, "addr", "add", "192.0.2.2/24", "dev", "gwpks"+suffix)
	for _, a := range [][2]string{{hubNS, "gwpkh" + suffix}, {siteNS, "gwpks" + suffix}} {
		mustRun("-n", a[0], "link", "set", a[1], "up")
		mustRun("-n", a[0], "link", "set", "lo", "up")
	}

	dir := t.TempDir()
	hubKey, siteKey := newKey(t, dir, "hub.key"), newKey(t, dir, "site.key")
	hubCfg := writeFile(t, dir, "hub.toml", fmt.Sprintf(`[interface]
name = "gwpk0"
private_key_file = %q
addresses = ["198.19.0.1/24"]
listen = "192.0.2.1:4433"
state_dir = %q
[[peer]]
name = "site"
public_key = %q
allowed_ips = ["198.19.0.2/32"]
`, hubKey.path, filepath.Join(dir, "hubstate"), hubKey.peer(siteKey)))
	siteCfg := writeFile(t, dir, "site.toml", fmt.Sprintf(`[interface]
name = "gwpk1"
private_key_file = %q
addresses = ["198.19.0.2/24"]
state_dir = %q
[[peer]]
name = "hub"
public_key = %q
allowed_ips = ["198.19.0.0/24"]
endpoint = "192.0.2.1:4433"
`, siteKey.path, filepath.Join(dir, "sitestate"), siteKey.peer(hubKey)))

	hub := startTraced(t, ip, strace, hubNS, bin, hubCfg, filepath.Join(dir, "hub"))
	site := startTraced(t, ip, strace, siteNS, bin, siteCfg, filepath.Join(dir, "site"))
	for _, d := range []*traced{hub, site} {
		d.waitLog(t, "peer connected", 30*time.Second)
	}
	// Traffic both ways through the tunnel: UDP to a closed port on the
	// hub's tunnel address comes back as ICMP port unreachable.
	send := `for i in $(seq 50); do echo godwit > /dev/udp/198.19.0.1/9 || true; done`
	if out, code := run(t, time.Minute, nil, ip, "netns", "exec", siteNS, "bash", "-c", send); code != 0 {
		t.Fatalf("sending through the tunnel: exit %d\n%s", code, out)
	}
	// The tunnel carried it: what the hub daemon writes into its TUN counts
	// as received by the interface. (Replies are fewer: the kernel rate
	// limits ICMP errors.) Under strace the daemons are slow, so the
	// packets may still be on their way: poll.
	var rx string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out, code := run(t, time.Minute, nil, ip, "netns", "exec", hubNS, "cat", "/sys/class/net/gwpk0/statistics/rx_packets")
		rx = strings.TrimSpace(out)
		if n, err := strconv.Atoi(rx); code == 0 && err == nil && n >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("hub TUN rx_packets = %q after 15 s, want at least 10 of the 50 sent", rx)
			break
		}
	}
	for _, d := range []*traced{hub, site} {
		d.signal(t, syscall.SIGHUP)
		d.waitLog(t, "reloaded", 30*time.Second)
	}
	for _, d := range []*traced{hub, site} {
		d.signal(t, syscall.SIGTERM)
	}
	used := make(map[string]bool)
	for _, d := range []*traced{hub, site} {
		d.wait(t, 30*time.Second)
		d.calls(t, used)
	}
	if len(used) < 20 {
		t.Fatalf("only %d system calls traced; strace output looks wrong", len(used))
	}
	var missing []string
	for s := range used {
		if !allowed[s] {
			missing = append(missing, s)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		t.Errorf("the daemon makes system calls that %s filters out (EPERM): %v", unitFile, missing)
	}
	t.Logf("%d distinct system calls, all allowed by SystemCallFilter=", len(used))
}

// testKey is a private key file and its public key.
type testKey struct {
	path string
	pub  key.Public
}

// peer returns the public key of other, for a [[peer]] table.
func (testKey) peer(other testKey) string { return other.pub.String() }

func newKey(t *testing.T, dir, name string) testKey {
	t.Helper()
	k, err := key.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return testKey{path: writeFile(t, dir, name, k.String()+"\n"), pub: k.Public()}
}

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// traced is a godwit daemon running under strace in a namespace.
type traced struct {
	cmd   *exec.Cmd
	trace string // strace -o file; its first line is the daemon's execve
	log   string // the daemon's stdout and stderr
	done  chan error
}

func startTraced(t *testing.T, ip, strace, ns, bin, cfg, base string) *traced {
	t.Helper()
	d := &traced{trace: base + ".trace", log: base + ".log", done: make(chan error, 1)}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	d.cmd = exec.Command(ip, "netns", "exec", ns, strace, "-f", "-qq", "-o", d.trace, bin, "run", "-c", cfg)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-d.done:
			return
		default:
		}
		if pid, err := d.pid(); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("%s:\n%s", d.log, b)
		}
	})
	return d
}

// pid returns the daemon's process ID from the trace (strace's child).
func (d *traced) pid() (int, error) {
	f, err := os.Open(d.trace)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString(' ')
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(line))
}

func (d *traced) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	pid, err := d.pid()
	if err != nil {
		t.Fatalf("daemon pid from %s: %v", d.trace, err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
}

func (d *traced) waitLog(t *testing.T, msg string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(d.log); strings.Contains(string(b), msg) {
			return
		}
		select {
		case err := <-d.done:
			d.done <- err
			b, _ := os.ReadFile(d.log)
			t.Fatalf("daemon exited (%v) before logging %q:\n%s", err, msg, b)
		case <-time.After(100 * time.Millisecond):
		}
	}
	b, _ := os.ReadFile(d.log)
	t.Fatalf("no %q in the daemon's log after %v:\n%s", msg, timeout, b)
}

func (d *traced) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err
		if err != nil {
			b, _ := os.ReadFile(d.log)
			t.Errorf("daemon under strace: %v\n%s", err, b)
		}
	case <-time.After(timeout):
		t.Fatalf("daemon did not stop within %v of SIGTERM", timeout)
	}
}

// calls adds the names of the system calls in the trace to used.
func (d *traced) calls(t *testing.T, used map[string]bool) {
	t.Helper()
	f, err := os.Open(d.trace)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if m := traceCallRE.FindStringSubmatch(sc.Text()); m != nil && m[2] != "resumed" {
			used[m[2]] = true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}
