package p2core

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The KeyPackage rules, decided here once for every backend. A backend
// keeps only how it finds, deletes and counts atomically; what may be
// handed out, which init keys stay taken and when an upload is refused
// are these functions' decisions, and backends call them.

// InitKeyHeld reports whether an init key already recorded blocks an
// upload of the same init key at now. The init key of a stored KeyPackage
// (regular or last resort, expired or not, until a purge deletes it) is
// always held; that of a handed-out KeyPackage (a claimed regular one, or
// a used last resort that was replaced or whose session ended) is held
// until its NotAfter.
func InitKeyHeld(handedOut bool, notAfter, now time.Time) bool {
	return !handedOut || notAfter.After(now)
}

// LastResortStaysHeld reports whether the init key of a last resort that
// is being replaced or removed stays held (as handed out, until notAfter):
// only one that was handed out since it was set and has not expired.
func LastResortStaysHeld(used bool, notAfter, now time.Time) bool {
	return used && notAfter.After(now)
}

// Claimable reports whether a KeyPackage of cipher suite kpSuite whose
// NotAfter is notAfter may be handed out at now by a claim for suite (0:
// any suite). Both regular KeyPackages and last resorts must be.
func Claimable(notAfter time.Time, kpSuite, suite uint16, now time.Time) bool {
	return notAfter.After(now) && (suite == 0 || kpSuite == suite)
}

// Live reports whether a KeyPackage whose NotAfter is notAfter counts at
// now: towards the cap, Remaining and KeyPackageStatus.Available.
func Live(notAfter, now time.Time) bool { return notAfter.After(now) }

// ErrMixedSessions is returned for an AddKeyPackages call whose
// KeyPackages belong to more than one session: a caller bug, matching no
// refusal sentinel.
var ErrMixedSessions = errors.New("p2core: KeyPackages of more than one session in one call")

// CheckUpload applies the rules an upload of kps (and a last resort lr,
// which may be nil) must meet before the Store looks at anything stored:
// all of one session (ErrMixedSessions), and no init key repeated among
// them (ErrDuplicateKeyPackage). It returns how many of kps are live at
// now, the number the cap counts.
func CheckUpload(kps []KeyPackage, lr *KeyPackage, now time.Time) (fresh int, err error) {
	seen := make(map[string]struct{}, len(kps)+1)
	check := func(i int, kp *KeyPackage) error {
		if kp.UserID != kps[0].UserID || kp.SessionID != kps[0].SessionID {
			return ErrMixedSessions
		}
		if _, dup := seen[string(kp.InitKey)]; dup {
			return fmt.Errorf("KeyPackage %d: init key repeated in the upload: %w", i, ErrDuplicateKeyPackage)
		}
		seen[string(kp.InitKey)] = struct{}{}
		return nil
	}
	for i := range kps {
		if err := check(i, &kps[i]); err != nil {
			return 0, err
		}
		if Live(kps[i].NotAfter, now) {
			fresh++
		}
	}
	if lr != nil && len(kps) > 0 {
		if err := check(len(kps), lr); err != nil {
			return 0, err
		}
	}
	return fresh, nil
}

// CheckKeyPackageCap refuses an upload that would make a user hold more
// than max live regular KeyPackages, having have and adding fresh (max <=
// 0 allows none). Backends call it after every duplicate check, so a
// duplicate wins over the cap.
func CheckKeyPackageCap(have, fresh, max int) error {
	if have+fresh > max {
		return fmt.Errorf("the user would hold %d KeyPackages, more than %d: %w", have+fresh, max, ErrTooManyKeyPackages)
	}
	return nil
}

// CheckSessionCap refuses a new session of a user who has have sessions
// already, when max (<= 0 allows none) would be exceeded.
func CheckSessionCap(have, max int) error {
	if have+1 > max {
		return fmt.Errorf("the user has %d sessions, the most allowed is %d: %w", have, max, ErrTooManySessions)
	}
	return nil
}

// ClaimSource is what ClaimFrom needs of a backend, inside the one atomic
// step of a claim for one user. Its methods find, delete and count; every
// decision is ClaimFrom's, or that of the rule functions it is told to
// call.
type ClaimSource interface {
	// TakeOldest takes, from each of the user's sessions that has one and
	// has not ended under ends, the oldest (first uploaded) regular
	// KeyPackage that Claimable allows for suite at now: it is deleted in
	// this step and its init key stays held until its NotAfter, as handed
	// out. A session has ended when ends.Over says so of its stored
	// Session and current ID-Cert (a session the Store holds no Session
	// of has not); an ended session is left out of taken and rest alike,
	// and nothing of it changes. Each result's Remaining is the session's
	// live regular KeyPackages after the claim. rest lists the user's
	// other sessions that store anything and have not ended.
	TakeOldest(suite uint16, now time.Time, ends SessionEnds) (taken []ClaimedKeyPackage, rest []SessionID, err error)
	// LastResort returns the session's stored last resort (found false
	// when it has none).
	LastResort(session SessionID) (kp KeyPackage, found bool, err error)
	// MarkLastResortUsed records that the session's last resort was
	// handed out.
	MarkLastResortUsed(session SessionID) error
	// Available counts the session's live regular KeyPackages at now.
	Available(session SessionID, now time.Time) (int, error)
}

// ClaimFrom is the claim rule (KeyPackageStore.ClaimKeyPackages): each of
// the user's sessions that has not ended under ends gives its oldest
// claimable regular KeyPackage, deleted; such a session with none gives
// its last resort if Claimable allows it, kept and marked used; sessions
// with neither, and ended ones, are left out. The result is ordered by
// SessionID.
func ClaimFrom(src ClaimSource, suite uint16, now time.Time, ends SessionEnds) ([]ClaimedKeyPackage, error) {
	out, rest, err := src.TakeOldest(suite, now, ends)
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []ClaimedKeyPackage{}
	}
	for _, sid := range rest {
		lr, found, err := src.LastResort(sid)
		if err != nil {
			return nil, err
		}
		if !found || !Claimable(lr.NotAfter, lr.CipherSuite, suite, now) {
			continue
		}
		if err := src.MarkLastResortUsed(sid); err != nil {
			return nil, err
		}
		n, err := src.Available(sid, now)
		if err != nil {
			return nil, err
		}
		out = append(out, ClaimedKeyPackage{KeyPackage: lr, LastResort: true, Remaining: n})
	}
	slices.SortFunc(out, func(a, b ClaimedKeyPackage) int { return strings.Compare(string(a.SessionID), string(b.SessionID)) })
	return out, nil
}
