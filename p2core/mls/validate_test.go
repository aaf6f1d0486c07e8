package mls_test

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// remarshal re-encodes kp after change and decodes the result, which must
// still decode.
func remarshal(t *testing.T, kp *mls.KeyPackage, change func(*mls.KeyPackage)) *mls.KeyPackage {
	t.Helper()
	c := *kp
	c.Capabilities.Extensions = slices.Clone(kp.Capabilities.Extensions)
	change(&c)
	got, err := mls.Decode(mlstest.Marshal(&c))
	if err != nil {
		t.Fatalf("re-encoded KeyPackage does not decode: %v", err)
	}
	return got
}

// Flipping any bit of either signature of a vector makes Validate fail on
// that signature.
func TestValidateRefusesFlippedSignatureBits(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		if v.wrapped {
			continue
		}
		kp := decodeVector(t, v)
		opts := vectorOptions(kp)
		for _, leaf := range []bool{true, false} {
			sig, field := kp.Signature, "signature: does not verify (SignWithLabel \"KeyPackageTBS\")"
			if leaf {
				sig, field = kp.LeafSignature, "leaf_node.signature: does not verify (SignWithLabel \"LeafNodeTBS\")"
			}
			for bit := range 8 * len(sig) {
				flipped := bytes.Clone(sig)
				flipped[bit/8] ^= 1 << (bit % 8)
				bad := remarshal(t, kp, func(c *mls.KeyPackage) {
					if leaf {
						c.LeafSignature = flipped
					} else {
						c.Signature = flipped
					}
				})
				wantInvalid(t, v.name+" bit "+itoa(bit), mls.Validate(bad, opts), field)
			}
		}
	}
}

// Changing signed content (not the signature) also breaks the signatures.
func TestValidateRefusesAlteredSignedContent(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		kp := decodeVector(t, v)
		bad := remarshal(t, kp, func(c *mls.KeyPackage) {
			c.Credential.Identity = append(bytes.Clone(c.Credential.Identity), 'x')
		})
		wantInvalid(t, v.name+" identity", mls.Validate(bad, vectorOptions(kp)), "leaf_node.signature: does not verify")
		bad = remarshal(t, kp, func(c *mls.KeyPackage) {
			c.InitKey = bytes.Clone(c.InitKey)
			c.InitKey[len(c.InitKey)-1] ^= 1 // still a valid X25519 key; P-256 may become off-curve
		})
		err := mls.Validate(bad, vectorOptions(kp))
		if kp.CipherSuite == 2 {
			wantInvalid(t, v.name+" init_key", err, "init_key")
		} else {
			wantInvalid(t, v.name+" init_key", err, "signature: does not verify (SignWithLabel \"KeyPackageTBS\")")
		}
	}
}

func TestValidateRefusesInitKeyEqualToEncryptionKey(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		kp := decodeVector(t, v)
		bad := remarshal(t, kp, func(c *mls.KeyPackage) { c.InitKey = c.EncryptionKey })
		wantInvalid(t, v.name, mls.Validate(bad, vectorOptions(kp)), "init_key: equals leaf_node.encryption_key")
	}
}

func TestValidateRefusesDuplicateExtensions(t *testing.T) {
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	opts := vectorOptions(kp)
	for _, typ := range []uint16{1, 0x000a, 0xff00, 0x2A2A} {
		dup := []mls.Extension{{Type: typ, Data: []byte("a")}, {Type: 0xff07}, {Type: typ, Data: []byte("b")}}
		bad := remarshal(t, kp, func(c *mls.KeyPackage) {
			c.Capabilities.Extensions = append(c.Capabilities.Extensions, typ, 0xff07)
			c.Extensions = dup
		})
		wantInvalid(t, "KeyPackage extensions", mls.Validate(bad, opts), "extensions: duplicate extension type 0x"+hex4(typ))
		bad = remarshal(t, kp, func(c *mls.KeyPackage) {
			c.Capabilities.Extensions = append(c.Capabilities.Extensions, typ, 0xff07)
			c.LeafExtensions = dup
		})
		wantInvalid(t, "leaf extensions", mls.Validate(bad, opts), "leaf_node.extensions: duplicate extension type 0x"+hex4(typ))
	}
	// A long list takes the linear path and is still caught.
	var many []mls.Extension
	var listed []uint16
	for i := range 300 {
		many = append(many, mls.Extension{Type: uint16(0x1000 + i)})
		listed = append(listed, uint16(0x1000+i))
	}
	many = append(many, mls.Extension{Type: 0x1000 + 299})
	bad := remarshal(t, kp, func(c *mls.KeyPackage) {
		c.Capabilities.Extensions = listed
		c.Extensions = many
	})
	wantInvalid(t, "long list", mls.Validate(bad, opts), "extensions: duplicate extension type 0x112b")
}

