package config

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// exportOf renders a config as the control plane pushes it.
func exportOf(t testing.TB, cfg *Config) []byte {
	t.Helper()
	b, err := cfg.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameConfig fails unless a and b export to the same bytes and hash alike.
func sameConfig(t *testing.T, step string, got, want *Config) {
	t.Helper()
	g, w := exportOf(t, got), exportOf(t, want)
	if !bytes.Equal(g, w) {
		t.Fatalf("%s: Reparser result differs from Parse:\n got %.600s\nwant %.600s", step, g, w)
	}
	gh, _ := Hash(got)
	wh, _ := Hash(want)
	if gh != wh {
		t.Fatalf("%s: hash %s, Parse gives %s", step, gh, wh)
	}
	if !got.Validated() {
		t.Fatalf("%s: Reparser result not marked validated", step)
	}
}

// editDoc returns a variant of a decK document with n services: some
// services renamed, routes re-pathed, entities dropped or added, so that
// successive exports share most entities byte for byte.
func editDoc(rng *rand.Rand, n int) []byte {
	var b strings.Builder
	b.WriteString("_format_version: \"3.0\"\nservices:\n")
	for i := 0; i < n; i++ {
		if rng.IntN(10) == 0 {
			continue // dropped this time
		}
		port := 8080
		if rng.IntN(8) == 0 {
			port = 9000 + rng.IntN(5) // changed
		}
		fmt.Fprintf(&b, "- name: svc-%d\n  id: %s\n  url: http://up-%d.internal:%d/base\n  routes:\n  - name: route-%d\n    paths: [/v1/svc-%d/%d]\n  plugins:\n  - name: rate-limiting\n    config: {second: %d}\n",
			i, DeterministicID("services", fmt.Sprint("fixed-", i)), i, port, i, i, rng.IntN(2), 1+rng.IntN(3))
	}
	b.WriteString("upstreams:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "- name: up-%d.internal\n  targets:\n  - target: 10.0.0.%d:8080\n    weight: %d\n", i, i%250, 100+rng.IntN(2))
	}
	return []byte(b.String())
}

// TestReparserMatchesParse feeds a Reparser a series of exports with small
// changes between them and checks every result against a fresh Parse, and
// that earlier results are not altered by later parses (they share values).
func TestReparserMatchesParse(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var r Reparser
	type kept struct {
		cfg  *Config
		want []byte
	}
	var history []kept
	for step := 0; step < 40; step++ {
		src, err := Parse(editDoc(rng, 25), "kong.yaml")
		if err != nil {
			t.Fatal(err)
		}
		doc := exportOf(t, src)
		want, err := Parse(doc, "")
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Parse(doc, "")
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		sameConfig(t, fmt.Sprint("step ", step), got, want)
		if step > 0 && len(r.memo) == 0 {
			t.Fatalf("step %d: memo empty after a successful export parse", step)
		}
		history = append(history, kept{got, exportOf(t, got)})
	}
	for i, h := range history {
		if got := exportOf(t, h.cfg); !bytes.Equal(got, h.want) {
			t.Fatalf("result %d changed after later parses", i)
		}
	}
}

// TestReparserReuses proves the memo is used: an unchanged push reuses every
// entity, a push with one changed route reuses all but that one.
func TestReparserReuses(t *testing.T) {
	src, err := Parse(benchDoc(20), "kong.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := exportOf(t, src)
	var r Reparser
	first, err := r.Parse(doc, "")
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, m := range r.memo {
		total += len(m)
	}
	if want := len(first.Workspaces) + len(first.Services) + len(first.Routes) + len(first.Plugins) +
		len(first.Upstreams) + len(first.Targets); total != want {
		t.Fatalf("memo holds %d entities, want %d", total, want)
	}

	count := func(doc []byte) (reused, fresh int) {
		p := newParser("", nil)
		var rr Reparser
		rr.memo, rr.mode = r.memo, r.mode
		cfg, ok := rr.parseWith(doc, p)
		if !ok || cfg == nil {
			t.Fatal("memo path refused a valid export")
		}
		for _, e := range p.ents {
			if e.reused {
				reused++
			} else {
				fresh++
			}
		}
		return
	}
	if reused, fresh := count(doc); fresh != 0 || reused != total {
		t.Fatalf("same document: %d reused, %d parsed again; want all %d reused", reused, fresh, total)
	}
	src.Routes[3].Paths = []string{"/changed"}
	if reused, fresh := count(exportOf(t, src)); fresh != 1 || reused != total-1 {
		t.Fatalf("one route changed: %d reused, %d parsed again; want %d and 1", reused, fresh, total-1)
	}
}

// TestReparserErrors: a bad document gets Parse's positioned errors, and the
// memo (and the next good parse) are unaffected.
func TestReparserErrors(t *testing.T) {
	src, err := Parse(benchDoc(5), "kong.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := exportOf(t, src)
	var r Reparser
	if _, err := r.Parse(doc, ""); err != nil {
		t.Fatal(err)
	}
	memo := r.memo

	// A route pointing at a service that is not there: every entity but
	// one is in the memo, the reference check must still fail.
	bad := bytes.Replace(doc, []byte(`"service":"`+*src.Routes[0].Service+`"`),
		[]byte(`"service":"`+DeterministicID("services", "nowhere")+`"`), 1)
	if bytes.Equal(bad, doc) {
		t.Fatal("test document edit did not apply")
	}
	_, gotErr := r.Parse(bad, "push.json")
	_, wantErr := Parse(bad, "push.json")
	var ve *ValidationError
	if !errors.As(gotErr, &ve) || wantErr == nil || gotErr.Error() != wantErr.Error() {
		t.Fatalf("dangling reference: got %v, want Parse's %v", gotErr, wantErr)
	}
	if ve.Errors[0].Line == 0 {
		t.Fatalf("error has no position: %+v", ve.Errors[0])
	}
	if len(r.memo) != len(memo) {
		t.Fatal("a failed parse replaced the memo")
	}

	// Duplicate entity (same bytes twice): uniqueness is checked again.
	dup := bytes.Replace(doc, []byte(`"routes":[`), []byte(`"routes":[`+routeJSON(t, doc)+`,`), 1)
	if _, err := r.Parse(dup, ""); err == nil || !strings.Contains(err.Error(), "uniqueness violation") {
		t.Fatalf("duplicate route from the memo: got %v, want a uniqueness violation", err)
	}

	// Syntax error and YAML still go through Parse.
	if _, err := r.Parse(doc[:len(doc)-1], "push.json"); err == nil {
		t.Fatal("truncated JSON accepted")
	}
	yml, _ := os.ReadFile("../../examples/kong.yaml")
	if len(yml) > 0 {
		got, err := r.Parse(yml, "kong.yaml")
		want, werr := Parse(yml, "kong.yaml")
		if err != nil || werr != nil {
			t.Fatalf("YAML: %v / %v", err, werr)
		}
		sameConfig(t, "yaml", got, want)
	}
	got, err := r.Parse(doc, "")
	if err != nil {
		t.Fatal(err)
	}
	sameConfig(t, "after errors", got, src)
}

// routeJSON cuts the first route's JSON out of an export document.
func routeJSON(t *testing.T, doc []byte) string {
	t.Helper()
	i := bytes.Index(doc, []byte(`"routes":[`))
	if i < 0 {
		t.Fatal("no routes in document")
	}
	start := i + len(`"routes":[`)
	depth := 0
	for j := start; j < len(doc); j++ {
		switch doc[j] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return string(doc[start : j+1])
			}
		}
	}
	t.Fatal("unterminated route")
	return ""
}

// BenchmarkReparse is the data plane's parse per push with a Reparser: the
// same export again (steady state) and with one route changed.
func BenchmarkReparse(b *testing.B) {
	for _, n := range []int{30, 1000} {
		src, err := Parse(benchDoc(n), "kong.yaml")
		if err != nil {
			b.Fatal(err)
		}
		doc := exportOf(b, src)
		src.Routes[0].Paths = []string{"/changed"}
		doc2 := exportOf(b, src)
		b.Run(fmt.Sprintf("services=%d/one-route-changed", n), func(b *testing.B) {
			var r Reparser
			if _, err := r.Parse(doc, ""); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d := doc
				if i%2 == 0 {
					d = doc2
				}
				if _, err := r.Parse(d, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("services=%d/cold", n), func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				var r Reparser
				if _, err := r.Parse(doc, ""); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzReparse: whatever the input, a Reparser that has seen a valid export
// agrees with ParseJSON (same config, or an error exactly when Parse errs), and
// the memo never makes it accept what Parse rejects.
//
// Inputs are whole export documents, so minimising one takes long: run with
// a short -fuzzminimizetime, e.g.
//
//	go test -run '^$' -fuzz FuzzReparse -fuzztime 2m -fuzzminimizetime 2s ./pkg/config/
func FuzzReparse(f *testing.F) {
	src, err := Parse(benchDoc(3), "kong.yaml")
	if err != nil {
		f.Fatal(err)
	}
	base, err := src.MarshalJSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(base)
	f.Add(bytes.Replace(base, []byte(`"routes":[`), []byte(`"routes": [ `), 1))
	f.Add(bytes.Replace(base, []byte(`"name":"svc-0"`), []byte(`"name":"svc-0","name":"x"`), 1))
	f.Add([]byte(`{"_format_version":"3.0","_transform":false}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		// JSON only, as a DP parses pushes (and YAML's slow paths would
		// take the fuzzer's time).
		var r Reparser
		if _, err := r.ParseJSON(base, ""); err != nil {
			t.Fatal(err)
		}
		got, gerr := r.ParseJSON(doc, "")
		want, werr := ParseJSON(doc, "")
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("Reparser err %v, Parse err %v", gerr, werr)
		}
		if werr != nil {
			if gerr.Error() != werr.Error() {
				t.Fatalf("errors differ:\n%v\n%v", gerr, werr)
			}
			return
		}
		g, _ := got.MarshalJSON()
		w, _ := want.MarshalJSON()
		if !bytes.Equal(g, w) {
			t.Fatalf("configs differ:\n%s\n%s", g, w)
		}
	})
}

// TestParseJSONNoYAML: a config_table that is not JSON is refused even when
// it is valid YAML, with the JSON decoder's position.
func TestParseJSONNoYAML(t *testing.T) {
	doc := []byte("{\"_format_version\": \"3.0\", services: []}")
	if _, err := Parse(doc, ""); err != nil {
		t.Fatalf("Parse (JSON then YAML) should accept YAML flow syntax: %v", err)
	}
	var r Reparser
	for name, parse := range map[string]func() (*Config, error){
		"ParseJSON":          func() (*Config, error) { return ParseJSON(doc, "") },
		"Reparser.ParseJSON": func() (*Config, error) { return r.ParseJSON(doc, "") },
	} {
		_, err := parse()
		var se *SyntaxError
		if !errors.As(err, &se) || se.Line != 1 || se.Column == 0 {
			t.Errorf("%s: got %v, want a JSON syntax error with a position", name, err)
		}
	}
}
