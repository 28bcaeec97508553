package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/buildinfo"
	"github.com/kongfb/kongfb/internal/drill"
	"github.com/kongfb/kongfb/internal/ui"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/storage"
)

func init() { register(newDrillCommand) }

// drillTestHook lets tests adjust the drill's options (to run the test
// binary as the children) before it runs; nil outside tests.
var drillTestHook func(*drill.CPOutageOptions)

// drillCPOutageOptions are the flags of `kongfb drill cp-outage` that are
// not drill options themselves.
type drillCPOutageOptions struct {
	drill.CPOutageOptions
	ReportJSON string
	ReportMD   string
}

func newDrillCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drill",
		Short: "Run a resilience drill against real kongfb processes and report the result",
		Long: `Run a resilience drill: kongfb starts a control plane and data planes as child
processes of this binary, injects a fault, measures how the nodes behave,
restores the system, stops every process it started, and reports a timeline,
metrics, a probe table and a verdict (passed, deviated or aborted).

Without an argument it lists the scenarios. See docs/DRILL.md.

Exit codes:
  0  the drill passed
  1  the drill deviated (a probe failed) or aborted, or the report could not be written
  2  bad flags or arguments`,
		Example: `  kongfb drill
  kongfb drill cp-outage
  kongfb drill cp-outage --report report.json --report-md report.md`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := a.printer()
			if err != nil {
				return err
			}
			list := drill.Scenarios()
			return p.Data(list, func(w io.Writer) error {
				rows := make([][]string, 0, len(list))
				for _, s := range list {
					rows = append(rows, []string{s.Name, s.Summary})
				}
				if err := p.Table([]string{"scenario", "what it does"}, rows); err != nil {
					return err
				}
				_, err := fmt.Fprintln(w, "\nRun one with 'kongfb drill <scenario>'; 'kongfb drill <scenario> --help' lists its tolerances.")
				return err
			})
		},
	}
	cmd.AddCommand(newDrillCPOutageCommand(a))
	return cmd
}