func hex4(v uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15]})
}

// Extension types must be listed in capabilities, except default types
// 1-5 and GREASE values, which pass that check (and then fail only on the
// signature, since the vector was altered).
func TestValidateExtensionsMustBeListedUnlessDefaultOrGREASE(t *testing.T) {
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	opts := vectorOptions(kp)
	for _, c := range []struct {
		typ    uint16
		listed bool
		want   string
	}{
		{0xff05, false, "extension type 0xff05 is not listed in leaf_node.capabilities.extensions"},
		{0x000a, false, "extension type 0x000a is not listed"},
		{0xff05, true, "does not verify"},
		{0x0001, false, "does not verify"},
		{0x0005, false, "does not verify"},
		{0xEAEA, false, "does not verify"},
		{0x0A0A, false, "does not verify"},
	} {
		for _, leaf := range []bool{true, false} {
			bad := remarshal(t, kp, func(k *mls.KeyPackage) {
				k.Capabilities.Extensions = nil
				if c.listed {
					k.Capabilities.Extensions = []uint16{c.typ}
				}
				exts := []mls.Extension{{Type: c.typ, Data: []byte{1}}}
				if leaf {
					k.LeafExtensions = exts
				} else {
					k.Extensions = exts
				}
			})
			wantInvalid(t, "type 0x"+hex4(c.typ), mls.Validate(bad, opts), c.want)
		}
	}
}

func TestValidateCredentialTypeMustBeListed(t *testing.T) {
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	bad := remarshal(t, kp, func(c *mls.KeyPackage) { c.Capabilities.Credentials = []uint16{2, 0x1A1A} })
	wantInvalid(t, "unlisted", mls.Validate(bad, vectorOptions(kp)), "leaf_node.credential: credential type 1 is not listed in leaf_node.capabilities.credentials")
	// GREASE values in capabilities are tolerated.
	ok := remarshal(t, kp, func(c *mls.KeyPackage) {
		c.Capabilities.Credentials = []uint16{0x1A1A, 1, 0xBABA}
		c.Capabilities.Versions = []uint16{0x0A0A, 1}
	})
	wantInvalid(t, "GREASE listed", mls.Validate(ok, vectorOptions(kp)), "leaf_node.signature: does not verify")
}

func TestValidateRefusesOtherVersions(t *testing.T) {
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	for _, ver := range []uint16{0, 2, 0x0A0A} {
		bad := remarshal(t, kp, func(c *mls.KeyPackage) { c.Version = ver })
		wantInvalid(t, "version", mls.Validate(bad, vectorOptions(kp)), "version: 0x"+hex4(ver)+" is not mls10")
	}
}

func TestValidateCipherSuitePolicy(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		kp := decodeVector(t, v)
		opts := vectorOptions(kp)
		opts.CipherSuites = []uint16{4, 5, 6, 7}
		wantInvalid(t, v.name, mls.Validate(kp, opts), "cipher_suite: cipher suite "+itoa(int(kp.CipherSuite))+" (MLS_128_", ") is not allowed")
		opts.CipherSuites = []uint16{kp.CipherSuite}
		if err := mls.Validate(kp, opts); err != nil {
			t.Errorf("%s: allowed suite refused: %v", v.name, err)
		}
	}
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	for _, s := range []uint16{0, 8, 0x0A0A, 0xffff} {
		bad := remarshal(t, kp, func(c *mls.KeyPackage) { c.CipherSuite = s })
		opts := vectorOptions(kp)
		opts.CipherSuites = []uint16{s} // listing it does not make it supported
		wantInvalid(t, "suite", mls.Validate(bad, opts), "cipher_suite: unsupported cipher suite 0x"+hex4(s))
		if _, err := bad.Ref(); err == nil {
			t.Errorf("Ref of suite %d succeeded", s)
		}
	}
}

