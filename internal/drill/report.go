// Package drill runs resilience drills against real kongfb processes and
// reports what happened: a timeline, metrics, a probe table and a verdict.
//
// A drill starts the control plane and the data planes as child processes
// of the same binary (os.Executable), injects a fault, measures how the
// nodes behave, restores the system and stops every child, whatever
// happens. It does not import internal/cli: it drives the processes through
// their flags, their --ready-file, the Admin API, the status API and the
// fallback storage, as an operator would.
package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SchemaVersion is the version of the Report structure (report.json). It
// changes only when a field is removed or changes meaning.
const SchemaVersion = 1

// Verdicts.
const (
	VerdictPassed   = "passed"   // every probe within its tolerance
	VerdictDeviated = "deviated" // the drill ran to the end, some probe failed
	VerdictAborted  = "aborted"  // the drill could not run to the end
)

// Probe statuses.
const (
	ProbePass   = "pass"
	ProbeFail   = "fail"
	ProbeNotRun = "not_run"
)

// Probe kinds, after Chaos Toolkit's steady-state hypothesis: checks before
// the fault (sot), during the method (method), over the continuous traffic
// (continuous) and after the rollback (eot).
const (
	KindSteadyState = "steady_state"
	KindMethod      = "method"
	KindContinuous  = "continuous"
	KindRollback    = "rollback"
)

// Report is the result of one drill; report.json is its JSON form.
type Report struct {
	SchemaVersion int       `json:"schema_version"`
	DrillID       string    `json:"drill_id"`
	Scenario      string    `json:"scenario"`
	Description   string    `json:"description"`
	KongfbVersion string    `json:"kongfb_version"`
	KongfbCommit  string    `json:"kongfb_commit,omitempty"`
	KongVersion   string    `json:"kong_version"`
	Operator      string    `json:"operator"`
	Host          string    `json:"host"`
	StartedAt     time.Time `json:"started_at"`
	EndedAt       time.Time `json:"ended_at"`
	// DurationMS is measured on the monotonic clock.
	DurationMS float64 `json:"duration_ms"`

	Verdict string `json:"verdict"`
	// AbortReason says why the drill stopped early ("" unless aborted).
	AbortReason string `json:"abort_reason,omitempty"`
	// Score is the share of the probes that ran which passed (0..1).
	Score float64 `json:"score"`

	Settings Settings  `json:"settings"`
	Nodes    []Node    `json:"nodes"`
	Timeline []Event   `json:"timeline"`
	Metrics  Metrics   `json:"metrics"`
	Probes   []Probe   `json:"probes"`
	Rollback []Action  `json:"rollback"`
	Gaps     []Gap     `json:"gaps"`
	Artifact Artifacts `json:"artifacts"`
	// NotTested lists what this drill does not exercise.
	NotTested []string `json:"not_tested"`
}

// Settings are the drill's inputs: where it ran and the tolerances of its
// hypothesis.
type Settings struct {
	WorkDir          string  `json:"workdir"`
	Storage          string  `json:"storage"`
	ImportStorage    string  `json:"import_storage"`
	ProbeIntervalMS  float64 `json:"probe_interval_ms"`
	MaxErrorRate     float64 `json:"max_error_rate"`
	MaxDetectMS      float64 `json:"max_detect_ms"`
	MaxTimeToServeMS float64 `json:"max_time_to_serve_ms"`
	MaxReconvergeMS  float64 `json:"max_reconverge_ms"`
	MaxP99MS         float64 `json:"max_p99_ms"`
	MaxExportMS      float64 `json:"max_export_ms"`
	TimeoutMS        float64 `json:"timeout_ms"`
	ElectionTTLMS    float64 `json:"election_ttl_ms"`
	ReconnectMinMS   float64 `json:"dp_reconnect_min_ms"`
	ReconnectMaxMS   float64 `json:"dp_reconnect_max_ms"`
	RestartDP1       bool    `json:"restart_dp1"`
}

// Node is one child process the drill ran.
type Node struct {
	Name    string    `json:"name"`
	Role    string    `json:"role"` // control_plane | data_plane
	PID     int       `json:"pid"`
	Args    []string  `json:"args"`
	Log     string    `json:"log"`
	Listen  []string  `json:"listen"`
	Started time.Time `json:"started_at"`
	// Ended is when the drill saw the process exit; Exit how it ended
	// ("exit 0", "signal: killed").
	Ended *time.Time `json:"ended_at"`
	Exit  string     `json:"exit"`
}

