package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
	"github.com/kongfb/kongfb/pkg/config"
)

// backends runs fn against a real SQLite store and, when
// $KONGFB_TEST_PG_DSN is set, a real PostgreSQL store.
func backends(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, storetest.NewSQLite(t)) })
	t.Run("postgres", func(t *testing.T) { fn(t, storetest.NewPostgres(t)) })
}

type apiClient struct {
	t     *testing.T
	base  string
	token string
	h     *Handler
}

func newAPI(t *testing.T, st store.Store, mod ...func(*Options)) *apiClient {
	t.Helper()
	opts := Options{Store: st, NodeID: "3c7e6b7a-0000-4000-8000-000000000001", Hostname: "test-host",
		Configuration: map[string]any{"database": st.Backend(), "pg_password": "hunter2"}}
	for _, m := range mod {
		m(&opts)
	}
	h, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &apiClient{t: t, base: srv.URL, token: opts.Token, h: h}
}

type apiResp struct {
	t      *testing.T
	what   string
	status int
	header http.Header
	raw    []byte
}

// do sends a request. body: nil, a string (sent as is, with contentType), or
// anything else (JSON).
func (c *apiClient) do(method, path string, body any, contentType ...string) *apiResp {
	c.t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		ct = "application/json"
	default:
		data, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
		ct = "application/json"
	}
	if len(contentType) > 0 {
		ct = contentType[0]
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if c.token != "" {
		req.Header.Set(TokenHeader, c.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return &apiResp{t: c.t, what: method + " " + path, status: res.StatusCode, header: res.Header, raw: raw}
}

func (r *apiResp) expect(status int) *apiResp {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("%s: status %d, want %d; body %s", r.what, r.status, status, r.raw)
	}
	return r
}

func (r *apiResp) obj() map[string]any {
	r.t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.raw, &m); err != nil {
		r.t.Fatalf("%s: body is not a JSON object: %v: %s", r.what, err, r.raw)
	}
	return m
}

// body checks the body is exactly the given JSON document (as values).
func (r *apiResp) body(want string) {
	r.t.Helper()
	var got, exp any
	if err := json.Unmarshal(r.raw, &got); err != nil {
		r.t.Fatalf("%s: body is not JSON: %v: %s", r.what, err, r.raw)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		r.t.Fatalf("bad expectation %s: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		r.t.Fatalf("%s: body\n got %s\nwant %s", r.what, r.raw, want)
	}
}

func str(v any) string { s, _ := v.(string); return s }

func TestRootAndStatus(t *testing.T) {
	api := newAPI(t, storetest.NewSQLite(t))
	r := api.do("GET", "/", nil).expect(200)
	if r.header.Get("Server") != "kong/3.9.1" || r.header.Get("X-Kong-Admin-Latency") == "" ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Errorf("headers: %v", r.header)
	}
	m := r.obj()
	if m["version"] != "3.9.1" || m["tagline"] != "Welcome to kong" || m["edition"] != "community" ||
		m["node_id"] != "3c7e6b7a-0000-4000-8000-000000000001" || m["hostname"] != "test-host" {
		t.Errorf("GET /: %s", r.raw)
	}
	conf := m["configuration"].(map[string]any)
	if conf["database"] != "sqlite" || conf["role"] != "control_plane" || conf["pg_password"] != "******" {
		t.Errorf("configuration: %v", conf)
	}
	if !bytes.Contains(r.raw, []byte(`"enabled_in_cluster":[]`)) {
		t.Errorf("enabled_in_cluster must be an empty JSON array: %s", r.raw)
	}
	if _, ok := m["plugins"].(map[string]any)["available_on_server"].(map[string]any)["key-auth"]; !ok {
		t.Errorf("available_on_server lacks key-auth")
	}
	h := api.do("HEAD", "/", nil).expect(200)
	if len(h.raw) != 0 {
		t.Errorf("HEAD / has a body")
	}
	api.do("POST", "/", nil).expect(405).body(`{"message":"Method not allowed"}`)
	api.do("DELETE", "/services", nil).expect(405).body(`{"message":"Method not allowed"}`)
	o := api.do("OPTIONS", "/services", nil).expect(204)
	if o.header.Get("Allow") != "GET, HEAD, OPTIONS, POST" {
		t.Errorf("OPTIONS Allow = %q", o.header.Get("Allow"))
	}

	s := api.do("GET", "/status", nil).expect(200).obj()
	if s["database"].(map[string]any)["reachable"] != true {
		t.Errorf("/status: %v", s)
	}
	if _, ok := s["server"].(map[string]any)["total_requests"]; !ok {
		t.Errorf("/status server: %v", s)
	}
	if s := api.do("GET", "/status?unit=b", nil).expect(200).obj(); s["memory"] == nil {
		t.Errorf("/status?unit=b: %v", s)
	}
	api.do("GET", "/status?unit=x", nil).expect(400)

	// The status listener's handler.
	ss := httptest.NewServer(api.h.StatusHandler())
	defer ss.Close()
	res, err := http.Get(ss.URL + "/status/ready")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !bytes.Contains(b, []byte(`"ready"`)) {
		t.Errorf("/status/ready: %d %s", res.StatusCode, b)
	}
}

