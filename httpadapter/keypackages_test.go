package httpadapter_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// certified gives u an ID-Cert for a fresh Ed25519 key and returns a
// KeyPackage builder signing with that key.
func certified(t *testing.T, e *env, u *user) *mlstest.Builder {
	t.Helper()
	k := clientKey(t, string(u.fid))
	if _, err := u.c.IssueIDCert(ctx, k.Armored); err != nil {
		t.Fatal(err)
	}
	b := mlstest.NewEd25519(k.Signer)
	b.Now = e.clock.Now
	b.Identity = []byte(u.fid)
	return b
}

func build(t *testing.T, b *mlstest.Builder, n int) [][]byte {
	t.Helper()
	out := make([][]byte, n)
	for i := range out {
		kp, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = kp
	}
	return out
}

func TestKeyPackagesNeedAnIDCert(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	kps := build(t, mlstest.NewEd25519(ed25519.NewKeyFromSeed(make([]byte, 32))), 1)
	apiErr(t, alice.c.UploadKeyPackages(ctx, kps), 409, "P2CORE_NO_ID_CERT")
	apiErr(t, alice.c.SetLastResort(ctx, kps[0]), 409, "P2CORE_NO_ID_CERT")
}

func TestClaimHandsOutOldestOnceThenLastResort(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	bob := e.login(102, "bob", false)
	b := certified(t, e, alice)
	kps := build(t, b, 3)
	if err := alice.c.UploadKeyPackages(ctx, kps[:2]); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Second)
	if err := alice.c.UploadKeyPackages(ctx, kps[2:]); err != nil {
		t.Fatal(err)
	}
	lr := build(t, b, 1)[0]
	if err := alice.c.SetLastResort(ctx, lr); err != nil {
		t.Fatal(err)
	}
	st, err := alice.c.KeyPackageStatus(ctx)
	if err != nil || st.Available != 3 || !st.LastResort || st.LastResortUsed || !st.Low {
		t.Fatalf("status %+v, %v", st, err)
	}
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		got, err := bob.c.ClaimKeyPackages(ctx, 101, 0)
		if err != nil || len(got) != 1 {
			t.Fatalf("claim %d: %d packages, %v", i, len(got), err)
		}
		if seen[string(got[0])] || bytes.Equal(got[0], lr) {
			t.Fatalf("claim %d returned a repeat or the last resort", i)
		}
		seen[string(got[0])] = true
	}
	for _, kp := range kps {
		if !seen[string(kp)] {
			t.Fatal("an uploaded KeyPackage was not handed out byte-identical")
		}
	}
	for i := 0; i < 2; i++ {
		got, err := bob.c.ClaimKeyPackages(ctx, 101, 0)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], lr) {
			t.Fatalf("exhausted claim %d: want the last resort (%d, %v)", i, len(got), err)
		}
	}
	st, _ = alice.c.KeyPackageStatus(ctx)
	if st.Available != 0 || !st.LastResort || !st.LastResortUsed || !st.Low {
		t.Fatalf("status after exhaustion %+v", st)
	}
	// A user with nothing gets an empty list.
	if got, err := alice.c.ClaimKeyPackages(ctx, 102, 0); err != nil || len(got) != 0 {
		t.Fatalf("claim for bob = %d, %v", len(got), err)
	}
	_, err = e.anon().ClaimKeyPackages(ctx, 101, 0)
	apiErr(t, err, 401, "P2CORE_UNAUTHORIZED")
}

func TestClaimFiltersByCipherSuite(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	bob := e.login(102, "bob", false)
	b := certified(t, e, alice)
	if err := alice.c.UploadKeyPackages(ctx, build(t, b, 1)); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.c.ClaimKeyPackages(ctx, 101, 3); err != nil || len(got) != 0 {
		t.Fatalf("suite 3 claim = %d, %v; want none", len(got), err)
	}
	if got, err := bob.c.ClaimKeyPackages(ctx, 101, 1); err != nil || len(got) != 1 {
		t.Fatalf("suite 1 claim = %d, %v", len(got), err)
	}
	status, _, body := e.raw("GET", "/p2core/keypackage/101?cipher_suite=x", bob.token, "")
	wantError(t, status, body, 400, "P2CORE_BAD_REQUEST")
}

