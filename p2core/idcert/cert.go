package idcert

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"hash"
	"math"
	"math/bits"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
	"github.com/google/uuid"
)

// Notation names carried, hashed and non-critical, by every ID-Cert.
const (
	NotationSessionID = "session-id@polyproto.org"
	NotationSerial    = "serial@polyproto.org"
)

// DefaultCertLifetime is the validity of an ID-Cert when
// IssueParams.Lifetime is zero.
const DefaultCertLifetime = 30 * 24 * time.Hour

// MaxCertSize bounds the ID-Certs that [Verify] and [ParseCert] read.
const MaxCertSize = 1 << 20

// IssueParams are the per-certificate inputs of [Issue]. The zero value of
// each field is a documented default.
type IssueParams struct {
	// SessionID is the session the certificate is issued to: 1-32
	// printable ASCII characters. Required.
	SessionID string
	// Serial identifies the certificate; the caller keeps it unique per
	// server. The zero UUID means a fresh UUIDv7.
	Serial uuid.UUID
	// Now is the issue time, truncated to the second. Zero means time.Now().
	// A client key created after Now (see Policy.ClockSkew) is certified
	// as of its creation time instead.
	Now time.Time
	// Lifetime is how long the certificate is valid. 0 means
	// DefaultCertLifetime (30 days). The expiry is clamped so that it never
	// passes the server key's or the client key's own expiry.
	Lifetime time.Duration
}

// Cert is an ID-Cert and what it says. [Issue], [Verify] and [ParseCert]
// return it; only [Issue] and [Verify] guarantee that the fields are backed
// by a valid signature. All times are UTC, to the second.
type Cert struct {
	// FID is the certified federation ID: the address part of UserID,
	// lower-cased.
	FID string
	// UserID is the certified User ID, exactly as in the client's key.
	UserID string
	// SessionID is the value of the session-id@polyproto.org notation.
	SessionID string
	// Serial is the value of the serial@polyproto.org notation.
	Serial uuid.UUID
	// IssuedAt is the certification's creation time.
	IssuedAt time.Time
	// Expires is the first instant at which the certificate is no longer
	// valid.
	Expires time.Time
	// IssuerFingerprint is the server key's fingerprint.
	IssuerFingerprint []byte
	// ClientFingerprint is the fingerprint of the client's primary key.
	ClientFingerprint []byte
	// ClientAlgorithm is the client primary key's algorithm family.
	ClientAlgorithm ClientKeyAlgorithm
	// MLSSignatureKey is the client's primary public key in MLS
	// signature_key form (see [ClientKey.MLSSignatureKey]); nil for RSA.
	MLSSignatureKey []byte
	// Raw is the complete ID-Cert, binary OpenPGP: the client's
	// transferable public key with the certification attached.
	Raw []byte
}