func TestUnknownPaths(t *testing.T) {
	api := newAPI(t, storetest.NewSQLite(t))
	for _, p := range []string{
		"/vaults", "/keys", "/key-sets", "/partials", "/key-auths", "/basic-auths", "/hmac-auths", "/jwts",
		"/acls", "/oauth2", "/mtls-auths", "/consumer_groups", "/filter-chains", "/degraphql_routes",
		"/targets", "/targets/x", "/nope", "/services/x/nope", "/workspaces",
	} {
		api.do("GET", p, nil).expect(404).body(`{"message":"Not found"}`)
	}
	api.do("GET", "/services/", nil).expect(200) // trailing slash tolerated
}

func TestServicesCRUD(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		svc := api.do("POST", "/services", map[string]any{"name": "svc1", "url": "http://example.com:8080/api"}).expect(201).obj()
		id := str(svc["id"])
		if !config.IsUUID(id) || svc["host"] != "example.com" || svc["port"] != float64(8080) || svc["path"] != "/api" ||
			svc["protocol"] != "http" || svc["retries"] != float64(5) || svc["connect_timeout"] != float64(60000) {
			t.Fatalf("POST /services: %v", svc)
		}
		// Every field is present, nulls included.
		for _, f := range []string{"tags", "client_certificate", "tls_verify", "tls_verify_depth", "ca_certificates", "created_at", "updated_at"} {
			if _, ok := svc[f]; !ok {
				t.Errorf("response lacks %q: %v", f, svc)
			}
		}
		got := api.do("GET", "/services/"+id, nil).expect(200).obj()
		byName := api.do("GET", "/services/svc1", nil).expect(200).obj()
		if !reflect.DeepEqual(got, svc) || !reflect.DeepEqual(byName, svc) {
			t.Errorf("GET differs from POST answer:\n%v\n%v\n%v", svc, got, byName)
		}
		api.do("GET", "/services/nope", nil).expect(404).body(`{"message":"Not found"}`)
		api.do("GET", "/services/00000000-0000-4000-8000-000000000000", nil).expect(404).body(`{"message":"Not found"}`)

		// PATCH merges; PUT replaces (unspecified fields back to defaults).
		p := api.do("PATCH", "/services/svc1", map[string]any{"retries": 3}).expect(200).obj()
		if p["retries"] != float64(3) || p["path"] != "/api" || p["created_at"] != svc["created_at"] {
			t.Errorf("PATCH: %v", p)
		}
		u := api.do("PUT", "/services/"+id, map[string]any{"name": "svc1", "host": "other.test"}).expect(200).obj()
		if u["retries"] != float64(5) || u["path"] != nil || u["port"] != float64(80) || u["id"] != id || u["created_at"] != svc["created_at"] {
			t.Errorf("PUT by id: %v", u)
		}
		// PUT by name creates, with the name from the URL.
		n := api.do("PUT", "/services/by-name", map[string]any{"host": "n.test"}).expect(200).obj()
		if n["name"] != "by-name" || !config.IsUUID(str(n["id"])) {
			t.Errorf("PUT by name: %v", n)
		}
		n2 := api.do("PUT", "/services/by-name", map[string]any{"host": "n2.test"}).expect(200).obj()
		if n2["id"] != n["id"] || n2["host"] != "n2.test" {
			t.Errorf("PUT by name keeps the id: %v vs %v", n2, n)
		}
		// PUT by a new uuid creates with that id.
		newID := "6f8d1d0e-2b1f-4c7a-9e55-0c6a4c1e2f10"
		api.do("PUT", "/services/"+newID, map[string]any{"host": "u.test"}).expect(200)
		api.do("GET", "/services/"+newID, nil).expect(200)

		// PATCH of a missing entity: Kong's code-6 body.
		api.do("PATCH", "/services/"+"1e0c8f4a-3b2d-4c1e-9f0a-5b6c7d8e9f00", map[string]any{"retries": 1}).expect(404).
			body(`{"code":6,"name":"not found","message":"could not find the entity with primary key '{id=\"1e0c8f4a-3b2d-4c1e-9f0a-5b6c7d8e9f00\"}'","fields":{"id":"1e0c8f4a-3b2d-4c1e-9f0a-5b6c7d8e9f00"}}`)
		api.do("PATCH", "/services/ghost", map[string]any{"retries": 1}).expect(404).
			body(`{"code":6,"name":"not found","message":"could not find the entity with '{name=\"ghost\"}'","fields":{"name":"ghost"}}`)

		// DELETE answers 204, also when the entity is absent.
		api.do("DELETE", "/services/svc1", nil).expect(204)
		api.do("DELETE", "/services/svc1", nil).expect(204)
		api.do("DELETE", "/services/"+id, nil).expect(204)
		api.do("GET", "/services/"+id, nil).expect(404)

		// Entities without endpoint key reject a non-uuid key.
		api.do("GET", "/ca_certificates/foo", nil).expect(400).
			body(`{"code":1,"name":"invalid primary key","message":"invalid primary key: '{id=\"foo\"}'","fields":{"id":"expected a valid UUID"}}`)
	})
}

