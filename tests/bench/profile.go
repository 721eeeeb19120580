// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/godwit-vpn/godwit/routing/netlab"
)

// pprofPort is the metrics_listen port of each Godwit daemon when
// profiling (on 127.0.0.1 of its own namespace).
const pprofPort = 9586

// profileSeconds is the length of the CPU and allocation profiles.
const profileSeconds = 5

// topNodes is how many lines of `go tool pprof -top` are kept.
const topNodes = 25

// profileTop is one `go tool pprof -top` listing.
type profileTop struct {
	Daemon string `json:"daemon"` // "godwit-hub" or "godwit-site"
	Kind   string `json:"kind"`   // "cpu" or "allocs" (alloc_space)
	Sort   string `json:"sort"`   // "flat" or "cum"
	File   string `json:"file"`   // the profile it was made from
	Top    string `json:"top"`    // pprof's output
	Error  string `json:"error,omitempty"`
}

// profTarget is a daemon with a pprof endpoint on 127.0.0.1:pprofPort in ns.
type profTarget struct {
	name string
	ns   *netlab.NS
}

// nsClient returns an HTTP client whose connections are made inside ns.
func nsClient(ns *netlab.NS) *http.Client {
	return &http.Client{
		Timeout: (profileSeconds + 15) * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return ns.DialTCP(ctx, addr)
			},
			DisableKeepAlives: true,
		},
	}
}

// fetch saves http://127.0.0.1:pprofPort/debug/pprof/<path> from inside ns
// to file.
func fetch(ctx context.Context, ns *netlab.NS, path, file string) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/%s", pprofPort, path)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	resp, err := nsClient(ns).Do(req)
	if err != nil {
		return fmt.Errorf("bench: pprof in %s: %w", ns.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("bench: pprof %s in %s: %s: %s", url, ns.Name, resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("bench: pprof %s: %w", url, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// captureProfiles takes, at the same time from every target, a CPU profile
// and an allocation profile (both over profileSeconds), then a heap
// profile, into dir as <daemon>.{cpu,allocs,heap}.pb.gz, and returns the
// pprof tops of the CPU and allocation profiles (also saved as .txt).
// It blocks for about profileSeconds.
func captureProfiles(ctx context.Context, dir, bin string, targets []profTarget) ([]profileTop, error) {
	type job struct {
		t          profTarget
		kind, path string
	}
	var jobs []job
	for _, t := range targets {
		jobs = append(jobs,
			job{t, "cpu", fmt.Sprintf("profile?seconds=%d", profileSeconds)},
			job{t, "allocs", fmt.Sprintf("allocs?seconds=%d", profileSeconds)})
	}
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			errs[i] = fetch(ctx, j.t.ns, j.path, filepath.Join(dir, j.t.name+"."+j.kind+".pb.gz"))
		})
	}
	wg.Wait()
	for _, t := range targets {
		errs = append(errs, fetch(ctx, t.ns, "heap", filepath.Join(dir, t.name+".heap.pb.gz")))
	}

	var tops []profileTop
	for i, j := range jobs {
		if errs[i] != nil {
			continue
		}
		file := filepath.Join(dir, j.t.name+"."+j.kind+".pb.gz")
		for _, sort := range []string{"flat", "cum"} {
			pt := profileTop{Daemon: j.t.name, Kind: j.kind, Sort: sort, File: file}
			out, err := pprofTop(ctx, bin, file, j.kind, sort)
			pt.Top = out
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s.%s.%s.txt", j.t.name, j.kind, sort)), []byte(out), 0o644)
			}
			if err != nil {
				pt.Error = err.Error()
				errs = append(errs, err)
			}
			tops = append(tops, pt)
		}
	}
	return tops, errors.Join(errs...)
}

// pprofTop runs `go tool pprof -top` on file: the topNodes heaviest
// functions by flat or cumulative CPU time or allocated bytes.
func pprofTop(ctx context.Context, bin, file, kind, sort string) (string, error) {
	args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", topNodes)}
	if sort == "cum" {
		args = append(args, "-cum")
	}
	if kind == "allocs" {
		args = append(args, "-sample_index=alloc_space")
	}
	args = append(args, bin, file)
	cmd := exec.CommandContext(ctx, "go", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("bench: go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
