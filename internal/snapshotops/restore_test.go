package snapshotops

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kongfb/kongfb/pkg/config"
)

func TestDiffConfigs(t *testing.T) {
	a, b := cfgOf(t, docA), cfgOf(t, docB)
	d := DiffConfigs("a", a, "b", b)
	var added, changed []string
	for _, e := range d.Added {
		added = append(added, e.Label())
	}
	for _, e := range d.Changed {
		changed = append(changed, e.Label()+":"+strings.Join(e.Fields, ","))
	}
	if got := strings.Join(added, "; "); got != "services svc-b; routes route-b; plugins rate-limiting (service svc-b)" {
		t.Errorf("added: %s", got)
	}
	if got := strings.Join(changed, "; "); got != "services svc-a:host" {
		t.Errorf("changed: %s", got)
	}
	if len(d.Removed) != 0 || d.Unchanged != 2 { // the workspace and route-a
		t.Errorf("removed %v unchanged %d", d.Removed, d.Unchanged)
	}
	back := DiffConfigs("b", b, "a", a)
	if len(back.Removed) != 3 || len(back.Added) != 0 {
		t.Errorf("reverse: %+v", back)
	}
	if d := DiffConfigs("a", a, "a", cfgOf(t, docA)); !d.Empty() || d.FromHash != d.ToHash {
		t.Errorf("self diff: %+v", d)
	}
}

func TestRenderAndWriteFile(t *testing.T) {
	// Strings YAML would read as other types unless quoted.
	b := cfgOf(t, `{"_format_version":"3.0","services":[{"name":"123","url":"http://x.internal","tags":["1.0","on","null","true","~"],`+
		`"routes":[{"name":"r","paths":["/a"],"headers":{"x-v":["0x10","no"]}}]}]}`)
	want, _ := config.Hash(b)
	dir := t.TempDir()
	for _, f := range []string{"kong.yaml", "config.json"} {
		data, err := RenderConfig(b, ConfigFileFormat(f))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, f)
		if err := WriteFileAtomic(path, data, false); err != nil {
			t.Fatal(err)
		}
		c, err := config.ParseFile(path)
		if err != nil {
			t.Fatalf("%s: %v\n%s", f, err, data)
		}
		if h, _ := config.Hash(c); h != want {
			t.Errorf("%s: hash %s, want %s", f, h, want)
		}
		if err := WriteFileAtomic(path, []byte("x"), false); !errors.Is(err, ErrFileExists) {
			t.Errorf("overwrite without force: %v", err)
		}
		if err := WriteFileAtomic(path, []byte("x"), true); err != nil {
			t.Errorf("force: %v", err)
		}
		if got, _ := os.ReadFile(path); string(got) != "x" {
			t.Errorf("force did not replace %s", f)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("temp files left: %v", ents)
	}
	if ConfigFileFormat("x.txt") != "" {
		t.Error("x.txt has a format")
	}
}
