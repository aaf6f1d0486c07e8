package interop

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core/idcert"
)

// issuedCert is an ID-Cert the server issued over a key made by one
// implementation.
type issuedCert struct {
	name    string       // which implementation made the key
	userID  string       // the User ID it carries
	session *session     // the session the cert was issued to
	raw     []byte       // route 8's answer, Base64-decoded
	cert    *idcert.Cert // what p2kit's own verifier reads from it
}

// TestIDCertsVerifyInGnuPGAndOpenPGPjs gets ID-Certs from the running
// example server (route 8) for keys made by GnuPG (both accepted User ID
// forms) and by OpenPGP.js, and checks each one with GnuPG, OpenPGP.js and
// p2kit's verifier: valid now with the session's notations, no longer valid
// 31 days later, and rejected by all three with one byte of the
// certification signature flipped.
func TestIDCertsVerifyInGnuPGAndOpenPGPjs(t *testing.T) {
	requireGPG(t)
	requireNode(t)
	t.Parallel()
	ctx := context.Background()

	srv := startServer(t)
	srv.register(t, "alice")
	serverBin, serverArm, serverKey := srv.serverKey(t)
	if serverKey.Domain() != "home.localhost" {
		t.Fatalf("server key domain = %q, want home.localhost", serverKey.Domain())
	}
	serverBinFile := writeFile(t, "server.pgp", serverBin)
	serverArmFile := writeFile(t, "server.asc", serverArm)

	makers := []struct {
		name, userID string
		make         func(t *testing.T, userID string) []byte
	}{
		{"GnuPGBareUserID", "alice@home.localhost", gpgGenKey},
		{"GnuPGNamedUserID", "Alice <alice@home.localhost>", gpgGenKey},
		{"OpenPGPjs", "Alice <alice@home.localhost>", func(t *testing.T, _ string) []byte {
			return mustNode(t, "openpgp-genkey.mjs", "alice@home.localhost")
		}},
	}
	var certs []issuedCert
	for _, m := range makers {
		sess := srv.login(t, "alice") // every login is a new session
		armored := m.make(t, m.userID)
		raw, err := sess.Client.IssueIDCert(ctx, string(armored))
		if err != nil {
			t.Fatalf("%s: route 8: %v", m.name, err)
		}
		c, err := idcert.Verify(raw, serverKey, time.Now())
		if err != nil {
			t.Fatalf("%s: p2kit rejects the ID-Cert it issued: %v", m.name, err)
		}
		if c.UserID != m.userID || c.FID != "alice@home.localhost" || c.SessionID != string(sess.SessionID) {
			t.Fatalf("%s: cert says user ID %q, FID %q, session %q; want %q, alice@home.localhost, %q",
				m.name, c.UserID, c.FID, c.SessionID, m.userID, sess.SessionID)
		}
		certs = append(certs, issuedCert{name: m.name, userID: m.userID, session: sess, raw: raw, cert: c})
	}

	// Route 9 publishes the same bytes: one current cert per session.
	published, err := certs[0].session.Client.UserIDCerts(ctx, certs[0].session.UserID, time.Time{})
	if err != nil {
		t.Fatalf("route 9: %v", err)
	}
	if len(published) != len(certs) {
		t.Fatalf("route 9 lists %d certs, want %d (one per session)", len(published), len(certs))
	}
	for _, c := range certs {
		if !slices.ContainsFunc(published, func(p []byte) bool { return bytes.Equal(p, c.raw) }) {
			t.Errorf("route 9 does not list the %s cert byte for byte", c.name)
		}
	}

	for _, c := range certs {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			later := c.cert.IssuedAt.Add(31 * 24 * time.Hour)
			if !later.After(c.cert.Expires) {
				t.Fatalf("cert expires %v, not within 31 days of %v: the expiry checks below would not test expiry", c.cert.Expires, c.cert.IssuedAt)
			}
			tampered := flipCertificationByte(t, c.raw)

			t.Run("GnuPGShowsGoodCertificationWithNotations", func(t *testing.T) {
				v := gpgInspect(t, serverArm, c.raw, serverKey.Fingerprint(), c.userID, time.Time{})
				if v.colonRC != "!" || v.class != "10x" {
					t.Errorf("colon sig record: validity %q class %q, want \"!\" and \"10x\"", v.colonRC, v.class)
				}
				if v.issuerFpr != strings.ToUpper(hex.EncodeToString(serverKey.Fingerprint())) {
					t.Errorf("issuer fingerprint %s, want the server key's %X", v.issuerFpr, serverKey.Fingerprint())
				}
				if v.created != c.cert.IssuedAt.Unix() || v.expires != c.cert.Expires.Unix() {
					t.Errorf("GnuPG reads created %d expires %d, p2kit %d and %d", v.created, v.expires, c.cert.IssuedAt.Unix(), c.cert.Expires.Unix())
				}
				// The server key is the only trusted introducer, so a full
				// validity of the User ID can only come from the server's
				// certification being good and current.
				if v.uidValidity != "f" {
					t.Errorf("User ID validity %q, want \"f\" (full) through the trusted server key", v.uidValidity)
				}
				if v.flags[3] != 'N' || v.flags[4] == 'X' {
					t.Errorf("sig line flags %q: want notation flag N and no expiry flag X", v.flags)
				}
				want := map[string]string{
					idcert.NotationSessionID: string(c.session.SessionID),
					idcert.NotationSerial:    c.cert.Serial.String(),
				}
				if !maps.Equal(v.notations, want) {
					t.Errorf("GnuPG shows notations %v, want %v", v.notations, want)
				}
			})

			t.Run("GnuPGMarksCertificationExpiredAfter31Days", func(t *testing.T) {
				v := gpgInspect(t, serverArm, c.raw, serverKey.Fingerprint(), c.userID, later)
				// GnuPG 2.2 still reports the signature itself as correct
				// ("!"), flags it expired (X) and no longer counts it: the
				// User ID drops from full to unknown validity.
				if v.humanRC != "!" || v.flags[4] != 'X' {
					t.Errorf("sig line %q: want status ! with expiry flag X", v.humanLine)
				}
				if v.uidValidity != "-" {
					t.Errorf("User ID validity %q after expiry, want \"-\" (unknown)", v.uidValidity)
				}
			})

			t.Run("OpenPGPjsAcceptsCertification", func(t *testing.T) {
				certFile := writeFile(t, "cert.pgp", c.raw)
				out := mustNode(t, "openpgp-verify.mjs", serverBinFile, certFile)
				var got struct {
					ServerFingerprint string            `json:"serverFingerprint"`
					KeyFingerprint    string            `json:"keyFingerprint"`
					UserID            string            `json:"userID"`
					Certifications    int               `json:"certifications"`
					Created           time.Time         `json:"created"`
					Expires           time.Time         `json:"expires"`
					Notations         map[string]string `json:"notations"`
				}
				if err := json.Unmarshal(out, &got); err != nil {
					t.Fatalf("openpgp-verify.mjs output %q: %v", out, err)
				}
				if got.ServerFingerprint != hex.EncodeToString(serverKey.Fingerprint()) ||
					got.KeyFingerprint != hex.EncodeToString(c.cert.ClientFingerprint) ||
					got.UserID != c.userID || got.Certifications != 1 {
					t.Errorf("OpenPGP.js reads %+v; want server %x, key %x, user ID %q, 1 certification",
						got, serverKey.Fingerprint(), c.cert.ClientFingerprint, c.userID)
				}
				if !got.Created.Equal(c.cert.IssuedAt) || !got.Expires.Equal(c.cert.Expires) {
					t.Errorf("OpenPGP.js reads created %v expires %v, p2kit %v and %v", got.Created, got.Expires, c.cert.IssuedAt, c.cert.Expires)
				}
				want := map[string]string{
					idcert.NotationSessionID: string(c.session.SessionID),
					idcert.NotationSerial:    c.cert.Serial.String(),
				}
				if !maps.Equal(got.Notations, want) {
					t.Errorf("OpenPGP.js reads notations %v, want %v", got.Notations, want)
				}
			})

			t.Run("OpenPGPjsRejectsCertificationAfter31Days", func(t *testing.T) {
				certFile := writeFile(t, "cert.pgp", c.raw)
				_, err := runNode(t, "openpgp-verify.mjs", serverArmFile, certFile, "--date", later.Format(time.RFC3339))
				if err == nil || !strings.Contains(err.Error(), "expired") {
					t.Errorf("OpenPGP.js at %v: got %v, want a rejection because the signature expired", later, err)
				}
			})

			t.Run("FlippedSignatureByteIsRejected", func(t *testing.T) {
				certFile := writeFile(t, "tampered.pgp", tampered)
				_, err := runNode(t, "openpgp-verify.mjs", serverBinFile, certFile)
				if err == nil || !strings.Contains(err.Error(), "is not valid") {
					t.Errorf("OpenPGP.js: got %v, want the certification reported as not valid", err)
				}
				v := gpgInspect(t, serverArm, tampered, serverKey.Fingerprint(), c.userID, time.Time{})
				if v.colonRC != "-" || v.uidValidity == "f" {
					t.Errorf("GnuPG: sig validity %q and User ID validity %q, want a bad signature (\"-\") that validates nothing", v.colonRC, v.uidValidity)
				}
				if _, err := idcert.Verify(tampered, serverKey, time.Now()); !errors.Is(err, idcert.ErrInvalidCert) {
					t.Errorf("p2kit: got %v, want ErrInvalidCert", err)
				}
			})

			t.Run("P2kitRejectsCertificationAfter31Days", func(t *testing.T) {
				if _, err := idcert.Verify(c.raw, serverKey, later); !errors.Is(err, idcert.ErrCertExpired) {
					t.Errorf("p2kit at %v: got %v, want ErrCertExpired", later, err)
				}
			})
		})
	}
}

