package mls

import (
	"fmt"
	"slices"
	"time"
)

// DefaultMaxLifetime is the longest lifetime (not_after - not_before)
// Validate accepts when Options.MaxLifetime is zero.
const DefaultMaxLifetime = 90 * 24 * time.Hour

// Options is the policy Validate applies. Its zero value is the documented
// default policy; Validate does not modify it.
type Options struct {
	// Now returns the current time; nil means time.Now. The lifetime is
	// compared at one-second granularity (Now().Unix()).
	Now func() time.Time
	// MaxLifetime caps not_after - not_before. Zero means
	// DefaultMaxLifetime (90 days); a negative value disables the cap.
	MaxLifetime time.Duration
	// CipherSuites lists the allowed cipher suites; nil means all of RFC
	// 9420's suites 1 to 7. Identifiers this package does not implement
	// are never accepted, even if listed.
	CipherSuites []uint16
	// ClockSkew is how far after now not_before may be: clients stamp it
	// with their own clock (go-mls sets it to exactly now), so one running
	// a little fast would otherwise be refused. Zero or negative allows
	// none. p2core passes its Config.ClockSkew (default 5 minutes).
	ClockSkew time.Duration
}

// Check returns an error naming the first of opts.CipherSuites that this
// package does not implement: listing one accepts nothing, so it is a
// configuration mistake. The error does not match ErrInvalid.
func (opts Options) Check() error {
	for _, id := range opts.CipherSuites {
		if lookupSuite(id) == nil {
			return fmt.Errorf("mls: cipher suite %d is not implemented (implemented: 1 to %d)", id, len(suites)-1)
		}
	}
	return nil
}

// Labels of the two SignWithLabel signatures in a KeyPackage.
const (
	labelLeafNodeTBS   = "LeafNodeTBS"
	labelKeyPackageTBS = "KeyPackageTBS"
)

// keyPackageRefLabel is the RefHash label of a KeyPackageRef.
const keyPackageRefLabel = "MLS 1.0 KeyPackage Reference"

// Validate checks a decoded KeyPackage against RFC 9420 and opts, doing
// every check that needs no server state: Check, then VerifySignatures.
// The first failure is returned; it matches ErrInvalid. It is safe for
// concurrent use on the same KeyPackage.
func Validate(kp *KeyPackage, opts Options) error {
	if err := Check(kp, opts); err != nil {
		return err
	}
	return VerifySignatures(kp)
}

// Check does the checks of Validate that need no signature verification,
// which cost little next to it (microseconds; a signature of the P-521
// suite costs milliseconds), so a server can refuse a bad batch before it
// verifies anything:
//
//   - version is mls10 and the cipher suite is allowed by opts;
//   - init_key and leaf_node.encryption_key are valid HPKE public keys of
//     the suite (size, and curve membership for the NIST suites), and
//     differ; leaf_node.signature_key is a valid key of the suite;
//   - the lifetime is current (not_before <= now + opts.ClockSkew,
//     now <= not_after) and not longer than the cap of opts;
//   - the credential type is listed in capabilities.credentials;
//   - neither the leaf's nor the KeyPackage's extensions repeat a type;
//   - every extension type used, in the leaf or the KeyPackage, is listed
//     in capabilities.extensions, except the default types 1 to 5 (RFC
//     9420 section 7.2) and GREASE values.
//
// The checks run in that order and the first failure is returned; it
// matches ErrInvalid. The leaf_node_source is key_package by construction
// (Decode refuses any other). Check does not check the credential itself
// (identity or certificate chain), which is the application's job, nor
// anything that needs server state.
func Check(kp *KeyPackage, opts Options) error {
	if kp == nil {
		return invalid("", "nil KeyPackage")
	}
	if kp.Version != VersionMLS10 {
		return invalid("version", fmt.Sprintf("0x%04x is not mls10 (0x0001)", kp.Version))
	}
	s := lookupSuite(kp.CipherSuite)
	if s == nil {
		return invalid("cipher_suite", fmt.Sprintf("unsupported cipher suite 0x%04x", kp.CipherSuite))
	}
	if opts.CipherSuites != nil && !slices.Contains(opts.CipherSuites, kp.CipherSuite) {
		return invalid("cipher_suite", fmt.Sprintf("cipher suite %d (%s) is not allowed", kp.CipherSuite, s.name))
	}
	if why := s.checkHPKEKey(kp.InitKey); why != "" {
		return invalid("init_key", why)
	}
	if why := s.checkHPKEKey(kp.EncryptionKey); why != "" {
		return invalid("leaf_node.encryption_key", why)
	}
	if string(kp.InitKey) == string(kp.EncryptionKey) {
		return invalid("init_key", "equals leaf_node.encryption_key")
	}
	if _, why := newVerifier(s, kp.SignatureKey); why != "" {
		return invalid("leaf_node.signature_key", why)
	}
	if err := checkLifetime(kp.NotBefore, kp.NotAfter, opts); err != nil {
		return err
	}
	if !slices.Contains(kp.Capabilities.Credentials, kp.Credential.Type) {
		return invalid("leaf_node.credential", fmt.Sprintf("credential type %d is not listed in leaf_node.capabilities.credentials", kp.Credential.Type))
	}
	if err := checkExtensions("leaf_node.extensions", kp.LeafExtensions, kp.Capabilities.Extensions); err != nil {
		return err
	}
	return checkExtensions("extensions", kp.Extensions, kp.Capabilities.Extensions)
}

