package mlstest_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/circl/sign/ed448"

	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func seeded(seed byte) *mrand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return mrand.NewChaCha8(s)
}

func newBuilder(t *testing.T, suite uint16) *mlstest.Builder {
	t.Helper()
	b, err := mlstest.New(suite, seeded(byte(suite)))
	if err != nil {
		t.Fatalf("New(%d): %v", suite, err)
	}
	b.Now = func() time.Time { return testNow }
	return b
}

func opts() mls.Options {
	return mls.Options{Now: func() time.Time { return testNow }}
}

func TestBuildEverySuiteParses(t *testing.T) {
	for suite := uint16(1); suite <= 7; suite++ {
		b := newBuilder(t, suite)
		b.Identity = []byte("alice@example.org")
		b.LeafExtensions = []mls.Extension{{Type: 1, Data: []byte("app-id")}, {Type: 0xff02, Data: []byte("x")}, {Type: 0x3A3A, Data: nil}}
		b.Extensions = []mls.Extension{{Type: 0x000a}} // last_resort
		for _, wrapped := range []bool{false, true} {
			build := b.Build
			if wrapped {
				build = b.BuildWrapped
			}
			raw, err := build()
			if err != nil {
				t.Fatalf("suite %d: Build: %v", suite, err)
			}
			kp, err := mls.Parse(raw, opts())
			if err != nil {
				t.Fatalf("suite %d wrapped=%v: Parse: %v", suite, wrapped, err)
			}
			if kp.CipherSuite != suite || kp.Wrapped != wrapped || string(kp.Credential.Identity) != "alice@example.org" {
				t.Errorf("suite %d: decoded %+v", suite, kp)
			}
			sigKey, _ := b.SignatureKey()
			if !bytes.Equal(kp.SignatureKey, sigKey) {
				t.Errorf("suite %d: signature_key differs from the Builder's", suite)
			}
			if got := mlstest.Marshal(kp); !bytes.Equal(got, kp.Raw) {
				t.Errorf("suite %d: Marshal(Decode(x)) != x", suite)
			}
			if nb, na := kp.NotBeforeTime(), kp.NotAfterTime(); !nb.Equal(testNow.Add(-time.Hour)) || !na.Equal(testNow.Add(30*24*time.Hour)) {
				t.Errorf("suite %d: lifetime %v..%v", suite, nb, na)
			}
		}
	}
}

func TestBuildWithGivenKeys(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	_, ed448Priv, _ := ed448.GenerateKey(nil)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	for _, b := range []*mlstest.Builder{
		mlstest.NewEd25519(edPriv),
		mlstest.NewEd448(ed448Priv),
		mlstest.NewECDSA(p384),
	} {
		b.Now = func() time.Time { return testNow }
		raw, err := b.Build()
		if err != nil {
			t.Fatalf("suite %d: %v", b.Suite, err)
		}
		if _, err := mls.Parse(raw, opts()); err != nil {
			t.Errorf("suite %d: Parse: %v", b.Suite, err)
		}
	}
}

func TestBuildX509Credential(t *testing.T) {
	b := newBuilder(t, 1)
	b.Certificates = [][]byte{[]byte("leaf-der"), []byte("ca-der")}
	raw, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	kp, err := mls.Parse(raw, opts())
	if err != nil {
		t.Fatal(err)
	}
	if kp.Credential.Type != mls.CredentialX509 || len(kp.Credential.Certificates) != 2 || string(kp.Credential.Certificates[1]) != "ca-der" {
		t.Errorf("credential = %+v", kp.Credential)
	}
}

func TestBuildIsDeterministicGivenRand(t *testing.T) {
	for suite := uint16(1); suite <= 7; suite++ {
		a, _ := newBuilder(t, suite).Build()
		b, _ := newBuilder(t, suite).Build()
		if !bytes.Equal(a, b) {
			t.Errorf("suite %d: same seed, different bytes", suite)
		}
		// Fresh init and encryption keys on each call.
		bld := newBuilder(t, suite)
		x, _ := bld.Build()
		y, _ := bld.Build()
		kx, _ := mls.Decode(x)
		ky, _ := mls.Decode(y)
		if bytes.Equal(kx.InitKey, ky.InitKey) || bytes.Equal(kx.EncryptionKey, ky.EncryptionKey) {
			t.Errorf("suite %d: two Builds share keys", suite)
		}
	}
}

func TestBuildMisconfigured(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	for name, b := range map[string]*mlstest.Builder{
		"unknown suite":     {Suite: 9, Signer: edPriv},
		"nil signer":        {Suite: 1},
		"signer for suite2": {Suite: 2, Signer: edPriv},
	} {
		if _, err := b.Build(); err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
	}
}

// Each fault makes Parse fail for its own reason, in every suite.
func TestFaultsFailForTheIntendedReason(t *testing.T) {
	cases := []struct {
		name   string
		faults mlstest.Faults
		want   string
	}{
		{"bad leaf signature", mlstest.Faults{BadLeafSignature: true}, "leaf_node.signature: does not verify"},
		{"bad KeyPackage signature", mlstest.Faults{BadKeyPackageSignature: true}, "signature: does not verify (SignWithLabel \"KeyPackageTBS\")"},
		{"init key is encryption key", mlstest.Faults{InitKeyIsEncryptionKey: true}, "init_key: equals leaf_node.encryption_key"},
		{"duplicate extension", mlstest.Faults{DuplicateExtension: true}, "extensions: duplicate extension type 0xff00"},
		{"duplicate leaf extension", mlstest.Faults{DuplicateLeafExtension: true}, "leaf_node.extensions: duplicate extension type 0xff00"},
		{"unlisted extension", mlstest.Faults{UnlistedExtension: true}, "leaf_node.extensions: extension type 0xff0f is not listed"},
		{"credential not listed", mlstest.Faults{CredentialNotListed: true}, "credential type 1 is not listed"},
		{"expired", mlstest.Faults{Expired: true}, "leaf_node.lifetime: expired"},
		{"non-minimal prefix", mlstest.Faults{NonMinimalPrefix: true}, "init_key: non-minimal length prefix"},
		{"trailing bytes", mlstest.Faults{TrailingBytes: true}, "1 trailing bytes after the KeyPackage"},
		{"unknown credential type", mlstest.Faults{CredentialType: 7}, "unknown credential type 0x0007"},
		{"update leaf source", mlstest.Faults{LeafNodeSource: 2}, "leaf_node.leaf_node_source: source update (2)"},
		{"unknown leaf source", mlstest.Faults{LeafNodeSource: 9}, "unknown leaf_node_source 9"},
	}
	for suite := uint16(1); suite <= 7; suite++ {
		for _, c := range cases {
			b := newBuilder(t, suite)
			b.Faults = c.faults
			for _, wrapped := range []bool{false, true} {
				build := b.Build
				if wrapped {
					build = b.BuildWrapped
				}
				raw, err := build()
				if err != nil {
					t.Fatalf("suite %d %s: Build: %v", suite, c.name, err)
				}
				_, err = mls.Parse(raw, opts())
				if !errors.Is(err, mls.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("suite %d %s (wrapped=%v): Parse = %v, want %q", suite, c.name, wrapped, err, c.want)
				}
			}
		}
	}
}

func TestAppendVarintIsMinimal(t *testing.T) {
	for n, want := range map[int]string{0: "00", 63: "3f", 64: "4040", 16383: "7fff", 16384: "80004000", 1<<30 - 1: "bfffffff"} {
		got := mlstest.AppendVarint(nil, n)
		if hexOf(got) != want {
			t.Errorf("AppendVarint(%d) = %x, want %s", n, got, want)
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}