func TestErrorShapes(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		api.do("POST", "/services", map[string]any{"path": "foo"}).expect(400).
			body(`{"code":2,"name":"schema violation","message":"2 schema violations (host: required field missing; path: should start with: /)","fields":{"host":"required field missing","path":"should start with: /"}}`)
		api.do("POST", "/routes", map[string]any{"protocols": []any{"https"}}).expect(400).
			body(`{"code":2,"name":"schema violation","message":"schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')","fields":{"@entity":["must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"]}}`)

		api.do("POST", "/consumers", map[string]any{"username": "alice"}).expect(201)
		api.do("POST", "/consumers", map[string]any{"username": "alice"}).expect(409).
			body(`{"code":5,"name":"unique constraint violation","message":"UNIQUE violation detected on '{username=\"alice\"}'","fields":{"username":"alice"}}`)

		api.do("POST", "/routes", map[string]any{"paths": []any{"/"}, "service": map[string]any{"name": "non-existing"}}).expect(400).
			body(`{"code":13,"name":"foreign keys unresolved","message":"foreign key unresolved (service.name: the foreign key cannot be resolved with '{name=\"non-existing\"}' for an existing 'services' entity)","fields":{"service":{"name":"the foreign key cannot be resolved with '{name=\"non-existing\"}' for an existing 'services' entity"}}}`)
		ghost := "0b8a3c2d-1e4f-4a5b-8c6d-7e8f9a0b1c2d"
		api.do("POST", "/routes", map[string]any{"paths": []any{"/"}, "service": map[string]any{"id": ghost}}).expect(400).
			body(`{"code":4,"name":"foreign key violation","message":"the foreign key '{id=\"` + ghost + `\"}' does not reference an existing 'services' entity.","fields":{"service":{"id":"` + ghost + `"}}}`)

		svc := api.do("POST", "/services", map[string]any{"name": "s", "host": "s.test"}).expect(201).obj()
		api.do("POST", "/routes", map[string]any{"paths": []any{"/"}, "service": map[string]any{"name": "s"}}).expect(201)
		api.do("DELETE", "/services/s", nil).expect(400).
			body(`{"code":4,"name":"foreign key violation","message":"an existing 'routes' entity references this 'services' entity","fields":{"@referenced_by":"routes"}}`)
		api.do("GET", "/services/"+str(svc["id"]), nil).expect(200)

		// Bodies.
		api.do("POST", "/services", `{"name": "x",`).expect(400).body(`{"message":"Cannot parse JSON body"}`)
		r := api.do("POST", "/services", "name=x", "text/plain").expect(415)
		if len(r.raw) != 0 {
			t.Errorf("415 body: %q", r.raw)
		}
		api.do("POST", "/services", "name=x", "").expect(415)
	})
}

func TestBodyLimit(t *testing.T) {
	api := newAPI(t, storetest.NewSQLite(t), func(o *Options) { o.MaxBodyBytes = 1024 })
	big := `{"name":"x","host":"` + strings.Repeat("a", 2048) + `"}`
	api.do("POST", "/services", big).expect(413)
}

func TestFormBodies(t *testing.T) {
	api := newAPI(t, storetest.NewSQLite(t))
	svc := api.do("POST", "/services", "name=form-svc&host=f.test&port=8080&tags[]=a&tags[]=b&tls_verify=", "application/x-www-form-urlencoded").expect(201).obj()
	if svc["port"] != float64(8080) || !reflect.DeepEqual(svc["tags"], []any{"a", "b"}) {
		t.Fatalf("form service: %v", svc)
	}
	rt := api.do("POST", "/services/form-svc/routes", "paths[]=/a&paths[]=/b&methods=GET&strip_path=false", "application/x-www-form-urlencoded").expect(201).obj()
	if !reflect.DeepEqual(rt["paths"], []any{"/a", "/b"}) || !reflect.DeepEqual(rt["methods"], []any{"GET"}) ||
		rt["strip_path"] != false || rt["service"].(map[string]any)["id"] != svc["id"] {
		t.Fatalf("form route: %v", rt)
	}
	// multipart/form-data
	var buf bytes.Buffer
	buf.WriteString("--XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nmp-user\r\n--XyZ\r\nContent-Disposition: form-data; name=\"custom_id\"\r\n\r\nc-1\r\n--XyZ--\r\n")
	c := api.do("POST", "/consumers", buf.String(), "multipart/form-data; boundary=XyZ").expect(201).obj()
	if c["username"] != "mp-user" || c["custom_id"] != "c-1" {
		t.Fatalf("multipart consumer: %v", c)
	}
	l := api.do("GET", "/consumers?custom_id=c-1", nil).expect(200).obj()
	if d := l["data"].([]any); len(d) != 1 || d[0].(map[string]any)["username"] != "mp-user" || l["next"] != nil {
		t.Errorf("GET /consumers?custom_id: %v", l)
	}
	api.do("GET", "/consumers?custom_id=none", nil).expect(200).body(`{"data":[],"next":null}`)
}

