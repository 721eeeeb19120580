// SPDX-License-Identifier: MIT

package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/godwit-vpn/godwit/config"
	"github.com/godwit-vpn/godwit/config/key"
	"github.com/godwit-vpn/godwit/routing/netlab/labtest"
	"github.com/godwit-vpn/godwit/routing/netlab/nspawntest"
)

const (
	unitFile = "godwit@.service"

	// securityThreshold pins the exposure score of `systemd-analyze security
	// --offline=true`, in tenths (the command's --threshold unit). Measured:
	// 2.2 with systemd 252.38 (Debian 12). What is left is mostly inherent to
	// a VPN daemon: root user 0.4, the host network 0.5, CAP_NET_ADMIN 0.2,
	// ambient capabilities 0.1, AF_INET/AF_INET6/AF_NETLINK/AF_UNIX 0.5, no
	// IPAddressDeny 0.2, no PrivateUsers 0.2, no PrivateDevices 0.2, @resources
	// syscalls 0.2, /dev/net/tun 0.1, ProcSubset 0.1, host root directory 0.1.
	securityThreshold = 24

	// debVersion is the upstream version the .deb test builds, and
	// debRevision the Debian revision build-deb.sh gives it.
	debVersion  = "0.0.0~pkgtest"
	debRevision = "1"
)

// requireTool returns the path of the program name, or skips the test when
// it is missing (fails it when GODWIT_E2E=1).
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		labtest.SkipOrFail(t, "%s is not installed: %v", name, err)
	}
	return p
}

// repoRoot is the module root; tests run in packaging/.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

var (
	binDir   string // per-run scratch directory, made by TestMain
	binOnce  sync.Once
	binPath  string // built godwit, or "" when ./cmd/godwit does not build
	binError string // why binPath is ""
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "godwit-packaging-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// godwitBinary builds ./cmd/godwit once per test run and returns its path,
// or "" and the build output when it does not build.
func godwitBinary(t *testing.T) (string, string) {
	t.Helper()
	binOnce.Do(func() {
		out := filepath.Join(binDir, "godwit")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/godwit")
		cmd.Dir = repoRoot(t)
		if b, err := cmd.CombinedOutput(); err != nil {
			binError = fmt.Sprintf("go build ./cmd/godwit: %v\n%s", err, b)
			return
		}
		binPath = out
	})
	return binPath, binError
}

// execBinary returns a binary that exists for ExecStart=: the real godwit
// when it builds, otherwise /bin/true (systemd-analyze only needs the file
// to exist and be executable).
func execBinary(t *testing.T) string {
	t.Helper()
	p, why := godwitBinary(t)
	if p != "" {
		return p
	}
	t.Logf("using /bin/true as ExecStart binary: %s", why)
	return "/bin/true"
}

// renderUnit writes the shipped unit, with /usr/bin/godwit replaced by bin
// and extra lines inserted at the top of [Service], into a new directory as
// the template and as the instance godwit@pkgtest.service, and returns the
// paths of both.
func renderUnit(t *testing.T, bin, extra string) (template, instance string) {
	t.Helper()
	src, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	s := string(src)
	if !strings.Contains(s, "/usr/bin/godwit ") || !strings.Contains(s, "\n[Service]\n") {
		t.Fatalf("%s: no /usr/bin/godwit command or no [Service] section", unitFile)
	}
	s = strings.ReplaceAll(s, "/usr/bin/godwit ", bin+" ")
	if extra != "" {
		s = strings.Replace(s, "\n[Service]\n", "\n[Service]\n"+extra+"\n", 1)
	}
	dir := t.TempDir()
	template = filepath.Join(dir, unitFile)
	instance = filepath.Join(dir, "godwit@pkgtest.service")
	for _, p := range []string{template, instance} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return template, instance
}

// run runs name with args under a deadline and returns its combined output
// and exit code (-1 when it could not run or was killed).
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee) && ctx.Err() == nil:
		return string(out), ee.ExitCode()
	default:
		return fmt.Sprintf("%s\n%s %s: %v", out, name, strings.Join(args, " "), err), -1
	}
}

