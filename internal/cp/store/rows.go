package store

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
)

// uniqueEntry is one row of kongfb_uniques.
type uniqueEntry struct {
	key    string         // the key's fields joined by ","
	value  string         // JSON array of the key's values (foreign keys as bare ids)
	fields map[string]any // for *UniqueViolation
}

// refEntry is one row of kongfb_refs.
type refEntry struct {
	field   string
	refColl string
	refID   string
}

// index is what the engine stores beside a row.
type index struct {
	uniques []uniqueEntry
	refs    []refEntry
	tags    []string
}

// normalizeRow returns a shallow copy of in with a string id (generated
// when absent) and foreign keys in {"id": …} form. Nested values are shared
// with in; the engine marshals the row before anyone could modify them.
func normalizeRow(m *CollectionMeta, in Row) (Row, error) {
	if in == nil {
		return nil, invalidArg("%s: nil row", m.Name)
	}
	row := make(Row, len(in)+3)
	for k, v := range in {
		row[k] = v
	}
	switch id := row["id"].(type) {
	case nil:
		row["id"] = uuid.NewString()
	case string:
		if id == "" {
			row["id"] = uuid.NewString()
		}
	default:
		return nil, invalidArg("%s: id must be a string, got %T", m.Name, id)
	}
	for _, fk := range m.ForeignKeys {
		v, present := row[fk.Field]
		if !present || v == nil {
			continue
		}
		id, err := foreignID(v)
		if err != nil {
			return nil, invalidArg("%s %s: field %s: %v", m.Name, row["id"], fk.Field, err)
		}
		row[fk.Field] = map[string]any{"id": id}
	}
	if t, ok := row["tags"]; ok && t != nil {
		if _, err := tagList(t); err != nil {
			return nil, invalidArg("%s %s: field tags: %v", m.Name, row["id"], err)
		}
	}
	return row, nil
}

// foreignID accepts {"id": "x"} or "x".
func foreignID(v any) (string, error) {
	switch t := v.(type) {
	case string:
		if t == "" {
			return "", fmt.Errorf("empty foreign key")
		}
		return t, nil
	case map[string]any:
		id, ok := t["id"].(string)
		if !ok || id == "" {
			return "", fmt.Errorf(`foreign key must be {"id": "<id>"} (resolve names before storing)`)
		}
		return id, nil
	}
	return "", fmt.Errorf(`foreign key must be {"id": "<id>"}, got %T`, v)
}

