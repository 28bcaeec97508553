package snapshotops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// RewrapResult says what Rewrap wrote.
type RewrapResult struct {
	Operation  string    `json:"operation"` // encrypt | decrypt
	Source     string    `json:"source"`
	Key        string    `json:"key,omitempty"`  // the new storage object
	File       string    `json:"file,omitempty"` // or the new file
	CreatedAt  time.Time `json:"created_at"`
	ConfigHash string    `json:"config_hash"`
	Encrypted  bool      `json:"encrypted"`
	Recipients []string  `json:"recipients,omitempty"`
	Signer     string    `json:"signer,omitempty"`
	Size       int       `json:"size"`
}

// Rewrap re-encrypts (op "encrypt") or decrypts (op "decrypt") the
// snapshot src with snapshot.Encrypt/Decrypt, which verify the source
// fully first. The result is a new object — never a change in place: the
// file out when given (atomically, never replacing a file unless force),
// else a new history object in st under the key its manifest gives
// (created with If-None-Match). Its created_at is the source's, so it sorts
// next to its source.
func Rewrap(ctx context.Context, st storage.Store, src Source, op string, opts snapshot.RewrapOptions, out string, force bool) (*RewrapResult, error) {
	name, _, data, err := src.Read(ctx, st, opts.Verify.VersionPolicy)
	if err != nil {
		return nil, err
	}
	var enc *snapshot.Encoded
	switch op {
	case "encrypt":
		enc, err = snapshot.Encrypt(name, data, opts)
	case "decrypt":
		enc, err = snapshot.Decrypt(name, data, opts)
	default:
		return nil, fmt.Errorf("unknown operation %q", op)
	}
	if err != nil {
		return nil, err
	}
	m := enc.Manifest
	res := &RewrapResult{Operation: op, Source: name, CreatedAt: m.CreatedAt, ConfigHash: m.ConfigHash,
		Encrypted: m.Encrypted(), Size: len(enc.Data)}
	if m.Encrypted() {
		res.Recipients = m.Encryption.Recipients
	}
	if m.Signer != nil {
		res.Signer = m.Signer.KeyID
	}
	if out != "" {
		if err := WriteFileAtomic(out, enc.Data, force); err != nil {
			return nil, err
		}
		res.File = out
		return res, nil
	}
	if st == nil {
		return nil, errors.New("no destination: give --out FILE, or --storage to write a new object")
	}
	key := enc.Key("")
	if _, err := st.Put(ctx, key, enc.Data, storage.PutOptions{IfNoneMatch: "*", ContentType: "application/octet-stream"}); err != nil {
		if errors.Is(err, storage.ErrPreconditionFailed) {
			return nil, fmt.Errorf("write %s: %w (the same re-wrapped object is already there): %w", key, ErrExists, err)
		}
		return nil, fmt.Errorf("write %s: %w", key, err)
	}
	res.Key = key
	return res, nil
}
