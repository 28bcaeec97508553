package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mustParse(t *testing.T, doc, filename string) *Config {
	t.Helper()
	c, err := Parse([]byte(doc), filename)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func mustFail(t *testing.T, doc string) *ValidationError {
	t.Helper()
	_, err := Parse([]byte(doc), "kong.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %T: %v", err, err)
	}
	return ve
}

func TestParseFillsDefaults(t *testing.T) {
	c := mustParse(t, `_format_version: "3.0"
services:
- name: s
  host: example.com
  routes:
  - name: r
    paths: [/]
  plugins:
  - name: key-auth
upstreams:
- name: u
  targets:
  - target: 10.0.0.1
consumers:
- username: alice
`, "kong.yaml")
	s := c.Services[0]
	if s.Protocol != "http" || s.Port != 80 || s.Retries != 5 || s.ConnectTimeout != 60000 ||
		s.ReadTimeout != 60000 || s.WriteTimeout != 60000 || !s.Enabled || s.Path != nil || s.TLSVerify != nil {
		t.Errorf("service defaults: %s", asJSON(s))
	}
	r := c.Routes[0]
	if !reflect.DeepEqual(r.Protocols, []string{"http", "https"}) || !r.StripPath || r.PreserveHost ||
		!r.RequestBuffering || !r.ResponseBuffering || r.HTTPSRedirectStatusCode != 426 ||
		r.PathHandling != "v0" || r.RegexPriority != 0 || r.Service == nil || *r.Service != s.ID {
		t.Errorf("route defaults: %s", asJSON(r))
	}
	p := c.Plugins[0]
	if !p.Enabled || !reflect.DeepEqual(p.Protocols, []string{"grpc", "grpcs", "http", "https"}) ||
		p.Config == nil || p.Service == nil || *p.Service != s.ID {
		t.Errorf("plugin defaults: %s", asJSON(p))
	}
	u := c.Upstreams[0]
	if u.Algorithm != "round-robin" || u.HashOn != "none" || u.HashFallback != "none" || u.Slots != 10000 ||
		u.HashOnCookiePath != "/" || !reflect.DeepEqual(u.Healthchecks, HealthchecksDefaults()) {
		t.Errorf("upstream defaults: %s", asJSON(u))
	}
	if tg := c.Targets[0]; tg.Target != "10.0.0.1:8000" || tg.Weight != 100 || tg.Upstream != u.ID {
		t.Errorf("target defaults: %s", asJSON(tg))
	}
	// A partial healthchecks record is completed with Kong's defaults.
	c = mustParse(t, `{"_format_version": "3.0", "upstreams": [{"name": "u",
	  "healthchecks": {"active": {"healthy": {"interval": 5}}, "threshold": 50}}]}`, "kong.json")
	hc := c.Upstreams[0].Healthchecks
	active := hc["active"].(map[string]any)
	healthy := active["healthy"].(map[string]any)
	if healthy["interval"] != int64(5) || healthy["successes"] != int64(0) || active["concurrency"] != int64(10) ||
		hc["threshold"] != int64(50) || hc["passive"] == nil {
		t.Errorf("partial healthchecks not completed: %s", asJSON(hc))
	}
}

func TestServiceURLShorthand(t *testing.T) {
	type svc struct {
		protocol, host string
		port           int
		path           any
	}
	for _, tc := range []struct {
		url  string
		want svc
	}{
		{"http://a.test", svc{"http", "a.test", 80, nil}},
		{"http://a.test/", svc{"http", "a.test", 80, "/"}},
		{"https://a.test", svc{"https", "a.test", 443, nil}},
		{"https://a.test:8443/x/y?q=1", svc{"https", "a.test", 8443, "/x/y"}},
		{"grpc://10.0.0.1:9000", svc{"grpc", "10.0.0.1", 9000, nil}},
		{"http://user:pw@[::1]:81/p", svc{"http", "::1", 81, "/p"}},
	} {
		out, v := ValidateEntity(CollServices, map[string]any{"url": tc.url}, Insert)
		if v != nil {
			t.Errorf("%s: %s", tc.url, v.Message())
			continue
		}
		got := svc{out["protocol"].(string), out["host"].(string), int(out["port"].(int64)), out["path"]}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.url, got, tc.want)
		}
		if _, has := out["url"]; has {
			t.Errorf("%s: url kept in the entity", tc.url)
		}
	}
	// Kong's own example: an unparseable url gives ordinary field errors.
	_, v := ValidateEntity(CollServices, map[string]any{"url": "invalid url"}, Insert)
	if v == nil || v.Message() != "2 schema violations (host: required field missing; path: should start with: /)" {
		t.Errorf("invalid url: %v", v)
	}
	// url overrides separately given fields, like Kong's shorthand.
	c := mustParse(t, `_format_version: "3.0"
services:
- name: s
  host: ignored.test
  url: https://real.test:444/base
`, "k.yaml")
	if s := c.Services[0]; s.Host != "real.test" || s.Port != 444 || s.Protocol != "https" || *s.Path != "/base" {
		t.Errorf("url shorthand: %s", asJSON(s))
	}
}

