package snapshotops

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

const (
	docA = `{"_format_version":"3.0","services":[{"name":"svc-a","url":"http://a.internal","routes":[{"name":"route-a","paths":["/a"]}]}]}`
	docB = `{"_format_version":"3.0","services":[{"name":"svc-a","url":"http://a2.internal","routes":[{"name":"route-a","paths":["/a"]}]},` +
		`{"name":"svc-b","url":"http://b.internal","routes":[{"name":"route-b","paths":["/b"]}],"plugins":[{"name":"rate-limiting","config":{"second":5}}]}]}`
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func cfgOf(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc), "x.json")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fileStore(t *testing.T) storage.Store {
	t.Helper()
	st, err := storage.Open(context.Background(), "file://"+filepath.Join(t.TempDir(), "fb"), storage.Options{CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func put(t *testing.T, st storage.Store, cfg *config.Config, opts snapshot.Options) string {
	t.Helper()
	enc, err := snapshot.Encode(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	key := enc.Key("")
	if _, err := st.Put(context.Background(), key, enc.Data, storage.PutOptions{IfNoneMatch: "*"}); err != nil {
		t.Fatal(err)
	}
	return key
}

func flip(t *testing.T, st storage.Store, key string) {
	t.Helper()
	b, _, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if _, err := st.Put(context.Background(), key, b, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}