// VerifySignatures checks that leaf_node.signature (label "LeafNodeTBS")
// and the KeyPackage signature (label "KeyPackageTBS") both verify under
// leaf_node.signature_key. Its cost depends on the cipher suite
// (VerifyCost). A failure matches ErrInvalid.
func VerifySignatures(kp *KeyPackage) error {
	if kp == nil {
		return invalid("", "nil KeyPackage")
	}
	s := lookupSuite(kp.CipherSuite)
	if s == nil {
		return invalid("cipher_suite", fmt.Sprintf("unsupported cipher suite 0x%04x", kp.CipherSuite))
	}
	v, why := newVerifier(s, kp.SignatureKey)
	if why != "" {
		return invalid("leaf_node.signature_key", why)
	}
	if !v.verifyWithLabel(labelLeafNodeTBS, kp.LeafNodeTBS, kp.LeafSignature) {
		return invalid("leaf_node.signature", "does not verify (SignWithLabel \"LeafNodeTBS\") with leaf_node.signature_key")
	}
	if !v.verifyWithLabel(labelKeyPackageTBS, kp.KeyPackageTBS, kp.Signature) {
		return invalid("signature", "does not verify (SignWithLabel \"KeyPackageTBS\") with leaf_node.signature_key")
	}
	return nil
}

// VerifyCost is the CPU cost of VerifySignatures for a KeyPackage of
// cipher suite id, relative to the Ed25519 suites (1): measured on amd64
// and rounded, 2 for P-256, 4 for Ed448, 8 for P-384 and 24 for P-521. A
// suite this package does not implement costs 1 (Check refuses it before
// any signature is verified). Servers weigh signature work by it to bound
// what one caller can make them do.
func VerifyCost(id uint16) int {
	if s := lookupSuite(id); s != nil && s.verifyCost > 0 {
		return s.verifyCost
	}
	return 1
}

// Parse decodes b with Decode and checks the result with Validate. It
// returns a KeyPackage only if both succeed; every error matches
// ErrInvalid.
func Parse(b []byte, opts Options) (*KeyPackage, error) {
	kp, err := Decode(b)
	if err != nil {
		return nil, err
	}
	if err := Validate(kp, opts); err != nil {
		return nil, err
	}
	return kp, nil
}

// Ref returns the KeyPackageRef of kp: RefHash("MLS 1.0 KeyPackage
// Reference", Raw) with the hash of kp's cipher suite (RFC 9420 section
// 5.2). It fails (matching ErrInvalid) only if the cipher suite is not one
// this package implements.
func (kp *KeyPackage) Ref() ([]byte, error) {
	s := lookupSuite(kp.CipherSuite)
	if s == nil {
		return nil, invalid("cipher_suite", fmt.Sprintf("unsupported cipher suite 0x%04x", kp.CipherSuite))
	}
	return s.refHash(keyPackageRefLabel, kp.Raw), nil
}

