// SPDX-License-Identifier: MIT

package ctlmsg

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

func decodeAll(b []byte) ([]Message, error) {
	r := bufio.NewReader(bytes.NewReader(b))
	var ms []Message
	for {
		m, err := Read(r)
		if err == io.EOF {
			return ms, nil
		}
		if err != nil {
			return ms, err
		}
		ms = append(ms, m)
	}
}

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Message
		want Message // what decoding Append(in) gives
	}{
		{"hello", Hello{Version: 1, Capabilities: 0xdeadbeef, Name: "boat-1"}, nil},
		{"hello empty name", Hello{Version: Version}, nil},
		{"hello max caps", Hello{Version: 0xffff, Capabilities: ^uint64(0), Name: "ü"}, nil},
		{"heartbeat", Heartbeat{Seq: 7, SentUnixNano: 1_700_000_000_000_000_000}, nil},
		{"heartbeat reply negative time", Heartbeat{Seq: ^uint64(0), SentUnixNano: -5, Reply: true}, nil},
		{"goodbye", Goodbye{Code: CodeHeartbeatTimeout, Reason: "heartbeat timeout"}, nil},
		{"goodbye empty", Goodbye{}, nil},
		{"unknown", Unknown{Type: 4711}, nil},
		{"multipath failover", Multipath{Instance: 1}, nil},
		{"multipath redundant all", Multipath{Instance: ^uint64(0), Mode: ModeRedundant, RedundancyAll: true}, nil},
		{"multipath aggregate", Multipath{Instance: 0x0123456789abcdef, Mode: ModeAggregate}, nil},
		{"preference standby", Preference{}, nil},
		{"preference preferred", Preference{Preferred: true}, nil},
		{"preference leaving", Preference{Leaving: true}, nil},
		{"long name clamped", Hello{Name: strings.Repeat("n", 300)}, Hello{Name: strings.Repeat("n", maxNameLen)}},
		{"clamp keeps utf8", Goodbye{Reason: strings.Repeat("é", 600)}, Goodbye{Reason: strings.Repeat("é", maxReasonLen/2)}},
		{"invalid utf8 replaced", Hello{Name: "a\xffb"}, Hello{Name: "a\uFFFDb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == nil {
				want = tt.in
			}
			b := Append([]byte("prefix"), tt.in)
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatalf("Append clobbered the prefix: %q", b)
			}
			got, err := decodeAll(b[len("prefix"):])
			if err != nil {
				t.Fatalf("Read(Append(%#v)) error: %v", tt.in, err)
			}
			if len(got) != 1 || got[0] != want {
				t.Errorf("Read(Append(%#v)) = %#v, want [%#v]", tt.in, got, want)
			}
		})
	}
}

func TestReadSequence(t *testing.T) {
	var b []byte
	b = Append(b, Hello{Version: 1, Capabilities: CapMultipath, Name: "a"})
	b = Append(b, Multipath{Instance: 7, Mode: ModeAggregate})
	b = append(b, 0x40, 99, 3, 'x', 'y', 'z') // type 99 as a 2-byte varint, 3 bytes payload
	b = Append(b, Heartbeat{Seq: 1})
	got, err := decodeAll(b)
	if err != nil {
		t.Fatalf("decodeAll: %v", err)
	}
	want := []Message{Hello{Version: 1, Capabilities: CapMultipath, Name: "a"}, Multipath{Instance: 7, Mode: ModeAggregate}, Unknown{Type: 99}, Heartbeat{Seq: 1}}
	if len(got) != len(want) {
		t.Fatalf("decodeAll = %#v, want %#v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("message %d = %#v, want %#v", i, got[i], want[i])
		}
	}
}

func TestReadErrors(t *testing.T) {
	hb := Append(nil, Heartbeat{Seq: 1})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"header cut", []byte{0x02}, io.ErrUnexpectedEOF},
		{"varint cut", []byte{0x02, 0x40}, io.ErrUnexpectedEOF},
		{"payload cut", hb[:len(hb)-1], io.ErrUnexpectedEOF},
		{"unknown payload cut", []byte{0x3f, 10, 1, 2}, io.ErrUnexpectedEOF},
		{"too large known", quicvarint.Append([]byte{0x02}, maxSize+1), ErrTooLarge},
		{"too large unknown", quicvarint.Append([]byte{0x3f}, 1<<40), ErrTooLarge},
		{"hello short", []byte{0x01, 9, 0, 1, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed},
		{"hello bad utf8", append([]byte{0x01, 11, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}, 0xff), ErrMalformed},
		{"hello long name", append(append([]byte{0x01, 0x41, 0x0a, 0, 1}, make([]byte, 8)...), bytes.Repeat([]byte{'a'}, 256)...), ErrMalformed},
		{"heartbeat short", []byte{0x02, 1, 0}, ErrMalformed},
		{"heartbeat long", append(append([]byte{0x02, 18}, hb[2:]...), 0), ErrMalformed},
		{"heartbeat bad flags", append(append([]byte{}, hb[:len(hb)-1]...), 2), ErrMalformed},
		{"goodbye short", []byte{0x03, 7, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed},
		{"multipath short", []byte{0x04, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0}, ErrMalformed},
		{"multipath long", []byte{0x04, 11, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, ErrMalformed},
		{"multipath empty", []byte{0x04, 0}, ErrMalformed},
		{"multipath mode 3", []byte{0x04, 10, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0}, ErrMalformed},
		{"multipath mode 255", []byte{0x04, 10, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0}, ErrMalformed},
		{"multipath instance 0", []byte{0x04, 10, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0}, ErrMalformed},
		{"multipath payload cut", []byte{0x04, 10, 0, 0, 0, 0}, io.ErrUnexpectedEOF},
		{"preference empty", []byte{0x05, 0}, ErrMalformed},
		{"preference long", []byte{0x05, 2, 1, 0}, ErrMalformed},
		{"preference payload cut", []byte{0x05, 1}, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Read(bufio.NewReader(bytes.NewReader(tt.in)))
			if !errors.Is(err, tt.want) {
				t.Errorf("Read(%x) = %#v, %v; want error %v", tt.in, m, err, tt.want)
			}
		})
	}
}