const idDoc = `_format_version: "3.0"
services:
- name: svc
  url: http://example.com
  routes:
  - name: named
    paths: [/a]
  - paths: [/b]
    plugins:
    - name: cors
  plugins:
  - name: key-auth
upstreams:
- name: up
  targets:
  - target: 10.0.0.1:80
certificates:
- cert: |
` + testCertIndented + `
  key: |
` + testKeyIndented + `
  snis: [a.example]
consumers:
- custom_id: only-custom
`

func allIDs(c *Config) []string {
	var ids []string
	for _, s := range c.Services {
		ids = append(ids, s.ID)
	}
	for _, r := range c.Routes {
		ids = append(ids, r.ID)
	}
	for _, p := range c.Plugins {
		ids = append(ids, p.ID)
	}
	for _, u := range c.Upstreams {
		ids = append(ids, u.ID)
	}
	for _, tg := range c.Targets {
		ids = append(ids, tg.ID)
	}
	for _, ce := range c.Certificates {
		ids = append(ids, ce.ID)
	}
	for _, s := range c.SNIs {
		ids = append(ids, s.ID)
	}
	for _, co := range c.Consumers {
		ids = append(ids, co.ID)
	}
	return ids
}

func TestDeterministicIDs(t *testing.T) {
	a := mustParse(t, idDoc, "kong.yaml")
	b := mustParse(t, idDoc, "kong.yaml")
	ia, ib := allIDs(a), allIDs(b)
	if len(ia) != 10 {
		t.Fatalf("got %d entities", len(ia))
	}
	if !reflect.DeepEqual(ia, ib) {
		t.Errorf("ids differ between two parses:\n%v\n%v", ia, ib)
	}
	seen := map[string]bool{}
	for _, id := range ia {
		if !IsUUID(id) || seen[id] {
			t.Errorf("bad or duplicate id %q", id)
		}
		seen[id] = true
	}
	// Kong's scheme (declarative_config.lua): endpoint key for named
	// entities, "<coll>:<ws>:<cache key…>" for plugins and targets.
	svc := a.Services[0].ID
	if svc != DeterministicID("services", "svc") {
		t.Errorf("service id %s", svc)
	}
	if a.Routes[0].ID != DeterministicID("routes", "named") {
		t.Errorf("route id %s", a.Routes[0].ID)
	}
	if a.Upstreams[0].ID != DeterministicID("upstreams", "up") {
		t.Errorf("upstream id %s", a.Upstreams[0].ID)
	}
	if a.Targets[0].ID != DeterministicID("targets", "targets:*:"+a.Upstreams[0].ID+":10.0.0.1:80") {
		t.Errorf("target id %s", a.Targets[0].ID)
	}
	if a.SNIs[0].ID != DeterministicID("snis", "a.example") {
		t.Errorf("sni id %s", a.SNIs[0].ID)
	}
	for _, p := range a.Plugins {
		var want string
		switch p.Name {
		case "key-auth":
			want = DeterministicID("plugins", "plugins:*:key-auth::"+svc+":")
		case "cors":
			want = DeterministicID("plugins", "plugins:*:cors:"+a.Routes[1].ID+"::")
		}
		if p.ID != want {
			t.Errorf("plugin %s id %s, want %s", p.Name, p.ID, want)
		}
	}
	// Entities without a natural key get a UUIDv5 of their position.
	if a.Routes[1].ID != DeterministicID("routes", "kongfb:"+svc+":routes:1") {
		t.Errorf("unnamed route id %s", a.Routes[1].ID)
	}
	if a.Consumers[0].ID != DeterministicID("consumers", "kongfb:consumers:0") {
		t.Errorf("consumer without username id %s", a.Consumers[0].ID)
	}
}

