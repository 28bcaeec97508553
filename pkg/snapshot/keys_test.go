package snapshot

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

func TestSigningKeyFiles(t *testing.T) {
	text, id, err := GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if !validKeyID(id, "ed25519-") {
		t.Fatalf("key id %q", id)
	}
	if !bytes.Contains(text, []byte("# key id: "+id)) || !bytes.Contains(text, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Fatalf("key file:\n%s", text)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.key")
	if err := WriteSecretFile(path, text); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	if err := WriteSecretFile(path, text); err == nil {
		t.Fatal("WriteSecretFile overwrote an existing key")
	}
	k, err := LoadSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if k.KeyID() != id {
		t.Fatalf("loaded key id %s, want %s", k.KeyID(), id)
	}

	// The public key round-trips through both text forms.
	pub := k.Public()
	line := PublicKeyString(pub)
	der, _ := x509.MarshalPKIXPublicKey(pub)
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	for _, in := range []string{line, "  " + line + "\n", pemText} {
		got, err := ParsePublicKey(in)
		if err != nil || !got.Equal(pub) {
			t.Fatalf("ParsePublicKey(%q) = %v, %v", in, got, err)
		}
	}
	other := seedKey(t, 3)
	trusted := "# ops team\n" + line + "\n\n" + pemText + PublicKeyString(other.Public()) + "\n"
	tpath := filepath.Join(dir, "trusted.pub")
	os.WriteFile(tpath, []byte(trusted), 0o644)
	keys, err := LoadPublicKeys(tpath)
	if err != nil || len(keys) != 3 || !keys[2].Equal(other.Public()) {
		t.Fatalf("LoadPublicKeys = %d keys, %v", len(keys), err)
	}

	// A private key pasted into the trusted-keys file is refused without
	// being echoed.
	_, err = ParsePublicKeys(text)
	if err == nil || strings.Contains(err.Error(), "MC4C") {
		t.Fatalf("private key as public: %v", err)
	}
	for _, bad := range []string{"ed25519:AAAA", "ed25519:!!", "ssh-ed25519 AAAA", "", "-----BEGIN PUBLIC KEY-----\nAAAA\n"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", bad)
		}
	}
	for _, bad := range [][]byte{nil, []byte("garbage"), []byte("-----BEGIN PUBLIC KEY-----\n" + strings.Repeat("A", 10) + "\n-----END PUBLIC KEY-----\n"), []byte(pemText)} {
		if _, err := ParseSigningKey(bad); err == nil {
			t.Errorf("ParseSigningKey(%q) accepted", bad)
		}
	}
	if _, err := LoadSigningKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("%v", err)
	}

	// Key id = "ed25519-" + first 8 bytes of SHA-256 of the raw public key.
	fixed := seedKey(t, 0)
	if fixed.KeyID() != SignerKeyID(ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey)) {
		t.Fatal("key id")
	}
	if want := "ed25519-" + fingerprint(fixed.Public()); fixed.KeyID() != want || len(want) != 24 {
		t.Fatal(want)
	}
}

