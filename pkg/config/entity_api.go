package config

import "sort"

// Entry points used by the control plane's Admin API.

// Collections returns the names of the collections that have a schema.
func Collections() []string {
	out := make([]string, 0, len(schemas))
	for k := range schemas {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Schema returns Kong's /schemas/{collection} document: {"fields": [{name:
// {type, default, required, …}}, …], "entity_checks": […]}, with Kong 3.9's
// defaults so decK's default filling matches Kong's and re-syncs are no-ops.
func Schema(collection string) (map[string]any, bool) {
	s, ok := schemas[collection]
	if !ok || collection == CollWorkspaces {
		return nil, false
	}
	return s.describe(), true
}

// ValidateEntity validates one entity given in Admin-API form (foreign keys
// as {"id": "…"}; a bare id string is accepted too) and returns it
// normalised: `url` expanded, every field present with nulls for unset,
// defaults filled in Insert/Upsert mode. In Update mode (PATCH, the caller
// merges the body into the stored row) nothing is filled and nothing is
// required that is absent. It returns Kong's code-2 schema violation on
// failure. Ids and timestamps are left to the caller (the store).
func ValidateEntity(collection string, input map[string]any, mode ValidateMode) (map[string]any, *SchemaViolation) {
	s, ok := schemas[collection]
	if !ok {
		t := &errTree{}
		t.addEntity("no schema for entity '" + collection + "'")
		return nil, violationOf(t)
	}
	work := make(map[string]any, len(input))
	for k, v := range input {
		work[k] = v
	}
	for _, f := range s.foreignFields() {
		if id, ok := work[f.Name].(string); ok {
			work[f.Name] = map[string]any{"id": id}
		}
	}
	m := modeInsert
	if mode == Update {
		m = modeUpdate
	}
	out, t := s.validateEntity(work, m)
	if !t.empty() {
		return nil, violationOf(t)
	}
	for _, f := range s.Record.Fields {
		if f.Transient {
			delete(out, f.Name)
			continue
		}
		if _, present := out[f.Name]; !present && mode != Update {
			out[f.Name] = nil
		}
	}
	return out, nil
}

func violationOf(t *errTree) *SchemaViolation {
	fields, _ := t.kong().(map[string]any)
	if fields == nil {
		fields = map[string]any{}
	}
	return &SchemaViolation{Fields: fields, list: t.flatten("")}
}

// FromEntities builds a typed Config from Admin-API-form entities as the CP
// stores them (collection -> rows; foreign keys as {"id": …}). Rows are
// validated against the schemas and every reference is checked; collections
// without a schema go to Config.Extra verbatim. The error is a
// *ValidationError.
func FromEntities(colls map[string][]map[string]any) (*Config, error) {
	doc := map[string]any{"_format_version": "3.0", "_transform": false}
	for _, k := range sortedCollections(colls) {
		rows := colls[k]
		list := make([]any, 0, len(rows))
		for _, r := range rows {
			if r != nil {
				list = append(list, r)
			}
		}
		if _, core := schemas[k]; core || credentialSchemas[k] != nil {
			doc[k] = list
			continue
		}
		doc[k] = list
	}
	p := newParser("", nil)
	p.export = true
	return validated(p.run(doc))
}

// Validate checks a typed configuration: schema (with defaults applied to a
// copy, c itself is not modified) and referential integrity. The error is a
// *ValidationError.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	_, rows, err := c.typedRows()
	if err != nil {
		return err
	}
	doc := map[string]any{"_format_version": "3.0", "_transform": false}
	for coll, list := range rows {
		a := make([]any, len(list))
		for i, r := range list {
			a[i] = r
		}
		doc[coll] = a
	}
	for k, list := range c.Extra {
		if _, core := schemas[k]; core {
			continue
		}
		a := make([]any, 0, len(list))
		for _, r := range list {
			if r != nil {
				a = append(a, deepCopy(r))
			}
		}
		doc[k] = a
	}
	p := newParser("", nil)
	p.export = true
	_, err = p.run(doc)
	return err
}
