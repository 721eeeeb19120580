package wire

import (
	"io"
	"sync"

	"github.com/quic-go/quic-go/internal/protocol"
	"github.com/quic-go/quic-go/quicvarint"
)

// MaxDatagramSize is the maximum size of a DATAGRAM frame (RFC 9221).
// By setting it to a large value, we allow all datagrams that fit into a QUIC packet.
// The value is chosen such that it can still be encoded as a 2 byte varint.
// This is a var and not a const so it can be set in tests.
var MaxDatagramSize protocol.ByteCount = 16383

// A DatagramFrame is a DATAGRAM frame
type DatagramFrame struct {
	DataLenPresent bool
	Data           []byte

	pooled bool // Data and the frame came from datagramFramePool
	// owner: Data is not a copy but the sender's own buffer, handed back
	// by PutDatagramFrame (Godwit patch: GetOwnedDatagramFrame).
	owner DatagramOwner
}

// DatagramOwner takes back the buffer of a frame from
// GetOwnedDatagramFrame once the frame is done with it (Godwit patch).
type DatagramOwner interface{ DatagramSent() }

// ownedFramePool holds DATAGRAM frames without Data, for
// GetOwnedDatagramFrame.
var ownedFramePool = sync.Pool{New: func() any { return new(DatagramFrame) }}

// GetOwnedDatagramFrame returns a pooled frame whose Data is p itself, not
// a copy (Godwit patch): PutDatagramFrame hands p back to owner.
func GetOwnedDatagramFrame(p []byte, owner DatagramOwner) *DatagramFrame {
	f := ownedFramePool.Get().(*DatagramFrame)
	f.DataLenPresent = true
	f.Data = p
	f.owner = owner
	return f
}

// DisownDatagramFrame returns f, from GetOwnedDatagramFrame and never
// queued, to the pool without handing its Data back: the caller keeps it.
func DisownDatagramFrame(f *DatagramFrame) {
	f.Data, f.owner = nil, nil
	ownedFramePool.Put(f)
}

// datagramFramePool holds DATAGRAM frames with Data of capacity
// protocol.MaxPacketBufferSize, for the send path.
var datagramFramePool = sync.Pool{New: func() any {
	return &DatagramFrame{Data: make([]byte, 0, protocol.MaxPacketBufferSize), pooled: true}
}}

// GetDatagramFrame returns a pooled frame holding a copy of p, or a freshly
// allocated one when p is larger than a pooled buffer.
func GetDatagramFrame(p []byte) *DatagramFrame {
	if len(p) > protocol.MaxPacketBufferSize {
		return &DatagramFrame{DataLenPresent: true, Data: append([]byte(nil), p...)}
	}
	f := datagramFramePool.Get().(*DatagramFrame)
	f.DataLenPresent = true
	f.Data = append(f.Data[:0], p...)
	return f
}

// PutDatagramFrame returns a frame from GetDatagramFrame or
// GetOwnedDatagramFrame to the pool once it was written into a packet
// (DATAGRAM frames are never retransmitted), and an owned frame's Data to
// its owner.
func PutDatagramFrame(f *DatagramFrame) {
	if o := f.owner; o != nil {
		f.Data, f.owner = nil, nil
		ownedFramePool.Put(f)
		o.DatagramSent()
		return
	}
	if f.pooled {
		datagramFramePool.Put(f)
	}
}

// receivedDataPool holds the payload buffers of received DATAGRAM frames
// (Godwit patch): see GetReceivedData and PutReceivedData.
var receivedDataPool = sync.Pool{New: func() any { return new([protocol.MaxPacketBufferSize]byte) }}

// getReceivedData returns a buffer of length n for a received payload,
// from receivedDataPool when n fits.
func getReceivedData(n int) []byte {
	if n > protocol.MaxPacketBufferSize {
		return make([]byte, n)
	}
	return receivedDataPool.Get().(*[protocol.MaxPacketBufferSize]byte)[:n]
}

// PutReceivedData returns the payload of a received DATAGRAM frame to the
// pool. b must not be used afterwards. Slices that did not come from the
// pool whole (another capacity) are left to the garbage collector.
func PutReceivedData(b []byte) {
	if cap(b) == protocol.MaxPacketBufferSize {
		receivedDataPool.Put((*[protocol.MaxPacketBufferSize]byte)(b[:protocol.MaxPacketBufferSize]))
	}
}

func parseDatagramFrame(b []byte, typ FrameType, _ protocol.Version) (*DatagramFrame, int, error) {
	startLen := len(b)
	f := &DatagramFrame{}
	f.DataLenPresent = uint64(typ)&0x1 > 0

	var length uint64
	if f.DataLenPresent {
		var err error
		var l int
		length, l, err = quicvarint.Parse(b)
		if err != nil {
			return nil, 0, replaceUnexpectedEOF(err)
		}
		b = b[l:]
		if length > uint64(len(b)) {
			return nil, 0, io.EOF
		}
	} else {
		length = uint64(len(b))
	}
	f.Data = getReceivedData(int(length))
	copy(f.Data, b)
	return f, startLen - len(b) + int(length), nil
}

func (f *DatagramFrame) Append(b []byte, _ protocol.Version) ([]byte, error) {
	typ := uint8(0x30)
	if f.DataLenPresent {
		typ ^= 0b1
	}
	b = append(b, typ)
	if f.DataLenPresent {
		b = quicvarint.Append(b, uint64(len(f.Data)))
	}
	b = append(b, f.Data...)
	return b, nil
}

// MaxDataLen returns the maximum data length
func (f *DatagramFrame) MaxDataLen(maxSize protocol.ByteCount, version protocol.Version) protocol.ByteCount {
	headerLen := protocol.ByteCount(1)
	if f.DataLenPresent {
		// pretend that the data size will be 1 bytes
		// if it turns out that varint encoding the length will consume 2 bytes, we need to adjust the data length afterwards
		headerLen++
	}
	if headerLen > maxSize {
		return 0
	}
	maxDataLen := maxSize - headerLen
	if f.DataLenPresent && quicvarint.Len(uint64(maxDataLen)) != 1 {
		maxDataLen--
	}
	return maxDataLen
}

// Length of a written frame
func (f *DatagramFrame) Length(_ protocol.Version) protocol.ByteCount {
	length := 1 + protocol.ByteCount(len(f.Data))
	if f.DataLenPresent {
		length += protocol.ByteCount(quicvarint.Len(uint64(len(f.Data))))
	}
	return length
}
