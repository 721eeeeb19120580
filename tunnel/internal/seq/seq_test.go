// SPDX-License-Identifier: MIT

package seq

import (
	"bytes"
	"errors"
	"sync"
	"testing"
)

func TestPut(t *testing.T) {
	tests := []struct {
		name string
		seq  uint64
		want []byte
	}{
		{"zero", 0, []byte{0x10, 0, 0, 0, 0, 0, 0, 0}},
		{"one", 1, []byte{0x10, 0, 0, 0, 0, 0, 0, 1}},
		{"big-endian", 0x01_0203_0405_0607, []byte{0x10, 1, 2, 3, 4, 5, 6, 7}},
		{"last", 1<<56 - 1, []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"modulo 2^56", 1 << 56, []byte{0x10, 0, 0, 0, 0, 0, 0, 0}},
		{"high byte dropped", 0xab00_0000_0000_0001, []byte{0x10, 0, 0, 0, 0, 0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte{0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0x45}
			Put(b, tt.seq)
			if !bytes.Equal(b[:HeaderLen], tt.want) || b[HeaderLen] != 0x45 {
				t.Errorf("Put(%#x) wrote % x, want % x then 45 untouched", tt.seq, b, tt.want)
			}
		})
	}
}

func TestPutShort(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Put into 7 bytes did not panic")
		}
	}()
	Put(make([]byte, HeaderLen-1), 1)
}

func TestParse(t *testing.T) {
	ipv4 := []byte{0x45, 0, 0, 20}
	tests := []struct {
		name    string
		in      []byte
		wantSeq uint64
		wantPkt []byte
		wantErr error
	}{
		{"nil", nil, 0, nil, ErrShort},
		{"empty", []byte{}, 0, nil, ErrShort},
		{"tag only", []byte{0x10}, 0, nil, ErrShort},
		{"seven bytes", []byte{0x10, 0, 0, 0, 0, 0, 1}, 0, nil, ErrShort},
		{"header only", []byte{0x10, 0, 0, 0, 0, 0, 0, 7}, 7, []byte{}, nil},
		{"packet", append([]byte{0x10, 1, 2, 3, 4, 5, 6, 7}, ipv4...), 0x01_0203_0405_0607, ipv4, nil},
		{"last number", append([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, ipv4...), 1<<56 - 1, ipv4, nil},
		{"version 1", append([]byte{0x11, 0, 0, 0, 0, 0, 0, 1}, ipv4...), 0, nil, ErrVersion},
		{"version 15", append([]byte{0x1f, 0, 0, 0, 0, 0, 0, 1}, ipv4...), 0, nil, ErrVersion},
		{"short version 1", []byte{0x11}, 0, nil, ErrVersion},
		{"plain IPv4", append(ipv4, make([]byte, 16)...), 0, nil, ErrVersion},
		{"plain IPv6", []byte{0x60, 0, 0, 0, 0, 0, 0, 0, 0}, 0, nil, ErrVersion},
		{"nibble 0", []byte{0x00, 0, 0, 0, 0, 0, 0, 0, 0}, 0, nil, ErrVersion},
		{"nibble 2", []byte{0x20, 0, 0, 0, 0, 0, 0, 0, 0}, 0, nil, ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq, pkt, err := Parse(tt.in)
			if seq != tt.wantSeq || !bytes.Equal(pkt, tt.wantPkt) || (pkt == nil) != (tt.wantPkt == nil) || !errors.Is(err, tt.wantErr) {
				t.Errorf("Parse(% x) = %#x, % x, %v; want %#x, % x, %v", tt.in, seq, pkt, err, tt.wantSeq, tt.wantPkt, tt.wantErr)
			}
		})
	}
}

// TestParseAliases checks that the packet Parse returns is b's own tail,
// not a copy.
func TestParseAliases(t *testing.T) {
	b := []byte{0x10, 0, 0, 0, 0, 0, 0, 1, 0x45, 0}
	_, pkt, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if &pkt[0] != &b[HeaderLen] {
		t.Error("Parse copied the packet; want it to alias b")
	}
}

