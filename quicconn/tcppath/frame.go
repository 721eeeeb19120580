// SPDX-License-Identifier: MIT

package tcppath

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Frame bounds. A frame is a 2-byte big-endian length and then that many
// bytes: one QUIC packet, as it would travel in one UDP datagram.
const (
	// DefaultMaxPacket is the default of ClientConfig.MaxPacket and
	// ServerConfig.MaxPacket: quic-go's largest packet
	// (protocol.MaxPacketBufferSize), which is also the most it reads from
	// a net.PacketConn that is not a *net.UDPConn in one ReadFrom.
	DefaultMaxPacket = 1452
	// MinMaxPacket is the smallest MaxPacket allowed: QUIC's client
	// Initial packets are at least 1200 bytes (RFC 9000 section 14.1), so
	// a smaller limit would refuse every handshake.
	MinMaxPacket = 1200
	// maxFrameLen is what the 2-byte length can say.
	maxFrameLen = 1<<16 - 1
	// frameHeaderLen is the length prefix.
	frameHeaderLen = 2
)

// ErrFrameSize is the error, wrapped with the length, for a frame whose
// length is 0 or above the receiver's MaxPacket. The receiver closes that
// TCP connection, and only that one: the stream cannot be trusted to be
// at a frame boundary any more.
var ErrFrameSize = errors.New("frame length out of range")

// writeFrame appends the frame for packet p to w: its length, big-endian,
// then p. The caller checks that 0 < len(p) <= maxFrameLen. It does not
// allocate; the frame reaches the connection when w is flushed (or fills).
func writeFrame(w *bufio.Writer, p []byte) error {
	n := len(p)
	if err := w.WriteByte(byte(n >> 8)); err != nil {
		return err
	}
	if err := w.WriteByte(byte(n)); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// readFrame reads the next frame from r into dst and returns how many
// bytes it copied: the packet's length, or len(dst) when the packet is
// longer (the rest is discarded, as a UDP socket truncates a datagram
// that does not fit the reader's buffer).
//
// A frame is consumed only once all of it is buffered, so an error (a
// read deadline, say) never leaves r inside a frame: after a timeout the
// next call reads the same frame again. For that, r's buffer must hold
// frameHeaderLen+limit bytes. A frame of length 0 or above limit is an error
// wrapping [ErrFrameSize] and is not consumed. At the end of the stream,
// readFrame returns io.EOF between frames and io.ErrUnexpectedEOF inside
// one. It does not allocate, except for the error of a bad length.
func readFrame(r *bufio.Reader, limit int, dst []byte) (int, error) {
	hdr, err := r.Peek(frameHeaderLen)
	if err != nil {
		if err == io.EOF && len(hdr) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	n := int(hdr[0])<<8 | int(hdr[1])
	if n == 0 || n > limit {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameSize, n, limit)
	}
	frame, err := r.Peek(frameHeaderLen + n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	c := copy(dst, frame[frameHeaderLen:])
	_, _ = r.Discard(frameHeaderLen + n) // cannot fail: the bytes are buffered
	return c, nil
}

// readerSize is the buffer size of a link's bufio.Reader for frames of up
// to limit bytes: at least one whole TLS record (so that one fill takes a
// record's worth of frames) and at least one whole frame (readFrame peeks
// it).
func readerSize(limit int) int {
	return max(maxTLSRecord, frameHeaderLen+limit)
}

// maxTLSRecord is the most plaintext one TLS record carries (RFC 8446
// section 5.1); crypto/tls hands over at most one record per Read.
const maxTLSRecord = 1 << 14
