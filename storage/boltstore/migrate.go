package boltstore

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Names of format 1, which kept each session's KeyPackages in a bucket of
// its own: keypackages / user(8)|session / {q, x, n, lr, u}.
const (
	v1KeyPackages = "keypackages"
	v1Queue       = "q"
	v1LR          = "lr"
	v1LRUsed      = "u"
)

// sessionsPerStep bounds how many sessions one transaction of the format-1
// conversion moves, so that its memory stays bounded however large the
// file is. A variable for tests.
var sessionsPerStep = 2000

// convertOldFormats converts a format-1 or format-2 file to the current
// format before Open's initBuckets sees it, and does nothing to other
// files.
//
// Format 1 to 2 moves the KeyPackages into the flat kp bucket a few
// thousand sessions per transaction, each session with the deletion of its
// old bucket, so a crash leaves every session in one place or the other
// and the next Open goes on where it stopped; the format changes in the
// last transaction, with the superseded marks. Sequence numbers, and so
// the init_keys entries that point at them, stay as they are.
//
// Format 2 to 3 changes no record: a format-2 header is a format-3 header
// without heads, and a format-2 file has no spent records. Only the
// version changes, so that format-2 code refuses the file from then on.
func convertOldFormats(db *bolt.DB) error {
	format := uint64(0)
	err := db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket([]byte(bMeta)); meta != nil {
			if v := meta.Get([]byte(kFormat)); len(v) == 8 {
				format = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch format {
	case 1:
		for done := false; !done; {
			err := db.Update(func(tx *bolt.Tx) (err error) {
				done, err = convertStep(tx, sessionsPerStep)
				return err
			})
			if err != nil {
				return fmt.Errorf("converting the file from format 1: %w", err)
			}
		}
	case 2:
		err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(bMeta)).Put([]byte(kFormat), u64(formatVersion))
		})
		if err != nil {
			return fmt.Errorf("converting the file from format 2: %w", err)
		}
	}
	return nil
}

// convertStep moves up to max sessions of a format-1 file in tx and, when
// none is left, finishes the conversion and reports done.
func convertStep(tx *bolt.Tx, max int) (done bool, err error) {
	kpb, err := tx.CreateBucketIfNotExists([]byte(bKP))
	if err != nil {
		return false, err
	}
	if _, err := tx.CreateBucketIfNotExists([]byte(bKPSessions)); err != nil {
		return false, err
	}
	old := tx.Bucket([]byte(v1KeyPackages))
	if old == nil {
		return true, finishFormat1(tx)
	}
	if err := kpb.SetSequence(old.Sequence()); err != nil {
		return false, err
	}
	var batch [][]byte
	c := old.Cursor()
	for k, v := c.First(); k != nil && len(batch) < max; k, v = c.Next() {
		if v != nil {
			return false, errCorrupt // format 1 holds only session buckets here
		}
		batch = append(batch, bytes.Clone(k))
	}
	for _, sk := range batch {
		if err := moveSession(tx, old, sk); err != nil {
			return false, err
		}
	}
	if len(batch) < max {
		if err := tx.DeleteBucket([]byte(v1KeyPackages)); err != nil {
			return false, err
		}
		return true, finishFormat1(tx)
	}
	return false, nil
}

// moveSession moves one session's format-1 bucket into the kp buckets and
// deletes it.
func moveSession(tx *bolt.Tx, old *bolt.Bucket, sk []byte) error {
	if len(sk) < 9 || len(sk) > 8+255 {
		return errCorrupt
	}
	ksb := old.Bucket(sk)
	sp, err := openSupply(tx, kpBase(sk))
	if err != nil {
		return err
	}
	kpb := sp.b
	if q := ksb.Bucket([]byte(v1Queue)); q != nil {
		err := q.ForEach(func(k, v []byte) error {
			if len(k) != 10 || len(v) < 8 {
				return errCorrupt
			}
			sp.noteAfter(v[:8])
			sp.h.count++
			return kpb.Put(kpKey(sp.base, tagQueue, k), bytes.Clone(v))
		})
		if err != nil {
			return err
		}
	}
	if lr := ksb.Get([]byte(v1LR)); lr != nil {
		if err := kpb.Put(kpKey(sp.base, tagLastResort), bytes.Clone(lr)); err != nil {
			return err
		}
		sp.h.lrUsed = ksb.Get([]byte(v1LRUsed)) != nil
	}
	if err := sp.save(); err != nil {
		return err
	}
	return old.DeleteBucket(sk)
}

// finishFormat1 adds what else formats 2 and 3 keep and records the
// current format.
func finishFormat1(tx *bolt.Tx) error {
	if err := markSuperseded(tx); err != nil {
		return err
	}
	return tx.Bucket([]byte(bMeta)).Put([]byte(kFormat), u64(formatVersion))
}

// markSuperseded gives every user with certs the superseded mark that
// format 2 keeps in cert_current.
func markSuperseded(tx *bolt.Tx) error {
	marks := map[string][]byte{}
	err := tx.Bucket([]byte(bCerts)).ForEach(func(k, v []byte) error {
		if len(k) < 8 {
			return errCorrupt
		}
		c, err := decodeCert(v)
		if err != nil {
			return err
		}
		at := make([]byte, 8)
		if !c.SupersededAt.IsZero() {
			at = timeKey(c.SupersededAt)
		}
		if old, ok := marks[string(k[:8])]; !ok || bytes.Compare(at, old) > 0 {
			marks[string(k[:8])] = at
		}
		return nil
	})
	if err != nil {
		return err
	}
	current := tx.Bucket([]byte(bCertCurrent))
	for user, at := range marks {
		if err := current.Put([]byte(user), at); err != nil {
			return err
		}
	}
	return nil
}
