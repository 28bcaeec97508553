package snapshot

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"filippo.io/age"
)

// Key ids are short fingerprints that name a key in manifests, listings and
// error messages without revealing anything secret:
//
//	ed25519 signing key:  "ed25519-" + hex(SHA-256(32-byte raw public key))[:16]
//	age recipient:        "age-" + hex(SHA-256(recipient string "age1…"))[:16]
//	age passphrase:       "scrypt" (a passphrase gets no fingerprint: one
//	                      would let anyone holding the object test guesses
//	                      offline without the work factor)
//
// 64 bits identify a key among an operator's keys; they are not what trust
// rests on: signatures are verified against the full pinned public key.
const (
	signKeyIDPrefix = "ed25519-"
	ageKeyIDPrefix  = "age-"
	// ScryptKeyID stands for a passphrase in a manifest's recipient list.
	ScryptKeyID = "scrypt"
	// PublicKeyPrefix starts the one-line text form of a signer public key.
	PublicKeyPrefix = "ed25519:"
)

func fingerprint(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// SignerKeyID returns the key id of an ed25519 public key.
func SignerKeyID(pub ed25519.PublicKey) string {
	return signKeyIDPrefix + fingerprint(pub)
}

// RecipientKeyID returns the key id of an age recipient string ("age1…").
// Recipient strings are canonical lower-case Bech32, so the fingerprint of
// the string identifies the key.
func RecipientKeyID(recipient string) string {
	return ageKeyIDPrefix + fingerprint([]byte(strings.ToLower(strings.TrimSpace(recipient))))
}

// IdentityKeyID returns the key id of the recipient an age identity
// decrypts for ("scrypt" for a passphrase).
func IdentityKeyID(id age.Identity) string {
	switch v := id.(type) {
	case *age.X25519Identity:
		return RecipientKeyID(v.Recipient().String())
	case *age.HybridIdentity:
		return RecipientKeyID(v.Recipient().String())
	case *age.ScryptIdentity:
		return ScryptKeyID
	}
	return fmt.Sprintf("%T", id)
}

// PublicKeyString is the one-line text form of a signer public key:
// "ed25519:" + standard base64 of the 32 raw bytes. It is what operators
// pin (ParsePublicKey reads it back, as well as PEM "PUBLIC KEY").
func PublicKeyString(pub ed25519.PublicKey) string {
	return PublicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// SigningKey is an ed25519 private key that signs snapshot manifests.
type SigningKey struct {
	priv ed25519.PrivateKey
}

// NewSigningKey wraps an ed25519 private key.
func NewSigningKey(priv ed25519.PrivateKey) (*SigningKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing key: ed25519 private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	return &SigningKey{priv: priv}, nil
}

// Public returns the public key.
func (k *SigningKey) Public() ed25519.PublicKey { return k.priv.Public().(ed25519.PublicKey) }

// KeyID returns the key id ("ed25519-<16 hex>").
func (k *SigningKey) KeyID() string { return SignerKeyID(k.Public()) }

func (k *SigningKey) sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

// MarshalPEM writes the key file: comment lines naming the key id and the
// public key, then a standard PKCS#8 "PRIVATE KEY" PEM block (the format of
// `openssl genpkey -algorithm ed25519`, so openssl can read it too).
func (k *SigningKey) MarshalPEM() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.priv)
	if err != nil {
		return nil, fmt.Errorf("signing key: marshal PKCS#8: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# kongfb snapshot signing key (ed25519). Keep this file secret.\n")
	fmt.Fprintf(&b, "# key id: %s\n", k.KeyID())
	fmt.Fprintf(&b, "# public key: %s\n", PublicKeyString(k.Public()))
	if err := pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return nil, fmt.Errorf("signing key: encode PEM: %w", err)
	}
	return b.Bytes(), nil
}

// GenerateSigningKey makes a new ed25519 signing key and returns its key
// file text (see MarshalPEM) and key id.
func GenerateSigningKey() (privatePEM []byte, keyID string, err error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate signing key: %w", err)
	}
	k := &SigningKey{priv: priv}
	text, err := k.MarshalPEM()
	if err != nil {
		return nil, "", err
	}
	return text, k.KeyID(), nil
}

// ParseSigningKey reads a signing key file: a PEM "PRIVATE KEY" (PKCS#8)
// block holding an ed25519 key; text around the block is ignored.
func ParseSigningKey(data []byte) (*SigningKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found (want -----BEGIN PRIVATE KEY-----)")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q, want \"PRIVATE KEY\" (PKCS#8 ed25519)", block.Type)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want ed25519", key)
	}
	return NewSigningKey(priv)
}

// LoadSigningKey reads a signing key file.
func LoadSigningKey(path string) (*SigningKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", path, err)
	}
	k, err := ParseSigningKey(data)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", path, err)
	}
	return k, nil
}

