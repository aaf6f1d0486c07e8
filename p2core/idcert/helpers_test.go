package idcert

import (
	"bytes"
	"crypto"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// Test fixtures. Keys are expensive (RSA-3072 takes seconds under -race),
// so each is made once per test binary and shared; they are immutable.

var allServerAlgorithms = []ServerKeyAlgorithm{ServerEd25519Legacy, ServerEd25519, ServerEd448, ServerRSA3072}

var (
	fixtureMu      sync.Mutex
	serverKeyCache = map[ServerKeyAlgorithm]*ServerKey{}
	gpgKeyCache    = map[string][]byte{}
)

// testServerKey returns a shared server key of alg for example.com,
// created a day ago, without expiry.
func testServerKey(t testing.TB, alg ServerKeyAlgorithm) *ServerKey {
	t.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if k := serverKeyCache[alg]; k != nil {
		return k
	}
	k, err := GenerateServerKey("example.com", alg, time.Now().Add(-24*time.Hour), 0, nil)
	if err != nil {
		t.Fatalf("GenerateServerKey(%s): %v", alg, err)
	}
	serverKeyCache[alg] = k
	return k
}

// deterministicServerKey returns the same ServerEd25519Legacy server key on every
// run (go-crypto draws EdDSA keys from the supplied reader), so that fuzz
// corpus entries stay meaningful across runs.
func deterministicServerKey(t testing.TB) *ServerKey {
	t.Helper()
	var seed [32]byte
	copy(seed[:], "p2kit idcert fuzz server key....")
	k, err := GenerateServerKey("example.com", ServerEd25519Legacy, time.Unix(1700000000, 0), 0, rand.NewChaCha8(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// openpgpjsKey reads one of the OpenPGP.js-made keys in testdata.
func openpgpjsKey(t testing.TB, variant string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "openpgpjs", "alice-openpgpjs-"+variant+".asc"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// keySpec describes a client key made with go-crypto.
type keySpec struct {
	name, email string
	alg         packet.PublicKeyAlgorithm
	curve       packet.Curve
	v6          bool
	rsaBits     int
	created     time.Time // zero: an hour ago
	lifetime    uint32    // seconds, 0: none
	hash        crypto.Hash
}

// newEntity makes a client key with go-crypto; the private part stays in
// memory only.
func newEntity(t testing.TB, s keySpec) *openpgp.Entity {
	t.Helper()
	created := s.created
	if created.IsZero() {
		created = time.Now().Add(-time.Hour)
	}
	cfg := &packet.Config{
		Algorithm:       s.alg,
		Curve:           s.curve,
		V6Keys:          s.v6,
		RSABits:         s.rsaBits,
		KeyLifetimeSecs: s.lifetime,
		DefaultHash:     s.hash,
		Time:            func() time.Time { return created },
	}
	if cfg.Algorithm == 0 {
		cfg.Algorithm, cfg.Curve = packet.PubKeyAlgoEdDSA, packet.Curve25519
	}
	e, err := openpgp.NewEntity(s.name, "", s.email, cfg)
	if err != nil {
		t.Fatalf("NewEntity(%+v): %v", s, err)
	}
	return e
}

func aliceSpec() keySpec { return keySpec{name: "Alice", email: "alice@example.com"} }

// armorOf armors data as blockType.
func armorOf(t testing.TB, blockType string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := armor.Encode(&b, blockType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

func publicBytes(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func armoredPublic(t testing.TB, e *openpgp.Entity) []byte {
	return armorOf(t, openpgp.PublicKeyType, publicBytes(t, e))
}

func privateBytes(t testing.TB, e *openpgp.Entity) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&b, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// addUserID adds a User ID with exactly the text uid (no name/email
// formatting) and a self-signature to e.
func addUserID(t testing.TB, e *openpgp.Entity, uid string, created time.Time) {
	t.Helper()
	sig := &packet.Signature{
		Version:      e.PrimaryKey.Version,
		SigType:      packet.SigTypePositiveCert,
		PubKeyAlgo:   e.PrimaryKey.PubKeyAlgo,
		Hash:         crypto.SHA256,
		CreationTime: created,
		IssuerKeyId:  &e.PrimaryKey.KeyId,
		FlagsValid:   true,
		FlagSign:     true,
		FlagCertify:  true,
	}
	if err := sig.SignUserId(uid, e.PrimaryKey, e.PrivateKey, nil); err != nil {
		t.Fatal(err)
	}
	e.Identities[uid] = &openpgp.Identity{
		Primary:            e,
		Name:               uid,
		UserId:             &packet.UserId{Id: uid},
		SelfCertifications: []*packet.VerifiableSignature{packet.NewVerifiableSig(sig)},
	}
}

// ---- GnuPG ----

// requireGPG skips the test when gpg is not installed.
func requireGPG(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("gpg")
	if err != nil {
		t.Skip("gpg not on PATH: skipping the GnuPG interoperability check")
	}
	return p
}

// gnupgHome makes a fresh GNUPGHOME (short path: the agent socket must fit
// in sun_path) and stops its agent at the end of the test.
func gnupgHome(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "idcert-gpg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", dir, "--kill", "all").Run()
		_ = os.RemoveAll(dir)
	})
	return dir
}

// runGPG runs gpg with --homedir home and returns stdout; stderr is
// returned separately for diagnostics.
func runGPG(t testing.TB, home string, stdin []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(requireGPG(t), append([]string{"--homedir", home, "--batch", "--no-tty"}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// gpgClientKey returns an armored public key made by
// `gpg --quick-gen-key UID ed25519` (shared per uid).
func gpgClientKey(t testing.TB, uid string) []byte {
	t.Helper()
	requireGPG(t)
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if k := gpgKeyCache[uid]; k != nil {
		return k
	}
	home := gnupgHome(t)
	if _, stderr, err := runGPG(t, home, nil, "--passphrase", "", "--quick-gen-key", uid, "ed25519"); err != nil {
		t.Fatalf("gpg --quick-gen-key: %v\n%s", err, stderr)
	}
	out, stderr, err := runGPG(t, home, nil, "--armor", "--export", uid)
	if err != nil || !strings.Contains(out, "BEGIN PGP PUBLIC KEY BLOCK") {
		t.Fatalf("gpg --export: %v\n%s", err, stderr)
	}
	gpgKeyCache[uid] = []byte(out)
	return gpgKeyCache[uid]
}