// Issue certifies client's FID User ID with server's key and returns the
// ID-Cert. The certification is a generic certification (type 0x10) whose
// hashed area holds the creation time, an expiration time (see
// IssueParams.Lifetime), the issuer fingerprint (plus the issuer key ID for
// v4 server keys) and the two non-critical, human-readable notations
// NotationSessionID and NotationSerial. It is hashed with SHA-256 (SHA-512
// for Ed448).
//
// Cert.Raw holds every packet of the client's key exactly as given, with the
// certification inserted after the packets of the FID User ID; signatures
// the same server key made earlier over this key are left out so that the
// result carries exactly one. Errors match [ErrInvalidServerKey] (no private
// part, key not valid at Now) or [ErrInvalidParams].
func Issue(server *ServerKey, client *ClientKey, p IssueParams) (*Cert, error) {
	if server == nil || server.pub == nil || server.priv == nil {
		return nil, fail(ErrInvalidServerKey, "issuing needs a server key with its private part")
	}
	if client == nil || client.entity == nil {
		return nil, fail(ErrInvalidParams, "no client key (use ParseClientKey)")
	}
	if !validSessionID(p.SessionID) {
		return nil, fail(ErrInvalidParams, "session ID must be 1-32 printable ASCII characters")
	}
	serial := p.Serial
	if serial == uuid.Nil {
		var err error
		if serial, err = uuid.NewV7(); err != nil {
			return nil, fail(ErrInvalidParams, "generating a serial: %v", err)
		}
	} else if serial.Variant() != uuid.RFC4122 {
		return nil, fail(ErrInvalidParams, "serial %s is not an RFC 9562 UUID", serial)
	}
	now := p.Now
	if now.IsZero() {
		now = time.Now()
	}
	now = now.Truncate(time.Second).UTC()
	if now.Unix() <= 0 || now.Unix() > math.MaxUint32 {
		return nil, fail(ErrInvalidParams, "time %v cannot be stored in OpenPGP", now)
	}
	lifetime := p.Lifetime
	if lifetime == 0 {
		lifetime = DefaultCertLifetime
	}
	if lifetime < time.Second || lifetime/time.Second > math.MaxUint32 {
		return nil, fail(ErrInvalidParams, "lifetime %v is out of range (1s to ~136 years)", p.Lifetime)
	}
	if now.Before(server.created) {
		return nil, fail(ErrInvalidServerKey, "the server key was created at %s, after the issue time %s", server.created.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	// A client key from a clock running ahead (ParseClientKey's
	// Policy.ClockSkew) is certified as of its creation: GnuPG refuses a
	// certification older than the key it certifies.
	if created := client.entity.PrimaryKey.CreationTime.UTC(); now.Before(created) {
		now = created
	}
	expires := now.Add(lifetime)
	if !server.expires.IsZero() {
		if !now.Before(server.expires) {
			return nil, fail(ErrInvalidServerKey, "the server key expired at %s; rotate it", server.expires.Format(time.RFC3339))
		}
		if server.expires.Before(expires) {
			expires = server.expires
		}
	}
	if !client.expires.IsZero() {
		if !now.Before(client.expires) {
			return nil, fail(ErrInvalidParams, "the client key expired at %s", client.expires.Format(time.RFC3339))
		}
		if client.expires.Before(expires) {
			expires = client.expires
		}
	}
	secs := uint32(expires.Sub(now) / time.Second)

	hashAlg := crypto.SHA256
	if server.alg == ServerEd448 {
		hashAlg = crypto.SHA512
	}
	keyID := server.pub.KeyId
	sig := &packet.Signature{
		Version:         server.pub.Version,
		SigType:         packet.SigTypeGenericCert,
		PubKeyAlgo:      server.pub.PubKeyAlgo,
		Hash:            hashAlg,
		CreationTime:    now,
		SigLifetimeSecs: &secs,
		Notations: []*packet.Notation{
			{Name: NotationSessionID, Value: []byte(p.SessionID), IsHumanReadable: true},
			{Name: NotationSerial, Value: []byte(serial.String()), IsHumanReadable: true},
		},
	}
	if server.pub.Version == 4 {
		sig.IssuerKeyId = &keyID
	}
	// Sign fills in the issuer fingerprint. The salt notation go-crypto
	// adds by default to v4 signatures is switched off: the serial already
	// makes every signed message unique, and v6 signatures carry a salt.
	cfg := &packet.Config{
		Time:                                  func() time.Time { return now },
		NonDeterministicSignaturesViaNotation: packet.BoolPointer(false),
	}
	h, err := sig.PrepareSign(cfg) // hashes the salt of a v6 signature
	if err != nil {
		return nil, fail(ErrInvalidServerKey, "signing: %v", err)
	}
	if err := writeCertifiedData(h, sig.Version, client.pkts[0].body, client.uid); err != nil {
		return nil, fail(ErrInvalidParams, "%v", err)
	}
	if err := sig.Sign(h, server.priv, cfg); err != nil {
		return nil, fail(ErrInvalidServerKey, "signing: %v", err)
	}
	var sigBytes bytes.Buffer
	if err := sig.Serialize(&sigBytes); err != nil {
		return nil, fail(ErrInvalidServerKey, "serialising the signature: %v", err)
	}

	return &Cert{
		FID:               client.fid,
		UserID:            client.uid,
		SessionID:         p.SessionID,
		Serial:            serial,
		IssuedAt:          now,
		Expires:           expires.UTC(),
		IssuerFingerprint: server.Fingerprint(),
		ClientFingerprint: client.Fingerprint(),
		ClientAlgorithm:   client.alg,
		MLSSignatureKey:   bytes.Clone(client.mlsKey),
		Raw:               attachCertification(client, server, sigBytes.Bytes()),
	}, nil
}

// attachCertification returns the client's packets with sig inserted after
// the packets of the FID User ID, leaving out signatures that server made
// earlier.
func attachCertification(client *ClientKey, server *ServerKey, sig []byte) []byte {
	insertAfter := client.uidIndex
	for insertAfter+1 < len(client.pkts) && client.pkts[insertAfter+1].tag == tagSignature {
		insertAfter++
	}
	var out bytes.Buffer
	out.Grow(packetsLen(client.pkts) + len(sig))
	for i, pk := range client.pkts {
		if pk.tag != tagSignature || !issuedBy(pk, server) {
			out.Write(pk.full)
		}
		if i == insertAfter {
			out.Write(sig)
		}
	}
	return out.Bytes()
}

// issuedBy reports whether the signature packet pk names server as its
// issuer. Packets that do not parse are not the server's.
func issuedBy(pk rawPacket, server *ServerKey) (yes bool) {
	defer func() {
		if recover() != nil {
			yes = false
		}
	}()
	p, err := packet.Read(bytes.NewReader(pk.full))
	if err != nil {
		return false
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return false
	}
	if len(sig.IssuerFingerprint) > 0 {
		return bytes.Equal(sig.IssuerFingerprint, server.pub.Fingerprint)
	}
	return sig.IssuerKeyId != nil && *sig.IssuerKeyId == server.pub.KeyId
}

// Verify checks an ID-Cert against the server key that should have issued
// it, at time now, and returns what it certifies. It requires that:
//
//   - cert is one transferable public key (binary, at most MaxCertSize
//     bytes, no private material) whose primary key is not revoked (and
//     that carries at most 8 key revocation signatures);
//   - exactly one signature in it names server's fingerprint as issuer, and
//     it is a generic certification (0x10) over the primary key and a User
//     ID of the form "alice@example.com" or "Alice <alice@example.com>",
//     hashed with SHA-256 or stronger, cryptographically valid;
//   - it carries each of NotationSessionID (1-32 printable ASCII) and
//     NotationSerial (a canonical UUID) exactly once, and no critical
//     notation;
//   - it was made while the server key was valid, has an expiration time not
//     past the server key's, and IssuedAt <= now < Expires (a zero now
//     means time.Now()).
//
// go-crypto checks neither expiry nor notations on certifications, so all of
// this is done here. Errors match [ErrInvalidCert]; an expired certificate
// also matches [ErrCertExpired]; a nil server key gives
// [ErrInvalidServerKey]. Verify does not compare the FID with an expected
// one: use [VerifyFID]. It does not re-check the client's self-signatures,
// which the issuing server checked: the server's certification is what it
// vouches for.
func Verify(cert []byte, server *ServerKey, now time.Time) (c *Cert, err error) {
	if server == nil || server.pub == nil {
		return nil, fail(ErrInvalidServerKey, "no server key")
	}
	if now.IsZero() {
		now = time.Now()
	}
	defer recoverInto(&err, ErrInvalidCert)
	pkts, e, err := readCert(cert)
	if err != nil {
		return nil, err
	}
	var found []certification
	for _, cand := range certifications(pkts, e) {
		fp := cand.sig.IssuerFingerprint
		if len(fp) > 0 && bytes.Equal(fp, server.pub.Fingerprint) && int(cand.sig.IssuerKeyVersion) == server.pub.Version {
			found = append(found, cand)
		}
	}
	switch len(found) {
	case 0:
		return nil, fail(ErrInvalidCert, "no certification by server key %X", server.pub.Fingerprint)
	case 1:
	default:
		return nil, fail(ErrInvalidCert, "%d certifications by server key %X; an ID-Cert carries exactly one", len(found), server.pub.Fingerprint)
	}
	cand := found[0]
	sig := cand.sig
	if sig.SigType != packet.SigTypeGenericCert {
		return nil, fail(ErrInvalidCert, "the certification has type 0x%02x, not 0x10", uint8(sig.SigType))
	}
	if !canonicalMPIs(sig) {
		return nil, fail(ErrInvalidCert, "the certification's signature values are not minimally encoded")
	}
	if !strongHash(sig.Hash) {
		return nil, fail(ErrInvalidCert, "the certification uses the weak hash %v", sig.Hash)
	}
	if sig.Version != server.pub.Version {
		return nil, fail(ErrInvalidCert, "a v%d signature cannot come from a v%d key", sig.Version, server.pub.Version)
	}
	if err := verifyCertification(server.pub, sig, pkts[0].body, cand.uid); err != nil {
		return nil, fail(ErrInvalidCert, "bad signature by server key %X over User ID %q: %v", server.pub.Fingerprint, truncateForMessage([]byte(cand.uid)), err)
	}
	c, err = certFrom(cand, e, cert)
	if err != nil {
		return nil, err
	}
	if c.IssuedAt.Before(server.created) {
		return nil, fail(ErrInvalidCert, "issued at %s, before the server key existed", c.IssuedAt.Format(time.RFC3339))
	}
	if !server.expires.IsZero() && c.Expires.After(server.expires) {
		return nil, fail(ErrInvalidCert, "expires at %s, after the server key (%s)", c.Expires.Format(time.RFC3339), server.expires.Format(time.RFC3339))
	}
	if now.Before(c.IssuedAt) {
		return nil, fail(ErrInvalidCert, "not valid before %s", c.IssuedAt.Format(time.RFC3339))
	}
	if !now.Before(c.Expires) {
		return nil, fmt.Errorf("%w: %w: expired at %s", ErrInvalidCert, ErrCertExpired, c.Expires.Format(time.RFC3339))
	}
	if e.Revoked(now) {
		return nil, fail(ErrInvalidCert, "the client key is revoked")
	}
	return c, nil
}

// ParseCert reads what an ID-Cert says without checking any signature or
// time, for indexing certificates already verified or issued. It finds the
// single generic certification carrying NotationSerial and applies the same
// structural rules as [Verify] to it. Never trust its result for
// authentication. Errors match [ErrInvalidCert].
func ParseCert(cert []byte) (c *Cert, err error) {
	defer recoverInto(&err, ErrInvalidCert)
	pkts, e, err := readCert(cert)
	if err != nil {
		return nil, err
	}
	var found []certification
	for _, cand := range certifications(pkts, e) {
		if cand.sig.SigType != packet.SigTypeGenericCert {
			continue
		}
		for _, n := range cand.sig.Notations {
			if n.Name == NotationSerial {
				found = append(found, cand)
				break
			}
		}
	}
	switch len(found) {
	case 0:
		return nil, fail(ErrInvalidCert, "no certification carrying %s", NotationSerial)
	case 1:
	default:
		return nil, fail(ErrInvalidCert, "%d certifications carry %s; an ID-Cert carries exactly one", len(found), NotationSerial)
	}
	if len(found[0].sig.IssuerFingerprint) == 0 {
		return nil, fail(ErrInvalidCert, "the certification names no issuer fingerprint")
	}
	return certFrom(found[0], e, cert)
}

// VerifyFID checks that c certifies fid (compared case-insensitively).
// The error matches [ErrInvalidCert].
func VerifyFID(c *Cert, fid string) error {
	if c == nil || !strings.EqualFold(c.FID, fid) {
		got := ""
		if c != nil {
			got = c.FID
		}
		return fail(ErrInvalidCert, "the certificate is for %q, not %q", got, fid)
	}
	return nil
}

// readCert frames and parses an ID-Cert as one transferable public key.
func readCert(cert []byte) ([]rawPacket, *openpgp.Entity, error) {
	if len(cert) > MaxCertSize {
		return nil, nil, fail(ErrInvalidCert, "%d bytes, more than the %d allowed", len(cert), MaxCertSize)
	}
	pkts, err := splitPackets(cert)
	if err != nil {
		return nil, nil, fail(ErrInvalidCert, "%v", err)
	}
	if err := checkKeyPacketTags(pkts); err != nil {
		return nil, nil, fail(ErrInvalidCert, "%v", err)
	}
	e, err := readSingleEntity(cert)
	if err != nil {
		return nil, nil, fail(ErrInvalidCert, "%v", err)
	}
	if !canonicalKeyPacket(e.PrimaryKey, pkts[0].body) {
		return nil, nil, fail(ErrInvalidCert, "the primary key packet is not canonically encoded")
	}
	if len(e.Revocations) > maxKeyRevocations {
		return nil, nil, fail(ErrInvalidCert, "the key carries %d revocation signatures, more than the %d accepted", len(e.Revocations), maxKeyRevocations)
	}
	return pkts, e, nil
}

// certification is a third-party signature found on a User ID.
type certification struct {
	uid string
	sig *packet.Signature
}

// certifications lists the third-party certifications of e in packet order.
// go-crypto only files certifications under User IDs that carry a
// self-signature, which an ID-Cert always does.
func certifications(pkts []rawPacket, e *openpgp.Entity) []certification {
	var out []certification
	for _, p := range pkts {
		if p.tag != tagUserID {
			continue
		}
		id := e.Identities[string(p.body)]
		if id == nil {
			continue
		}
		for _, vs := range id.OtherCertifications {
			out = append(out, certification{uid: id.Name, sig: vs.Packet})
		}
	}
	return out
}

// certFrom extracts and checks the ID-Cert fields of a certification.
func certFrom(cand certification, e *openpgp.Entity, raw []byte) (*Cert, error) {
	sig := cand.sig
	email, err := userIDEmail(cand.uid)
	switch {
	case errors.Is(err, errUserIDForm):
		return nil, fail(ErrInvalidCert, "the certified User ID %q is not of the form name@domain or \"Name <name@domain>\"", truncateForMessage([]byte(cand.uid)))
	case err != nil:
		return nil, fail(ErrInvalidCert, "the certified User ID %q: %v", truncateForMessage([]byte(cand.uid)), err)
	}
	var session, serial []*packet.Notation
	for _, n := range sig.Notations {
		switch {
		case n.IsCritical:
			return nil, fail(ErrInvalidCert, "the certification carries the critical notation %q", truncateForMessage([]byte(n.Name)))
		case n.Name == NotationSessionID:
			session = append(session, n)
		case n.Name == NotationSerial:
			serial = append(serial, n)
		}
	}
	if len(session) != 1 || len(serial) != 1 {
		return nil, fail(ErrInvalidCert, "the certification must carry %s and %s exactly once each (found %d and %d)", NotationSessionID, NotationSerial, len(session), len(serial))
	}
	if !session[0].IsHumanReadable || !validSessionID(string(session[0].Value)) {
		return nil, fail(ErrInvalidCert, "%s is not 1-32 printable ASCII characters", NotationSessionID)
	}
	u, err := uuid.ParseBytes(serial[0].Value)
	if err != nil || !serial[0].IsHumanReadable || u.String() != string(serial[0].Value) || u == uuid.Nil {
		return nil, fail(ErrInvalidCert, "%s is not a canonical UUID", NotationSerial)
	}
	if sig.SigLifetimeSecs == nil || *sig.SigLifetimeSecs == 0 {
		return nil, fail(ErrInvalidCert, "the certification has no expiration time")
	}
	alg, mls, err := keyAlgorithm(e.PrimaryKey)
	if err != nil {
		return nil, fail(ErrInvalidCert, "client key: %v", err)
	}
	issued := sig.CreationTime.UTC()
	return &Cert{
		FID:               strings.ToLower(email),
		UserID:            cand.uid,
		SessionID:         string(session[0].Value),
		Serial:            u,
		IssuedAt:          issued,
		Expires:           issued.Add(time.Duration(*sig.SigLifetimeSecs) * time.Second),
		IssuerFingerprint: bytes.Clone(sig.IssuerFingerprint),
		ClientFingerprint: bytes.Clone(e.PrimaryKey.Fingerprint),
		ClientAlgorithm:   alg,
		MLSSignatureKey:   mls,
		Raw:               bytes.Clone(raw),
	}, nil
}

// strongHash reports whether h is acceptable for an ID-Cert signature.
func strongHash(h crypto.Hash) bool {
	switch h {
	case crypto.SHA256, crypto.SHA384, crypto.SHA512, crypto.SHA3_256, crypto.SHA3_512:
		return true
	}
	return false
}

// canonicalMPIs reports whether every MPI of sig is minimally encoded. The
// bit count of a signature MPI is not covered by the signature, so without
// this check one certification would have several valid encodings.
func canonicalMPIs(sig *packet.Signature) bool {
	for _, f := range []any{sig.RSASignature, sig.EdDSASigR, sig.EdDSASigS, sig.ECDSASigR, sig.ECDSASigS, sig.DSASigR, sig.DSASigS} {
		m, ok := f.(interface {
			Bytes() []byte
			BitLength() uint16
		})
		if !ok {
			continue
		}
		b := m.Bytes()
		want := 0
		if len(b) > 0 {
			if b[0] == 0 {
				return false
			}
			want = 8*(len(b)-1) + bits.Len8(b[0])
		}
		if int(m.BitLength()) != want {
			return false
		}
	}
	return true
}

// writeCertifiedData hashes what a certification signs (RFC 9580, section
// 5.2.4): the certified key, introduced by a prefix that depends on the
// signature's version (0x99 and a two-octet length for v4, 0x9B and a
// four-octet length for v6), then 0xB4, a four-octet length and the User
// ID. keyBody is the key packet body exactly as the key carries it.
//
// go-crypto picks the prefix by the version of the certified key instead,
// which only agrees when both versions are equal; OpenPGP.js follows the
// RFC, so a v4 server key certifying a v6 client key (or the reverse) must
// be hashed here.
func writeCertifiedData(h hash.Hash, sigVersion int, keyBody []byte, uid string) error {
	n := len(keyBody)
	switch sigVersion {
	case 4:
		if n > 0xffff {
			return fmt.Errorf("the key packet is too large (%d bytes) for a v4 signature", n)
		}
		h.Write([]byte{0x99, byte(n >> 8), byte(n)})
	case 6:
		h.Write([]byte{0x9b, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	default:
		return fmt.Errorf("unsupported signature version %d", sigVersion)
	}
	h.Write(keyBody)
	u := len(uid)
	h.Write([]byte{0xb4, byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)})
	h.Write([]byte(uid))
	return nil
}

// verifyCertification checks sig by signer over (keyBody, uid), including
// the two hash-tag bytes: they are outside the signed data and go-crypto
// skips them for v4 signatures, GnuPG does not. Checking them means no byte
// of the certification can change without Verify noticing.
func verifyCertification(signer *packet.PublicKey, sig *packet.Signature, keyBody []byte, uid string) error {
	tag, err := sig.PrepareVerify()
	if err != nil {
		return err
	}
	if err := writeCertifiedData(tag, sig.Version, keyBody, uid); err != nil {
		return err
	}
	if err := packet.VerifyHashTag(tag, sig); err != nil {
		return err
	}
	h, err := sig.PrepareVerify()
	if err != nil {
		return err
	}
	if err := writeCertifiedData(h, sig.Version, keyBody, uid); err != nil {
		return err
	}
	return signer.VerifySignature(h, sig)
}
