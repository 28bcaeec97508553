package cache

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

func sampleDoc(t *testing.T, path string) ([]byte, string) {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`_format_version: "3.0"
services:
  - name: svc
    url: http://127.0.0.1:9/
    routes:
      - name: r
        paths: [%q]
`, path)), "kong.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := cfg.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := config.Hash(cfg)
	return doc, h
}

func open(t *testing.T, dir string, key []byte) *Cache {
	t.Helper()
	c, err := Open(dir, Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func reopen(t *testing.T, c *Cache, dir string, key []byte) *Cache {
	t.Helper()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, dir, key)
}

func mustWrite(t *testing.T, c *Cache, doc []byte, hash string) {
	t.Helper()
	if err := c.Write(doc, Meta{ConfigHash: hash, Source: "cp", Origin: "cp.example:8005"}); err != nil {
		t.Fatal(err)
	}
}

func aside(t *testing.T, dir, prefix string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, prefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, nil)
	if _, err := c.Load(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load on an empty dir = %v, want ErrNotExist", err)
	}
	doc, hash := sampleDoc(t, "/a")
	mustWrite(t, c, doc, hash)

	c = reopen(t, c, dir, nil)
	e, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if e.Header.ConfigHash != hash || e.Header.Source != "cp" || e.Header.Origin != "cp.example:8005" ||
		e.Header.Format != FormatVersion || e.Header.Encryption != EncryptionNone || e.Header.KongVersion != config.KongVersion {
		t.Errorf("header = %+v", e.Header)
	}
	if time.Since(e.Header.WrittenAt) > time.Minute {
		t.Errorf("written_at = %v", e.Header.WrittenAt)
	}
	if got, _ := config.Hash(e.Config); got != hash {
		t.Errorf("config read back hashes %s, want %s", got, hash)
	}
	if len(e.Config.Routes) != 1 || e.Config.Routes[0].Paths[0] != "/a" {
		t.Errorf("routes = %+v", e.Config.Routes)
	}
	st, err := os.Stat(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("cache mode = %v, want 0600", st.Mode().Perm())
	}
	// A second write replaces the first.
	doc2, hash2 := sampleDoc(t, "/b")
	mustWrite(t, c, doc2, hash2)
	if e, err := c.Load(); err != nil || e.Header.ConfigHash != hash2 {
		t.Fatalf("after rewrite: %v %v", e, err)
	}
	if err := c.Write(doc, Meta{ConfigHash: "nope"}); err == nil {
		t.Error("Write accepted an invalid hash")
	}
}

