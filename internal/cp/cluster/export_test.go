package cluster

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
	"github.com/kongfb/kongfb/pkg/config"
)

// exportDoc has every kind of entity the store keeps, with integers,
// fractions, nulls, nested records and uninterpreted collections, so that
// a difference between decoding rows as Go values and parsing their JSON
// would show.
const exportDoc = `_format_version: "3.0"
services:
- name: svc-a
  url: http://a.internal:8080/base
  retries: 3
  read_timeout: 1500
  routes:
  - name: r1
    paths: ["/a", "~/v2/(?<id>\\d+)$"]
    methods: [GET]
    headers: {x-env: [prod, staging]}
    regex_priority: 7
  plugins:
  - name: rate-limiting
    config: {second: 10, hour: 1000.5, policy: local, fault_tolerant: true, redis: {port: 6379, timeout: 2000}}
- name: svc-b
  host: b.internal
  enabled: false
  routes:
  - name: r2
    hosts: [b.example.com]
upstreams:
- name: a.internal
  algorithm: consistent-hashing
  hash_on: header
  hash_on_header: x-user
  healthchecks:
    active: {healthy: {interval: 5, successes: 2}, unhealthy: {interval: 2.5, http_failures: 3}}
  targets:
  - target: 10.0.0.1:8080
    weight: 100
  - target: 10.0.0.2
    weight: 0
consumers:
- username: alice
  custom_id: c-1
  tags: [team-x]
  keyauth_credentials:
  - key: secret-key-1
plugins:
- name: cors
  config: {origins: ["*"], max_age: 3600}
vaults:
- name: env
  prefix: my-env
  config: {prefix: KONG_}
`

// storeRows turns a parsed configuration into store rows, as POST /config
// does (the export document's collections without workspace fields).
func storeRows(t *testing.T, cfg *config.Config) map[string][]store.Row {
	t.Helper()
	out := map[string][]store.Row{}
	for name, v := range cfg.ExportMap() {
		list, ok := v.([]any)
		if !ok || strings.HasPrefix(name, "_") || name == "workspaces" {
			continue
		}
		for _, e := range list {
			m := e.(map[string]any)
			delete(m, "ws_id")
			out[name] = append(out[name], m)
		}
	}
	return out
}

// TestExportRawMatchesFromEntities: the push loop's export (raw rows parsed
// by a Reparser) equals config.FromEntities on the decoded rows, byte for
// byte and hash for hash, on SQLite and PostgreSQL, across changes that
// leave most rows in the Reparser's memo.
func TestExportRawMatchesFromEntities(t *testing.T) {
	backends := map[string]func(testing.TB) store.Store{"sqlite": storetest.NewSQLite, "postgres": storetest.NewPostgres}
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			st := open(t)
			ctx := context.Background()
			cfg, err := config.Parse([]byte(exportDoc), "kong.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.ReplaceAll(ctx, storeRows(t, cfg)); err != nil {
				t.Fatal(err)
			}
			var parser config.Reparser
			check := func(step string) {
				t.Helper()
				p, got, err := exportPayload(ctx, st, &parser, 0)
				if err != nil {
					t.Fatalf("%s: export: %v", step, err)
				}
				snap, err := st.Export(ctx)
				if err != nil {
					t.Fatal(err)
				}
				full, err := config.FromEntities(snap.Collections)
				if err != nil {
					t.Fatal(err)
				}
				want := full.WithoutDisabled()
				g, _ := got.MarshalJSON()
				w, _ := want.MarshalJSON()
				if !bytes.Equal(g, w) {
					t.Fatalf("%s: export differs from FromEntities:\n got %s\nwant %s", step, g, w)
				}
				if h, _ := config.Hash(want); p.Hash != h {
					t.Fatalf("%s: hash %s, FromEntities gives %s", step, p.Hash, h)
				}
			}
			check("initial")
			check("unchanged")
			r1 := cfg.Routes[0].ID
			if _, err := st.Update(ctx, "routes", r1, func(cur store.Row) (store.Row, error) {
				cur["paths"] = []any{"/changed"}
				cur["regex_priority"] = float64(9)
				return cur, nil
			}); err != nil {
				t.Fatal(err)
			}
			check("route updated")
			if err := st.Delete(ctx, "plugins", cfg.Plugins[0].ID); err != nil {
				t.Fatal(err)
			}
			check("plugin deleted")
		})
	}
}
