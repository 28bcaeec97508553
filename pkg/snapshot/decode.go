package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"filippo.io/age"
	"github.com/kongfb/kongfb/pkg/config"
)

// Limits.
const (
	// DefaultMaxSize bounds the stored object and its uncompressed config
	// JSON when VerifyOptions.MaxSize is 0. Kong's own sync refuses frames
	// over 16 MiB compressed; 256 MiB of JSON is several hundred thousand
	// entities.
	DefaultMaxSize = 256 << 20
	// DefaultMaxScryptWorkFactor bounds the work a passphrase-encrypted
	// object can demand (2^20 ≈ 4 s and 1 GiB for scrypt) when
	// VerifyOptions.MaxScryptWorkFactor is 0.
	DefaultMaxScryptWorkFactor = 20
	// MaxHeaderSize is the most bytes the header (magic, manifest and seal
	// lines) can take: ReadHeader needs at most this prefix of an object.
	MaxHeaderSize   = len(Magic) + maxManifestSize + 1 + maxSealLine + 1
	maxManifestSize = 1 << 20
	maxSealLine     = 256
)

// VerifyOptions control Decode.
type VerifyOptions struct {
	// TrustedSignerKeys pins the keys allowed to sign. When set, an
	// unsigned snapshot, a plain Kong config.json and a snapshot signed by
	// any other key are refused. When empty, signatures are still checked
	// against the public key the manifest names, which detects corruption
	// but proves nothing about who wrote the object.
	TrustedSignerKeys []ed25519.PublicKey
	// Identities decrypt age-encrypted payloads (X25519 identities from an
	// identity file).
	Identities []age.Identity
	// Passphrase decrypts payloads encrypted with a passphrase.
	Passphrase string
	// MaxScryptWorkFactor caps the passphrase work factor accepted; 0 =
	// DefaultMaxScryptWorkFactor.
	MaxScryptWorkFactor int
	// MaxSize bounds the stored object and the uncompressed config JSON;
	// 0 = DefaultMaxSize.
	MaxSize int64
	// VersionPolicy decides which gateway versions are accepted. The zero
	// value accepts the same major.minor as config.KongVersion.
	VersionPolicy VersionPolicy
}

func (o VerifyOptions) maxSize() int64 {
	if o.MaxSize > 0 {
		return o.MaxSize
	}
	return DefaultMaxSize
}

func (o VerifyOptions) identities() ([]age.Identity, error) {
	ids := slices.Clone(o.Identities)
	if o.Passphrase != "" {
		s, err := age.NewScryptIdentity(o.Passphrase)
		if err != nil {
			return nil, err
		}
		wf := o.MaxScryptWorkFactor
		if wf == 0 {
			wf = DefaultMaxScryptWorkFactor
		}
		if wf < 1 || wf > 30 {
			return nil, fmt.Errorf("max scrypt work factor %d out of range 1-30", wf)
		}
		s.SetMaxWorkFactor(wf)
		ids = append(ids, s)
	}
	return ids, nil
}

// Snapshot is a verified, decoded object.
type Snapshot struct {
	Name string // the object key or file name it was read from
	Kind Kind
	// Manifest of a kongfb snapshot. For a plain Kong config.json it is
	// synthesised (Format 0, no CreatedAt/NodeID/signer; GatewayVersion
	// from the key when the key has one).
	Manifest *Manifest
	Config   *config.Config
	// Signed: the manifest carries a signature that verifies.
	Signed bool
	// Trusted: that signature is by one of VerifyOptions.TrustedSignerKeys.
	Trusted bool
}

// Header is a verified snapshot header (see ReadHeader).
type Header struct {
	Manifest *Manifest
	Signed   bool
	Trusted  bool
	// Size is the header's length: the payload starts at this offset.
	Size int
}

