package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func hxStr(s string) *string { return &s }

// hashSampleConfig has one row of every typed collection (two services and two
// routes, deliberately not in id order) and two Extra collections.
func hashSampleConfig() *Config {
	svcB := "bbbbbbbb-0000-4000-8000-000000000002"
	svcA := "aaaaaaaa-0000-4000-8000-000000000001"
	return &Config{
		FormatVersion: "3.0",
		Services: []*Service{
			{ID: svcB, CreatedAt: 1765189923, UpdatedAt: 1765189923, Name: hxStr("svc-b"), Retries: 5, Protocol: "http",
				Host: "b.example", Port: 80, ConnectTimeout: 60000, WriteTimeout: 60000, ReadTimeout: 60000, Enabled: true},
			{ID: svcA, CreatedAt: 1765189923, UpdatedAt: 1765189923, Name: hxStr("svc-a"), Retries: 5, Protocol: "https",
				Host: "a.example", Port: 443, Path: hxStr("/api"), ConnectTimeout: 60000, WriteTimeout: 60000, ReadTimeout: 60000,
				Tags: []string{"t1"}, Enabled: true},
		},
		Routes: []*Route{
			{ID: "dddddddd-0000-4000-8000-000000000004", Name: hxStr("r-d"), Protocols: []string{"http", "https"},
				Paths: []string{"/d"}, HTTPSRedirectStatusCode: 426, StripPath: true, PathHandling: "v0",
				RequestBuffering: true, ResponseBuffering: true, Service: &svcB, RegexPriority: 9007199254740992},
			{ID: "cccccccc-0000-4000-8000-000000000003", Protocols: []string{"http"}, Methods: []string{"GET"},
				Hosts: []string{"a.example"}, Headers: map[string][]string{"x-v": {"1"}}, HTTPSRedirectStatusCode: 426,
				PathHandling: "v1", Service: &svcA, Sources: []CIDRPort{{IP: hxStr("10.0.0.0/8")}}},
		},
		Upstreams: []*Upstream{{ID: "eeeeeeee-0000-4000-8000-000000000005", Name: "up", Algorithm: "round-robin",
			HashOn: "none", HashFallback: "none", HashOnCookiePath: "/", Slots: 10000,
			Healthchecks: map[string]any{"threshold": 0, "active": map[string]any{"timeout": json.Number("1"), "type": "http"}}}},
		Targets: []*Target{{ID: "ffffffff-0000-4000-8000-000000000006", CreatedAt: 1765189923.123, UpdatedAt: 1765189923.456,
			Upstream: "eeeeeeee-0000-4000-8000-000000000005", Target: "10.0.0.1:80", Weight: 100}},
		Consumers: []*Consumer{{ID: "11111111-0000-4000-8000-000000000007", Username: hxStr("alice")}},
		Plugins: []*Plugin{{ID: "22222222-0000-4000-8000-000000000008", Name: "key-auth", Route: hxStr("cccccccc-0000-4000-8000-000000000003"),
			Config:    map[string]any{"key_names": []any{"apikey"}, "hide_credentials": false, "anonymous": nil, "n": json.Number("3")},
			Protocols: []string{"grpc", "http"}, Enabled: true}},
		Certificates:   []*Certificate{{ID: "33333333-0000-4000-8000-000000000009", Cert: "CERT", Key: "KEY"}},
		SNIs:           []*SNI{{ID: "44444444-0000-4000-8000-00000000000a", Name: "a.example", Certificate: "33333333-0000-4000-8000-000000000009"}},
		CACertificates: []*CACertificate{{ID: "55555555-0000-4000-8000-00000000000b", Cert: "CA"}},
		Extra: map[string][]map[string]any{
			"keyauth_credentials": {{"id": "66666666-0000-4000-8000-00000000000c", "key": "secret",
				"consumer": "11111111-0000-4000-8000-000000000007", "ws_id": DefaultWorkspaceID, "ttl": nil}},
			"vaults": {{"id": "77777777-0000-4000-8000-00000000000d", "prefix": "env", "name": "env", "config": map[string]any{"prefix": "K_"}}},
			"empty":  {},
		},
	}
}

