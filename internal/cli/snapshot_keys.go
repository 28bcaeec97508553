package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/kongfb/kongfb/pkg/snapshot"
)

// loadSnapshotKeys loads the snapshot keys and secrets named by the
// fallback flags (--snapshot-*): with fo.Export the exporter's encryption
// and signing options, with fo.Import the importer's verification options.
// Flags that the chosen side does not use are warned about on log. It is
// shared by `kongfb serve dp/cp` (checkFallback) and `kongfb snapshot …`,
// so both read the same flags the same way.
func loadSnapshotKeys(fo fallbackOptions, log *slog.Logger) (snapOpts snapshot.Options, verify snapshot.VerifyOptions, err error) {
	recipients := append([]string(nil), fo.Recipients...)
	if fo.RecipientsFile != "" {
		rs, err := readRecipientsFile(fo.RecipientsFile)
		if err != nil {
			return snapshot.Options{}, snapshot.VerifyOptions{}, err
		}
		recipients = append(recipients, rs...)
	}
	passphrase := ""
	if fo.PassphraseFile != "" {
		b, err := os.ReadFile(fo.PassphraseFile)
		if err != nil {
			return snapshot.Options{}, snapshot.VerifyOptions{}, fmt.Errorf("--snapshot-passphrase-file: %w", err)
		}
		if passphrase = strings.TrimRight(string(b), "\r\n"); passphrase == "" {
			return snapshot.Options{}, snapshot.VerifyOptions{}, fmt.Errorf("--snapshot-passphrase-file %s is empty", fo.PassphraseFile)
		}
	}
	unused := func(flag, side string) {
		log.Warn("fallback config: "+flag+" is only used by an "+side+"; ignoring it", "export", fo.Export, "import", fo.Import)
	}
	if fo.Export {
		if passphrase != "" && len(recipients) > 0 {
			return snapshot.Options{}, snapshot.VerifyOptions{}, errors.New("--snapshot-passphrase-file cannot be combined with age recipients (--snapshot-recipient, --snapshot-recipients-file): age allows a passphrase only on its own")
		}
		if len(recipients) > 0 {
			if _, _, err := snapshot.ParseRecipients(recipients); err != nil {
				return snapshot.Options{}, snapshot.VerifyOptions{}, fmt.Errorf("--snapshot-recipient: %w", err)
			}
		}
		snapOpts = snapshot.Options{Recipients: recipients, Passphrase: passphrase}
		if fo.SigningKeyFile != "" {
			k, err := snapshot.LoadSigningKey(fo.SigningKeyFile)
			if err != nil {
				return snapshot.Options{}, snapshot.VerifyOptions{}, fmt.Errorf("--snapshot-signing-key: %w", err)
			}
			snapOpts.SigningKey = k
		}
		if snapOpts.Encrypted() && !fo.KongCompatiblePlaintext {
			log.Info("fallback config: snapshots are encrypted, so Kong's plain config.json is not written (--kong-compatible-plaintext writes it too)")
		}
	} else {
		if len(recipients) > 0 {
			unused("--snapshot-recipient", "exporter (--export)")
		}
		if fo.SigningKeyFile != "" {
			unused("--snapshot-signing-key", "exporter (--export)")
		}
	}
	if fo.Import {
		verify.Passphrase = passphrase
		for _, p := range fo.IdentityFiles {
			ids, err := snapshot.LoadIdentities(p)
			if err != nil {
				return snapshot.Options{}, snapshot.VerifyOptions{}, fmt.Errorf("--snapshot-identity-file: %w", err)
			}
			verify.Identities = append(verify.Identities, ids...)
		}
		for _, v := range fo.TrustedKeys {
			if strings.HasPrefix(strings.TrimSpace(v), snapshot.PublicKeyPrefix) {
				k, err := snapshot.ParsePublicKey(strings.TrimSpace(v))
				if err != nil {
					return snapshot.Options{}, snapshot.VerifyOptions{}, fmt.Errorf("--snapshot-trusted-key: %w", err)
				}
				verify.TrustedSignerKeys = append(verify.TrustedSignerKeys, k)
				continue
			}
			ks, err := snapshot.LoadPublicKeys(v)
			if err != nil {
				return snapshot.Options{}, snapshot.VerifyOptions{}, fmt.Errorf("--snapshot-trusted-key: %w", err)
			}
			verify.TrustedSignerKeys = append(verify.TrustedSignerKeys, ks...)
		}
		switch strings.ToLower(strings.TrimSpace(fo.VersionPolicy)) {
		case "", "same-minor", "minor":
			verify.VersionPolicy = snapshot.VersionPolicy{Match: snapshot.MatchMinor}
		case "exact":
			verify.VersionPolicy = snapshot.VersionPolicy{Match: snapshot.MatchExact}
		case "any":
			verify.VersionPolicy = snapshot.VersionPolicy{Match: snapshot.MatchAny}
		default:
			return snapshot.Options{}, snapshot.VerifyOptions{}, fmt.Errorf("--snapshot-version-policy %q: want same-minor, exact or any", fo.VersionPolicy)
		}
	} else {
		if len(fo.IdentityFiles) > 0 {
			unused("--snapshot-identity-file", "importer (--import)")
		}
		if len(fo.TrustedKeys) > 0 {
			unused("--snapshot-trusted-key", "importer (--import)")
		}
		if fo.PreferNewest {
			unused("--prefer-newest", "importer (--import)")
		}
	}
	return snapOpts, verify, nil
}
