package jsonscan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

func TestObject(t *testing.T) {
	ok := []struct {
		in   string
		keys []string
		raws []string
	}{
		{`{}`, nil, nil},
		{` { } `, nil, nil},
		{`{"a":1}`, []string{"a"}, []string{`1`}},
		{"{\n \"a\" : [1, {\"b\": \"}]\"}] ,\"c\":\"x\\\"y\",\"d\":null}\n", []string{"a", "c", "d"},
			[]string{`[1, {"b": "}]"}]`, `"x\"y"`, `null`}},
		{`{"\u0061":true,"a":false}`, []string{"a", "a"}, []string{`true`, `false`}},
	}
	for _, c := range ok {
		ms, good := Object([]byte(c.in))
		if !good {
			t.Errorf("Object(%q) refused", c.in)
			continue
		}
		if len(ms) != len(c.keys) {
			t.Errorf("Object(%q): %d members, want %d", c.in, len(ms), len(c.keys))
			continue
		}
		for i, m := range ms {
			if m.Key != c.keys[i] || string(m.Raw) != c.raws[i] {
				t.Errorf("Object(%q)[%d] = %q:%q, want %q:%q", c.in, i, m.Key, m.Raw, c.keys[i], c.raws[i])
			}
		}
	}
	if got := (Members{{"a", []byte("1")}, {"a", []byte("2")}}).Get("a"); string(got) != "2" {
		t.Errorf("Get takes the last repeated key, got %q", got)
	}
	for _, in := range []string{``, `[]`, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":1 "b":2}`, `{a:1}`,
		`{"a":1}x`, `{"a":1}{}`, `{"a":"unterminated}`, `{"a":[1,2}`, `{"a":{"b":1}`, `{"a":1`} {
		if _, good := Object([]byte(in)); good {
			t.Errorf("Object(%q) accepted", in)
		}
	}
}

func TestArray(t *testing.T) {
	els, ok := Array([]byte(`[ {"a":"]"} ,2,"x" ,[3]]`))
	if !ok || len(els) != 4 || string(els[0]) != `{"a":"]"}` || string(els[1]) != `2` || string(els[2]) != `"x"` || string(els[3]) != `[3]` {
		t.Fatalf("Array: %q %v", els, ok)
	}
	if els, ok := Array([]byte(`[ ]`)); !ok || len(els) != 0 {
		t.Fatalf("empty array: %q %v", els, ok)
	}
	for _, in := range []string{``, ` []`, `[] `, `[`, `[1,]`, `[1 2]`, `[,1]`, `{}`, `[1]]`} {
		if _, ok := Array([]byte(in)); ok {
			t.Errorf("Array(%q) accepted", in)
		}
	}
}

// FuzzObject checks Object against encoding/json: every valid object is
// split into the members json.Unmarshal sees, and whenever Object accepts
// and every member's text is valid JSON, the whole input is valid JSON (so
// validating the parts validates the document).
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,{"b":"c\"}"}],"d":null}`, `{"a":1,"a":2}`, ` {"x" : "\u00e9"} `,
		`{"a":[1,2],"b":{"c":[]}}`, `{"a":tru}`, `{"a":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, ok := Object(b)
		valid := json.Valid(b) && bytes.HasPrefix(bytes.TrimLeft(b, " \t\r\n"), []byte("{"))
		if valid && !ok {
			t.Fatalf("valid object refused: %q", b)
		}
		if !ok {
			return
		}
		allValid := true
		for _, m := range ms {
			if !json.Valid(m.Raw) {
				allValid = false
			}
			// Every value's text is also a valid array element.
			if els, ok := Array(append(append([]byte("["), m.Raw...), ']')); json.Valid(m.Raw) && (!ok || len(els) != 1) {
				t.Fatalf("value %q not re-split as one element", m.Raw)
			}
		}
		if allValid != valid {
			t.Fatalf("Object accepted %q with members valid=%v, but json.Valid=%v", b, allValid, valid)
		}
		if !valid {
			return
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		got := map[string]json.RawMessage{}
		for _, m := range ms {
			got[m.Key] = m.Raw
		}
		if len(got) != len(want) {
			t.Fatalf("%d keys, encoding/json sees %d", len(got), len(want))
		}
		for k, w := range want {
			if !bytes.Equal(bytes.TrimSpace(got[k]), bytes.TrimSpace(w)) {
				t.Fatalf("key %q: %q, encoding/json: %q", k, got[k], w)
			}
		}
	})
}

// BenchmarkObject splits a reconfigure-like envelope whose config_table
// holds 300 route-like records (~110 KB), as every DP does per push.
func BenchmarkObject(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString(`{"type":"reconfigure","config_table":{"_format_version":"3.0","routes":[`)
	for i := 0; i < 300; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"id":"4c3a5f8e-0000-4000-8000-%012d","name":"route-%d","paths":["/v1/svc-%d","~/v2/(?<id>\\d+)$"],"methods":["GET","POST"],"protocols":["http","https"],"strip_path":true,"preserve_host":false,"regex_priority":0,"https_redirect_status_code":426,"tags":null,"headers":null}`, i, i, i)
	}
	buf.WriteString(`]},"config_hash":"0123456789abcdef0123456789abcdef","timestamp":1.5}`)
	doc := buf.Bytes()
	b.SetBytes(int64(len(doc)))
	for i := 0; i < b.N; i++ {
		if ms, ok := Object(doc); !ok || len(ms) != 4 {
			b.Fatal("split failed")
		}
	}
}
