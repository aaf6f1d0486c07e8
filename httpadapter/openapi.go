package httpadapter

import (
	_ "embed"
	"net/http"

	"github.com/p2kit/p2kit/p2core"
)

// openAPIDocument is the OpenAPI 3.1 description of every route in
// apiRoutes, served at GET /p2core/openapi.json. A test walks the route
// table and the error table so the two cannot drift apart.
//
//go:embed openapi.json
var openAPIDocument []byte

// OpenAPI returns a copy of the OpenAPI 3.1 description (JSON) of every
// route the Handler serves, with every request and response body, every
// error code and the bearer security scheme.
func OpenAPI() []byte {
	return append([]byte(nil), openAPIDocument...)
}

func (h *Handler) openAPI(w http.ResponseWriter, _ *http.Request, _ p2core.Principal) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDocument)
	return nil
}
