// SPDX-License-Identifier: MIT

package quicconn

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godwit-vpn/godwit/config/key"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// counters are what only quic-go's tracer sees of a connection. Every field
// is written by quic-go's goroutines (run loop, send queue) and read by
// Conn.Stats, so all are atomics.
type counters struct {
	dgramQueueFull atomic.Uint64 // received datagrams dropped: ReceiveDatagram fell behind ("buffer_full")
	dgramTooLarge  atomic.Uint64 // queued datagrams dropped at packing time ("too_large")
	dosDrops       atomic.Uint64 // packets dropped because the connection's receive queue was full
	pto            atomic.Uint32 // current PTO count
	maxPacketSize  atomic.Int64  // current max UDP payload (PMTUD); initialSize at start and after a path change
	initialSize    int64         // the connection's InitialPacketSize; 0 means initialPacketSize
	pathChanges    atomic.Uint64 // times the active path (tuple "") was reassigned
}

// record updates the counters for one event. It is a type switch and
// atomics only. Without a qlog file quic-go does not build the per-packet
// events at all (connTrace.SkipPacketEvents); with one, record sees every
// packet sent and received, and the events it does not count only cost a
// type comparison.
func (c *counters) record(ev qlogwriter.Event) {
	switch e := ev.(type) {
	case qlog.DatagramDropped:
		switch {
		case e.Direction == qlog.DirectionReceiving && e.Trigger == "buffer_full":
			c.dgramQueueFull.Add(1)
		case e.Direction == qlog.DirectionSending && e.Trigger == "too_large":
			c.dgramTooLarge.Add(1)
		}
	case qlog.PacketDropped:
		if e.Trigger == qlog.PacketDropDOSPrevention {
			c.dosDrops.Add(1)
		}
	case qlog.PTOCountUpdated:
		c.pto.Store(e.PTOCount)
	case qlog.MTUUpdated:
		c.maxPacketSize.Store(int64(e.Value))
	case qlog.TupleAssigned:
		// The tuple ID "" is the active path. quic-go resets path MTU
		// discovery to InitialPacketSize right after it moves the active
		// path (client Switch, or the peer's new address).
		if e.TupleID == "" {
			c.pathChanges.Add(1)
			c.maxPacketSize.Store(cmp.Or(c.initialSize, initialPacketSize))
		}
	}
}

// connTrace is the qlogwriter.Trace of one QUIC connection, made by
// Endpoint.newTrace. It always counts; when Config.QlogDir is set it also
// feeds a qlog file. Without a file it is its own Recorder, so the tracer
// adds no allocation of its own, and it tells quic-go (through the patched
// qlogwriter.PacketEventSkipper) not to build the events of every packet,
// none of which it counts: that saved 8 allocations per datagram
// (BenchmarkDatagramTracer).
type connTrace struct {
	counters
	file *qlogFile // nil without QlogDir or when the file could not be created
}

var (
	_ qlogwriter.Trace              = (*connTrace)(nil)
	_ qlogwriter.Recorder           = (*connTrace)(nil)
	_ qlogwriter.PacketEventSkipper = (*connTrace)(nil)
)

// AddProducer returns the recorder quic-go feeds.
func (t *connTrace) AddProducer() qlogwriter.Recorder {
	if t.file == nil {
		return t
	}
	r := t.file.seq.AddProducer()
	if r == nil { // the file was closed already
		return t
	}
	return &teeRecorder{c: &t.counters, r: r}
}

// RecordEvent counts ev.
func (t *connTrace) RecordEvent(ev qlogwriter.Event) { t.record(ev) }

// SkipPacketEvents reports true: quic-go asks the Recorder AddProducer
// returned, and connTrace is that Recorder only when it counts alone. None
// of the events quic-go then leaves out (PacketSent, PacketReceived,
// MetricsUpdated, TimerUpdated set/cancel) is counted. teeRecorder does not
// implement it, so a qlog file gets every event.
func (t *connTrace) SkipPacketEvents() bool { return true }

// Close does nothing: the counters outlive the connection's tracer.
func (t *connTrace) Close() error { return nil }

// teeRecorder counts every event and hands it to the qlog file.
type teeRecorder struct {
	c *counters
	r qlogwriter.Recorder
}

func (t *teeRecorder) RecordEvent(ev qlogwriter.Event) {
	t.c.record(ev)
	t.r.RecordEvent(ev)
}

func (t *teeRecorder) Close() error { return t.r.Close() }

