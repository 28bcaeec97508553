package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

func TestSnapshotVerify(t *testing.T) {
	keys := newSnapKeys(t)
	sk, err := snapshot.LoadSigningKey(keys.signKey)
	if err != nil {
		t.Fatal(err)
	}
	forEachStore(t, func(t *testing.T, s snapStore) {
		// Empty storage: --latest has nothing to verify.
		code, out, errOut := runCLI(t, s.with("snapshot", "verify", "--latest")...)
		wantExit(t, "verify --latest empty", code, 1, out, errOut)
		mustContain(t, "verify --latest empty", errOut, "no fallback objects in")

		a, b := parseCfg(t, snapCfgA), parseCfg(t, snapCfgB)
		t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
		kA, _ := putSnap(t, s.store, a, snapshot.Options{CreatedAt: t0, SigningKey: sk})
		kB, _ := putSnap(t, s.store, b, snapshot.Options{CreatedAt: t0.Add(time.Minute), SigningKey: sk, Recipients: []string{keys.recipient}})
		trusted := []string{"--snapshot-trusted-key", keys.signPub}

		// --latest is kB: signed by the pinned key, encrypted to the identity.
		code, out, errOut = runCLI(t, s.with(append([]string{"snapshot", "verify", "--latest", "--snapshot-identity-file", keys.identity}, trusted...)...)...)
		wantExit(t, "verify --latest", code, 0, out, errOut)
		mustContain(t, "verify --latest", out, kB, "verified", "a pinned key", "decrypted", "config_hash: "+hashOf(t, snapCfgB),
			"2 routes", "2 services", "1 plugins")

		// One key, JSON.
		code, out, errOut = runCLI(t, s.with(append([]string{"snapshot", "verify", kA, "-o", "json"}, trusted...)...)...)
		wantExit(t, "verify key", code, 0, out, errOut)
		r := decodeJSON[snapshotops.VerifyResult](t, "verify key", out)
		if !r.Valid || !r.Trusted || r.ConfigHash != hashOf(t, snapCfgA) || r.Entities["services"] != 1 || r.Version != "3.9.1" || len(r.Checks) < 5 {
			t.Errorf("verify %s: %+v", kA, r)
		}

		bad := []struct {
			name string
			args []string
			want []string
		}{
			{"missing key", []string{kB}, []string{"cannot decrypt", kB}},
			{"wrong key", []string{kB, "--snapshot-identity-file", keys.otherID}, []string{"cannot decrypt", "wrong key"}},
			{"untrusted signer", []string{kA, "--snapshot-trusted-key", keys.otherPub}, []string{"untrusted signer"}},
			{"unknown key", []string{"3.9.1/snapshots/nope.snap"}, []string{"no object \"3.9.1/snapshots/nope.snap\"", "object not found"}},
			{"version policy", []string{kA, "--snapshot-version-policy", "exact"}, nil}, // 3.9.1 == current: passes below
		}
		for _, c := range bad[:4] {
			code, out, errOut := runCLI(t, s.with(append([]string{"snapshot", "verify"}, c.args...)...)...)
			wantExit(t, c.name, code, 1, out, errOut)
			mustContain(t, c.name, out+errOut, c.want...)
		}
		code, out, errOut = runCLI(t, s.with(append([]string{"snapshot", "verify"}, bad[4].args...)...)...)
		wantExit(t, "exact policy", code, 0, out, errOut)

		// A local copy verifies the same; a tampered copy does not, and
		// the output says what passed before the failure.
		data, _, err := s.store.Get(context.Background(), kA)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		local := filepath.Join(dir, filepath.Base(kA))
		if err := os.WriteFile(local, data, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut = runCLI(t, s.with("snapshot", "verify", local)...)
		wantExit(t, "verify file", code, 0, out, errOut)
		mustContain(t, "verify file", out, "(file,", "verified")
		data[len(data)-1] ^= 1
		if err := os.WriteFile(local, data, 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut = runCLI(t, "snapshot", "verify", local) // no --storage: a file
		wantExit(t, "verify tampered file", code, 1, out, errOut)
		mustContain(t, "verify tampered file", out, "FAILED: checksum mismatch", "ok  signature by "+sk.KeyID())

		// Tampered in storage: --latest reports the newest, it does not skip it.
		tamper(t, s.store, kB, 1)
		code, out, errOut = runCLI(t, s.with("snapshot", "verify", "--latest", "--snapshot-identity-file", keys.identity, "-o", "json")...)
		wantExit(t, "verify tampered latest", code, 1, out, errOut)
		if r := decodeJSON[snapshotops.VerifyResult](t, "tampered", out); r.Valid || r.Object != kB || r.Reason != "checksum mismatch" {
			t.Errorf("tampered latest: %+v", r)
		}
	})
}

func TestSnapshotVerifyUsage(t *testing.T) {
	for _, args := range [][]string{
		{"snapshot", "verify"},
		{"snapshot", "verify", "--latest", "x"},
		{"snapshot", "verify", "--latest"}, // no storage
		{"snapshot", "verify", "a", "b"},
	} {
		code, out, errOut := runCLI(t, args...)
		wantExit(t, "usage", code, 2, out, errOut)
	}
	code, out, errOut := runCLI(t, "snapshot", "verify", filepath.Join(t.TempDir(), "missing.snap"))
	wantExit(t, "missing file", code, 1, out, errOut)
	mustContain(t, "missing file", errOut, "missing.snap", "no such file")
}
