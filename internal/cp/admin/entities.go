package admin

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/pkg/config"
)

// adminCollections are the entity collections the Admin API serves, in the
// order GET /endpoints lists them. Anything else (vaults, keys, key-sets,
// partials, consumer_groups, credentials, …) answers 404 {"message":"Not
// found"}, which decK reads as "feature absent, nothing to sync".
var adminCollections = []string{
	"services", "routes", "consumers", "plugins", "upstreams", "targets",
	"certificates", "snis", "ca_certificates",
}

func isAdminCollection(name string) bool {
	for _, c := range adminCollections {
		if c == name {
			return true
		}
	}
	return false
}

// children lists (child collection, foreign field) pairs referencing parent:
// services → routes.service, plugins.service; certificates → snis.certificate,
// services.client_certificate, upstreams.client_certificate; ….
func children(parent string) map[string]string {
	out := map[string]string{}
	for _, c := range adminCollections {
		m, _ := store.Meta(c)
		for _, fk := range m.ForeignKeys {
			if fk.References == parent {
				out[c] = fk.Field
			}
		}
	}
	return out
}

// lookup finds the row a URL segment names: an id, or the collection's
// endpoint key (services.name, consumers.username, …). Certificates are also
// found by one of their SNI names, as in Kong. A non-uuid for a collection
// without endpoint key is Kong's code-1 invalid primary key error.
func (h *Handler) lookup(ctx context.Context, coll, key string) (store.Row, *kongError, error) {
	if config.IsUUID(key) {
		row, err := h.store.Get(ctx, coll, key)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, nil
		}
		return row, nil, err
	}
	m, _ := store.Meta(coll)
	if coll == "certificates" {
		sni, err := h.store.GetByKey(ctx, "snis", store.Key{"name": key})
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil, nil
		}
		if err != nil {
			return nil, nil, err
		}
		id, _ := foreignIDOf(sni["certificate"])
		return h.lookup(ctx, coll, id)
	}
	if m.EndpointKey == "" {
		return nil, invalidPrimaryKey(key), nil
	}
	row, err := h.store.GetByKey(ctx, coll, store.Key{m.EndpointKey: key})
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, nil
	}
	return row, nil, err
}

func invalidPrimaryKey(key string) *kongError {
	return newKongError(codeInvalidPrimaryKey,
		"invalid primary key: '"+store.LuaTable(map[string]any{"id": key})+"'",
		map[string]any{"id": "expected a valid UUID"})
}

// foreignIDOf returns the id of a {"id": "…"} reference (or a bare id).
func foreignIDOf(v any) (string, bool) {
	switch t := v.(type) {
	case map[string]any:
		id, ok := t["id"].(string)
		return id, ok && id != ""
	case string:
		return t, t != ""
	}
	return "", false
}

// resolveForeign turns {"service": {"name": "x"}} into {"service": {"id":
// "<id>"}} for every foreign field of coll, the way Kong resolves a foreign
// key given by the referenced collection's endpoint key. An unresolvable
// reference is Kong's code-13 error.
func (h *Handler) resolveForeign(ctx context.Context, coll string, args map[string]any) (*kongError, error) {
	m, _ := store.Meta(coll)
	for _, fk := range m.ForeignKeys {
		ref, ok := args[fk.Field].(map[string]any)
		if !ok {
			continue
		}
		if _, has := ref["id"]; has {
			continue
		}
		pm, _ := store.Meta(fk.References)
		if pm.EndpointKey == "" {
			continue
		}
		val, has := ref[pm.EndpointKey]
		if !has || len(ref) != 1 {
			continue // left for schema validation to report
		}
		s, isStr := val.(string)
		if !isStr {
			continue
		}
		row, err := h.store.GetByKey(ctx, fk.References, store.Key{pm.EndpointKey: s})
		if errors.Is(err, store.ErrNotFound) {
			return foreignKeysUnresolved(fk.Field, pm.EndpointKey, s, fk.References), nil
		}
		if err != nil {
			return nil, err
		}
		args[fk.Field] = map[string]any{"id": row["id"]}
	}
	return nil, nil
}

// storeError maps a store error to Kong's response. It returns false when
// the error is not one the Admin API explains (the caller answers 500).
func storeError(err error) (*kongError, *statusMessage) {
	var uv *store.UniqueViolation
	var pk *store.PrimaryKeyViolation
	var fk *store.ForeignKeyViolation
	var rb *store.ReferencedBy
	var io *store.InvalidOffsetError
	switch {
	case errors.As(err, &uv):
		return newKongError(codeUniqueViolation, uv.KongMessage(), uv.Fields), nil
	case errors.As(err, &pk):
		return newKongError(codePrimaryKeyViolation, pk.KongMessage(), pk.KongFields()), nil
	case errors.As(err, &fk):
		return newKongError(codeForeignKeyViolation, fk.KongMessage(), fk.KongFields()), nil
	case errors.As(err, &rb):
		return newKongError(codeForeignKeyViolation, rb.KongMessage(), rb.KongFields()), nil
	case errors.As(err, &io):
		return newKongError(codeInvalidOffset, io.KongMessage(), nil), nil
	case errors.Is(err, store.ErrNotFound):
		return nil, &statusMessage{http.StatusNotFound, msgNotFound}
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, store.ErrClosed):
		msg := err.Error()
		if !strings.Contains(msg, "database unavailable") {
			msg = "database unavailable: " + msg
		}
		return nil, &statusMessage{http.StatusServiceUnavailable, message{msg}}
	}
	return nil, nil
}

type statusMessage struct {
	status int
	body   message
}

// certificateSNIs returns the sorted SNI names of a certificate (Kong's
// certificates DAO adds them to every certificate it returns).
func (h *Handler) certificateSNIs(ctx context.Context, certID string) ([]any, error) {
	var names []string
	err := h.eachRow(ctx, "snis", &store.ForeignFilter{Field: "certificate", ID: certID}, func(r store.Row) {
		if n, ok := r["name"].(string); ok {
			names = append(names, n)
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	return anySlice(names), nil
}

// eachRow calls fn for every row of coll (matching filter when not nil),
// reading the store page by page.
func (h *Handler) eachRow(ctx context.Context, coll string, filter *store.ForeignFilter, fn func(store.Row)) error {
	offset := ""
	for {
		page, err := h.store.List(ctx, coll, store.ListOptions{Size: store.MaxPageSize, Offset: offset, Filter: filter})
		if err != nil {
			return err
		}
		for _, r := range page.Rows {
			fn(r)
		}
		if page.NextOffset == "" {
			return nil
		}
		offset = page.NextOffset
	}
}

// anySlice is ss as a JSON array value (never nil, so it encodes as []).
func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// present prepares a stored row for a response: a copy, with certificates'
// SNI names added.
func (h *Handler) present(ctx context.Context, coll string, row store.Row) (store.Row, error) {
	if coll != "certificates" || row == nil {
		return row, nil
	}
	out := make(store.Row, len(row)+1)
	for k, v := range row {
		out[k] = v
	}
	id, _ := row["id"].(string)
	snis, err := h.certificateSNIs(ctx, id)
	if err != nil {
		return nil, err
	}
	out["snis"] = snis
	return out, nil
}
