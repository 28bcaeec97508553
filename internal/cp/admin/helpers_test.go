package admin

import (
	"net/url"
	"reflect"
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store"
)

func TestLuaPretty(t *testing.T) {
	cases := []struct {
		in   any
		want string
	}{
		{map[string]any{"id": "x"}, `{id="x"}`},
		{map[string]any{"name": "basic-auth", "route": map[string]any{"id": "r"}, "service": nil, "consumer": nil},
			`{consumer=null,name="basic-auth",route={id="r"},service=null}`},
		{map[string]any{"port": float64(8000)}, `{port=8000}`},
		{[]any{"a", "b"}, `{"a","b"}`},
	}
	for _, c := range cases {
		if got := store.LuaTable(c.in); got != c.want {
			t.Errorf("LuaTable(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestSchemaViolationMessage(t *testing.T) {
	got := schemaViolationMessage(map[string]any{"path": "should start with: /", "host": "required field missing"})
	if want := "2 schema violations (host: required field missing; path: should start with: /)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	got = schemaViolationMessage(map[string]any{"@entity": []any{"a"}, "paths": []any{nil, "bad"}})
	if want := "2 schema violations (a; paths.2: bad)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDecodeFormArgs(t *testing.T) {
	vals, err := url.ParseQuery("name=x&port=80&paths[]=/a&paths[]=/b&methods=GET&methods=POST&config.minute=5&config.policy=local&hosts[2]=b&hosts[1]=a&headers.x-a=1&tags=")
	if err != nil {
		t.Fatal(err)
	}
	got := decodeFormArgs(vals)
	want := map[string]any{
		"name":    "x",
		"port":    "80",
		"paths":   []any{"/a", "/b"},
		"methods": []any{"GET", "POST"},
		"config":  map[string]any{"minute": "5", "policy": "local"},
		"hosts":   []any{"a", "b"},
		"headers": map[string]any{"x-a": "1"},
		"tags":    "",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decodeFormArgs:\n got %#v\nwant %#v", got, want)
	}
}

func TestInferArgs(t *testing.T) {
	fields := []any{
		map[string]any{"port": map[string]any{"type": "integer"}},
		map[string]any{"enabled": map[string]any{"type": "boolean"}},
		map[string]any{"tags": map[string]any{"type": "set", "elements": map[string]any{"type": "string"}}},
		map[string]any{"service": map[string]any{"type": "foreign"}},
		map[string]any{"path": map[string]any{"type": "string"}},
		map[string]any{"hc": map[string]any{"type": "record", "fields": []any{
			map[string]any{"n": map[string]any{"type": "number"}},
		}}},
	}
	got := inferArgs(map[string]any{
		"port": "8080", "enabled": "false", "tags": "one", "service": "abc", "path": "", "hc": map[string]any{"n": "1.5"},
		"unknown": "7",
	}, fields)
	want := map[string]any{
		"port": float64(8080), "enabled": false, "tags": []any{"one"}, "service": map[string]any{"id": "abc"},
		"path": nil, "hc": map[string]any{"n": 1.5}, "unknown": "7",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("inferArgs:\n got %#v\nwant %#v", got, want)
	}
}

func TestParsePageQuery(t *testing.T) {
	ok := []struct {
		q    string
		size int
		tags []string
		or   bool
	}{
		{"", 100, nil, false},
		{"size=1000", 1000, nil, false},
		{"tags=a,b", 100, []string{"a", "b"}, false},
		{"tags=a/b/c", 100, []string{"a", "b", "c"}, true},
		{"tags=caf%C3%A9", 100, []string{"café"}, false},
	}
	for _, c := range ok {
		q, _ := url.ParseQuery(c.q)
		pq, kerr := parsePageQuery(q)
		if kerr != nil {
			t.Errorf("%q: unexpected error %s", c.q, kerr.Message)
			continue
		}
		if pq.Size != c.size || !reflect.DeepEqual(pq.Tags, c.tags) || pq.TagsOr != c.or {
			t.Errorf("%q: got size %d tags %v or %v", c.q, pq.Size, pq.Tags, pq.TagsOr)
		}
	}
	bad := map[string]string{
		"size=abc":         "size must be a number",
		"size=0":           "size must be an integer between 1 and 1000",
		"size=1001":        "size must be an integer between 1 and 1000",
		"size=1.5":         "size must be an integer between 1 and 1000",
		"tags=a,b/c":       "invalid option (tags: invalid filter syntax)",
		"tags=":            "invalid option (tags: cannot be null)",
		"tags=a,b,c,d,e,f": "invalid option (tags: cannot query more than 5 tags)",
	}
	for qs, msg := range bad {
		q, _ := url.ParseQuery(qs)
		_, kerr := parsePageQuery(q)
		if kerr == nil || kerr.Message != msg {
			t.Errorf("%q: got %+v, want message %q", qs, kerr, msg)
		}
	}
}

func TestNextLink(t *testing.T) {
	q, _ := url.ParseQuery("tags=a b,c&size=2")
	pq, _ := parsePageQuery(q)
	if got := nextLink("/services", "x+/=", pq, false); got != "/services?offset=x%2B%2F%3D&tags=a%20b%2Cc&size=2" {
		t.Errorf("top-level next: %v", got)
	}
	if got := nextLink("/services/s/routes", "tok", pq, true); got != "/services/s/routes?offset=tok" {
		t.Errorf("nested next: %v", got)
	}
	if got := nextLink("/services", "", pq, false); got != nil {
		t.Errorf("last page next: %v", got)
	}
}
