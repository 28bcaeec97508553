package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

func TestSnapshotRestore(t *testing.T) {
	keys := newSnapKeys(t)
	sk, err := snapshot.LoadSigningKey(keys.signKey)
	if err != nil {
		t.Fatal(err)
	}
	forEachStore(t, func(t *testing.T, s snapStore) {
		a, b := parseCfg(t, snapCfgA), parseCfg(t, snapCfgB)
		kA, _ := putSnap(t, s.store, a, snapshot.Options{CreatedAt: snapT0, SigningKey: sk, Recipients: []string{keys.recipient}})
		kB, _ := putSnap(t, s.store, b, snapshot.Options{CreatedAt: snapT0.Add(1e9), SigningKey: sk, Recipients: []string{keys.recipient}})
		read := []string{"--snapshot-identity-file", keys.identity, "--snapshot-trusted-key", keys.signPub}
		dir := t.TempDir()

		// To files: YAML and JSON, both loadable, same config hash.
		for _, name := range []string{"kong.yaml", "config.json"} {
			out := filepath.Join(dir, name)
			code, stdout, errOut := runCLI(t, s.with(append([]string{"snapshot", "restore", "--latest", "--to", out}, read...)...)...)
			wantExit(t, "restore to "+name, code, 0, stdout, errOut)
			mustContain(t, "restore to "+name, stdout, "restored "+kB)
			c, err := config.ParseFile(out)
			if err != nil {
				t.Fatalf("%s does not load: %v", name, err)
			}
			if h, _ := config.Hash(c); h != hashOf(t, snapCfgB) {
				t.Errorf("%s: hash %s, want %s", name, h, hashOf(t, snapCfgB))
			}
			if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
				t.Errorf("%s mode %v", name, fi.Mode().Perm())
			}
			code, stdout, errOut = runCLI(t, "config", "validate", out)
			wantExit(t, "validate "+name, code, 0, stdout, errOut)
		}
		// No overwrite without --force.
		out := filepath.Join(dir, "kong.yaml")
		before, _ := os.ReadFile(out)
		code, stdout, errOut := runCLI(t, s.with(append([]string{"snapshot", "restore", kA, "--to", out}, read...)...)...)
		wantExit(t, "restore over a file", code, 1, stdout, errOut)
		mustContain(t, "restore over a file", errOut, out, "file exists", "--force")
		if after, _ := os.ReadFile(out); string(after) != string(before) {
			t.Fatal("the file was replaced without --force")
		}
		code, stdout, errOut = runCLI(t, s.with(append([]string{"snapshot", "restore", kA, "--to", out, "--force"}, read...)...)...)
		wantExit(t, "restore --force", code, 0, stdout, errOut)
		if c, err := config.ParseFile(out); err != nil {
			t.Fatal(err)
		} else if h, _ := config.Hash(c); h != hashOf(t, snapCfgA) {
			t.Errorf("--force: hash %s", h)
		}

		// Bad snapshots are not restored; --latest skips them and says so.
		code, stdout, errOut = runCLI(t, s.with("snapshot", "restore", kB, "--to", filepath.Join(dir, "x.yaml"))...)
		wantExit(t, "restore without identity", code, 1, stdout, errOut)
		mustContain(t, "restore without identity", errOut, "cannot decrypt")
		code, stdout, errOut = runCLI(t, s.with(append([]string{"snapshot", "restore", kA, "--to", filepath.Join(dir, "y.yaml"), "--snapshot-trusted-key", keys.otherPub}, read[:2]...)...)...)
		wantExit(t, "restore untrusted", code, 1, stdout, errOut)
		mustContain(t, "restore untrusted", errOut, "untrusted signer")
		tamper(t, s.store, kB, 1)
		code, stdout, errOut = runCLI(t, s.with(append([]string{"snapshot", "restore", "--latest", "--to", filepath.Join(dir, "z.json")}, read...)...)...)
		wantExit(t, "restore --latest past a tampered one", code, 0, stdout, errOut)
		mustContain(t, "restore --latest past a tampered one", stdout, "restored "+kA)
		mustContain(t, "restore --latest past a tampered one", errOut, "skipped (does not verify)", kB, "checksum mismatch")
		if _, err := os.Stat(filepath.Join(dir, "x.yaml")); err == nil {
			t.Error("a failed restore left a file")
		}
	})
}