// hashLargeConfig has n routes spread over n/10 services, with a plugin per
// service: the shape of a big Kong deployment.
func hashLargeConfig(n int) *Config {
	c := &Config{}
	nsvc := max(n/10, 1)
	for i := 0; i < nsvc; i++ {
		id := fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)
		c.Services = append(c.Services, &Service{ID: id, CreatedAt: 1765189923, UpdatedAt: 1765189923,
			Name: hxStr(fmt.Sprintf("service-%d", i)), Retries: 5, Protocol: "http", Host: fmt.Sprintf("backend-%d.internal", i),
			Port: 8080, ConnectTimeout: 60000, WriteTimeout: 60000, ReadTimeout: 60000, Enabled: true})
		c.Plugins = append(c.Plugins, &Plugin{ID: fmt.Sprintf("%08x-1111-4000-8000-%012x", i, i), Name: "rate-limiting",
			Service: hxStr(id), Protocols: []string{"grpc", "grpcs", "http", "https"}, Enabled: true,
			Config: map[string]any{"minute": 100.0, "policy": "local", "limit_by": "consumer", "fault_tolerant": true,
				"redis": map[string]any{"host": nil, "port": 6379.0, "timeout": 2000.0}}})
	}
	for i := 0; i < n; i++ {
		svc := c.Services[i%nsvc].ID
		c.Routes = append(c.Routes, &Route{ID: fmt.Sprintf("%08x-2222-4000-8000-%012x", i, i), CreatedAt: 1765189923,
			UpdatedAt: 1765189923, Name: hxStr(fmt.Sprintf("route-%d", i)), Protocols: []string{"http", "https"},
			Methods: []string{"GET", "POST"}, Hosts: []string{fmt.Sprintf("host-%d.example.com", i%100)},
			Paths:                   []string{fmt.Sprintf("/api/v1/resource-%d", i), fmt.Sprintf("~/api/v2/items/%d/[a-z]+$", i)},
			HTTPSRedirectStatusCode: 426, StripPath: true, PathHandling: "v0", RequestBuffering: true, ResponseBuffering: true,
			Service: &svc, Tags: []string{"team-a", "generated"}})
	}
	return c
}

// Kong's field sets as exported by a Kong 3.12 CP, from the config.json
// shown in /work/shared/seeds/000_8f273b40a1ae6b64.txt (lines 316-372).
// tls_sans is Enterprise-only and not part of OSS 3.9.1's services schema.
var (
	hxSeedServiceKeys = []string{"write_timeout", "protocol", "id", "enabled", "ws_id", "path", "tls_verify", "retries",
		"tls_verify_depth", "ca_certificates", "client_certificate", "updated_at", "connect_timeout", "port",
		"read_timeout", "tags", "created_at", "tls_sans", "host", "name"}
	hxSeedRouteKeys = []string{"sources", "destinations", "https_redirect_status_code", "response_buffering", "created_at",
		"ws_id", "tags", "strip_path", "protocols", "headers", "preserve_host", "updated_at", "id", "name",
		"request_buffering", "snis", "service", "regex_priority", "path_handling", "methods", "paths", "hosts"}
)

func hxKeys(m map[string]any) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}

func hxWithout(keys []string, drop ...string) []string {
	out := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return slices.Contains(drop, k) })
	slices.Sort(out)
	return out
}

func hxRows(t *testing.T, doc map[string]any, coll string) []map[string]any {
	t.Helper()
	raw, ok := doc[coll].([]any)
	if !ok {
		t.Fatalf("%s: not an array: %T", coll, doc[coll])
	}
	out := make([]map[string]any, len(raw))
	for i, r := range raw {
		out[i] = r.(map[string]any)
	}
	return out
}

