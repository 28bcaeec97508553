package snapshotops

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

func TestPrune(t *testing.T) {
	ctx := context.Background()
	st := fileStore(t)
	a := cfgOf(t, docA)
	var keys []string // oldest first, one an hour
	for i := range 4 {
		keys = append(keys, put(t, st, a, snapshot.Options{CreatedAt: t0.Add(time.Duration(i) * time.Hour)}))
	}
	now := t0.Add(3*time.Hour + time.Minute)
	// keep-last 1, keep-within 90m: keys[3] (last), keys[2] (61 min old) kept.
	res, err := Prune(ctx, st, PruneOptions{KeepLast: 1, KeepWithin: 90 * time.Minute, Now: now, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range res.Items {
		got[it.Key] = it.Action
	}
	want := map[string]string{keys[3]: "keep", keys[2]: "keep", keys[1]: "delete", keys[0]: "delete"}
	for k, a := range want {
		if got[k] != a {
			t.Errorf("%s: %q, want %q", k, got[k], a)
		}
	}
	// An object replaced since the listing is not deleted (If-Match).
	res, err = Prune(ctx, staleETags{st}, PruneOptions{KeepLast: 1, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 0 || len(res.Problems) != 3 {
		t.Errorf("stale etags: deleted %d, problems %v", res.Deleted, res.Problems)
	}
	for _, it := range res.Items {
		if it.Key != keys[3] && it.Action != "failed" {
			t.Errorf("%s: %s", it.Key, it.Action)
		}
	}
	if _, err := st.Head(ctx, keys[0]); err != nil {
		t.Errorf("%s deleted despite a changed ETag: %v", keys[0], err)
	}
	if _, err := Prune(ctx, st, PruneOptions{KeepLast: -1}); err == nil {
		t.Error("keep-last -1 accepted")
	}
	res, err = Prune(ctx, st, PruneOptions{KeepLast: 1, Now: now})
	if err != nil || res.Deleted != 3 {
		t.Errorf("prune: %+v %v", res, err)
	}
	if _, err := st.Head(ctx, keys[0]); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("%s still there: %v", keys[0], err)
	}
}

// staleETags lists every object with an ETag that no longer matches.
type staleETags struct{ storage.Store }

func (s staleETags) List(ctx context.Context, prefix string, opts storage.ListOptions) (storage.ListPage, error) {
	p, err := s.Store.List(ctx, prefix, opts)
	for i := range p.Objects {
		p.Objects[i].ETag = `"00000000000000000000000000000000"`
	}
	return p, err
}

// TestPruneOneVersion: --version limits the deletes (and the report) to
// that version directory; the other versions' history is left as it is.
func TestPruneOneVersion(t *testing.T) {
	ctx := context.Background()
	st := fileStore(t)
	a := cfgOf(t, docA)
	keys := map[string][]string{} // version -> keys, oldest first
	for _, v := range []string{"3.9.0", "3.9.1"} {
		for i := range 3 {
			keys[v] = append(keys[v], put(t, st, a, snapshot.Options{Version: v, CreatedAt: t0.Add(time.Duration(i) * time.Hour)}))
		}
	}
	res, err := Prune(ctx, st, PruneOptions{KeepLast: 1, Version: "3.9.0", Now: t0.Add(4 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 2 || res.Kept != 1 || len(res.Items) != 3 || len(res.Problems) != 0 {
		t.Errorf("prune --version 3.9.0: %+v", res)
	}
	for _, it := range res.Items {
		if it.Version != "3.9.0" {
			t.Errorf("%s of version %s in the report of --version 3.9.0", it.Key, it.Version)
		}
	}
	for _, k := range keys["3.9.1"] {
		if _, err := st.Head(ctx, k); err != nil {
			t.Errorf("%s (another version) deleted: %v", k, err)
		}
	}
	for i, k := range keys["3.9.0"] {
		_, err := st.Head(ctx, k)
		if gone := errors.Is(err, storage.ErrNotFound); gone != (i < 2) {
			t.Errorf("%s: deleted %v (%v)", k, gone, err)
		}
	}
}

// TestPruneReadFailure: a snapshot that cannot be read leaves its version
// alone, and the versions pruned before it are still reported (an error
// instead of the result hid what had already been deleted).
func TestPruneReadFailure(t *testing.T) {
	ctx := context.Background()
	st := fileStore(t)
	a := cfgOf(t, docA)
	keys := map[string][]string{}
	for _, v := range []string{"3.9.0", "3.9.1"} {
		for i := range 3 {
			keys[v] = append(keys[v], put(t, st, a, snapshot.Options{Version: v, CreatedAt: t0.Add(time.Duration(i) * time.Hour)}))
		}
	}
	// 3.9.0 sorts first and is pruned; then the newest 3.9.1 cannot be read.
	bad := keys["3.9.1"][2]
	res, err := Prune(ctx, failingGet{st, bad}, PruneOptions{KeepLast: 1, Now: t0.Add(4 * time.Hour)})
	if err != nil {
		t.Fatalf("Prune: %v (the deletes of 3.9.0 went unreported)", err)
	}
	if res.Deleted != 2 || len(res.Problems) != 1 || !strings.Contains(res.Problems[0], "version 3.9.1") || !strings.Contains(res.Problems[0], bad) {
		t.Errorf("result %+v", res)
	}
	for _, it := range res.Items {
		want := "deleted"
		if it.Version == "3.9.1" || it.Key == keys["3.9.0"][2] {
			want = "keep"
		}
		if it.Action != want {
			t.Errorf("%s: %s (%s), want %s", it.Key, it.Action, it.Reason, want)
		}
	}
	for _, k := range keys["3.9.1"] {
		if _, err := st.Head(ctx, k); err != nil {
			t.Errorf("%s deleted although its version could not be checked: %v", k, err)
		}
	}
}

// failingGet fails every Get of one key.
type failingGet struct {
	storage.Store
	key string
}

func (s failingGet) Get(ctx context.Context, key string) ([]byte, storage.ObjectInfo, error) {
	if key == s.key {
		return nil, storage.ObjectInfo{}, errors.New("connection reset by peer")
	}
	return s.Store.Get(ctx, key)
}