// ParsePublicKey reads one signer public key: the one-line form
// "ed25519:<base64>" (PublicKeyString) or a PEM "PUBLIC KEY" block
// (`openssl pkey -pubout`).
func ParsePublicKey(text string) (ed25519.PublicKey, error) {
	keys, err := ParsePublicKeys([]byte(text))
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("want one public key, found %d", len(keys))
	}
	return keys[0], nil
}

// ParsePublicKeys reads a trusted-keys file: any number of one-line keys
// ("ed25519:<base64>") and PEM "PUBLIC KEY" blocks; blank lines and lines
// starting with '#' are ignored.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	var pemBuf []byte
	pemStart := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		switch {
		case pemBuf != nil:
			pemBuf = append(pemBuf, l...)
			pemBuf = append(pemBuf, '\n')
			if strings.HasPrefix(l, "-----END ") {
				k, err := parsePublicPEM(pemBuf)
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", pemStart, err)
				}
				keys = append(keys, k)
				pemBuf = nil
			}
		case l == "" || strings.HasPrefix(l, "#"):
		case strings.HasPrefix(l, "-----BEGIN "):
			pemStart = line
			pemBuf = append([]byte(l), '\n')
		case strings.HasPrefix(l, PublicKeyPrefix):
			raw, err := base64.StdEncoding.DecodeString(l[len(PublicKeyPrefix):])
			if err != nil {
				return nil, fmt.Errorf("line %d: public key base64: %w", line, err)
			}
			if len(raw) != ed25519.PublicKeySize {
				return nil, fmt.Errorf("line %d: public key is %d bytes, want %d", line, len(raw), ed25519.PublicKeySize)
			}
			keys = append(keys, ed25519.PublicKey(raw))
		default:
			// Never echo the line: it could be a private key pasted by mistake.
			return nil, fmt.Errorf("line %d: not a public key (want %q… or a PEM PUBLIC KEY block)", line, PublicKeyPrefix)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read public keys: %w", err)
	}
	if pemBuf != nil {
		return nil, fmt.Errorf("line %d: PEM block has no END line", pemStart)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public keys found")
	}
	return keys, nil
}

func parsePublicPEM(data []byte) (ed25519.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("malformed PEM block")
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block is %q, want \"PUBLIC KEY\"", block.Type)
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse public key: %w", err)
	}
	pub, ok := key.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want ed25519", key)
	}
	return pub, nil
}

// LoadPublicKeys reads a trusted-keys file (see ParsePublicKeys).
func LoadPublicKeys(path string) ([]ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load trusted keys %s: %w", path, err)
	}
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("load trusted keys %s: %w", path, err)
	}
	return keys, nil
}

// GenerateAgeIdentity makes a new age X25519 identity and returns its
// identity file text, in age-keygen's layout ("# created: …", "# public
// key: age1…", "AGE-SECRET-KEY-1…"), and its recipient string.
func GenerateAgeIdentity(now time.Time) (identityFile []byte, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, "", fmt.Errorf("generate age identity: %w", err)
	}
	r := id.Recipient().String()
	text := fmt.Sprintf("# created: %s\n# public key: %s\n%s\n", now.UTC().Format(time.RFC3339), r, id.String())
	return []byte(text), r, nil
}

// ParseRecipients parses age recipient strings ("age1…" X25519, or
// "age1pq1…" post-quantum hybrid) and returns them with their key ids.
func ParseRecipients(recipients []string) ([]age.Recipient, []string, error) {
	out := make([]age.Recipient, 0, len(recipients))
	ids := make([]string, 0, len(recipients))
	for i, s := range recipients {
		s = strings.TrimSpace(s)
		if strings.HasPrefix(strings.ToUpper(s), "AGE-SECRET-KEY-") {
			return nil, nil, fmt.Errorf("recipient %d is an age identity (secret key), not a recipient: give its public key age1…", i+1)
		}
		rs, err := age.ParseRecipients(strings.NewReader(s))
		if err != nil || len(rs) != 1 {
			if err == nil {
				err = fmt.Errorf("found %d recipients", len(rs))
			}
			return nil, nil, fmt.Errorf("recipient %d: want an age public key age1…: %w", i+1, err)
		}
		out = append(out, rs[0])
		ids = append(ids, RecipientKeyID(s))
	}
	return out, ids, nil
}

// ParseIdentities reads an age identity file (AGE-SECRET-KEY-1… lines,
// '#' comments), as written by age-keygen or GenerateAgeIdentity.
func ParseIdentities(data []byte) ([]age.Identity, error) {
	ids, err := age.ParseIdentities(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("parse age identities: %w", err)
	}
	return ids, nil
}

// LoadIdentities reads an age identity file.
func LoadIdentities(path string) ([]age.Identity, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load age identities %s: %w", path, err)
	}
	ids, err := ParseIdentities(data)
	if err != nil {
		return nil, fmt.Errorf("load age identities %s: %w", path, err)
	}
	return ids, nil
}

// WriteSecretFile creates path with mode 0600 and writes data, refusing to
// overwrite an existing file (a key generator must never clobber a key).
func WriteSecretFile(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return nil
}