func TestExportFieldSetsMatchKong(t *testing.T) {
	// A Config built in code with only the required fields set.
	c := &Config{
		Services: []*Service{{ID: "c2dd77ef-12de-4010-9c95-f7a4f9d79aaf", Name: hxStr("httpbin-service"), Retries: 5,
			Protocol: "https", Host: "httpbin.org", Port: 443, ConnectTimeout: 60000, WriteTimeout: 60000, ReadTimeout: 60000, Enabled: true}},
		Routes: []*Route{{ID: "a8a484d6-7b18-4c4a-badb-61b58f379722", Name: hxStr("httpbin-route"), Protocols: []string{"http", "https"},
			Paths: []string{"/mock"}, HTTPSRedirectStatusCode: 426, StripPath: true, PathHandling: "v0", RequestBuffering: true,
			ResponseBuffering: true, Service: hxStr("c2dd77ef-12de-4010-9c95-f7a4f9d79aaf")}},
	}
	doc := c.ExportMap()
	svc := hxRows(t, doc, "services")[0]
	if got, want := hxKeys(svc), hxWithout(hxSeedServiceKeys, "tls_sans"); !slices.Equal(got, want) {
		t.Errorf("service keys\n got %v\nwant %v", got, want)
	}
	rt := hxRows(t, doc, "routes")[0]
	if got, want := hxKeys(rt), hxWithout(hxSeedRouteKeys); !slices.Equal(got, want) {
		t.Errorf("route keys\n got %v\nwant %v", got, want)
	}
	// Unset fields are null, foreign keys are bare ids, as in the seed.
	for _, k := range []string{"path", "tls_verify", "tls_verify_depth", "ca_certificates", "client_certificate", "tags"} {
		if v, ok := svc[k]; !ok || v != nil {
			t.Errorf("service %s = %#v, want null", k, v)
		}
	}
	for _, k := range []string{"sources", "destinations", "headers", "snis", "methods", "hosts", "tags"} {
		if v, ok := rt[k]; !ok || v != nil {
			t.Errorf("route %s = %#v, want null", k, v)
		}
	}
	if rt["service"] != "c2dd77ef-12de-4010-9c95-f7a4f9d79aaf" {
		t.Errorf("route service = %#v, want the bare service id", rt["service"])
	}
	if svc["ws_id"] != DefaultWorkspaceID || rt["ws_id"] != DefaultWorkspaceID {
		t.Errorf("ws_id = %v / %v, want the default workspace id", svc["ws_id"], rt["ws_id"])
	}
	if rt["https_redirect_status_code"] != 426.0 || rt["strip_path"] != true || rt["path_handling"] != "v0" {
		t.Errorf("route values: %v", rt)
	}
}

func TestExportDocumentShape(t *testing.T) {
	c := hashSampleConfig()
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	// Top-level keys in Kong's order: meta, topological order, then Extra
	// sorted by name; the empty Extra collection is left out.
	dec := json.NewDecoder(bytes.NewReader(b))
	var keys []string
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"_format_version", "_transform", "workspaces", "consumers", "certificates", "ca_certificates",
		"services", "routes", "snis", "upstreams", "targets", "plugins", "keyauth_credentials", "vaults"}
	if !slices.Equal(keys, want) {
		t.Errorf("top-level keys\n got %v\nwant %v", keys, want)
	}
	if !bytes.HasPrefix(b, []byte(`{"_format_version":"3.0","_transform":false,"workspaces":[{"id":"`+DefaultWorkspaceID+`","name":"default"`)) {
		t.Errorf("document start: %.120s", b)
	}
	// 2^53 regex_priority is written as the exact integer (Kong's
	// max_safe_integer spec), and target timestamps keep their milliseconds.
	for _, s := range []string{`"regex_priority":9007199254740992`, `"created_at":1765189923.123`, `"n":3`, `"timeout":1`} {
		if !bytes.Contains(b, []byte(s)) {
			t.Errorf("document lacks %s", s)
		}
	}

	doc := c.ExportMap()
	// Rows sorted by id, like Kong's ORDER BY primary key.
	svcs := hxRows(t, doc, "services")
	if svcs[0]["name"] != "svc-a" || svcs[1]["name"] != "svc-b" {
		t.Errorf("services not sorted by id: %v, %v", svcs[0]["id"], svcs[1]["id"])
	}
	// Every typed row carries ws_id, workspaces themselves do not.
	for _, coll := range []string{"consumers", "certificates", "ca_certificates", "services", "routes", "snis", "upstreams", "targets", "plugins"} {
		for _, r := range hxRows(t, doc, coll) {
			if r["ws_id"] != DefaultWorkspaceID {
				t.Errorf("%s row %v: ws_id = %v", coll, r["id"], r["ws_id"])
			}
		}
	}
	ws := hxRows(t, doc, "workspaces")
	if len(ws) != 1 || ws[0]["id"] != DefaultWorkspaceID || ws[0]["name"] != "default" {
		t.Errorf("workspaces = %v", ws)
	}
	if _, ok := ws[0]["ws_id"]; ok {
		t.Error("workspace row has ws_id")
	}
	// Extra rows verbatim.
	kc := hxRows(t, doc, "keyauth_credentials")[0]
	if kc["key"] != "secret" || kc["ttl"] != nil || kc["consumer"] != "11111111-0000-4000-8000-000000000007" {
		t.Errorf("keyauth_credentials row = %v", kc)
	}
	if _, ok := doc["empty"]; ok {
		t.Error("empty Extra collection exported")
	}
	// The Config itself is not modified by the export.
	if c.Services[0].WsID != "" || len(c.Workspaces) != 0 || c.Services[0].Name == nil || *c.Services[0].Name != "svc-b" {
		t.Error("export modified the Config")
	}
}