// TestUnitVerify requires `systemd-analyze verify` to print nothing at all:
// it exits 0 even for unknown or misspelt directives and only warns, so
// empty output is the check. The bad cases show that the check notices.
func TestUnitVerify(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	bin := execBinary(t)
	tests := []struct {
		name      string
		extra     string // inserted into [Service]
		wantClean bool
	}{
		{name: "shipped unit", wantClean: true},
		{name: "misspelt directive", extra: "ProtectSytem=strict"},
		{name: "directive newer than systemd 252", extra: "RestartSteps=5"},
		{name: "bad value", extra: "Restart=sometimes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			template, instance := renderUnit(t, bin, tt.extra)
			for _, p := range []string{template, instance} {
				out, code := run(t, time.Minute, nil, sa, "verify", "--man=no", p)
				clean := out == "" && code == 0
				if clean != tt.wantClean {
					t.Errorf("systemd-analyze verify --man=no %s: exit %d, output %q; want clean output = %v", filepath.Base(p), code, out, tt.wantClean)
				}
			}
		})
	}
}

var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: (\d+\.\d)`)

// TestUnitSecurity pins the hardening: the exposure score must stay at or
// below securityThreshold tenths.
func TestUnitSecurity(t *testing.T) {
	sa := requireTool(t, "systemd-analyze")
	_, instance := renderUnit(t, execBinary(t), "")
	out, code := run(t, time.Minute, nil, sa, "security", "--offline=true", "--no-pager", "--threshold="+strconv.Itoa(securityThreshold), instance)
	m := exposureRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in output (exit %d):\n%s", code, out)
	}
	score, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exposure %.1f, threshold %d tenths", score, securityThreshold)
	if code != 0 {
		t.Fatalf("systemd-analyze security --threshold=%d: exit %d, exposure %.1f; the unit lost hardening:\n%s", securityThreshold, code, score, out)
	}
	// The threshold is in tenths: one tenth below the score must fail, or
	// the pin above checks nothing.
	below := int(math.Round(score*10)) - 1
	if _, code := run(t, time.Minute, nil, sa, "security", "--offline=true", "--no-pager", "--threshold="+strconv.Itoa(below), instance); code != 1 {
		t.Errorf("systemd-analyze security --threshold=%d with exposure %.1f: exit %d, want 1", below, score, code)
	}
}

// unitDirectives parses a unit file into "Section.Key" -> values in order.
func unitDirectives(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := make(map[string][]string)
	section := ""
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[' && line[len(line)-1] == ']':
			section = line[1 : len(line)-1]
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.HasSuffix(line, "\\") {
				t.Fatalf("%s:%d: cannot parse %q", path, i+1, line)
			}
			d[section+"."+k] = append(d[section+"."+k], v)
		}
	}
	return d
}

// TestUnitDirectives checks the lines the daemon's contract depends on (the
// notify protocol, the config path, restart policy, the one capability) and
// that nothing systemd 252 lacks or that would break the daemon crept in.
func TestUnitDirectives(t *testing.T) {
	d := unitDirectives(t, unitFile)
	want := []struct{ key, value string }{
		{"Service.Type", "notify"},
		{"Service.NotifyAccess", "main"},
		{"Service.WatchdogSec", "10s"},
		{"Service.ExecStartPre", "-/usr/bin/godwit check -c /etc/godwit/%i.toml"},
		{"Service.ExecStart", "/usr/bin/godwit run -c /etc/godwit/%i.toml"},
		{"Service.ExecReload", "/usr/bin/godwit reload -i %i"},
		{"Service.Restart", "on-failure"},
		{"Service.RestartSec", "2s"},
		{"Service.RestartPreventExitStatus", "78"},
		{"Service.StateDirectory", "godwit"},
		{"Service.StateDirectoryMode", "0700"},
		{"Service.RuntimeDirectory", "godwit"},
		{"Service.RuntimeDirectoryMode", "0700"},
		{"Service.ConfigurationDirectory", "godwit"},
		{"Service.CapabilityBoundingSet", "CAP_NET_ADMIN"},
		{"Service.AmbientCapabilities", "CAP_NET_ADMIN"},
		{"Service.DevicePolicy", "closed"},
		{"Service.DeviceAllow", "/dev/net/tun rw"},
		{"Service.RestrictAddressFamilies", "AF_INET AF_INET6 AF_NETLINK AF_UNIX"},
		{"Service.ReadWritePaths", "/proc/sys/net/ipv4/conf"},
		{"Service.UMask", "0077"},
		{"Unit.StartLimitBurst", "5"},
	}
	for _, w := range want {
		if got := d[w.key]; len(got) != 1 || got[0] != w.value {
			t.Errorf("%s: %s = %q, want exactly [%q]", unitFile, w.key, got, w.value)
		}
	}
	// ProcSubset=pid hides /proc/sys (rmem_max, ip_forward checks);
	// PrivateDevices= hides /dev/net/tun; the rest is systemd 253+.
	for _, k := range []string{"Service.ProcSubset", "Service.PrivateDevices", "Service.PrivateNetwork", "Service.RestartSteps", "Service.RestartMaxDelaySec", "Service.User", "Service.DynamicUser"} {
		if v, ok := d[k]; ok {
			t.Errorf("%s: %s = %q, want it absent", unitFile, k, v)
		}
	}
}

// exampleKeyFile writes a new private key with mode 0600 and returns its path.
func exampleKeyFile(t *testing.T) string {
	t.Helper()
	k, err := key.NewPrivate()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "gw0.key")
	if err := os.WriteFile(p, []byte(k.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExamples parses the example configs as the daemon would, then loads
// them (as `godwit check` does) with a freshly generated key in place of
// /etc/godwit/gw0.key, and runs the real `godwit check` when it builds.
func TestExamples(t *testing.T) {
	tests := []struct {
		file    string
		listen  bool // a hub listens, a site dials
		peers   int
		routes  config.Routes
		prefers string // a site with several hubs: the peer with the lowest priority
	}{
		{file: "examples/hub.toml", listen: true, peers: 2},
		{file: "examples/site.toml", listen: false, peers: 1},
		{file: "examples/multihub/hub-a.toml", listen: true, peers: 2, routes: config.RoutesConnected},
		{file: "examples/multihub/hub-b.toml", listen: true, peers: 2, routes: config.RoutesConnected},
		{file: "examples/multihub/site-a.toml", listen: false, peers: 2, prefers: "hub-a"},
		{file: "examples/multihub/site-b.toml", listen: false, peers: 2, prefers: "hub-b"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.file, "examples/"), func(t *testing.T) {
			data, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(tt.file, data)
			if err != nil {
				t.Fatalf("config.Parse(%s): %v", tt.file, err)
			}
			if got := cfg.Interface.Listen != ""; got != tt.listen {
				t.Errorf("%s: listens = %v, want %v", tt.file, got, tt.listen)
			}
			if len(cfg.Peers) != tt.peers {
				t.Errorf("%s: %d peers, want %d", tt.file, len(cfg.Peers), tt.peers)
			}
			for _, p := range cfg.Peers {
				// Placeholders must be text that no key holder controls,
				// so a forgotten one locks the peer out instead of in.
				if !bytes.HasPrefix(p.PublicKey[:], []byte("REPLACE")) {
					t.Errorf("%s: peer %q public_key decodes to %q, want a \"REPLACE...\" placeholder", tt.file, p.Name, p.PublicKey[:])
				}
				if tt.listen && p.Endpoint != "" {
					t.Errorf("%s: hub peer %q has endpoint %q, want none", tt.file, p.Name, p.Endpoint)
				}
				if !tt.listen && p.Endpoint == "" {
					t.Errorf("%s: site peer %q has no endpoint", tt.file, p.Name)
				}
			}
			if cfg.Interface.Routes != tt.routes {
				t.Errorf("%s: routes = %v, want %v", tt.file, cfg.Interface.Routes, tt.routes)
			}
			if tt.prefers != "" {
				best := -1
				for i, p := range cfg.Peers {
					if !p.HasPriority {
						t.Errorf("%s: peer %q has no priority", tt.file, p.Name)
					} else if best < 0 || p.Priority < cfg.Peers[best].Priority {
						best = i
					}
				}
				if best < 0 || cfg.Peers[best].Name != tt.prefers {
					t.Errorf("%s: the lowest priority is not peer %q's", tt.file, tt.prefers)
				}
			}
			if cfg.Interface.PrivateKeyFile != "/etc/godwit/gw0.key" || cfg.Interface.StateDir != "/var/lib/godwit" {
				t.Errorf("%s: private_key_file %q, state_dir %q; want /etc/godwit/gw0.key and /var/lib/godwit, where the unit lets the daemon read and write", tt.file, cfg.Interface.PrivateKeyFile, cfg.Interface.StateDir)
			}

			const keyLine = `private_key_file = "/etc/godwit/gw0.key"`
			if !bytes.Contains(data, []byte(keyLine)) {
				t.Fatalf("%s: no line %s", tt.file, keyLine)
			}
			copyPath := filepath.Join(t.TempDir(), filepath.Base(tt.file))
			local := bytes.Replace(data, []byte(keyLine), fmt.Appendf(nil, "private_key_file = %q", exampleKeyFile(t)), 1)
			if err := os.WriteFile(copyPath, local, 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(copyPath); err != nil {
				t.Fatalf("config.Load(%s with a generated key): %v", tt.file, err)
			}
			bin, why := godwitBinary(t)
			if bin == "" {
				t.Logf("not running `godwit check`: %s", why)
				return
			}
			if out, code := run(t, time.Minute, nil, bin, "check", "-c", copyPath); code != 0 {
				t.Errorf("godwit check -c %s (with a generated key): exit %d\n%s", tt.file, code, out)
			}
		})
	}
}

// TestRoutingExamples checks the multihub example's BIRD 2 and FRR
// configs with the parsers of the real daemons (`bird -p`, `vtysh
// --dryrun`), and that they select Godwit's routes by its default route
// protocol number and its default interface name.
func TestRoutingExamples(t *testing.T) {
	tests := []struct {
		file string
		tool string
		args []string // before the file name
		want string   // a line the config must have
	}{
		{file: "examples/multihub/bird-hub.conf", tool: "bird", args: []string{"-p", "-c"},
			want: fmt.Sprintf("define GODWIT_PROTO = %d;", config.DefaultRouteProtocol)},
		{file: "examples/multihub/bird-core.conf", tool: "bird", args: []string{"-p", "-c"}, want: "\tbfd on;"},
		{file: "examples/multihub/frr-hub.conf", tool: "vtysh", args: []string{"--dryrun", "-f"},
			want: " match interface " + config.DefaultName},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			data, err := os.ReadFile(tt.file)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(data, []byte("\n"+tt.want+"\n")) {
				t.Errorf("%s: no line %q", tt.file, tt.want)
			}
			tool := requireTool(t, tt.tool)
			if out, code := run(t, time.Minute, nil, tool, append(tt.args, tt.file)...); code != 0 {
				t.Errorf("%s %s %s: exit %d\n%s", tt.tool, strings.Join(tt.args, " "), tt.file, code, out)
			}
		})
	}
}