// Event is one timestamped entry of the timeline.
type Event struct {
	At time.Time `json:"at"`
	// TMS is the time since the drill started, on the monotonic clock.
	TMS    float64 `json:"t_ms"`
	Phase  string  `json:"phase"`
	Node   string  `json:"node,omitempty"`
	Name   string  `json:"event"`
	Detail string  `json:"detail,omitempty"`
}

// Metrics are the drill's measurements. A nil value was not measured
// (the step did not run or did not complete).
type Metrics struct {
	// TTDMS: fault injected -> dp-1's /status says cp_connected=false.
	TTDMS *float64 `json:"ttd_ms"`
	// TimeToServeMS: the fresh DP's process start -> first 200 through it.
	TimeToServeMS *float64 `json:"time_to_serve_ms"`
	// FreshDPListenMS: the fresh DP's process start -> listeners bound.
	FreshDPListenMS *float64 `json:"fresh_dp_listen_ms"`
	// CacheRestartTimeToServeMS: dp-1 restarted during the outage, process
	// start -> first 200 (served from its cache).
	CacheRestartTimeToServeMS *float64 `json:"cache_restart_time_to_serve_ms"`
	// CPRestartMS: the CP's second process start -> its listeners bound.
	CPRestartMS *float64 `json:"cp_restart_ms"`
	// ReconvergeMS: the restarted CP ready -> every DP serves the CP's
	// hash with config_source cp.
	ReconvergeMS *float64 `json:"reconverge_ms"`
	// ChangePropagationMS: the Admin API write after recovery -> every DP
	// serves the new route.
	ChangePropagationMS *float64 `json:"change_propagation_ms"`
	// RTOMS: fault injected -> every DP serves the change made after
	// recovery (full service, configuration writes included).
	RTOMS *float64 `json:"rto_ms"`
	// ExportAfterRecoveryMS: the Admin API write after recovery -> the
	// storage's newest verified snapshot holds it.
	ExportAfterRecoveryMS *float64 `json:"export_after_recovery_ms"`
	// SnapshotAgeAtFaultMS: fault injected - the snapshot's created_at
	// (staleness, the RPO side).
	SnapshotAgeAtFaultMS *float64 `json:"snapshot_age_at_fault_ms"`
	// Snapshot is the newest verified snapshot at the fault.
	Snapshot *SnapshotInfo `json:"snapshot"`
	// SnapshotMatchesCP says the snapshot held the CP's configuration at
	// the fault (same config_hash: nothing was lost).
	SnapshotMatchesCP *bool `json:"snapshot_matches_cp"`
	// ImportAttempts is the fresh DP's fallback.attempts when it served.
	ImportAttempts *int `json:"import_attempts"`
	// Requests counts every probe request sent.
	Requests int `json:"requests"`
	// Phases has one row per phase and target, then one per phase for all
	// targets ("all").
	Phases []PhaseStats `json:"phases"`
}

// SnapshotInfo describes a verified snapshot in the fallback storage.
type SnapshotInfo struct {
	Key       string         `json:"key"`
	Hash      string         `json:"config_hash"`
	Kind      string         `json:"kind"`
	CreatedAt time.Time      `json:"created_at,omitzero"`
	NodeID    string         `json:"node_id,omitempty"`
	Term      uint64         `json:"term,omitempty"`
	Signed    bool           `json:"signed"`
	Entities  map[string]int `json:"entities,omitempty"`
}

// Probe is one row of the probe table.
type Probe struct {
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Tolerance string `json:"tolerance"`
	Observed  string `json:"observed"`
	Status    string `json:"status"`
}

// Action is a rollback or clean-up step and its result.
type Action struct {
	Name   string `json:"name"`
	Result string `json:"result"`
	OK     bool   `json:"ok"`
}

// Gap is a failed probe or step: what failed, what was observed, and
// where to look.
type Gap struct {
	Step     string   `json:"step"`
	Observed string   `json:"observed"`
	LogTail  []string `json:"log_tail,omitempty"`
	Log      string   `json:"log,omitempty"`
}

// Artifacts are the files a drill leaves.
type Artifacts struct {
	// WorkDirKept says the work dir (child logs, SQLite, storage) is still
	// there after the drill.
	WorkDirKept bool   `json:"workdir_kept"`
	ReportJSON  string `json:"report_json,omitempty"`
	ReportMD    string `json:"report_md,omitempty"`
}

