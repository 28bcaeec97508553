package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/pkg/config"
)

// scope restricts a nested endpoint (/services/{s}/routes/{r}) to children
// whose foreign key field references parentID.
type scope struct {
	field    string
	parentID string
}

func (sc *scope) owns(row store.Row) bool {
	if sc == nil {
		return true
	}
	id, ok := foreignIDOf(row[sc.field])
	return ok && id == sc.parentID
}

// routeEntities dispatches /{collection}[/{key}[/{sub}[/{key}]]].
func (h *Handler) routeEntities(w http.ResponseWriter, r *http.Request, segs []string) {
	coll := segs[0]
	if coll == "targets" {
		// Kong disables /targets*: targets live under their upstream.
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	switch len(segs) {
	case 1:
		if !allow(w, r, "GET", "POST") {
			return
		}
		if r.Method == http.MethodPost {
			h.create(w, r, coll, nil)
		} else {
			h.list(w, r, coll, "/"+coll, false, nil)
		}
		return
	case 2:
		h.entity(w, r, coll, segs[1], nil)
		return
	}
	parentKey, sub := segs[1], segs[2]
	if coll == "upstreams" && sub == "targets" {
		h.routeTargets(w, r, parentKey, segs[3:])
		return
	}
	m, _ := store.Meta(coll)
	if len(segs) == 3 {
		if fk, ok := m.ForeignKey(sub); ok {
			h.foreignEntity(w, r, coll, parentKey, fk)
			return
		}
	}
	field, isChild := children(coll)[sub]
	if !isChild || len(segs) > 4 {
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	// Nested endpoints: resolve the parent first (404 when absent).
	if len(segs) == 3 && !allow(w, r, "GET", "POST") {
		return
	}
	if len(segs) == 4 && !allow(w, r, "GET", "PUT", "PATCH", "DELETE") {
		return
	}
	parent, kerr, err := h.lookup(r.Context(), coll, parentKey)
	if h.answered(w, r, kerr, err) {
		return
	}
	if parent == nil {
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	parentID, _ := parent["id"].(string)
	if len(segs) == 3 {
		if r.Method == http.MethodPost {
			h.create(w, r, sub, refTo(field, parentID))
		} else {
			h.list(w, r, sub, "/"+coll+"/"+parentKey+"/"+sub, true, &store.ForeignFilter{Field: field, ID: parentID})
		}
		return
	}
	h.entity(w, r, sub, segs[3], &scope{field: field, parentID: parentID})
}

// entity serves /{coll}/{key}, optionally scoped under a parent.
func (h *Handler) entity(w http.ResponseWriter, r *http.Request, coll, key string, sc *scope) {
	if !allow(w, r, "GET", "PUT", "PATCH", "DELETE") {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.get(w, r, coll, key, sc)
	case http.MethodPut:
		var force map[string]any
		if sc != nil {
			// Kong's nested PUT forces the parent reference and upserts.
			force = refTo(sc.field, sc.parentID)
		}
		h.put(w, r, coll, key, force)
	case http.MethodPatch:
		h.patch(w, r, coll, key, sc)
	case http.MethodDelete:
		h.del(w, r, coll, key, sc)
	}
}

// list serves a collection GET: Kong's {"data":[…],"offset":…,"next":…}.
func (h *Handler) list(w http.ResponseWriter, r *http.Request, coll, path string, nested bool, filter *store.ForeignFilter) {
	q := r.URL.Query()
	pq, kerr := parsePageQuery(q)
	if kerr != nil {
		writeError(w, kerr)
		return
	}
	ctx := r.Context()
	if coll == "consumers" && !nested {
		if cid, ok := q["custom_id"]; ok && len(cid) > 0 {
			// Kong's GET /consumers?custom_id=x is a lookup, not a filter.
			row, err := h.store.GetByKey(ctx, "consumers", store.Key{"custom_id": cid[0]})
			data := []any{}
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				h.fail(w, r, err)
				return
			default:
				data = append(data, row)
			}
			writeJSON(w, http.StatusOK, map[string]any{"data": data, "next": nil})
			return
		}
	}
	opts := store.ListOptions{Size: pq.Size, Offset: pq.Offset, Tags: pq.Tags, Filter: filter}
	if pq.TagsOr {
		opts.TagMatch = store.MatchAny
	}
	page, err := h.store.List(ctx, coll, opts)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	data := make([]any, 0, len(page.Rows))
	for _, row := range page.Rows {
		out, err := h.present(ctx, coll, row)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		data = append(data, out)
	}
	writePage(w, data, path, page.NextOffset, pq, nested)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request, coll, key string, sc *scope) {
	row, kerr, err := h.lookup(r.Context(), coll, key)
	if h.answered(w, r, kerr, err) {
		return
	}
	if row == nil || !sc.owns(row) {
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	h.respondRow(w, r, http.StatusOK, coll, row)
}

func (h *Handler) respondRow(w http.ResponseWriter, r *http.Request, status int, coll string, row store.Row) {
	out, err := h.present(r.Context(), coll, row)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, status, out)
}

// answered answers the request with err (h.fail) or else with the user
// error kerr, and reports whether it did: the caller then stops.
func (h *Handler) answered(w http.ResponseWriter, r *http.Request, kerr *kongError, err error) bool {
	switch {
	case err != nil:
		h.fail(w, r, err)
	case kerr != nil:
		writeError(w, kerr)
	default:
		return false
	}
	return true
}

// refTo is the {field: {"id": id}} reference a nested endpoint forces.
func refTo(field, id string) map[string]any {
	return map[string]any{field: map[string]any{"id": id}}
}

// entityArgs turns a request body into the arguments to validate: form type
// inference, forced fields (nested endpoints), foreign keys by name, and a
// certificate's transient `snis` taken out (nil when not given). It answers
// the request itself on a user error and returns ok=false.
func (h *Handler) entityArgs(w http.ResponseWriter, r *http.Request, coll string, b *requestBody, force map[string]any) (map[string]any, []any, bool) {
	args := b.args
	if b.kind == bodyForm {
		inferEntityArgs(coll, args)
	}
	for k, v := range force {
		args[k] = v
	}
	if kerr, err := h.resolveForeign(r.Context(), coll, args); h.answered(w, r, kerr, err) {
		return nil, nil, false
	}
	if coll != "certificates" {
		return args, nil, true
	}
	snis, kerr := takeSNIs(args)
	if kerr != nil {
		writeError(w, kerr)
		return nil, nil, false
	}
	return args, snis, true
}

// prepare turns a request body into a validated row (see entityArgs) whose
// SNIs, for a certificate, belong to no other certificate. It answers the
// request itself on a user error and returns ok=false.
func (h *Handler) prepare(w http.ResponseWriter, r *http.Request, coll string, b *requestBody, force map[string]any, mode validateMode) (store.Row, []any, bool) {
	args, snis, ok := h.entityArgs(w, r, coll, b, force)
	if !ok {
		return nil, nil, false
	}
	row, kerr := validateEntity(coll, args, mode)
	if kerr != nil {
		writeError(w, kerr)
		return nil, nil, false
	}
	if snis != nil {
		if kerr, err := h.checkSNIsFree(r.Context(), snis, idOf(row)); h.answered(w, r, kerr, err) {
			return nil, nil, false
		}
	}
	return row, snis, true
}

// syncedSNIs makes a certificate's SNI rows follow the `snis` its body gave
// (nil: not given, nothing to do); it answers the request itself on error
// and returns false.
func (h *Handler) syncedSNIs(w http.ResponseWriter, r *http.Request, certID string, snis []any) bool {
	if snis == nil {
		return true
	}
	if err := h.syncSNIs(r.Context(), certID, snis); err != nil {
		h.fail(w, r, err)
		return false
	}
	return true
}

// finishWrite completes a write of coll: SNI rows (see syncedSNIs), then the
// stored row as the answer.
func (h *Handler) finishWrite(w http.ResponseWriter, r *http.Request, status int, coll string, stored store.Row, snis []any) {
	if h.syncedSNIs(w, r, idOf(stored), snis) {
		h.respondRow(w, r, status, coll, stored)
	}
}

func idOf(row store.Row) string {
	id, _ := row["id"].(string)
	return id
}

// create serves POST /{coll} and nested POSTs (force = the parent reference).
func (h *Handler) create(w http.ResponseWriter, r *http.Request, coll string, force map[string]any) {
	b := h.readEntityBody(w, r)
	if b == nil {
		return
	}
	row, snis, ok := h.prepare(w, r, coll, b, force, modeInsert)
	if !ok {
		return
	}
	stored, err := h.store.Insert(r.Context(), coll, row)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.finishWrite(w, r, http.StatusCreated, coll, stored, snis)
}

// put serves PUT /{coll}/{key}: create-or-replace. By uuid the row gets
// that id; by endpoint key (a name) the key is set from the URL and an
// existing row keeps its id. The body replaces the row: unspecified fields
// return to their defaults.
func (h *Handler) put(w http.ResponseWriter, r *http.Request, coll, key string, force map[string]any) {
	b := h.readEntityBody(w, r)
	if b == nil {
		return
	}
	m, _ := store.Meta(coll)
	byKey := !config.IsUUID(key)
	if byKey && m.EndpointKey == "" {
		writeError(w, invalidPrimaryKey(key))
		return
	}
	if force == nil {
		force = map[string]any{}
	}
	if byKey {
		force[m.EndpointKey] = key
		// The row's id is decided by the store (existing row's or new).
		delete(b.args, "id")
	} else {
		force["id"] = key
	}
	row, snis, ok := h.prepare(w, r, coll, b, force, modeUpsert)
	if !ok {
		return
	}
	var stored store.Row
	var err error
	if byKey {
		delete(row, "id")
		stored, err = h.store.UpsertByKey(r.Context(), coll, m.EndpointKey, row)
	} else {
		stored, err = h.store.Upsert(r.Context(), coll, row)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.finishWrite(w, r, http.StatusOK, coll, stored, snis)
}

// updateError carries a user error out of a store.UpdateFunc.
type updateError struct{ k *kongError }

func (e *updateError) Error() string { return e.k.Message }

// patch serves PATCH /{coll}/{key}: the body is merged into the stored row
// (records recursively, as Kong's merge_values) and the result validated.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request, coll, key string, sc *scope) {
	b := h.readEntityBody(w, r)
	if b == nil {
		return
	}
	cur, kerr, err := h.lookup(r.Context(), coll, key)
	if h.answered(w, r, kerr, err) {
		return
	}
	if cur == nil {
		if sc != nil {
			writeJSON(w, http.StatusNotFound, msgNotFound)
			return
		}
		m, _ := store.Meta(coll)
		if config.IsUUID(key) {
			writeError(w, notFoundError(map[string]any{"id": key}, true))
		} else {
			writeError(w, notFoundError(map[string]any{m.EndpointKey: key}, false))
		}
		return
	}
	if !sc.owns(cur) {
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	h.applyPatch(w, r, coll, idOf(cur), b, nil)
}

// applyPatch merges body b into row id of coll and validates the result.
func (h *Handler) applyPatch(w http.ResponseWriter, r *http.Request, coll, id string, b *requestBody, force map[string]any) {
	ctx := r.Context()
	patch, snis, ok := h.entityArgs(w, r, coll, b, force)
	if !ok {
		return
	}
	if snis != nil {
		if kerr, err := h.checkSNIsFree(ctx, snis, id); h.answered(w, r, kerr, err) {
			return
		}
	}
	delete(patch, "id")
	stored, err := h.store.Update(ctx, coll, id, func(current store.Row) (store.Row, error) {
		merged := mergeEntity(coll, current, deepCopy(patch).(map[string]any))
		merged["id"] = id
		row, kerr := validateEntity(coll, merged, modeUpdate)
		if kerr != nil {
			return nil, &updateError{kerr}
		}
		return row, nil
	})
	var ue *updateError
	switch {
	case errors.As(err, &ue):
		writeError(w, ue.k)
		return
	case errors.Is(err, store.ErrNotFound):
		// Deleted between the lookup and the update.
		writeError(w, notFoundError(map[string]any{"id": id}, true))
		return
	case err != nil:
		h.fail(w, r, err)
		return
	}
	h.finishWrite(w, r, http.StatusOK, coll, stored, snis)
}

// del serves DELETE: 204 whether or not the row existed, as Kong does.
func (h *Handler) del(w http.ResponseWriter, r *http.Request, coll, key string, sc *scope) {
	ctx := r.Context()
	row, kerr, err := h.lookup(ctx, coll, key)
	if h.answered(w, r, kerr, err) {
		return
	}
	if row == nil {
		if sc != nil {
			writeJSON(w, http.StatusNotFound, msgNotFound)
			return
		}
		writeEmpty(w, http.StatusNoContent)
		return
	}
	if !sc.owns(row) {
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	if err := h.store.Delete(ctx, coll, idOf(row)); err != nil && !errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	writeEmpty(w, http.StatusNoContent)
}

// foreignEntity serves /{coll}/{key}/{field}, e.g. /routes/{r}/service: the
// entity the row references. PUT on a row without reference creates the
// referenced entity and links it; DELETE is not allowed.
func (h *Handler) foreignEntity(w http.ResponseWriter, r *http.Request, coll, key string, fk store.ForeignKey) {
	if !allow(w, r, "GET", "PUT", "PATCH", "DELETE") {
		return
	}
	row, kerr, err := h.lookup(r.Context(), coll, key)
	if h.answered(w, r, kerr, err) {
		return
	}
	refID, linked := "", false
	if row != nil {
		refID, linked = foreignIDOf(row[fk.Field])
	}
	if row == nil || !linked && r.Method != http.MethodPut {
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.get(w, r, fk.References, refID, nil)
	case http.MethodPatch:
		h.patch(w, r, fk.References, refID, nil)
	case http.MethodDelete:
		writeJSON(w, http.StatusMethodNotAllowed, msgMethodNotAllowed)
	case http.MethodPut:
		if linked {
			h.put(w, r, fk.References, refID, nil)
			return
		}
		h.putAndLink(w, r, coll, idOf(row), fk)
	}
}

// putAndLink creates the referenced entity of a row that has none and links
// the row to it (Kong's "associate" branch of PUT /routes/{r}/service).
func (h *Handler) putAndLink(w http.ResponseWriter, r *http.Request, coll, id string, fk store.ForeignKey) {
	b := h.readEntityBody(w, r)
	if b == nil {
		return
	}
	ctx := r.Context()
	row, snis, ok := h.prepare(w, r, fk.References, b, map[string]any{"id": newID()}, modeUpsert)
	if !ok {
		return
	}
	stored, err := h.store.Upsert(ctx, fk.References, row)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if !h.syncedSNIs(w, r, idOf(stored), snis) {
		return
	}
	_, err = h.store.Update(ctx, coll, id, func(current store.Row) (store.Row, error) {
		out := make(store.Row, len(current))
		for k, v := range current {
			out[k] = v
		}
		out[fk.Field] = map[string]any{"id": idOf(stored)}
		return out, nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.fail(w, r, err)
		return
	}
	h.respondRow(w, r, http.StatusOK, fk.References, stored)
}

// routeTargets serves /upstreams/{u}/targets[/{id|target|all}]. Kong keeps
// targets under their upstream; PUT and PATCH update an existing target and
// answer 404 otherwise (decK then POSTs).
func (h *Handler) routeTargets(w http.ResponseWriter, r *http.Request, upKey string, rest []string) {
	if len(rest) > 1 {
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	listAll := len(rest) == 1 && rest[0] == "all"
	switch {
	case len(rest) == 0:
		if !allow(w, r, "GET", "POST") {
			return
		}
	case listAll:
		if !allow(w, r, "GET") {
			return
		}
	default:
		if !allow(w, r, "GET", "PUT", "PATCH", "DELETE") {
			return
		}
	}
	ctx := r.Context()
	up, kerr, err := h.lookup(ctx, "upstreams", upKey)
	if h.answered(w, r, kerr, err) {
		return
	}
	if up == nil {
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	upID := idOf(up)
	if len(rest) == 0 || listAll {
		if r.Method == http.MethodPost {
			h.create(w, r, "targets", refTo("upstream", upID))
			return
		}
		path := "/upstreams/" + upKey + "/targets"
		if listAll {
			path += "/all"
		}
		h.list(w, r, "targets", path, true, &store.ForeignFilter{Field: "upstream", ID: upID})
		return
	}
	target, err := h.findTarget(ctx, upID, rest[0])
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if target == nil {
		if r.Method == http.MethodDelete {
			writeEmpty(w, http.StatusNoContent)
			return
		}
		writeJSON(w, http.StatusNotFound, msgNotFound)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.respondRow(w, r, http.StatusOK, "targets", target)
	case http.MethodPut, http.MethodPatch:
		b := h.readEntityBody(w, r)
		if b == nil {
			return
		}
		h.applyPatch(w, r, "targets", idOf(target), b, refTo("upstream", upID))
	case http.MethodDelete:
		if err := h.store.Delete(ctx, "targets", idOf(target)); err != nil && !errors.Is(err, store.ErrNotFound) {
			h.fail(w, r, err)
			return
		}
		writeEmpty(w, http.StatusNoContent)
	}
}

// findTarget finds a target of upstream upID by id or by its target string;
// a target given without port also matches Kong's default port 8000.
func (h *Handler) findTarget(ctx context.Context, upID, key string) (store.Row, error) {
	if config.IsUUID(key) {
		row, err := h.store.Get(ctx, "targets", key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if id, _ := foreignIDOf(row["upstream"]); id != upID {
			return nil, nil
		}
		return row, nil
	}
	candidates := []string{key}
	if !hasPort(key) {
		candidates = append(candidates, joinHostPort(key, "8000"))
	}
	for _, c := range candidates {
		row, err := h.store.GetByKey(ctx, "targets", store.Key{"upstream": map[string]any{"id": upID}, "target": c})
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		return row, err
	}
	return nil, nil
}

func hasPort(hostport string) bool {
	if strings.HasPrefix(hostport, "[") {
		return strings.Contains(hostport, "]:")
	}
	return strings.Count(hostport, ":") == 1
}

func joinHostPort(host, port string) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return "[" + host + "]:" + port
	}
	return host + ":" + port
}

// deepCopy copies JSON-shaped values so an UpdateFunc can run twice.
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = deepCopy(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = deepCopy(e)
		}
		return out
	}
	return v
}
