package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/pkg/config"
)

// getConfig serves GET /config: the whole configuration as Kong's hybrid
// export document (_format_version 3.0, _transform false, foreign keys as
// ids), read in one consistent snapshot. Any failure to read the store is an
// error response: an empty document would look like "delete everything" to
// whoever loads it.
func (h *Handler) getConfig(w http.ResponseWriter, r *http.Request) {
	snap, err := h.store.ExportRaw(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	cfg, err := h.storedConfig(snap)
	if err != nil {
		h.log.Error("admin api: stored configuration does not convert to an export", "err", err)
		writeJSON(w, http.StatusInternalServerError, message{"stored configuration is inconsistent: " + err.Error()})
		return
	}
	doc, err := cfg.MarshalJSON()
	if err != nil {
		h.log.Error("admin api: marshal export", "err", err)
		writeJSON(w, http.StatusInternalServerError, msgUnexpected)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
	w.Header().Set("X-Kongfb-Config-Version", strconv.FormatUint(snap.Version, 10))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(doc)
}

// postConfig serves POST /config: replace the whole configuration with a
// declarative document (decK kong.yaml or Kong's export), atomically. The
// body is the document itself (JSON, or YAML with a YAML content type) or
// {"config": "<document text>"} as in Kong's DB-less mode. An invalid
// document changes nothing and answers Kong's code-14 error.
func (h *Handler) postConfig(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(r, h.opts.MaxBodyBytes, true)
	if err != nil {
		h.bodyError(w, err)
		return
	}
	q := r.URL.Query()
	flatten := truthy(q.Get("flatten_errors"))
	checkHash := truthy(q.Get("check_hash"))
	var data []byte
	filename := ""
	switch b.kind {
	case bodyJSON:
		if s, ok := b.args["config"].(string); ok {
			data = []byte(s)
			if v, ok := b.args["flatten_errors"]; ok && truthy(stringOf(v)) {
				flatten = true
			}
			if v, ok := b.args["check_hash"]; ok && truthy(stringOf(v)) {
				checkHash = true
			}
		} else {
			data = b.raw
			filename = "config.json"
		}
	case bodyForm:
		if s, ok := b.args["config"].(string); ok {
			data = []byte(s)
		}
		flatten = flatten || truthy(stringOf(b.args["flatten_errors"]))
		checkHash = checkHash || truthy(stringOf(b.args["check_hash"]))
	case bodyYAML:
		data = b.raw
		filename = "config.yaml"
	}
	if len(bytes.TrimSpace(data)) == 0 {
		writeJSON(w, http.StatusBadRequest, message{"expected a declarative configuration"})
		return
	}
	cfg, err := config.Parse(data, filename)
	if err != nil {
		h.declarativeError(w, err, flatten)
		return
	}
	colls := configRows(cfg)
	ctx := r.Context()
	if checkHash {
		same, err := h.sameAsStored(r, cfg)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if same {
			writeEmpty(w, http.StatusNotModified)
			return
		}
	}
	if _, err := h.store.ReplaceAll(ctx, colls); err != nil {
		if ke, _ := storeError(err); ke != nil {
			// The document passed validation but the store found a conflict
			// (e.g. a duplicate unique key across entities): still Kong's
			// code-14 shape, nothing was applied.
			writeError(w, newKongError(codeDeclarativeConfig,
				"declarative config is invalid: "+ke.Message,
				map[string]any{"error": ke.Message}))
			return
		}
		h.fail(w, r, err)
		return
	}
	resp := map[string]any{}
	for name, rows := range colls {
		byID := map[string]any{}
		for _, row := range rows {
			byID[idOf(row)] = row
		}
		resp[name] = byID
	}
	writeJSON(w, http.StatusCreated, resp)
}

// configRows converts a parsed configuration into the rows the store keeps:
// the export document's collections (every field, foreign keys as ids,
// uninterpreted collections verbatim) without workspace bookkeeping.
func configRows(cfg *config.Config) map[string][]store.Row {
	doc := cfg.ExportMap()
	out := map[string][]store.Row{}
	for name, v := range doc {
		if strings.HasPrefix(name, "_") || name == "workspaces" {
			continue
		}
		list, ok := v.([]any)
		if !ok {
			continue
		}
		rows := make([]store.Row, 0, len(list))
		for _, e := range list {
			m, ok := e.(map[string]any)
			if !ok {
				continue
			}
			delete(m, "ws_id")
			rows = append(rows, m)
		}
		out[name] = rows
	}
	return out
}

// storedConfig is the configuration the stored rows make (what
// config.FromEntities gives for them decoded), parsed by the shared
// Reparser: on a large configuration only the rows changed since the last
// parse are decoded and validated again.
func (h *Handler) storedConfig(snap *store.RawSnapshot) (*config.Config, error) {
	return h.opts.Parser.ParseJSON(snap.Document(), "stored configuration")
}

// sameAsStored compares Kong config hashes of the stored and the new
// configuration (POST /config?check_hash=1 answers 304 when equal).
func (h *Handler) sameAsStored(r *http.Request, cfg *config.Config) (bool, error) {
	snap, err := h.store.ExportRaw(r.Context())
	if err != nil {
		return false, err
	}
	cur, err := h.storedConfig(snap)
	if err != nil {
		return false, nil
	}
	a, _ := config.Hash(cur)
	b, _ := config.Hash(cfg)
	return a == b, nil
}

func (h *Handler) declarativeError(w http.ResponseWriter, err error, flatten bool) {
	var se *config.SyntaxError
	var ve *config.ValidationError
	switch {
	case errors.As(err, &se):
		fields := map[string]any{"error": se.KongMessage()}
		writeError(w, newKongError(codeDeclarativeConfig, "declarative config is invalid: "+store.LuaTable(fields), fields))
	case errors.As(err, &ve):
		e := newKongError(codeDeclarativeConfig, ve.KongMessage(), ve.Fields)
		if flatten {
			e.FlattenedErrors = flattenErrors(ve.Errors)
		}
		writeError(w, e)
	default:
		fields := map[string]any{"error": err.Error()}
		writeError(w, newKongError(codeDeclarativeConfig, "declarative config is invalid: "+store.LuaTable(fields), fields))
	}
}

// flattenErrors groups validation errors per entity like Kong's
// flatten_errors=1 answer.
func flattenErrors(list []config.EntityError) []any {
	type group struct {
		head map[string]any
		errs []any
	}
	var order []string
	groups := map[string]*group{}
	for _, e := range list {
		key := e.EntityType + "\x00" + e.EntityID + "\x00" + e.EntityName
		g, ok := groups[key]
		if !ok {
			head := map[string]any{"entity_type": e.EntityType, "entity_tags": anySlice(e.EntityTags)}
			if e.EntityID != "" {
				head["entity_id"] = e.EntityID
			}
			if e.EntityName != "" {
				head["entity_name"] = e.EntityName
			}
			if e.Entity != nil {
				head["entity"] = e.Entity
			}
			g = &group{head: head}
			groups[key] = g
			order = append(order, key)
		}
		if e.Field == "" || e.Field == "@entity" {
			g.errs = append(g.errs, map[string]any{"type": "entity", "message": e.Message})
		} else {
			g.errs = append(g.errs, map[string]any{"type": "field", "field": e.Field, "message": e.Message})
		}
	}
	out := make([]any, 0, len(order))
	for _, k := range order {
		g := groups[k]
		g.head["errors"] = g.errs
		out = append(out, g.head)
	}
	return out
}

func truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "on", "yes":
		return true
	}
	return false
}

func stringOf(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case bool:
		return strconv.FormatBool(t)
	case float64:
		return strconv.FormatFloat(t, 'g', -1, 64)
	case json.Number:
		return t.String()
	}
	return ""
}