// ReadHeader verifies and returns the header of a kongfb snapshot from the
// first bytes of the object (MaxHeaderSize bytes always suffice, a few KiB
// usually do), so listing tools can show manifests with ranged reads. The
// manifest's seal or signature, the signer policy, the key/manifest
// cross-check and the version policy are applied; the payload is not read.
func ReadHeader(name string, data []byte, opts VerifyOptions) (*Header, error) {
	if !bytes.HasPrefix(data, []byte(Magic)) {
		if len(data) < len(Magic) && bytes.HasPrefix([]byte(Magic), data) {
			return nil, newErr(name, ErrTruncated, "object is %d bytes, shorter than the header", len(data))
		}
		return nil, newErr(name, ErrFormat, "no %q header", strings.TrimSpace(Magic))
	}
	mj, s, off, err := parseHeader(name, data)
	if err != nil {
		return nil, err
	}
	m, signed, trusted, err := verifyHeader(name, mj, s, opts)
	if err != nil {
		return nil, err
	}
	if err := checkKey(name, m); err != nil {
		return nil, err
	}
	if err := opts.VersionPolicy.Check(m.GatewayVersion); err != nil {
		return nil, wrapErr(name, ErrVersion, err, "")
	}
	return &Header{Manifest: m, Signed: signed, Trusted: trusted, Size: off}, nil
}

// Decode reads either object format — a kongfb snapshot or Kong EE's plain
// config.json — verifies it and returns the config. name is the object key
// (or file name): it appears in every error, and when it is a history key
// or "<version>/config.json" the version and history fields it encodes are
// checked against the object. Every error is an *Error whose Reason says
// why the object was refused.
func Decode(name string, data []byte, opts VerifyOptions) (*Snapshot, error) {
	r, err := decode(name, data, opts)
	if err != nil {
		return nil, err
	}
	return r.snap, nil
}

// decoded carries the intermediate products Encrypt/Decrypt reuse.
type decoded struct {
	snap       *Snapshot
	compressed []byte // payload after decryption
	content    []byte // Kong export JSON
}

func decode(name string, data []byte, opts VerifyOptions) (*decoded, error) {
	limit := opts.maxSize()
	if int64(len(data)) > limit {
		return nil, newErr(name, ErrTooLarge, "object is %d bytes, limit %d", len(data), limit)
	}
	switch {
	case len(data) == 0:
		return nil, newErr(name, ErrTruncated, "object is empty (0 bytes)")
	case bytes.HasPrefix(data, []byte(Magic)):
		return decodeSnapshot(name, data, opts)
	case len(data) < len(Magic) && bytes.HasPrefix([]byte(Magic), data):
		return nil, newErr(name, ErrTruncated, "object is %d bytes, shorter than the snapshot header", len(data))
	case looksLikeJSONObject(data):
		return decodeKong(name, data, opts)
	}
	return nil, newErr(name, ErrFormat, "neither a %q header nor a JSON object", strings.TrimSpace(Magic))
}

func looksLikeJSONObject(data []byte) bool {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	data = bytes.TrimLeft(data, " \t\r\n")
	return len(data) > 0 && data[0] == '{'
}

// parseHeader splits the magic, manifest and seal lines off data.
func parseHeader(name string, data []byte) (manifestJSON []byte, s seal, payloadOff int, err error) {
	rest := data[len(Magic):]
	i := bytes.IndexByte(rest[:min(len(rest), maxManifestSize+1)], '\n')
	if i < 0 {
		if len(rest) <= maxManifestSize {
			return nil, seal{}, 0, newErr(name, ErrTruncated, "manifest line is not terminated (object is %d bytes)", len(data))
		}
		return nil, seal{}, 0, newErr(name, ErrFormat, "manifest line is longer than %d bytes", maxManifestSize)
	}
	manifestJSON = rest[:i]
	rest = rest[i+1:]
	j := bytes.IndexByte(rest[:min(len(rest), maxSealLine+1)], '\n')
	if j < 0 {
		if len(rest) <= maxSealLine {
			return nil, seal{}, 0, newErr(name, ErrTruncated, "seal line is not terminated (object is %d bytes)", len(data))
		}
		return nil, seal{}, 0, newErr(name, ErrFormat, "seal line is longer than %d bytes", maxSealLine)
	}
	s, err = parseSeal(string(rest[:j]))
	if err != nil {
		return nil, seal{}, 0, wrapErr(name, ErrFormat, err, "seal line")
	}
	return manifestJSON, s, len(Magic) + i + 1 + j + 1, nil
}

