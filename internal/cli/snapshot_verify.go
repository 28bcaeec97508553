package cli

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/snapshotops"
)

func newSnapshotVerifyCommand(a *app) *cobra.Command {
	var sf snapshotFlags
	var latest bool
	cmd := &cobra.Command{
		Use:   "verify (KEY | --latest | FILE)",
		Short: "Verify one snapshot fully: checksums, signature, decryption, config, version",
		Long: `Verify one object fully, the way a data plane's importer does before it
serves it: object size, header, the header checksum or the signature (against
--snapshot-trusted-key when given: then an unsigned snapshot, a plain Kong
config.json or another signer is refused), object key against the manifest,
gateway version (--snapshot-version-policy), payload checksum, decryption
(--snapshot-identity-file or --snapshot-passphrase-file), content checksum,
config schema, defaults and references, a non-empty config, and the
config_hash and entity counts against the manifest.

The object is a storage KEY (as 'kongfb snapshot ls' prints it), --latest (the
newest history snapshot of an accepted version; Kong's config.json when there
is no history), or a local FILE (a .snap object or a Kong config.json).

It prints what was checked, the config hash and the entity counts.

Exit codes: 0 verified, 1 the object does not verify (the reason is printed)
or cannot be read, 2 bad usage.`,
		Example: `  # the newest snapshot, signed by a pinned key and encrypted to ops
  kongfb snapshot verify --latest --storage s3://kong-backup/kong \
    --snapshot-trusted-key exporter.pub --snapshot-identity-file ops.agekey

  # one object from the listing
  kongfb snapshot verify --storage file:///var/lib/kongfb/fallback \
    3.9.1/snapshots/20250108T101530.123Z-2d15a1457e0d-3065a805.snap

  # a downloaded file
  kongfb snapshot verify ./20250108T101530.123Z-2d15a1457e0d-3065a805.snap -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := kongEnvDefaults(a, cmd, snapshotEnv); err != nil {
				return err
			}
			p, err := a.printer()
			if err != nil {
				return err
			}
			if latest == (len(args) == 1) {
				return usageErrorf("give one of KEY, FILE or --latest")
			}
			src := snapshotops.Source{Latest: true}
			if !latest {
				src = sf.source(args[0])
			}
			opts, err := sf.verifyOptions()
			if err != nil {
				return err
			}
			ctx := cmdContext(cmd)
			st, closeStore, err := sf.readStore(ctx, src)
			if err != nil {
				return err
			}
			defer closeStore()
			name, origin, data, err := src.Read(ctx, st, opts.VersionPolicy)
			if err != nil {
				return failure(err)
			}
			res, _ := snapshotops.VerifyBytes(name, origin, data, opts)
			err = p.Data(res, func(w io.Writer) error { return printVerify(w, p.OK, p.Fail, res) })
			if err != nil {
				return err
			}
			if !res.Valid {
				return &ExitError{Code: ExitFailure, Err: errors.New(res.Error)}
			}
			return nil
		},
	}
	f := cmd.Flags()
	sf.addStorage(f, false)
	f.BoolVar(&latest, "latest", false, "verify the newest history snapshot in --storage")
	sf.addRead(f)
	return cmd
}

func printVerify(w io.Writer, ok, fail func(string) string, r *snapshotops.VerifyResult) error {
	state := ok("verified")
	if !r.Valid {
		state = fail("FAILED") + ": " + r.Reason
	}
	fmt.Fprintf(w, "%s (%s, %d bytes): %s\n", r.Object, r.Source, r.Size, state)
	for _, c := range r.Checks {
		fmt.Fprintf(w, "  ok  %s\n", c)
	}
	if !r.Valid {
		fmt.Fprintf(w, "  ERR %s\n", r.Error)
		return nil
	}
	if r.Version != "" {
		fmt.Fprintf(w, "version:     %s\n", r.Version)
	}
	if !r.CreatedAt.IsZero() {
		fmt.Fprintf(w, "created_at:  %s\n", r.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"))
	}
	fmt.Fprintf(w, "config_hash: %s\n", r.ConfigHash)
	fmt.Fprintf(w, "entities:    %s\n", entitiesText(r.Entities))
	return nil
}

// entitiesText renders counts as "2 routes, 1 services, 1 workspaces" in name order.
func entitiesText(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", m[k], k)
	}
	return strings.Join(parts, ", ")
}
