package cli

import (
	"slices"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

func TestSnapshotPrune(t *testing.T) {
	keys := newSnapKeys(t)
	forEachStore(t, func(t *testing.T, s snapStore) {
		a, b := parseCfg(t, snapCfgA), parseCfg(t, snapCfgB)
		enc := snapshot.Options{Recipients: []string{keys.recipient}}
		var hist []string // oldest first
		for i := range 5 {
			o := enc
			o.CreatedAt = snapT0.Add(time.Duration(i) * time.Minute)
			cfg := a
			if i%2 == 1 {
				cfg = b
			}
			k, _ := putSnap(t, s.store, cfg, o)
			hist = append(hist, k)
		}
		other, _ := putSnap(t, s.store, a, snapshot.Options{CreatedAt: snapT0, Version: "3.9.0"})
		kong := putKong(t, s.store, a, "3.9.1")
		// The two newest are corrupt: the newest valid one is hist[2].
		tamper(t, s.store, hist[4], 1)
		tamper(t, s.store, hist[3], 1)
		id := []string{"--snapshot-identity-file", keys.identity}

		// Without the identity nothing of 3.9.1 verifies: left alone, exit 1.
		code, out, errOut := runCLI(t, s.with("snapshot", "prune", "--keep-last", "1", "--version", "3.9.1")...)
		wantExit(t, "prune without identity", code, 1, out, errOut)
		mustContain(t, "prune without identity", errOut, "version 3.9.1: no snapshot verifies", "--snapshot-identity-file")
		if n := len(snapKeysIn(t, s.store)); n != 7 {
			t.Fatalf("objects after a refused prune: %d", n)
		}

		// Dry run: would delete hist[0], hist[1] (hist[2] is the newest valid).
		code, out, errOut = runCLI(t, s.with(append([]string{"snapshot", "prune", "--keep-last", "1", "--dry-run", "-o", "json"}, id...)...)...)
		wantExit(t, "dry run", code, 0, out, errOut)
		r := decodeJSON[snapshotops.PruneResult](t, "dry run", out)
		actions := map[string]string{}
		for _, it := range r.Items {
			actions[it.Key] = it.Action
		}
		want := map[string]string{hist[4]: "keep", hist[3]: "delete", hist[2]: "keep", hist[1]: "delete", hist[0]: "delete", other: "keep"}
		for k, a := range want {
			if actions[k] != a {
				t.Errorf("dry run: %s %q, want %q", k, actions[k], a)
			}
		}
		if n := len(snapKeysIn(t, s.store)); n != 7 {
			t.Fatalf("a dry run deleted objects: %d left", n)
		}

		// --keep-within covering every capture time deletes nothing
		// (internal/snapshotops tests the cut-off itself).
		code, out, errOut = runCLI(t, s.with(append([]string{"snapshot", "prune", "--keep-last", "0", "--keep-within", "36500d", "--dry-run", "-o", "json"}, id...)...)...)
		wantExit(t, "keep-within", code, 0, out, errOut)
		if r := decodeJSON[snapshotops.PruneResult](t, "keep-within", out); r.Deleted != 0 {
			t.Errorf("keep-within 100y deletes %d", r.Deleted)
		}

		// The real thing.
		code, out, errOut = runCLI(t, s.with(append([]string{"snapshot", "prune", "--keep-last", "1"}, id...)...)...)
		wantExit(t, "prune", code, 0, out, errOut)
		mustContain(t, "prune", out, "deleted 3, kept 3", "newest snapshot that verifies")
		left := snapKeysIn(t, s.store)
		for _, k := range []string{hist[4], hist[2], other, kong} {
			if !slices.Contains(left, k) {
				t.Errorf("%s was deleted", k)
			}
		}
		for _, k := range []string{hist[3], hist[1], hist[0]} {
			if slices.Contains(left, k) {
				t.Errorf("%s was not deleted", k)
			}
		}
	})
	s := fileSnapStore(t)
	for _, args := range [][]string{
		{"snapshot", "prune", "--storage", s.url},
		{"snapshot", "prune", "--storage", s.url, "--keep-last", "-1"},
		{"snapshot", "prune", "--storage", s.url, "--keep-last", "1", "--keep-within", "soon"},
	} {
		code, out, errOut := runCLI(t, args...)
		wantExit(t, "usage", code, 2, out, errOut)
	}
	code, out, errOut := runCLI(t, "snapshot", "prune", "--storage", s.url, "--keep-last", "3")
	wantExit(t, "empty", code, 0, out, errOut)
	mustContain(t, "empty", out, "no history snapshots")
}