func TestBadKeyPackagesAreRefusedWithIndexAndNothingStored(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	b := certified(t, e, alice)
	good := build(t, b, 2)
	broken := *b
	broken.Faults.BadLeafSignature = true
	bad := build(t, &broken, 1)[0]
	err := alice.c.UploadKeyPackages(ctx, [][]byte{good[0], bad, good[1]})
	apiErr(t, err, 400, "P2CORE_INVALID_KEYPACKAGE")
	if !strings.Contains(err.Error(), "KeyPackage 1") {
		t.Errorf("message %q does not name index 1", err)
	}
	if st, _ := alice.c.KeyPackageStatus(ctx); st.Available != 0 {
		t.Fatalf("%d stored from a refused upload", st.Available)
	}

	other := mlstest.NewEd25519(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32)))
	other.Now = e.clock.Now
	err = alice.c.UploadKeyPackages(ctx, build(t, other, 1))
	apiErr(t, err, 400, "P2CORE_INVALID_KEYPACKAGE")
	if !strings.Contains(err.Error(), "ID-Cert") {
		t.Errorf("message %q does not explain the binding", err)
	}

	if err := alice.c.UploadKeyPackages(ctx, good[:1]); err != nil {
		t.Fatal(err)
	}
	apiErr(t, alice.c.UploadKeyPackages(ctx, good[:1]), 409, "P2CORE_DUPLICATE_KEYPACKAGE")

	for name, body := range map[string]string{
		"empty array":  `[]`,
		"not base64":   `["%%%"]`,
		"not an array": `{"a": 1}`,
		"101 items":    "[" + strings.TrimSuffix(strings.Repeat(`"AA==",`, 101), ",") + "]",
		"garbage":      `["AAAA"]`,
	} {
		status, _, rb := e.raw("POST", "/p2core/keypackage/@me", alice.token, body)
		if status != 400 {
			t.Errorf("%s: status %d %s", name, status, rb)
		}
	}
}

func TestKeyPackageCapPerSession(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	b := certified(t, e, alice)
	for i := 0; i < 10; i++ {
		if err := alice.c.UploadKeyPackages(ctx, build(t, b, 100)); err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}
	err := alice.c.UploadKeyPackages(ctx, build(t, b, 1))
	apiErr(t, err, 409, "P2CORE_TOO_MANY_KEYPACKAGES")
	if st, _ := alice.c.KeyPackageStatus(ctx); st.Available != 1000 {
		t.Fatalf("available %d, want 1000", st.Available)
	}
}

func TestKeyPackageCredentialMustNameTheSessionsFID(t *testing.T) {
	e := newEnv(t, nil)
	bob := e.login(102, "bob", false)
	b := certified(t, e, bob)
	for _, identity := range []string{"alice@home.test", "bob@home.test.evil", "bob", "", "\u212aob@home.test"} {
		forged := *b
		forged.Identity = []byte(identity)
		kp := build(t, &forged, 1)
		err := bob.c.UploadKeyPackages(ctx, kp)
		apiErr(t, err, 400, "P2CORE_INVALID_KEYPACKAGE")
		if !strings.Contains(err.Error(), "credential") || !strings.Contains(err.Error(), "bob@home.test") {
			t.Errorf("identity %q: message %q does not say what the credential must name", identity, err)
		}
		apiErr(t, bob.c.SetLastResort(ctx, kp[0]), 400, "P2CORE_INVALID_KEYPACKAGE")
	}
	if st, _ := bob.c.KeyPackageStatus(ctx); st.Available != 0 || st.LastResort {
		t.Fatalf("refused KeyPackages were stored: %+v", st)
	}
	// FIDs are case-insensitive, and so is the comparison.
	upper := *b
	upper.Identity = []byte("BOB@Home.Test")
	if err := bob.c.UploadKeyPackages(ctx, build(t, &upper, 1)); err != nil {
		t.Fatalf("identity in another case: %v", err)
	}
}

func TestKeyPackageCredentialCheckIsConfigurable(t *testing.T) {
	var asked []string
	e := newEnv(t, func(c *p2core.Config) {
		c.KeyPackageCredential = func(fid p2core.FID, cred mls.Credential) error {
			asked = append(asked, string(fid)+" "+string(cred.Identity))
			if string(cred.Identity) == "user-102" {
				return nil
			}
			return errors.New("the identity must be user-<id>")
		}
	})
	bob := e.login(102, "bob", false)
	b := certified(t, e, bob)
	b.Identity = []byte("user-102")
	if err := bob.c.UploadKeyPackages(ctx, build(t, b, 1)); err != nil {
		t.Fatalf("the embedder's scheme: %v", err)
	}
	b.Identity = []byte("bob@home.test")
	err := bob.c.UploadKeyPackages(ctx, build(t, b, 1))
	apiErr(t, err, 400, "P2CORE_INVALID_KEYPACKAGE")
	if !strings.Contains(err.Error(), "user-<id>") {
		t.Errorf("message %q does not carry the embedder's reason", err)
	}
	if len(asked) != 2 || asked[0] != "bob@home.test user-102" {
		t.Fatalf("the check was called with %q", asked)
	}
}