func TestNestedAndFlatAreEquivalent(t *testing.T) {
	nested := mustParse(t, `_format_version: "3.0"
services:
- name: svc
  host: example.com
  routes:
  - name: r1
    paths: [/]
    plugins:
    - name: cors
  plugins:
  - name: key-auth
consumers:
- username: alice
  plugins:
  - name: rate-limiting
    config: {second: 5}
  keyauth_credentials:
  - key: secret
upstreams:
- name: up
  targets:
  - target: 10.0.0.1
`, "k.yaml")
	flat := mustParse(t, `_format_version: "3.0"
services:
- name: svc
  host: example.com
routes:
- name: r1
  paths: [/]
  service: svc
plugins:
- name: cors
  route: r1
- name: key-auth
  service: svc
- name: rate-limiting
  consumer: alice
  config: {second: 5}
consumers:
- username: alice
keyauth_credentials:
- key: secret
  consumer: alice
upstreams:
- name: up
targets:
- target: 10.0.0.1
  upstream: up
`, "k.yaml")
	norm := func(c *Config) map[string]any {
		m := map[string]any{}
		for _, coll := range []string{"services", "routes", "consumers", "upstreams"} {
			var list []any
			switch coll {
			case "services":
				list = typedList(t, coll, c.Services)
			case "routes":
				list = typedList(t, coll, c.Routes)
			case "consumers":
				list = typedList(t, coll, c.Consumers)
			case "upstreams":
				list = typedList(t, coll, c.Upstreams)
			}
			m[coll] = list
		}
		return m
	}
	if !reflect.DeepEqual(norm(nested), norm(flat)) {
		t.Errorf("nested and flat differ:\n%s\n%s", asJSON(norm(nested)), asJSON(norm(flat)))
	}
	// Ids of entities with natural keys match exactly across both layouts.
	if nested.Services[0].ID != flat.Services[0].ID || nested.Routes[0].ID != flat.Routes[0].ID ||
		nested.Consumers[0].ID != flat.Consumers[0].ID || nested.Upstreams[0].ID != flat.Upstreams[0].ID {
		t.Error("ids of named entities differ between nested and flat layouts")
	}
	if nested.Targets[0].Upstream != flat.Targets[0].Upstream || nested.Targets[0].Target != flat.Targets[0].Target {
		t.Error("targets differ")
	}
	if len(nested.Plugins) != 3 || len(flat.Plugins) != 3 {
		t.Fatalf("plugins: %d nested, %d flat", len(nested.Plugins), len(flat.Plugins))
	}
	scope := func(c *Config) map[string][3]bool {
		m := map[string][3]bool{}
		for _, p := range c.Plugins {
			m[p.Name] = [3]bool{p.Service != nil, p.Route != nil, p.Consumer != nil}
		}
		return m
	}
	if !reflect.DeepEqual(scope(nested), scope(flat)) {
		t.Errorf("plugin scopes differ: %v vs %v", scope(nested), scope(flat))
	}
	for _, c := range []*Config{nested, flat} {
		creds := c.Extra["keyauth_credentials"]
		if len(creds) != 1 || creds[0]["consumer"] != c.Consumers[0].ID || creds[0]["key"] != "secret" {
			t.Errorf("credential row: %v", creds)
		}
	}
}

func TestSyntaxErrorPositions(t *testing.T) {
	for _, tc := range []struct {
		name, doc, file string
		line, col       int
	}{
		{"yaml bad indent", "_format_version: \"3.0\"\nservices:\n  - name: a\n   host: b\n", "k.yaml", 2, 0},
		{"yaml unclosed flow", "_format_version: \"3.0\"\nservices: [\n", "k.yaml", 2, 0},
		{"yaml tab", "_format_version: \"3.0\"\nservices:\n\t- name: a\n", "k.yaml", 3, 0},
		{"json missing value", "{\n  \"_format_version\": \"3.0\",\n  \"services\": [\n    {\"name\": }\n  ]\n}", "k.json", 4, 14},
		{"json trailing comma", "{\"_format_version\": \"3.0\",}", "k.json", 1, 27},
		{"json truncated", "{\"_format_version\": \"3.0\"", "k.json", 1, 26},
		{"json garbage after", "{\"_format_version\": \"3.0\"} x", "k.json", 1, 28},
		{"auto json-looking", "{\n\"a\": [1,,2]\n}", "", 2, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), tc.file)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("want *SyntaxError, got %T: %v", err, err)
			}
			if se.Line != tc.line || (tc.col != 0 && se.Column != tc.col) || se.File != tc.file {
				t.Errorf("got %s:%d:%d (%s), want line %d col %d", se.File, se.Line, se.Column, se.Msg, tc.line, tc.col)
			}
			if tc.file != "" && !strings.HasPrefix(se.Error(), tc.file+":") {
				t.Errorf("Error() = %q does not start with the file", se.Error())
			}
		})
	}
	// A .json file is JSON only (Kong): the YAML-flow fallback of fixture
	// v08 does not apply.
	if _, err := Parse([]byte(`{"_format_version": "3.0", "consumers": [{"username": "a",},],}`), "kong.json"); err == nil {
		t.Error("JSON with trailing commas accepted from a .json file")
	}
}

func TestAnchorsAndLimits(t *testing.T) {
	// Unknown top-level keys are rejected, like Kong, even when they only
	// hold anchors.
	ve := mustFail(t, `_format_version: "3.0"
x-defaults: &svc
  host: example.com
services:
- <<: *svc
  name: a
`)
	wantError(t, ve, "", "x-defaults", "unknown field")

	// Alias bombs are bounded.
	bomb := "_format_version: \"3.0\"\na: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
	if _, err := Parse([]byte(bomb), "k.yaml"); err == nil {
		t.Error("alias bomb accepted")
	}
}