// gpgGenKey makes an Ed25519 key for userID with GnuPG's quick key
// generation, in a home of its own, and returns it armored.
func gpgGenKey(t *testing.T, userID string) []byte {
	t.Helper()
	h := newGPGHome(t)
	h.must(t, nil, "--passphrase", "", "--quick-gen-key", userID, "ed25519")
	out := h.must(t, nil, "--armor", "--export")
	if !strings.HasPrefix(out, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
		t.Fatalf("gpg --export: %.80q", out)
	}
	return []byte(out)
}

// gpgView is what GnuPG says about the server's certification of one User
// ID.
type gpgView struct {
	uidValidity string // validity field of the uid record (colon listing)
	colonRC     string // validity of the sig record: "!" good, "-" bad
	class       string // signature class field, e.g. "10x"
	created     int64
	expires     int64
	issuerFpr   string
	humanLine   string // the sig line of the human-readable listing
	humanRC     string // its status character: "!" good, "-" bad
	// flags are its 6 flag characters: L (local), R (non-revocable),
	// P (policy URL), N (notation), X (expired), trust depth.
	flags     string
	notations map[string]string
}

// gpgSigLine matches a sig line of GnuPG 2.2's human-readable listing
// (keylist.c: "sig", status, class level, space, 6 flags, space, key ID):
//
//	sig!     NX  69AF5F5C964FED61 2026-11-27  home.localhost
var gpgSigLine = regexp.MustCompile(`^sig(.)(.) (.{6}) ([0-9A-F]{16}) `)

