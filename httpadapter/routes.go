package httpadapter

// Per-route request body limits, each further capped by
// Options.MaxBodyBytes: small JSON for most routes, an armored key for
// route 8, one Base64 KeyPackage for route 13, and the general limit for
// batches (routes 12 and 16).
const (
	bodySmall      = 8 << 10
	bodyKey        = 256 << 10
	bodyKeyPackage = 128 << 10
	bodyLarge      = 0 // Options.MaxBodyBytes
)

// apiRoutes is the table of every route the Handler serves, in the order
// (and with the numbers) of the README's route table.
func apiRoutes() []route {
	return []route{
		{"POST", "/p2core/token", accessUser, bodySmall, (*Handler).issueToken},
		{"GET", "/p2core/token/status", accessAnyone, bodySmall, (*Handler).tokenStatus},
		{"PUT", "/p2core/token/status", accessAdmin, bodySmall, (*Handler).setTokenStatus},
		{"DELETE", "/p2core/token/@me", accessUser, bodySmall, (*Handler).deleteOwnTokens},
		{"DELETE", "/p2core/token/{user_id}", accessAdmin, bodySmall, (*Handler).deleteUserTokens},
		{"DELETE", "/p2core/token/@all", accessAdmin, bodySmall, (*Handler).deleteAllTokens},
		{"POST", "/p2core/token/redeem", accessAnyone, bodySmall, (*Handler).redeemToken},
		{"POST", "/p2core/key/user/@me", accessUser, bodyKey, (*Handler).issueIDCert},
		{"GET", "/p2core/key/user/{user_id}", accessAnyone, bodySmall, (*Handler).userIDCerts},
		{"GET", "/p2core/key/server", accessAnyone, bodySmall, (*Handler).serverKey},
		{"PUT", "/p2core/key/server", accessAdmin, bodySmall, (*Handler).rotateServerKey},
		{"POST", "/p2core/keypackage/@me", accessUser, bodyLarge, (*Handler).uploadKeyPackages},
		{"PUT", "/p2core/keypackage_lr", accessUser, bodyKeyPackage, (*Handler).setLastResort},
		{"GET", "/p2core/keypackage/{user_id}", accessUser, bodySmall, (*Handler).claimKeyPackages},
		{"GET", "/p2core/keypackage/@me/status", accessUser, bodySmall, (*Handler).keyPackageStatus},
		{"POST", "/p2core/session/auth", accessAnyone, bodyLarge, (*Handler).sessionAuth},
		{"GET", "/p2core/openapi.json", accessAnyone, bodySmall, (*Handler).openAPI},
	}
}