// verifyHeader checks the seal against the manifest bytes and applies the
// signer policy, then parses and checks the manifest.
func verifyHeader(name string, mj []byte, s seal, opts VerifyOptions) (m *Manifest, signed, trusted bool, err error) {
	msg := SignedBytes(mj)
	pins := opts.TrustedSignerKeys
	var pinned ed25519.PublicKey
	switch {
	case s.keyID == "":
		if d := sha256.Sum256(msg); !bytes.Equal(d[:], s.sig) {
			return nil, false, false, newErr(name, ErrChecksum, "manifest sha256 %s, seal says %s (manifest or seal line modified)", hex.EncodeToString(d[:]), hex.EncodeToString(s.sig))
		}
		if len(pins) > 0 {
			return nil, false, false, newErr(name, ErrUnsigned, "trusted signer keys are pinned (%s) but the snapshot carries no signature", keyIDList(pins))
		}
	case len(pins) > 0:
		for _, k := range pins {
			if SignerKeyID(k) == s.keyID {
				pinned = k
				break
			}
		}
		if pinned == nil {
			return nil, false, false, newErr(name, ErrUntrustedSigner, "signed by %s; trusted: %s", s.keyID, keyIDList(pins))
		}
		if !ed25519.Verify(pinned, msg, s.sig) {
			return nil, false, false, newErr(name, ErrBadSignature, "signature by %s does not verify (manifest modified after signing?)", s.keyID)
		}
		signed, trusted = true, true
	}

	m = &Manifest{}
	if err := json.Unmarshal(mj, m); err != nil {
		return nil, false, false, wrapErr(name, ErrFormat, err, "malformed manifest")
	}
	if m.Format != FormatVersion {
		return nil, false, false, newErr(name, ErrUnsupported, "manifest format %d (this kongfb reads %d)", m.Format, FormatVersion)
	}
	switch {
	case s.keyID == "" && m.Signer != nil:
		return nil, false, false, newErr(name, ErrBadSignature, "manifest names signer %s but the signature was replaced by a checksum", m.Signer.KeyID)
	case s.keyID != "" && m.Signer == nil:
		return nil, false, false, newErr(name, ErrBadSignature, "signature by %s but the manifest names no signer", s.keyID)
	case s.keyID != "" && m.Signer.KeyID != s.keyID:
		return nil, false, false, newErr(name, ErrBadSignature, "signature by %s but the manifest names signer %s", s.keyID, m.Signer.KeyID)
	}
	if s.keyID != "" && pinned == nil {
		// No pins: check integrity against the key the manifest names,
		// before anything else in the (possibly corrupted) manifest.
		pub, err := ParsePublicKey(m.Signer.PublicKey)
		if err != nil {
			return nil, false, false, wrapErr(name, ErrBadSignature, err, "manifest signer public key")
		}
		if SignerKeyID(pub) != s.keyID || !ed25519.Verify(pub, msg, s.sig) {
			return nil, false, false, newErr(name, ErrBadSignature, "signature by %s does not verify (manifest modified after signing?)", s.keyID)
		}
		signed = true
	}
	if err := m.check(); err != nil {
		return nil, false, false, wrapErr(name, ErrFormat, err, "malformed manifest")
	}
	if pinned != nil && m.Signer.PublicKey != PublicKeyString(pinned) {
		return nil, false, false, newErr(name, ErrUntrustedSigner, "manifest names public key %s for %s, which is not the pinned key", m.Signer.PublicKey, s.keyID)
	}
	return m, signed, trusted, nil
}

func keyIDList(keys []ed25519.PublicKey) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = SignerKeyID(k)
	}
	return strings.Join(ids, ", ")
}

