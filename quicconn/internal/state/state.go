// SPDX-License-Identifier: MIT

// Package state is what a quicconn Endpoint keeps about sessions: the keys
// and client session tickets that survive a restart, in the state
// directory ([Load], [SessionCache]), and the listener's book of
// single-use 0-RTT tickets, which deliberately does not ([TicketBook]). It
// is internal to quicconn.
package state

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/godwit-vpn/godwit/config/key"

	"github.com/quic-go/quic-go"
)

// Files in the state directory. Every file is written with mode 0600 to a
// temporary file that is synced and then renamed over the old one, so a
// crash leaves either the old or the new content.
const (
	resetKeyFile   = "reset.key"   // quic.StatelessResetKey: 32 bytes
	tokenKeyFile   = "token.key"   // quic.TokenGeneratorKey: 32 bytes
	ticketKeysFile = "ticket.keys" // TLS session-ticket keys: 1..maxTicketKeys x 32 bytes, current first
	ticketsDir     = "tickets"     // client session tickets, one file per peer key (base64url)
)

// maxTicketKeys bounds ticket.keys: the current key plus older ones that
// still decrypt tickets (rotation keeps the current and the previous one).
const maxTicketKeys = 8

// State is what an Endpoint keeps across restarts: the keys that let a
// restarted node reset its old connections and accept its old session
// tickets, and the client session tickets that let it dial with 0-RTT.
// It is immutable after Load, except for the session cache, which is safe
// for concurrent use.
type State struct {
	resetKey   quic.StatelessResetKey
	tokenKey   quic.TokenGeneratorKey
	TicketKeys [][32]byte // TLS session-ticket keys, current first; never empty
	Sessions   *SessionCache
}

// Load loads the keys and tickets in dir, creating what is missing (the
// directory with mode 0700, the key files with random keys). An empty dir
// keeps everything in memory, with fresh random keys. A key file that
// cannot be read or has the wrong size is an error that names the file; a
// ticket file that does not parse is removed and logged to log.
func Load(dir string, log *slog.Logger) (*State, error) {
	s := &State{}
	if dir == "" {
		for _, k := range [][]byte{s.resetKey[:], s.tokenKey[:]} {
			if _, err := rand.Read(k); err != nil {
				return nil, fmt.Errorf("quicconn: state: random key: %w", err)
			}
		}
		var tk [32]byte
		if _, err := rand.Read(tk[:]); err != nil {
			return nil, fmt.Errorf("quicconn: state: random key: %w", err)
		}
		s.TicketKeys = [][32]byte{tk}
		s.Sessions = newSessionCache("", log)
		return s, nil
	}
	if err := os.MkdirAll(filepath.Join(dir, ticketsDir), 0o700); err != nil {
		return nil, fmt.Errorf("quicconn: state dir: %w", err)
	}
	b, err := loadKeyFile(filepath.Join(dir, resetKeyFile), 32, 1, log)
	if err != nil {
		return nil, err
	}
	copy(s.resetKey[:], b)
	if b, err = loadKeyFile(filepath.Join(dir, tokenKeyFile), 32, 1, log); err != nil {
		return nil, err
	}
	copy(s.tokenKey[:], b)
	if b, err = loadKeyFile(filepath.Join(dir, ticketKeysFile), 32, maxTicketKeys, log); err != nil {
		return nil, err
	}
	for k := range slices.Chunk(b, 32) {
		s.TicketKeys = append(s.TicketKeys, [32]byte(k))
	}
	s.Sessions = newSessionCache(filepath.Join(dir, ticketsDir), log)
	s.Sessions.load()
	return s, nil
}

// Configure gives tr the persistent keys. Every Transport of an Endpoint
// must get the same keys, before its first use.
func (s *State) Configure(tr *quic.Transport) {
	tr.StatelessResetKey = &s.resetKey
	tr.TokenGeneratorKey = &s.tokenKey
}

