package store_test

import (
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store"
)

// The rules table is self-consistent: foreign keys point at known
// collections, endpoint keys are single-field unique keys.
func TestMetaConsistent(t *testing.T) {
	for _, name := range store.KnownCollections() {
		m, ok := store.Meta(name)
		if !ok || m.Name != name {
			t.Fatalf("meta %s: %v %v", name, m, ok)
		}
		for _, fk := range m.ForeignKeys {
			if _, ok := store.Meta(fk.References); !ok {
				t.Errorf("%s.%s references unknown %s", name, fk.Field, fk.References)
			}
		}
		if m.EndpointKey == "" {
			continue
		}
		found := false
		for _, u := range m.Uniques {
			for _, f := range u.Fields {
				found = found || f == m.EndpointKey
			}
		}
		if !found {
			t.Errorf("%s: endpoint key %s is not unique", name, m.EndpointKey)
		}
	}
	if _, ok := store.Meta("vaults"); ok {
		t.Error("vaults should have no rules")
	}
}

func TestLuaTable(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{map[string]any{"username": "alice"}, `{username="alice"}`},
		{map[string]any{"name": "key-auth", "route": map[string]any{"id": "r1"}, "service": nil, "consumer": nil},
			`{consumer=null,name="key-auth",route={id="r1"},service=null}`},
		{map[string]any{"n": float64(3), "f": 1.5, "b": true, "q": `a"b`}, `{b=true,f=1.5,n=3,q="a\"b"}`},
		{[]any{"a", float64(1)}, `{"a",1}`},
		{[]string{"x"}, `{"x"}`},
		{map[string]any{"@entity": []any{"x"}, "a1": "y"}, `{["@entity"]={"x"},a1="y"}`},
	} {
		if got := store.LuaTable(c.in); got != c.want {
			t.Errorf("LuaTable(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}