func TestPaginationAndTags(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		api.do("GET", "/services", nil).expect(200).body(`{"data":[],"next":null}`)
		for i := 0; i < 5; i++ {
			tags := []any{"all"}
			if i%2 == 0 {
				tags = append(tags, "even")
			} else {
				tags = append(tags, "odd")
			}
			api.do("POST", "/services", map[string]any{"name": fmt.Sprintf("s%d", i), "host": "h.test", "tags": tags}).expect(201)
		}
		seen := map[string]bool{}
		path := "/services?size=2"
		pages := 0
		for {
			m := api.do("GET", path, nil).expect(200).obj()
			pages++
			for _, d := range m["data"].([]any) {
				seen[str(d.(map[string]any)["name"])] = true
			}
			off, has := m["offset"]
			if !has {
				if m["next"] != nil {
					t.Fatalf("last page has next %v", m["next"])
				}
				break
			}
			next := str(m["next"])
			if !strings.HasPrefix(next, "/services?offset=") || !strings.HasSuffix(next, "&size=2") {
				t.Fatalf("next = %q", next)
			}
			path = "/services?size=2&offset=" + escapeURI(str(off))
			// The next link works as well.
			api.do("GET", next, nil).expect(200)
		}
		if len(seen) != 5 || pages != 3 {
			t.Fatalf("pagination saw %d services in %d pages", len(seen), pages)
		}
		count := func(q string) int {
			return len(api.do("GET", "/services?"+q, nil).expect(200).obj()["data"].([]any))
		}
		if n := count("tags=even"); n != 3 {
			t.Errorf("tags=even: %d", n)
		}
		if n := count("tags=all,odd"); n != 2 {
			t.Errorf("tags=all,odd: %d", n)
		}
		if n := count("tags=even/odd"); n != 5 {
			t.Errorf("tags=even/odd: %d", n)
		}
		if n := count("tags=nope"); n != 0 {
			t.Errorf("tags=nope: %d", n)
		}
		api.do("GET", "/services?size=abc", nil).expect(400).body(`{"code":9,"name":"invalid size","message":"size must be a number"}`)
		api.do("GET", "/services?size=1001", nil).expect(400).body(`{"code":9,"name":"invalid size","message":"size must be an integer between 1 and 1000"}`)
		r := api.do("GET", "/services?offset=%25%25bad", nil).expect(400).obj()
		if r["code"] != float64(7) || r["name"] != "invalid offset" || !strings.HasPrefix(str(r["message"]), "'%%bad' is not a valid offset: ") {
			t.Errorf("bad offset: %v", r)
		}
		api.do("GET", "/services?tags=a,b/c", nil).expect(400).
			body(`{"code":11,"name":"invalid options","message":"invalid option (tags: invalid filter syntax)","options":{"tags":"invalid filter syntax"}}`)
		api.do("GET", "/services?tags=a,b,c,d,e,f", nil).expect(400).
			body(`{"code":11,"name":"invalid options","message":"invalid option (tags: cannot query more than 5 tags)","options":{"tags":"cannot query more than 5 tags"}}`)

		tg := api.do("GET", "/tags/even", nil).expect(200).obj()
		if len(tg["data"].([]any)) != 3 {
			t.Errorf("/tags/even: %v", tg)
		}
		if len(api.do("GET", "/tags", nil).expect(200).obj()["data"].([]any)) != 10 {
			t.Errorf("/tags: want 10 (entity, tag) pairs")
		}
	})
}

