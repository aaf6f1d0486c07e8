package httpadapter

import (
	"net/http"
	"strconv"

	"github.com/p2kit/p2kit/p2core"
)

func (h *Handler) uploadKeyPackages(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	if err := h.limit("u:"+p.UserID.String(), h.limits.Upload); err != nil {
		return err
	}
	var in []string
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	kps := make([][]byte, len(in))
	for i, s := range in {
		b, err := b64.DecodeString(s)
		if err != nil {
			return p2core.Errorf(p2core.ErrInvalidKeyPackage, "KeyPackage %d: not standard Base64 with padding", i)
		}
		kps[i] = b
	}
	if err := h.svc.UploadKeyPackages(h.userLimits(r.Context(), p), p, kps); err != nil {
		return err
	}
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (h *Handler) setLastResort(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	if err := h.limit("u:"+p.UserID.String(), h.limits.Upload); err != nil {
		return err
	}
	var in string
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	b, err := b64.DecodeString(in)
	if err != nil {
		return p2core.Errorf(p2core.ErrInvalidKeyPackage, "last-resort KeyPackage: not standard Base64 with padding")
	}
	if err := h.svc.SetLastResortKeyPackage(h.userLimits(r.Context(), p), p, b); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) claimKeyPackages(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	uid, err := pathUserID(r)
	if err != nil {
		return err
	}
	var suite uint16
	if v := r.URL.Query().Get("cipher_suite"); v != "" {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil || n == 0 {
			return p2core.Errorf(p2core.ErrBadRequest, "cipher_suite must be a number from 1 to 65535")
		}
		suite = uint16(n)
	}
	// By requesting user (not session: logging in again buys nothing)
	// and target, then by target alone, so many requesters together
	// cannot drain one user either.
	if err := h.limit("c:"+p.UserID.String()+">"+uid.String(), h.limits.Claim); err != nil {
		return err
	}
	if err := h.limit("t:"+uid.String(), h.limits.ClaimTarget); err != nil {
		return err
	}
	claimed, err := h.svc.ClaimKeyPackages(r.Context(), p, uid, suite)
	if err != nil {
		return err
	}
	out := make([]string, len(claimed))
	for i, c := range claimed {
		out[i] = b64.EncodeToString(c.Data)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) keyPackageStatus(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	st, err := h.svc.KeyPackageStatus(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}
