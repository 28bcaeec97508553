package admin

import (
	"context"
	"errors"
	"sort"

	"github.com/kongfb/kongfb/internal/cp/store"
)

// Certificates carry a transient `snis` list in Kong's Admin API: given on
// POST/PUT/PATCH it creates (or replaces) the certificate's SNI rows, and
// every certificate returned lists its SNI names. The store keeps SNIs only
// as `snis` rows.

// takeSNIs removes `snis` from a certificate body and checks it is a list of
// distinct non-empty strings. It returns nil when the body has no `snis`.
func takeSNIs(args map[string]any) ([]any, *kongError) {
	v, ok := args["snis"]
	if !ok {
		return nil, nil
	}
	delete(args, "snis")
	if v == nil {
		return []any{}, nil
	}
	var list []any
	switch t := v.(type) {
	case []any:
		list = t
	case string:
		list = []any{t}
	default:
		return nil, schemaViolation(map[string]any{"snis": "expected an array"})
	}
	seen := map[string]bool{}
	errs := make([]any, len(list))
	bad := false
	for i, e := range list {
		s, isStr := e.(string)
		switch {
		case !isStr:
			errs[i], bad = "expected a string", true
		case s == "":
			errs[i], bad = "length must be at least 1", true
		case seen[s]:
			return nil, schemaViolation(map[string]any{"snis": s + " is duplicated"})
		default:
			seen[s] = true
		}
	}
	if bad {
		return nil, schemaViolation(map[string]any{"snis": errs})
	}
	// Validate each name with the snis schema (wildcards, no IP, no port).
	for i, e := range list {
		_, kerr := validateEntity("snis", map[string]any{
			"name": e, "certificate": map[string]any{"id": "00000000-0000-4000-8000-000000000000"},
		}, modeInsert)
		if kerr != nil {
			if f, ok := kerr.Fields.(map[string]any); ok {
				if msg, ok := f["name"]; ok {
					errs[i] = msg
					bad = true
				}
			}
		}
	}
	if bad {
		return nil, schemaViolation(map[string]any{"snis": errs})
	}
	return list, nil
}

// checkSNIsFree reports Kong's error when a requested SNI already belongs to
// another certificate.
func (h *Handler) checkSNIsFree(ctx context.Context, names []any, certID string) (*kongError, error) {
	for _, n := range names {
		name := n.(string)
		row, err := h.store.GetByKey(ctx, "snis", store.Key{"name": name})
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		owner, _ := foreignIDOf(row["certificate"])
		if owner != certID || certID == "" {
			return schemaViolation(map[string]any{
				"snis": name + " already associated with existing certificate '" + owner + "'",
			}), nil
		}
	}
	return nil, nil
}

// syncSNIs makes the certificate's SNI rows exactly names: existing rows are
// kept (their ids stay stable), missing ones created, others deleted.
func (h *Handler) syncSNIs(ctx context.Context, certID string, names []any) error {
	want := map[string]bool{}
	for _, n := range names {
		want[n.(string)] = true
	}
	have := map[string]string{}
	err := h.eachRow(ctx, "snis", &store.ForeignFilter{Field: "certificate", ID: certID}, func(r store.Row) {
		n, _ := r["name"].(string)
		have[n] = idOf(r)
	})
	if err != nil {
		return err
	}
	for n, id := range have {
		if !want[n] {
			if err := h.store.Delete(ctx, "snis", id); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	missing := make([]string, 0, len(want))
	for n := range want {
		if _, ok := have[n]; !ok {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	for _, n := range missing {
		row, kerr := validateEntity("snis", map[string]any{"name": n, "certificate": map[string]any{"id": certID}}, modeInsert)
		if kerr != nil {
			return errors.New(kerr.Message)
		}
		if _, err := h.store.Insert(ctx, "snis", row); err != nil {
			return err
		}
	}
	return nil
}