func TestValidateKeySizes(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		kp := decodeVector(t, v)
		opts := vectorOptions(kp)
		for _, c := range []struct {
			change func(*mls.KeyPackage)
			want   string
		}{
			{func(c *mls.KeyPackage) { c.InitKey = c.InitKey[:len(c.InitKey)-1] }, "init_key: is " + itoa(len(kp.InitKey)-1) + " bytes"},
			{func(c *mls.KeyPackage) { c.InitKey = nil }, "init_key: is 0 bytes"},
			{func(c *mls.KeyPackage) { c.EncryptionKey = append(bytes.Clone(c.EncryptionKey), 0) }, "leaf_node.encryption_key: is " + itoa(len(kp.EncryptionKey)+1) + " bytes"},
			{func(c *mls.KeyPackage) { c.SignatureKey = c.SignatureKey[1:] }, "leaf_node.signature_key: is " + itoa(len(kp.SignatureKey)-1) + " bytes"},
		} {
			bad := remarshal(t, kp, c.change)
			wantInvalid(t, v.name, mls.Validate(bad, opts), c.want)
		}
		if kp.CipherSuite == 2 { // P-256: points must be on the curve
			for _, c := range []struct {
				change func(*mls.KeyPackage)
				want   string
			}{
				{func(c *mls.KeyPackage) { c.InitKey = offCurve(c.InitKey) }, "init_key: is not an uncompressed point"},
				{func(c *mls.KeyPackage) { c.EncryptionKey = offCurve(c.EncryptionKey) }, "leaf_node.encryption_key: is not an uncompressed point"},
				{func(c *mls.KeyPackage) { c.SignatureKey = offCurve(c.SignatureKey) }, "leaf_node.signature_key: is not an uncompressed point"},
			} {
				bad := remarshal(t, kp, c.change)
				wantInvalid(t, v.name, mls.Validate(bad, opts), c.want)
			}
		}
	}
}

func offCurve(p []byte) []byte {
	q := bytes.Clone(p)
	q[len(q)-1] ^= 1
	return q
}

func TestValidateLifetime(t *testing.T) {
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	at := func(c *mls.KeyPackage, nb, na uint64) { c.NotBefore, c.NotAfter = nb, na }
	const nb, na = 1_700_000_000, 1_700_000_000 + 3600
	life := remarshal(t, kp, func(c *mls.KeyPackage) { at(c, nb, na) })
	clock := func(s int64) mls.Options {
		return mls.Options{Now: func() time.Time { return time.Unix(s, 0) }}
	}
	wantInvalid(t, "before", mls.Validate(life, clock(nb-1)), "leaf_node.lifetime: not yet valid: not_before 2023-11-14T22:13:20Z is after now 2023-11-14T22:13:19Z")
	wantInvalid(t, "after", mls.Validate(life, clock(na+1)), "leaf_node.lifetime: expired: not_after 2023-11-14T23:13:20Z is before now 2023-11-14T23:13:21Z")
	wantInvalid(t, "pre-epoch clock", mls.Validate(remarshal(t, kp, func(c *mls.KeyPackage) { at(c, 0, na) }), clock(-1)), "not yet valid")
	// Within the lifetime, the lifetime check passes (and the altered
	// vector then fails on its signature).
	for _, s := range []int64{nb, nb + 1, na} {
		wantInvalid(t, "inside", mls.Validate(life, clock(s)), "leaf_node.signature: does not verify")
	}
	inverted := remarshal(t, kp, func(c *mls.KeyPackage) { at(c, na, nb) })
	wantInvalid(t, "inverted", mls.Validate(inverted, clock(nb)), "not_after 1700000000 is before not_before 1700003600")
	never := remarshal(t, kp, func(c *mls.KeyPackage) { at(c, 0, 1<<64-1) })
	wantInvalid(t, "unbounded", mls.Validate(never, clock(nb)), "lifetime of 18446744073709551615 seconds exceeds the maximum of 7776000 seconds (2160h0m0s)")
	opts := clock(nb)
	opts.MaxLifetime = -1
	wantInvalid(t, "unbounded, cap off", mls.Validate(never, opts), "leaf_node.signature: does not verify")
}

// The default cap is 90 days, inclusive; Options.MaxLifetime changes it.
func TestValidateMaxLifetime(t *testing.T) {
	b, err := mlstest.New(1, seeded(42))
	if err != nil {
		t.Fatal(err)
	}
	b.NotBefore = testNow.Add(-time.Hour)
	now := func() time.Time { return testNow }
	for _, c := range []struct {
		life time.Duration
		max  time.Duration
		ok   bool
	}{
		{mls.DefaultMaxLifetime, 0, true},
		{mls.DefaultMaxLifetime + time.Second, 0, false},
		{2 * time.Hour, time.Hour, false},
		{time.Hour, time.Hour, true},
		{100 * 365 * 24 * time.Hour, -1, true},
	} {
		b.NotAfter = b.NotBefore.Add(c.life)
		raw, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		_, err = mls.Parse(raw, mls.Options{Now: now, MaxLifetime: c.max})
		if c.ok && err != nil {
			t.Errorf("lifetime %v, max %v: %v", c.life, c.max, err)
		}
		if !c.ok {
			wantInvalid(t, "lifetime "+c.life.String(), err, "leaf_node.lifetime: lifetime of", "exceeds the maximum")
		}
	}
}

