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

// Whether HEAD is answered on a GET route. Go's ServeMux sends HEAD to
// GET patterns, so every GET route must say: a pure read answers HEAD as
// GET without the body; a GET with side effects (route 14 claims) answers
// HEAD with 405, so a HEAD request never claims, redeems or changes
// anything.
const (
	noHead   = false // not GET, or GET with side effects
	headRead = true  // GET that only reads
)

// apiRoutes is the table of every route the Handler serves, in the order
// (and with the numbers) of the README's route table.
func apiRoutes() []route {
	return []route{
		{"POST", "/p2core/token", accessUser, bodySmall, noHead, (*Handler).issueToken},
		{"GET", "/p2core/token/status", accessAnyone, bodySmall, headRead, (*Handler).tokenStatus},
		{"PUT", "/p2core/token/status", accessAdmin, bodySmall, noHead, (*Handler).setTokenStatus},
		{"DELETE", "/p2core/token/@me", accessUser, bodySmall, noHead, (*Handler).deleteOwnTokens},
		{"DELETE", "/p2core/token/{user_id}", accessAdmin, bodySmall, noHead, (*Handler).deleteUserTokens},
		{"DELETE", "/p2core/token/@all", accessAdmin, bodySmall, noHead, (*Handler).deleteAllTokens},
		{"POST", "/p2core/token/redeem", accessAnyone, bodySmall, noHead, (*Handler).redeemToken},
		{"POST", "/p2core/key/user/@me", accessUser, bodyKey, noHead, (*Handler).issueIDCert},
		{"GET", "/p2core/key/user/{user_id}", accessAnyone, bodySmall, headRead, (*Handler).userIDCerts},
		{"GET", "/p2core/key/server", accessAnyone, bodySmall, headRead, (*Handler).serverKey},
		{"PUT", "/p2core/key/server", accessAdmin, bodySmall, noHead, (*Handler).rotateServerKey},
		{"POST", "/p2core/keypackage/@me", accessUser, bodyLarge, noHead, (*Handler).uploadKeyPackages},
		{"PUT", "/p2core/keypackage_lr", accessUser, bodyKeyPackage, noHead, (*Handler).setLastResort},
		{"GET", "/p2core/keypackage/{user_id}", accessUser, bodySmall, noHead, (*Handler).claimKeyPackages},
		{"GET", "/p2core/keypackage/@me/status", accessUser, bodySmall, headRead, (*Handler).keyPackageStatus},
		{"POST", "/p2core/session/auth", accessAnyone, bodyLarge, noHead, (*Handler).sessionAuth},
		{"GET", "/p2core/openapi.json", accessAnyone, bodySmall, headRead, (*Handler).openAPI},
	}
}