func TestNestedEndpoints(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		s1 := api.do("POST", "/services", map[string]any{"name": "s1", "host": "a.test"}).expect(201).obj()
		api.do("POST", "/services", map[string]any{"name": "s2", "host": "b.test"}).expect(201)
		r1 := api.do("POST", "/services/s1/routes", map[string]any{"name": "r1", "paths": []any{"/one"}}).expect(201).obj()
		if r1["service"].(map[string]any)["id"] != s1["id"] {
			t.Fatalf("nested POST did not set service: %v", r1)
		}
		api.do("POST", "/routes", map[string]any{"name": "r2", "paths": []any{"/two"}, "service": map[string]any{"name": "s2"}}).expect(201)
		api.do("POST", "/routes", map[string]any{"name": "r3", "hosts": []any{"x.test"}}).expect(201)
		l := api.do("GET", "/services/s1/routes", nil).expect(200).obj()
		if d := l["data"].([]any); len(d) != 1 || d[0].(map[string]any)["name"] != "r1" {
			t.Fatalf("GET /services/s1/routes: %v", l)
		}
		api.do("GET", "/services/ghost/routes", nil).expect(404).body(`{"message":"Not found"}`)
		api.do("GET", "/services/s1/routes/r1", nil).expect(200)
		api.do("GET", "/services/s2/routes/r1", nil).expect(404)
		api.do("PATCH", "/services/s2/routes/r1", map[string]any{"paths": []any{"/x"}}).expect(404)
		api.do("PATCH", "/services/s1/routes/r1", map[string]any{"paths": []any{"/uno"}}).expect(200)
		rs := api.do("GET", "/routes/r1/service", nil).expect(200).obj()
		if rs["name"] != "s1" {
			t.Errorf("GET /routes/r1/service: %v", rs)
		}
		api.do("PATCH", "/routes/r1/service", map[string]any{"retries": 1}).expect(200)
		api.do("GET", "/routes/r3/service", nil).expect(404)
		api.do("DELETE", "/routes/r1/service", nil).expect(405)
		// PUT on a route without service creates one and links it.
		ns := api.do("PUT", "/routes/r3/service", map[string]any{"host": "new.test"}).expect(200).obj()
		r3 := api.do("GET", "/routes/r3", nil).expect(200).obj()
		if r3["service"].(map[string]any)["id"] != ns["id"] {
			t.Errorf("PUT /routes/r3/service did not link: %v / %v", ns, r3)
		}

		// Plugins nested under services/routes/consumers.
		p := api.do("POST", "/services/s1/plugins", map[string]any{"name": "key-auth"}).expect(201).obj()
		if p["service"].(map[string]any)["id"] != s1["id"] || p["route"] != nil {
			t.Fatalf("nested plugin: %v", p)
		}
		api.do("POST", "/services/s1/plugins", map[string]any{"name": "key-auth"}).expect(409)
		api.do("POST", "/routes/r2/plugins", map[string]any{"name": "cors"}).expect(201)
		api.do("POST", "/consumers", map[string]any{"username": "bob"}).expect(201)
		api.do("POST", "/consumers/bob/plugins", map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 5}}).expect(201)
		if n := len(api.do("GET", "/plugins", nil).expect(200).obj()["data"].([]any)); n != 3 {
			t.Errorf("GET /plugins: %d", n)
		}
		if n := len(api.do("GET", "/services/s1/plugins", nil).expect(200).obj()["data"].([]any)); n != 1 {
			t.Errorf("GET /services/s1/plugins: %d", n)
		}
		root := api.do("GET", "/", nil).expect(200).obj()
		if got := root["plugins"].(map[string]any)["enabled_in_cluster"]; !reflect.DeepEqual(got, []any{"cors", "key-auth", "rate-limiting"}) {
			t.Errorf("enabled_in_cluster: %v", got)
		}
		// Deleting a route cascades to its plugins.
		api.do("DELETE", "/services/s2/routes/r2", nil).expect(204)
		if n := len(api.do("GET", "/plugins", nil).expect(200).obj()["data"].([]any)); n != 2 {
			t.Errorf("plugins after route delete: %d", n)
		}
	})
}

func TestTargets(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		up := api.do("POST", "/upstreams", map[string]any{"name": "up.test"}).expect(201).obj()
		if up["algorithm"] != "round-robin" || up["slots"] != float64(10000) || up["healthchecks"] == nil {
			t.Fatalf("upstream defaults: %v", up)
		}
		t1 := api.do("POST", "/upstreams/up.test/targets", map[string]any{"target": "10.0.0.1:80"}).expect(201).obj()
		if t1["weight"] != float64(100) || t1["upstream"].(map[string]any)["id"] != up["id"] {
			t.Fatalf("target: %v", t1)
		}
		api.do("POST", "/upstreams/up.test/targets", map[string]any{"target": "10.0.0.1:80"}).expect(409)
		l := api.do("GET", "/upstreams/"+str(up["id"])+"/targets", nil).expect(200).obj()
		if len(l["data"].([]any)) != 1 {
			t.Fatalf("targets list: %v", l)
		}
		api.do("GET", "/upstreams/up.test/targets/all", nil).expect(200)
		api.do("GET", "/upstreams/up.test/targets/10.0.0.1:80", nil).expect(200)
		api.do("GET", "/upstreams/up.test/targets/"+str(t1["id"]), nil).expect(200)
		u := api.do("PUT", "/upstreams/up.test/targets/"+str(t1["id"]), map[string]any{"target": "10.0.0.1:80", "weight": 5}).expect(200).obj()
		if u["weight"] != float64(5) || u["id"] != t1["id"] {
			t.Errorf("PUT target: %v", u)
		}
		api.do("PATCH", "/upstreams/up.test/targets/10.0.0.1:80", map[string]any{"weight": 7}).expect(200)
		// decK's flow: PUT of a target that does not exist is 404, then POST with the id.
		newID := "2d3e4f50-6172-4384-95a6-b7c8d9e0f1a2"
		api.do("PUT", "/upstreams/up.test/targets/"+newID, map[string]any{"target": "10.0.0.2:80"}).expect(404).body(`{"message":"Not found"}`)
		c := api.do("POST", "/upstreams/up.test/targets", map[string]any{"id": newID, "target": "10.0.0.2:80"}).expect(201).obj()
		if c["id"] != newID {
			t.Errorf("POST target with id: %v", c)
		}
		api.do("DELETE", "/upstreams/up.test/targets/"+newID, nil).expect(204)
		api.do("GET", "/upstreams/up.test/targets/"+newID, nil).expect(404)
		// Deleting the upstream cascades to its targets.
		api.do("DELETE", "/upstreams/up.test", nil).expect(204)
		api.do("GET", "/upstreams/"+str(up["id"])+"/targets", nil).expect(404)
	})
}

