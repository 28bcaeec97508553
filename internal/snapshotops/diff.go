package snapshotops

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/kongfb/kongfb/pkg/config"
)

// EntityRef names one entity in a diff.
type EntityRef struct {
	Type string `json:"type"` // the collection, e.g. "services"
	ID   string `json:"id"`
	Name string `json:"name,omitempty"` // name, username, target, …; plugins add their scope
	// Fields are the top-level fields that differ (changed entities only).
	Fields []string `json:"fields,omitempty"`
}

// Label is how an entity is shown: "services svc-a" or "certificates <id>".
func (e EntityRef) Label() string {
	if e.Name != "" {
		return e.Type + " " + e.Name
	}
	return e.Type + " " + e.ID
}

// Diff is the entity-level difference from one configuration to another.
type Diff struct {
	From      string      `json:"from"`
	To        string      `json:"to"`
	FromHash  string      `json:"from_hash"`
	ToHash    string      `json:"to_hash"`
	Added     []EntityRef `json:"added"`   // in To only
	Removed   []EntityRef `json:"removed"` // in From only
	Changed   []EntityRef `json:"changed"` // in both, different
	Unchanged int         `json:"unchanged"`
}

// Empty reports whether the two configurations hold the same entities.
func (d *Diff) Empty() bool { return len(d.Added)+len(d.Removed)+len(d.Changed) == 0 }

// ignoredFields differ between two copies of one configuration without
// changing what a gateway does (a CP stamps them when it stores rows).
var ignoredFields = map[string]bool{"created_at": true, "updated_at": true}

// collectionOrder is Kong's export order; other collections follow by name.
var collectionOrder = []string{
	config.CollWorkspaces, config.CollConsumers, config.CollCertificates, config.CollCACertificates,
	config.CollServices, config.CollRoutes, config.CollSNIs, config.CollUpstreams, config.CollTargets, config.CollPlugins,
}

// DiffConfigs compares two configurations entity by entity. Entities are
// matched by type and id (Kong's ids; decK files without ids get stable
// ids derived from the names, so the same file gives the same ids);
// created_at and updated_at are ignored.
func DiffConfigs(fromName string, from *config.Config, toName string, to *config.Config) *Diff {
	d := &Diff{From: fromName, To: toName, Added: []EntityRef{}, Removed: []EntityRef{}, Changed: []EntityRef{}}
	d.FromHash, _ = config.Hash(from)
	d.ToHash, _ = config.Hash(to)
	a, b := rowsByID(from.ExportMap()), rowsByID(to.ExportMap())
	names := labeler{a, b}
	var colls []string
	seen := map[string]bool{}
	for _, c := range collectionOrder {
		seen[c] = true
		colls = append(colls, c)
	}
	var extra []string
	for _, m := range []map[string]map[string]map[string]any{a, b} {
		for c := range m {
			if !seen[c] {
				seen[c] = true
				extra = append(extra, c)
			}
		}
	}
	sort.Strings(extra)
	colls = append(colls, extra...)
	for _, c := range colls {
		var added, removed, changed []EntityRef
		for id, ra := range a[c] {
			rb, ok := b[c][id]
			if !ok {
				removed = append(removed, names.ref(c, id, ra))
				continue
			}
			if f := changedFields(ra, rb); len(f) > 0 {
				r := names.ref(c, id, rb)
				r.Fields = f
				changed = append(changed, r)
			} else {
				d.Unchanged++
			}
		}
		for id, rb := range b[c] {
			if _, ok := a[c][id]; !ok {
				added = append(added, names.ref(c, id, rb))
			}
		}
		for _, l := range [][]EntityRef{added, removed, changed} {
			slices.SortFunc(l, func(x, y EntityRef) int {
				if c := strings.Compare(x.Name, y.Name); c != 0 {
					return c
				}
				return strings.Compare(x.ID, y.ID)
			})
		}
		d.Added = append(d.Added, added...)
		d.Removed = append(d.Removed, removed...)
		d.Changed = append(d.Changed, changed...)
	}
	return d
}

// rowsByID indexes an export document: collection -> id -> row.
func rowsByID(doc map[string]any) map[string]map[string]map[string]any {
	out := map[string]map[string]map[string]any{}
	for c, v := range doc {
		if strings.HasPrefix(c, "_") {
			continue
		}
		list, _ := v.([]any)
		for i, e := range list {
			row, ok := e.(map[string]any)
			if !ok {
				continue
			}
			id, _ := row["id"].(string)
			if id == "" {
				id = fmt.Sprintf("#%d", i) // rows without ids: matched by position
			}
			if out[c] == nil {
				out[c] = map[string]map[string]any{}
			}
			out[c][id] = row
		}
	}
	return out
}

func changedFields(a, b map[string]any) []string {
	var out []string
	for k, va := range a {
		if ignoredFields[k] {
			continue
		}
		if vb, ok := b[k]; !ok || !reflect.DeepEqual(va, vb) {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok && !ignoredFields[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// labeler names entities, resolving a plugin's scope through both configs.
type labeler [2]map[string]map[string]map[string]any

func (l labeler) row(coll, id string) map[string]any {
	for _, m := range l {
		if r, ok := m[coll][id]; ok {
			return r
		}
	}
	return nil
}

// name is the field that names an entity in a diff. A credential's "key"
// (key-auth's API key, a JWT secret's key) is a secret and never a name:
// such entities are shown by id.
func (l labeler) name(coll string, row map[string]any) string {
	for _, f := range []string{"name", "username", "custom_id", "target"} {
		if s, ok := row[f].(string); ok && s != "" {
			return s
		}
	}
	_ = coll
	return ""
}

func (l labeler) ref(coll, id string, row map[string]any) EntityRef {
	r := EntityRef{Type: coll, ID: id, Name: l.name(coll, row)}
	if coll == config.CollTargets {
		if up := foreignID(row["upstream"]); up != "" {
			if u := l.row(config.CollUpstreams, up); u != nil {
				r.Name += " (upstream " + l.name(config.CollUpstreams, u) + ")"
			}
		}
	}
	if coll == config.CollPlugins {
		var scope []string
		for _, f := range []struct{ field, coll string }{
			{"service", config.CollServices}, {"route", config.CollRoutes}, {"consumer", config.CollConsumers},
		} {
			fid := foreignID(row[f.field])
			if fid == "" {
				continue
			}
			n := fid
			if fr := l.row(f.coll, fid); fr != nil {
				if s := l.name(f.coll, fr); s != "" {
					n = s
				}
			}
			scope = append(scope, f.field+" "+n)
		}
		if len(scope) == 0 {
			scope = []string{"global"}
		}
		r.Name += " (" + strings.Join(scope, ", ") + ")"
	}
	return r
}

// foreignID reads a foreign key: a bare id (Kong's export) or {"id": …}.
func foreignID(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case map[string]any:
		s, _ := x["id"].(string)
		return s
	}
	return ""
}