func TestMergeKeys(t *testing.T) {
	c := mustParse(t, `_format_version: "3.0"
services:
- &base
  name: a
  host: example.com
  port: 8080
- <<: *base
  name: b
  port: 9090
`, "k.yaml")
	if c.Services[1].Host != "example.com" || c.Services[1].Port != 9090 || *c.Services[1].Name != "b" {
		t.Errorf("merge key: %s", asJSON(c.Services[1]))
	}
}

func TestEveryErrorIsReported(t *testing.T) {
	ve := mustFail(t, `_format_version: "3.0"
services:
- name: bad-port
  host: example.com
  port: 99999
- name: bad-protocol
  protocol: gopher
  host: example.com
  routes:
  - name: r
    paths: ["no-slash"]
    methods: [get]
routes:
- name: orphan
  paths: [/x]
  service: nowhere
`)
	wantError(t, ve, "service", "port", "value should be between 0 and 65535")
	wantError(t, ve, "service", "protocol", "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp")
	wantError(t, ve, "route", "paths.1", "should start with: / (fixed path) or ~/ (regex path)")
	wantError(t, ve, "route", "methods.1", "invalid value: get")
	wantError(t, ve, "route", "service", "invalid reference 'service: nowhere' (no such entry in 'services')")
	msg := ve.Error()
	for _, s := range []string{"kong.yaml:5:9: service 'bad-port'", "route 'r'", "paths.1:", "route 'orphan'"} {
		if !strings.Contains(msg, s) {
			t.Errorf("Error() lacks %q:\n%s", s, msg)
		}
	}
	if len(strings.Split(msg, "\n")) != len(ve.Errors)+1 {
		t.Errorf("Error() should list one line per error:\n%s", msg)
	}
}

func TestValidationRules(t *testing.T) {
	for _, tc := range []struct {
		name, doc, typ, field, msg string
	}{
		{"route http needs a matcher", `routes: [{name: r, protocols: [http]}]`, "route", "",
			"must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"},
		{"route https", `routes: [{name: r}]`, "route", "",
			"must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"},
		{"route wildcard twice", `routes: [{name: r, hosts: ["*.a.*"]}]`, "route", "hosts.1", "invalid wildcard: must have at most one wildcard"},
		{"route wildcard middle", `routes: [{name: r, hosts: ["a.*.b"]}]`, "route", "hosts.1", "invalid wildcard: must be placed at leftmost or rightmost label"},
		{"route bad port", `routes: [{name: r, hosts: ["a.test:99999"]}]`, "route", "hosts.1", "invalid port number"},
		{"route host header", `routes: [{name: r, headers: {Host: [a]}}]`, "route", "headers.Host",
			"cannot contain 'host' header, which must be specified in the 'hosts' attribute"},
		{"route non-normalized", `routes: [{name: r, paths: ["/a/./b"]}]`, "route", "paths.1", "non-normalized path, consider use '/a/b' instead"},
		{"route bad regex", `routes: [{name: r, paths: ["~/a(?=b)"]}]`, "route", "paths.1", ""},
		{"route grpc methods", `routes: [{name: r, protocols: [grpc], paths: [/], methods: [GET], strip_path: false}]`, "route", "methods",
			"cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"},
		{"route mixed protocols", `routes: [{name: r, protocols: [http, tcp], paths: [/]}]`, "route", "",
			"these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), ('tls_passthrough'), ('grpc', 'grpcs')"},
		{"route redirect code", `routes: [{name: r, paths: [/], https_redirect_status_code: 303}]`, "route", "https_redirect_status_code",
			"expected one of: 426, 301, 302, 307, 308"},
		{"service host with port", `services: [{name: s, host: "a.test:80"}]`, "service", "host", "must not have a port"},
		{"service name chars", `services: [{name: "a b", host: a.test}]`, "service", "name",
			"invalid value 'a b': the only accepted ascii characters are alphanumerics or ., -, _, and ~"},
		{"service path", `services: [{name: s, host: a.test, path: "/a%2G"}]`, "service", "path", "invalid url-encoded value: '%2G'"},
		{"service type", `services: [{name: s, host: a.test, retries: "x"}]`, "service", "retries", "expected an integer"},
		{"service bool", `services: [{name: s, host: a.test, enabled: "yes"}]`, "service", "enabled", "expected a boolean"},
		{"service unknown field", `services: [{name: s, host: a.test, colour: red}]`, "service", "colour", "unknown field"},
		{"service tls on http", `services: [{name: s, host: a.test, tls_verify: true}]`, "service", "tls_verify", "value must be null"},
		{"upstream ip name", `upstreams: [{name: 1.2.3.4}]`, "upstream", "name", "Invalid name ('1.2.3.4'); no ip addresses allowed"},
		{"upstream hash header", `upstreams: [{name: u, hash_on: header}]`, "upstream", "hash_on_header", "required field missing"},
		{"upstream slots", `upstreams: [{name: u, slots: 5}]`, "upstream", "slots", "value should be between 10 and 65536"},
		{"target bad", `upstreams: [{name: u, targets: [{target: "a..b"}]}]`, "target", "target",
			"Invalid target ('a..b'); not a valid hostname or ip address"},
		{"target without upstream", `targets: [{target: a.test}]`, "target", "upstream", "required field missing"},
		{"consumer empty", `consumers: [{tags: [a]}]`, "consumer", "",
			"at least one of these fields must be non-empty: 'custom_id', 'username'"},
		{"consumer dup username", `consumers: [{username: a}, {username: a}]`, "consumer", "",
			"uniqueness violation: 'consumers' entity with username set to 'a' already declared"},
		{"plugin unknown", `plugins: [{name: nope}]`, "plugin", "name", "plugin 'nope' not enabled; add it to the 'plugins' configuration property"},
		{"plugin protocols", `plugins: [{name: cors, protocols: [ftp]}]`, "plugin", "protocols.1",
			"expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp"},
		{"plugin config type", `plugins: [{name: cors, config: 3}]`, "plugin", "config", "expected a record"},
		{"sni without cert", `snis: [{name: a.test}]`, "sni", "certificate", "required field missing"},
		{"sni ip", `certificates: [{cert: "` + "x" + `", key: "y", snis: ["1.2.3.4"]}]`, "sni", "name", "must not be an IP"},
		{"certificate pem", `certificates: [{cert: "x", key: "y"}]`, "certificate", "cert", "invalid certificate: invalid PEM-encoded value"},
		{"tag chars", `consumers: [{username: a, tags: ["a,b"]}]`, "consumer", "tags.1",
			"invalid tag 'a,b': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"},
		{"ca ref", `services: [{name: s, url: "https://a.test", ca_certificates: ["4e3cb785-a8d0-5866-aa05-117f7c64f24d"]}]`, "service", "ca_certificates",
			"invalid reference 'ca_certificates: 4e3cb785-a8d0-5866-aa05-117f7c64f24d' (no such entry in 'ca_certificates')"},
		{"not a list", `services: {name: s}`, "", "services", "expected an array"},
		{"element not a record", `services: [3]`, "service", "services.1", "expected a record"},
		{"comment type", `services: [{name: s, host: a.test, _comment: [1]}]`, "service", "_comment", "expected a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ve := mustFail(t, "_format_version: \"3.0\"\n"+tc.doc+"\n")
			if tc.msg == "" {
				for _, e := range ve.Errors {
					if e.EntityType == tc.typ && e.Field == tc.field && strings.HasPrefix(e.Message, "invalid regex:") {
						return
					}
				}
				t.Errorf("no invalid regex error in:\n%v", ve)
				return
			}
			wantError(t, ve, tc.typ, tc.field, tc.msg)
		})
	}
}

