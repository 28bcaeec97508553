package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestGenerateSharedCert(t *testing.T) {
	certPEM, keyPEM, err := GenerateSharedCert(DefaultCertDays)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	c := certs[0]
	if c.Subject.CommonName != "kong_clustering" || c.Issuer.CommonName != "kong_clustering" {
		t.Errorf("subject %v issuer %v", c.Subject, c.Issuer)
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P384() {
		t.Errorf("public key %T, want ECDSA P-384 (Kong's gen_cert: EC secp384r1)", c.PublicKey)
	}
	// Like Kong's cert it has no basicConstraints, so check the signature
	// directly rather than with CheckSignatureFrom (which wants a CA).
	if err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d != 1095*24*time.Hour {
		t.Errorf("validity %v, want 1095 days", d)
	}
	if time.Since(c.NotBefore) > time.Minute || time.Until(c.NotBefore) > time.Second {
		t.Errorf("NotBefore %v is not now", c.NotBefore)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM type %v, want PKCS#8 PRIVATE KEY", block)
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		t.Error(err)
	}
	if _, err := LoadKeyPair(string(certPEM), string(keyPEM)); err != nil {
		t.Errorf("pair does not load: %v", err)
	}
	for _, days := range []int{0, -1, 100 * 367} {
		if _, _, err := GenerateSharedCert(days); err == nil {
			t.Errorf("days=%d accepted", days)
		}
	}
}

func TestLoadPEMForms(t *testing.T) {
	certPEM, keyPEM, err := GenerateSharedCert(1)
	if err != nil {
		t.Fatal(err)
	}
	path := writeTemp(t, "cluster.crt", certPEM)
	for name, v := range map[string]string{
		"path":           path,
		"inline":         string(certPEM),
		"base64":         base64.StdEncoding.EncodeToString(certPEM),
		"base64 wrapped": wrap76(base64.StdEncoding.EncodeToString(certPEM)),
	} {
		got, err := LoadPEM("cluster_cert", v)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, err := ParseCertsPEM(got); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	_, err = LoadPEM("cluster_cert", filepath.Join(t.TempDir(), "missing.crt"))
	if err == nil || !strings.HasPrefix(err.Error(), "cluster_cert: failed loading from ") || !strings.Contains(err.Error(), "missing.crt") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadPEM("cluster_cert", "  "); err == nil || err.Error() != "cluster_cert is empty" {
		t.Errorf("empty: %v", err)
	}
	if _, err := LoadPEM("cluster_cert", t.TempDir()); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
	// A garbled inline key must not be echoed.
	garbled := strings.Repeat("QUJD", 100) + "!!"
	_, err = LoadPEM("cluster_cert_key", garbled)
	if err == nil || strings.Contains(err.Error(), "QUJD") || !strings.Contains(err.Error(), "inline value") {
		t.Errorf("garbled inline: %v", err)
	}
	// Base64 of something that is not PEM is refused.
	if _, err := LoadPEM("cluster_cert", base64.StdEncoding.EncodeToString([]byte("hello world, not pem"))); err == nil {
		t.Error("base64 non-PEM accepted")
	}

	// Key pair: mismatched key is refused, naming the setting.
	_, otherKey, _ := GenerateSharedCert(1)
	if _, err := LoadKeyPair(string(certPEM), string(otherKey)); err == nil || !strings.HasPrefix(err.Error(), "cluster_cert_key:") {
		t.Errorf("mismatched key: %v", err)
	}
	if _, err := LoadKeyPair(string(keyPEM), string(keyPEM)); err == nil || !strings.HasPrefix(err.Error(), "cluster_cert:") {
		t.Errorf("key as cert: %v", err)
	}
}

func wrap76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\n")
		s = s[76:]
	}
	b.WriteString(s)
	return b.String()
}

func TestTLSConfigErrors(t *testing.T) {
	cert, key := sharedPair(t)
	if _, err := ParseTLSMode("mutual"); err == nil || err.Error() != "cluster_mtls has an invalid value: 'mutual' (shared, pki)" {
		t.Errorf("bad mode: %v", err)
	}
	_, err := ServerTLSConfig(TLSOptions{Mode: TLSModePKI, Cert: cert, Key: key})
	if err == nil || err.Error() != `cluster_ca_cert must be specified when cluster_mtls = "pki"` {
		t.Errorf("pki without CA: %v", err)
	}
	if _, err := ServerTLSConfig(TLSOptions{Cert: cert}); err == nil || !strings.HasPrefix(err.Error(), "cluster_cert_key is empty") {
		t.Errorf("no key: %v", err)
	}
	if _, err := ClientTLSConfig(TLSOptions{Mode: TLSModePKI, Cert: cert, Key: key, CA: "/nonexistent/ca.crt"}); err == nil ||
		!strings.HasPrefix(err.Error(), "cluster_ca_cert: failed loading from /nonexistent/ca.crt") {
		t.Errorf("bad CA: %v", err)
	}
	// pki on a DP without CA uses the system roots (Kong: lua_ssl_trusted_certificate=system).
	if _, err := ClientTLSConfig(TLSOptions{Mode: TLSModePKI, Cert: cert, Key: key}); err != nil {
		t.Errorf("pki DP without CA: %v", err)
	}
	c, err := ClientTLSConfig(TLSOptions{Cert: cert, Key: key, ServerName: "ignored.example"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "kong_clustering" {
		t.Errorf("shared SNI = %q", c.ServerName)
	}
}

func TestCertDigest(t *testing.T) {
	certPEM, _, _ := GenerateSharedCert(1)
	certs, _ := ParseCertsPEM(certPEM)
	sum := sha256.Sum256(certs[0].Raw)
	if d := CertDigest(certs[0]); d != hex.EncodeToString(sum[:]) {
		t.Errorf("digest %q", d)
	}
}
