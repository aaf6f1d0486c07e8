package mls_test

import (
	"bytes"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"time"

	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// Parse an uploaded KeyPackage (here made by mlstest, wrapped in an
// MLSMessage) and keep its bare bytes.
func ExampleParse() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }

	b, _ := mlstest.New(1, mrand.NewChaCha8([32]byte{}))
	b.Identity = []byte("alice@example.org")
	b.Now = clock
	upload, _ := b.BuildWrapped()

	kp, err := mls.Parse(upload, mls.Options{Now: clock})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("suite:", kp.CipherSuite, "wrapped:", kp.Wrapped)
	fmt.Println("identity:", string(kp.Credential.Identity))
	fmt.Println("expires:", kp.NotAfterTime().Format(time.RFC3339))
	fmt.Println("Raw is the upload without its header:", bytes.Equal(kp.Raw, upload[4:]))
	ref, _ := kp.Ref()
	fmt.Println("KeyPackageRef bytes:", len(ref))

	// The same KeyPackage a day after it expired.
	later := mls.Options{Now: func() time.Time { return now.Add(31 * 24 * time.Hour) }}
	_, err = mls.Parse(upload, later)
	fmt.Println(errors.Is(err, mls.ErrInvalid))
	// Output:
	// suite: 1 wrapped: true
	// identity: alice@example.org
	// expires: 2026-01-31T00:00:00Z
	// Raw is the upload without its header: true
	// KeyPackageRef bytes: 32
	// true
}

// Decode errors name the field, the problem and the offset.
func ExampleDecode_error() {
	// version mls10, suite 1, then init_key's length 32 written in two
	// bytes (40 20) where one (20) suffices.
	_, err := mls.Decode([]byte{0x00, 0x01, 0x00, 0x01, 0x40, 0x20})
	fmt.Println(err)
	fmt.Println(errors.Is(err, mls.ErrInvalid))
	// Output:
	// mls: invalid KeyPackage: init_key: non-minimal length prefix (2 bytes for length 32) at offset 4
	// true
}