// debFile is one file the .deb must install.
type debFile struct {
	path string      // absolute, as installed
	mode fs.FileMode // type and permission bits
	src  string      // file in the repository it is a copy of, or ""
	gz   bool        // src compressed with gzip
}

var debFiles = []debFile{
	{path: "/usr/bin/godwit", mode: 0o755},
	{path: "/usr/lib/systemd/system/godwit@.service", mode: 0o644, src: "godwit@.service"},
	{path: "/usr/lib/sysctl.d/60-godwit.conf", mode: 0o644, src: "sysctl.d/60-godwit.conf"},
	{path: "/usr/share/doc/godwit/examples/hub.toml", mode: 0o644, src: "examples/hub.toml"},
	{path: "/usr/share/doc/godwit/examples/site.toml", mode: 0o644, src: "examples/site.toml"},
	{path: "/usr/share/doc/godwit/examples/multihub/hub-a.toml", mode: 0o644, src: "examples/multihub/hub-a.toml"},
	{path: "/usr/share/doc/godwit/examples/multihub/hub-b.toml", mode: 0o644, src: "examples/multihub/hub-b.toml"},
	{path: "/usr/share/doc/godwit/examples/multihub/site-a.toml", mode: 0o644, src: "examples/multihub/site-a.toml"},
	{path: "/usr/share/doc/godwit/examples/multihub/site-b.toml", mode: 0o644, src: "examples/multihub/site-b.toml"},
	{path: "/usr/share/doc/godwit/examples/multihub/bird-hub.conf", mode: 0o644, src: "examples/multihub/bird-hub.conf"},
	{path: "/usr/share/doc/godwit/examples/multihub/bird-core.conf", mode: 0o644, src: "examples/multihub/bird-core.conf"},
	{path: "/usr/share/doc/godwit/examples/multihub/frr-hub.conf", mode: 0o644, src: "examples/multihub/frr-hub.conf"},
	{path: "/usr/share/doc/godwit/copyright", mode: 0o644, src: "deb/copyright"},
	{path: "/usr/share/doc/godwit/changelog.Debian.gz", mode: 0o644},
	{path: "/usr/share/man/man8/godwit.8.gz", mode: 0o644, src: "man/godwit.8", gz: true},
	{path: "/usr/share/man/man5/godwit.toml.5.gz", mode: 0o644, src: "man/godwit.toml.5", gz: true},
	{path: "/usr/share/bash-completion/completions/godwit", mode: 0o644, src: "completion/godwit.bash"},
	{path: "/usr/share/godwit/prometheus/godwit-alerts.yml", mode: 0o644, src: "prometheus/godwit-alerts.yml"},
	{path: "/usr/share/godwit/grafana/godwit-dashboard.json", mode: 0o644, src: "grafana/godwit-dashboard.json"},
	{path: "/usr/share/lintian/overrides/godwit", mode: 0o644, src: "deb/lintian-overrides"},
	{path: "/etc/godwit", mode: fs.ModeDir | 0o700},
}