func TestSender(t *testing.T) {
	var s Sender
	for want := range uint64(3) {
		if got := s.Next(); got != want {
			t.Errorf("zero Sender: Next() = %d, want %d", got, want)
		}
	}
	s.next.Store(1<<56 - 2)
	for _, want := range []uint64{1<<56 - 2, 1<<56 - 1, 0, 1} {
		if got := s.Next(); got != want {
			t.Errorf("Sender across the wrap: Next() = %#x, want %#x", got, want)
		}
	}
	s.next.Store(1<<64 - 1) // the atomic counter wraps too: 2^56 divides 2^64
	for _, want := range []uint64{1<<56 - 1, 0} {
		if got := s.Next(); got != want {
			t.Errorf("Sender across 2^64: Next() = %#x, want %#x", got, want)
		}
	}
}

func TestNewSender(t *testing.T) {
	seen := make(map[uint64]bool)
	for range 100 {
		n := NewSender().Next()
		if n >= 1<<48 {
			t.Fatalf("NewSender().Next() = %#x, want below 2^48", n)
		}
		seen[n] = true
	}
	if len(seen) < 99 { // two equal draws in 2^48 happen with odds of 2^-35
		t.Errorf("100 NewSenders started at %d distinct numbers, want 100", len(seen))
	}
}

// TestSenderConcurrent checks that concurrent callers never get the same
// number.
func TestSenderConcurrent(t *testing.T) {
	const goroutines, per = 4, 10000
	s := NewSender()
	got := make([][]uint64, goroutines)
	var wg sync.WaitGroup
	for g := range got {
		wg.Go(func() {
			for range per {
				got[g] = append(got[g], s.Next())
			}
		})
	}
	wg.Wait()
	seen := make(map[uint64]bool, goroutines*per)
	for _, ns := range got {
		for _, n := range ns {
			if seen[n] {
				t.Fatalf("number %#x handed out twice", n)
			}
			seen[n] = true
		}
	}
}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	b := make([]byte, HeaderLen+20)
	var s Sender
	var w Window
	tests := []struct {
		name string
		f    func()
	}{
		{"Put", func() { Put(b, s.Next()) }},
		{"Parse", func() { _, _, _ = Parse(b) }},
		{"Parse error", func() { _, _, _ = Parse(b[:3]) }},
		{"Check", func() { w.Check(s.Next()) }},
		{"Check duplicate", func() { w.Check(0) }},
		{"Check reset", func() { w.Check(s.next.Add(1 << 30)) }},
	}
	for _, tt := range tests {
		if got := testing.AllocsPerRun(1000, tt.f); got != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tt.name, got)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte{}, uint64(0))
	f.Add([]byte{0x10, 0, 0, 0, 0, 0, 0, 1}, uint64(1))
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x45, 0, 0, 20}, uint64(1<<56-1))
	f.Add([]byte{0x11, 0, 0, 0, 0, 0, 0, 1, 0x60}, uint64(1<<56))
	f.Add([]byte{0x45, 0, 0, 20, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2}, uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, b []byte, n uint64) {
		// Put then Parse round-trips any number, modulo 2^56, over any
		// packet.
		d := append(make([]byte, HeaderLen), b...)
		Put(d, n)
		if seq, pkt, err := Parse(d); err != nil || seq != n%(1<<56) || !bytes.Equal(pkt, b) {
			t.Fatalf("Parse(Put(%#x) + % x) = %#x, % x, %v; want %#x, % x, nil", n, b, seq, pkt, err, n%(1<<56), b)
		}

		seq, pkt, err := Parse(b)
		if err != nil {
			if seq != 0 || pkt != nil {
				t.Fatalf("Parse(% x) = %#x, % x, %v; want 0, nil with an error", b, seq, pkt, err)
			}
			want := ErrShort
			if len(b) > 0 && b[0] != 0x10 {
				want = ErrVersion
			} else if len(b) >= HeaderLen {
				want = nil
			}
			if !errors.Is(err, want) {
				t.Fatalf("Parse(% x) = %v, want %v", b, err, want)
			}
			return
		}
		if len(b) < HeaderLen || b[0] != 0x10 || seq > mask || len(pkt) != len(b)-HeaderLen {
			t.Fatalf("Parse(% x) = %#x, % x, nil; want an error or a 56-bit number and the rest", b, seq, pkt)
		}
		// Put rebuilds b's header from its number.
		out := bytes.Clone(b)
		Put(out, seq)
		if !bytes.Equal(out, b) {
			t.Fatalf("Put(%#x) over % x wrote % x", seq, b, out)
		}
	})
}
