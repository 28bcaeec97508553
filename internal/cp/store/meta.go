package store

import (
	"regexp"
	"sort"
)

// OnDelete is what happens to a referencing row when its parent is deleted.
type OnDelete int

const (
	// Restrict refuses to delete the parent (*ReferencedBy). Kong's default
	// for a foreign field without on_delete.
	Restrict OnDelete = iota
	// Cascade deletes the referencing row with its parent.
	Cascade
)

// ForeignKey is a field referencing another collection's id.
type ForeignKey struct {
	Field      string
	References string
	OnDelete   OnDelete
}

// UniqueKey is a set of fields whose values no two rows may share.
type UniqueKey struct {
	Fields []string
	// NullsMatch: a null part is a value like any other (Kong's cache_key
	// for plugins: two global plugins with the same name conflict). When
	// false a row with a null in the key is not constrained (unique fields).
	NullsMatch bool
}

// CollectionMeta is what the store enforces for a collection. It mirrors
// Kong 3.9's entity schemas (kong/db/schema/entities/*.lua and the bundled
// plugins' daos.lua): `unique = true` fields, `cache_key`, `type = "foreign"`
// fields with their `on_delete`, and the endpoint key the Admin API accepts
// in place of an id.
type CollectionMeta struct {
	Name string
	// EndpointKey is the field usable instead of the id in Admin API paths
	// ("" = id only).
	EndpointKey string
	Uniques     []UniqueKey
	ForeignKeys []ForeignKey
	// CreatedAt / UpdatedAt say which timestamps the store maintains.
	CreatedAt, UpdatedAt bool
	// MillisTimestamps: timestamps are float seconds with millisecond
	// precision (targets) instead of integer seconds.
	MillisTimestamps bool
}

// ForeignKey returns the foreign key on field.
func (m *CollectionMeta) ForeignKey(field string) (ForeignKey, bool) {
	for _, fk := range m.ForeignKeys {
		if fk.Field == field {
			return fk, true
		}
	}
	return ForeignKey{}, false
}

func single(f string) UniqueKey { return UniqueKey{Fields: []string{f}} }

func consumerCredential(name string, unique ...string) *CollectionMeta {
	m := &CollectionMeta{
		Name:        name,
		ForeignKeys: []ForeignKey{{Field: "consumer", References: "consumers", OnDelete: Cascade}},
		CreatedAt:   true,
	}
	for _, u := range unique {
		m.Uniques = append(m.Uniques, single(u))
	}
	return m
}

// metas are Kong's rules. Collections not listed here (vaults, keys,
// consumer_groups, …) are stored verbatim with only their id enforced.
var metas = map[string]*CollectionMeta{
	"workspaces": {Name: "workspaces", EndpointKey: "name", Uniques: []UniqueKey{single("name")},
		CreatedAt: true, UpdatedAt: true},
	"services": {Name: "services", EndpointKey: "name", Uniques: []UniqueKey{single("name")},
		ForeignKeys: []ForeignKey{{Field: "client_certificate", References: "certificates"}},
		CreatedAt:   true, UpdatedAt: true},
	"routes": {Name: "routes", EndpointKey: "name", Uniques: []UniqueKey{single("name")},
		ForeignKeys: []ForeignKey{{Field: "service", References: "services"}},
		CreatedAt:   true, UpdatedAt: true},
	"consumers": {Name: "consumers", EndpointKey: "username",
		Uniques:   []UniqueKey{single("username"), single("custom_id")},
		CreatedAt: true, UpdatedAt: true},
	"upstreams": {Name: "upstreams", EndpointKey: "name", Uniques: []UniqueKey{single("name")},
		ForeignKeys: []ForeignKey{{Field: "client_certificate", References: "certificates"}},
		CreatedAt:   true, UpdatedAt: true},
	"targets": {Name: "targets", EndpointKey: "target",
		Uniques:     []UniqueKey{{Fields: []string{"upstream", "target"}}},
		ForeignKeys: []ForeignKey{{Field: "upstream", References: "upstreams", OnDelete: Cascade}},
		CreatedAt:   true, UpdatedAt: true, MillisTimestamps: true},
	"plugins": {Name: "plugins", EndpointKey: "instance_name",
		Uniques: []UniqueKey{single("instance_name"),
			{Fields: []string{"name", "route", "service", "consumer"}, NullsMatch: true}},
		ForeignKeys: []ForeignKey{
			{Field: "route", References: "routes", OnDelete: Cascade},
			{Field: "service", References: "services", OnDelete: Cascade},
			{Field: "consumer", References: "consumers", OnDelete: Cascade},
		},
		CreatedAt: true, UpdatedAt: true},
	"certificates": {Name: "certificates", CreatedAt: true, UpdatedAt: true},
	// Kong's certificates DAO deletes a certificate's SNIs with it.
	"snis": {Name: "snis", EndpointKey: "name", Uniques: []UniqueKey{single("name")},
		ForeignKeys: []ForeignKey{{Field: "certificate", References: "certificates", OnDelete: Cascade}},
		CreatedAt:   true, UpdatedAt: true},
	"ca_certificates": {Name: "ca_certificates", Uniques: []UniqueKey{single("cert_digest")},
		CreatedAt: true, UpdatedAt: true},
	// Bundled auth plugins' credentials cascade with their consumer, so that
	// deleting a consumer never leaves a dangling credential in an export.
	"keyauth_credentials":   consumerCredential("keyauth_credentials", "key"),
	"basicauth_credentials": consumerCredential("basicauth_credentials", "username"),
	"hmacauth_credentials":  consumerCredential("hmacauth_credentials", "username"),
	"jwt_secrets":           consumerCredential("jwt_secrets", "key"),
	"oauth2_credentials":    consumerCredential("oauth2_credentials", "client_id"),
	"acls": func() *CollectionMeta {
		m := consumerCredential("acls")
		m.Uniques = []UniqueKey{{Fields: []string{"consumer", "group"}}}
		return m
	}(),
}

// Meta returns the rules for a collection; unknown collections get an empty
// rule set (id only) and ok=false.
func Meta(coll string) (*CollectionMeta, bool) {
	if m, ok := metas[coll]; ok {
		return m, true
	}
	return &CollectionMeta{Name: coll}, false
}

// KnownCollections lists the collections with Kong rules, sorted.
func KnownCollections() []string {
	out := make([]string, 0, len(metas))
	for k := range metas {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var collNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

func checkColl(coll string) (*CollectionMeta, error) {
	if !collNameRE.MatchString(coll) {
		return nil, invalidArg("collection name %q: want lower-case letters, digits, '_' or '-'", coll)
	}
	m, _ := Meta(coll)
	return m, nil
}
