package config

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
)

// hxKongSpec is Kong's own unit spec for calculate_config_hash:
// Kong/kong spec/01-unit/19-hybrid/02-clustering_spec.lua, the version that
// tests kong.clustering.config_helper.calculate_config_hash (the 3.x
// algorithm that hashes the concatenated group hashes). Line numbers below
// are approximate positions in that file.
const hxKongSpec = "Kong/kong spec/01-unit/19-hybrid/02-clustering_spec.lua"

func TestHashKongSpecScalars(t *testing.T) {
	cases := []struct {
		name  string
		value any
		want  string
		where string
	}{
		{"null", nil, "5bf07a8b7343015026657d1108d8206e", "it(\"calculates hash for null\") ~l.25-42"},
		{"number", 10.0, "d3d9446802a44259755d38e6d163e820", "it(\"calculates hash for number\") ~l.44-61"},
		{"number as json.Number", json.Number("10"), "d3d9446802a44259755d38e6d163e820", "same value decoded with UseNumber"},
		{"number as int", 10, "d3d9446802a44259755d38e6d163e820", "same value as a Go int"},
		{"double", 0.9, "a894124cc6d5c5c71afe060d5dde0762", "it(\"calculates hash for double\") ~l.63-80"},
		{"empty string", "", "d41d8cd98f00b204e9800998ecf8427e", "it(\"calculates hash for empty string\") ~l.82-99"},
		{"string", "hello", "5d41402abc4b2a76b9719d911017c592", "it(\"calculates hash for string\") ~l.101-118"},
		{"false", false, "68934a3e9455fa72420237eb05902327", "it(\"calculates hash for boolean false\") ~l.120-137"},
		{"true", true, "b326b5062b2f0e69046810717534cb09", "it(\"calculates hash for boolean true\") ~l.139-156"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := hashAnyValue(tc.value); got != tc.want {
				t.Errorf("hash(%#v) = %s, want %s (%s: %s)", tc.value, got, tc.want, hxKongSpec, tc.where)
			}
		})
	}
}

func TestHashDocumentKongSpecTables(t *testing.T) {
	const braces = "99914b932bd37a50b983c5e7c90ae93b" // md5("{}")

	// it("calculating hash for nil") ~l.20-23: nil → DECLARATIVE_EMPTY_CONFIG_HASH.
	if h, hs := HashDocument(nil); h != EmptyHash || hs["routes"] != EmptyHash || hs["config"] != EmptyHash {
		t.Errorf("HashDocument(nil) = %s %v, want EmptyHash everywhere (%s ~l.20-23)", h, hs, hxKongSpec)
	}

	cases := []struct {
		name  string
		doc   map[string]any
		want  map[string]string
		where string
	}{
		{
			name: "empty table",
			doc:  map[string]any{},
			want: map[string]string{"config": "2da3c26e4dbd6dd6ea3ab60a3dd7fb3e", "routes": EmptyHash, "services": EmptyHash,
				"plugins": EmptyHash, "upstreams": EmptyHash, "targets": EmptyHash},
			where: "it(\"calculates hash for empty table\") ~l.178-192 and it(\"filled with empty hash values…\")",
		},
		{
			name: "empty routes services plugins",
			doc:  map[string]any{"routes": map[string]any{}, "services": map[string]any{}, "plugins": map[string]any{}},
			want: map[string]string{"config": "81aac97a81ad03c0cf0b36663806488e", "routes": braces, "services": braces,
				"plugins": braces, "upstreams": EmptyHash, "targets": EmptyHash},
			where: "it(\"has sensible values for existing fields\"), first table",
		},
		{
			// cjson decodes [] to an empty table too, so JSON arrays give the same.
			name: "empty routes services plugins as arrays",
			doc:  map[string]any{"routes": []any{}, "services": []any{}, "plugins": []any{}},
			want: map[string]string{"config": "81aac97a81ad03c0cf0b36663806488e", "routes": braces, "services": braces,
				"plugins": braces, "upstreams": EmptyHash, "targets": EmptyHash},
			where: "it(\"has sensible values for existing fields\"), first table, as JSON arrays",
		},
		{
			name: "empty upstreams targets",
			doc:  map[string]any{"upstreams": []any{}, "targets": map[string]any{}},
			want: map[string]string{"config": "4d60dd9998ea4314039da5ca2f1db96f", "routes": EmptyHash, "services": EmptyHash,
				"plugins": EmptyHash, "upstreams": braces, "targets": braces},
			where: "it(\"has sensible values for existing fields\"), second table",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, hs := HashDocument(tc.doc)
			if h != tc.want["config"] {
				t.Errorf("config_hash = %s, want %s (%s: %s)", h, tc.want["config"], hxKongSpec, tc.where)
			}
			for k, want := range tc.want {
				if hs[k] != want {
					t.Errorf("hashes[%s] = %s, want %s (%s: %s)", k, hs[k], want, hxKongSpec, tc.where)
				}
			}
			if len(hs) != 6 {
				t.Errorf("hashes has %d keys, want 6: %v", len(hs), hs)
			}
		})
	}
}

