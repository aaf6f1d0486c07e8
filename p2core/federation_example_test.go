package p2core_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/storage/memstore"
)

// inProcessHomes implements p2core.HomeServers with home Services in the
// same process, by domain. Over a network, use httpadapter.HomeClient.
type inProcessHomes map[string]*p2core.Service

func (h inProcessHomes) ServerKey(ctx context.Context, domain string, at time.Time) ([]byte, error) {
	svc, ok := h[domain]
	if !ok {
		return nil, p2core.Errorf(p2core.ErrUnknownHome, "no home server for %s", domain)
	}
	k, err := svc.ServerPublicKey(ctx, at)
	return k.Public, err
}

func (h inProcessHomes) RedeemToken(ctx context.Context, domain, token, self string) (p2core.FederationToken, error) {
	svc, ok := h[domain]
	if !ok {
		return p2core.FederationToken{}, p2core.Errorf(p2core.ErrUnknownHome, "no home server for %s", domain)
	}
	return svc.RedeemFederationToken(ctx, token, self)
}

// A user of a.example logs in to b.example with a federation token and
// her ID-Cert from a.example.
func ExampleService_ForeignLogin() {
	ctx := context.Background()
	homes := inProcessHomes{}
	a, _ := p2core.NewService(memstore.New(), p2core.Config{Domain: "a.example"})
	b, _ := p2core.NewService(memstore.New(), p2core.Config{Domain: "b.example", Homes: homes})
	homes["a.example"] = a

	// At home: a session, an ID-Cert for the client's key, and a token
	// for b.example (its Config.SelfURL, https://b.example by default).
	_, sess, _ := a.CreateSession(ctx, 1, "alice@a.example")
	alice := p2core.Principal{UserID: sess.UserID, FID: sess.FID, SessionID: sess.SessionID}
	key, _ := idcerttest.NewClientKey("alice@a.example", nil, time.Time{})
	cert, _ := a.IssueIDCert(ctx, alice, []byte(key.Armored))
	token, _, _ := a.IssueFederationToken(ctx, alice, "https://b.example")

	// Abroad: b.example checks the cert against a.example's key, redeems
	// the token there and opens a session.
	_, foreign, err := b.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: token, IDCert: cert.Cert})
	fmt.Println(foreign.FID, foreign.Home, err)

	// The token works once, even with a fresh ID-Cert.
	cert2, _ := a.IssueIDCert(ctx, alice, []byte(key.Armored))
	_, _, err = b.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: token, IDCert: cert2.Cert})
	fmt.Println(errors.Is(err, p2core.ErrTokenInvalid))
	// Output:
	// alice@a.example a.example <nil>
	// true
}
