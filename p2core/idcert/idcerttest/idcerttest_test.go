package idcerttest_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/elliptic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
)

func TestNewClientKeyPrimaryIsTheSeedKey(t *testing.T) {
	seed := bytes.Repeat([]byte{7}, 32)
	for _, uid := range []string{"alice@example.com", "Alice <alice@example.com>"} {
		k, err := idcerttest.NewClientKey(uid, seed, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		ck, err := idcert.ParseClientKey([]byte(k.Armored), "alice@example.com", time.Now(), idcert.Policy{})
		if err != nil {
			t.Fatalf("%s: route 8 checks refuse the key: %v", uid, err)
		}
		mk, err := ck.MLSSignatureKey()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(mk, k.Signer.Public().(ed25519.PublicKey)) {
			t.Fatalf("%s: certified key %x is not the seed's key", uid, mk)
		}
		if ck.UserID() != uid {
			t.Errorf("User ID = %q, want %q", ck.UserID(), uid)
		}
	}
}

func TestNewECDSAClientKeyCertifiesTheSignersPoint(t *testing.T) {
	for _, curve := range []elliptic.Curve{elliptic.P256(), elliptic.P384(), elliptic.P521()} {
		for _, uid := range []string{"alice@example.com", "Alice <alice@example.com>"} {
			k, err := idcerttest.NewECDSAClientKey(uid, curve)
			if err != nil {
				t.Fatal(err)
			}
			ck, err := idcert.ParseClientKey([]byte(k.Armored), "alice@example.com", time.Now(), idcert.Policy{})
			if err != nil {
				t.Fatalf("%s %s: route 8 checks refuse the key: %v", curve.Params().Name, uid, err)
			}
			mk, err := ck.MLSSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			pub, err := k.Signer.PublicKey.ECDH()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mk, pub.Bytes()) {
				t.Fatalf("%s: certified key %x is not the signer's point", curve.Params().Name, mk)
			}
		}
	}
	if _, err := idcerttest.NewECDSAClientKey("alice@example.com", elliptic.P224()); err == nil {
		t.Fatal("P-224 accepted")
	}
}
