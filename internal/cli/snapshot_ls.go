package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/snapshotops"
)

func newSnapshotLsCommand(a *app) *cobra.Command {
	var sf snapshotFlags
	var version string
	var verify bool
	cmd := &cobra.Command{
		Use:   "ls --storage URL",
		Short: "List the fallback objects: Kong's config.json and the snapshot history",
		Long: `List Kong's <version>/config.json and kongfb's history snapshots
<version>/snapshots/*.snap of every version directory (or --version V), newest
first: key, kind, version, time (a snapshot's capture time; config.json's last
write), config hash, size, and whether it is encrypted (to which age keys) and
signed (by which key).

A snapshot's header (manifest and its checksum or signature) is verified on
the way, which needs no key; a corrupt header is shown as such. Kong's
config.json carries no header: its config hash is shown when kongfb's
exporter wrote it. With --verify every object is also verified fully
(checksums, signature against --snapshot-trusted-key, decryption with
--snapshot-identity-file or --snapshot-passphrase-file, config schema), like
'kongfb snapshot verify'.

Exit codes: 0 listed (and, with --verify, every object verified), 1 storage
error, no object for --version, or an object that does not verify, 2 bad usage.
An empty storage lists nothing and exits 0.`,
		Example: `  # everything under the prefix
  kongfb snapshot ls --storage s3://kong-backup/kong

  # one version, fully verified against the exporters' signing key
  kongfb snapshot ls --storage file:///var/lib/kongfb/fallback --version 3.9.1 \
    --verify --snapshot-trusted-key exporter.pub --snapshot-identity-file ops.agekey

  # machine-readable
  kongfb snapshot ls --storage s3://kong-backup/kong -o json | jq -r '.objects[0].key'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, snapshotEnv); err != nil {
				return err
			}
			p, err := a.printer()
			if err != nil {
				return err
			}
			opts := snapshotops.ListOptions{Version: strings.TrimSpace(version), Verify: verify}
			if verify {
				if opts.VerifyOptions, err = sf.verifyOptions(); err != nil {
					return err
				}
			}
			ctx := cmdContext(cmd)
			st, err := sf.openStore(ctx, false, false)
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := snapshotops.List(ctx, st, opts)
			if err != nil {
				return failure(err)
			}
			if opts.Version != "" && len(res.Entries) == 0 && len(res.Versions) > 0 {
				return failure(fmt.Errorf("no fallback objects for version %s in %s (versions found: %s)", opts.Version, st, strings.Join(res.Versions, ", ")))
			}
			bad := 0
			for _, e := range res.Entries {
				if e.Verify != nil && !e.Verify.Valid {
					bad++
				}
			}
			err = p.Data(res, func(w io.Writer) error {
				if len(res.Entries) == 0 {
					_, err := fmt.Fprintf(w, "no fallback objects in %s\n", st)
					return err
				}
				headers := []string{"KEY", "KIND", "VERSION", "TIME", "CONFIG HASH", "SIZE", "ENCRYPTED", "SIGNED"}
				if verify {
					headers = append(headers, "VERIFIED")
				}
				rows := make([][]string, 0, len(res.Entries))
				for _, e := range res.Entries {
					rows = append(rows, lsRow(p.OK, p.Fail, e, verify))
				}
				if err := p.Table(headers, rows); err != nil {
					return err
				}
				for _, e := range res.Entries {
					if e.HeaderError != "" {
						fmt.Fprintf(w, "%s: header: %s\n", e.Key, e.HeaderError)
					} else if e.Verify != nil && !e.Verify.Valid {
						fmt.Fprintf(w, "%s: %s\n", e.Key, e.Verify.Error)
					}
				}
				if res.Ignored > 0 {
					fmt.Fprintf(w, "%s\n", p.Dim(fmt.Sprintf("(%d other objects, e.g. election leases, not shown)", res.Ignored)))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if bad > 0 {
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%d of %d objects do not verify", bad, len(res.Entries))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	sf.addStorage(f, true)
	f.StringVar(&version, "version", "", "list only this gateway version directory, e.g. 3.9.1")
	f.BoolVar(&verify, "verify", false, "also verify every object fully (fetch, checksums, signature, decryption, config)")
	sf.addRead(f)
	return cmd
}

func lsRow(ok, fail func(string) string, e snapshotops.Entry, verify bool) []string {
	t := "-"
	if tm := e.Time(); !tm.IsZero() {
		t = tm.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	hash := e.ConfigHash
	if hash == "" {
		hash = "-"
	}
	enc := "no"
	if e.Encrypted {
		enc = "age: " + strings.Join(e.Recipients, ",")
	}
	signed := "no"
	if e.Signed {
		signed = e.Signer
	}
	if e.HeaderError != "" {
		enc, signed, hash = "?", "?", fail("bad header")
	}
	kind := "snapshot"
	if e.Kind != "kongfb-snapshot" {
		kind = "kong"
	}
	if e.DerivedFrom != "" {
		kind += " (" + e.DerivedFrom + "ed)"
	}
	row := []string{e.Key, kind, e.Version, t, hash, fmt.Sprint(e.Size), enc, signed}
	if verify {
		v := "-"
		if e.Verify != nil {
			if e.Verify.Valid {
				v = ok("ok")
			} else {
				v = fail("FAILED: " + e.Verify.Reason)
			}
		}
		row = append(row, v)
	}
	return row
}