func newDrillCPOutageCommand(a *app) *cobra.Command {
	o := drillCPOutageOptions{CPOutageOptions: drill.DefaultCPOutageOptions()}
	cmd := &cobra.Command{
		Use:   drill.ScenarioCPOutage,
		Short: "Kill the control plane under traffic; fresh, running and restarted data planes must keep serving",
		Long: `Run the control-plane outage drill on embedded defaults: SQLite, file://
fallback storage, everything on 127.0.0.1 with ports the system picks, in a
temporary work dir. Nothing to set up.

  1. Set-up: a cluster certificate, a local upstream (in this process), the
     CP ('kongfb serve cp --export', SQLite in the work dir) and dp-1, each a
     child process of this binary.
  2. Steady state: a service and route through the Admin API; dp-1 serves
     them with the CP's hash; the storage's newest verified snapshot (read as
     an importer reads it) holds that hash. A prober starts: GET /drill on
     every serving DP every --probe-interval, for the rest of the drill.
  3. Fault: SIGKILL the CP. TTD = until dp-1's /status says
     cp_connected=false.
  4. A fresh DP (dp-2, --import, empty prefix) starts while the CP is down:
     time to serve = process start -> first 200; it must serve the
     snapshot (config_source fallback, the snapshot's hash).
  5. dp-1 is killed and restarted (--restart-dp1): it must serve its cache.
  6. Recovery after --outage: the CP restarts on the same SQLite and cluster
     address; every DP returns to the CP's hash (config_source cp); a route
     added then must reach every DP (RTO = fault -> this) and the storage.
  7. Rollback: every child is stopped (also on failure, timeout or Ctrl-C)
     and the drill checks that no process and no listener is left.

The hypothesis is the tolerances below; each is a row of the probe table.
Progress lines go to stderr while the drill runs; the report goes to stdout
(text, or --output json|yaml) and to --report / --report-md.

The work dir (child logs, SQLite, caches, storage) is removed at the end
unless --keep or --workdir is given, or the drill did not pass.

--storage s3://bucket/prefix exports to S3 or an S3-compatible server
(--s3-endpoint); credentials come from the AWS chain (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION), which the children inherit. The bucket
must exist and the prefix be empty: the drill's CP writes its own
configuration there (Kong's config.json too), so a storage in use is refused.

Exit codes: 0 passed, 1 deviated or aborted, 2 bad flags.`,
		Example: `  kongfb drill cp-outage
  kongfb drill cp-outage --report report.json --report-md report.md
  kongfb drill cp-outage --max-error-rate 0 --max-time-to-serve 2s -o json
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... kongfb drill cp-outage \
    --storage s3://kong-backup/drill --s3-endpoint http://127.0.0.1:9000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, [][2]string{{"s3-endpoint", storage.EnvEndpoint}}); err != nil {
				return err
			}
			p, err := a.printer()
			if err != nil {
				return err
			}
			return runDrillCPOutage(cmd.Context(), a, p, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.WorkDir, "workdir", "", "work dir for logs, SQLite, caches and file:// storage; must be new or empty, and is kept (default: a temporary dir)")
	f.BoolVar(&o.Keep, "keep", false, "keep the temporary work dir even when the drill passes")
	f.StringVar(&o.Storage, "storage", "", "fallback storage the CP exports to, new or empty: s3://bucket/prefix or file:///dir (default: file://<workdir>/backup)")
	f.StringVar(&o.ImportStorage, "import-storage", "", "storage the fresh DP imports from (default: --storage)")
	f.StringVar(&o.S3Endpoint, "s3-endpoint", "", "S3-compatible server for --storage, e.g. http://127.0.0.1:9000 [AWS_CONFIG_STORAGE_ENDPOINT]")
	f.StringVar(&o.ReportJSON, "report", "", "also write the report as JSON to this file (atomically)")
	f.StringVar(&o.ReportMD, "report-md", "", "also write the report as Markdown to this file (atomically)")
	f.DurationVar(&o.ProbeInterval, "probe-interval", o.ProbeInterval, "interval between two probe requests to one DP")
	f.DurationVar(&o.Baseline, "baseline", o.Baseline, "traffic before the fault, at least")
	f.DurationVar(&o.Outage, "outage", o.Outage, "how long the CP stays down, at least")
	f.DurationVar(&o.After, "after", o.After, "traffic after the change that follows recovery, at least")
	f.Float64Var(&o.MaxErrorRate, "max-error-rate", o.MaxErrorRate, "tolerance: share of failed probe requests (non-2xx or no answer) per phase")
	f.DurationVar(&o.MaxDetect, "max-detect", o.MaxDetect, "tolerance: fault -> dp-1 reports cp_connected=false (TTD)")
	f.DurationVar(&o.MaxTimeToServe, "max-time-to-serve", o.MaxTimeToServe, "tolerance: a fresh or restarted DP's process start -> first 200")
	f.DurationVar(&o.MaxReconverge, "max-reconverge", o.MaxReconverge, "tolerance: CP back -> every DP on its hash; a change -> every DP serves it")
	f.DurationVar(&o.MaxP99, "max-p99", o.MaxP99, "tolerance: dp-1's p99 latency during the outage")
	f.DurationVar(&o.MaxExport, "max-export", 0, "tolerance: the storage holds a config (before the fault, and the change after recovery); 0 = --election-ttl + --max-reconverge")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "abort the whole drill after this long")
	f.DurationVar(&o.ElectionTTL, "election-ttl", o.ElectionTTL, "the CP exporter's --election-ttl (its restart waits out the killed CP's lease)")
	f.DurationVar(&o.ReconnectMin, "dp-reconnect-min", o.ReconnectMin, "the DPs' --cluster-reconnect-min (Kong: 5s)")
	f.DurationVar(&o.ReconnectMax, "dp-reconnect-max", o.ReconnectMax, "the DPs' --cluster-reconnect-max (Kong: 10s)")
	f.DurationVar(&o.CPConnectTimeout, "cp-connect-timeout", o.CPConnectTimeout, "the fresh DP's --cp-connect-timeout")
	f.BoolVar(&o.RestartDP1, "restart-dp1", o.RestartDP1, "also kill and restart dp-1 during the outage (it must serve its cache)")
	f.StringVar(&o.ChildLogLevel, "child-log-level", o.ChildLogLevel, "log level of the CP and DPs (their logs are in <workdir>/logs)")
	return cmd
}

// runDrillCPOutage runs the drill, prints the report and maps the verdict
// to the exit code.
func runDrillCPOutage(parent context.Context, a *app, p *ui.Printer, o drillCPOutageOptions) error {
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		select {
		case s := <-sigs:
			cancel(fmt.Errorf("interrupted by %s", s))
		case <-ctx.Done():
		}
	}()

	for _, path := range []string{o.ReportJSON, o.ReportMD} {
		if path == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
			return usageErrorf("report file %s: directory %s does not exist", path, filepath.Dir(path))
		}
	}
	info := buildinfo.Get(config.KongVersion)
	o.Version, o.Commit = info.Version, info.Commit
	o.Progress = a.streams.Err
	if drillTestHook != nil {
		drillTestHook(&o.CPOutageOptions)
	}
	rep, err := drill.RunCPOutage(ctx, o.CPOutageOptions)
	if err != nil {
		var oe *drill.OptionError
		if errors.As(err, &oe) {
			return usageError{err}
		}
		return &ExitError{Code: ExitFailure, Err: err}
	}
	var writeErrs []error
	if o.ReportJSON != "" {
		rep.Artifact.ReportJSON, _ = filepath.Abs(o.ReportJSON)
	}
	if o.ReportMD != "" {
		rep.Artifact.ReportMD, _ = filepath.Abs(o.ReportMD)
		if err := rep.WriteMarkdownFile(o.ReportMD); err != nil {
			writeErrs = append(writeErrs, err)
		}
	}
	if o.ReportJSON != "" {
		if err := rep.WriteJSONFile(o.ReportJSON); err != nil {
			writeErrs = append(writeErrs, err)
		}
	}
	if err := p.Data(rep, func(w io.Writer) error { return printDrillReport(p, w, rep) }); err != nil {
		return err
	}
	if len(writeErrs) > 0 {
		return &ExitError{Code: ExitFailure, Err: errors.Join(writeErrs...)}
	}
	if !rep.Passed() {
		failed := 0
		for _, pr := range rep.Probes {
			if pr.Status == drill.ProbeFail {
				failed++
			}
		}
		msg := fmt.Sprintf("drill %s %s: %d of %d probes failed", rep.Scenario, rep.Verdict, failed, len(rep.Probes))
		if rep.AbortReason != "" {
			msg += "; aborted: " + rep.AbortReason
		}
		return &ExitError{Code: ExitFailure, Err: errors.New(msg)}
	}
	return nil
}

// printDrillReport is the text form: a header, the probe table, the
// metrics and the traffic by phase, the rollback, and what was not tested.
func printDrillReport(p *ui.Printer, w io.Writer, r *drill.Report) error {
	verdict := strings.ToUpper(r.Verdict)
	if r.Passed() {
		verdict = p.OK(verdict)
	} else {
		verdict = p.Fail(verdict)
	}
	ran, passed := 0, 0
	for _, pr := range r.Probes {
		if pr.Status != drill.ProbeNotRun {
			ran++
		}
		if pr.Status == drill.ProbePass {
			passed++
		}
	}
	fmt.Fprintf(w, "\nkongfb drill %s: %s (%d of %d probes passed, %d not run)\n", r.Scenario, verdict, passed, ran, len(r.Probes)-ran)
	if r.AbortReason != "" {
		fmt.Fprintf(w, "  aborted:  %s\n", r.AbortReason)
	}
	fmt.Fprintf(w, "  drill id: %s\n  kongfb:   %s (Kong %s compatible)\n  ran:      %s -> %s UTC (%s)\n  storage:  %s\n",
		r.DrillID, strings.TrimSpace(r.KongfbVersion+" "+shortCommit(r.KongfbCommit)), r.KongVersion,
		r.StartedAt.Format("2006-01-02 15:04:05.000"), r.EndedAt.Format("15:04:05.000"), drill.MS(&r.DurationMS), r.Settings.Storage)
	if r.Settings.ImportStorage != r.Settings.Storage {
		fmt.Fprintf(w, "  fresh DP imports from: %s\n", r.Settings.ImportStorage)
	}
	fmt.Fprintln(w, "\nProbes")
	rows := r.ProbeRows()
	for _, row := range rows {
		switch row[4] {
		case drill.ProbePass:
			row[4] = p.OK(row[4])
		case drill.ProbeFail:
			row[4] = p.Fail(row[4])
		default:
			row[4] = p.Dim(row[4])
		}
	}
	if err := p.Table(drill.ProbeHeaders, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nMetrics")
	if err := p.Table([]string{"metric", "value"}, r.MetricRows()); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nTraffic by phase (before the fault / during the outage / after the CP is back)")
	if err := p.Table(drill.PhaseHeaders, r.PhaseRows()); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nRollback and clean-up")
	if err := p.Table([]string{"action", "result", "ok"}, r.RollbackRows()); err != nil {
		return err
	}
	for _, g := range r.Gaps {
		fmt.Fprintf(w, "\nGap: %s\n  %s\n", g.Step, g.Observed)
		if g.Log != "" {
			fmt.Fprintf(w, "  log %s, last lines:\n", g.Log)
			for _, l := range g.LogTail {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
	}
	fmt.Fprintln(w, "\nNot tested by this drill:")
	for _, n := range r.NotTested {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	fmt.Fprintf(w, "\nThe timeline (%d events) was printed to stderr as the drill ran; it is in --output json|yaml, --report and --report-md.\n", len(r.Timeline))
	if r.Artifact.ReportJSON != "" {
		fmt.Fprintf(w, "Report: %s\n", r.Artifact.ReportJSON)
	}
	if r.Artifact.ReportMD != "" {
		fmt.Fprintf(w, "Report (Markdown): %s\n", r.Artifact.ReportMD)
	}
	_, err := fmt.Fprintf(w, "Verdict: %s\n", verdict)
	return err
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
