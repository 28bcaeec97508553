package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

func TestSnapshotExport(t *testing.T) {
	keys := newSnapKeys(t)
	dir := t.TempDir()
	fileA := filepath.Join(dir, "kong.yaml")
	if err := os.WriteFile(fileA, []byte(snapCfgA), 0o600); err != nil {
		t.Fatal(err)
	}
	const token = "s3cr3t"
	cp := adminCP(t, token)
	if code, body := adminDo(t, cp, "POST", "/config", token, "application/yaml", snapCfgB); code != 201 {
		t.Fatalf("seed CP: %d %s", code, body)
	}
	forEachStore(t, func(t *testing.T, s snapStore) {
		ctx := context.Background()
		// Plain: the history object and Kong's config.json.
		code, out, errOut := runCLI(t, s.with("snapshot", "export", "--from-file", fileA, "-o", "json", "--node-id", "ops-laptop")...)
		wantExit(t, "export plain", code, 0, out, errOut)
		r1 := decodeJSON[snapshotops.ExportResult](t, "export plain", out)
		if r1.ConfigHash != hashOf(t, snapCfgA) || r1.KongObject != "3.9.1/config.json" || r1.Encrypted || r1.Signed {
			t.Fatalf("export plain: %+v", r1)
		}
		data, _, err := s.store.Get(ctx, r1.Key)
		if err != nil {
			t.Fatal(err)
		}
		snap, err := snapshot.Decode(r1.Key, data, snapshot.VerifyOptions{})
		if err != nil || snap.Manifest.NodeID != "ops-laptop" || snap.Manifest.Term != 0 {
			t.Fatalf("decode %s: %v %+v", r1.Key, err, snap)
		}
		info, err := s.store.Head(ctx, "3.9.1/config.json")
		if err != nil || info.Metadata["kongfb-config-hash"] != r1.ConfigHash || info.ContentType != "application/json" {
			t.Fatalf("config.json: %+v %v", info, err)
		}

		// From the CP, signed and encrypted: no plaintext config.json
		// unless asked; the new snapshot sorts after the first.
		code, out, errOut = runCLI(t, s.with("snapshot", "export", "--from-cp", cp.URL, "--admin-token", token, "-o", "json",
			"--snapshot-signing-key", keys.signKey, "--snapshot-recipient", keys.recipient)...)
		wantExit(t, "export from cp", code, 0, out, errOut)
		r2 := decodeJSON[snapshotops.ExportResult](t, "export from cp", out)
		if r2.ConfigHash != cpHash(t, cp, token) || !r2.Encrypted || !r2.Signed || r2.KongObject != "" || r2.KongObjectSkipped == "" || !r2.CreatedAt.After(r1.CreatedAt) {
			t.Fatalf("export from cp: %+v (first %+v)", r2, r1)
		}
		if info2, _ := s.store.Head(ctx, "3.9.1/config.json"); info2.ETag != info.ETag {
			t.Errorf("config.json was replaced by an encrypted export")
		}
		code, out, errOut = runCLI(t, s.with("snapshot", "verify", "--latest", "--snapshot-identity-file", keys.identity, "--snapshot-trusted-key", keys.signPub)...)
		wantExit(t, "verify exported", code, 0, out, errOut)
		mustContain(t, "verify exported", out, r2.Key)
		code, out, errOut = runCLI(t, s.with("snapshot", "export", "--from-cp", cp.URL+"/", "--admin-token", token,
			"--snapshot-recipient", keys.recipient, "--kong-compatible-plaintext", "--gateway-version", "3.9.1.2", "--compression", "gzip")...)
		wantExit(t, "export plaintext", code, 0, out, errOut)
		mustContain(t, "export plaintext", out, "3.9.1.2/snapshots/", "wrote 3.9.1.2/config.json")

		// Failures write nothing.
		before := len(snapKeysIn(t, s.store))
		invalid := filepath.Join(dir, "invalid.yaml")
		os.WriteFile(invalid, []byte("_format_version: \"3.0\"\nservices:\n- name: bad\n  port: 99999\n  host: x\n"), 0o600)
		empty := filepath.Join(dir, "empty.yaml")
		os.WriteFile(empty, []byte("_format_version: \"3.0\"\n"), 0o600)
		for _, c := range []struct {
			name string
			args []string
			code int
			want []string
		}{
			{"invalid file", []string{"--from-file", invalid}, 1, []string{"invalid.yaml", "port"}},
			{"empty file", []string{"--from-file", empty}, 1, []string{"empty.yaml", "no entities"}},
			{"missing file", []string{"--from-file", filepath.Join(dir, "nope.yaml")}, 1, []string{"nope.yaml"}},
			{"wrong token", []string{"--from-cp", cp.URL, "--admin-token", "wrong"}, 1, []string{"401", "--admin-token"}},
			{"bad recipient", []string{"--from-file", fileA, "--snapshot-recipient", "age1nope"}, 2, []string{"--snapshot-recipient"}},
			{"no source", nil, 2, []string{"--from-file"}},
		} {
			code, out, errOut := runCLI(t, s.with(append([]string{"snapshot", "export"}, c.args...)...)...)
			wantExit(t, c.name, code, c.code, out, errOut)
			mustContain(t, c.name, errOut, c.want...)
		}
		if after := len(snapKeysIn(t, s.store)); after != before {
			t.Errorf("failed exports wrote objects: %d -> %d", before, after)
		}
	})
}

// TestSnapshotExportNoGetConfig: an Admin API without GET /config (Kong
// with a database) is explained.
func TestSnapshotExportNoGetConfig(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		w.Write([]byte(`{"message":"Not found"}`))
	}))
	defer srv.Close()
	s := fileSnapStore(t)
	code, out, errOut := runCLI(t, s.with("snapshot", "export", "--from-cp", srv.URL)...)
	wantExit(t, "no GET /config", code, 1, out, errOut)
	mustContain(t, "no GET /config", errOut, "404 Not found", "DB-less", "--from-file")
}

// snapKeysIn lists every key of st.
func snapKeysIn(t *testing.T, st storage.Store) []string {
	t.Helper()
	var out []string
	for obj, err := range storage.ListAll(context.Background(), st, "", storage.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, obj.Key)
	}
	return out
}