func TestAgeKeyFiles(t *testing.T) {
	text, recipient, err := GenerateAgeIdentity(time.Date(2025, 1, 8, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(recipient, "age1") || !bytes.Contains(text, []byte("# public key: "+recipient)) || !bytes.Contains(text, []byte("\nAGE-SECRET-KEY-1")) {
		t.Fatalf("identity file:\n%s", text)
	}
	path := filepath.Join(t.TempDir(), "age.key")
	if err := WriteSecretFile(path, text); err != nil {
		t.Fatal(err)
	}
	ids, err := LoadIdentities(path)
	if err != nil || len(ids) != 1 {
		t.Fatalf("LoadIdentities: %v", err)
	}
	if IdentityKeyID(ids[0]) != RecipientKeyID(recipient) {
		t.Fatal("identity and recipient key ids differ")
	}
	_, kids, err := ParseRecipients([]string{" " + recipient + " "})
	if err != nil || kids[0] != RecipientKeyID(recipient) || !strings.HasPrefix(kids[0], "age-") || len(kids[0]) != 20 {
		t.Fatalf("ParseRecipients: %v %v", kids, err)
	}
	if _, err := ParseIdentities([]byte("# nothing\n")); err == nil {
		t.Fatal("empty identity file accepted")
	}
	s, _ := age.NewScryptIdentity("x")
	if IdentityKeyID(s) != ScryptKeyID {
		t.Fatal("scrypt key id")
	}

	// End to end with the files: encrypt to the recipient, decrypt with the file.
	cfg := genConfig(t, 2, 1)
	e := mustEncode(t, cfg, Options{Recipients: []string{recipient}})
	if e.Manifest.Encryption.Recipients[0] != RecipientKeyID(recipient) {
		t.Fatalf("manifest recipients %v", e.Manifest.Encryption.Recipients)
	}
	if _, err := Decode("x", e.Data, VerifyOptions{Identities: ids}); err != nil {
		t.Fatal(err)
	}
}

func TestEncryptDecrypt(t *testing.T) {
	cfg := genConfig(t, 4, 2)
	writer, operator := seedKey(t, 1), seedKey(t, 2)
	oldID, newID := newIdentity(t), newIdentity(t)
	src := mustEncode(t, cfg, Options{SigningKey: writer, NodeID: "cp-1", Term: 9, Recipients: []string{oldID.Recipient().String()}})
	srcKey := src.Key("fb")

	// Rotate to a new recipient, re-signed by the operator.
	at := testTime.Add(24 * time.Hour)
	re, err := Encrypt(srcKey, src.Data, RewrapOptions{
		Verify:     VerifyOptions{Identities: []age.Identity{oldID}, TrustedSignerKeys: []ed25519.PublicKey{writer.Public()}},
		Recipients: []string{newID.Recipient().String()},
		SigningKey: operator,
		Now:        at,
	})
	if err != nil {
		t.Fatal(err)
	}
	m := re.Manifest
	if m.DerivedFrom == nil || m.DerivedFrom.Operation != "encrypt" || m.DerivedFrom.PayloadSHA256 != src.Manifest.PayloadSHA256 ||
		m.DerivedFrom.Signer != writer.KeyID() || !m.DerivedFrom.At.Equal(at.Truncate(time.Millisecond)) ||
		m.DerivedFrom.Encryption.Recipients[0] != RecipientKeyID(oldID.Recipient().String()) {
		t.Fatalf("derived_from %+v", m.DerivedFrom)
	}
	if !m.CreatedAt.Equal(src.Manifest.CreatedAt) || m.NodeID != "cp-1" || m.Term != 9 || m.ConfigHash != src.Manifest.ConfigHash ||
		m.ContentSHA256 != src.Manifest.ContentSHA256 || m.Signer.KeyID != operator.KeyID() || m.Encryption.Recipients[0] != RecipientKeyID(newID.Recipient().String()) {
		t.Fatalf("manifest %+v", m)
	}
	if src.Manifest.DerivedFrom != nil {
		t.Fatal("source manifest was modified")
	}
	reKey := re.Key("fb")
	if reKey == srcKey || reKey[:strings.LastIndex(reKey, "-")] != srcKey[:strings.LastIndex(srcKey, "-")] {
		t.Fatalf("keys %s / %s: want the same time and hash, another payload id", srcKey, reKey)
	}
	s, err := Decode(reKey, re.Data, VerifyOptions{Identities: []age.Identity{newID}, TrustedSignerKeys: []ed25519.PublicKey{operator.Public()}})
	if err != nil || !s.Trusted {
		t.Fatalf("decode re-encrypted: %v", err)
	}
	_, err = Decode(reKey, re.Data, VerifyOptions{Identities: []age.Identity{oldID}})
	wantErr(t, err, ErrDecrypt, "wrong key")
	// The writer's key alone does not vouch for the operator's re-wrap.
	_, err = Decode(reKey, re.Data, VerifyOptions{Identities: []age.Identity{newID}, TrustedSignerKeys: []ed25519.PublicKey{writer.Public()}})
	wantErr(t, err, ErrUntrustedSigner, "signed by "+operator.KeyID())

	// Decrypt without a signing key: unsigned result, refused when pinned.
	plain, err := Decrypt(reKey, re.Data, RewrapOptions{Verify: VerifyOptions{Identities: []age.Identity{newID}}})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Manifest.Signer != nil || plain.Manifest.Encrypted() || plain.Manifest.DerivedFrom.Operation != "decrypt" || plain.Manifest.DerivedFrom.Signer != operator.KeyID() {
		t.Fatalf("decrypted manifest %+v", plain.Manifest)
	}
	if _, err := Decode(plain.Key("fb"), plain.Data, VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = Decode(plain.Key("fb"), plain.Data, VerifyOptions{TrustedSignerKeys: []ed25519.PublicKey{writer.Public()}})
	wantErr(t, err, ErrUnsigned)
	if !bytes.Equal(plain.KongJSON, src.KongJSON) {
		t.Fatal("KongJSON differs")
	}

	// Passphrase re-encryption of a plaintext snapshot.
	pp, err := Encrypt("x", plain.Data, RewrapOptions{Passphrase: "pw", ScryptWorkFactor: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode("x", pp.Data, VerifyOptions{Passphrase: "pw"}); err != nil {
		t.Fatal(err)
	}

	// Refusals.
	if _, err := Encrypt("x", plain.Data, RewrapOptions{}); err == nil || !strings.Contains(err.Error(), "no recipients or passphrase") {
		t.Fatalf("%v", err)
	}
	if _, err := Decrypt("x", plain.Data, RewrapOptions{}); err == nil || !strings.Contains(err.Error(), "not encrypted") {
		t.Fatalf("%v", err)
	}
	if _, err := Decrypt("x", plain.Data, RewrapOptions{Passphrase: "x"}); err == nil {
		t.Fatal("Decrypt with a passphrase target accepted")
	}
	if _, err := Encrypt("p/3.9.1/config.json", src.KongJSON, RewrapOptions{Passphrase: "x"}); err == nil || !strings.Contains(err.Error(), "plain Kong config.json") {
		t.Fatalf("%v", err)
	}
	corrupt := bytes.Clone(src.Data)
	corrupt[len(corrupt)-1] ^= 1
	_, err = Encrypt("x", corrupt, RewrapOptions{Verify: VerifyOptions{Identities: []age.Identity{oldID}}, Passphrase: "x"})
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("re-encrypting a corrupt source: %v", err)
	}
}

func TestKongObjectAllowed(t *testing.T) {
	if !(Options{}).KongObjectAllowed(false) {
		t.Fatal("plaintext snapshots: Kong object allowed")
	}
	enc := Options{Recipients: []string{"age1x"}}
	if enc.KongObjectAllowed(false) || !enc.KongObjectAllowed(true) {
		t.Fatal("encrypted: Kong object only on explicit request")
	}
	if (Options{Passphrase: "x"}).KongObjectAllowed(false) {
		t.Fatal("passphrase counts as encrypted")
	}
}
