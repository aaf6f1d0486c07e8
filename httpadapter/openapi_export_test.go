package httpadapter

// ErrorCodes maps every P2CORE_* code the Handler can send to its HTTP
// status: the rows of errorTable and the codes the adapter makes itself.
// For tests that check the API description against the code.
func ErrorCodes() map[string]int {
	m := map[string]int{
		codeMethodNotAllowed: 405,
		codeBodyTooLarge:     413,
		codeInternal:         500,
		codeUnavailable:      503,
	}
	for _, e := range errorTable {
		m[e.code] = e.status
	}
	return m
}
