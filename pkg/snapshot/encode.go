package snapshot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"
	"github.com/kongfb/kongfb/pkg/config"
)

// Options control Encode.
type Options struct {
	// Compression of the payload; "" = zstd.
	Compression Compression
	// Recipients are age public keys ("age1…"): exporters hold only these,
	// never the identities that decrypt.
	Recipients []string
	// Passphrase encrypts with age's scrypt recipient instead. age allows a
	// passphrase only as the sole recipient, so it excludes Recipients.
	Passphrase string
	// ScryptWorkFactor is log2 of scrypt's N for Passphrase; 0 = age's
	// default (18, about a second). Readers refuse factors above
	// VerifyOptions.MaxScryptWorkFactor.
	ScryptWorkFactor int
	// SigningKey signs the manifest; nil = unsigned.
	SigningKey *SigningKey
	// NodeID of the exporting node, recorded in the manifest.
	NodeID string
	// Term is the election term under which this node exports (0 = none).
	Term uint64
	// Version is the gateway version segment; "" = config.KongVersion.
	Version string
	// CreatedAt is the capture time; zero = now. Stored in UTC, truncated
	// to milliseconds (the precision of history keys).
	CreatedAt time.Time
}

// Encrypted reports whether objects encoded with o are encrypted.
func (o Options) Encrypted() bool { return len(o.Recipients) > 0 || o.Passphrase != "" }

// KongObjectAllowed says whether the Kong-compatible plaintext object
// `<prefix>/<version>/config.json` may be written next to the history:
// always when snapshots are not encrypted, and only on the operator's
// explicit request (--kong-compatible-plaintext) when they are, because it
// would publish in plaintext what the snapshots encrypt.
func (o Options) KongObjectAllowed(explicitPlaintext bool) bool {
	return !o.Encrypted() || explicitPlaintext
}

// DefaultScryptWorkFactor is age's default work factor for passphrases.
const DefaultScryptWorkFactor = 18

// Encoded is the result of Encode.
type Encoded struct {
	Manifest *Manifest
	// Data is the complete snapshot object: header lines and payload.
	Data []byte
	// KongJSON is the plaintext Kong export document (the body of Kong's
	// config.json). Write it only where Options.KongObjectAllowed says so.
	KongJSON []byte
}

// Key is the history key of the object under prefix.
func (e *Encoded) Key(prefix string) string { return e.Manifest.HistoryKey(prefix) }

// Encode validates cfg and writes it as a snapshot object:
//
//	KONGFB-SNAPSHOT 1\n
//	<manifest: one line of JSON>\n
//	sha256 <hex>\n | ed25519 <key id> <base64 signature>\n
//	<payload: Kong export JSON, compressed, then age-encrypted>
//
// An invalid config and an empty one (no entities besides workspaces) are
// refused: a snapshot is something a node may serve.
func Encode(cfg *config.Config, opts Options) (*Encoded, error) {
	if cfg == nil {
		return nil, errors.New("encode snapshot: nil config")
	}
	comp, recips, recipIDs, ts, version, err := opts.resolve()
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("encode snapshot: %w: %w", ErrInvalidConfig, err)
	}
	hash, _ := config.Hash(cfg)
	if hash == config.EmptyHash {
		return nil, fmt.Errorf("encode snapshot: %w: no entities besides workspaces; a snapshot with no entities is never served", ErrEmptyConfig)
	}
	content, err := cfg.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: export config: %w", err)
	}
	compressed, err := compress(content, comp)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	payload := compressed
	enc := Encryption{Scheme: EncryptionNone}
	if len(recips) > 0 {
		if payload, err = encrypt(compressed, recips); err != nil {
			return nil, fmt.Errorf("encode snapshot: %w", err)
		}
		enc = Encryption{Scheme: EncryptionAge, Recipients: recipIDs}
	}
	contentSum := sha256.Sum256(content)
	m := &Manifest{
		Format:         FormatVersion,
		CreatedAt:      ts,
		NodeID:         opts.NodeID,
		GatewayVersion: version,
		Term:           opts.Term,
		ConfigHash:     hash,
		Entities:       EntityCounts(cfg),
		ContentSHA256:  hex.EncodeToString(contentSum[:]),
		ContentSize:    int64(len(content)),
		Compression:    comp,
		Encryption:     enc,
	}
	data, err := assemble(m, payload, opts.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot: %w", err)
	}
	return &Encoded{Manifest: m, Data: data, KongJSON: content}, nil
}