func TestExportMapEqualsDecodedMarshalJSON(t *testing.T) {
	for name, c := range map[string]*Config{"sample": hashSampleConfig(), "large": hashLargeConfig(50), "nil": nil, "zero": {}} {
		b, err := c.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var decoded map[string]any
		if err := json.Unmarshal(b, &decoded); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m := c.ExportMap(); !reflect.DeepEqual(m, decoded) {
			mb, _ := json.Marshal(m)
			t.Errorf("%s: ExportMap differs from decoded MarshalJSON\n map %s\n doc %s", name, mb, b)
		}
	}
}

func TestExportDeterministic(t *testing.T) {
	first, err := hashSampleConfig().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ { // Extra is a map: iteration order varies
		again, err := hashSampleConfig().MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("MarshalJSON not deterministic:\n%s\n%s", first, again)
		}
	}
	// json.Marshal of a *Config and of a Config value in a struct use it.
	viaStd, err := json.Marshal(hashSampleConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, viaStd) {
		t.Errorf("json.Marshal differs from MarshalJSON")
	}
}

func TestExportWorkspaces(t *testing.T) {
	c := &Config{
		Workspaces: []*Workspace{
			{ID: "ws-other", Name: "other"},
			{ID: "ws-default", Name: "default", Config: map[string]any{}, Meta: map[string]any{}},
		},
		Services: []*Service{{ID: "s1", Host: "h", Port: 80, Protocol: "http", Enabled: true},
			{ID: "s2", Host: "h", Port: 80, Protocol: "http", Enabled: true, WsID: "ws-other"}},
	}
	doc := c.ExportMap()
	ws := hxRows(t, doc, "workspaces")
	if len(ws) != 2 || ws[0]["id"] != "ws-default" {
		t.Errorf("workspaces = %v", ws)
	}
	svcs := hxRows(t, doc, "services")
	if svcs[0]["ws_id"] != "ws-default" || svcs[1]["ws_id"] != "ws-other" {
		t.Errorf("ws_id: %v %v; want the workspace named default, and an explicit ws_id kept", svcs[0]["ws_id"], svcs[1]["ws_id"])
	}
}

func TestExportSkipsReservedExtraAndNilRows(t *testing.T) {
	c := &Config{
		Services: []*Service{nil, {ID: "s1", Host: "h", Port: 80, Protocol: "http", Enabled: true}},
		Extra: map[string][]map[string]any{
			"services":        {{"id": "dup"}},
			"_format_version": {{"x": 1}},
		},
	}
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), `"services"`); n != 1 {
		t.Errorf("services key appears %d times: %s", n, b)
	}
	if strings.Contains(string(b), "dup") {
		t.Errorf("Extra shadowing a typed collection was exported: %s", b)
	}
	if got := len(hxRows(t, c.ExportMap(), "services")); got != 1 {
		t.Errorf("%d service rows, want 1 (nil rows skipped)", got)
	}
}

func TestExportMarshalErrorNamesRow(t *testing.T) {
	c := &Config{Plugins: []*Plugin{{ID: "p-bad", Name: "x", Config: map[string]any{"f": func() {}}}}}
	_, err := c.MarshalJSON()
	if err == nil || !strings.Contains(err.Error(), "plugins") || !strings.Contains(err.Error(), "p-bad") {
		t.Errorf("err = %v, want one naming plugins and p-bad", err)
	}
}

