package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/kongfb/kongfb/pkg/config"
)

// testTime is a fixed capture time so keys and manifests are reproducible.
var testTime = time.Date(2025, 1, 8, 10, 15, 30, 123_456_789, time.UTC)

// genDoc writes a flat decK JSON document with n services, each with
// routesPer routes, one upstream with a target per service, and a plugin
// and a consumer every tenth service.
func genDoc(n, routesPer int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"_format_version":"3.0","services":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"svc-%d","url":"http://up-%d.internal:8080/base","routes":[`, i, i)
		for j := 0; j < routesPer; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"name":"r-%d-%d","hosts":["api-%d.example.com"],"paths":["/v1/s%d/r%d"],"methods":["GET","POST"]}`, i, j, i, i, j)
		}
		b.WriteString(`]`)
		if i%10 == 0 {
			b.WriteString(`,"plugins":[{"name":"rate-limiting","config":{"second":10}}]`)
		}
		b.WriteString(`}`)
	}
	b.WriteString(`],"upstreams":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"up-%d.internal","targets":[{"target":"10.%d.%d.%d:8080"}]}`, i, i/65536, (i/256)%256, i%256)
	}
	b.WriteString(`],"consumers":[`)
	for i := 0; i < n; i += 10 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"username":"user-%d"}`, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func genConfig(t testing.TB, n, routesPer int) *config.Config {
	t.Helper()
	cfg, err := config.Parse(genDoc(n, routesPer), "gen.json")
	if err != nil {
		t.Fatalf("parse generated config: %v", err)
	}
	return cfg
}

func kongExport(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/kong-ee-3.12-export.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// seedKey is a deterministic signing key (tests need stable signatures).
func seedKey(t testing.TB, seed byte) *SigningKey {
	t.Helper()
	k, err := NewSigningKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newIdentity(t testing.TB) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustEncode(t testing.TB, cfg *config.Config, opts Options) *Encoded {
	t.Helper()
	if opts.CreatedAt.IsZero() {
		opts.CreatedAt = testTime
	}
	e, err := Encode(cfg, opts)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return e
}

// wantErr asserts err is an *Error with the given reason whose text
// contains every fragment.
func wantErr(t *testing.T, err error, reason error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %v error, got nil", reason)
	}
	var se *Error
	if !errors.As(err, &se) {
		t.Fatalf("want *Error, got %T: %v", err, err)
	}
	if !errors.Is(err, reason) {
		t.Fatalf("want reason %q, got: %v", reason, err)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err.Error(), f)
		}
	}
}

// craft writes a snapshot object around arbitrary content, bypassing
// Encode's checks, so the reader's own checks can be exercised. mutate may
// change the manifest after the honest fields are filled in.
func craft(t testing.TB, content []byte, key *SigningKey, mutate func(*Manifest)) []byte {
	t.Helper()
	sum := sha256.Sum256(content)
	m := &Manifest{
		Format:         FormatVersion,
		CreatedAt:      testTime.Truncate(time.Millisecond),
		NodeID:         "node-1",
		GatewayVersion: config.KongVersion,
		ConfigHash:     strings.Repeat("ab", 16),
		Entities:       map[string]int{"workspaces": 1},
		ContentSHA256:  hex.EncodeToString(sum[:]),
		ContentSize:    int64(len(content)),
		Compression:    CompressionNone,
		Encryption:     Encryption{Scheme: EncryptionNone},
	}
	if cfg, err := config.Parse(content, "c.json"); err == nil {
		m.ConfigHash, _ = config.Hash(cfg)
		m.Entities = EntityCounts(cfg)
	}
	if mutate != nil {
		mutate(m)
	}
	data, err := assemble(m, content, key)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func sha256Array(b []byte) [32]byte { return sha256.Sum256(b) }