// checkKey compares what a history key says with the manifest, so an old
// signed snapshot copied under a newer timestamp (a rollback) or a renamed
// object is refused.
func checkKey(name string, m *Manifest) error {
	slashed := strings.ReplaceAll(name, "\\", "/")
	base := path.Base(slashed)
	mt := historyNameRe.FindStringSubmatch(base)
	if mt == nil {
		return nil
	}
	var diffs []string
	if want := m.CreatedAt.UTC().Format(historyTimeLayout); mt[1] != want {
		diffs = append(diffs, fmt.Sprintf("time %s vs created_at %s", mt[1], want))
	}
	if mt[2] != short(m.ConfigHash, 12) {
		diffs = append(diffs, fmt.Sprintf("hash %s vs config_hash %s", mt[2], m.ConfigHash))
	}
	if mt[3] != short(m.PayloadSHA256, 8) {
		diffs = append(diffs, fmt.Sprintf("payload id %s vs payload_sha256 %s", mt[3], m.PayloadSHA256))
	}
	if info, err := ParseHistoryKey(slashed); err == nil && info.Version != m.GatewayVersion {
		diffs = append(diffs, fmt.Sprintf("version directory %s vs gateway_version %s", info.Version, m.GatewayVersion))
	}
	if len(diffs) > 0 {
		return newErr(name, ErrKeyMismatch, "%s (renamed, or an old snapshot replayed under a newer key?)", strings.Join(diffs, "; "))
	}
	return nil
}

func decodeSnapshot(name string, data []byte, opts VerifyOptions) (*decoded, error) {
	mj, s, off, err := parseHeader(name, data)
	if err != nil {
		return nil, err
	}
	m, signed, trusted, err := verifyHeader(name, mj, s, opts)
	if err != nil {
		return nil, err
	}
	if err := checkKey(name, m); err != nil {
		return nil, err
	}
	if err := opts.VersionPolicy.Check(m.GatewayVersion); err != nil {
		return nil, wrapErr(name, ErrVersion, err, "")
	}

	payload := data[off:]
	switch n := int64(len(payload)); {
	case n < m.PayloadSize:
		return nil, newErr(name, ErrTruncated, "payload is %d bytes, manifest says %d", n, m.PayloadSize)
	case n > m.PayloadSize:
		return nil, newErr(name, ErrChecksum, "payload is %d bytes, manifest says %d (data appended?)", n, m.PayloadSize)
	}
	if d := sha256.Sum256(payload); hex.EncodeToString(d[:]) != m.PayloadSHA256 {
		return nil, newErr(name, ErrChecksum, "payload sha256 %s, manifest says %s", hex.EncodeToString(d[:]), m.PayloadSHA256)
	}
	limit := opts.maxSize()
	if m.ContentSize > limit {
		return nil, newErr(name, ErrTooLarge, "config JSON is %d bytes uncompressed, limit %d", m.ContentSize, limit)
	}

	compressed := payload
	if m.Encrypted() {
		ids, err := opts.identities()
		if err != nil {
			return nil, wrapErr(name, ErrDecrypt, err, "passphrase")
		}
		if len(ids) == 0 {
			return nil, newErr(name, ErrDecrypt, "encrypted with age to %s; no age identity or passphrase was given", strings.Join(m.Encryption.Recipients, ", "))
		}
		compressed, err = decrypt(payload, ids, int64(len(payload)))
		if err != nil {
			var nm *age.NoIdentityMatchError
			if errors.As(err, &nm) {
				return nil, newErr(name, ErrDecrypt, "wrong key: encrypted to %s; none of the given identities (%s) matches",
					strings.Join(m.Encryption.Recipients, ", "), identityList(ids))
			}
			return nil, wrapErr(name, ErrDecrypt, err, "age")
		}
	}
	content, err := decompress(compressed, m.Compression, m.ContentSize)
	if err != nil {
		if errors.Is(err, errContentSize) {
			return nil, wrapErr(name, ErrChecksum, err, "")
		}
		return nil, wrapErr(name, ErrFormat, err, "payload does not decompress")
	}
	if d := sha256.Sum256(content); hex.EncodeToString(d[:]) != m.ContentSHA256 {
		return nil, newErr(name, ErrChecksum, "config JSON sha256 %s, manifest says %s", hex.EncodeToString(d[:]), m.ContentSHA256)
	}
	cfg, hash, err := parseConfig(name, content, name+"#config.json")
	if err != nil {
		return nil, err
	}
	if hash != m.ConfigHash {
		return nil, newErr(name, ErrChecksum, "config hashes to %s, manifest config_hash says %s", hash, m.ConfigHash)
	}
	if counts := EntityCounts(cfg); !maps.Equal(counts, m.Entities) {
		return nil, newErr(name, ErrChecksum, "entity counts %s, manifest says %s", countsText(counts), countsText(m.Entities))
	}
	return &decoded{
		snap:       &Snapshot{Name: name, Kind: KindSnapshot, Manifest: m, Config: cfg, Signed: signed, Trusted: trusted},
		compressed: compressed,
		content:    content,
	}, nil
}

