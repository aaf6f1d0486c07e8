package storetest

import (
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// zoned returns t in a zone that is not UTC.
func zoned(t time.Time) time.Time { return t.In(time.FixedZone("IST", 5*3600+30*60)) }

// utcCases feed times in another zone and expect the same instants back in
// UTC (the comparison helpers check the location of every returned time).
func utcCases() []testCase {
	return []testCase{
		{"Tokens", func(t *testing.T, s p2core.Store) {
			var g gen
			tk := g.token(7, serverA, zoned(base()), zoned(base().Add(time.Minute)))
			ok(t, s.CreateToken(t.Context(), tk), "CreateToken")
			got, err := s.RedeemToken(t.Context(), tk.Hash, serverA, zoned(base()))
			ok(t, err, "RedeemToken")
			sameToken(t, tk, got)
		}},
		{"Sessions", func(t *testing.T, s p2core.Store) {
			var g gen
			ss := g.session(7, "laptop", zoned(base()))
			ok(t, create(t.Context(), s, ss), "CreateSession")
			got, err := s.SessionByToken(t.Context(), ss.TokenHash)
			ok(t, err, "SessionByToken")
			sameSession(t, ss, got)
			all, err := s.Sessions(t.Context(), 7)
			ok(t, err, "Sessions")
			count(t, len(all), 1, "sessions")
			sameSession(t, ss, all[0])
		}},
		{"Certs", func(t *testing.T, s p2core.Store) {
			var g gen
			c1 := g.cert(7, "laptop", zoned(base()), zoned(base().Add(time.Hour)))
			c2 := g.cert(7, "laptop", zoned(base().Add(time.Minute)), zoned(base().Add(time.Hour)))
			ok(t, s.PutIDCert(t.Context(), c1), "PutIDCert")
			ok(t, s.PutIDCert(t.Context(), c2), "PutIDCert")
			got, err := s.CurrentIDCert(t.Context(), 7, "laptop")
			ok(t, err, "CurrentIDCert")
			sameCert(t, c2, got)
			wantCerts(t, s, 7, zoned(base()), superseded(c1, c2.IssuedAt))
		}},
		{"ServerKeys", func(t *testing.T, s p2core.Store) {
			var g gen
			k1 := g.serverKey(zoned(base()))
			k2 := g.serverKey(zoned(base().Add(time.Hour)))
			k2.ExpiresAt = time.Time{} // no expiry: zero stays zero
			ok(t, s.AddServerKey(t.Context(), k1, nil), "AddServerKey")
			ok(t, s.AddServerKey(t.Context(), k2, k1.Fingerprint), "AddServerKey")
			got, err := s.ServerKeys(t.Context())
			ok(t, err, "ServerKeys")
			count(t, len(got), 2, "server keys")
			sameServerKey(t, retired(k1, k2.CreatedAt), got[0])
			if !got[1].ExpiresAt.IsZero() || !got[1].RetiredAt.IsZero() {
				t.Fatalf("zero times came back as ExpiresAt %v RetiredAt %v", got[1].ExpiresAt, got[1].RetiredAt)
			}
		}},
		{"KeyPackages", func(t *testing.T, s p2core.Store) {
			var g gen
			kp := g.kp(7, "laptop", 1, zoned(base().Add(time.Hour)))
			kp.UploadedAt = zoned(base())
			ok(t, s.AddKeyPackages(t.Context(), []p2core.KeyPackage{kp}, 100, zoned(base())), "AddKeyPackages")
			sameKP(t, kp, claimOne(t, s, 7, 0, zoned(base())).KeyPackage)
		}},
		{"SubMicrosecondInputKeepsMicrosecondPrecision", func(t *testing.T, s p2core.Store) {
			var g gen
			in := base().Add(999 * time.Nanosecond)
			ss := g.session(7, "laptop", in)
			ok(t, create(t.Context(), s, ss), "CreateSession")
			got, err := s.SessionByToken(t.Context(), ss.TokenHash)
			ok(t, err, "SessionByToken")
			if d := got.CreatedAt.Sub(in); d <= -time.Microsecond || d >= time.Microsecond || got.CreatedAt.Location() != time.UTC {
				t.Fatalf("CreatedAt %v came back as %v: more than 1µs off or not UTC", in, got.CreatedAt)
			}
		}},
	}
}