func TestSchemas(t *testing.T) {
	api := newAPI(t, storetest.NewSQLite(t))
	s := api.do("GET", "/schemas/services", nil).expect(200).obj()
	if _, ok := s["fields"].([]any); !ok {
		t.Fatalf("/schemas/services: %v", s)
	}
	api.do("GET", "/schemas/nope", nil).expect(404).body(`{"message":"No entity named 'nope'"}`)
	api.do("GET", "/schemas/plugins/nope", nil).expect(404).body(`{"message":"No plugin named 'nope'"}`)
	api.do("GET", "/schemas/plugins/key-auth", nil).expect(200)
	api.do("POST", "/schemas/services/validate", map[string]any{"host": "ok.test"}).expect(200).
		body(`{"message":"schema validation successful"}`)
	v := api.do("POST", "/schemas/services/validate", map[string]any{"port": 1}).expect(400).obj()
	if v["code"] != float64(2) {
		t.Errorf("validate: %v", v)
	}
	api.do("POST", "/schemas/plugins/validate", map[string]any{"name": "key-auth"}).expect(200)
}

func TestAdminToken(t *testing.T) {
	st := storetest.NewSQLite(t)
	api := newAPI(t, st, func(o *Options) { o.Token = "s3cret" })
	api.do("GET", "/services", nil).expect(200)
	anon := &apiClient{t: t, base: api.base}
	anon.do("GET", "/", nil).expect(401).body(`{"message":"Invalid credentials. Token or User credentials required"}`)
	anon.do("POST", "/services", map[string]any{"host": "x.test"}).expect(401)
	anon.do("OPTIONS", "/services", nil).expect(204)
	wrong := &apiClient{t: t, base: api.base, token: "s3cre"}
	wrong.do("GET", "/services", nil).expect(401)
	// The status listener needs no token (read-only, Kong's status_listen).
	ss := httptest.NewServer(api.h.StatusHandler())
	defer ss.Close()
	res, err := http.Get(ss.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("status API with token configured: %d", res.StatusCode)
	}
}

func TestConcurrentWriters(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		const n = 50
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				body, _ := json.Marshal(map[string]any{"host": fmt.Sprintf("h%d.test", i)})
				req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/services/svc-%02d", api.base, i), bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					errs <- fmt.Sprintf("writer %d: %d %s", i, res.StatusCode, b)
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		m := api.do("GET", "/services?size=1000", nil).expect(200).obj()
		if got := len(m["data"].([]any)); got != n {
			t.Fatalf("%d services after %d concurrent writers", got, n)
		}
	})
}

func TestDeclarativeConfig(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		api.do("POST", "/services", map[string]any{"name": "old", "host": "old.test"}).expect(201)
		doc := api.do("GET", "/config", nil).expect(200).obj()
		if doc["_format_version"] != "3.0" || doc["_transform"] != false {
			t.Fatalf("GET /config: %v", doc)
		}
		if svcs, _ := doc["services"].([]any); len(svcs) != 1 || svcs[0].(map[string]any)["name"] != "old" {
			t.Fatalf("GET /config services: %v", doc["services"])
		}

		yamlDoc := `_format_version: "3.0"
services:
  - name: new
    url: http://new.test:8080
    routes:
      - name: r
        paths: ["/new"]
consumers:
  - username: carol
`
		res := api.do("POST", "/config", yamlDoc, "application/yaml").expect(201).obj()
		if len(res["services"].(map[string]any)) != 1 || len(res["routes"].(map[string]any)) != 1 {
			t.Fatalf("POST /config answer: %v", res)
		}
		api.do("GET", "/services/old", nil).expect(404)
		api.do("GET", "/services/new", nil).expect(200)
		rt := api.do("GET", "/routes/r", nil).expect(200).obj()
		if rt["service"].(map[string]any)["id"] == nil {
			t.Errorf("route lost its service: %v", rt)
		}
		api.do("GET", "/consumers/carol", nil).expect(200)

		// Invalid: code 14, nothing applied.
		bad := `{"_format_version":"3.0","services":[{"name":"x","port":99999},{"name":"y","host":"ok.test"}]}`
		e := api.do("POST", "/config", bad).expect(400).obj()
		if e["code"] != float64(14) || e["name"] != "invalid declarative configuration" ||
			!strings.HasPrefix(str(e["message"]), "declarative config is invalid: ") || e["fields"] == nil {
			t.Fatalf("invalid POST /config: %v", e)
		}
		if _, ok := e["flattened_errors"]; ok {
			t.Errorf("flattened_errors without flatten_errors")
		}
		api.do("GET", "/services/new", nil).expect(200)
		api.do("GET", "/services/y", nil).expect(404)
		fe := api.do("POST", "/config?flatten_errors=1", bad).expect(400).obj()
		fl, ok := fe["flattened_errors"].([]any)
		if !ok || len(fl) == 0 || fl[0].(map[string]any)["entity_type"] != "service" {
			t.Errorf("flattened_errors: %v", fe["flattened_errors"])
		}
		// Unparseable and empty.
		se := api.do("POST", "/config", "services: [", "text/yaml").expect(400).obj()
		if se["code"] != float64(14) || se["fields"].(map[string]any)["error"] == nil {
			t.Errorf("syntax error: %v", se)
		}
		api.do("POST", "/config", nil).expect(400).body(`{"message":"expected a declarative configuration"}`)
		// {"config": "<text>"} as in Kong's DB-less mode.
		wrapped, _ := json.Marshal(map[string]any{"config": `{"_format_version":"3.0","services":[{"name":"w","host":"w.test"}]}`})
		api.do("POST", "/config", string(wrapped)).expect(201)
		api.do("GET", "/services/w", nil).expect(200)
		api.do("GET", "/services/new", nil).expect(404)
		api.do("GET", "/routes/r", nil).expect(404)
	})
}

