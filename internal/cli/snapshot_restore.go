package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/snapshotops"
)

// snapshotRestoreFileResult is the machine-readable result of --to.
type snapshotRestoreFileResult struct {
	Snapshot   string   `json:"snapshot"`
	File       string   `json:"file"`
	Format     string   `json:"format"`
	ConfigHash string   `json:"config_hash"`
	Skipped    []string `json:"skipped,omitempty"`
}

func newSnapshotRestoreCommand(a *app) *cobra.Command {
	var sf snapshotFlags
	var latest, plan, force bool
	var to, toCP, adminToken string
	cmd := &cobra.Command{
		Use:   "restore (KEY | --latest) (--to FILE | --to-cp http://ADMIN)",
		Short: "Restore a verified snapshot to a file or to a control plane",
		Long: `Restore one snapshot after verifying it fully (as 'kongfb snapshot verify').
KEY is a storage key as 'kongfb snapshot ls' prints it (or a local .snap file);
--latest is the newest object that verifies — history snapshots first, Kong's
config.json only when no snapshot verifies — and the newer ones it skips are
listed with their reason.

--to FILE writes the configuration to a file: Kong's config.json export for
*.json, the same document as YAML for *.yaml/*.yml (both load with
'kongfb serve dp --declarative', Kong's declarative loader and decK). The
file is written atomically with mode 0600; an existing file is never replaced
without --force.

--to-cp http://ADMIN replaces a control plane's configuration through its Admin
API (POST /config: kongfb's CP, or Kong in DB-less mode). It first reads the
CP's configuration (GET /config) and computes the entity-level plan: what the
restore adds, removes and changes. --plan prints it and changes nothing.
Without --force the restore is refused when the CP has entities the snapshot
lacks (a restore would delete them: changes made after the snapshot), and the
refusal names them. After the POST the configuration is read back and
checked.

Exit codes: 0 restored (or planned), 1 the snapshot does not verify, the file
exists, the CP refused or has entities the snapshot lacks, 2 bad usage.`,
		Example: `  # the newest verified snapshot to a file a DB-less DP can serve
  kongfb snapshot restore --latest --storage s3://kong-backup/kong --to kong.yaml \
    --snapshot-identity-file ops.agekey --snapshot-trusted-key exporter.pub

  # what restoring it to the CP would change
  kongfb snapshot restore --latest --storage s3://kong-backup/kong \
    --to-cp http://127.0.0.1:8001 --plan

  # restore even though the CP has entities created after the snapshot
  KONG_ADMIN_TOKEN=s3cr3t kongfb snapshot restore --storage s3://kong-backup/kong \
    3.9.1/snapshots/20250108T101530.123Z-2d15a1457e0d-3065a805.snap --to-cp http://cp:8001 --force`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := kongEnvDefaults(a, cmd, append([][2]string{{"admin-token", "KONG_ADMIN_TOKEN"}}, snapshotEnv...)); err != nil {
				return err
			}
			p, err := a.printer()
			if err != nil {
				return err
			}
			if latest == (len(args) == 1) {
				return usageErrorf("give one of KEY or --latest")
			}
			if (to == "") == (toCP == "") {
				return usageErrorf("give one of --to FILE or --to-cp http://ADMIN")
			}
			if plan && toCP == "" {
				return usageErrorf("--plan applies to --to-cp")
			}
			format := ""
			if to != "" {
				if format = snapshotops.ConfigFileFormat(to); format == "" {
					return usageErrorf("--to %s: the name must end in .json (Kong's config.json) or .yaml/.yml (kong.yaml)", to)
				}
			}
			if toCP != "" && !strings.HasPrefix(toCP, "http://") && !strings.HasPrefix(toCP, "https://") {
				return usageErrorf("--to-cp %q: want the Admin API's URL, http://host:port", toCP)
			}
			src := snapshotops.Source{Latest: true}
			if !latest {
				src = sf.source(args[0])
			}
			vopts, err := sf.verifyOptions()
			if err != nil {
				return err
			}
			ctx := cmdContext(cmd)
			st, closeStore, err := sf.readStore(ctx, src)
			if err != nil {
				return err
			}
			defer closeStore()
			l, err := snapshotops.Load(ctx, st, src, snapshotops.LoadOptions{Verify: vopts})
			if err != nil {
				return failure(err)
			}
			var skipped []string
			for _, e := range l.Skipped {
				skipped = append(skipped, e.Error())
				fmt.Fprintf(a.streams.Err, "skipped (does not verify): %v\n", e)
			}
			if to != "" {
				data, err := snapshotops.RenderConfig(l.Config, format)
				if err != nil {
					return failure(err)
				}
				if err := snapshotops.WriteFileAtomic(to, data, force); err != nil {
					return failure(err)
				}
				res := snapshotRestoreFileResult{Snapshot: l.Name, File: to, Format: format, ConfigHash: l.Hash, Skipped: skipped}
				return p.Data(res, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "restored %s to %s (%s, config_hash %s, %s)\n", l.Name, to, format, l.Hash, entitiesText(l.Manifest.Entities))
					return err
				})
			}
			res, rerr := snapshotops.RestoreToCP(ctx, snapshotops.Admin{URL: toCP, Token: adminToken}, l, plan, force)
			if res == nil {
				return failure(rerr)
			}
			err = p.Data(res, func(w io.Writer) error {
				fmt.Fprintf(w, "snapshot %s (config_hash %s) -> control plane %s (config_hash %s)\n", l.Name, res.Plan.ToHash, toCP, res.Plan.FromHash)
				printDiff(w, res.Plan, "restoring would", p.Dim)
				switch {
				case res.Applied:
					fmt.Fprintf(w, "%s: the control plane now serves config_hash %s\n", p.OK("restored"), res.HashAfter)
				case res.Reason != "" && res.Reason != "refused":
					fmt.Fprintln(w, res.Reason)
				}
				return nil
			})
			if rerr != nil {
				return failure(rerr)
			}
			return err
		},
	}
	f := cmd.Flags()
	sf.addStorage(f, true)
	f.BoolVar(&latest, "latest", false, "restore the newest snapshot that verifies")
	f.StringVar(&to, "to", "", "write the configuration to this file: *.json (Kong's config.json) or *.yaml/*.yml")
	f.StringVar(&toCP, "to-cp", "", "restore to this control plane's Admin API (POST /config), e.g. http://127.0.0.1:8001")
	f.StringVar(&adminToken, "admin-token", "", "Kong-Admin-Token for --to-cp; prefer the environment variable [KONG_ADMIN_TOKEN]")
	f.BoolVar(&plan, "plan", false, "with --to-cp: show what the restore would add, remove and change, and change nothing")
	f.BoolVar(&force, "force", false, "replace an existing --to file; restore to a CP that has entities the snapshot lacks")
	sf.addRead(f)
	return cmd
}

// printDiff writes a diff as "+ services svc-b", "- routes r", "~ routes r-a (paths)".
func printDiff(w io.Writer, d *snapshotops.Diff, verb string, dim func(string) string) {
	if d.Empty() {
		fmt.Fprintf(w, "no differences (%d entities)\n", d.Unchanged)
		return
	}
	fmt.Fprintf(w, "%s add %d, remove %d, change %d entities (%d unchanged):\n", verb, len(d.Added), len(d.Removed), len(d.Changed), d.Unchanged)
	for _, e := range d.Added {
		fmt.Fprintf(w, "  + %s %s\n", e.Label(), dim("("+e.ID+")"))
	}
	for _, e := range d.Removed {
		fmt.Fprintf(w, "  - %s %s\n", e.Label(), dim("("+e.ID+")"))
	}
	for _, e := range d.Changed {
		fmt.Fprintf(w, "  ~ %s: %s %s\n", e.Label(), strings.Join(e.Fields, ", "), dim("("+e.ID+")"))
	}
}
