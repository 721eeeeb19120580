// SPDX-License-Identifier: MIT

package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// gitRepo is a scratch git repository for version.sh.
type gitRepo struct {
	t   *testing.T
	git string
	dir string
}

func (r *gitRepo) run(env []string, args ...string) string {
	r.t.Helper()
	env = append([]string{"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.net", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.net"}, env...)
	out, code := run(r.t, time.Minute, env, r.git, append([]string{"-C", r.dir}, args...)...)
	if code != 0 {
		r.t.Fatalf("git %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	return strings.TrimSpace(out)
}

// commit commits a change to file f with the committer date at.
func (r *gitRepo) commit(f, at string) string {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(r.dir, f), []byte(at), 0o644); err != nil {
		r.t.Fatal(err)
	}
	r.run(nil, "add", f)
	r.run([]string{"GIT_COMMITTER_DATE=" + at, "GIT_AUTHOR_DATE=2020-01-01T00:00:00Z"}, "commit", "-q", "-m", "change "+f)
	return r.run(nil, "rev-parse", "--short=12", "HEAD")
}

// version runs version.sh in dir.
func version(t *testing.T, dir string) string {
	t.Helper()
	script, err := filepath.Abs("version.sh")
	if err != nil {
		t.Fatal(err)
	}
	out, code := run(t, time.Minute, nil, "sh", "-c", `cd "$1" && exec sh "$2"`, "sh", dir, script)
	if code != 0 {
		t.Fatalf("version.sh in %s: exit %d\n%s", dir, code, out)
	}
	return strings.TrimSpace(out)
}

// TestVersion checks the versions version.sh gives a sequence of commits:
// each is a valid Debian version greater than the one before (as dpkg
// compares them), a shallow clone gives the same as a full one, and tags
// and uncommitted changes show.
func TestVersion(t *testing.T) {
	git := requireTool(t, "git")
	dpkg := requireTool(t, "dpkg")
	r := &gitRepo{t: t, git: git, dir: t.TempDir()}
	r.run(nil, "init", "-q", "-b", "main")

	// The commit dates are not in the order of the author dates, and the
	// second pair of commits lands within one minute.
	var got []string
	want := []*regexp.Regexp{}
	step := func(v string, re string) {
		got = append(got, v)
		want = append(want, regexp.MustCompile("^"+re+"$"))
	}
	h := r.commit("a", "2026-01-02T03:04:05Z")
	step(version(t, r.dir), `0\.1\.0~git20260102030405\.`+h)
	h = r.commit("b", "2026-01-02T03:04:59Z")
	step(version(t, r.dir), `0\.1\.0~git20260102030459\.`+h)

	// A shallow clone of the same commit: the same version.
	clone := filepath.Join(t.TempDir(), "clone")
	r.run(nil, "clone", "-q", "--depth", "1", "file://"+r.dir, clone)
	if v := version(t, clone); v != got[len(got)-1] {
		t.Errorf("shallow clone: version %q, want %q as in the full clone", v, got[len(got)-1])
	}

	// Uncommitted changes to tracked files; untracked ones do not count.
	if err := os.WriteFile(filepath.Join(r.dir, "untracked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if v := version(t, r.dir); v != got[len(got)-1] {
		t.Errorf("with an untracked file: version %q, want %q", v, got[len(got)-1])
	}
	if err := os.WriteFile(filepath.Join(r.dir, "b"), []byte("edited"), 0o644); err != nil {
		t.Fatal(err)
	}
	step(version(t, r.dir), `0\.1\.0~git20260102030459\.`+h+`\.dirty`)
	r.run(nil, "checkout", "-q", "--", "b")

	// A release tag, then a commit after it.
	r.commit("c", "2026-02-01T00:00:00Z")
	r.run(nil, "tag", "v0.1.0")
	step(version(t, r.dir), `0\.1\.0`)
	h = r.commit("d", "2026-02-01T00:00:01Z")
	step(version(t, r.dir), `0\.1\.0\+git20260201000001\.`+h)
	h = r.commit("e", "2026-03-01T00:00:00Z")
	step(version(t, r.dir), `0\.1\.0\+git20260301000000\.`+h)

	for i, v := range got {
		if !want[i].MatchString(v) {
			t.Errorf("step %d: version %q, want %s", i, v, want[i])
		}
		if i > 0 {
			if out, code := run(t, time.Minute, nil, dpkg, "--compare-versions", got[i-1], "lt", v); code != 0 {
				t.Errorf("dpkg --compare-versions %s lt %s: exit %d, want 0 (true)\n%s", got[i-1], v, code, out)
			}
		}
	}

	// The real repository gives a valid version too.
	v := version(t, repoRoot(t))
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(v) {
		t.Errorf("version.sh in the repository: %q, not a Debian upstream version", v)
	}
}
