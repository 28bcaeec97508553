package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

func TestSnapshotEncryptDecrypt(t *testing.T) {
	keys := newSnapKeys(t)
	sk, err := snapshot.LoadSigningKey(keys.signKey)
	if err != nil {
		t.Fatal(err)
	}
	forEachStore(t, func(t *testing.T, s snapStore) {
		ctx := context.Background()
		kPlain, _ := putSnap(t, s.store, parseCfg(t, snapCfgA), snapshot.Options{CreatedAt: snapT0, SigningKey: sk})
		before, _, _ := s.store.Get(ctx, kPlain)

		// Encrypt to the ops identity, re-signed by the other key.
		code, out, errOut := runCLI(t, s.with("snapshot", "encrypt", kPlain, "--snapshot-recipient", keys.recipient,
			"--snapshot-signing-key", keys.otherKey, "--snapshot-trusted-key", keys.signPub, "-o", "json")...)
		wantExit(t, "encrypt", code, 0, out, errOut)
		r := decodeJSON[snapshotops.RewrapResult](t, "encrypt", out)
		if r.Key == "" || r.Key == kPlain || !r.Encrypted || r.ConfigHash != hashOf(t, snapCfgA) || !r.CreatedAt.Equal(snapT0) {
			t.Fatalf("encrypt: %+v", r)
		}
		if after, _, _ := s.store.Get(ctx, kPlain); string(after) != string(before) {
			t.Fatal("the source was modified")
		}
		code, out, errOut = runCLI(t, s.with("snapshot", "verify", r.Key, "--snapshot-identity-file", keys.identity, "--snapshot-trusted-key", keys.otherPub)...)
		wantExit(t, "verify encrypted copy", code, 0, out, errOut)
		// Decrypted into storage, the copy's key is the plain original's
		// (same time, hash and payload digest): refused, nothing replaced.
		code, out, errOut = runCLI(t, s.with("snapshot", "decrypt", r.Key, "--snapshot-identity-file", keys.identity)...)
		wantExit(t, "decrypt onto the original", code, 1, out, errOut)
		mustContain(t, "decrypt onto the original", errOut, kPlain, "object already exists")
		if after, _, _ := s.store.Get(ctx, kPlain); string(after) != string(before) {
			t.Fatal("the original was replaced")
		}

		// Decrypt the copy to a file, unsigned.
		dir := t.TempDir()
		plain := filepath.Join(dir, "plain.snap")
		code, out, errOut = runCLI(t, s.with("snapshot", "decrypt", r.Key, "--snapshot-identity-file", keys.identity, "--out", plain)...)
		wantExit(t, "decrypt", code, 0, out, errOut)
		mustContain(t, "decrypt", out, "decrypted "+r.Key+" -> "+plain, "signed:      no")
		code, out, errOut = runCLI(t, "snapshot", "verify", plain)
		wantExit(t, "verify decrypted file", code, 0, out, errOut)
		code, out, errOut = runCLI(t, s.with("snapshot", "decrypt", r.Key, "--snapshot-identity-file", keys.identity, "--out", plain)...)
		wantExit(t, "decrypt over a file", code, 1, out, errOut)
		mustContain(t, "decrypt over a file", errOut, "file exists")

		// Bad cases.
		for _, c := range []struct {
			name string
			args []string
			code int
			want string
		}{
			{"wrong key", []string{"decrypt", r.Key, "--snapshot-identity-file", keys.otherID, "--out", filepath.Join(dir, "x")}, 1, "wrong key"},
			{"missing key", []string{"decrypt", r.Key, "--out", filepath.Join(dir, "x")}, 1, "cannot decrypt"},
			{"not encrypted", []string{"decrypt", kPlain, "--out", filepath.Join(dir, "x")}, 1, "not encrypted"},
			{"unknown key", []string{"encrypt", "3.9.1/snapshots/nope.snap", "--snapshot-recipient", keys.recipient}, 1, "nope.snap"},
			{"no recipients", []string{"encrypt", kPlain}, 2, "--snapshot-recipient"},
			{"untrusted source", []string{"encrypt", kPlain, "--snapshot-recipient", keys.recipient, "--snapshot-trusted-key", keys.otherPub}, 1, "untrusted signer"},
		} {
			code, out, errOut := runCLI(t, s.with(append([]string{"snapshot"}, c.args...)...)...)
			wantExit(t, c.name, code, c.code, out, errOut)
			mustContain(t, c.name, errOut, c.want)
		}
		tamper(t, s.store, kPlain, 1)
		code, out, errOut = runCLI(t, s.with("snapshot", "encrypt", kPlain, "--snapshot-recipient", keys.recipient)...)
		wantExit(t, "tampered source", code, 1, out, errOut)
		mustContain(t, "tampered source", errOut, "checksum mismatch")
		if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
			t.Error("a failed rewrap left a file")
		}
	})
	// A local file without --out or --storage has no destination.
	code, out, errOut := runCLI(t, "snapshot", "decrypt", "./some.snap")
	wantExit(t, "no destination", code, 2, out, errOut)
	mustContain(t, "no destination", errOut, "--out")
}
