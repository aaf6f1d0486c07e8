package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/storage/boltstore"
)

// storedServerKeys reads the server keys of a stopped server's bbolt file.
func storedServerKeys(t *testing.T, data string) [][]byte {
	t.Helper()
	st, err := boltstore.Open(filepath.Join(data, "p2kit.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	keys, err := st.ServerKeys(context.Background())
	if err != nil || len(keys) == 0 {
		t.Fatalf("%d server keys, %v", len(keys), err)
	}
	var out [][]byte
	for _, k := range keys {
		out = append(out, k.Private)
	}
	return out
}

func TestServerKeyPassphraseFileKeepsTheKeyEncryptedInTheStoreFile(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pwFile, wrongFile := filepath.Join(dir, "pw"), filepath.Join(dir, "wrong")
	os.WriteFile(pwFile, []byte("server key passphrase\n"), 0o600)
	os.WriteFile(wrongFile, []byte("not the passphrase\n"), 0o600)

	s := startServer(t, data, "-server-key-passphrase-file", pwFile)
	before, err := client(s, session{}).ServerKey(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	file, err := os.ReadFile(filepath.Join(data, "p2kit.db"))
	if err != nil {
		t.Fatal(err)
	}
	for _, priv := range storedServerKeys(t, data) {
		if _, err := idcert.ParseServerKey(priv); err == nil {
			t.Fatal("the stored server key parses as an unencrypted private key")
		}
		k, err := idcert.ParseEncryptedServerKey(priv, []byte("server key passphrase\n"))
		if err != nil {
			t.Fatalf("the passphrase file's whole content does not decrypt the stored key: %v", err)
		}
		plain, _ := k.MarshalPrivate()
		pkt, err := packet.Read(bytes.NewReader(plain))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := pkt.(*packet.PrivateKey).Serialize(&b); err != nil {
			t.Fatal(err)
		}
		// The secret key packet alone, unencrypted, ends with the secret
		// material and a 2-byte checksum.
		secret := b.Bytes()[b.Len()-34 : b.Len()-2]
		if bytes.Contains(file, secret) {
			t.Fatal("the bbolt file holds the private key material in clear")
		}
	}

	// Restart with the passphrase: the same key.
	s = startServer(t, data, "-server-key-passphrase-file", pwFile)
	after, err := client(s, session{}).ServerKey(context.Background(), time.Time{})
	if err != nil || !bytes.Equal(after, before) {
		t.Fatalf("after a restart with the passphrase the server key changed (%v)", err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	// A wrong passphrase, or none, fails start with a message that says so.
	for _, args := range [][]string{{"-server-key-passphrase-file", wrongFile}, nil} {
		err := startFails(t, append([]string{"-addr", "127.0.0.1:0", "-data", data, "-pbkdf2-iterations", "1000"}, args...))
		if !strings.Contains(err.Error(), "passphrase") {
			t.Fatalf("start %v: %v, want a failure naming the passphrase", args, err)
		}
		t.Log(err)
	}
}

// startFails runs the server with args and returns the error it stops
// with; a server that starts listening instead fails the test.
func startFails(t *testing.T, args []string) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &lineWriter{lines: make(chan string, 4)}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, out, io.Discard) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("%v: the server stopped without an error", args)
		}
		return err
	case line := <-out.lines:
		cancel()
		<-done
		t.Fatalf("%v: the server started (%s)", args, line)
	}
	return nil
}