// TestDeb builds the .deb with build-deb.sh and checks its metadata and
// contents; as root it also installs and purges it in a container
// (testInstall), never on the host.
func TestDeb(t *testing.T) {
	dpkgDeb := requireTool(t, "dpkg-deb")
	requireTool(t, "bash")
	arch := runtime.GOARCH
	if arch != "amd64" && arch != "arm64" {
		labtest.SkipOrFail(t, "the .deb is built for amd64 and arm64, not %s", arch)
	}
	if _, why := godwitBinary(t); why != "" {
		labtest.SkipOrFail(t, "cannot package a binary that does not build: %s", why)
	}

	outDir := t.TempDir()
	start := time.Now()
	// The first run downloads and compiles nfpm (about 70 s on a 2-core
	// machine); later runs take a few seconds.
	out, code := run(t, 5*time.Minute, []string{"GODWIT_VERSION=" + debVersion, "GODWIT_ARCH=" + arch}, "bash", "build-deb.sh", outDir)
	if code != 0 {
		t.Fatalf("build-deb.sh: exit %d\n%s", code, out)
	}
	t.Logf("build-deb.sh took %v", time.Since(start).Round(time.Millisecond))
	deb := filepath.Join(outDir, "godwit_"+debVersion+"-"+debRevision+"_"+arch+".deb")
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("build-deb.sh did not make %s: %v\n%s", filepath.Base(deb), err, out)
	}

	t.Run("control", func(t *testing.T) {
		for _, f := range []struct{ field, want string }{
			{"Package", "godwit"},
			{"Version", debVersion + "-" + debRevision},
			{"Architecture", arch},
			{"Section", "net"},
		} {
			got, code := run(t, time.Minute, nil, dpkgDeb, "-f", deb, f.field)
			if got = strings.TrimSpace(got); code != 0 || got != f.want {
				t.Errorf("dpkg-deb -f %s %s = %q (exit %d), want %q", filepath.Base(deb), f.field, got, code, f.want)
			}
		}
	})

	t.Run("contents", func(t *testing.T) {
		got := debContents(t, dpkgDeb, deb)
		for _, f := range debFiles {
			e, ok := got[f.path]
			if !ok {
				t.Errorf("%s: %s missing", filepath.Base(deb), f.path)
				continue
			}
			if e.mode != f.mode || e.owner != "root" || e.group != "root" {
				t.Errorf("%s: %s is %v %s:%s, want %v root:root", filepath.Base(deb), f.path, e.mode, e.owner, e.group, f.mode)
			}
			if f.src != "" {
				want, err := os.ReadFile(f.src)
				if err != nil {
					t.Fatal(err)
				}
				got := e.data
				if f.gz {
					got = gunzip(t, f.path, got)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: %s differs from packaging/%s", filepath.Base(deb), f.path, f.src)
				}
			}
		}
		// The changelog's latest entry is this version.
		changelog := string(gunzip(t, "changelog.Debian.gz", got["/usr/share/doc/godwit/changelog.Debian.gz"].data))
		if first, _, _ := strings.Cut(changelog, "\n"); first != "godwit ("+debVersion+"-"+debRevision+") unstable; urgency=medium" {
			t.Errorf("changelog.Debian.gz starts with %q, want the package's version", first)
		}
		// The packaged binary carries the version build-deb.sh stamped.
		bin := filepath.Join(t.TempDir(), "godwit")
		if err := os.WriteFile(bin, got["/usr/bin/godwit"].data, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, code := run(t, time.Minute, nil, bin, "version"); code != 0 || strings.TrimSpace(out) != "godwit "+debVersion {
			t.Errorf("packaged godwit version: %q (exit %d), want %q", strings.TrimSpace(out), code, "godwit "+debVersion)
		}
	})

	t.Run("lintian", func(t *testing.T) {
		lintian := requireTool(t, "lintian")
		// Exit 0 with --fail-on error: no error left (deb/lintian-overrides
		// says why each overridden tag is fine).
		out, code := run(t, 3*time.Minute, nil, lintian, "--no-cfg", "--fail-on", "error", "--info", deb)
		t.Logf("lintian %s (exit %d):\n%s", filepath.Base(deb), code, out)
		if code != 0 || regexp.MustCompile(`(?m)^E: `).MatchString(out) {
			t.Errorf("lintian %s: exit %d, want 0 and no errors:\n%s", filepath.Base(deb), code, out)
		}
	})

	t.Run("install", func(t *testing.T) { testInstall(t, deb) })
}