// TestDeckFlow replays what `deck gateway sync` does against a Kong Admin
// API (see shared/reference/deck-admin-api-calls.md).
func TestDeckFlow(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		root := api.do("GET", "/", nil).expect(200).obj()
		if _, ok := root["version"].(string); !ok {
			t.Fatal("version must be a string")
		}
		if _, ok := root["configuration"].(map[string]any)["database"].(string); !ok {
			t.Fatal("configuration.database must be a string")
		}
		// Defaults decK applies to its target state.
		defaults := schemaDefaults(t, api, "services")
		for _, s := range []string{"routes", "upstreams", "targets"} {
			api.do("GET", "/schemas/"+s, nil).expect(200)
		}
		api.do("GET", "/schemas/consumer_group_plugins", nil).expect(404)

		// Current state: everything empty; 404-tolerated collections answer 404.
		for _, c := range []string{"services", "routes", "plugins", "certificates", "snis", "consumers", "upstreams", "ca_certificates"} {
			all := listAll(t, api, "/"+c)
			if len(all) != 0 {
				t.Fatalf("%s not empty", c)
			}
		}
		for _, c := range []string{"vaults", "partials", "keys", "key-sets", "consumer_groups", "key-auths", "acls"} {
			api.do("GET", "/"+c+"?size=1000", nil).expect(404)
		}

		// decK creates with PUT /{entities}/{uuid} and the full entity.
		svcID := "5e0f1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
		body := map[string]any{"id": svcID, "name": "deck-svc", "host": "mockbin.test", "port": 443, "protocol": "https", "path": "/x"}
		given := map[string]bool{}
		for k := range body {
			given[k] = true
		}
		for k, v := range defaults {
			if _, ok := body[k]; !ok {
				body[k] = v
			}
		}
		put := api.do("PUT", "/services/"+svcID, body).expect(200).obj()
		// What decK sent (with the schema defaults) is what the server stored:
		// a re-sync finds no difference.
		for k, v := range body {
			if !reflect.DeepEqual(put[k], normalizeJSON(v)) {
				t.Errorf("field %s: sent %v, stored %v", k, v, put[k])
			}
		}
		for k, v := range defaults {
			if !given[k] && !reflect.DeepEqual(put[k], v) {
				t.Errorf("schema default %s=%v but the server filled %v", k, v, put[k])
			}
		}
		routeID := "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
		api.do("PUT", "/routes/"+routeID, map[string]any{"id": routeID, "name": "deck-route", "paths": []any{"/deck"},
			"service": map[string]any{"id": svcID}}).expect(200)
		// Update keeps created_at.
		put["retries"] = 2
		again := api.do("PUT", "/services/"+svcID, put).expect(200).obj()
		if again["created_at"] != put["created_at"] || again["retries"] != float64(2) {
			t.Errorf("update: %v", again)
		}
		if got := listAll(t, api, "/routes"); len(got) != 1 {
			t.Fatalf("routes: %v", got)
		}
		// Deletes: routes first, then the service.
		api.do("DELETE", "/routes/"+routeID, nil).expect(204)
		api.do("DELETE", "/services/"+svcID, nil).expect(204)
		if got := listAll(t, api, "/services"); len(got) != 0 {
			t.Fatalf("services left: %v", got)
		}
	})
}

func normalizeJSON(v any) any {
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}

// listAll pages through a collection the way decK does: size=1000,
// following "offset" until it is absent.
func listAll(t *testing.T, api *apiClient, path string) []any {
	t.Helper()
	var out []any
	offset := ""
	for i := 0; i < 1000; i++ {
		p := path + "?size=1000"
		if offset != "" {
			p += "&offset=" + escapeURI(offset)
		}
		m := api.do("GET", p, nil).expect(200).obj()
		out = append(out, m["data"].([]any)...)
		o, ok := m["offset"].(string)
		if !ok {
			return out
		}
		offset = o
	}
	t.Fatal("pagination does not end")
	return nil
}