// corrupt rewrites the cache file through f and checks that Load refuses
// it, sets it aside as corrupt and that nothing is served afterwards.
func TestCorruptCaches(t *testing.T) {
	doc, hash := sampleDoc(t, "/a")
	reheader := func(b []byte, edit func(h map[string]any)) []byte {
		rest := b[len(magic):]
		nl := bytes.IndexByte(rest, '\n')
		var h map[string]any
		if err := json.Unmarshal(rest[:nl], &h); err != nil {
			panic(err)
		}
		edit(h)
		nh, _ := json.Marshal(h)
		return append(append([]byte(magic), append(nh, '\n')...), rest[nl+1:]...)
	}
	// withPayload replaces the payload and fixes size and checksum, so that
	// only the content check can catch it.
	withPayload := func(b []byte, p []byte) []byte {
		rest := b[len(magic):]
		nl := bytes.IndexByte(rest, '\n')
		b = append(append([]byte(magic), rest[:nl+1]...), p...)
		sum := sha256.Sum256(p)
		return reheader(b, func(h map[string]any) {
			h["payload_size"] = len(p)
			h["payload_sha256"] = hex.EncodeToString(sum[:])
		})
	}
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = w.Write([]byte(s))
		_ = w.Close()
		return b.Bytes()
	}
	for _, tc := range []struct {
		name   string
		mangle func([]byte) []byte
		reason error
		want   string
	}{
		{"flipped payload byte", func(b []byte) []byte { b[len(b)-5] ^= 0xff; return b }, ErrCorrupt, "checksum"},
		{"truncated payload", func(b []byte) []byte { return b[:len(b)-10] }, ErrCorrupt, "truncated"},
		{"truncated header", func(b []byte) []byte { return b[:len(magic)+20] }, ErrCorrupt, "header"},
		{"empty file", func([]byte) []byte { return nil }, ErrCorrupt, "magic"},
		{"not a cache", func([]byte) []byte { return []byte(`{"_format_version":"3.0"}`) }, ErrCorrupt, "magic"},
		{"trailing data", func(b []byte) []byte { return append(b, 'x') }, ErrCorrupt, "trailing"},
		{"bad hash in header", func(b []byte) []byte {
			return reheader(b, func(h map[string]any) { h["config_hash"] = "xyz" })
		}, ErrCorrupt, "config_hash"},
		{"bad gzip", func(b []byte) []byte { return withPayload(b, []byte("not gzip at all")) }, ErrCorrupt, "gzip"},
		{"cut gzip stream", func(b []byte) []byte {
			g := gz(strings.Repeat(`{"_format_version":"3.0"}`, 100))
			return withPayload(b, g[:len(g)/2])
		}, ErrCorrupt, "gzip"},
		{"invalid config", func(b []byte) []byte {
			return withPayload(b, gz(`{"_format_version":"3.0","_transform":false,"services":[{"id":"0c5b8a2e-1c0a-4e6a-9a55-6ad1b4c7b2a1","name":"s","protocol":"http","host":"h","port":99999}]}`))
		}, ErrInvalidConfig, "port"},
		{"future format", func(b []byte) []byte {
			return reheader(b, func(h map[string]any) { h["format"] = 99 })
		}, ErrUnsupported, "format 99"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := open(t, dir, nil)
			mustWrite(t, c, doc, hash)
			b, err := os.ReadFile(c.Path())
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(c.Path(), tc.mangle(b), 0o600); err != nil {
				t.Fatal(err)
			}
			c = reopen(t, c, dir, nil)
			e, err := c.Load()
			var ue *UnusableError
			if !errors.As(err, &ue) || !errors.Is(err, tc.reason) || e != nil {
				t.Fatalf("Load = %v, %v; want an UnusableError for %v", e, err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), c.Path()) {
				t.Errorf("error %q lacks %q or the path", err, tc.want)
			}
			prefix := corruptPrefix
			if tc.reason == ErrUnsupported {
				prefix = unreadablePref
			}
			if got := aside(t, dir, prefix); len(got) != 1 || ue.SetAside != got[0] {
				t.Errorf("set aside %v, error says %q", got, ue.SetAside)
			}
			if _, err := os.Stat(c.Path()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the unusable cache is still in place: %v", err)
			}
			if _, err := c.Load(); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("second Load = %v, want no cache", err)
			}
			// The next write works as usual.
			mustWrite(t, c, doc, hash)
			if _, err := c.Load(); err != nil {
				t.Errorf("Load after a fresh write: %v", err)
			}
		})
	}
}

// A process killed mid-write leaves a temporary file (possibly truncated);
// the previous cache stays valid and the leftover is removed at Open.
func TestCrashMidWriteKeepsPreviousCache(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, nil)
	doc, hash := sampleDoc(t, "/good")
	mustWrite(t, c, doc, hash)
	good, _ := os.ReadFile(c.Path())
	// What a writer killed before its rename leaves: half a file.
	leftover := filepath.Join(dir, tempPrefix+"123456")
	if err := os.WriteFile(leftover, good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	c = reopen(t, c, dir, nil)
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("leftover temp file not removed: %v", err)
	}
	e, err := c.Load()
	if err != nil || e.Header.ConfigHash != hash {
		t.Fatalf("Load after a crashed write = %v, %v; want the previous cache", e, err)
	}
}

