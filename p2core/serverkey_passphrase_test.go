package p2core_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/storage/memstore"
)

func TestServerKeyPassphraseKeepsTheStoredKeyEncrypted(t *testing.T) {
	store := memstore.New()
	pass := []byte("a passphrase for the server key")
	svc, err := p2core.NewService(store, p2core.Config{Domain: "home.test", ServerKeyPassphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	first, _ := issueAndVerify(t, svc, time.Now())
	keys, err := store.ServerKeys(ctx)
	if err != nil || len(keys) != 1 {
		t.Fatalf("%d keys stored, %v", len(keys), err)
	}
	if _, err := idcert.ParseServerKey(keys[0].Private); err == nil {
		t.Fatal("the stored key parses as an unencrypted private key")
	}
	if k, err := idcert.ParseEncryptedServerKey(keys[0].Private, pass); err != nil || !k.WasEncrypted() {
		t.Fatalf("the stored key is not encrypted under the passphrase: %v", err)
	}

	// A restart with the passphrase signs with the same key; a rotation
	// stores the new key encrypted too. The restarted service's clock is
	// two seconds on, as a key replaced less than a second ago refuses
	// rotation.
	later := func() time.Time { return time.Now().Add(2 * time.Second) }
	again, _ := p2core.NewService(store, p2core.Config{Domain: "home.test", ServerKeyPassphrase: pass, Now: later})
	if err := again.Init(ctx); err != nil {
		t.Fatalf("restart with the passphrase: %v", err)
	}
	c, _ := issueAndVerify(t, again, later())
	if !bytes.Equal(c.ServerKeyFingerprint, first.ServerKeyFingerprint) {
		t.Fatal("the restarted service signs with another key")
	}
	if _, err := again.RotateServerKey(ctx, p2core.Principal{UserID: 1, FID: "root@home.test", SessionID: "s", Admin: true}); err != nil {
		t.Fatal(err)
	}
	keys, _ = store.ServerKeys(ctx)
	if _, err := idcert.ParseServerKey(keys[len(keys)-1].Private); err == nil {
		t.Fatal("the rotated key is stored unencrypted")
	}

	// A wrong passphrase, or none, fails start and says why.
	for _, wrong := range [][]byte{[]byte("another passphrase"), nil} {
		s, _ := p2core.NewService(store, p2core.Config{Domain: "home.test", ServerKeyPassphrase: wrong})
		err := s.Init(ctx)
		if !errors.Is(err, idcert.ErrWrongPassphrase) || !strings.Contains(err.Error(), "ServerKeyPassphrase") {
			t.Fatalf("start with passphrase %q: %v", wrong, err)
		}
		t.Log(err)
	}
}

func TestServerKeyPassphraseAcceptsAKeyStoredBeforeIt(t *testing.T) {
	store := memstore.New()
	plain, _ := p2core.NewService(store, p2core.Config{Domain: "home.test"})
	if err := plain.Init(ctx); err != nil {
		t.Fatal(err)
	}
	keys, _ := store.ServerKeys(ctx)
	if _, err := idcert.ParseServerKey(keys[0].Private); err != nil {
		t.Fatalf("without a passphrase the key is stored as before: %v", err)
	}
	svc, _ := p2core.NewService(store, p2core.Config{Domain: "home.test", ServerKeyPassphrase: []byte("set later")})
	if err := svc.Init(ctx); err != nil {
		t.Fatalf("a key stored unencrypted before the passphrase was set: %v", err)
	}
	issueAndVerify(t, svc, time.Now())
}