// gpgInspect imports the armored server key and the ID-Cert into a fresh
// GnuPG home and lists the signatures with --check-sigs, once with colons
// and once human-readable with notations, with the server key as the only
// trusted introducer. A non-zero at runs GnuPG with that faked, frozen
// system time.
func gpgInspect(t *testing.T, serverArmored, cert, serverFpr []byte, userID string, at time.Time) gpgView {
	t.Helper()
	h := newGPGHome(t)
	var opts []string
	if !at.IsZero() {
		opts = append(opts, "--faked-system-time", at.UTC().Format("20060102T150405")+"!")
	}
	h.must(t, serverArmored, append(opts, "--import")...)
	h.must(t, cert, append(opts, "--import")...)
	keyID := strings.ToUpper(hex.EncodeToString(serverFpr[len(serverFpr)-8:]))
	opts = append(opts, "--trusted-key", keyID)

	var v gpgView
	colons := h.must(t, nil, append(opts, "--with-colons", "--check-sigs")...)
	found := 0
	uid := ""
	for _, line := range strings.Split(colons, "\n") {
		f := strings.Split(line, ":")
		switch {
		case len(f) > 9 && f[0] == "uid":
			uid = f[9]
			if uid == userID {
				v.uidValidity = f[1]
			}
		case len(f) > 12 && f[0] == "sig" && uid == userID && f[4] == keyID:
			found++
			v.colonRC, v.class, v.issuerFpr = f[1], f[10], f[12]
			v.created, _ = strconv.ParseInt(f[5], 10, 64)
			v.expires, _ = strconv.ParseInt(f[6], 10, 64)
		case len(f) > 0 && (f[0] == "pub" || f[0] == "sub"):
			uid = ""
		}
	}
	if found != 1 {
		t.Fatalf("GnuPG lists %d certifications of %q by %s, want 1:\n%s", found, userID, keyID, colons)
	}

	human := h.must(t, nil, append(opts, "--list-options", "show-notations", "--check-sigs")...)
	v.notations = map[string]string{}
	uid, inSig := "", false
	for _, line := range strings.Split(human, "\n") {
		if n, ok := strings.CutPrefix(line, "   Signature notation: "); ok && inSig {
			name, value, _ := strings.Cut(n, "=")
			v.notations[name] = value
			continue
		}
		inSig = false
		switch m := gpgSigLine.FindStringSubmatch(line); {
		case strings.HasPrefix(line, "uid "):
			_, uid, _ = strings.Cut(line, "] ")
		case strings.HasPrefix(line, "pub ") || strings.HasPrefix(line, "sub "):
			uid = ""
		case m != nil && uid == userID && m[4] == keyID:
			v.humanLine, v.humanRC, v.flags = line, m[1], m[3]
			inSig = true
		}
	}
	if v.humanLine == "" {
		t.Fatalf("no sig line by %s under %q in:\n%s", keyID, userID, human)
	}
	return v
}