// gunzip returns the decompressed data of the gzip file name.
func gunzip(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// debEntry is one member of the .deb's data archive.
type debEntry struct {
	mode         fs.FileMode
	owner, group string
	data         []byte // regular files only
}

// debContents reads the data archive of deb through `dpkg-deb
// --fsys-tarfile`, keyed by absolute path without a trailing slash.
func debContents(t *testing.T, dpkgDeb, deb string) map[string]debEntry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, dpkgDeb, "--fsys-tarfile", deb)
	cmd.Stderr = &stderr
	tarball, err := cmd.Output()
	if err != nil {
		t.Fatalf("dpkg-deb --fsys-tarfile: %v\n%s", err, stderr.Bytes())
	}
	m := make(map[string]debEntry)
	tr := tar.NewReader(bytes.NewReader(tarball))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading %s: %v", filepath.Base(deb), err)
		}
		p := "/" + strings.Trim(strings.TrimPrefix(h.Name, "./"), "/")
		e := debEntry{mode: h.FileInfo().Mode() & (fs.ModeType | fs.ModePerm), owner: h.Uname, group: h.Gname}
		if h.Typeflag == tar.TypeReg {
			if e.data, err = io.ReadAll(tr); err != nil {
				t.Fatal(err)
			}
		}
		m[p] = e
	}
	return m
}

