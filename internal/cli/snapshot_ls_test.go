package cli

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

type lsOut struct {
	Objects  []snapshotops.Entry `json:"objects"`
	Versions []string            `json:"versions"`
	Ignored  int                 `json:"ignored"`
}

func TestSnapshotLs(t *testing.T) {
	keys := newSnapKeys(t)
	forEachStore(t, func(t *testing.T, s snapStore) {
		ctx := context.Background()
		// Empty storage: nothing listed, exit 0.
		code, out, errOut := runCLI(t, s.with("snapshot", "ls")...)
		wantExit(t, "ls empty", code, 0, out, errOut)
		mustContain(t, "ls empty", out, "no fallback objects in")
		code, out, errOut = runCLI(t, s.with("snapshot", "ls", "-o", "json")...)
		wantExit(t, "ls empty json", code, 0, out, errOut)
		if got := decodeJSON[lsOut](t, "ls empty", out); len(got.Objects) != 0 {
			t.Fatalf("empty storage lists %v", got.Objects)
		}

		a, b := parseCfg(t, snapCfgA), parseCfg(t, snapCfgB)
		t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
		sk, err := snapshot.LoadSigningKey(keys.signKey)
		if err != nil {
			t.Fatal(err)
		}
		k1, _ := putSnap(t, s.store, a, snapshot.Options{CreatedAt: t0, SigningKey: sk})
		k2, _ := putSnap(t, s.store, b, snapshot.Options{CreatedAt: t0.Add(time.Minute), Recipients: []string{keys.recipient}})
		k3, _ := putSnap(t, s.store, a, snapshot.Options{CreatedAt: t0.Add(2 * time.Minute), Version: "3.9.0"})
		kk := putKong(t, s.store, b, "3.9.1")
		// An election lease and a foreign file are not fallback objects.
		if _, err := s.store.Put(ctx, "3.9.1/election/lease.json", []byte(`{}`), storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}

		code, out, errOut = runCLI(t, s.with("snapshot", "ls", "-o", "json")...)
		wantExit(t, "ls", code, 0, out, errOut)
		got := decodeJSON[lsOut](t, "ls", out)
		// config.json was written now, so it is the newest; then history newest first.
		var order []string
		for _, e := range got.Objects {
			order = append(order, e.Key)
		}
		if want := []string{kk, k3, k2, k1}; !slices.Equal(order, want) {
			t.Fatalf("order %v, want %v", order, want)
		}
		if got.Ignored != 1 || !slices.Equal(got.Versions, []string{"3.9.0", "3.9.1"}) {
			t.Errorf("ignored %d versions %v", got.Ignored, got.Versions)
		}
		byKey := map[string]snapshotops.Entry{}
		for _, e := range got.Objects {
			byKey[e.Key] = e
		}
		if e := byKey[k1]; !e.Signed || e.Encrypted || e.Signer != sk.KeyID() || e.ConfigHash != hashOf(t, snapCfgA) || !e.CreatedAt.Equal(t0) || e.Kind != "kongfb-snapshot" || e.Entities["routes"] != 1 {
			t.Errorf("signed entry: %+v", e)
		}
		if e := byKey[k2]; e.Signed || !e.Encrypted || len(e.Recipients) != 1 || e.ConfigHash != hashOf(t, snapCfgB) {
			t.Errorf("encrypted entry: %+v", e)
		}
		if e := byKey[kk]; e.Kind != "kong-config.json" || e.ConfigHash != hashOf(t, snapCfgB) || e.Version != "3.9.1" || e.Size == 0 {
			t.Errorf("kong entry: %+v", e)
		}

		// Text table, one version.
		code, out, errOut = runCLI(t, s.with("snapshot", "ls", "--version", "3.9.0")...)
		wantExit(t, "ls --version", code, 0, out, errOut)
		mustContain(t, "ls --version", out, k3, "KEY", "CONFIG HASH")
		if strings.Contains(out, k1) {
			t.Errorf("ls --version 3.9.0 shows %s:\n%s", k1, out)
		}
		code, out, errOut = runCLI(t, s.with("snapshot", "ls", "--version", "4.0.0")...)
		wantExit(t, "ls --version 4.0.0", code, 1, out, errOut)
		mustContain(t, "ls --version 4.0.0", errOut, "versions found: 3.9.0, 3.9.1")

		// --verify: the encrypted one needs the identity.
		code, out, errOut = runCLI(t, s.with("snapshot", "ls", "--verify")...)
		wantExit(t, "ls --verify without identity", code, 1, out, errOut)
		mustContain(t, "ls --verify without identity", out, k2, "cannot decrypt")
		mustContain(t, "ls --verify without identity", errOut, "1 of 4 objects do not verify")
		code, out, errOut = runCLI(t, s.with("snapshot", "ls", "--verify", "--snapshot-identity-file", keys.identity, "-o", "json")...)
		wantExit(t, "ls --verify", code, 0, out, errOut)
		for _, e := range decodeJSON[lsOut](t, "ls --verify", out).Objects {
			if e.Verify == nil || !e.Verify.Valid {
				t.Errorf("%s not verified: %+v", e.Key, e.Verify)
			}
		}

		// A flipped payload byte: the header still reads, full verification fails.
		tamper(t, s.store, k1, 1)
		code, out, errOut = runCLI(t, s.with("snapshot", "ls", "--verify", "--snapshot-identity-file", keys.identity)...)
		wantExit(t, "ls --verify tampered", code, 1, out, errOut)
		mustContain(t, "ls --verify tampered", out, k1+": snapshot \""+k1+"\": checksum mismatch")
		// A flipped manifest byte: the header itself is refused.
		b3, _, err := s.store.Get(ctx, k3)
		if err != nil {
			t.Fatal(err)
		}
		b3[len(snapshot.Magic)+20] ^= 0x01
		if _, err := s.store.Put(ctx, k3, b3, storage.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		code, out, errOut = runCLI(t, s.with("snapshot", "ls", "-o", "json")...)
		wantExit(t, "ls bad header", code, 0, out, errOut)
		for _, e := range decodeJSON[lsOut](t, "ls bad header", out).Objects {
			if (e.Key == k3) != (e.HeaderError != "") {
				t.Errorf("%s header_error %q", e.Key, e.HeaderError)
			}
		}
	})
}

func TestSnapshotLsUsage(t *testing.T) {
	code, out, errOut := runCLI(t, "snapshot", "ls")
	wantExit(t, "no --storage", code, 2, out, errOut)
	mustContain(t, "no --storage", errOut, "--storage is required")
	code, out, errOut = runCLI(t, "snapshot", "ls", "--storage", "ftp://x/y")
	wantExit(t, "bad scheme", code, 2, out, errOut)
	code, out, errOut = runCLI(t, "snapshot", "ls", "--storage", "file://"+t.TempDir()+"/missing")
	wantExit(t, "missing dir", code, 1, out, errOut)
	code, out, errOut = runCLI(t, "snapshot", "ls", "--storage", "file://"+t.TempDir(), "--verify", "--snapshot-identity-file", "/nonexistent/id")
	wantExit(t, "missing identity file", code, 2, out, errOut)
	mustContain(t, "missing identity file", errOut, "--snapshot-identity-file", "/nonexistent/id")
}