// AddProbe appends a probe that ran.
func (r *Report) AddProbe(name, kind, tolerance, observed string, ok bool) {
	st := ProbeFail
	if ok {
		st = ProbePass
	}
	r.Probes = append(r.Probes, Probe{Name: name, Kind: kind, Tolerance: tolerance, Observed: observed, Status: st})
}

// AddNotRun appends a probe that could not run (the drill aborted first,
// or the step it measures was skipped).
func (r *Report) AddNotRun(name, kind, tolerance, why string) {
	r.Probes = append(r.Probes, Probe{Name: name, Kind: kind, Tolerance: tolerance, Observed: why, Status: ProbeNotRun})
}

// Finish computes the verdict and score from the probes and the abort
// reason: aborted if the drill stopped early, else deviated if any probe
// failed, else passed. A drill with no probe that ran cannot pass.
func (r *Report) Finish() {
	ran, passed := 0, 0
	failed := false
	for _, p := range r.Probes {
		switch p.Status {
		case ProbePass:
			ran++
			passed++
		case ProbeFail:
			ran++
			failed = true
		}
	}
	if ran > 0 {
		r.Score = float64(passed) / float64(ran)
	} else {
		r.Score = 0
	}
	switch {
	case r.AbortReason != "":
		r.Verdict = VerdictAborted
	case failed || ran == 0:
		r.Verdict = VerdictDeviated
	default:
		r.Verdict = VerdictPassed
	}
}

// Passed reports whether the verdict is passed.
func (r *Report) Passed() bool { return r.Verdict == VerdictPassed }

// WriteJSONFile writes the report as indented JSON to path atomically
// (temporary file in the same directory, fsync, rename).
func (r *Report) WriteJSONFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// WriteMarkdownFile writes the report as Markdown to path atomically.
func (r *Report) WriteMarkdownFile(path string) error {
	var sb strings.Builder
	if err := r.Markdown(&sb); err != nil {
		return fmt.Errorf("report %s: %w", path, err)
	}
	return writeFileAtomic(path, []byte(sb.String()))
}

func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, 0o644)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// MS formats milliseconds for people ("12.3 ms", "1.52 s"); "-" for nil.
func MS(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmtMS(*v)
}

func fmtMS(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.1f ms", v)
}

// Pct formats an error rate as a percentage.
func Pct(v float64) string { return fmt.Sprintf("%.3f %%", v*100) }