// hostSysctls are global limits the package's sysctl file sets. A
// container with its own network namespace sees them read-only (Linux
// 6.x) or not at all, so installing there must leave the host's as they
// were; testInstall checks that.
var hostSysctls = []string{"/proc/sys/net/core/rmem_max", "/proc/sys/net/core/wmem_max"}

// Paths in the install container.
const (
	ctDeb        = "/mnt/godwit.deb" // the built .deb, bound in read-only
	ctUnit       = "/usr/lib/systemd/system/godwit@.service"
	ctSysctlConf = "/usr/lib/sysctl.d/60-godwit.conf"
	// ctSysctl is what postinst runs on ctSysctlConf. The test puts a
	// wrapper there that logs its arguments and exit code to ctSysctlLog.
	ctSysctl    = "/usr/lib/systemd/systemd-sysctl"
	ctSysctlLog = "/run/godwit-test-sysctl.log"
)

// testInstall boots the minimal Debian root of package nspawntest (systemd
// 252 as PID 1, its own network namespace, a tmpfs overlay: nothing
// reaches the host or the cached root) with deb bound in read-only, and
// there: `dpkg -i` installs every file with its mode, the binary reports
// the package's version, systemd knows the unit (`systemctl cat` prints
// the shipped file, `systemd-analyze verify` is clean), postinst applied
// the sysctl file; then `dpkg --purge godwit` removes every file, the
// package, /etc/godwit and the unit. The host's sysctls stay as they were.
func testInstall(t *testing.T, deb string) {
	nspawntest.Require(t)
	if _, err := os.Stat(deb); err != nil {
		t.Fatal(err)
	}
	root := nspawntest.Root(t)
	hostBefore := readFiles(hostSysctls)
	t.Cleanup(func() {
		if got := readFiles(hostSysctls); !maps.Equal(got, hostBefore) {
			t.Errorf("the host's sysctls changed while installing in the container: %v, were %v", got, hostBefore)
		}
	})
	at := time.Now()
	c := nspawntest.Boot(t, nspawntest.Options{
		Root:  root,
		Binds: []nspawntest.Bind{{Src: deb, Dst: ctDeb}},
	})
	t.Logf("container %s booted in %v", c.Machine, time.Since(at).Round(time.Millisecond))

	// status is the package's dpkg status, "" when dpkg does not know it.
	status := func() string {
		out, code := c.Exec(t, "dpkg-query", "-W", "-f", "${db:Status-Status}", "godwit")
		if code != 0 {
			return ""
		}
		return strings.TrimSpace(out)
	}
	unitProps := func() string {
		out, _ := c.Systemctl(t, "show", "--property=LoadState,FragmentPath,NeedDaemonReload", "godwit@pkgtest.service")
		return out
	}
	if s := status(); s != "" && s != "not-installed" {
		t.Fatalf("the container's root has godwit already (%q): the cached root %s is not the minimal one", s, root)
	}

	// postinst applies the sysctl file with systemd-sysctl: log how.
	real := ctSysctl + ".real"
	if err := os.Rename(c.Path(ctSysctl), c.Path(real)); err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/sh\n%s \"$@\"\necho \"$* -> exit $?\" >>%s\n", real, ctSysctlLog)
	if err := c.WriteFile(ctSysctl, []byte(wrapper), 0o755, 0o755); err != nil {
		t.Fatal(err)
	}

	at = time.Now()
	out := c.MustExec(t, "dpkg", "-i", ctDeb)
	t.Logf("dpkg -i took %v", time.Since(at).Round(time.Millisecond))
	if s := status(); s != "installed" {
		t.Errorf("after dpkg -i: dpkg-query says %q, want installed\n%s", s, out)
	}
	for _, f := range debFiles {
		fi, err := os.Lstat(c.Path(f.path))
		if err != nil {
			t.Errorf("after dpkg -i: %s: %v", f.path, err)
			continue
		}
		if got := fi.Mode() & (fs.ModeType | fs.ModePerm); got != f.mode {
			t.Errorf("after dpkg -i: %s has mode %v, want %v", f.path, got, f.mode)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || st.Gid != 0) {
			t.Errorf("after dpkg -i: %s is owned by %d:%d, want root:root", f.path, st.Uid, st.Gid)
		}
	}
	if out, code := c.Exec(t, "/usr/bin/godwit", "version"); code != 0 || strings.TrimSpace(out) != "godwit "+debVersion {
		t.Errorf("installed godwit version: %q (exit %d), want %q", strings.TrimSpace(out), code, "godwit "+debVersion)
	}

	// systemd knows the unit: the shipped file, loaded from where the
	// package put it, clean for systemd-analyze verify.
	shipped, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	// On a merged-/usr root systemd finds it through /lib, first in its
	// search path.
	unitPaths := []string{ctUnit, strings.TrimPrefix(ctUnit, "/usr")}
	out, code := c.Systemctl(t, "cat", "godwit@.service")
	header, body, _ := strings.Cut(out, "\n")
	if code != 0 || !slices.Contains(unitPaths, strings.TrimPrefix(header, "# ")) || body != string(shipped) {
		t.Errorf("systemctl cat godwit@.service: exit %d, want 0 and # %s and the shipped unit; got:\n%s", code, ctUnit, out)
	}
	props := unitProps()
	if !strings.Contains(props, "LoadState=loaded\n") || !strings.Contains(props, "NeedDaemonReload=no\n") ||
		!slices.ContainsFunc(unitPaths, func(p string) bool { return strings.Contains(props, "FragmentPath="+p+"\n") }) {
		t.Errorf("systemctl show godwit@pkgtest.service after dpkg -i:\n%swant LoadState=loaded, FragmentPath=%s and NeedDaemonReload=no", props, ctUnit)
	}
	for _, u := range []string{ctUnit, "godwit@pkgtest.service"} {
		if out, code := c.Exec(t, "systemd-analyze", "verify", "--man=no", u); code != 0 || out != "" {
			t.Errorf("systemd-analyze verify --man=no %s: exit %d, output %q; want 0 and none", u, code, out)
		}
	}

	// postinst applied the sysctl file now, and systemd-sysctl reads it at
	// every boot. The values themselves cannot be seen here: the
	// container's network namespace has them read-only.
	if b, err := os.ReadFile(c.Path(ctSysctlLog)); err != nil || string(b) != ctSysctlConf+" -> exit 0\n" {
		t.Errorf("postinst ran systemd-sysctl as %q (%v), want once, on %s, exiting 0", b, err, ctSysctlConf)
	}
	// --cat-config exits 1 on the minimal root: its /etc/sysctl.d/99-sysctl.conf
	// points to the /etc/sysctl.conf of procps, which it lacks.
	if out, _ := c.Exec(t, real, "--cat-config"); !strings.Contains(out, "# "+ctSysctlConf+"\n") || !strings.Contains(out, "\nnet.core.rmem_max = 7500000\n") {
		t.Errorf("systemd-sysctl --cat-config has no %s setting net.core.rmem_max:\n%s", ctSysctlConf, out)
	}

	at = time.Now()
	out = c.MustExec(t, "dpkg", "--purge", "godwit")
	t.Logf("dpkg --purge took %v", time.Since(at).Round(time.Millisecond))
	if s := status(); s != "" && s != "not-installed" {
		t.Errorf("after dpkg --purge: dpkg-query says %q, want the package gone\n%s", s, out)
	}
	for _, f := range append(debFiles, debFile{path: "/usr/share/doc/godwit"}, debFile{path: "/usr/share/godwit"}) {
		if _, err := os.Lstat(c.Path(f.path)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after dpkg --purge: %s is still there (%v)", f.path, err)
		}
	}
	if out, code := c.Systemctl(t, "cat", "godwit@.service"); code == 0 {
		t.Errorf("after dpkg --purge: systemctl cat godwit@.service exits 0:\n%s", out)
	}
	if got := unitProps(); !strings.HasPrefix(got, "LoadState=not-found\n") {
		t.Errorf("after dpkg --purge: systemctl show godwit@pkgtest.service:\n%swant LoadState=not-found", got)
	}
}

// readFiles returns the contents of the files that can be read.
func readFiles(paths []string) map[string]string {
	m := make(map[string]string)
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			m[p] = string(b)
		}
	}
	return m
}
