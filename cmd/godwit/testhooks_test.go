// SPDX-License-Identifier: MIT

package main

import (
	"testing"
	"time"
)

func TestWedgeFromEnv(t *testing.T) {
	tests := []struct {
		wedge, after string
		want         debugWedge
		wantErr      bool
	}{
		{"", "", debugWedge{after: 2 * time.Second}, false},
		{"", "bogus", debugWedge{after: 2 * time.Second}, false}, // no wedge: the delay is not read
		{"control", "", debugWedge{loop: "control", after: 2 * time.Second}, false},
		{"datapath", "500ms", debugWedge{loop: "datapath", after: 500 * time.Millisecond}, false},
		{"control", "0s", debugWedge{loop: "control"}, false},
		{"both", "", debugWedge{}, true},
		{"control", "-1s", debugWedge{}, true},
		{"control", "soon", debugWedge{}, true},
	}
	for _, tt := range tests {
		t.Setenv(envWedge, tt.wedge)
		t.Setenv(envWedgeAfter, tt.after)
		got, err := wedgeFromEnv()
		if (err != nil) != tt.wantErr || err == nil && got != tt.want {
			t.Errorf("%s=%q %s=%q: wedgeFromEnv = %+v, %v; want %+v, error %v",
				envWedge, tt.wedge, envWedgeAfter, tt.after, got, err, tt.want, tt.wantErr)
		}
	}
}
