package boltstore

import (
	"bytes"

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

// migrateFormat1 moves the KeyPackages of a format-1 file into the flat kp
// bucket, in the transaction that opens the file: a crash leaves the file
// in format 1. Sequence numbers, and so the init_keys entries that point at
// them, stay as they are.
func migrateFormat1(tx *bolt.Tx) error {
	if err := markSuperseded(tx); err != nil {
		return err
	}
	old := tx.Bucket([]byte(v1KeyPackages))
	if old == nil {
		return nil
	}
	kpb := kpBucket(tx)
	if err := kpb.SetSequence(old.Sequence()); err != nil {
		return err
	}
	err := old.ForEachBucket(func(sk []byte) error {
		if len(sk) < 9 || len(sk) > 8+255 {
			return errCorrupt
		}
		ksb := old.Bucket(sk)
		sp, err := openSupply(kpb, kpBase(sk))
		if err != nil {
			return err
		}
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
		return sp.save()
	})
	if err != nil {
		return err
	}
	return tx.DeleteBucket([]byte(v1KeyPackages))
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