// With zero Options, the real clock and the 90-day cap apply.
func TestParseZeroOptionsUsesRealClock(t *testing.T) {
	b, err := mlstest.New(3, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.BuildWrapped()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mls.Parse(raw, mls.Options{}); err != nil {
		t.Errorf("fresh KeyPackage refused: %v", err)
	}
}

func TestValidateNil(t *testing.T) {
	wantInvalid(t, "nil", mls.Validate(nil, mls.Options{}), "nil KeyPackage")
}

// Ref is RefHash("MLS 1.0 KeyPackage Reference", Raw), computed here
// independently for SHA-256.
func TestRefMatchesIndependentComputation(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		kp := decodeVector(t, v)
		const label = "MLS 1.0 KeyPackage Reference"
		in := mlstest.AppendOpaque(nil, []byte(label))
		in = mlstest.AppendOpaque(in, v.bare)
		want := sha256.Sum256(in)
		got, err := kp.Ref()
		if err != nil || !bytes.Equal(got, want[:]) {
			t.Errorf("%s: Ref = %x, %v; want %x", v.name, got, err, want)
		}
	}
}

// Check does everything but the signatures: a KeyPackage with a flipped
// signature bit passes Check and fails VerifySignatures, while a
// structural fault fails Check itself.
func TestCheckLeavesSignaturesToVerifySignatures(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		if v.wrapped {
			continue
		}
		kp := decodeVector(t, v)
		opts := vectorOptions(kp)
		if err := mls.Check(kp, opts); err != nil {
			t.Fatalf("%s: Check: %v", v.name, err)
		}
		if err := mls.VerifySignatures(kp); err != nil {
			t.Fatalf("%s: VerifySignatures: %v", v.name, err)
		}
		flipped := bytes.Clone(kp.Signature)
		flipped[0] ^= 1
		bad := remarshal(t, kp, func(c *mls.KeyPackage) { c.Signature = flipped })
		if err := mls.Check(bad, opts); err != nil {
			t.Fatalf("%s: Check refused a bad signature it must not look at: %v", v.name, err)
		}
		wantInvalid(t, v.name, mls.VerifySignatures(bad), "signature: does not verify")
		same := remarshal(t, kp, func(c *mls.KeyPackage) { c.InitKey = c.EncryptionKey })
		wantInvalid(t, v.name, mls.Check(same, opts), "init_key: equals leaf_node.encryption_key")
	}
	wantInvalid(t, "nil", mls.Check(nil, mls.Options{}), "nil KeyPackage")
	wantInvalid(t, "nil", mls.VerifySignatures(nil), "nil KeyPackage")
}

// VerifyCost orders the suites by their signature scheme's cost.
func TestVerifyCostWeighsSlowSuitesMore(t *testing.T) {
	ed25519, p256, ed448, p384, p521 := mls.VerifyCost(1), mls.VerifyCost(2), mls.VerifyCost(4), mls.VerifyCost(7), mls.VerifyCost(5)
	if ed25519 != 1 || mls.VerifyCost(3) != 1 || !(ed25519 < p256 && p256 < ed448 && ed448 < p384 && p384 < p521) || mls.VerifyCost(6) != ed448 {
		t.Fatalf("costs 1..7: %d %d %d %d %d %d %d", mls.VerifyCost(1), p256, mls.VerifyCost(3), ed448, p521, mls.VerifyCost(6), p384)
	}
	if mls.VerifyCost(0) != 1 || mls.VerifyCost(0xffff) != 1 {
		t.Fatal("an unknown suite must cost 1: Check refuses it before any signature")
	}
}

// A client whose clock runs ahead stamps not_before in this server's
// future: Check accepts it up to Options.ClockSkew ahead and refuses it
// one second past, naming the allowed skew.
func TestCheckToleratesClockSkewOnNotBefore(t *testing.T) {
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	const now = 1_700_000_000
	ahead := func(d int64) *mls.KeyPackage {
		return remarshal(t, kp, func(c *mls.KeyPackage) { c.NotBefore, c.NotAfter = uint64(now+d), uint64(now+d+3600) })
	}
	opts := func(skew time.Duration) mls.Options {
		return mls.Options{Now: func() time.Time { return time.Unix(now, 0) }, ClockSkew: skew}
	}
	if err := mls.Check(ahead(30), opts(5*time.Minute)); err != nil {
		t.Errorf("not_before 30 s ahead, skew 5m: %v", err)
	}
	if err := mls.Check(ahead(300), opts(5*time.Minute)); err != nil {
		t.Errorf("not_before exactly 5m ahead, skew 5m: %v", err)
	}
	wantInvalid(t, "1 s past the skew", mls.Check(ahead(301), opts(5*time.Minute)), "leaf_node.lifetime: not yet valid", "by more than the allowed clock skew of 5m0s")
	wantInvalid(t, "no skew", mls.Check(ahead(1), opts(0)), "by more than the allowed clock skew of 0s")
	wantInvalid(t, "negative skew", mls.Check(ahead(1), opts(-time.Minute)), "allowed clock skew of 0s")
}
