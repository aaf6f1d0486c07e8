package boltstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// Layout. Top-level buckets (fixed-width integers are big-endian; times
// are microseconds since the Unix epoch as a sign-flipped uint64, so they
// sort as bytes; "|" is concatenation):
//
//	meta            "format" -> version
//	tokens          hash(32) -> token
//	tokens_by_user  user(8)|hash(32) -> ""
//	settings        'k'|key -> 'v'|value
//	sessions        user(8)|session -> session record (with arrival seq)
//	session_tokens  hash(32) -> user(8)|session
//	fids            'f'|fid -> user(8)
//	certs           user(8)|issued(8)|serial -> cert record
//	cert_serials    's'|serial -> key in certs
//	cert_current    user(8)|session -> key in certs
//	                user(8) -> time(8): no cert of the user superseded after it
//	server_keys     seq(8) -> server key record
//	kp_sessions     base -> session header: count(8) minNotAfter(8) lrUsed(1)
//	                        [suite(2) head(8)]...
//	kp              base|'l' -> last resort record
//	                base|'q'|suite(2)|seq(8) -> KeyPackage (oldest first per suite)
//	                where base = user(8)|len(session)(1)|session
//	init_keys       'i'|initKey -> notAfter(8)|kind(1)|seq(8)|suite(2)|user(8)|session
//	init_key_expiry notAfter(8)|initKey -> ""
//
// All of a session's KeyPackages sit in one flat bucket and their small
// headers together in another. A claim moves its suite's head in the
// header past the record it hands out and leaves the record (spent) for
// the session's next upload to delete with the others, so it writes only
// the header page, which the other claims of its commit mostly share. An
// init_keys entry says where its KeyPackage is stored (kind 'r': the
// regular KeyPackage at suite|seq of the session, kind 'l': the session's
// last resort). When that KeyPackage is no longer there, or is spent, it
// was handed out, and the entry blocks the init key until notAfter. Purges
// walk init_key_expiry. Sequence numbers come from the kp bucket and are
// never reused.
//
// This is format 1, the layout of the first release.
const (
	bMeta          = "meta"
	bTokens        = "tokens"
	bTokensByUser  = "tokens_by_user"
	bSettings      = "settings"
	bSessions      = "sessions"
	bSessionTokens = "session_tokens"
	bFIDs          = "fids"
	bCerts         = "certs"
	bCertSerials   = "cert_serials"
	bCertCurrent   = "cert_current"
	bServerKeys    = "server_keys"
	bKP            = "kp"
	bKPSessions    = "kp_sessions"
	bInitKeys      = "init_keys"
	bInitKeyExpiry = "init_key_expiry"

	kFormat = "format"
)

// Kinds of init_keys entries.
const (
	kindRegular    byte = 'r'
	kindLastResort byte = 'l'
)

func topBuckets() []string {
	return []string{bMeta, bTokens, bTokensByUser, bSettings, bSessions, bSessionTokens, bFIDs,
		bCerts, bCertSerials, bCertCurrent, bServerKeys, bKP, bKPSessions, bInitKeys, bInitKeyExpiry}
}

// migrate creates the layout in a new file (at the latest version), or
// brings an existing file from its version to the latest one migration by
// migration, each in a transaction of its own with the new version, so a
// crash leaves the file at one version or the next. It refuses a file of
// a version it does not know.
func migrate(db *bolt.DB, history []migration) error {
	latest := uint64(1 + len(history))
	var have uint64
	err := db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists([]byte(bMeta))
		if err != nil {
			return err
		}
		v := meta.Get([]byte(kFormat))
		if v == nil {
			have = latest
			for _, name := range topBuckets() {
				if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
					return err
				}
			}
			return meta.Put([]byte(kFormat), u64(latest))
		}
		if len(v) != 8 {
			return fmt.Errorf("file has an unreadable format version %x", v)
		}
		have = binary.BigEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return err
	}
	if have < 1 || have > latest {
		return fmt.Errorf("file has format %d, which this boltstore does not know (it reads 1 to %d): upgrade p2kit", have, latest)
	}
	for _, m := range history[have-1:] {
		err := db.Update(func(tx *bolt.Tx) error {
			if err := m.step(tx); err != nil {
				return err
			}
			return tx.Bucket([]byte(bMeta)).Put([]byte(kFormat), u64(m.version))
		})
		if err != nil {
			return fmt.Errorf("converting the file to format %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

var errCorrupt = errors.New("boltstore: corrupt record")

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// micros returns t as it is stored: sign-flipped microseconds since the
// Unix epoch, which sort as unsigned big-endian bytes.
func micros(t time.Time) uint64 { return uint64(t.UnixMicro()) ^ (1 << 63) }

func timeKey(t time.Time) []byte { return u64(micros(t)) }

func fromMicros(v uint64) time.Time { return time.UnixMicro(int64(v ^ (1 << 63))).UTC() }

// trunc returns t as it would come back from the store, so comparisons
// with stored times are made at stored precision.
func trunc(t time.Time) time.Time { return fromMicros(micros(t)) }

// cat concatenates parts into a new slice (bbolt keeps keys and values
// until the transaction ends, so every key gets its own memory).
func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func userSessionKey(user p2core.UserID, sid p2core.SessionID) []byte {
	return cat(u64(uint64(user)), []byte(sid))
}

func initKeyKey(initKey []byte) []byte { return cat([]byte{'i'}, initKey) }

// enc builds a record.
type enc struct{ b []byte }

func (e *enc) u64(v uint64)     { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) u16(v uint16)     { e.b = binary.BigEndian.AppendUint16(e.b, v) }
func (e *enc) time(t time.Time) { e.u64(micros(t)) }
func (e *enc) bytes(b []byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(b)))
	e.b = append(e.b, b...)
}
func (e *enc) str(s string)       { e.bytes([]byte(s)) }
func (e *enc) fixed32(h [32]byte) { e.b = append(e.b, h[:]...) }

// dec reads a record. Every read copies: the source is bbolt's memory,
// valid only until its transaction ends. The first error sticks.
type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || n < 0 || n > len(d.b) {
		d.err = errCorrupt
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) u64() uint64 {
	p := d.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *dec) time() time.Time { return fromMicros(d.u64()) }

func (d *dec) fixed32() (h [32]byte) {
	copy(h[:], d.take(32))
	return h
}

// view returns the next length-prefixed field without copying.
func (d *dec) view() []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = errCorrupt
		return nil
	}
	d.b = d.b[k:]
	return d.take(int(n))
}

// bytes returns a copy of the next length-prefixed field; empty is nil.
func (d *dec) bytes() []byte {
	p := d.view()
	if len(p) == 0 {
		return nil
	}
	return bytes.Clone(p)
}

func (d *dec) str() string { return string(d.view()) }

// done reports a decoding error or trailing bytes.
func (d *dec) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = errCorrupt
	}
	return d.err
}
