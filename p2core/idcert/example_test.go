package idcert_test

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/p2kit/p2kit/p2core/idcert"
)

// Example shows the whole life of an ID-Cert: the home server checks the
// client's key and issues a certificate; a foreign server that holds only
// the home server's public key verifies it.
func Example() {
	now := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)

	// Home server, once: its identity key (store MarshalPrivate()).
	server, err := idcert.GenerateServerKey("example.com", idcert.ServerEd25519Legacy, now, 0, nil)
	if err != nil {
		panic(err)
	}

	// Route 8: alice@example.com uploads her armored public key.
	armored, err := os.ReadFile("testdata/openpgpjs/alice-openpgpjs-legacy.asc")
	if err != nil {
		panic(err)
	}
	client, err := idcert.ParseClientKey(armored, "alice@example.com", now, idcert.Policy{})
	if err != nil {
		panic(err)
	}
	cert, err := idcert.Issue(server, client, idcert.IssueParams{SessionID: "laptop", Now: now})
	if err != nil {
		panic(err)
	}

	// A foreign server fetched the public key (route 10) and checks the
	// certificate a client presents (route 16).
	public, err := idcert.ParsePublicServerKey(server.PublicArmored())
	if err != nil {
		panic(err)
	}
	c, err := idcert.Verify(cert.Raw, public, now.Add(time.Hour))
	if err != nil {
		panic(err)
	}
	fmt.Println(c.FID, "|", c.UserID, "|", c.SessionID, "|", c.Expires.Sub(c.IssuedAt))
	fmt.Println("FID matches:", idcert.VerifyFID(c, "Alice@Example.com") == nil)

	_, err = idcert.Verify(cert.Raw, public, now.Add(31*24*time.Hour))
	fmt.Println("a month later expired:", errors.Is(err, idcert.ErrCertExpired))
	// Output:
	// alice@example.com | Alice <alice@example.com> | laptop | 720h0m0s
	// FID matches: true
	// a month later expired: true
}

// ExampleParseClientKey shows a refusal: the key names another FID.
func ExampleParseClientKey() {
	armored, err := os.ReadFile("testdata/openpgpjs/alice-openpgpjs-legacy.asc")
	if err != nil {
		panic(err)
	}
	now := time.Date(2027, 1, 1, 12, 0, 0, 0, time.UTC)
	_, err = idcert.ParseClientKey(armored, "bob@example.com", now, idcert.Policy{})
	fmt.Println(errors.Is(err, idcert.ErrInvalidPublicKey))
	fmt.Println(err)
	// Output:
	// true
	// idcert: invalid public key: no User ID names bob@example.com; it must read exactly "bob@example.com" or "Name <bob@example.com>"
}