// qlogFile is one connection's qlog file. Its name is
// <time>_<peer>_<key>_<odcid>_<client|server>.sqlog; peer and key are
// "unknown" until the hello exchange, when rename fills them in.
type qlogFile struct {
	seq   *qlogwriter.FileSeq
	dir   string
	stamp string // UTC creation time, 20060102T150405.000Z
	odcid string // original destination connection ID, hex
	pers  string // "client" or "server"

	mu   sync.Mutex // mu guards the following field.
	path string
}

// bufferedFile flushes its buffer before closing the file.
type bufferedFile struct {
	*bufio.Writer
	f *os.File
}

func (b *bufferedFile) Close() error {
	err := b.Flush()
	if cerr := b.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// qlogName builds a qlog file name. peer is reduced to [A-Za-z0-9.-] so the
// name stays one path element with '_' separating its fields.
func qlogName(stamp, peer, key, odcid, pers string) string {
	clean := strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, peer)
	if len(clean) > 64 {
		clean = clean[:64]
	}
	if clean == "" || strings.Trim(clean, ".") == "" {
		clean = "unknown"
	}
	return fmt.Sprintf("%s_%s_%s_%s_%s.sqlog", stamp, clean, key, odcid, pers)
}

// qlogKey is the part of a peer key in qlog file names: the first 8
// characters of its URL-safe base64 (the config's standard base64 with
// '+' as '-' and '/' as '_').
func qlogKey(k key.Public) string {
	return base64.RawURLEncoding.EncodeToString(k[:])[:8]
}

// createQlog creates the qlog file of a new connection in dir and starts
// its writer goroutine, which ends when quic-go closes the trace.
func createQlog(dir string, isClient bool, odcid quic.ConnectionID, peer, key string) (*qlogFile, error) {
	q := &qlogFile{
		dir:   dir,
		stamp: time.Now().UTC().Format("20060102T150405.000Z"),
		odcid: odcid.String(),
		pers:  "server",
	}
	if isClient {
		q.pers = "client"
	}
	q.path = filepath.Join(dir, qlogName(q.stamp, peer, key, q.odcid, q.pers))
	f, err := os.OpenFile(q.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("quicconn: qlog: %w", err)
	}
	q.seq = qlogwriter.NewConnectionFileSeq(&bufferedFile{Writer: bufio.NewWriter(f), f: f}, isClient, odcid)
	go q.seq.Run()
	return q, nil
}

// rename puts peer and key into the file's name. The file stays open;
// rename only changes its directory entry.
func (q *qlogFile) rename(peer, key string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	p := filepath.Join(q.dir, qlogName(q.stamp, peer, key, q.odcid, q.pers))
	if p == q.path {
		return nil
	}
	if err := os.Rename(q.path, p); err != nil {
		return fmt.Errorf("quicconn: qlog: %w", err)
	}
	q.path = p
	return nil
}

// current returns the file's current path.
func (q *qlogFile) current() string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.path
}

// newTrace backs quic.Config.Tracer (see Endpoint.quicConfig): it returns a
// fresh connTrace for every connection quic-go creates, dialed or accepted
// before the handshake. dialPeer is the pinned key of a dialed peer, so
// that its qlog file is named after the peer from the start; nil for an
// accepted connection.
func (e *Endpoint) newTrace(isClient bool, odcid quic.ConnectionID, dialPeer *key.Public) qlogwriter.Trace {
	t := &connTrace{}
	t.initialSize = int64(e.cfg.InitialPacketSize)
	t.maxPacketSize.Store(t.initialSize)
	if e.cfg.QlogDir == "" {
		return t
	}
	peer, kname := "unknown", "unknown"
	if dialPeer != nil {
		kname = qlogKey(*dialPeer)
		if e.cfg.PeerLabel != nil {
			peer = e.cfg.PeerLabel(*dialPeer)
		}
	}
	f, err := createQlog(e.cfg.QlogDir, isClient, odcid, peer, kname)
	if err != nil {
		e.log.Warn("quicconn: no qlog for this connection", "err", err)
		return t
	}
	t.file = f
	return t
}

// nameQlog renames c's qlog file, if any, after the peer: Config.PeerLabel
// if it gives a name, else the name in the peer's Hello.
func (e *Endpoint) nameQlog(c *Conn) {
	if c.trace == nil || c.trace.file == nil {
		return
	}
	peer := ""
	if e.cfg.PeerLabel != nil {
		peer = e.cfg.PeerLabel(c.id.key)
	}
	if peer == "" {
		peer = c.id.name
	}
	if err := c.trace.file.rename(peer, qlogKey(c.id.key)); err != nil {
		c.log.Warn("quicconn: cannot name the qlog file after the peer", "err", err)
		return
	}
	c.log.Debug("quicconn: writing qlog", "file", c.trace.file.current())
}
