package admin

import (
	"net/http"

	"github.com/kongfb/kongfb/pkg/config"
)

// routeSchemas serves /schemas/{entity}, /schemas/{entity}/validate,
// /schemas/plugins/{name} and /schemas/plugins/validate. decK reads the
// defaults in these documents to fill its target state; they must equal what
// the server fills in, or every sync shows a diff.
func (h *Handler) routeSchemas(w http.ResponseWriter, r *http.Request, segs []string) {
	switch {
	case len(segs) == 2 && segs[0] == "plugins" && segs[1] == "validate":
		if allow(w, r, "POST") {
			h.validateBody(w, r, "plugins")
		}
	case len(segs) == 2 && segs[0] == "plugins":
		if !allow(w, r, "GET") {
			return
		}
		doc, ok := config.PluginSchema(segs[1])
		if !ok {
			writeJSON(w, http.StatusNotFound, message{"No plugin named '" + segs[1] + "'"})
			return
		}
		writeJSON(w, http.StatusOK, doc)
	case len(segs) == 1:
		if !allow(w, r, "GET") {
			return
		}
		doc, ok := config.Schema(segs[0])
		if !ok {
			writeJSON(w, http.StatusNotFound, message{"No entity named '" + segs[0] + "'"})
			return
		}
		writeJSON(w, http.StatusOK, doc)
	case len(segs) == 2 && segs[1] == "validate":
		if !allow(w, r, "POST") {
			return
		}
		if _, ok := config.Schema(segs[0]); !ok {
			writeJSON(w, http.StatusNotFound, message{"No entity named '" + segs[0] + "'"})
			return
		}
		h.validateBody(w, r, segs[0])
	default:
		writeJSON(w, http.StatusNotFound, msgNotFound)
	}
}

// validateBody checks an entity against its schema without storing it
// (foreign keys are not looked up, as in Kong).
func (h *Handler) validateBody(w http.ResponseWriter, r *http.Request, coll string) {
	b := h.readEntityBody(w, r)
	if b == nil {
		return
	}
	if b.kind == bodyForm {
		inferEntityArgs(coll, b.args)
	}
	if coll == "certificates" {
		if _, kerr := takeSNIs(b.args); kerr != nil {
			writeError(w, kerr)
			return
		}
	}
	if _, kerr := validateEntity(coll, b.args, modeInsert); kerr != nil {
		writeError(w, kerr)
		return
	}
	writeJSON(w, http.StatusOK, message{"schema validation successful"})
}
