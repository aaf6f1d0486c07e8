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
	}
}