// resolve checks the options and fills defaults.
func (o Options) resolve() (comp Compression, recips []age.Recipient, recipIDs []string, ts time.Time, version string, err error) {
	comp = o.Compression
	if comp == "" {
		comp = CompressionZstd
	}
	switch comp {
	case CompressionNone, CompressionGzip, CompressionZstd:
	default:
		return "", nil, nil, time.Time{}, "", fmt.Errorf("unknown compression %q (known: none, gzip, zstd)", comp)
	}
	if o.Passphrase != "" && len(o.Recipients) > 0 {
		return "", nil, nil, time.Time{}, "", errors.New("a passphrase cannot be combined with age recipients (age allows a passphrase only as the sole recipient)")
	}
	if len(o.Recipients) > 0 {
		recips, recipIDs, err = ParseRecipients(o.Recipients)
		if err != nil {
			return "", nil, nil, time.Time{}, "", err
		}
	}
	if o.Passphrase != "" {
		r, err := age.NewScryptRecipient(o.Passphrase)
		if err != nil {
			return "", nil, nil, time.Time{}, "", fmt.Errorf("passphrase: %w", err)
		}
		wf := o.ScryptWorkFactor
		if wf == 0 {
			wf = DefaultScryptWorkFactor
		}
		if wf < 1 || wf > 30 {
			return "", nil, nil, time.Time{}, "", fmt.Errorf("scrypt work factor %d out of range 1-30", wf)
		}
		r.SetWorkFactor(wf)
		recips, recipIDs = []age.Recipient{r}, []string{ScryptKeyID}
	}
	ts = o.CreatedAt
	if ts.IsZero() {
		ts = time.Now()
	}
	ts = ts.UTC().Truncate(time.Millisecond)
	if ts.Year() < 1000 || ts.Year() > 9999 {
		return "", nil, nil, time.Time{}, "", fmt.Errorf("created_at %s out of range (years 1000-9999)", ts)
	}
	version = o.Version
	if version == "" {
		version = config.KongVersion
	}
	if err := checkVersionSegment(version); err != nil {
		return "", nil, nil, time.Time{}, "", err
	}
	return comp, recips, recipIDs, ts, version, nil
}

// assemble fills the payload fields and the signer of m, then writes the
// object: magic, manifest line, seal line, payload.
func assemble(m *Manifest, payload []byte, key *SigningKey) ([]byte, error) {
	sum := sha256.Sum256(payload)
	m.PayloadSHA256 = hex.EncodeToString(sum[:])
	m.PayloadSize = int64(len(payload))
	m.Signer = nil
	if key != nil {
		m.Signer = &Signer{KeyID: key.KeyID(), PublicKey: PublicKeyString(key.Public())}
	}
	mj, err := marshalManifest(m)
	if err != nil {
		return nil, err
	}
	if len(mj) > maxManifestSize {
		return nil, fmt.Errorf("manifest is %d bytes, over the %d-byte limit", len(mj), maxManifestSize)
	}
	signed := SignedBytes(mj)
	var s seal
	if key != nil {
		s = seal{keyID: key.KeyID(), sig: key.sign(signed)}
	} else {
		d := sha256.Sum256(signed)
		s = seal{sig: d[:]}
	}
	line := s.line()
	out := make([]byte, 0, len(signed)+len(line)+len(payload))
	out = append(out, signed...)
	out = append(out, line...)
	return append(out, payload...), nil
}
