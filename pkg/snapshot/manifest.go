package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

// FormatVersion is the snapshot format this package writes and reads.
const FormatVersion = 1

// Magic is the first line of every kongfb snapshot object.
const Magic = "KONGFB-SNAPSHOT 1\n"

// Compression of the payload.
type Compression string

const (
	CompressionNone Compression = "none"
	CompressionGzip Compression = "gzip"
	CompressionZstd Compression = "zstd"
)

// Encryption schemes.
const (
	EncryptionNone = "none"
	EncryptionAge  = "age"
)

// Manifest describes one snapshot. It is stored as one line of compact JSON
// (fields in this order) and is what the signature covers; it binds the
// payload through payload_sha256 and payload_size, and the plaintext
// through content_sha256, content_size and config_hash.
type Manifest struct {
	Format         int       `json:"format"`          // FormatVersion
	CreatedAt      time.Time `json:"created_at"`      // UTC, millisecond precision: when the config was captured
	NodeID         string    `json:"node_id"`         // the exporting node
	GatewayVersion string    `json:"gateway_version"` // version segment the object lives under
	Term           uint64    `json:"term"`            // election term of the writer (fencing); 0 = not elected (e.g. manual export)
	// ConfigHash is Kong's hybrid config_hash (config.Hash) of the config:
	// what a DP serving it reports as configuration_hash.
	ConfigHash string `json:"config_hash"`
	// Entities counts the rows per collection of the export document
	// (collections without rows are left out).
	Entities      map[string]int `json:"entities"`
	ContentSHA256 string         `json:"content_sha256"` // SHA-256 of the plaintext Kong export JSON
	ContentSize   int64          `json:"content_size"`   // its length in bytes
	Compression   Compression    `json:"compression"`
	Encryption    Encryption     `json:"encryption"`
	PayloadSHA256 string         `json:"payload_sha256"` // SHA-256 of the payload bytes as stored
	PayloadSize   int64          `json:"payload_size"`
	Signer        *Signer        `json:"signer"` // nil = unsigned
	// DerivedFrom is set on objects re-encrypted or decrypted from another
	// snapshot (Encrypt/Decrypt): the config and its capture time are the
	// source's, the payload and signer are new.
	DerivedFrom *Derivation `json:"derived_from,omitempty"`
}

// Encryption records how the payload is encrypted.
type Encryption struct {
	Scheme string `json:"scheme"` // "none" | "age"
	// Recipients are the key ids of the age recipients ("age-…"), or
	// ["scrypt"] for a passphrase. Informational (age recipients are
	// anonymous in the age header) but signed: it tells an operator which
	// key opens the object.
	Recipients []string `json:"recipients,omitempty"`
}

// Signer names the key that signed the manifest.
type Signer struct {
	KeyID     string `json:"key_id"`     // SignerKeyID(public key)
	PublicKey string `json:"public_key"` // PublicKeyString: lets a reader without pinned keys still check integrity
}

// Derivation records the object a re-encrypted/decrypted snapshot came from.
type Derivation struct {
	Operation     string     `json:"operation"` // "encrypt" | "decrypt"
	At            time.Time  `json:"at"`
	PayloadSHA256 string     `json:"payload_sha256"` // the source's
	Encryption    Encryption `json:"encryption"`     // the source's
	Signer        string     `json:"signer"`         // the source's signer key id, "" if it was unsigned
}

// HistoryKey is the object key of this snapshot under prefix.
func (m *Manifest) HistoryKey(prefix string) string {
	return HistoryKey(prefix, m.GatewayVersion, m.CreatedAt, m.ConfigHash, m.PayloadSHA256)
}

// Encrypted reports whether the payload is encrypted.
func (m *Manifest) Encrypted() bool { return m.Encryption.Scheme == EncryptionAge }