// Markdown renders the report as Markdown (report.md).
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# kongfb drill %s: %s\n\n", r.Scenario, r.Verdict)
	fmt.Fprintf(&b, "%s\n\n", r.Description)
	fmt.Fprintf(&b, "| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, mdEscape(v)) }
	row("drill id", r.DrillID)
	row("verdict", r.Verdict)
	if r.AbortReason != "" {
		row("abort reason", r.AbortReason)
	}
	row("score", fmt.Sprintf("%.0f %% of the probes that ran passed", r.Score*100))
	row("kongfb", strings.TrimSpace(r.KongfbVersion+" "+r.KongfbCommit))
	row("kong compatibility", r.KongVersion)
	row("operator / host", r.Operator+" / "+r.Host)
	row("started (UTC)", r.StartedAt.Format(time.RFC3339Nano))
	row("ended (UTC)", r.EndedAt.Format(time.RFC3339Nano))
	row("duration", fmtMS(r.DurationMS))
	row("storage", r.Settings.Storage)
	if r.Settings.ImportStorage != r.Settings.Storage {
		row("fresh DP imports from", r.Settings.ImportStorage)
	}
	row("work dir", r.Settings.WorkDir)

	b.WriteString("\n## Probes\n\n")
	mdTable(&b, ProbeHeaders, r.ProbeRows())
	b.WriteString("\n## Metrics\n\n")
	mdTable(&b, []string{"metric", "value"}, r.MetricRows())
	b.WriteString("\n## Traffic by phase\n\n")
	mdTable(&b, PhaseHeaders, r.PhaseRows())
	b.WriteString("\n## Timeline\n\n")
	mdTable(&b, TimelineHeaders, r.TimelineRows())
	b.WriteString("\n## Rollback and clean-up\n\n")
	mdTable(&b, []string{"action", "result", "ok"}, r.RollbackRows())
	if len(r.Gaps) > 0 {
		b.WriteString("\n## Gaps\n\n")
		for _, g := range r.Gaps {
			fmt.Fprintf(&b, "- **%s**: %s\n", mdEscape(g.Step), mdEscape(g.Observed))
			if g.Log != "" {
				fmt.Fprintf(&b, "  log: `%s`\n", g.Log)
			}
			if len(g.LogTail) > 0 {
				b.WriteString("\n  ```\n")
				for _, l := range g.LogTail {
					fmt.Fprintf(&b, "  %s\n", l)
				}
				b.WriteString("  ```\n")
			}
		}
	}
	b.WriteString("\n## Not tested\n\n")
	for _, n := range r.NotTested {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

func mdTable(b *strings.Builder, headers []string, rows [][]string) {
	fmt.Fprintf(b, "| %s |\n|", strings.Join(headers, " | "))
	for range headers {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, r := range rows {
		esc := make([]string, len(r))
		for i, c := range r {
			esc[i] = mdEscape(c)
		}
		fmt.Fprintf(b, "| %s |\n", strings.Join(esc, " | "))
	}
}

// Table headers of the report's tables (text and Markdown).
var (
	ProbeHeaders    = []string{"probe", "kind", "tolerance", "observed", "result"}
	PhaseHeaders    = []string{"phase", "target", "requests", "ok", "client err", "server err", "no answer", "error rate", "p50", "p95", "p99", "rps"}
	TimelineHeaders = []string{"t", "phase", "node", "event", "detail"}
)

// ProbeRows are the probe table's rows.
func (r *Report) ProbeRows() [][]string {
	out := make([][]string, 0, len(r.Probes))
	for _, p := range r.Probes {
		out = append(out, []string{p.Name, p.Kind, p.Tolerance, p.Observed, p.Status})
	}
	return out
}

// MetricRows are the headline metrics as name/value rows.
func (r *Report) MetricRows() [][]string {
	m := r.Metrics
	rows := [][]string{
		{"TTD (fault -> dp-1 sees the CP gone)", MS(m.TTDMS)},
		{"time to serve (fresh DP, start -> first 200)", MS(m.TimeToServeMS)},
		{"fresh DP listeners bound", MS(m.FreshDPListenMS)},
		{"restarted DP from cache (start -> first 200)", MS(m.CacheRestartTimeToServeMS)},
		{"CP restart (start -> listening)", MS(m.CPRestartMS)},
		{"reconverge (CP ready -> every DP on the CP's hash)", MS(m.ReconvergeMS)},
		{"change after recovery (write -> every DP serves it)", MS(m.ChangePropagationMS)},
		{"RTO (fault -> every DP serves the change)", MS(m.RTOMS)},
		{"export after recovery (write -> in the storage)", MS(m.ExportAfterRecoveryMS)},
		{"snapshot age at the fault", MS(m.SnapshotAgeAtFaultMS)},
	}
	if m.Snapshot != nil {
		rows = append(rows, []string{"snapshot", m.Snapshot.Key + " (" + m.Snapshot.Hash + ")"})
	}
	if m.SnapshotMatchesCP != nil {
		rows = append(rows, []string{"snapshot = CP config at the fault", fmt.Sprint(*m.SnapshotMatchesCP)})
	}
	if m.ImportAttempts != nil {
		rows = append(rows, []string{"fresh DP import attempts", fmt.Sprint(*m.ImportAttempts)})
	}
	rows = append(rows, []string{"probe requests", fmt.Sprint(m.Requests)})
	return rows
}

// PhaseRows are the traffic table's rows.
func (r *Report) PhaseRows() [][]string {
	out := make([][]string, 0, len(r.Metrics.Phases))
	for _, p := range r.Metrics.Phases {
		out = append(out, []string{p.Phase, p.Target, fmt.Sprint(p.Requests),
			fmt.Sprint(p.Status.S2xx), fmt.Sprint(p.Status.S4xx), fmt.Sprint(p.Status.S5xx), fmt.Sprint(p.Status.TransportErrors),
			Pct(p.ErrorRate), fmtMS(p.P50MS), fmtMS(p.P95MS), fmtMS(p.P99MS), fmt.Sprintf("%.1f", p.RPS)})
	}
	return out
}

// TimelineRows are the timeline's rows.
func (r *Report) TimelineRows() [][]string {
	out := make([][]string, 0, len(r.Timeline))
	for _, e := range r.Timeline {
		out = append(out, []string{fmt.Sprintf("%.3fs", e.TMS/1000), e.Phase, e.Node, e.Name, e.Detail})
	}
	return out
}

// RollbackRows are the rollback table's rows.
func (r *Report) RollbackRows() [][]string {
	out := make([][]string, 0, len(r.Rollback))
	for _, a := range r.Rollback {
		out = append(out, []string{a.Name, a.Result, fmt.Sprint(a.OK)})
	}
	return out
}
