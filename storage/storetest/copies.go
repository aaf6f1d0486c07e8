package storetest

import (
	"bytes"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// scribble overwrites every byte of each slice.
func scribble(bs ...[]byte) {
	for _, b := range bs {
		for i := range b {
			b[i] ^= 0xa5
		}
	}
}

// clones returns deep copies of the byte slices of values the tests keep.
func cloneCert(c p2core.IDCert) p2core.IDCert {
	c.Cert = bytes.Clone(c.Cert)
	c.SignatureKey = bytes.Clone(c.SignatureKey)
	c.ServerKeyFingerprint = bytes.Clone(c.ServerKeyFingerprint)
	return c
}

func cloneKey(k p2core.ServerKey) p2core.ServerKey {
	k.Fingerprint = bytes.Clone(k.Fingerprint)
	k.Public = bytes.Clone(k.Public)
	k.Private = bytes.Clone(k.Private)
	return k
}

func cloneKP(kp p2core.KeyPackage) p2core.KeyPackage {
	kp.Ref = bytes.Clone(kp.Ref)
	kp.InitKey = bytes.Clone(kp.InitKey)
	kp.Data = bytes.Clone(kp.Data)
	return kp
}

func returnedCopyCases() []testCase {
	return []testCase{
		{"Setting", func(t *testing.T, s p2core.Store) {
			ok(t, s.PutSetting(t.Context(), "k", []byte("value")), "PutSetting")
			got, err := s.Setting(t.Context(), "k")
			ok(t, err, "Setting")
			scribble(got)
			wantSetting(t, s, "k", []byte("value"))
		}},
		{"CurrentIDCertAndIDCertsAt", func(t *testing.T, s p2core.Store) {
			var g gen
			c := g.cert(7, "laptop", base(), base().Add(time.Hour))
			ok(t, s.PutIDCert(t.Context(), cloneCert(c)), "PutIDCert")
			got, err := s.CurrentIDCert(t.Context(), 7, "laptop")
			ok(t, err, "CurrentIDCert")
			scribble(got.Cert, got.SignatureKey, got.ServerKeyFingerprint)
			all, err := s.IDCertsAt(t.Context(), 7, base())
			ok(t, err, "IDCertsAt")
			count(t, len(all), 1, "certs")
			scribble(all[0].Cert, all[0].SignatureKey, all[0].ServerKeyFingerprint)
			got, err = s.CurrentIDCert(t.Context(), 7, "laptop")
			ok(t, err, "CurrentIDCert")
			sameCert(t, c, got)
			wantCerts(t, s, 7, base(), c)
		}},
		{"ServerKeys", func(t *testing.T, s p2core.Store) {
			var g gen
			k := g.serverKey(base())
			ok(t, s.AddServerKey(t.Context(), cloneKey(k), nil), "AddServerKey")
			got, err := s.ServerKeys(t.Context())
			ok(t, err, "ServerKeys")
			count(t, len(got), 1, "server keys")
			scribble(got[0].Fingerprint, got[0].Public, got[0].Private)
			wantServerKeys(t, s, k)
			// The stored fingerprint still names the current key.
			ok(t, s.AddServerKey(t.Context(), g.serverKey(base().Add(time.Hour)), k.Fingerprint), "AddServerKey from the original fingerprint")
		}},
		{"ClaimKeyPackages", func(t *testing.T, s p2core.Store) {
			var g gen
			now := base()
			reg := g.kp(7, "laptop", 1, now.Add(time.Hour))
			lr := g.kp(7, "laptop", 1, now.Add(time.Hour))
			ok(t, s.AddKeyPackages(t.Context(), []p2core.KeyPackage{cloneKP(reg)}, 100, now), "AddKeyPackages")
			ok(t, s.SetLastResort(t.Context(), cloneKP(lr), now), "SetLastResort")
			got := claimOne(t, s, 7, 0, now)
			sameKP(t, reg, got.KeyPackage)
			scribble(got.Ref, got.InitKey, got.Data)
			// The store still remembers the handed-out init key.
			reuse := g.kp(8, "x", 1, now.Add(time.Hour))
			reuse.InitKey = reg.InitKey
			isErr(t, s.AddKeyPackages(t.Context(), []p2core.KeyPackage{reuse}, 100, now), p2core.ErrDuplicateKeyPackage,
				"AddKeyPackages with a handed-out init key after scribbling on the claimed copy")
			got = claimOne(t, s, 7, 0, now)
			scribble(got.Ref, got.InitKey, got.Data)
			got = claimOne(t, s, 7, 0, now)
			sameKP(t, lr, got.KeyPackage)
		}},
	}
}

func inputCopyCases() []testCase {
	return []testCase{
		{"PutSetting", func(t *testing.T, s p2core.Store) {
			v := []byte("value")
			ok(t, s.PutSetting(t.Context(), "k", v), "PutSetting")
			scribble(v)
			wantSetting(t, s, "k", []byte("value"))
		}},
		{"PutIDCert", func(t *testing.T, s p2core.Store) {
			var g gen
			c := g.cert(7, "laptop", base(), base().Add(time.Hour))
			in := cloneCert(c)
			ok(t, s.PutIDCert(t.Context(), in), "PutIDCert")
			scribble(in.Cert, in.SignatureKey, in.ServerKeyFingerprint)
			got, err := s.CurrentIDCert(t.Context(), 7, "laptop")
			ok(t, err, "CurrentIDCert")
			sameCert(t, c, got)
		}},
		{"AddServerKey", func(t *testing.T, s p2core.Store) {
			var g gen
			k1 := g.serverKey(base())
			in := cloneKey(k1)
			ok(t, s.AddServerKey(t.Context(), in, nil), "AddServerKey")
			scribble(in.Fingerprint, in.Public, in.Private)
			k2 := g.serverKey(base().Add(time.Hour))
			prev := bytes.Clone(k1.Fingerprint)
			in = cloneKey(k2)
			ok(t, s.AddServerKey(t.Context(), in, prev), "AddServerKey")
			scribble(prev, in.Fingerprint, in.Public, in.Private)
			wantServerKeys(t, s, retired(k1, k2.CreatedAt), k2)
		}},
		{"AddKeyPackages", func(t *testing.T, s p2core.Store) {
			var g gen
			now := base()
			kps := g.kps(2, 7, "laptop", 1, now.Add(time.Hour))
			in := []p2core.KeyPackage{cloneKP(kps[0]), cloneKP(kps[1])}
			ok(t, s.AddKeyPackages(t.Context(), in, 100, now), "AddKeyPackages")
			for _, kp := range in {
				scribble(kp.Ref, kp.InitKey, kp.Data)
			}
			dup := g.kp(8, "x", 1, now.Add(time.Hour))
			dup.InitKey = kps[1].InitKey
			isErr(t, s.AddKeyPackages(t.Context(), []p2core.KeyPackage{dup}, 100, now), p2core.ErrDuplicateKeyPackage,
				"AddKeyPackages with the original init key after the caller reused its buffer")
			for _, want := range kps {
				sameKP(t, want, claimOne(t, s, 7, 0, now).KeyPackage)
			}
		}},
		{"SetLastResort", func(t *testing.T, s p2core.Store) {
			var g gen
			now := base()
			lr := g.kp(7, "laptop", 1, now.Add(time.Hour))
			in := cloneKP(lr)
			ok(t, s.SetLastResort(t.Context(), in, now), "SetLastResort")
			scribble(in.Ref, in.InitKey, in.Data)
			dup := g.kp(8, "x", 1, now.Add(time.Hour))
			dup.InitKey = lr.InitKey
			isErr(t, s.AddKeyPackages(t.Context(), []p2core.KeyPackage{dup}, 100, now), p2core.ErrDuplicateKeyPackage,
				"AddKeyPackages with the last resort's original init key")
			sameKP(t, lr, claimOne(t, s, 7, 0, now).KeyPackage)
		}},
	}
}
