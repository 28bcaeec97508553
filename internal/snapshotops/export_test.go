package snapshotops

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

func TestExport(t *testing.T) {
	ctx := context.Background()
	st := fileStore(t)
	a := cfgOf(t, docA)
	// A snapshot "from the future": the export sorts after it anyway.
	future := time.Now().Add(time.Hour).UTC().Truncate(time.Millisecond)
	put(t, st, a, snapshot.Options{CreatedAt: future})
	res, err := Export(ctx, st, a, ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.CreatedAt.Equal(future.Add(time.Millisecond)) || res.KongObject != "3.9.1/config.json" {
		t.Errorf("export: %+v", res)
	}
	h, _ := config.Hash(a)
	info, err := st.Head(ctx, res.KongObject)
	if err != nil || info.Metadata[MetaConfigHash] != h || info.Metadata[metaTerm] != "0" {
		t.Errorf("config.json: %+v %v", info, err)
	}
	// Encrypted: config.json only on request.
	_, recip, err := snapshot.GenerateAgeIdentity(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	res, err = Export(ctx, st, a, ExportOptions{Snapshot: snapshot.Options{Recipients: []string{recip}}})
	if err != nil || res.KongObject != "" || res.KongObjectSkipped == "" {
		t.Errorf("encrypted export: %+v %v", res, err)
	}
	// Empty and invalid configs write nothing.
	if _, err := Export(ctx, st, cfgOf(t, `{"_format_version":"3.0"}`), ExportOptions{}); !errors.Is(err, snapshot.ErrEmptyConfig) {
		t.Errorf("empty config: %v", err)
	}
}

// A writer that raced us to the same key makes the export fail rather
// than replace the object.
func TestExportNeverOverwrites(t *testing.T) {
	st := fileStore(t)
	cfg := cfgOf(t, docA)
	key := put(t, st, cfg, snapshot.Options{CreatedAt: t0})
	before, _, _ := st.Get(context.Background(), key)
	// hideList hides the existing object from the newest-time lookup, as
	// if it was written between that lookup and the put.
	_, err := Export(context.Background(), hideList{st}, cfg, ExportOptions{Snapshot: snapshot.Options{CreatedAt: t0}})
	if !errors.Is(err, ErrExists) || !errors.Is(err, storage.ErrPreconditionFailed) {
		t.Fatalf("export over %s: %v", key, err)
	}
	after, _, _ := st.Get(context.Background(), key)
	if string(before) != string(after) {
		t.Fatal("the existing object was replaced")
	}
}

type hideList struct{ storage.Store }

func (h hideList) List(context.Context, string, storage.ListOptions) (storage.ListPage, error) {
	return storage.ListPage{}, nil
}