// loadKeyFile reads path, which must hold between 1 and max keys of size
// bytes each. A missing file is created with one random key. A file that
// others may read gets mode 0600 (with a warning).
func loadKeyFile(path string, size, max int, log *slog.Logger) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b = make([]byte, size)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("quicconn: state: random key for %s: %w", path, err)
		}
		if err := writeFileAtomic(path, b); err != nil {
			return nil, err
		}
		log.Info("quicconn: created a new key", "file", path)
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("quicconn: state: %w", err)
	}
	if len(b) == 0 || len(b)%size != 0 || len(b)/size > max {
		want := fmt.Sprintf("%d", size)
		if max > 1 {
			want = fmt.Sprintf("a multiple of %d, at most %d", size, size*max)
		}
		return nil, fmt.Errorf("quicconn: state: key file %s has %d bytes, want %s (remove it to make a new key)", path, len(b), want)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("quicconn: key file was readable by others, setting mode 0600", "file", path, "mode", fi.Mode().Perm().String())
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("quicconn: state: %w", err)
		}
	}
	return b, nil
}

// writeFileAtomic replaces path with data (mode 0600): temp file in the
// same directory, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("quicconn: state: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("quicconn: state: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("quicconn: state: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("quicconn: state: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("quicconn: state: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("quicconn: state: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: the rename is durable once the directory is
		d.Close()
	}
	return nil
}

// Ticket file format (tickets/<peer key in base64url>), version 1:
//
//	magic    8 bytes "GWTICKET"
//	version  u8 = 1
//	ticket   u16 length | bytes  (the server's opaque ticket)
//	state    u32 length | bytes  (tls.SessionState.Bytes; Go-version specific)
//
// Nothing may follow. The state holds the resumption secret: the file is
// as secret as a private key.
const (
	ticketMagic   = "GWTICKET"
	ticketVersion = 1
	// maxTicketState bounds the state part; real ones are about 1 KiB
	// (they carry the server's certificate).
	maxTicketState = 64 << 10
)

// errTicketFile is wrapped by every parseTicketFile error.
var errTicketFile = errors.New("quicconn: bad ticket file")

// appendTicketFile appends the encoding of ticket and st to b.
func appendTicketFile(b, ticket, st []byte) ([]byte, error) {
	if len(ticket) > 0xffff || len(st) > maxTicketState {
		return nil, fmt.Errorf("%w: ticket %d bytes, state %d bytes", errTicketFile, len(ticket), len(st))
	}
	b = append(b, ticketMagic...)
	b = append(b, ticketVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(ticket)))
	b = append(b, ticket...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(st)))
	return append(b, st...), nil
}

// parseTicketFile splits a ticket file into its ticket and state. The
// returned slices alias b.
func parseTicketFile(b []byte) (ticket, st []byte, err error) {
	rest, ok := bytes.CutPrefix(b, []byte(ticketMagic))
	if !ok {
		return nil, nil, fmt.Errorf("%w: no magic", errTicketFile)
	}
	if len(rest) < 1 || rest[0] != ticketVersion {
		return nil, nil, fmt.Errorf("%w: unknown version", errTicketFile)
	}
	rest = rest[1:]
	if len(rest) < 2 {
		return nil, nil, fmt.Errorf("%w: short", errTicketFile)
	}
	n := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < n {
		return nil, nil, fmt.Errorf("%w: short ticket", errTicketFile)
	}
	ticket, rest = rest[:n], rest[n:]
	if len(rest) < 4 {
		return nil, nil, fmt.Errorf("%w: short", errTicketFile)
	}
	m := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if m > maxTicketState || uint64(len(rest)) != uint64(m) {
		return nil, nil, fmt.Errorf("%w: state length %d, %d bytes left", errTicketFile, m, len(rest))
	}
	return ticket, rest, nil
}

// SessionCache is the client's tls.ClientSessionCache: an in-memory LRU
// that also writes every ticket it gets to the state directory (unless
// the State lives in memory), so that a restarted node dials with 0-RTT.
// Its cache keys are the ServerNames made by [ServerName], from which the
// file name (the peer key) follows. It is safe for concurrent use:
// crypto/tls calls it from quic-go's goroutines.
type SessionCache struct {
	mem tls.ClientSessionCache
	dir string // "" keeps tickets in memory only
	log *slog.Logger
}

var _ tls.ClientSessionCache = (*SessionCache)(nil)