func TestSnapshotRestoreToCP(t *testing.T) {
	s := fileSnapStore(t)
	const token = "tok"
	cp := adminCP(t, token)
	a, b := parseCfg(t, snapCfgA), parseCfg(t, snapCfgB)
	kA, _ := putSnap(t, s.store, a, snapshot.Options{CreatedAt: snapT0})
	kB, _ := putSnap(t, s.store, b, snapshot.Options{CreatedAt: snapT0.Add(1e9)})
	tok := []string{"--admin-token", token}
	restore := func(args ...string) (int, string, string) {
		return runCLI(t, s.with(append(append([]string{"snapshot", "restore"}, args...), tok...)...)...)
	}

	// Empty CP: the plan adds everything, and --plan changes nothing.
	code, out, errOut := restore("--latest", "--to-cp", cp.URL, "--plan", "-o", "json")
	wantExit(t, "plan", code, 0, out, errOut)
	r := decodeJSON[snapshotops.RestoreResult](t, "plan", out)
	if r.Applied || len(r.Plan.Added) != 5 || len(r.Plan.Removed) != 0 || r.Snapshot != kB {
		t.Fatalf("plan: %+v", r.Plan)
	}
	if h := cpHash(t, cp, token); h != config.EmptyHash {
		t.Fatalf("--plan changed the CP: %s", h)
	}
	// Restore B.
	code, out, errOut = restore("--latest", "--to-cp", cp.URL)
	wantExit(t, "restore B", code, 0, out, errOut)
	mustContain(t, "restore B", out, "+ services svc-b", "+ plugins rate-limiting (service svc-b)", "restored")
	if h := cpHash(t, cp, token); h != hashOf(t, snapCfgB) {
		t.Errorf("after restore: CP hash %s, want %s", h, hashOf(t, snapCfgB))
	}
	// Again: nothing to do.
	code, out, errOut = restore(kB, "--to-cp", cp.URL)
	wantExit(t, "restore B again", code, 0, out, errOut)
	mustContain(t, "restore B again", out, "already serves")

	// Restoring A would delete svc-b, route-b and the plugin: refused, named.
	code, out, errOut = restore(kA, "--to-cp", cp.URL, "--plan")
	wantExit(t, "plan A", code, 0, out, errOut)
	mustContain(t, "plan A", out, "- services svc-b", "- routes route-b", "~ routes route-a: paths")
	code, out, errOut = restore(kA, "--to-cp", cp.URL)
	wantExit(t, "restore A refused", code, 1, out, errOut)
	mustContain(t, "restore A refused", errOut, "entities the snapshot lacks", "services svc-b", "routes route-b", "plugins rate-limiting (service svc-b)", "--force")
	if h := cpHash(t, cp, token); h != hashOf(t, snapCfgB) {
		t.Fatal("a refused restore changed the CP")
	}
	code, out, errOut = restore(kA, "--to-cp", cp.URL, "--force")
	wantExit(t, "restore A --force", code, 0, out, errOut)
	if h := cpHash(t, cp, token); h != hashOf(t, snapCfgA) {
		t.Errorf("after --force: CP hash %s, want %s", h, hashOf(t, snapCfgA))
	}

	// Wrong token, unknown key, bad usage.
	code, out, errOut = runCLI(t, s.with("snapshot", "restore", kA, "--to-cp", cp.URL, "--admin-token", "nope")...)
	wantExit(t, "wrong token", code, 1, out, errOut)
	mustContain(t, "wrong token", errOut, "401")
	code, out, errOut = restore("3.9.1/snapshots/missing.snap", "--to-cp", cp.URL)
	wantExit(t, "unknown key", code, 1, out, errOut)
	mustContain(t, "unknown key", errOut, "missing.snap")
	for _, args := range [][]string{
		{kA},                                      // no target
		{kA, "--to", "x.txt"},                     // unknown extension
		{kA, "--to", "x.yaml", "--plan"},          // --plan without --to-cp
		{"--to-cp", cp.URL},                       // no snapshot
		{kA, "--to-cp", "cp:8001"},                // not a URL
		{kA, "--latest", "--to-cp", cp.URL},       // both
		{kA, "--to", "x.yaml", "--to-cp", cp.URL}, // both targets
	} {
		code, out, errOut := restore(args...)
		wantExit(t, "usage", code, 2, out, errOut)
	}
}
