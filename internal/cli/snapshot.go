package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kongfb/kongfb/internal/snapshotops"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

func init() { register(newSnapshotCommand) }

func newSnapshotCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "List, verify, export, restore, diff, prune and re-encrypt fallback snapshots",
		Long: `Work with the fallback configuration in object storage (docs/SNAPSHOT.md):
Kong's <prefix>/<version>/config.json and kongfb's signed, encrypted,
compressed history <prefix>/<version>/snapshots/<time>-<hash>-<sha>.snap
(docs/SNAPSHOT-FORMAT.md).

  ls        list the objects with their version, time, config hash, size,
            encryption and signature (--verify: verify each fully)
  verify    verify one object (storage key, --latest, or a local file)
  export    write a new snapshot from a config file or a running CP
  restore   restore a verified snapshot to a file or to a CP (--plan: what changes)
  diff      entity-level difference between two snapshots or config files
  prune     delete old history snapshots (--keep-last, --keep-within, --dry-run)
  encrypt   re-encrypt a snapshot to new recipients, as a new object or file
  decrypt   write a decrypted copy of a snapshot, as a new object or file

--storage takes the serve commands' storage URL (s3://bucket/prefix or
file:///dir; KONG_CLUSTER_FALLBACK_CONFIG_STORAGE) and the keys take the same
--snapshot-* flags as 'kongfb serve dp --export/--import'. S3 credentials come
from the AWS chain (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
roles); an S3-compatible server is set with --s3-endpoint.

Storage keys are relative to the storage URL's prefix, as 'kongfb snapshot ls'
prints them. A local file is named with a path that starts with "/", "./" or
"../" (or any path when --storage is not given).

Exit codes: 0 success, 1 failure (an object does not verify, storage error),
2 bad usage.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newSnapshotLsCommand(a),
		newSnapshotVerifyCommand(a),
		newSnapshotExportCommand(a),
		newSnapshotRestoreCommand(a),
		newSnapshotDiffCommand(a),
		newSnapshotPruneCommand(a),
		newSnapshotEncryptCommand(a),
		newSnapshotDecryptCommand(a),
	)
	return cmd
}

// snapshotFlags are the storage and key flags the snapshot commands share
// with `serve dp` (same names, same parsing: loadSnapshotKeys).
type snapshotFlags struct {
	fo            fallbackOptions
	versionPolicy string
	passphraseReg bool
}

// snapshotEnv maps the shared flags to Kong's environment names.
var snapshotEnv = [][2]string{
	{"storage", "KONG_CLUSTER_FALLBACK_CONFIG_STORAGE"},
	{"s3-endpoint", storage.EnvEndpoint},
	{"export-s3-config", storage.EnvExtraPutParams},
}

func (sf *snapshotFlags) addStorage(f *pflag.FlagSet, required bool) {
	what := "fallback storage"
	if !required {
		what += " (not needed for local files)"
	}
	f.StringVar(&sf.fo.Storage, "storage", "", what+": s3://bucket/prefix or file:///dir [KONG_CLUSTER_FALLBACK_CONFIG_STORAGE]")
	f.StringVar(&sf.fo.S3Endpoint, "s3-endpoint", "", "S3-compatible server, e.g. http://minio:9000 (default: AWS S3) [AWS_CONFIG_STORAGE_ENDPOINT]")
}

func (sf *snapshotFlags) addPassphrase(f *pflag.FlagSet) {
	if sf.passphraseReg {
		return
	}
	sf.passphraseReg = true
	f.StringVar(&sf.fo.PassphraseFile, "snapshot-passphrase-file", "", "file holding the age passphrase that encrypts or decrypts snapshots")
}

// addRead registers the flags that open and check snapshots.
func (sf *snapshotFlags) addRead(f *pflag.FlagSet) {
	f.StringArrayVar(&sf.fo.IdentityFiles, "snapshot-identity-file", nil, "age identity file that decrypts snapshots; repeatable")
	sf.addPassphrase(f)
	f.StringArrayVar(&sf.fo.TrustedKeys, "snapshot-trusted-key", nil, "accept only snapshots signed by this key (a file of keys, or ed25519:<base64>); repeatable")
	f.StringVar(&sf.versionPolicy, "snapshot-version-policy", "any", "which gateway versions to accept: any, same-minor (the importer's default, against "+config.KongVersion+") or exact")
}

// addWrite registers the flags that encrypt and sign new snapshots.
func (sf *snapshotFlags) addWrite(f *pflag.FlagSet) {
	f.StringArrayVar(&sf.fo.Recipients, "snapshot-recipient", nil, "encrypt to this age recipient (age1...); repeatable")
	f.StringVar(&sf.fo.RecipientsFile, "snapshot-recipients-file", "", "file of age recipients, one per line ('#' comments)")
	sf.addPassphrase(f)
	f.StringVar(&sf.fo.SigningKeyFile, "snapshot-signing-key", "", "ed25519 key file that signs the new snapshot")
}

// verifyOptions loads the read side's keys.
func (sf *snapshotFlags) verifyOptions() (snapshot.VerifyOptions, error) {
	fo := sf.fo
	fo.Export, fo.Import = false, true
	fo.VersionPolicy = sf.versionPolicy
	_, v, err := loadSnapshotKeys(fo, slog.New(slog.DiscardHandler))
	if err != nil {
		return v, usageError{err}
	}
	return v, nil
}

// writeOptions loads the write side's keys.
func (sf *snapshotFlags) writeOptions() (snapshot.Options, error) {
	fo := sf.fo
	fo.Export, fo.Import = true, false
	o, _, err := loadSnapshotKeys(fo, slog.New(slog.DiscardHandler))
	if err != nil {
		return o, usageError{err}
	}
	return o, nil
}

// openStore opens --storage (a usage error when it is missing or malformed).
// create makes a missing file:// directory (export only).
func (sf *snapshotFlags) openStore(ctx context.Context, create bool, put bool) (storage.Store, error) {
	url := strings.TrimSpace(sf.fo.Storage)
	if url == "" {
		return nil, usageErrorf("--storage is required: s3://bucket/prefix or file:///dir [KONG_CLUSTER_FALLBACK_CONFIG_STORAGE]")
	}
	loc, err := storage.ParseURL(url)
	if err != nil {
		return nil, usageErrorf("--storage: %w", err)
	}
	opts := sf.fo.StorageBase
	if sf.fo.S3Endpoint != "" {
		opts.Endpoint = sf.fo.S3Endpoint
	}
	if put {
		if sf.fo.ExportS3Config != "" {
			if loc.Scheme != "s3" {
				return nil, usageErrorf("--export-s3-config applies to s3:// storage only, got %s", url)
			}
			if _, err := storage.ParseExtraPutParams(sf.fo.ExportS3Config); err != nil {
				return nil, usageErrorf("--export-s3-config: %w", err)
			}
		}
		opts.ExtraPutParams = sf.fo.ExportS3Config
	}
	opts.CreateBucket = create && loc.Scheme == "file"
	st, err := storage.Open(ctx, url, opts)
	if err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: fmt.Errorf("open storage %s: %w", url, err)}
	}
	return st, nil
}

// source turns an argument into a storage key or a local file.
func (sf *snapshotFlags) source(arg string) snapshotops.Source {
	if strings.TrimSpace(sf.fo.Storage) == "" || strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, "./") || strings.HasPrefix(arg, "../") {
		return snapshotops.Source{File: arg}
	}
	return snapshotops.Source{Key: arg}
}

// needsStore reports whether any source reads from storage.
func needsStore(srcs ...snapshotops.Source) bool {
	for _, s := range srcs {
		if s.File == "" {
			return true
		}
	}
	return false
}

// readStore opens --storage for reading when one of srcs comes from it; the
// store is nil (and closing it a no-op) when every source is a local file.
func (sf *snapshotFlags) readStore(ctx context.Context, srcs ...snapshotops.Source) (storage.Store, func(), error) {
	if !needsStore(srcs...) {
		return nil, func() {}, nil
	}
	st, err := sf.openStore(ctx, false, false)
	if err != nil {
		return nil, nil, err
	}
	return st, func() { _ = st.Close() }, nil
}

// failure wraps a runtime failure as exit 1.
func failure(err error) error {
	var ee *ExitError
	var ue usageError
	if err == nil || errors.As(err, &ee) || errors.As(err, &ue) {
		return err
	}
	return &ExitError{Code: ExitFailure, Err: err}
}