// flipCertificationByte returns a copy of an ID-Cert with the last byte of
// its single generic certification (v4 signature packet of type 0x10)
// flipped: a byte of the signature value itself.
func flipCertificationByte(t *testing.T, cert []byte) []byte {
	t.Helper()
	pkts, err := splitPackets(cert)
	if err != nil {
		t.Fatalf("ID-Cert: %v", err)
	}
	out := bytes.Clone(cert)
	n := 0
	for _, p := range pkts {
		body := cert[p.body:p.end]
		if p.tag == 2 && len(body) > 2 && body[0] == 4 && body[1] == 0x10 {
			out[p.end-1] ^= 0x01
			n++
		}
	}
	if n != 1 {
		t.Fatalf("ID-Cert has %d v4 generic certifications, want 1", n)
	}
	return out
}

// pgpPacket locates one OpenPGP packet: cert[body:end] is its body.
type pgpPacket struct {
	tag       int
	body, end int
}

// splitPackets splits binary OpenPGP data into packets (RFC 9580 section
// 4.2), old and new header formats, without partial lengths.
func splitPackets(b []byte) ([]pgpPacket, error) {
	var out []pgpPacket
	for i := 0; i < len(b); {
		h := b[i]
		if h&0x80 == 0 {
			return nil, fmt.Errorf("offset %d: not a packet header", i)
		}
		var tag, hdr, n int
		if h&0x40 != 0 { // new format
			tag = int(h & 0x3f)
			if i+1 >= len(b) {
				return nil, errors.New("truncated header")
			}
			switch l := b[i+1]; {
			case l < 192:
				hdr, n = 2, int(l)
			case l < 224:
				if i+2 >= len(b) {
					return nil, errors.New("truncated header")
				}
				hdr, n = 3, (int(l)-192)<<8+int(b[i+2])+192
			case l == 255:
				if i+5 >= len(b) {
					return nil, errors.New("truncated header")
				}
				hdr, n = 6, int(b[i+2])<<24|int(b[i+3])<<16|int(b[i+4])<<8|int(b[i+5])
			default:
				return nil, fmt.Errorf("offset %d: partial body length", i)
			}
		} else { // old format
			tag = int(h>>2) & 0x0f
			lenBytes := [...]int{1, 2, 4, 0}[h&3]
			if lenBytes == 0 {
				return nil, fmt.Errorf("offset %d: indeterminate length", i)
			}
			if i+lenBytes >= len(b) {
				return nil, errors.New("truncated header")
			}
			for _, c := range b[i+1 : i+1+lenBytes] {
				n = n<<8 | int(c)
			}
			hdr = 1 + lenBytes
		}
		if n < 0 || i+hdr+n > len(b) {
			return nil, fmt.Errorf("offset %d: packet longer than the data", i)
		}
		out = append(out, pgpPacket{tag: tag, body: i + hdr, end: i + hdr + n})
		i += hdr + n
	}
	return out, nil
}
