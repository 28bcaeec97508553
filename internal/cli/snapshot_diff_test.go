package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

func TestSnapshotDiff(t *testing.T) {
	keys := newSnapKeys(t)
	forEachStore(t, func(t *testing.T, s snapStore) {
		a, b := parseCfg(t, snapCfgA), parseCfg(t, snapCfgB)
		kA, _ := putSnap(t, s.store, a, snapshot.Options{CreatedAt: snapT0})
		kB, _ := putSnap(t, s.store, b, snapshot.Options{CreatedAt: snapT0.Add(1e9), Recipients: []string{keys.recipient}})
		id := []string{"--snapshot-identity-file", keys.identity}

		code, out, errOut := runCLI(t, s.with(append([]string{"snapshot", "diff", kA, kB}, id...)...)...)
		wantExit(t, "diff", code, 0, out, errOut)
		mustContain(t, "diff", out, "+ services svc-b", "+ routes route-b", "+ plugins rate-limiting (service svc-b)", "~ routes route-a: paths",
			"add 3, remove 0, change 1")

		// A key against a decK file and a local snapshot file: JSON, --exit-code.
		dir := t.TempDir()
		yamlA := filepath.Join(dir, "kong.yaml")
		os.WriteFile(yamlA, []byte(snapCfgA), 0o600)
		data, _, err := s.store.Get(context.Background(), kA)
		if err != nil {
			t.Fatal(err)
		}
		local := filepath.Join(dir, "a.snap")
		os.WriteFile(local, data, 0o600)
		code, out, errOut = runCLI(t, s.with(append([]string{"snapshot", "diff", kB, yamlA, "-o", "json", "--exit-code"}, id...)...)...)
		wantExit(t, "diff --exit-code", code, 1, out, errOut)
		d := decodeJSON[snapshotops.Diff](t, "diff json", out)
		if len(d.Removed) != 3 || len(d.Changed) != 1 || len(d.Added) != 0 || d.To != yamlA {
			t.Errorf("diff B -> kong.yaml: %+v", d)
		}
		code, out, errOut = runCLI(t, s.with("snapshot", "diff", local, yamlA, "--exit-code")...)
		wantExit(t, "same config", code, 0, out, errOut)
		mustContain(t, "same config", out, "no differences")

		// Bad inputs.
		code, out, errOut = runCLI(t, s.with("snapshot", "diff", kA, kB)...) // no identity
		wantExit(t, "diff missing key", code, 1, out, errOut)
		mustContain(t, "diff missing key", errOut, kB, "cannot decrypt")
		code, out, errOut = runCLI(t, s.with("snapshot", "diff", kA, "3.9.1/snapshots/nope.snap")...)
		wantExit(t, "diff unknown key", code, 1, out, errOut)
		mustContain(t, "diff unknown key", errOut, "nope.snap")
		tamper(t, s.store, kA, 1)
		code, out, errOut = runCLI(t, s.with(append([]string{"snapshot", "diff", kA, kB}, id...)...)...)
		wantExit(t, "diff tampered", code, 1, out, errOut)
		mustContain(t, "diff tampered", errOut, kA, "checksum mismatch")
	})
	code, out, errOut := runCLI(t, "snapshot", "diff", "only-one")
	wantExit(t, "one arg", code, 2, out, errOut)
}

// TestSnapshotDiffHidesCredentialKeys: a key-auth key or a JWT key is a
// secret; the diff names such credentials by id, in every output format,
// and never prints the key (it was used as the entity's name).
func TestSnapshotDiffHidesCredentialKeys(t *testing.T) {
	const secret, jwtKey = "sup3r-s3cret-api-key", "jwt-iss-s3cret"
	dir := t.TempDir()
	a := filepath.Join(dir, "a.yaml")
	b := filepath.Join(dir, "b.yaml")
	if err := os.WriteFile(a, []byte(`_format_version: "3.0"
consumers:
- username: alice
  keyauth_credentials:
  - key: `+secret+`
  jwt_secrets:
  - key: `+jwtKey+`
    secret: jwt-hmac-s3cret
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("_format_version: \"3.0\"\nconsumers:\n- username: alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"text", "json", "yaml"} {
		code, out, errOut := runCLI(t, "snapshot", "diff", a, b, "-o", format)
		wantExit(t, "diff "+format, code, 0, out, errOut)
		mustContain(t, "diff "+format, out, "keyauth_credentials", "jwt_secrets")
		for _, s := range []string{secret, jwtKey, "jwt-hmac-s3cret"} {
			if strings.Contains(out+errOut, s) {
				t.Errorf("diff -o %s prints the credential %q:\n%s%s", format, s, out, errOut)
			}
		}
	}
}
