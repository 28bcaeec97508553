package admin

import (
	"bytes"
	"context"
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/pkg/config"
)

// TestGetConfigMatchesFromEntities: GET /config, which parses the stored
// rows with the shared Reparser, answers byte for byte what
// config.FromEntities makes of the same rows decoded, disabled entities
// included, across changes that the Reparser's memo must notice (an edited
// row, a deleted one, a disabled one), and POST /config?check_hash=1
// recognises the stored configuration.
func TestGetConfigMatchesFromEntities(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		doc := `_format_version: "3.0"
services:
- name: a
  url: http://a.internal:8080/v1
  routes:
  - name: a-1
    paths: [/a]
  - name: a-2
    paths: [/a2]
    methods: [GET]
- name: off
  url: http://off.internal
  enabled: false
  routes:
  - name: off-1
    paths: [/off]
consumers:
- username: alice
  custom_id: "42"
upstreams:
- name: up
  targets:
  - target: 10.0.0.1:80
    weight: 50
`
		api.do("POST", "/config", doc, "application/yaml").expect(201)
		check := func(step string) {
			t.Helper()
			got := api.do("GET", "/config", nil).expect(200).raw
			snap, err := st.Export(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.FromEntities(snap.Collections)
			if err != nil {
				t.Fatal(err)
			}
			want, err := cfg.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s: GET /config differs from FromEntities:\n got %s\nwant %s", step, got, want)
			}
			// The stored configuration posted back is "the same".
			api.do("POST", "/config?check_hash=1", string(got)).expect(304)
		}
		check("initial")
		check("unchanged")
		api.do("PATCH", "/routes/a-1", map[string]any{"paths": []string{"/a", "/a-too"}}).expect(200)
		check("a route edited")
		api.do("DELETE", "/routes/a-2", nil).expect(204)
		check("a route deleted")
		api.do("PATCH", "/services/a", map[string]any{"enabled": false}).expect(200)
		check("a service disabled")
		api.do("POST", "/consumers", map[string]any{"username": "bob"}).expect(201)
		check("a consumer added")
	})
}