// schemaDefaults reads top-level scalar defaults from /schemas/{entity} as
// decK's defaulter does.
func schemaDefaults(t *testing.T, api *apiClient, entity string) map[string]any {
	t.Helper()
	s := api.do("GET", "/schemas/"+entity, nil).expect(200).obj()
	out := map[string]any{}
	for _, f := range s["fields"].([]any) {
		for name, def := range f.(map[string]any) {
			d := def.(map[string]any)
			if v, ok := d["default"]; ok && v != nil {
				out[name] = v
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("/schemas/%s has no defaults", entity)
	}
	return out
}

func TestCertificatesAndSNIs(t *testing.T) {
	backends(t, func(t *testing.T, st store.Store) {
		api := newAPI(t, st)
		certPEM, keyPEM := selfSigned(t, "a.example.test")
		c := api.do("POST", "/certificates", map[string]any{"cert": certPEM, "key": keyPEM, "snis": []any{"a.example.test", "b.example.test"}}).expect(201).obj()
		if !reflect.DeepEqual(c["snis"], []any{"a.example.test", "b.example.test"}) {
			t.Fatalf("certificate snis: %v", c["snis"])
		}
		id := str(c["id"])
		if n := len(api.do("GET", "/snis", nil).expect(200).obj()["data"].([]any)); n != 2 {
			t.Fatalf("GET /snis: %d", n)
		}
		// A certificate is found by one of its SNI names too.
		byName := api.do("GET", "/certificates/b.example.test", nil).expect(200).obj()
		if byName["id"] != id {
			t.Errorf("certificate by sni: %v", byName)
		}
		if n := len(api.do("GET", "/certificates/"+id+"/snis", nil).expect(200).obj()["data"].([]any)); n != 2 {
			t.Errorf("nested snis: %d", n)
		}
		// Another certificate cannot take an SNI.
		r := api.do("POST", "/certificates", map[string]any{"cert": certPEM, "key": keyPEM, "snis": []any{"a.example.test"}}).expect(400).obj()
		if r["code"] != float64(2) || !strings.Contains(str(r["message"]), "already associated with existing certificate") {
			t.Errorf("sni conflict: %v", r)
		}
		// PATCH replaces the list.
		p := api.do("PATCH", "/certificates/"+id, map[string]any{"snis": []any{"c.example.test"}}).expect(200).obj()
		if !reflect.DeepEqual(p["snis"], []any{"c.example.test"}) {
			t.Errorf("PATCH snis: %v", p["snis"])
		}
		api.do("GET", "/snis/a.example.test", nil).expect(404)
		// SNIs cascade with their certificate.
		api.do("DELETE", "/certificates/"+id, nil).expect(204)
		api.do("GET", "/snis", nil).expect(200).body(`{"data":[],"next":null}`)
	})
}

func TestDatabaseUnavailable(t *testing.T) {
	cfg := storetest.SQLiteConfig(t)
	cfg.AutoMigrate = true
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	api := newAPI(t, st)
	api.do("GET", "/services", nil).expect(200)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	r := api.do("GET", "/services", nil).expect(503).obj()
	if !strings.Contains(str(r["message"]), "database unavailable") {
		t.Errorf("503 body: %v", r)
	}
	api.do("GET", "/config", nil).expect(503)
	s := api.do("GET", "/status", nil).expect(200).obj()
	if s["database"].(map[string]any)["reachable"] != false {
		t.Errorf("status with closed store: %v", s)
	}
}

// recordDefaults extracts defaults from a Kong schema "fields" list the way
// decK's defaulter does, recursing into records.
func recordDefaults(fields []any) map[string]any {
	out := map[string]any{}
	for _, f := range fields {
		for name, def := range f.(map[string]any) {
			d := def.(map[string]any)
			if sub, ok := d["fields"].([]any); ok && d["type"] == "record" {
				if m := recordDefaults(sub); len(m) > 0 {
					out[name] = m
				}
				continue
			}
			if v, ok := d["default"]; ok && v != nil {
				out[name] = v
			}
		}
	}
	return out
}

// checkDefaults reports every schema default that differs from what the
// server stored.
func checkDefaults(t *testing.T, path string, defaults map[string]any, got map[string]any) {
	t.Helper()
	for k, v := range defaults {
		if sub, ok := v.(map[string]any); ok {
			gm, _ := got[k].(map[string]any)
			checkDefaults(t, path+"."+k, sub, gm)
			continue
		}
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s.%s: schema default %v, server filled %v", path, k, v, got[k])
		}
	}
}

// TestSchemaDefaultsMatchServer: for every entity decK reads defaults for,
// the /schemas document's defaults (nested records included) equal what the
// server fills into a minimal entity, so a decK re-sync is a no-op.
func TestSchemaDefaultsMatchServer(t *testing.T) {
	api := newAPI(t, storetest.NewSQLite(t))
	up := api.do("POST", "/upstreams", map[string]any{"name": "defaults.test"}).expect(201).obj()
	created := map[string]map[string]any{
		"services":  api.do("POST", "/services", map[string]any{"host": "d.test"}).expect(201).obj(),
		"routes":    api.do("POST", "/routes", map[string]any{"paths": []any{"/d"}}).expect(201).obj(),
		"upstreams": up,
		"targets":   api.do("POST", "/upstreams/defaults.test/targets", map[string]any{"target": "10.1.1.1:80"}).expect(201).obj(),
	}
	for coll, row := range created {
		s := api.do("GET", "/schemas/"+coll, nil).expect(200).obj()
		defs := recordDefaults(s["fields"].([]any))
		if len(defs) == 0 {
			t.Errorf("/schemas/%s has no defaults", coll)
		}
		if coll == "upstreams" {
			// The nested record defaults are there and were compared too.
			hc, _ := defs["healthchecks"].(map[string]any)
			act, _ := hc["active"].(map[string]any)
			if act["timeout"] == nil {
				t.Errorf("upstreams healthchecks.active defaults missing: %v", hc)
			}
		}
		checkDefaults(t, coll, defs, row)
	}
}