// hxKongComplexTable is the table of it("calculates hash for complex table")
// (~l.194-224), written as the JSON a DP would receive.
func hxKongComplexTable() map[string]any {
	arr := func(n int) []any {
		s := make([]any, n)
		for i := range s {
			s[i] = fmt.Sprintf("v%d", i+1)
		}
		return s
	}
	plugins := []any{
		map[string]any{"name": "0", "config": map[string]any{"param": "value"}},
		map[string]any{"name": "1", "config": map[string]any{"param": arr(6)}},
		map[string]any{"name": "2", "config": map[string]any{"param": arr(5)}},
		map[string]any{"name": "3", "config": map[string]any{"param": arr(4)}},
		map[string]any{"name": "4", "config": map[string]any{"param": arr(3)}},
		map[string]any{"name": "5", "config": map[string]any{"param": arr(2)}},
		map[string]any{"name": "6", "config": map[string]any{"param": arr(1)}},
		map[string]any{"name": "7", "config": map[string]any{"param": []any{}}},
		map[string]any{"name": "8", "config": map[string]any{"param": "value", "array": arr(6)}},
		map[string]any{"name": "9", "config": map[string]any{"bool1": true, "bool2": false, "number": 1.0, "double": 1.1,
			"empty": map[string]any{}, "null": nil, "string": "test", "hash": map[string]any{"k": "v"}, "array": arr(6)}},
	}
	consumers := make([]any, 1000)
	for i := range consumers {
		consumers[i] = map[string]any{"username": fmt.Sprintf("user-%d", i+1)}
	}
	return map[string]any{"plugins": plugins, "consumers": consumers}
}

func TestHashDocumentKongSpecComplexTable(t *testing.T) {
	const want = "675ff4b6b1c8cefa5198284110786ad0" // ~l.221
	doc := hxKongComplexTable()
	for i := 0; i < 3; i++ { // Kong's spec also checks stability across calls
		if got, _ := HashDocument(doc); got != want {
			t.Fatalf("complex table hash = %s, want %s (%s: it(\"calculates hash for complex table\"))", got, want, hxKongSpec)
		}
	}
	// The same table through JSON text and UseNumber decoding.
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var again map[string]any
	if err := dec.Decode(&again); err != nil {
		t.Fatal(err)
	}
	if got, _ := HashDocument(again); got != want {
		t.Fatalf("complex table via JSON/UseNumber = %s, want %s", got, want)
	}
}

func hxSortedString(v any) string {
	w := newHashWriter()
	defer w.release()
	w.buf = w.buf[:0]
	w.value(v, 0)
	return string(w.buf)
}

func TestSortedStringShapes(t *testing.T) {
	arr := func(n int) []any {
		s := make([]any, n)
		for i := range s {
			s[i] = fmt.Sprintf("v%d", i+1)
		}
		return s
	}
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"array of 1", arr(1), "v1"},
		{"array of 5 joined without trailing ;", arr(5), "v1;v2;v3;v4;v5"},
		{"array of 6 each followed by ;", arr(6), "v1;v2;v3;v4;v5;v6;"},
		{"empty array", []any{}, "{}"},
		{"empty object", map[string]any{}, "{}"},
		{"null", nil, "/null/"},
		{"null inside array", []any{"a", nil}, "a;/null/"},
		{"typed []string", []string{"a", "b"}, "a;b"},
		{"nil []string is null", []string(nil), "/null/"},
		{"map keys sorted bytewise", map[string]any{"b": 1.0, "B": 2.0, "a": true, "_x": "y"}, "B:2;_x:y;a:true;b:1;"},
		{"nested", map[string]any{"k": []any{map[string]any{"x": nil}, 1.5}}, "k:x:/null/;;1.5;"},
		{"int64 via reflection path", []int64{1, 2}, "1;2"},
		{"pointer", hxPtr("s"), "s"},
		{"nil pointer", (*string)(nil), "/null/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := hxSortedString(tc.v); got != tc.want {
				t.Errorf("to_sorted_string = %q, want %q", got, tc.want)
			}
		})
	}
}

func hxPtr[T any](v T) *T { return &v }