// marshalManifest gives the canonical manifest bytes: compact JSON of the
// struct (fields in declaration order, map keys sorted, times in RFC 3339
// UTC), without a trailing newline. The same Manifest always gives the
// same bytes.
func marshalManifest(m *Manifest) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("marshal manifest: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// SignedBytes returns exactly what a snapshot's signature covers: the first
// two lines of the object, Magic followed by the manifest JSON and "\n".
// The magic line separates this domain from any other use of the key.
func SignedBytes(manifestJSON []byte) []byte {
	out := make([]byte, 0, len(Magic)+len(manifestJSON)+1)
	out = append(out, Magic...)
	out = append(out, manifestJSON...)
	return append(out, '\n')
}

// seal is the third line of the object: either a SHA-256 of the signed
// bytes (unsigned objects: still detects a flipped bit in the manifest)
// or an ed25519 signature over them.
type seal struct {
	keyID string // "" for a sha256 seal
	sig   []byte // signature, or the 32-byte digest
}

func (s seal) line() string {
	if s.keyID == "" {
		return "sha256 " + hex.EncodeToString(s.sig) + "\n"
	}
	return "ed25519 " + s.keyID + " " + base64.StdEncoding.EncodeToString(s.sig) + "\n"
}

func parseSeal(line string) (seal, error) {
	f := strings.Split(line, " ")
	switch {
	case len(f) == 2 && f[0] == "sha256":
		d, err := hex.DecodeString(f[1])
		if err != nil || len(d) != sha256.Size || f[1] != strings.ToLower(f[1]) {
			return seal{}, fmt.Errorf("malformed sha256 seal")
		}
		return seal{sig: d}, nil
	case len(f) == 3 && f[0] == "ed25519":
		if !validKeyID(f[1], signKeyIDPrefix) {
			return seal{}, fmt.Errorf("malformed signer key id %q", f[1])
		}
		sig, err := base64.StdEncoding.Strict().DecodeString(f[2])
		if err != nil || len(sig) != ed25519.SignatureSize {
			return seal{}, fmt.Errorf("malformed ed25519 signature")
		}
		return seal{keyID: f[1], sig: sig}, nil
	}
	return seal{}, fmt.Errorf("unknown seal (want \"sha256 <hex>\" or \"ed25519 <key id> <base64>\")")
}

func validKeyID(s, prefix string) bool {
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	h := s[len(prefix):]
	return len(h) == 16 && isLowerHex(h)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// check validates field syntax after decoding, so every later step can
// rely on well-formed values.
func (m *Manifest) check() error {
	if m.Format != FormatVersion {
		return fmt.Errorf("format %d (this kongfb reads %d)", m.Format, FormatVersion)
	}
	if m.CreatedAt.IsZero() || m.CreatedAt.Year() < 1000 || m.CreatedAt.Year() > 9999 {
		return fmt.Errorf("created_at %s out of range", m.CreatedAt)
	}
	if err := checkVersionSegment(m.GatewayVersion); err != nil {
		return err
	}
	if len(m.ConfigHash) != 32 || !isLowerHex(m.ConfigHash) {
		return fmt.Errorf("config_hash %q is not 32 lowercase hex digits", m.ConfigHash)
	}
	for name, sum := range map[string]string{"content_sha256": m.ContentSHA256, "payload_sha256": m.PayloadSHA256} {
		if len(sum) != 64 || !isLowerHex(sum) {
			return fmt.Errorf("%s %q is not 64 lowercase hex digits", name, sum)
		}
	}
	if m.ContentSize < 0 || m.PayloadSize < 0 {
		return fmt.Errorf("negative size")
	}
	for coll, n := range m.Entities {
		if n < 0 {
			return fmt.Errorf("entities.%s is negative", coll)
		}
	}
	switch m.Compression {
	case CompressionNone, CompressionGzip, CompressionZstd:
	default:
		return fmt.Errorf("compression %q (known: none, gzip, zstd)", m.Compression)
	}
	switch m.Encryption.Scheme {
	case EncryptionNone:
		if len(m.Encryption.Recipients) != 0 {
			return fmt.Errorf("encryption none with recipients")
		}
	case EncryptionAge:
		if len(m.Encryption.Recipients) == 0 {
			return fmt.Errorf("age encryption without recipients")
		}
	default:
		return fmt.Errorf("encryption scheme %q (known: none, age)", m.Encryption.Scheme)
	}
	if m.Signer != nil {
		if !validKeyID(m.Signer.KeyID, signKeyIDPrefix) {
			return fmt.Errorf("signer key id %q malformed", m.Signer.KeyID)
		}
		pub, err := ParsePublicKey(m.Signer.PublicKey)
		if err != nil {
			return fmt.Errorf("signer public key: %w", err)
		}
		if SignerKeyID(pub) != m.Signer.KeyID {
			return fmt.Errorf("signer key id %s is not the id of its public key (%s)", m.Signer.KeyID, SignerKeyID(pub))
		}
	}
	return nil
}

// checkVersionSegment refuses version strings that would not be one key
// segment (they would land the object in another directory).
func checkVersionSegment(v string) error {
	if v == "" {
		return fmt.Errorf("gateway version is empty")
	}
	if strings.ContainsAny(v, "/\\\x00\n") || v == "." || v == ".." {
		return fmt.Errorf("gateway version %q is not a single key segment", v)
	}
	if _, ok := parseVersion(v); !ok {
		return fmt.Errorf("gateway version %q is not MAJOR.MINOR[.PATCH[.BUILD]]", v)
	}
	return nil
}

// EntityCounts counts the rows per collection as they appear in cfg's export
// document (config.MarshalJSON): nil rows are not exported, a config
// without workspaces exports Kong's default workspace, and collections
// without rows are absent.
func EntityCounts(cfg *config.Config) map[string]int {
	out := map[string]int{}
	add := func(name string, n int) {
		if n > 0 {
			out[name] = n
		}
	}
	ws := countNonNil(cfg.Workspaces)
	if ws == 0 {
		ws = 1
	}
	add(config.CollWorkspaces, ws)
	add(config.CollConsumers, countNonNil(cfg.Consumers))
	add(config.CollCertificates, countNonNil(cfg.Certificates))
	add(config.CollCACertificates, countNonNil(cfg.CACertificates))
	add(config.CollServices, countNonNil(cfg.Services))
	add(config.CollRoutes, countNonNil(cfg.Routes))
	add(config.CollSNIs, countNonNil(cfg.SNIs))
	add(config.CollUpstreams, countNonNil(cfg.Upstreams))
	add(config.CollTargets, countNonNil(cfg.Targets))
	add(config.CollPlugins, countNonNil(cfg.Plugins))
	for name, rows := range cfg.Extra {
		if _, typed := out[name]; typed || reservedCollection(name) {
			continue
		}
		add(name, len(rows))
	}
	return out
}

func reservedCollection(name string) bool {
	switch name {
	case "_format_version", "_transform",
		config.CollWorkspaces, config.CollConsumers, config.CollCertificates, config.CollCACertificates,
		config.CollServices, config.CollRoutes, config.CollSNIs, config.CollUpstreams, config.CollTargets,
		config.CollPlugins:
		return true
	}
	return false
}

func countNonNil[T any](rows []*T) int {
	n := 0
	for _, r := range rows {
		if r != nil {
			n++
		}
	}
	return n
}
