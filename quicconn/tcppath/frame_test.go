// SPDX-License-Identifier: MIT

package tcppath

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

// frames encodes packets as frames, the way a link writes them.
func frames(t testing.TB, packets ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	for _, p := range packets {
		if err := writeFrame(w, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestWriteFrame(t *testing.T) {
	tests := []struct {
		name string
		p    []byte
		want []byte
	}{
		{"one byte", []byte{0xc0}, []byte{0, 1, 0xc0}},
		{"three bytes", []byte{1, 2, 3}, []byte{0, 3, 1, 2, 3}},
		{"256 bytes", make([]byte, 256), append([]byte{1, 0}, make([]byte, 256)...)},
		{"1452 bytes", make([]byte, 1452), append([]byte{0x05, 0xac}, make([]byte, 1452)...)},
		{"65535 bytes", make([]byte, 65535), append([]byte{0xff, 0xff}, make([]byte, 65535)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := frames(t, tt.p); !bytes.Equal(got, tt.want) {
				t.Errorf("writeFrame(%d bytes) = % x..., want % x...", len(tt.p), got[:min(len(got), 8)], tt.want[:min(len(tt.want), 8)])
			}
		})
	}
}

func TestReadFrame(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, DefaultMaxPacket)
	tests := []struct {
		name    string
		in      []byte
		limit   int
		dst     int      // len of the destination buffer
		want    [][]byte // packets read before the error
		wantErr error
	}{
		{"empty stream", nil, DefaultMaxPacket, DefaultMaxPacket, nil, io.EOF},
		{"one packet", []byte{0, 2, 7, 8}, DefaultMaxPacket, DefaultMaxPacket, [][]byte{{7, 8}}, io.EOF},
		{"two packets", []byte{0, 1, 9, 0, 2, 7, 8}, DefaultMaxPacket, DefaultMaxPacket, [][]byte{{9}, {7, 8}}, io.EOF},
		{"at the limit", frames(t, big), DefaultMaxPacket, DefaultMaxPacket, [][]byte{big}, io.EOF},
		{"above the limit", frames(t, append(big, 1)), DefaultMaxPacket, DefaultMaxPacket, nil, ErrFrameSize},
		{"above a lower limit", []byte{0, 3, 1, 2, 3}, 2, 2, nil, ErrFrameSize},
		{"zero length", []byte{0, 0}, DefaultMaxPacket, DefaultMaxPacket, nil, ErrFrameSize},
		{"zero length after a packet", []byte{0, 1, 9, 0, 0, 1}, DefaultMaxPacket, DefaultMaxPacket, [][]byte{{9}}, ErrFrameSize},
		{"header cut", []byte{0}, DefaultMaxPacket, DefaultMaxPacket, nil, io.ErrUnexpectedEOF},
		{"body cut", []byte{0, 3, 1, 2}, DefaultMaxPacket, DefaultMaxPacket, nil, io.ErrUnexpectedEOF},
		{"second header cut", []byte{0, 1, 9, 0}, DefaultMaxPacket, DefaultMaxPacket, [][]byte{{9}}, io.ErrUnexpectedEOF},
		{"truncated into a short buffer", []byte{0, 3, 1, 2, 3, 0, 1, 4}, DefaultMaxPacket, 2, [][]byte{{1, 2}, {4}}, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(bytes.NewReader(tt.in), readerSize(tt.limit))
			dst := make([]byte, tt.dst)
			var got [][]byte
			var err error
			for {
				var n int
				n, err = readFrame(r, tt.limit, dst)
				if err != nil {
					break
				}
				got = append(got, bytes.Clone(dst[:n]))
			}
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("readFrame error = %v, want %v", err, tt.wantErr)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("read %d packets, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Errorf("packet %d = % x, want % x", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// slowReader hands out its bytes one at a time and fails with a timeout
// after each, like a connection whose read deadline keeps passing.
type slowReader struct {
	b       []byte
	timeout bool
}

func (s *slowReader) Read(p []byte) (int, error) {
	if s.timeout = !s.timeout; s.timeout {
		return 0, os.ErrDeadlineExceeded
	}
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	p[0] = s.b[0]
	s.b = s.b[1:]
	return 1, nil
}

// TestReadFrameResumesAfterTimeout shows that a read deadline passing in
// the middle of a frame loses nothing: the frame is read whole by a later
// call.
func TestReadFrameResumesAfterTimeout(t *testing.T) {
	want := [][]byte{{1, 2, 3}, {4}, bytes.Repeat([]byte{5}, 300)}
	r := bufio.NewReaderSize(&slowReader{b: frames(t, want...)}, readerSize(DefaultMaxPacket))
	dst := make([]byte, DefaultMaxPacket)
	var got [][]byte
	timeouts := 0
	for {
		n, err := readFrame(r, DefaultMaxPacket, dst)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			timeouts++
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("readFrame: %v", err)
		}
		got = append(got, bytes.Clone(dst[:n]))
	}
	if timeouts == 0 {
		t.Fatal("no timeouts: the test reader is wrong")
	}
	if len(got) != len(want) {
		t.Fatalf("read %d packets, want %d", len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("packet %d = % x, want % x", i, got[i], want[i])
		}
	}
}

// loopReader serves the same bytes forever.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.b[l.off:])
	l.off = (l.off + n) % len(l.b)
	return n, nil
}

func TestFrameAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	p := bytes.Repeat([]byte{0x40}, 1200)
	w := bufio.NewWriterSize(io.Discard, 1<<14)
	if n := testing.AllocsPerRun(1000, func() {
		if err := writeFrame(w, p); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("writeFrame: %v allocations, want 0", n)
	}
	r := bufio.NewReaderSize(&loopReader{b: frames(t, p, p[:100], p[:1])}, readerSize(DefaultMaxPacket))
	dst := make([]byte, DefaultMaxPacket)
	if n := testing.AllocsPerRun(1000, func() {
		if _, err := readFrame(r, DefaultMaxPacket, dst); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("readFrame: %v allocations, want 0", n)
	}
}

// FuzzDecode feeds arbitrary bytes to the decoder with an arbitrary limit.
// It must never panic; every packet it returns must be within the limit;
// re-encoding what it returned must give back exactly the bytes it
// consumed; and the error at the end must match what follows them.
func FuzzDecode(f *testing.F) {
	f.Add([]byte{}, uint16(DefaultMaxPacket))
	f.Add(frames(f, []byte{0xc3, 0, 0, 0, 1}, bytes.Repeat([]byte{0x40}, 1200)), uint16(DefaultMaxPacket))
	f.Add(frames(f, bytes.Repeat([]byte{0x41}, 1453)), uint16(DefaultMaxPacket))
	f.Add([]byte{0, 0}, uint16(DefaultMaxPacket))
	f.Add([]byte{0, 5, 1, 2}, uint16(DefaultMaxPacket))
	f.Add([]byte{0xff, 0xff, 1}, uint16(0xffff))
	f.Add(frames(f, []byte{1, 2, 3}, []byte{4}), uint16(2))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		lim := max(int(limit), 1)
		r := bufio.NewReaderSize(bytes.NewReader(in), readerSize(lim))
		dst := make([]byte, lim)
		var got [][]byte
		var err error
		for {
			var n int
			if n, err = readFrame(r, lim, dst); err != nil {
				break
			}
			if n == 0 || n > lim {
				t.Fatalf("packet of %d bytes, limit %d", n, lim)
			}
			got = append(got, bytes.Clone(dst[:n]))
		}
		consumed := frames(t, got...)
		if !bytes.HasPrefix(in, consumed) {
			t.Fatalf("re-encoded packets % x are not a prefix of the input % x", consumed, in)
		}
		rest := in[len(consumed):]
		switch {
		case errors.Is(err, io.EOF):
			if len(rest) != 0 {
				t.Fatalf("EOF with %d bytes left", len(rest))
			}
		case errors.Is(err, io.ErrUnexpectedEOF):
			if len(rest) >= 2 && len(rest) >= 2+(int(rest[0])<<8|int(rest[1])) {
				t.Fatalf("unexpected EOF but the rest holds a whole frame: % x", rest)
			}
		case errors.Is(err, ErrFrameSize):
			if n := int(rest[0])<<8 | int(rest[1]); n != 0 && n <= lim {
				t.Fatalf("frame size error for length %d, limit %d", n, lim)
			}
		default:
			t.Fatalf("readFrame error = %v", err)
		}
	})
}
