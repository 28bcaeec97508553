package snapshotops

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

func TestListAndVerify(t *testing.T) {
	ctx := context.Background()
	st := fileStore(t)
	if l, err := List(ctx, st, ListOptions{}); err != nil || len(l.Entries) != 0 {
		t.Fatalf("empty: %v %v", l, err)
	}
	if _, err := Latest(ctx, st, anyVersion); !errors.Is(err, ErrNoObjects) {
		t.Fatalf("Latest on empty storage: %v", err)
	}
	a, b := cfgOf(t, docA), cfgOf(t, docB)
	k1 := put(t, st, a, snapshot.Options{CreatedAt: t0})
	k2 := put(t, st, b, snapshot.Options{CreatedAt: t0.Add(time.Second), Version: "3.10.0"})
	k3 := put(t, st, b, snapshot.Options{CreatedAt: t0.Add(2 * time.Second)})

	l, err := List(ctx, st, ListOptions{Verify: true, VerifyOptions: snapshot.VerifyOptions{VersionPolicy: anyVersion}})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 3 || l.Entries[0].Key != k3 || l.Entries[1].Key != k2 || l.Entries[2].Key != k1 {
		t.Fatalf("entries %+v", l.Entries)
	}
	hb, _ := config.Hash(b)
	for _, e := range l.Entries {
		if e.Verify == nil || !e.Verify.Valid || e.HeaderError != "" {
			t.Errorf("%s: %+v", e.Key, e.Verify)
		}
	}
	if l.Entries[0].ConfigHash != hb {
		t.Errorf("hash %s want %s", l.Entries[0].ConfigHash, hb)
	}
	if l, _ := List(ctx, st, ListOptions{Version: "3.10.0"}); len(l.Entries) != 1 || l.Entries[0].Key != k2 {
		t.Errorf("version filter: %+v", l.Entries)
	}

	// Latest honours the policy: same-minor as 3.9.1 skips 3.10.0.
	if c, err := Latest(ctx, st, snapshot.VersionPolicy{}); err != nil || c.Key != k3 {
		t.Errorf("Latest same-minor = %v, %v", c.Key, err)
	}
	if c, err := Latest(ctx, st, snapshot.VersionPolicy{Current: "4.0.0"}); err == nil {
		t.Errorf("Latest for 4.0.0 = %s, want an error", c.Key)
	} else if !errors.As(err, new(*snapshot.NoMatchingVersionError)) {
		t.Errorf("Latest for 4.0.0: %v", err)
	}

	// A tampered newest object: verification says why; NewestValid skips it.
	flip(t, st, k3)
	data, _, _ := st.Get(ctx, k3)
	r, s := VerifyBytes(k3, "storage", data, snapshot.VerifyOptions{})
	if r.Valid || s != nil || r.Reason != "checksum mismatch" || len(r.Checks) == 0 {
		t.Errorf("tampered: %+v", r)
	}
	got, _, skipped, err := NewestValid(ctx, st, snapshot.VerifyOptions{})
	if err != nil || got.Name != k1 || len(skipped) != 1 {
		t.Errorf("NewestValid = %v, skipped %v, %v", got, skipped, err)
	}
}
