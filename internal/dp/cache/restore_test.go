package cache

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/pkg/config"
)

type engine struct {
	refuse  error
	applied []string
}

func (e *engine) Apply(_ *config.Config, hash string) error {
	if e.refuse != nil {
		return e.refuse
	}
	e.applied = append(e.applied, hash)
	return nil
}
func (e *engine) Serve(net.Listener) error       { return errors.New("not used") }
func (e *engine) Shutdown(context.Context) error { return nil }

func TestRestore(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, nil)
	eng := &engine{}
	n := dp.NewNode(dp.Options{Engine: eng})

	// No cache: nothing served, nothing reported.
	if Restore(n, c, nil) {
		t.Fatal("Restore reported success without a cache")
	}
	if msg, _ := n.LastError(); msg != "" {
		t.Errorf("no cache reported as an error: %s", msg)
	}

	doc, hash := sampleDoc(t, "/a")
	mustWrite(t, c, doc, hash)
	if !Restore(n, c, nil) {
		t.Fatal("Restore failed on a good cache")
	}
	if st := n.State(); st.Hash != hash || st.Source != dp.SourceCache || st.Origin != c.Path() {
		t.Errorf("state = %+v", st)
	}

	// A corrupt cache is reported and not served.
	n2 := dp.NewNode(dp.Options{Engine: &engine{}})
	if err := os.WriteFile(c.Path(), []byte("kongfb-dp-cache\n{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if Restore(n2, c, nil) {
		t.Fatal("Restore served a corrupt cache")
	}
	if msg, _ := n2.LastError(); !strings.Contains(msg, "unusable") || !strings.Contains(msg, "moved to") {
		t.Errorf("last error = %q", msg)
	}
	if n2.State().Hash != "" {
		t.Error("a corrupt cache was applied")
	}

	// A cache the engine refuses stays in place and is reported.
	mustWrite(t, c, doc, hash)
	n3 := dp.NewNode(dp.Options{Engine: &engine{refuse: errors.New("plugins are not supported")}})
	if Restore(n3, c, nil) {
		t.Fatal("Restore reported success though the engine refused")
	}
	if msg, _ := n3.LastError(); !strings.Contains(msg, "plugins are not supported") {
		t.Errorf("last error = %q", msg)
	}
	if _, err := os.Stat(c.Path()); err != nil {
		t.Errorf("a refused (not corrupt) cache was moved: %v", err)
	}
}
