package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/snapshotops"
)

func newSnapshotPruneCommand(a *app) *cobra.Command {
	var sf snapshotFlags
	var keepLast int
	var keepWithin, version string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune --storage URL --keep-last N [--keep-within DURATION] [--dry-run]",
		Short: "Delete old history snapshots, keeping the newest and the newest valid one",
		Long: `Delete old history snapshots (<version>/snapshots/*.snap) of every version
(or --version V). Per version a snapshot is kept when it is one of the newest
--keep-last N, or was captured within --keep-within (e.g. 72h, 30d), and the
newest snapshot that verifies is always kept, whatever the rules say: it is
what a data plane would import. To find it the newest snapshots are verified
with the --snapshot-* key flags; when no snapshot of a version verifies (e.g.
they are encrypted and no identity is given) nothing of that version is
deleted and the command exits 1.

Kong's <version>/config.json, election leases and other objects are never
deleted. Each delete is conditional on the ETag seen in the listing
(If-Match), so an object replaced meanwhile stays. --dry-run reports what
would be deleted and deletes nothing.

Exit codes: 0 pruned (or planned), 1 a version was left alone or a delete
failed, storage error, 2 bad usage.`,
		Example: `  # what keeping the last 20 would delete
  kongfb snapshot prune --storage s3://kong-backup/kong --keep-last 20 --dry-run \
    --snapshot-identity-file ops.agekey

  # keep the last 10 and everything from the past week
  kongfb snapshot prune --storage s3://kong-backup/kong --keep-last 10 --keep-within 7d \
    --snapshot-identity-file ops.agekey --snapshot-trusted-key exporter.pub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, snapshotEnv); err != nil {
				return err
			}
			p, err := a.printer()
			if err != nil {
				return err
			}
			if !cmd.Flags().Changed("keep-last") {
				return usageErrorf("--keep-last N is required (the newest N snapshots of each version are kept)")
			}
			if keepLast < 0 {
				return usageErrorf("--keep-last %d: must be 0 or more", keepLast)
			}
			within, err := parseRetention(keepWithin)
			if err != nil {
				return usageErrorf("--keep-within: %w", err)
			}
			vopts, err := sf.verifyOptions()
			if err != nil {
				return err
			}
			ctx := cmdContext(cmd)
			st, err := sf.openStore(ctx, false, false)
			if err != nil {
				return err
			}
			defer st.Close()
			res, err := snapshotops.Prune(ctx, st, snapshotops.PruneOptions{KeepLast: keepLast, KeepWithin: within,
				Version: strings.TrimSpace(version), DryRun: dryRun, Verify: vopts})
			if err != nil {
				return failure(err)
			}
			err = p.Data(res, func(w io.Writer) error {
				if len(res.Items) == 0 {
					fmt.Fprintf(w, "no history snapshots in %s\n", st)
					return nil
				}
				rows := make([][]string, 0, len(res.Items))
				for _, it := range res.Items {
					action := it.Action
					switch it.Action {
					case "delete":
						action = "would delete"
					case "failed":
						action = p.Fail("FAILED")
					}
					rows = append(rows, []string{it.Key, action, it.Reason})
				}
				if err := p.Table([]string{"KEY", "ACTION", "WHY"}, rows); err != nil {
					return err
				}
				verb := "deleted"
				if res.DryRun {
					verb = "would delete"
				}
				fmt.Fprintf(w, "%s %d, kept %d\n", verb, res.Deleted, res.Kept)
				return nil
			})
			if err != nil {
				return err
			}
			if len(res.Problems) > 0 {
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s", strings.Join(res.Problems, "\n"))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	sf.addStorage(f, true)
	f.IntVar(&keepLast, "keep-last", 0, "keep the newest N snapshots of each version (required)")
	f.StringVar(&keepWithin, "keep-within", "", "also keep snapshots captured within this long, e.g. 72h or 30d")
	f.StringVar(&version, "version", "", "prune only this gateway version directory")
	f.BoolVar(&dryRun, "dry-run", false, "report what would be deleted; delete nothing")
	sf.addRead(f)
	return cmd
}

// parseRetention reads a duration that also takes days ("30d").
func parseRetention(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("want a duration such as 72h or 30d, got %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("want a duration such as 72h or 30d, got %q", s)
	}
	return v, nil
}
