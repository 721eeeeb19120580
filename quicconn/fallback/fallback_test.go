// SPDX-License-Identifier: MIT

package fallback

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a fake TCP dial loop: it logs, with the virtual time since
// the start, when the policy started it and when it was stopped.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []string
}

func (r *recorder) dial(ctx context.Context) {
	r.add("tcp start")
	<-ctx.Done()
	r.add("tcp stop")
}

func (r *recorder) add(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, fmt.Sprintf("%v %s", time.Since(r.start).Round(time.Millisecond), op))
}

func (r *recorder) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.ops, ", ")
}

// event is a SetUDP call at a virtual time after the start.
type event struct {
	at     time.Duration
	usable bool
}

// TestRules runs the policy in virtual time against scripted UDP health
// and compares when the TCP path was started and stopped.
func TestRules(t *testing.T) {
	tests := []struct {
		name    string
		events  []event
		want    string
		fb, ret uint64 // the Status counts after the run
	}{
		{
			name: "udp never answers",
			want: "1s tcp start, 30s tcp stop", // stopped by the end of the run
			fb:   1,
		},
		{
			name:   "udp up in time",
			events: []event{{500 * time.Millisecond, true}},
			want:   "",
		},
		{
			name:   "udp down after having worked",
			events: []event{{200 * time.Millisecond, true}, {5 * time.Second, false}},
			want:   "5s tcp start, 30s tcp stop",
			fb:     1,
		},
		{
			name:   "udp down before the first wait ends",
			events: []event{{200 * time.Millisecond, true}, {600 * time.Millisecond, false}},
			want:   "600ms tcp start, 30s tcp stop",
			fb:     1,
		},
		{
			name:   "udp back after a block from the start",
			events: []event{{10 * time.Second, true}},
			want:   "1s tcp start, 13s tcp stop",
			fb:     1, ret: 1,
		},
		{
			name: "udp flaps: the 3 s restart",
			events: []event{
				{10 * time.Second, true}, {12 * time.Second, false}, {12500 * time.Millisecond, true},
			},
			want: "1s tcp start, 15.5s tcp stop",
			fb:   1, ret: 1,
		},
		{
			name: "back, then blocked again",
			events: []event{
				{time.Second + 500*time.Millisecond, true}, {20 * time.Second, false},
			},
			want: "1s tcp start, 4.5s tcp stop, 20s tcp start, 30s tcp stop",
			fb:   2, ret: 1,
		},
		{
			name:   "repeated answers change nothing",
			events: []event{{100 * time.Millisecond, true}, {200 * time.Millisecond, true}, {2 * time.Second, true}},
			want:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := &recorder{start: time.Now()}
				f := New(Config{Peer: "hub", Via: "tcp via proxy"})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					f.Run(ctx, r.dial)
				}()
				for _, e := range tt.events {
					time.Sleep(e.at - time.Since(r.start))
					f.SetUDP(e.usable, "every udp path silent")
				}
				time.Sleep(30*time.Second - time.Since(r.start))
				st := f.Status()
				cancel()
				<-done
				if got := r.log(); got != tt.want {
					t.Errorf("TCP path: %q, want %q", got, tt.want)
				}
				if st.Fallbacks != tt.fb || st.Returns != tt.ret {
					t.Errorf("Status() = %+v, want %d fallbacks and %d returns", st, tt.fb, tt.ret)
				}
			})
		})
	}
}

// TestReasons checks the log lines and Status reasons.
func TestReasons(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := New(Config{Peer: "hub", Via: "tcp via proxy"})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go f.Run(ctx, func(ctx context.Context) { <-ctx.Done() })
		time.Sleep(1500 * time.Millisecond)
		if st := f.Status(); !st.OnTCP || st.Reason != "udp blocked: no answer in 1s; tcp via proxy" {
			t.Errorf("after a silent start: Status() = %+v", st)
		}
		f.SetUDP(true, "")
		time.Sleep(4 * time.Second)
		if st := f.Status(); st.OnTCP || st.Reason != "udp back: usable for 3s; tcp via proxy closed" {
			t.Errorf("after UDP came back: Status() = %+v", st)
		}
		f.SetUDP(false, "every udp path silent")
		synctest.Wait()
		if st := f.Status(); !st.OnTCP || st.Reason != "udp down: every udp path silent; tcp via proxy" {
			t.Errorf("after UDP went silent: Status() = %+v", st)
		}
	})
}
