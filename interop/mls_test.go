package interop

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
)

// TestTsMLSKeyPackagesRoundTripThroughServer makes KeyPackages with ts-mls
// whose signature key is the Ed25519 primary key of alice's certified
// OpenPGP key, sends them through the KeyPackage routes of the running
// example server (12-15), and has a second ts-mls member (bob) add the
// KeyPackage he claimed to a group; alice must join from the Welcome with
// the private state ts-mls kept. Along the way: no upload before an
// ID-Cert, KeyPackages signed by another key are refused (and an upload
// is all or nothing), claims hand out each KeyPackage once, byte for byte,
// then the last resort.
func TestTsMLSKeyPackagesRoundTripThroughServer(t *testing.T) {
	requireNode(t)
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()

	srv := startServer(t)
	srv.register(t, "alice")
	srv.register(t, "bob")
	alice := srv.login(t, "alice")
	bob := srv.login(t, "bob")

	seed := randomSeed(t)
	sigKey := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	aliceState := filepath.Join(dir, "alice-mls.json")
	kps := tsMLSKeyPackages(t, seed, 6, aliceState)
	regular, lastResort := kps[:5], kps[5]

	// Without an ID-Cert there is no certified key to check them against.
	err := alice.Client.UploadKeyPackages(ctx, regular)
	wantAPIError(t, "upload before an ID-Cert", err, http.StatusConflict, "P2CORE_NO_ID_CERT")

	// alice's OpenPGP primary key is her MLS signature key.
	armored := openPGPKeyFromSeed(t, seed, "alice@home.localhost")
	raw, err := alice.Client.IssueIDCert(ctx, string(armored))
	if err != nil {
		t.Fatalf("route 8 refuses the go-crypto key: %v", err)
	}
	_, _, serverKey := srv.serverKey(t)
	cert, err := idcert.Verify(raw, serverKey, time.Now())
	if err != nil {
		t.Fatalf("ID-Cert: %v", err)
	}
	if !bytes.Equal(cert.MLSSignatureKey, sigKey) {
		t.Fatalf("certified MLS signature key %x, want the seed's public key %x", cert.MLSSignatureKey, sigKey)
	}

	// A KeyPackage signed with another seed is not alice's, even alongside
	// a good one; nothing of that upload is kept.
	foreign := tsMLSKeyPackages(t, randomSeed(t), 1, filepath.Join(dir, "other-mls.json"))[0]
	err = alice.Client.UploadKeyPackages(ctx, [][]byte{regular[0], foreign})
	// The message names the index and the reason.
	wantAPIError(t, "upload with a foreign KeyPackage", err, http.StatusBadRequest, "P2CORE_INVALID_KEYPACKAGE", "1", "signature")
	err = alice.Client.SetLastResort(ctx, foreign)
	wantAPIError(t, "foreign last resort", err, http.StatusBadRequest, "P2CORE_INVALID_KEYPACKAGE", "signature")
	wantStatus(t, alice.Client, p2core.KeyPackageStatus{Available: 0, LastResort: false, LastResortUsed: false, Low: true})

	if err := alice.Client.UploadKeyPackages(ctx, regular); err != nil {
		t.Fatalf("route 12 refuses ts-mls KeyPackages: %v", err)
	}
	if err := alice.Client.SetLastResort(ctx, lastResort); err != nil {
		t.Fatalf("route 13 refuses a ts-mls KeyPackage: %v", err)
	}
	wantStatus(t, alice.Client, p2core.KeyPackageStatus{Available: 5, LastResort: true, LastResortUsed: false, Low: true})

	// bob claims: each regular KeyPackage once, byte for byte, then the
	// last resort, which stays.
	var claimed [][]byte
	for i := range 7 {
		got, err := bob.Client.ClaimKeyPackages(ctx, alice.UserID, 0)
		if err != nil {
			t.Fatalf("claim %d: %v", i+1, err)
		}
		if len(got) != 1 {
			t.Fatalf("claim %d: %d KeyPackages, want 1 (alice has one session with KeyPackages)", i+1, len(got))
		}
		kp := got[0]
		if i < 5 {
			if !slices.ContainsFunc(regular, func(r []byte) bool { return bytes.Equal(r, kp) }) {
				t.Fatalf("claim %d: the KeyPackage is not byte-identical to any uploaded one", i+1)
			}
			if slices.ContainsFunc(claimed, func(c []byte) bool { return bytes.Equal(c, kp) }) {
				t.Fatalf("claim %d: a KeyPackage was handed out twice", i+1)
			}
			claimed = append(claimed, kp)
		} else if !bytes.Equal(kp, lastResort) {
			t.Fatalf("claim %d: got something other than the last-resort KeyPackage", i+1)
		}
	}
	wantStatus(t, alice.Client, p2core.KeyPackageStatus{Available: 0, LastResort: true, LastResortUsed: true, Low: true})

	for _, tc := range []struct {
		name string
		kp   []byte
	}{{"RegularKeyPackage", claimed[0]}, {"LastResortKeyPackage", lastResort}} {
		t.Run("BobAddsAliceWith"+tc.name, func(t *testing.T) {
			out := mustNode(t, "mls-join.mjs", aliceState, base64.StdEncoding.EncodeToString(tc.kp))
			var got struct {
				Epoch   int      `json:"epoch"`
				Members []string `json:"members"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("mls-join.mjs output %q: %v", out, err)
			}
			if got.Epoch != 1 || len(got.Members) != 2 || !slices.Contains(got.Members, hex.EncodeToString(sigKey)) {
				t.Errorf("group after the join: %+v; want epoch 1 with bob and alice (%x)", got, sigKey)
			}
		})
	}
}

func randomSeed(t *testing.T) []byte {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	return seed
}

// tsMLSKeyPackages runs mls-keypackages.mjs: n KeyPackages for cipher suite
// 1 signed with the Ed25519 key of seed; ts-mls's private state goes to
// statePath.
func tsMLSKeyPackages(t *testing.T, seed []byte, n int, statePath string) [][]byte {
	t.Helper()
	out := mustNode(t, "mls-keypackages.mjs", hex.EncodeToString(seed), strconv.Itoa(n), statePath)
	lines := strings.Fields(string(out))
	if len(lines) != n {
		t.Fatalf("mls-keypackages.mjs printed %d KeyPackages, want %d", len(lines), n)
	}
	kps := make([][]byte, n)
	for i, l := range lines {
		b, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			t.Fatalf("KeyPackage %d: %v", i, err)
		}
		// A bare KeyPackage starts with version mls10 (1), suite 1.
		if !bytes.HasPrefix(b, []byte{0, 1, 0, 1}) {
			t.Fatalf("KeyPackage %d starts % x, want version 1 and cipher suite 1", i, b[:min(4, len(b))])
		}
		kps[i] = b
	}
	return kps
}

// openPGPKeyFromSeed builds, with go-crypto, a v4 OpenPGP key whose primary
// key is the EdDSA (algorithm 22) Ed25519 key of seed, with one self-signed
// User ID, and returns the public part armored.
func openPGPKeyFromSeed(t *testing.T, seed []byte, userID string) []byte {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	cfg := &packet.Config{
		Algorithm:   packet.PubKeyAlgoEdDSA,
		Curve:       packet.Curve25519,
		DefaultHash: crypto.SHA256,
		Time:        func() time.Time { return now },
	}
	// go-crypto keeps its curve types internal; a throw-away key of the
	// same kind lends the Ed25519 curve value.
	tmpl, err := openpgp.NewEntity("template", "", "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	priv := eddsa.NewPrivateKey(*eddsa.NewPublicKey(tmpl.PrimaryKey.PublicKey.(*eddsa.PublicKey).GetCurve()))
	priv.X = ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	priv.D = bytes.Clone(seed)

	signer := packet.NewSignerPrivateKey(now, priv)
	if signer.PubKeyAlgo != packet.PubKeyAlgoEdDSA || signer.Version != 4 {
		t.Fatalf("go-crypto made a v%d key of algorithm %d, want v4 EdDSA (22)", signer.Version, signer.PubKeyAlgo)
	}
	e := &openpgp.Entity{
		PrimaryKey: &signer.PublicKey,
		PrivateKey: signer,
		Identities: map[string]*openpgp.Identity{},
	}
	if err := e.AddUserId(userID, "", "", cfg); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Identities[userID]; !ok {
		t.Fatalf("go-crypto made User IDs %v, want exactly %q", slices.Collect(maps.Keys(e.Identities)), userID)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// wantAPIError checks that err is the server's answer with that status and
// P2CORE code, and that its message mentions each of words
// (case-insensitive).
func wantAPIError(t *testing.T, what string, err error, status int, code string, words ...string) {
	t.Helper()
	var ae *httpadapter.APIError
	if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
		t.Fatalf("%s: got %v, want %d %s", what, err, status, code)
	}
	for _, w := range words {
		if !strings.Contains(strings.ToLower(ae.Message), strings.ToLower(w)) {
			t.Errorf("%s: message %q does not mention %q", what, ae.Message, w)
		}
	}
}

// wantStatus checks route 15.
func wantStatus(t *testing.T, c *httpadapter.Client, want p2core.KeyPackageStatus) {
	t.Helper()
	got, err := c.KeyPackageStatus(context.Background())
	if err != nil {
		t.Fatalf("route 15: %v", err)
	}
	if got != want {
		t.Fatalf("route 15: %+v, want %+v", got, want)
	}
}