func checkLifetime(notBefore, notAfter uint64, opts Options) error {
	if notAfter < notBefore {
		return invalid("leaf_node.lifetime", fmt.Sprintf("not_after %d is before not_before %d", notAfter, notBefore))
	}
	nowFn := opts.Now
	if nowFn == nil {
		nowFn = time.Now
	}
	now := nowFn()
	sec := now.Unix()
	skew := max(opts.ClockSkew, 0)
	if sec < 0 || uint64(sec)+uint64(skew/time.Second) < notBefore {
		return invalid("leaf_node.lifetime", fmt.Sprintf("not yet valid: not_before %s is after now %s by more than the allowed clock skew of %s", fmtUnix(notBefore), now.UTC().Format(time.RFC3339), skew))
	}
	if uint64(sec) > notAfter {
		return invalid("leaf_node.lifetime", fmt.Sprintf("expired: not_after %s is before now %s", fmtUnix(notAfter), now.UTC().Format(time.RFC3339)))
	}
	maxLife := opts.MaxLifetime
	if maxLife == 0 {
		maxLife = DefaultMaxLifetime
	}
	if maxLife > 0 {
		if life := notAfter - notBefore; life > uint64(maxLife/time.Second) {
			return invalid("leaf_node.lifetime", fmt.Sprintf("lifetime of %d seconds exceeds the maximum of %d seconds (%s)", life, uint64(maxLife/time.Second), maxLife))
		}
	}
	return nil
}

// fmtUnix formats seconds since the epoch as RFC 3339, or as a number when
// beyond year 9999.
func fmtUnix(s uint64) string {
	if s > maxUnixTime {
		return fmt.Sprintf("%d", s)
	}
	return unixTime(s).Format(time.RFC3339)
}

// checkExtensions refuses duplicate types in exts and any non-default,
// non-GREASE type missing from listed. It is linear in the input size even
// for adversarially long lists.
func checkExtensions(field string, exts []Extension, listed []uint16) error {
	if len(exts) == 0 {
		return nil
	}
	if len(exts) <= 8 && len(listed) <= 32 {
		for i, e := range exts {
			for _, prev := range exts[:i] {
				if prev.Type == e.Type {
					return duplicateExtension(field, e.Type)
				}
			}
			if !isDefaultExtension(e.Type) && !IsGREASE(e.Type) && !slices.Contains(listed, e.Type) {
				return unlistedExtension(field, e.Type)
			}
		}
		return nil
	}
	seen, ok := new(bitset), new(bitset)
	for _, t := range listed {
		ok.set(t)
	}
	for _, e := range exts {
		if seen.has(e.Type) {
			return duplicateExtension(field, e.Type)
		}
		seen.set(e.Type)
		if !isDefaultExtension(e.Type) && !IsGREASE(e.Type) && !ok.has(e.Type) {
			return unlistedExtension(field, e.Type)
		}
	}
	return nil
}

func duplicateExtension(field string, t uint16) error {
	return invalid(field, fmt.Sprintf("duplicate extension type 0x%04x", t))
}

func unlistedExtension(field string, t uint16) error {
	return invalid(field, fmt.Sprintf("extension type 0x%04x is not listed in leaf_node.capabilities.extensions", t))
}

// bitset is a set of uint16 values.
type bitset [1 << 10]uint64

func (b *bitset) set(v uint16)      { b[v>>6] |= 1 << (v & 63) }
func (b *bitset) has(v uint16) bool { return b[v>>6]&(1<<(v&63)) != 0 }

// isDefaultExtension reports whether t is one of the extension types RFC
// 9420 defines (application_id, ratchet_tree, required_capabilities,
// external_pub, external_senders), which need not be listed in
// capabilities.
func isDefaultExtension(t uint16) bool { return t >= 1 && t <= 5 }
