package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/snapshotops"
)

func newSnapshotDiffCommand(a *app) *cobra.Command {
	var sf snapshotFlags
	var exitCode bool
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Show the entity-level difference between two snapshots or configuration files",
		Long: `Compare two configurations entity by entity: what B adds to A, removes from A
and changes (with the fields that differ), by entity type and name (plugins
with their scope), matched by id. created_at and updated_at are ignored.

A and B are storage keys (with --storage, as 'kongfb snapshot ls' prints
them), local snapshot files, Kong config.json files or decK kong.yaml files
(a local file is a path starting with "/", "./" or "../", or any path
without --storage). Snapshots are verified fully first, with the same key
flags as 'kongfb snapshot verify'.

Exit codes: 0 compared (with --exit-code: 0 only when there is no
difference, 1 when there is one), 1 an input cannot be read or does not
verify, 2 bad usage.`,
		Example: `  # what changed between two exports
  kongfb snapshot diff --storage s3://kong-backup/kong \
    3.9.1/snapshots/20250108T101530.123Z-2d15a1457e0d-3065a805.snap \
    3.9.1/snapshots/20250109T080000.000Z-9f00aa11bb22-77665544.snap

  # the newest snapshot's file against the decK file in git
  kongfb snapshot diff ./restored.json ./kong.yaml --exit-code -o json`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := kongEnvDefaults(a, cmd, snapshotEnv); err != nil {
				return err
			}
			p, err := a.printer()
			if err != nil {
				return err
			}
			vopts, err := sf.verifyOptions()
			if err != nil {
				return err
			}
			srcA, srcB := sf.source(args[0]), sf.source(args[1])
			ctx := cmdContext(cmd)
			st, closeStore, err := sf.readStore(ctx, srcA, srcB)
			if err != nil {
				return err
			}
			defer closeStore()
			lo := snapshotops.LoadOptions{Verify: vopts, AllowConfigFile: true}
			la, err := snapshotops.Load(ctx, st, srcA, lo)
			if err != nil {
				return failure(err)
			}
			lb, err := snapshotops.Load(ctx, st, srcB, lo)
			if err != nil {
				return failure(err)
			}
			d := snapshotops.DiffConfigs(la.Name, la.Config, lb.Name, lb.Config)
			err = p.Data(d, func(w io.Writer) error {
				fmt.Fprintf(w, "A: %s (config_hash %s)\nB: %s (config_hash %s)\n", d.From, d.FromHash, d.To, d.ToHash)
				printDiff(w, d, "B would", p.Dim)
				return nil
			})
			if err != nil {
				return err
			}
			if exitCode && !d.Empty() {
				return &ExitError{Code: ExitFailure, Err: errors.New("the configurations differ")}
			}
			return nil
		},
	}
	f := cmd.Flags()
	sf.addStorage(f, false)
	f.BoolVar(&exitCode, "exit-code", false, "exit 1 when the configurations differ (for CI)")
	sf.addRead(f)
	return cmd
}
