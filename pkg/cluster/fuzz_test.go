package cluster

import (
	"encoding/json"
	"testing"
)

// FuzzDecodeReconfigure feeds arbitrary frames to the DP's decoder: it must
// never panic, and whatever it accepts must be a well-formed message that
// survives a re-encode.
func FuzzDecodeReconfigure(f *testing.F) {
	seed := func(doc string) {
		f.Add(gz(f, []byte(doc)))
	}
	seed(`{"type":"reconfigure","config_table":{"_format_version":"3.0"},"config_hash":"` + hashA + `","hashes":{"config":"` + hashA + `"}}`)
	seed(`{"type":"reconfigure","timestamp":1.5,"config_table":{},"hashes":[]}`)
	seed(`{"type":"reconfigure","config_table":[]}`)
	seed(`{"type":"error","error":{"name":"x"}}`)
	seed(`{"type":"reconfigure","config_table":{},"config_hash":"ABC"}`)
	seed(`[]`)
	seed(``)
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte(`{"type":"reconfigure"}`))
	good, err := EncodeReconfigure(&Reconfigure{ConfigTable: benchTable(3), ConfigHash: hashB}, 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)

	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeReconfigure(data, 1<<20, 1<<20)
		if err != nil {
			if m != nil {
				t.Fatal("message and error")
			}
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if m.Type != TypeReconfigure {
			t.Fatalf("type %q", m.Type)
		}
		var table map[string]any
		if err := json.Unmarshal(m.ConfigTable, &table); err != nil {
			t.Fatalf("config_table is not an object: %v", err)
		}
		if m.ConfigHash != "" && !IsValidHash(m.ConfigHash) {
			t.Fatalf("invalid hash accepted: %q", m.ConfigHash)
		}
		for k, v := range m.Hashes {
			if !IsValidHash(v) {
				t.Fatalf("invalid hashes.%s accepted: %q", k, v)
			}
		}
		again, err := EncodeReconfigure(m, 0)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		m2, err := DecodeReconfigure(again, 0, 0)
		if err != nil {
			t.Fatalf("decode of re-encoded message: %v", err)
		}
		if m2.ConfigHash != m.ConfigHash || len(m2.Hashes) != len(m.Hashes) || m2.Timestamp != m.Timestamp {
			t.Fatalf("round trip changed the message: %+v vs %+v", m, m2)
		}
	})
}

// FuzzDecodeBasicInfo: the CP's first-frame decoder never panics and
// returns either a usable message or an error.
func FuzzDecodeBasicInfo(f *testing.F) {
	for _, s := range []string{
		`{"type":"basic_info","plugins":[{"name":"acl","version":"3.9.1"}],"labels":{"a":"b"},"process_conf":{}}`,
		`{"type":"basic_info","plugins":{}}`, `{"type":5}`, `[]`, `null`, `{"type":"basic_info","plugins":[null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeBasicInfo(data)
		if err != nil {
			return
		}
		if b.Type != TypeBasicInfo || b.Plugins == nil {
			t.Fatalf("decoded %+v", b)
		}
		for _, p := range b.Plugins {
			if p.Name == "" {
				t.Fatal("plugin without name")
			}
		}
	})
}
