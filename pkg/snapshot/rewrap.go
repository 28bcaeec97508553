package snapshot

import (
	"fmt"
	"time"
)

// RewrapOptions control Encrypt and Decrypt.
type RewrapOptions struct {
	// Verify opens the source: identities or passphrase when it is
	// encrypted, pinned signer keys, size and version policy. The source is
	// fully verified (checksums, config) before anything is written.
	Verify VerifyOptions
	// Recipients / Passphrase / ScryptWorkFactor of the new object (Encrypt only).
	Recipients       []string
	Passphrase       string
	ScryptWorkFactor int
	// SigningKey re-signs the new manifest. nil leaves the new object
	// unsigned: the source's signature covered the old manifest and cannot
	// be carried over, and readers that pin signer keys will refuse it.
	SigningKey *SigningKey
	// Now is the time recorded in derived_from.at; zero = now.
	Now time.Time
}

// Encrypt re-encrypts an existing kongfb snapshot to new age recipients (or
// a passphrase): the payload is decrypted if needed and encrypted again,
// the compressed config inside is unchanged. The new manifest keeps the
// source's capture fields (created_at, node_id, term, config_hash,
// entities, content digest) and records the operation in derived_from,
// including who had signed the source; it is re-signed with
// opts.SigningKey or left unsigned. Its history key differs from the
// source's only in the payload digest, so it sorts next to its source
// rather than as a newer config.
func Encrypt(name string, data []byte, opts RewrapOptions) (*Encoded, error) {
	if len(opts.Recipients) == 0 && opts.Passphrase == "" {
		return nil, fmt.Errorf("encrypt %s: no recipients or passphrase given", name)
	}
	return rewrap(name, data, opts, "encrypt")
}

// Decrypt writes an existing encrypted kongfb snapshot as an unencrypted
// one, recording the operation like Encrypt does.
func Decrypt(name string, data []byte, opts RewrapOptions) (*Encoded, error) {
	if len(opts.Recipients) > 0 || opts.Passphrase != "" {
		return nil, fmt.Errorf("decrypt %s: recipients or passphrase given; use Encrypt to re-encrypt", name)
	}
	return rewrap(name, data, opts, "decrypt")
}

func rewrap(name string, data []byte, opts RewrapOptions, op string) (*Encoded, error) {
	src, err := decode(name, data, opts.Verify)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if src.snap.Kind != KindSnapshot {
		return nil, fmt.Errorf("%s %s: a plain Kong config.json, not a kongfb snapshot; make a snapshot of it with Encode", op, name)
	}
	old := src.snap.Manifest
	if op == "decrypt" && !old.Encrypted() {
		return nil, fmt.Errorf("decrypt %s: snapshot is not encrypted", name)
	}
	o := Options{Recipients: opts.Recipients, Passphrase: opts.Passphrase, ScryptWorkFactor: opts.ScryptWorkFactor, Compression: old.Compression}
	_, recips, recipIDs, _, _, err := o.resolve()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, name, err)
	}
	payload := src.compressed
	enc := Encryption{Scheme: EncryptionNone}
	if len(recips) > 0 {
		if payload, err = encrypt(src.compressed, recips); err != nil {
			return nil, fmt.Errorf("%s %s: %w", op, name, err)
		}
		enc = Encryption{Scheme: EncryptionAge, Recipients: recipIDs}
	}
	at := opts.Now
	if at.IsZero() {
		at = time.Now()
	}
	srcSigner := ""
	if old.Signer != nil {
		srcSigner = old.Signer.KeyID
	}
	m := *old
	m.Entities = cloneCounts(old.Entities)
	m.Encryption = enc
	m.DerivedFrom = &Derivation{
		Operation:     op,
		At:            at.UTC().Truncate(time.Millisecond),
		PayloadSHA256: old.PayloadSHA256,
		Encryption:    old.Encryption,
		Signer:        srcSigner,
	}
	out, err := assemble(&m, payload, opts.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, name, err)
	}
	return &Encoded{Manifest: &m, Data: out, KongJSON: src.content}, nil
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