func TestRouteRegexPaths(t *testing.T) {
	c := mustParse(t, `_format_version: "3.0"
routes:
- name: r
  paths: ["~/users/(?<id>\\d+)$", "/plain"]
`, "k.yaml")
	if c.Routes[0].Paths[0] != `~/users/(?<id>\d+)$` {
		t.Errorf("regex path changed: %q", c.Routes[0].Paths[0])
	}
	if got := RouteRegexToGo(`/users/(?<id>\d+)/(?<x>y)`); got != `/users/(?P<id>\d+)/(?P<x>y)` {
		t.Errorf("RouteRegexToGo = %q", got)
	}
	// 1.1 / 2.1 migration: regex-looking paths get "~", plain ones are
	// normalised, a "%2E" of an unreserved character is decoded.
	for in, want := range map[string]string{
		"/plain/path":   "/plain/path",
		"/a/%7Euser":    "/a/~user",
		"/regex.+":      "~/regex.+",
		"/v1/(a|b)":     "~/v1/(a|b)",
		"/x%2Ey(z)":     `~/x\.y(z)`,
		"/caf%C3%A9/x$": "~/café/x$",
	} {
		if got := migrateRoutePath(in); got != want {
			t.Errorf("migrateRoutePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestExportRoundTrip(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "kong-ee-3.12-export.json"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(data, "config.json")
	if err != nil {
		t.Fatalf("Kong EE 3.12 export rejected: %v", err)
	}
	if len(c.Services) != 1 || len(c.Routes) != 1 || len(c.Workspaces) != 1 {
		t.Fatalf("services %d routes %d workspaces %d", len(c.Services), len(c.Routes), len(c.Workspaces))
	}
	s, r := c.Services[0], c.Routes[0]
	if s.ID != "c2dd77ef-12de-4010-9c95-f7a4f9d79aaf" || s.WsID != "ef7dde63-bb22-4212-a5d1-ce6fe910d15e" ||
		s.CreatedAt != 1765189923 || s.Host != "httpbin.org" || s.Port != 443 || s.Protocol != "https" {
		t.Errorf("service: %s", asJSON(s))
	}
	if r.Service == nil || *r.Service != s.ID || r.WsID != s.WsID || !reflect.DeepEqual(r.Paths, []string{"/mock"}) {
		t.Errorf("route: %s", asJSON(r))
	}
	if c.Workspaces[0].Name != "default" || c.Workspaces[0].ID != s.WsID {
		t.Errorf("workspace: %s", asJSON(c.Workspaces[0]))
	}
	for _, k := range []string{"parameters", "consumer_groups", "keys", "key_sets", "vaults"} {
		if _, ok := c.Extra[k]; !ok {
			t.Errorf("Extra lacks %q: %v", k, c.Extra)
		}
	}
	if c.Extra["parameters"][0]["key"] != "cluster_id" {
		t.Errorf("parameters not kept verbatim: %v", c.Extra["parameters"])
	}
	if err := c.Validate(); err != nil {
		t.Errorf("parsed export does not validate: %v", err)
	}

	// The unknown EE field is accepted only while it is null.
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	doc["services"].([]any)[0].(map[string]any)["tls_sans"] = map[string]any{"dnsnames": []any{"a"}}
	bad, _ := json.Marshal(doc)
	_, err = Parse(bad, "config.json")
	var ve *ValidationError
	if !errors.As(err, &ve) || !hasError(ve, "service", "tls_sans", "unknown field") {
		t.Errorf("non-null unknown field: %v", err)
	}
	// Unknown collections are kept only in an export (_transform: false).
	_, err = Parse([]byte(`{"_format_version":"3.0","licenses_x":[{"a":1}]}`), "k.json")
	if err == nil {
		t.Error("unknown collection accepted in a decK file")
	}
	c = mustParse(t, `{"_format_version":"3.0","_transform":false,"licenses_x":[{"a":1}]}`, "k.json")
	if !reflect.DeepEqual(c.Extra["licenses_x"], []map[string]any{{"a": int64(1)}}) {
		t.Errorf("unknown export collection: %v", c.Extra)
	}
}

func TestValidateEntityAdminShapes(t *testing.T) {
	_, v := ValidateEntity(CollServices, map[string]any{"path": "x"}, Insert)
	if v == nil || v.Message() != "2 schema violations (host: required field missing; path: should start with: /)" {
		t.Fatalf("got %v", v)
	}
	if !reflect.DeepEqual(v.Fields, map[string]any{"host": "required field missing", "path": "should start with: /"}) {
		t.Errorf("fields = %v", v.Fields)
	}
	_, v = ValidateEntity(CollRoutes, map[string]any{"protocols": []any{"https"}}, Insert)
	if v == nil || v.Message() != "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')" ||
		!reflect.DeepEqual(v.Fields, map[string]any{"@entity": []any{"must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"}}) {
		t.Errorf("route entity check: %v %v", v, v.Fields)
	}
	_, v = ValidateEntity(CollRoutes, map[string]any{"paths": []any{"/ok", "bad"}, "service": map[string]any{"id": "nope"}}, Insert)
	if v == nil || !reflect.DeepEqual(v.Fields["paths"], []any{nil, "should start with: / (fixed path) or ~/ (regex path)"}) ||
		!reflect.DeepEqual(v.Fields["service"], map[string]any{"id": "expected a valid UUID"}) {
		t.Errorf("array / foreign errors: %v", v.Fields)
	}
	if v.Message() != "2 schema violations (paths.2: should start with: / (fixed path) or ~/ (regex path); service.id: expected a valid UUID)" {
		t.Errorf("message = %s", v.Message())
	}
	// Insert: every field present, defaults filled, foreign key form kept.
	out, v := ValidateEntity(CollRoutes, map[string]any{"paths": []any{"/"}, "service": "4e3cb785-a8d0-5866-aa05-117f7c64f24d"}, Insert)
	if v != nil {
		t.Fatal(v)
	}
	for _, f := range routesSchema.Record.Fields {
		if _, ok := out[f.Name]; !ok {
			t.Errorf("field %s missing from the normalised route", f.Name)
		}
	}
	if !reflect.DeepEqual(out["service"], map[string]any{"id": "4e3cb785-a8d0-5866-aa05-117f7c64f24d"}) || out["strip_path"] != true {
		t.Errorf("normalised route: %v", out)
	}
	// Update: nothing is required or filled.
	out, v = ValidateEntity(CollServices, map[string]any{"retries": int64(3)}, Update)
	if v != nil || len(out) != 1 || out["retries"] != int64(3) {
		t.Errorf("update: %v %v", out, v)
	}
	_, v = ValidateEntity(CollServices, map[string]any{"retries": int64(-1)}, Update)
	if v == nil || v.Message() != "schema violation (retries: value should be between 0 and 32767)" {
		t.Errorf("update violation: %v", v)
	}
	// Numbers from JSON (float64) are fine for integer fields.
	if _, v = ValidateEntity(CollServices, map[string]any{"host": "a.test", "port": float64(8080)}, Upsert); v != nil {
		t.Errorf("float64 port: %v", v)
	}
	if _, v = ValidateEntity("nope", map[string]any{}, Insert); v == nil {
		t.Error("unknown collection validated")
	}
}

func TestSchemaDocuments(t *testing.T) {
	defaults := func(doc map[string]any) map[string]any {
		out := map[string]any{}
		for _, f := range doc["fields"].([]any) {
			for k, v := range f.(map[string]any) {
				if d, ok := v.(map[string]any)["default"]; ok {
					out[k] = d
				}
			}
		}
		return out
	}
	s, ok := Schema("services")
	if !ok {
		t.Fatal("no services schema")
	}
	d := defaults(s)
	for k, want := range map[string]any{"retries": int64(5), "protocol": "http", "port": int64(80),
		"connect_timeout": int64(60000), "enabled": true} {
		if d[k] != want {
			t.Errorf("services.%s default = %v, want %v", k, d[k], want)
		}
	}
	u, _ := Schema("upstreams")
	// decK recurses into records: healthchecks' subfields carry defaults.
	var hc map[string]any
	for _, f := range u["fields"].([]any) {
		if v, ok := f.(map[string]any)["healthchecks"]; ok {
			hc = v.(map[string]any)
		}
	}
	if hc == nil || hc["type"] != "record" {
		t.Fatalf("healthchecks: %v", hc)
	}
	b, _ := json.Marshal(hc)
	for _, s := range []string{`"concurrency":{"between":[1,2147483648],"default":10,"type":"integer"}`, `"http_path":{"default":"/"`} {
		if !strings.Contains(string(b), s) {
			t.Errorf("healthchecks schema lacks %s: %s", s, b)
		}
	}
	r, _ := Schema("routes")
	if rd := defaults(r); !reflect.DeepEqual(rd["protocols"], []any{"http", "https"}) || rd["https_redirect_status_code"] != int64(426) {
		t.Errorf("routes defaults: %v", rd)
	}
	for _, coll := range []string{"targets", "consumers", "plugins", "certificates", "snis", "ca_certificates"} {
		if _, ok := Schema(coll); !ok {
			t.Errorf("no schema for %s", coll)
		}
	}
	if _, ok := Schema("consumer_group_plugins"); ok {
		t.Error("schema for an unknown collection")
	}
	ps, ok := PluginSchema("key-auth")
	if !ok {
		t.Fatal("no key-auth schema")
	}
	pb, _ := json.Marshal(ps)
	if !strings.Contains(string(pb), `"config":{"fields":[],"required":true,"type":"record"}`) ||
		!strings.Contains(string(pb), `"protocols":{"default":["grpc","grpcs","http","https"]`) {
		t.Errorf("plugin schema: %s", pb)
	}
	if _, ok := PluginSchema("nope"); ok {
		t.Error("schema for an unknown plugin")
	}
	if len(BundledPlugins()) < 40 || !IsBundledPlugin("rate-limiting") || IsBundledPlugin("preserve-nulls") {
		t.Error("bundled plugin list")
	}
}

func TestFromEntitiesAndValidate(t *testing.T) {
	svcID, routeID := "4e3cb785-a8d0-5866-aa05-117f7c64f24d", "073fc413-1c03-50b4-8f44-43367c13daba"
	svc, _ := ValidateEntity(CollServices, map[string]any{"id": svcID, "name": "s", "host": "a.test", "created_at": float64(1700000000)}, Insert)
	route, _ := ValidateEntity(CollRoutes, map[string]any{"id": routeID, "paths": []any{"/"}, "service": map[string]any{"id": svcID}}, Insert)
	c, err := FromEntities(map[string][]map[string]any{
		"services": {svc}, "routes": {route},
		"acls": {{"id": "5e3cb785-a8d0-5866-aa05-117f7c64f24d", "group": "g", "consumer": map[string]any{"id": "6e3cb785-a8d0-5866-aa05-117f7c64f24d"}}},
	})
	if err == nil {
		t.Fatalf("dangling credential consumer accepted: %+v", c)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(ve.Error(), "invalid reference 'consumer:") {
		t.Errorf("error: %v", err)
	}
	c, err = FromEntities(map[string][]map[string]any{"services": {svc}, "routes": {route}, "vaults": {{"prefix": "env"}}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Services[0].ID != svcID || c.Services[0].CreatedAt != 1700000000 || *c.Routes[0].Service != svcID ||
		len(c.Extra["vaults"]) != 1 {
		t.Errorf("FromEntities: %s %s %v", asJSON(c.Services), asJSON(c.Routes), c.Extra)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// Referential integrity of a typed config.
	other := "7e3cb785-a8d0-5866-aa05-117f7c64f24d"
	c.Routes[0].Service = &other
	err = c.Validate()
	if !errors.As(err, &ve) || !hasError(ve, "route", "service", "invalid reference 'service: {\"id\":\""+other+"\"}' (no such entry in 'services')") {
		t.Errorf("dangling route.service: %v", err)
	}
	c.Routes[0].Service = nil
	c.Services[0].Host = ""
	err = c.Validate()
	if !errors.As(err, &ve) || !hasError(ve, "service", "host", "length must be at least 1") {
		t.Errorf("empty host: %v", err)
	}
	if c.Services[0].Host != "" {
		t.Error("Validate modified the config")
	}
}

func TestKongMessageFormatting(t *testing.T) {
	ve := &ValidationError{Fields: map[string]any{
		"services": []any{nil, map[string]any{"@entity": []any{"x"}, "host": "a \"b\""}},
		"routes":   map[string]any{"my-route": []any{"m"}},
	}}
	want := `declarative config is invalid: {routes={["my-route"]={"m"}},services={[2]={["@entity"]={"x"},host="a \"b\""}}}`
	if got := ve.KongMessage(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

// A self-signed test certificate and key (ECDSA P-256, valid for 100 years),
// indented for embedding in YAML block scalars.
const testCertIndented = `    -----BEGIN CERTIFICATE-----
    MIIBljCCATugAwIBAgIUFPVEWyC1tYdoKzf1Q3N4DD4yc9IwCgYIKoZIzj0EAwIw
    FDESMBAGA1UEAwwJYS5leGFtcGxlMCAXDTI2MTEyMjA0MTkyMFoYDzIxMjYxMDI5
    MDQxOTIwWjAUMRIwEAYDVQQDDAlhLmV4YW1wbGUwWTATBgcqhkjOPQIBBggqhkjO
    PQMBBwNCAAQZWw34O5xueyJRjeX3l2B0XSSP8PLgoE0IQKDQ3aeeBX7rR+Yy0/uI
    n6JZ5w9DXGf8hMpxhXZUQViwtMHHCS8eo2kwZzAdBgNVHQ4EFgQUZS2HrZsh87MB
    pZSP6IhAMBs9MnQwHwYDVR0jBBgwFoAUZS2HrZsh87MBpZSP6IhAMBs9MnQwDwYD
    VR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglhLmV4YW1wbGUwCgYIKoZIzj0EAwID
    SQAwRgIhAJBZLVGIOPkH6Qu1GebsavIH7BR9CjtHkR4Jb3xUMIVbAiEA9haTOGT7
    yDrhhq6G63Hd00dphOlBRszjcTaesI2gfkg=
    -----END CERTIFICATE-----`

const testKeyIndented = `    -----BEGIN PRIVATE KEY-----
    MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgNtKz9ItdTzmtO6Ea
    hgFR3Z/vmQW65JlV33ksp/u/kBahRANCAAQZWw34O5xueyJRjeX3l2B0XSSP8PLg
    oE0IQKDQ3aeeBX7rR+Yy0/uIn6JZ5w9DXGf8hMpxhXZUQViwtMHHCS8e
    -----END PRIVATE KEY-----`

// adminMap (the fast path of Validate) must agree with the JSON form of the
// typed structs, field for field, so a field added to types.go cannot be
// silently skipped by Validate.
func TestAdminMapMatchesJSON(t *testing.T) {
	c := mustParse(t, idDoc+`ca_certificates: []
`, "kong.yaml")
	c2 := mustParse(t, `_format_version: "3.0"
routes:
- name: r
  protocols: [tcp]
  sources: [{ip: 10.0.0.0/8}, {port: 80}]
  destinations: [{ip: 10.0.0.1, port: 81}]
- name: h
  headers: {x-a: [b]}
  snis: [a.test]
services:
- name: s
  url: https://a.test
  tls_verify: true
  tls_verify_depth: 2
`, "kong.yaml")
	var rows []any
	for _, cfg := range []*Config{c, c2} {
		for _, v := range cfg.Services {
			rows = append(rows, v)
		}
		for _, v := range cfg.Routes {
			rows = append(rows, v)
		}
		for _, v := range cfg.Upstreams {
			rows = append(rows, v)
		}
		for _, v := range cfg.Targets {
			rows = append(rows, v)
		}
		for _, v := range cfg.Consumers {
			rows = append(rows, v)
		}
		for _, v := range cfg.Plugins {
			rows = append(rows, v)
		}
		for _, v := range cfg.Certificates {
			rows = append(rows, v)
		}
		for _, v := range cfg.SNIs {
			rows = append(rows, v)
		}
	}
	rows = append(rows, &CACertificate{ID: "x", Cert: "c"}, &Service{WsID: "w"})
	for _, v := range rows {
		fast, ok := adminMap(v)
		if !ok {
			t.Fatalf("no adminMap for %T", v)
		}
		slow, err := genericOf(v)
		if err != nil {
			t.Fatal(err)
		}
		for k, sv := range slow {
			if s, ok := sv.(string); ok && (k == "service" || k == "route" || k == "consumer" || k == "upstream" ||
				k == "certificate" || k == "client_certificate") {
				slow[k] = map[string]any{"id": s}
			}
		}
		if a, b := asJSON(roundTrip(fast)), asJSON(roundTrip(slow)); a != b {
			t.Errorf("%T: adminMap differs from JSON form\nfast: %s\nslow: %s", v, a, b)
		}
	}
}