func newSessionCache(dir string, log *slog.Logger) *SessionCache {
	return &SessionCache{mem: tls.NewLRUClientSessionCache(64), dir: dir, log: log}
}

// Get returns the cached session for key.
func (c *SessionCache) Get(key string) (*tls.ClientSessionState, bool) { return c.mem.Get(key) }

// Put caches cs under key and writes it to disk; a nil cs removes both.
func (c *SessionCache) Put(key string, cs *tls.ClientSessionState) {
	c.mem.Put(key, cs)
	if c.dir == "" {
		return
	}
	peer, ok := peerOfServerName(key)
	if !ok {
		return
	}
	path := filepath.Join(c.dir, ticketFileName(peer))
	if cs == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("quicconn: cannot remove session ticket", "file", path, "err", err)
		}
		return
	}
	ticket, st, err := cs.ResumptionState()
	if err != nil || st == nil {
		return
	}
	sb, err := st.Bytes()
	if err != nil {
		c.log.Warn("quicconn: cannot encode session ticket", "err", err)
		return
	}
	b, err := appendTicketFile(nil, ticket, sb)
	if err == nil {
		err = writeFileAtomic(path, b)
	}
	if err != nil {
		c.log.Warn("quicconn: cannot save session ticket", "file", path, "err", err)
		return
	}
	c.log.Debug("quicconn: saved session ticket", "file", path, "early_data", st.EarlyData)
}

// load fills the memory cache from dir. A file that does not parse (a
// damaged file, or one written by another Go version) is removed and
// logged; load never fails.
func (c *SessionCache) load() {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		c.log.Warn("quicconn: cannot read session tickets", "dir", c.dir, "err", err)
		return
	}
	for _, ent := range ents {
		name := ent.Name()
		if strings.HasPrefix(name, ".") || !ent.Type().IsRegular() {
			continue // temp files of an interrupted write
		}
		path := filepath.Join(c.dir, name)
		if err := c.loadFile(name, path); err != nil {
			c.log.Warn("quicconn: removing unusable session ticket", "file", path, "err", err)
			if err := os.Remove(path); err != nil {
				c.log.Warn("quicconn: cannot remove session ticket", "file", path, "err", err)
			}
		}
	}
}

func (c *SessionCache) loadFile(name, path string) error {
	k, err := base64.RawURLEncoding.DecodeString(name)
	if err != nil || len(k) != 32 {
		return fmt.Errorf("%w: name is not a peer key", errTicketFile)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ticket, sb, err := parseTicketFile(b)
	if err != nil {
		return err
	}
	st, err := tls.ParseSessionState(sb)
	if err != nil {
		return fmt.Errorf("%w: %w", errTicketFile, err)
	}
	cs, err := tls.NewResumptionState(ticket, st)
	if err != nil {
		return fmt.Errorf("%w: %w", errTicketFile, err)
	}
	c.mem.Put(ServerName(key.Public(k)), cs)
	c.log.Debug("quicconn: loaded session ticket", "file", path, "early_data", st.EarlyData)
	return nil
}

// TicketFile returns the file in the state directory dir that holds the
// session ticket for the peer with key peer.
func TicketFile(dir string, peer key.Public) string {
	return filepath.Join(dir, ticketsDir, ticketFileName(peer))
}

// ticketFileName is a ticket file's name: the peer key in URL-safe base64.
func ticketFileName(peer key.Public) string {
	return base64.RawURLEncoding.EncodeToString(peer[:])
}

var nameEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// ServerName is the TLS ServerName a client dials the peer with key peer
// under: a DNS-safe name derived from the key (52 characters of base32,
// one label), the session cache's key, stable across address and DNS
// changes.
func ServerName(peer key.Public) string {
	return strings.ToLower(nameEncoding.EncodeToString(peer[:])) + ".godwit"
}

// peerOfServerName inverts ServerName.
func peerOfServerName(name string) (key.Public, bool) {
	label, ok := strings.CutSuffix(name, ".godwit")
	if !ok {
		return key.Public{}, false
	}
	b, err := nameEncoding.DecodeString(strings.ToUpper(label))
	if err != nil || len(b) != 32 {
		return key.Public{}, false
	}
	return key.Public(b), true
}