func identityList(ids []age.Identity) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = IdentityKeyID(id)
	}
	return strings.Join(out, ", ")
}

func countsText(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// parseConfig parses and validates the Kong export JSON and refuses an
// empty config. parseName is what config.Parse puts in its messages.
func parseConfig(name string, content []byte, parseName string) (*config.Config, string, error) {
	cfg, err := config.Parse(content, parseName)
	if err != nil {
		var se *config.SyntaxError
		if errors.As(err, &se) && jsonTruncated(content) {
			return nil, "", wrapErr(name, ErrTruncated, err, "the JSON document ends early")
		}
		return nil, "", wrapErr(name, ErrInvalidConfig, err, "")
	}
	hash, _ := config.Hash(cfg)
	if hash == config.EmptyHash {
		return nil, "", newErr(name, ErrEmptyConfig, "no entities besides workspaces; a snapshot with no entities is never served")
	}
	return cfg, hash, nil
}

// jsonTruncated reports whether data is a JSON prefix cut short (called
// only after a syntax error, so the scan stops early).
func jsonTruncated(data []byte) bool {
	var v struct{}
	err := json.Unmarshal(data, &v)
	var se *json.SyntaxError
	// encoding/json's message for input that ends inside a value.
	return errors.As(err, &se) && se.Error() == "unexpected end of JSON input"
}

// decodeKong reads Kong EE's plain config.json.
func decodeKong(name string, data []byte, opts VerifyOptions) (*decoded, error) {
	if len(opts.TrustedSignerKeys) > 0 {
		return nil, newErr(name, ErrUnsigned, "a plain Kong config.json carries no signature and trusted signer keys are pinned (%s)", keyIDList(opts.TrustedSignerKeys))
	}
	ver := kongObjectVersion(name)
	if ver != "" {
		if err := opts.VersionPolicy.Check(ver); err != nil {
			return nil, wrapErr(name, ErrVersion, err, "")
		}
	}
	parseName := name
	if !strings.HasSuffix(strings.ToLower(name), ".json") {
		parseName = name + "#config.json"
	}
	cfg, hash, err := parseConfig(name, data, parseName)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	m := &Manifest{
		GatewayVersion: ver,
		ConfigHash:     hash,
		Entities:       EntityCounts(cfg),
		ContentSHA256:  hex.EncodeToString(sum[:]),
		ContentSize:    int64(len(data)),
		Compression:    CompressionNone,
		Encryption:     Encryption{Scheme: EncryptionNone},
		PayloadSHA256:  hex.EncodeToString(sum[:]),
		PayloadSize:    int64(len(data)),
	}
	return &decoded{
		snap:    &Snapshot{Name: name, Kind: KindKong, Manifest: m, Config: cfg},
		content: data,
	}, nil
}

// kongObjectVersion returns the version segment of ".../<version>/config.json",
// or "" when name has no such segment (e.g. a local file).
func kongObjectVersion(name string) string {
	slashed := strings.ReplaceAll(name, "\\", "/")
	dir, base := path.Split(slashed)
	if base != KongObjectName {
		return ""
	}
	v := path.Base(strings.TrimSuffix(dir, "/"))
	if _, ok := parseVersion(v); !ok {
		return ""
	}
	return v
}