func tagList(v any) ([]string, error) {
	switch t := v.(type) {
	case nil:
		return nil, nil
	case []string:
		return t, nil
	case []any:
		out := make([]string, 0, len(t))
		for i, e := range t {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("tags[%d] must be a string, got %T", i, e)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("must be an array of strings, got %T", v)
}

// timestamp is now in the collection's timestamp unit.
func timestamp(m *CollectionMeta, t time.Time) any {
	if m.MillisTimestamps {
		return float64(t.UnixMilli()) / 1000
	}
	return t.Unix()
}

// stamp fills created_at/updated_at. prev is the row being replaced (nil
// for a new row). touch sets updated_at to now (Admin API writes); without it
// (ReplaceAll imports) given timestamps are kept.
func stamp(m *CollectionMeta, row, prev Row, t time.Time, touch bool) {
	ts := timestamp(m, t)
	if m.CreatedAt && row["created_at"] == nil {
		if prev != nil && prev["created_at"] != nil {
			row["created_at"] = prev["created_at"]
		} else {
			row["created_at"] = ts
		}
	}
	if m.UpdatedAt && (touch || row["updated_at"] == nil) {
		row["updated_at"] = ts
	}
}

// buildIndex computes the unique keys, references and tags of a
// normalised row.
func buildIndex(m *CollectionMeta, row Row) index {
	var ix index
	for _, uk := range m.Uniques {
		if e, ok := uniqueOf(m, uk, row); ok {
			ix.uniques = append(ix.uniques, e)
		}
	}
	for _, fk := range m.ForeignKeys {
		if v := row[fk.Field]; v != nil {
			id, _ := foreignID(v) // normalizeRow already checked it
			ix.refs = append(ix.refs, refEntry{field: fk.Field, refColl: fk.References, refID: id})
		}
	}
	tags, _ := tagList(row["tags"])
	if len(tags) > 0 {
		seen := make(map[string]bool, len(tags))
		for _, t := range tags {
			if !seen[t] {
				seen[t] = true
				ix.tags = append(ix.tags, t)
			}
		}
		sort.Strings(ix.tags)
	}
	return ix
}

// uniqueOf encodes the row's value for a unique key; ok=false when the row
// is not constrained by it (a null part of a plain unique key).
func uniqueOf(m *CollectionMeta, uk UniqueKey, row Row) (uniqueEntry, bool) {
	parts := make([]any, len(uk.Fields))
	fields := make(map[string]any, len(uk.Fields))
	for i, f := range uk.Fields {
		v := row[f]
		if v == nil {
			if !uk.NullsMatch {
				return uniqueEntry{}, false
			}
			fields[f] = nil
			continue
		}
		if _, isFK := m.ForeignKey(f); isFK {
			id, err := foreignID(v)
			if err != nil {
				return uniqueEntry{}, false
			}
			parts[i] = id
			fields[f] = map[string]any{"id": id}
			continue
		}
		parts[i] = v
		fields[f] = v
	}
	b, err := json.Marshal(parts)
	if err != nil {
		return uniqueEntry{}, false
	}
	return uniqueEntry{key: strings.Join(uk.Fields, ","), value: string(b), fields: fields}, true
}

// uniqueForKey finds the unique key matching the fields of key and encodes
// key's values the way buildIndex does.
func uniqueForKey(m *CollectionMeta, key Key) (uniqueEntry, error) {
	for _, uk := range m.Uniques {
		if len(uk.Fields) != len(key) {
			continue
		}
		match := true
		for _, f := range uk.Fields {
			if _, ok := key[f]; !ok {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		e, ok := uniqueOf(m, uk, key)
		if !ok {
			return uniqueEntry{}, fmt.Errorf("%w: %s key %s has a null or malformed value", ErrNotFound, m.Name, LuaTable(key))
		}
		return e, nil
	}
	names := make([]string, 0, len(key))
	for k := range key {
		names = append(names, k)
	}
	sort.Strings(names)
	return uniqueEntry{}, invalidArg("%s has no unique key on (%s)", m.Name, strings.Join(names, ", "))
}

func encodeRow(row Row) ([]byte, error) {
	b, err := json.Marshal(row)
	if err != nil {
		return nil, fmt.Errorf("%w: encode row %v: %v", ErrInvalidArgument, row["id"], err)
	}
	return b, nil
}

func decodeRow(b []byte) (Row, error) {
	var row Row
	if err := json.Unmarshal(b, &row); err != nil {
		return nil, fmt.Errorf("decode stored row: %w", err)
	}
	return row, nil
}

// Offsets are base64 of a JSON array of the last key returned, like Kong's
// PostgreSQL strategy; callers must treat them as opaque.
func encodeOffset(parts ...string) string {
	b, _ := json.Marshal(parts)
	return base64.StdEncoding.EncodeToString(b)
}

func decodeOffset(tok string, n int) ([]string, error) {
	b, err := base64.StdEncoding.DecodeString(tok)
	if err != nil {
		return nil, &InvalidOffsetError{Offset: tok, Reason: "bad base64 encoding"}
	}
	var parts []string
	if err := json.Unmarshal(b, &parts); err != nil || len(parts) != n {
		return nil, &InvalidOffsetError{Offset: tok, Reason: "malformed offset"}
	}
	return parts, nil
}

func pageSize(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultPageSize, nil
	case n < 0 || n > MaxPageSize:
		return 0, invalidArg("page size %d: must be between 1 and %d", n, MaxPageSize)
	}
	return n, nil
}