// TestLuaNumberFormat checks numbers against C's printf("%.14g"), which is
// what LuaJIT's tostring uses; the expected strings come from C's printf
// (via Python's % operator), not from Go.
func TestLuaNumberFormat(t *testing.T) {
	cases := []struct {
		in   float64
		want string
	}{
		{10, "10"},
		{0.9, "0.9"},
		{1.1, "1.1"},
		{60000, "60000"},
		{1765189923, "1765189923"},              // entity timestamp
		{1765189923.123, "1765189923.123"},      // target timestamp, ms precision
		{1765189923.1234567, "1765189923.1235"}, // 14 significant digits
		{9007199254740992, "9.007199254741e+15"},
		{1e15, "1e+15"},
		{1e14, "1e+14"},
		{99999999999999, "99999999999999"},
		{123456789012345, "1.2345678901234e+14"}, // exact half rounds to even, like C
		{0.1 + 0.2, "0.3"},
		{1e-5, "1e-05"},
		{0.0001, "0.0001"},
		{math.Copysign(0, -1), "-0"},
		{-1.5, "-1.5"},
		{1e300, "1e+300"},
		{5e-324, "4.9406564584125e-324"},
		{1.0 / 3, "0.33333333333333"},
		{9223372036854775808, "9.2233720368548e+18"},
		{123456789, "123456789"},
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
	}
	for _, tc := range cases {
		if got := hashLuaNumber(tc.in); got != tc.want {
			t.Errorf("hashLuaNumber(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Out-of-range JSON numbers become ±inf, as cjson's strtod makes them.
	if got := hashLuaNumber(hashJSONNumber("1e400")); got != "inf" {
		t.Errorf("1e400 = %q, want inf", got)
	}
	if got := hashLuaNumber(hashJSONNumber("-1e400")); got != "-inf" {
		t.Errorf("-1e400 = %q, want -inf", got)
	}
}

// hxBigDoc builds a document whose routes serialise to well over 1,000,000
// bytes, so that Kong's buffer-compaction rule fires several times.
func hxBigDoc() map[string]any {
	routes := make([]any, 12000)
	for i := range routes {
		routes[i] = map[string]any{
			"id":             fmt.Sprintf("r-%05d", i),
			"name":           fmt.Sprintf("route-%05d-", i) + strings.Repeat("x", 80),
			"paths":          []any{fmt.Sprintf("/p%d", i)},
			"regex_priority": float64(i),
			"weight":         float64(i) / 7,
			"strip_path":     i%2 == 0,
			"service":        nil,
			"hosts":          []any{},
		}
	}
	return map[string]any{
		"_format_version": "3.0",
		"_transform":      false,
		"routes":          routes,
		"services": []any{map[string]any{"id": "s-1", "host": "example.com", "port": 80.0,
			"tags": []any{"a", "b", "c", "d", "e", "f"}}},
	}
}

// TestHashDocumentMillionByteRule: Kong's spec has no value for a document
// this large, so the expected hashes were computed with an independent
// Python implementation of the algorithm as described in
// kong-hybrid-and-fallback.md §4.3 (Python's '%.14g' for numbers), over the
// document hxBigDoc builds. The "naive" values (no compaction) show the rule
// changes the result, so this test fails if the rule is missing or applied
// at the wrong point.
func TestHashDocumentMillionByteRule(t *testing.T) {
	h, hs := HashDocument(hxBigDoc())
	want := map[string]string{
		"config":    "90ef85bdc6d52b4a95bcca4fca88e06c",
		"routes":    "c2456f65f92b089656d38824d9348053",
		"services":  "2becb42d4f04cea77a27c9ce58b1dd01",
		"plugins":   EmptyHash,
		"upstreams": EmptyHash,
		"targets":   EmptyHash,
	}
	const naiveRoutes = "73899bc1cbb706b771af5dd7fbd43bad"
	if h != want["config"] {
		t.Errorf("config_hash = %s, want %s", h, want["config"])
	}
	for k, v := range want {
		if hs[k] != v {
			t.Errorf("hashes[%s] = %s, want %s", k, hs[k], v)
		}
	}
	// The serialisation really crosses the limit: without compaction the
	// routes hash is the plain MD5 of the whole string.
	full := hxNaiveSortedString(hxBigDoc()["routes"])
	if len(full) <= sortedStringLimit {
		t.Fatalf("test document too small: %d bytes", len(full))
	}
	sum := md5.Sum([]byte(full))
	if got := hex.EncodeToString(sum[:]); got != naiveRoutes {
		t.Errorf("naive routes hash = %s, want %s (reference value)", got, naiveRoutes)
	}
}

// hxNaiveSortedString serialises without the compaction rule.
func hxNaiveSortedString(v any) string {
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case nil:
			b.WriteString("/null/")
		case string:
			b.WriteString(x)
		case bool:
			fmt.Fprint(&b, x)
		case float64:
			b.WriteString(hashLuaNumber(x))
		case []any:
			if len(x) == 0 {
				b.WriteString("{}")
				return
			}
			for i, e := range x {
				if len(x) <= 5 && i > 0 {
					b.WriteByte(';')
				}
				walk(e)
				if len(x) > 5 {
					b.WriteByte(';')
				}
			}
		case map[string]any:
			if len(x) == 0 {
				b.WriteString("{}")
				return
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			hxSortStrings(keys)
			for _, k := range keys {
				b.WriteString(k + ":")
				walk(x[k])
				b.WriteByte(';')
			}
		}
	}
	walk(v)
	return b.String()
}

func hxSortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestHashDocumentNullGroupIsNotAbsent(t *testing.T) {
	// cjson keeps a JSON null as ngx.null, so "routes": null is hashed as
	// "/null/", not skipped like an absent key.
	_, hs := HashDocument(map[string]any{"routes": nil})
	if hs["routes"] != "5bf07a8b7343015026657d1108d8206e" {
		t.Errorf("routes:null hash = %s, want md5(\"/null/\")", hs["routes"])
	}
	_, hs = HashDocument(map[string]any{})
	if hs["routes"] != EmptyHash {
		t.Errorf("absent routes hash = %s, want EmptyHash", hs["routes"])
	}
}

func TestHashDocumentDoesNotModifyInput(t *testing.T) {
	doc := map[string]any{"routes": []any{"a"}, "services": []any{}, "x": 1.0}
	HashDocument(doc)
	if len(doc) != 3 || doc["routes"] == nil || doc["x"] != 1.0 {
		t.Errorf("document modified: %v", doc)
	}
}

func TestHashNilAndEmptyConfig(t *testing.T) {
	for name, c := range map[string]*Config{
		"nil":             nil,
		"zero":            {},
		"only workspaces": {Workspaces: []*Workspace{{ID: "ws", Name: "default"}}},
		"empty extra":     {Extra: map[string][]map[string]any{"vaults": {}}},
	} {
		h, hs := Hash(c)
		if h != EmptyHash {
			t.Errorf("%s: Hash = %s, want EmptyHash", name, h)
		}
		for _, k := range []string{"config", "routes", "services", "plugins", "upstreams", "targets"} {
			if hs[k] != EmptyHash {
				t.Errorf("%s: hashes[%s] = %s, want EmptyHash", name, k, hs[k])
			}
		}
	}
	// One extra entity makes it non-empty.
	c := &Config{Extra: map[string][]map[string]any{"vaults": {{"id": "v", "prefix": "env", "name": "env"}}}}
	if h, _ := Hash(c); h == EmptyHash {
		t.Error("config with a vault hashed to EmptyHash")
	}
}

func TestHashMatchesHashDocumentOfExport(t *testing.T) {
	c := hashSampleConfig()
	h, hs := Hash(c)
	b, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	h2, hs2 := HashDocument(doc)
	if h != h2 {
		t.Errorf("Hash = %s, HashDocument(MarshalJSON) = %s", h, h2)
	}
	for k := range hs {
		if hs[k] != hs2[k] {
			t.Errorf("hashes[%s]: %s vs %s", k, hs[k], hs2[k])
		}
	}
	// Every group that has rows has its own hash; absent groups are empty.
	if hs["routes"] == EmptyHash || hs["services"] == EmptyHash || hs["plugins"] == EmptyHash ||
		hs["upstreams"] == EmptyHash || hs["targets"] == EmptyHash {
		t.Errorf("group hashes: %v", hs)
	}
	// Changing one route changes the routes hash and config hash only.
	c2 := hashSampleConfig()
	c2.Routes[0].Paths = []string{"/changed"}
	h3, hs3 := Hash(c2)
	if h3 == h || hs3["routes"] == hs["routes"] || hs3["services"] != hs["services"] {
		t.Errorf("changing a route: %v -> %v", hs, hs3)
	}
	// Row order in the Config does not matter (rows are exported by id).
	c3 := hashSampleConfig()
	c3.Routes[0], c3.Routes[1] = c3.Routes[1], c3.Routes[0]
	if h4, _ := Hash(c3); h4 != h {
		t.Errorf("reordering routes changed the hash: %s vs %s", h4, h)
	}
}

func BenchmarkHash(b *testing.B) {
	c := hashLargeConfig(10000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, _ := Hash(c)
		if h == EmptyHash {
			b.Fatal("empty hash")
		}
	}
}

func BenchmarkHashDocument(b *testing.B) {
	doc := hashLargeConfig(10000).ExportMap()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		HashDocument(doc)
	}
}
