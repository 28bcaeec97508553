package snapshotops

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/kongfb/kongfb/pkg/snapshot"
)

func TestRewrap(t *testing.T) {
	ctx := context.Background()
	st := fileStore(t)
	src := put(t, st, cfgOf(t, docA), snapshot.Options{CreatedAt: t0})
	idText, recip, err := snapshot.GenerateAgeIdentity(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ids, err := snapshot.ParseIdentities(idText)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Rewrap(ctx, st, Source{Key: src}, "encrypt", snapshot.RewrapOptions{Recipients: []string{recip}}, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Key == src || !res.Encrypted || !res.CreatedAt.Equal(t0) {
		t.Fatalf("encrypt: %+v", res)
	}
	data, _, _ := st.Get(ctx, res.Key)
	if _, err := snapshot.Decode(res.Key, data, snapshot.VerifyOptions{Identities: ids}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "plain.snap")
	if _, err := Rewrap(ctx, st, Source{Key: res.Key}, "decrypt", snapshot.RewrapOptions{Verify: snapshot.VerifyOptions{Identities: ids}}, out, false); err != nil {
		t.Fatal(err)
	}
	// The decrypted copy from the file back into storage: its key is the
	// original's, which is never overwritten.
	_, err = Rewrap(ctx, st, Source{File: out}, "encrypt", snapshot.RewrapOptions{Recipients: []string{recip}}, "", false)
	if err != nil {
		t.Fatalf("encrypt from a file: %v", err)
	}
	_, err = Rewrap(ctx, st, Source{Key: res.Key}, "decrypt", snapshot.RewrapOptions{Verify: snapshot.VerifyOptions{Identities: ids}}, "", false)
	if !errors.Is(err, ErrExists) {
		t.Errorf("decrypt onto the original: %v", err)
	}
	_, err = Rewrap(ctx, st, Source{Key: res.Key}, "decrypt", snapshot.RewrapOptions{Verify: snapshot.VerifyOptions{Identities: []age.Identity{}}}, "", false)
	if !errors.Is(err, snapshot.ErrDecrypt) {
		t.Errorf("decrypt without identity: %v", err)
	}
}
