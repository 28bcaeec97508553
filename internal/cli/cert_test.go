package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/cluster"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw bytes.Buffer
	code = Main(args, strings.NewReader(""), &out, &errw)
	return code, out.String(), errw.String()
}

func TestCertGen(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cluster.crt"), filepath.Join(dir, "cluster.key")

	code, out, errOut := runCLI(t, "cert", "gen", "--cert", certPath, "--key", keyPath)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "Successfully generated certificate/key pairs, they have been written to: '"+certPath+"' and '"+keyPath+"'.") {
		t.Errorf("output: %s", out)
	}
	for path, mode := range map[string]os.FileMode{certPath: 0o644, keyPath: 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), mode)
		}
	}
	// The pair loads as cluster_cert / cluster_cert_key, for both sides.
	if _, err := cluster.ServerTLSConfig(cluster.TLSOptions{Cert: certPath, Key: keyPath}); err != nil {
		t.Fatal(err)
	}
	certPEM, _ := os.ReadFile(certPath)
	keyPEM, _ := os.ReadFile(keyPath)
	certs, err := cluster.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if certs[0].Subject.CommonName != "kong_clustering" || certs[0].NotAfter.Sub(certs[0].NotBefore) != 1095*24*time.Hour {
		t.Errorf("cert %v %v..%v", certs[0].Subject, certs[0].NotBefore, certs[0].NotAfter)
	}

	// A second run refuses to overwrite and leaves both files as they were.
	code, _, errOut = runCLI(t, "cert", "gen", "--cert", certPath, "--key", keyPath)
	if code != ExitFailure || !strings.Contains(errOut, certPath+" already exists; will not overwrite it (use --force)") {
		t.Errorf("second run: exit %d: %s", code, errOut)
	}
	// Only the key existing is refused too (nothing written).
	otherCert := filepath.Join(dir, "other.crt")
	code, _, errOut = runCLI(t, "cert", "gen", "--cert", otherCert, "--key", keyPath)
	if code != ExitFailure || !strings.Contains(errOut, keyPath+" already exists") {
		t.Errorf("existing key: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(otherCert); !os.IsNotExist(err) {
		t.Errorf("%s was written: %v", otherCert, err)
	}
	if b, _ := os.ReadFile(certPath); !bytes.Equal(b, certPEM) {
		t.Error("certificate changed without --force")
	}
	if b, _ := os.ReadFile(keyPath); !bytes.Equal(b, keyPEM) {
		t.Error("key changed without --force")
	}

	// --force replaces both, with the right modes even if the old key was
	// left readable.
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "cert", "gen", "--cert", certPath, "--key", keyPath, "--force", "--days", "10", "-o", "json")
	if code != ExitOK {
		t.Fatalf("--force: exit %d: %s", code, errOut)
	}
	var res certGenResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if res.Cert != certPath || res.Key != keyPath || res.Days != 10 || res.Subject != "CN=kong_clustering" ||
		res.KeyType != "ECDSA P-384" || len(res.SHA256) != 64 || res.NotAfter.Sub(res.NotBefore) != 10*24*time.Hour {
		t.Errorf("result %+v", res)
	}
	newCert, _ := os.ReadFile(certPath)
	if bytes.Equal(newCert, certPEM) {
		t.Error("--force did not replace the certificate")
	}
	if fi, _ := os.Stat(keyPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode after --force %v", fi.Mode().Perm())
	}
	newCerts, _ := cluster.ParseCertsPEM(newCert)
	if cluster.CertDigest(newCerts[0]) != res.SHA256 {
		t.Error("reported sha256 is not the written certificate's")
	}

	// No temporary files are left behind.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("leftover %s", e.Name())
		}
	}
}

func TestCertGenUsage(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"cert", "gen", "--cert", filepath.Join(dir, "a"), "--key", filepath.Join(dir, "b"), "--days", "0"}, ExitUsage, "--days must be at least 1"},
		{[]string{"cert", "gen", "--cert", filepath.Join(dir, "same"), "--key", filepath.Join(dir, "same")}, ExitUsage, "must be different files"},
		{[]string{"cert", "gen", "--cert", filepath.Join(dir, "no", "such", "c"), "--key", filepath.Join(dir, "k")}, ExitFailure, "does not exist"},
		{[]string{"cert", "gen", "extra"}, ExitUsage, "unknown command"},
	}
	for _, tc := range cases {
		code, _, errOut := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("files written on usage errors: %v", entries)
	}
}

func TestCertGenDefaultsToKongNames(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	if code, _, errOut := runCLI(t, "cert", "gen"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, name := range []string{"cluster.crt", "cluster.key"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
}