// TestMultipathWire pins the encoding of a Multipath message byte for
// byte, and checks that reserved flag bits are ignored and that Append
// refuses what would not decode.
func TestMultipathWire(t *testing.T) {
	got := Append(nil, Multipath{Instance: 0x0102030405060708, Mode: ModeRedundant, RedundancyAll: true})
	want := []byte{0x04, 10, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1}
	if !bytes.Equal(got, want) {
		t.Errorf("Append(Multipath) = %x, want %x", got, want)
	}
	in := []byte{0x04, 10, 0, 0, 0, 0, 0, 0, 0, 9, 2, 0xfe}
	m, err := Read(bufio.NewReader(bytes.NewReader(in)))
	if wantM := (Multipath{Instance: 9, Mode: ModeAggregate}); err != nil || m != wantM {
		t.Errorf("Read(%x) = %#v, %v; want %#v (reserved flags ignored)", in, m, err, wantM)
	}
	for _, bad := range []Multipath{{Instance: 0}, {Instance: 1, Mode: MaxMode + 1}} {
		if b := Append([]byte("x"), bad); string(b) != "x" {
			t.Errorf("Append(%#v) = %q, want nothing appended", bad, b)
		}
	}
	if b := Append(nil, Unknown{Type: typeMultipath}); len(b) != 0 {
		t.Errorf("Append(Unknown{Type: 4}) = %x, want nothing", b)
	}
}

// TestPreferenceWire pins the encoding of a Preference message and checks
// that reserved flag bits are ignored.
func TestPreferenceWire(t *testing.T) {
	if got, want := Append(nil, Preference{Preferred: true, Leaving: true}), []byte{0x05, 1, 3}; !bytes.Equal(got, want) {
		t.Errorf("Append(Preference) = %x, want %x", got, want)
	}
	in := []byte{0x05, 1, 0xfd}
	m, err := Read(bufio.NewReader(bytes.NewReader(in)))
	if want := (Preference{Preferred: true}); err != nil || m != want {
		t.Errorf("Read(%x) = %#v, %v; want %#v (reserved flags ignored)", in, m, err, want)
	}
	if b := Append(nil, Unknown{Type: typePreference}); len(b) != 0 {
		t.Errorf("Append(Unknown{Type: 5}) = %x, want nothing", b)
	}
}

// TestReadHugeLengthAllocates checks that a declared length is
// never used to allocate before it passed the cap.
func TestReadHugeLengthAllocates(t *testing.T) {
	in := quicvarint.Append([]byte{0x01}, quicvarint.Max)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		if _, err := Read(bufio.NewReaderSize(bytes.NewReader(in), 16)); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("Read(huge) error = %v, want ErrTooLarge", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 1<<20 {
		t.Errorf("100 huge-length messages allocated %d bytes, want < 1 MiB", got)
	}
}

func FuzzRead(f *testing.F) {
	for _, m := range []Message{
		Hello{Version: Version, Capabilities: 3, Name: "hub"},
		Heartbeat{Seq: 42, SentUnixNano: 1_700_000_000_000_000_000, Reply: true},
		Goodbye{Code: CodeNoError, Reason: "shutting down"},
		Unknown{Type: 77},
		Multipath{Instance: 0xfeedface, Mode: ModeRedundant, RedundancyAll: true},
		Multipath{Instance: 1, Mode: ModeAggregate},
	} {
		f.Add(Append(nil, m))
	}
	f.Add(Append(Append(nil, Heartbeat{Seq: 1}), Goodbye{Code: 1, Reason: "x"}))
	f.Add(Append(Append(nil, Hello{Version: Version, Capabilities: CapMultipath, Name: "site"}), Multipath{Instance: 42}))
	f.Add([]byte{0x04, 10, 0, 0, 0, 0, 0, 0, 0, 1, 3, 0})    // mode 3: malformed
	f.Add([]byte{0x04, 10, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff}) // reserved flags
	f.Add([]byte{0x3f, 0x80, 0x01, 0x00, 0x00})
	f.Add(Append(Append(Append(nil, Hello{Version: Version, Capabilities: CapMultipath | CapPreference, Name: "site"}), Multipath{Instance: 42}), Preference{Preferred: true}))
	f.Add([]byte{0x05, 1, 0xff}) // reserved preference flags
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		consumed := 0
		for {
			m, err := Read(r)
			if err != nil {
				if m != nil {
					t.Fatalf("Read returned %#v with error %v", m, err)
				}
				return
			}
			enc := Append(nil, m)
			if len(enc) > maxSize+16 {
				t.Fatalf("re-encoding of %#v is %d bytes", m, len(enc))
			}
			back, err := Read(bufio.NewReader(bytes.NewReader(enc)))
			if err != nil {
				t.Fatalf("Read(Append(%#v)) error: %v", m, err)
			}
			if back != m {
				t.Fatalf("round trip: %#v became %#v", m, back)
			}
			if mp, ok := m.(Multipath); ok && (mp.Instance == 0 || mp.Mode > MaxMode) {
				t.Fatalf("decoded an invalid %#v", mp)
			}
			// Every decoded message consumed at least its 2-byte header.
			consumed += 2
			if consumed > len(data) {
				t.Fatalf("decoded more messages than the input can hold")
			}
		}
	})
}
