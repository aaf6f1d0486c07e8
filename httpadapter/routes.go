package httpadapter

// apiRoutes is the table of every route the Handler serves, in the order
// of the design contract.
func apiRoutes() []route {
	return []route{
		{"POST", "/p2core/token", accessUser, (*Handler).issueToken},
		{"GET", "/p2core/token/status", accessAnyone, (*Handler).tokenStatus},
		{"PUT", "/p2core/token/status", accessAdmin, (*Handler).setTokenStatus},
		{"DELETE", "/p2core/token/@me", accessUser, (*Handler).deleteOwnTokens},
		{"DELETE", "/p2core/token/{user_id}", accessAdmin, (*Handler).deleteUserTokens},
		{"DELETE", "/p2core/token/@all", accessAdmin, (*Handler).deleteAllTokens},
		{"POST", "/p2core/token/redeem", accessAnyone, (*Handler).redeemToken},
		{"POST", "/p2core/key/user/@me", accessUser, (*Handler).issueIDCert},
		{"GET", "/p2core/key/user/{user_id}", accessAnyone, (*Handler).userIDCerts},
		{"GET", "/p2core/key/server", accessAnyone, (*Handler).serverKey},
		{"PUT", "/p2core/key/server", accessAdmin, (*Handler).rotateServerKey},
		{"POST", "/p2core/keypackage/@me", accessUser, (*Handler).uploadKeyPackages},
		{"PUT", "/p2core/keypackage_lr", accessUser, (*Handler).setLastResort},
		{"GET", "/p2core/keypackage/{user_id}", accessUser, (*Handler).claimKeyPackages},
		{"GET", "/p2core/keypackage/@me/status", accessUser, (*Handler).keyPackageStatus},
		{"POST", "/p2core/session/auth", accessAnyone, (*Handler).sessionAuth},
		{"GET", "/p2core/openapi.json", accessAnyone, (*Handler).openAPI},
	}
}