func TestLockedPrefix(t *testing.T) {
	dir := t.TempDir()
	c := open(t, dir, nil)
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "another kongfb data plane") {
		t.Fatalf("second Open = %v, want a lock error", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	_ = c2.Close()
}

func testKey(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := DeriveKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func TestEncryptedRoundTrip(t *testing.T) {
	dir := t.TempDir()
	key := testKey(t)
	c := open(t, dir, key)
	doc, hash := sampleDoc(t, "/secret-path")
	mustWrite(t, c, doc, hash)
	raw, _ := os.ReadFile(c.Path())
	if bytes.Contains(raw, []byte("secret-path")) || bytes.Contains(raw, []byte("127.0.0.1")) {
		t.Error("the encrypted cache holds plaintext")
	}
	c = reopen(t, c, dir, key)
	e, err := c.Load()
	if err != nil {
		t.Fatal(err)
	}
	if e.Header.Encryption != EncryptionAESGCM || e.Header.KeyID != KeyID(key) || e.Config.Routes[0].Paths[0] != "/secret-path" {
		t.Errorf("entry = %+v", e.Header)
	}
}

func TestDeriveKeyIsStableAcrossKeyEncodings(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	a, err := DeriveKey(k)
	if err != nil {
		t.Fatal(err)
	}
	// The same key parsed back from SEC1 DER derives the same cache key.
	sec1, _ := x509.MarshalECPrivateKey(k)
	k2, err := x509.ParseECPrivateKey(sec1)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DeriveKey(k2)
	if !bytes.Equal(a, b) || len(a) != 32 {
		t.Errorf("derived keys differ or have the wrong length: %x %x", a, b)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if c, _ := DeriveKey(other); bytes.Equal(a, c) {
		t.Error("two keys derive the same cache key")
	}
	if _, err := DeriveKey("not a key"); err == nil {
		t.Error("DeriveKey accepted a non-key")
	}
}

func TestEncryptionMismatches(t *testing.T) {
	doc, hash := sampleDoc(t, "/a")
	keyA, keyB := testKey(t), testKey(t)
	for _, tc := range []struct {
		name          string
		writeKey      []byte
		readKey       []byte
		mangle        func(dir string, c *Cache)
		reason        error
		prefix, words string
	}{
		{"wrong key", keyA, keyB, nil, ErrWrongKey, unreadablePref, "another key"},
		{"encrypted read without key", keyA, nil, nil, ErrNeedKey, unreadablePref, "--cache-encrypt"},
		{"plain read with key", nil, keyA, nil, ErrNotEncrypted, unreadablePref, "not encrypted"},
		{"tampered header under a valid checksum", keyA, keyA, func(dir string, c *Cache) {
			b, _ := os.ReadFile(c.Path())
			// Swap the hash in the header: the payload checksum still holds,
			// GCM's additional data does not.
			b = bytes.Replace(b, []byte(hash), []byte(strings.Repeat("a", 32)), 1)
			_ = os.WriteFile(c.Path(), b, 0o600)
		}, ErrDecrypt, corruptPrefix, "authentication failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := open(t, dir, tc.writeKey)
			mustWrite(t, c, doc, hash)
			if tc.mangle != nil {
				tc.mangle(dir, c)
			}
			c = reopen(t, c, dir, tc.readKey)
			e, err := c.Load()
			if !errors.Is(err, tc.reason) || e != nil {
				t.Fatalf("Load = %v, %v; want %v", e, err, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.words) {
				t.Errorf("error %q lacks %q", err, tc.words)
			}
			if got := aside(t, dir, tc.prefix); len(got) != 1 {
				t.Errorf("set aside as %s*: %v", tc.prefix, got)
			}
		})
	}
	if _, err := Open(t.TempDir(), Options{Key: []byte("short")}); err == nil {
		t.Error("Open accepted a 5-byte key")
	}
}

func TestSetAsideFilesArePruned(t *testing.T) {
	dir := t.TempDir()
	doc, hash := sampleDoc(t, "/a")
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c, err := Open(dir, Options{Now: func() time.Time { now = now.Add(time.Second); return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < keepAside+3; i++ {
		mustWrite(t, c, doc, hash)
		if err := os.WriteFile(c.Path(), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Load(); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Load = %v", err)
		}
	}
	got := aside(t, dir, corruptPrefix)
	if len(got) != keepAside {
		t.Fatalf("kept %d set-aside files, want %d: %v", len(got), keepAside, got)
	}
	// The newest are kept.
	if !strings.HasSuffix(got[len(got)-1], now.UTC().Format("20060102T150405.000000000Z")) {
		t.Errorf("newest set-aside file missing: %v (now %v)", got, now)
	}
}

func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	doc, hash := benchDoc(b, 1000)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if err := c.Write(doc, Meta{ConfigHash: hash, Source: "cp"}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	dir := b.TempDir()
	c, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	doc, hash := benchDoc(b, 1000)
	if err := c.Write(doc, Meta{ConfigHash: hash, Source: "cp"}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := c.Load(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchDoc is an export document with n services, each with one route.
func benchDoc(b *testing.B, n int) ([]byte, string) {
	var y strings.Builder
	y.WriteString("_format_version: \"3.0\"\nservices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&y, "  - name: svc-%d\n    url: http://up-%d.internal:8080/p\n    routes:\n      - name: r-%d\n        paths: [/svc-%d]\n", i, i, i, i)
	}
	cfg, err := config.Parse([]byte(y.String()), "kong.yaml")
	if err != nil {
		b.Fatal(err)
	}
	doc, err := cfg.MarshalJSON()
	if err != nil {
		b.Fatal(err)
	}
	h, _ := config.Hash(cfg)
	return doc, h
}