func TestWithoutDisabled(t *testing.T) {
	c := &Config{
		Services: []*Service{
			{ID: "s-on", Enabled: true},
			{ID: "s-off", Enabled: false},
		},
		Routes: []*Route{
			{ID: "r-on", Service: hxStr("s-on")},
			{ID: "r-off", Service: hxStr("s-off")},
			{ID: "r-none"},
		},
		Plugins: []*Plugin{
			{ID: "p-global", Enabled: true},
			{ID: "p-disabled", Enabled: false},
			{ID: "p-svc-off", Enabled: true, Service: hxStr("s-off")},
			{ID: "p-route-off", Enabled: true, Route: hxStr("r-off")},
			{ID: "p-route-on", Enabled: true, Route: hxStr("r-on")},
		},
		Extra: map[string][]map[string]any{
			"filter_chains": {{"id": "f1", "service": "s-off"}, {"id": "f2", "route": map[string]any{"id": "r-on"}}},
		},
	}
	got := c.WithoutDisabled()
	ids := func(n int, id func(int) string) []string {
		s := make([]string, n)
		for i := range s {
			s[i] = id(i)
		}
		return s
	}
	if s := ids(len(got.Services), func(i int) string { return got.Services[i].ID }); !slices.Equal(s, []string{"s-on"}) {
		t.Errorf("services = %v", s)
	}
	if s := ids(len(got.Routes), func(i int) string { return got.Routes[i].ID }); !slices.Equal(s, []string{"r-on", "r-none"}) {
		t.Errorf("routes = %v", s)
	}
	if s := ids(len(got.Plugins), func(i int) string { return got.Plugins[i].ID }); !slices.Equal(s, []string{"p-global", "p-route-on"}) {
		t.Errorf("plugins = %v", s)
	}
	if fc := got.Extra["filter_chains"]; len(fc) != 1 || fc[0]["id"] != "f2" {
		t.Errorf("filter_chains = %v", fc)
	}
	if len(c.Services) != 2 || len(c.Routes) != 3 || len(c.Plugins) != 5 || len(c.Extra["filter_chains"]) != 2 {
		t.Error("WithoutDisabled modified its receiver")
	}
	if (*Config)(nil).WithoutDisabled() != nil {
		t.Error("nil receiver")
	}
}

// A decK file touching every typed collection and an uninterpreted one.
const exportRoundTripYAML = `_format_version: "3.0"
services:
  - name: billing
    url: http://billing.internal:8080/v1
    tags: [team-a]
    routes:
      - name: billing-api
        paths: ["/billing", "~/billing/(?<id>\\d+)$"]
        methods: [GET, POST]
        plugins:
          - name: key-auth
            config:
              key_names: [apikey]
  - name: disabled
    host: off.internal
    enabled: false
upstreams:
  - name: billing.internal
    targets:
      - target: 10.0.0.1:8080
        weight: 50
      - target: 10.0.0.2:8080
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
plugins:
  - name: correlation-id
`

// TestExportRoundTripsThroughParse: the export of a parsed file parses back
// to a config with a byte-identical export, and Hash of the parsed config
// equals HashDocument over the exported JSON, so the hash a kongfb CP pushes
// is the hash a Kong DP would compute over what it receives.
func TestExportRoundTripsThroughParse(t *testing.T) {
	c, err := Parse([]byte(exportRoundTripYAML), "kong.yaml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(b, "config.json")
	if err != nil {
		t.Fatalf("parse export: %v\n%s", err, b)
	}
	b2, err := c2.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, b2) {
		t.Errorf("export changed through Parse:\n%s\n%s", b, b2)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	h, hs := Hash(c)
	hd, hsd := HashDocument(doc)
	if h != hd || !reflect.DeepEqual(hs, hsd) {
		t.Errorf("Hash(parsed) = %s %v, HashDocument(export) = %s %v", h, hs, hd, hsd)
	}
	for _, coll := range []string{"services", "routes", "plugins", "upstreams", "targets", "consumers", "keyauth_credentials"} {
		if _, ok := doc[coll]; !ok {
			t.Errorf("export lacks %s", coll)
		}
	}
	// Dropping the disabled service changes the services hash only.
	_, hsOn := Hash(c.WithoutDisabled())
	if hsOn["services"] == hs["services"] || hsOn["routes"] != hs["routes"] {
		t.Errorf("WithoutDisabled: %v vs %v", hsOn, hs)
	}
}
