package httpadapter_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
)

// roundTripFunc answers requests without a network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// FuzzHomeClient feeds arbitrary answers (status and body) of a foreign
// home server to HomeClient's route 10 and route 7 calls. Every failure
// must match the sentinel HomeServers documents (ErrHomeUnreachable or
// ErrUnknownHome; ErrTokenInvalid for a redemption); a fetched server key
// is non-empty; a redemption answer is accepted only with a user ID, a
// valid FID and a normalised server URL; and no message repeats the token.
// Seeds are real answers of an httpadapter Handler.
func FuzzHomeClient(f *testing.F) {
	key, err := idcert.GenerateServerKey("home.example", idcert.ServerEd25519Legacy, time.Now(), 0, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString
	for _, s := range []struct {
		status uint16
		body   string
	}{
		{200, `"` + b64(key.PublicBinary()) + `"` + "\n"},
		{200, `{"user_id":"7345926513625088001","fid":"alice@home.example","server":"https://foreign.example","issued_at":1760000000,"expires_at":1760000300}`},
		{404, `{"errcode":404,"error":"P2CORE_TOKEN_INVALID","message":"federation token is unknown"}`},
		{404, `{"errcode":404,"error":"P2CORE_NOT_FOUND","message":"no server key was current then"}`},
		{429, `{"errcode":429,"error":"P2CORE_RATE_LIMITED","message":"slow down"}`},
		{500, `{"errcode":500,"error":"P2CORE_INTERNAL","message":"internal server error"}`},
		{302, ``},
		{200, `"not base64"`},
		{200, `{"user_id":"0","fid":"alice@home.example","server":"https://foreign.example"}`},
		{200, `{"user_id":"1","fid":"Alice@Home.Example","server":"HTTPS://Foreign.Example/"}`},
	} {
		f.Add(s.status, []byte(s.body), false)
		f.Add(s.status, []byte(s.body), true)
	}
	const token = "fuzz-token-7f3a9c0e5b1d"
	f.Fuzz(func(t *testing.T, status uint16, body []byte, redeem bool) {
		if status < 100 || status > 999 {
			return
		}
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			h := http.Header{"Content-Type": {"application/json"}}
			if status >= 300 && status < 400 {
				h.Set("Location", "https://elsewhere.example/")
			}
			return &http.Response{StatusCode: int(status), Header: h, Body: io.NopCloser(bytes.NewReader(body)),
				ContentLength: int64(len(body)), Request: r}, nil
		})}
		c := httpadapter.NewHomeClient(httpadapter.HomeClientOptions{
			Resolver:   httpadapter.StaticResolver{"home.example": "https://home.example"},
			HTTPClient: hc,
		})
		ctx := context.Background()
		if !redeem {
			k, err := c.ServerKey(ctx, "home.example", time.Time{})
			switch {
			case err == nil && len(k) == 0:
				t.Fatal("ServerKey returned no key and no error")
			case err != nil && !errors.Is(err, p2core.ErrHomeUnreachable) && !errors.Is(err, p2core.ErrUnknownHome):
				t.Fatalf("ServerKey error matches no HomeServers sentinel: %v", err)
			}
			return
		}
		ft, err := c.RedeemToken(ctx, "home.example", token, "https://foreign.example")
		if err != nil {
			if !errors.Is(err, p2core.ErrHomeUnreachable) && !errors.Is(err, p2core.ErrUnknownHome) && !errors.Is(err, p2core.ErrTokenInvalid) {
				t.Fatalf("RedeemToken error matches no HomeServers sentinel: %v", err)
			}
			if strings.Contains(err.Error(), token) {
				t.Fatalf("error names the token: %v", err)
			}
			return
		}
		if ft.UserID == 0 {
			t.Fatal("accepted a redemption without a user")
		}
		if fid, err := p2core.ParseFID(string(ft.FID)); err != nil || fid != ft.FID {
			t.Fatalf("accepted FID %q: %v", ft.FID, err)
		}
		if s, err := p2core.NormalizeServerURL(ft.Server, true); err != nil || s != ft.Server {
			t.Fatalf("accepted server %q (normalised %q, %v)", ft.Server, s, err)
		}
	})
}
