package httpadapter

import (
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// b64 is the encoding of binary values in JSON: standard Base64 with
// padding, decoded strictly.
var b64 = base64.StdEncoding.Strict()

// queryTimestamp parses the optional ?timestamp=UNIX parameter; zero time
// when absent.
func queryTimestamp(r *http.Request) (time.Time, error) {
	v, ok := r.URL.Query()["timestamp"]
	if !ok {
		return time.Time{}, nil
	}
	if len(v) != 1 {
		return time.Time{}, p2core.Errorf(p2core.ErrBadRequest, "timestamp must be given once")
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	if err != nil || n < 0 || n > 253402300799 {
		return time.Time{}, p2core.Errorf(p2core.ErrBadRequest, "timestamp must be Unix seconds between 0 and 253402300799")
	}
	return time.Unix(n, 0).UTC(), nil
}

func (h *Handler) issueIDCert(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	var value string
	if err := decodeJSON(r, &value); err != nil {
		return err
	}
	c, err := h.svc.IssueIDCert(r.Context(), p, []byte(value))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, b64.EncodeToString(c.Cert))
	return nil
}

func (h *Handler) userIDCerts(w http.ResponseWriter, r *http.Request, _ p2core.Principal) error {
	uid, err := pathUserID(r)
	if err != nil {
		return err
	}
	at, err := queryTimestamp(r)
	if err != nil {
		return err
	}
	certs, err := h.svc.IDCerts(r.Context(), uid, at)
	if err != nil {
		return err
	}
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = b64.EncodeToString(c.Cert)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// wantsArmor reports whether the client asked for armored OpenPGP text.
func wantsArmor(r *http.Request) bool {
	for _, a := range r.Header.Values("Accept") {
		for _, part := range strings.Split(a, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(mt), "application/pgp-keys") {
				return true
			}
		}
	}
	return false
}

func (h *Handler) serverKey(w http.ResponseWriter, r *http.Request, _ p2core.Principal) error {
	at, err := queryTimestamp(r)
	if err != nil {
		return err
	}
	k, err := h.svc.ServerPublicKey(r.Context(), at)
	if err != nil {
		return err
	}
	w.Header().Set("Vary", "Accept")
	if wantsArmor(r) {
		w.Header().Set("Content-Type", "application/pgp-keys")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(k.Armored())
		return nil
	}
	writeJSON(w, http.StatusOK, b64.EncodeToString(k.Public))
	return nil
}

func (h *Handler) rotateServerKey(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	k, err := h.svc.RotateServerKey(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, string(k.Armored()))
	return nil
}
