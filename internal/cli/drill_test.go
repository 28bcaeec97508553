//go:build unix

package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/drill"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

// drillChildEnv carries the `kongfb` arguments (JSON) to TestDrillChild.
const drillChildEnv = "KONGFB_DRILL_CHILD"

// TestDrillChild is a child process of the drill tests: the real `kongfb`
// command line (serve cp / serve dp) run by this test binary, since the
// binary cannot re-exec itself as kongfb. It ends by SIGKILL or, after
// SIGTERM, with serve's exit code.
func TestDrillChild(t *testing.T) {
	raw := os.Getenv(drillChildEnv)
	if raw == "" {
		t.Skip("only run as a child of the drill tests")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		t.Fatal(err)
	}
	if code := Main(args, strings.NewReader(""), os.Stdout, os.Stderr); code != 0 {
		t.Fatalf("kongfb %v exited with %d", args, code)
	}
}

// drillInTest makes the drill start this test binary (TestDrillChild) as
// its children, and sets test-sized tolerances and timings: generous
// bounds (the machine is shared and the children are built with -race),
// short waits.
func drillInTest(t *testing.T) {
	t.Helper()
	drillTestHook = func(o *drill.CPOutageOptions) {
		o.Command = func(args []string) (*exec.Cmd, error) {
			raw, err := json.Marshal(args)
			if err != nil {
				return nil, err
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestDrillChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), drillChildEnv+"="+string(raw))
			return cmd, nil
		}
	}
	t.Cleanup(func() { drillTestHook = nil })
}

// testDrillArgs are the timing flags of the end-to-end drills: short
// phases, a 1 s lease, loose tolerances where the test asserts no speed.
var testDrillArgs = []string{
	"--baseline", "300ms", "--outage", "1s", "--after", "300ms",
	"--election-ttl", "1s", "--dp-reconnect-min", "100ms", "--dp-reconnect-max", "300ms",
	"--max-time-to-serve", "20s", "--max-reconverge", "20s", "--max-detect", "10s", "--max-p99", "5s",
	"--timeout", "2m",
}

// runDrill runs `kongfb drill cp-outage` in-process with -o json and
// returns the exit code, the report and stderr.
func runDrill(t *testing.T, extra ...string) (int, *drill.Report, string) {
	t.Helper()
	drillInTest(t)
	var out, errw bytes.Buffer
	args := append(append([]string{"drill", "cp-outage", "-o", "json"}, testDrillArgs...), extra...)
	start := time.Now()
	code := Main(args, strings.NewReader(""), &out, &errw)
	t.Logf("kongfb %s: exit %d after %s", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond))
	var rep drill.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report (%v):\n%s\nstderr:\n%s", err, out.String(), errw.String())
	}
	return code, &rep, errw.String()
}

func probeStatus(r *drill.Report) map[string]string {
	m := map[string]string{}
	for _, p := range r.Probes {
		m[p.Name] = p.Status
	}
	return m
}

func nodesStopped(t *testing.T, r *drill.Report, least int) {
	t.Helper()
	if len(r.Nodes) < least {
		t.Fatalf("report lists %d child processes: %+v", len(r.Nodes), r.Nodes)
	}
	for _, n := range r.Nodes {
		if n.Ended == nil || n.Exit == "" {
			t.Errorf("child %s (pid %d) is not reported as ended", n.Name, n.PID)
		}
		// The process is gone: signal 0 fails for a reaped pid (unless the
		// pid was reused meanwhile, which the reaping makes possible but
		// not within this test's milliseconds).
		if p, err := os.FindProcess(n.PID); err == nil && p.Signal(syscall.Signal(0)) == nil {
			t.Errorf("child %s (pid %d) still exists", n.Name, n.PID)
		}
	}
}

func TestDrillCPOutagePasses(t *testing.T) {
	work := filepath.Join(t.TempDir(), "work")
	reportJSON := filepath.Join(t.TempDir(), "report.json")
	reportMD := filepath.Join(filepath.Dir(reportJSON), "report.md")
	code, rep, stderr := runDrill(t, "--workdir", work, "--report", reportJSON, "--report-md", reportMD)
	if code != ExitOK || rep.Verdict != drill.VerdictPassed {
		t.Fatalf("exit %d, verdict %s (%s); probes %+v\ngaps %+v\nstderr:\n%s", code, rep.Verdict, rep.AbortReason, rep.Probes, rep.Gaps, stderr)
	}
	for _, p := range rep.Probes {
		if p.Status != drill.ProbePass {
			t.Errorf("probe %q: %s (%s)", p.Name, p.Status, p.Observed)
		}
	}
	if len(rep.Probes) != 15 || rep.Score != 1 {
		t.Errorf("%d probes, score %v", len(rep.Probes), rep.Score)
	}
	m := rep.Metrics
	// Sane metrics: measured, positive, in causal order.
	for name, v := range map[string]*float64{"ttd": m.TTDMS, "time_to_serve": m.TimeToServeMS, "cache_restart": m.CacheRestartTimeToServeMS,
		"reconverge": m.ReconvergeMS, "change": m.ChangePropagationMS, "rto": m.RTOMS, "export_after": m.ExportAfterRecoveryMS,
		"snapshot_age": m.SnapshotAgeAtFaultMS, "cp_restart": m.CPRestartMS, "fresh_listen": m.FreshDPListenMS} {
		if v == nil || *v <= 0 {
			t.Errorf("metric %s not measured: %v", name, v)
		}
	}
	if m.RTOMS != nil && m.ReconvergeMS != nil && m.TTDMS != nil && *m.RTOMS < 1000 {
		t.Errorf("RTO %v ms is shorter than the 1 s outage", *m.RTOMS)
	}
	if m.FreshDPListenMS != nil && m.TimeToServeMS != nil && *m.TimeToServeMS < *m.FreshDPListenMS {
		t.Errorf("the fresh DP served (%v ms) before it listened (%v ms)", *m.TimeToServeMS, *m.FreshDPListenMS)
	}
	if m.Snapshot == nil || m.SnapshotMatchesCP == nil || !*m.SnapshotMatchesCP || m.ImportAttempts == nil || *m.ImportAttempts < 1 {
		t.Errorf("snapshot %+v matches %v attempts %v", m.Snapshot, m.SnapshotMatchesCP, m.ImportAttempts)
	}
	for _, row := range [][2]string{{"before", "dp-1"}, {"during", "dp-1"}, {"during", "dp-2"}, {"after", "dp-1"}, {"after", "dp-2"}} {
		ps, ok := drill.FindPhase(m.Phases, row[0], row[1])
		if !ok || ps.Requests == 0 || ps.Errors != 0 || ps.P99MS <= 0 {
			t.Errorf("phase %s/%s: %+v (found %v)", row[0], row[1], ps, ok)
		}
	}
	total := 0
	for _, ps := range m.Phases {
		if ps.Target == "all" {
			total += ps.Requests
		}
	}
	if total != m.Requests || total == 0 {
		t.Errorf("phases count %d requests, the report %d", total, m.Requests)
	}
	// The timeline holds the fault, each DP's detection / first 200 /
	// return, in order.
	var names []string
	for _, e := range rep.Timeline {
		names = append(names, e.Node+" "+e.Name)
	}
	joined := strings.Join(names, "\n")
	last := -1
	for _, want := range []string{"cp fault injected", "dp-1 detected the CP loss", "dp-2 first 200", "dp-1 first 200",
		"cp listening", "dp-1 back on the CP", "cp configuration changed", " full service restored", " residual state"} {
		i := strings.Index(joined[max(last, 0):], want)
		if i < 0 {
			t.Fatalf("timeline lacks %q after position %d:\n%s", want, last, joined)
		}
		last += i + 1
	}
	if !strings.Contains(stderr, "fault injected: SIGKILL pid") {
		t.Errorf("no progress lines on stderr:\n%s", stderr)
	}
	nodesStopped(t, rep, 3)
	// The restarted CP listened on the first one's cluster address.
	var cp1, cp2 *drill.Node
	for i := range rep.Nodes {
		switch rep.Nodes[i].Name {
		case "cp-1":
			cp1 = &rep.Nodes[i]
		case "cp-2":
			cp2 = &rep.Nodes[i]
		}
	}
	if cp1 == nil || cp2 == nil {
		t.Fatalf("nodes %+v", rep.Nodes)
	}
	i := slices.Index(cp2.Args, "--cluster-listen")
	if i < 0 || !slices.Contains(cp1.Listen, cp2.Args[i+1]) || !slices.Contains(cp2.Listen, cp2.Args[i+1]) {
		t.Errorf("cp-2 args %v listen %v; cp-1 listen %v", cp2.Args, cp2.Listen, cp1.Listen)
	}

	// The report files: the same report, written atomically.
	b, err := os.ReadFile(reportJSON)
	if err != nil {
		t.Fatal(err)
	}
	var fromFile drill.Report
	if err := json.Unmarshal(b, &fromFile); err != nil || fromFile.DrillID != rep.DrillID || fromFile.Verdict != rep.Verdict {
		t.Fatalf("report.json: %v, id %s verdict %s", err, fromFile.DrillID, fromFile.Verdict)
	}
	md, err := os.ReadFile(reportMD)
	if err != nil || !strings.Contains(string(md), "# kongfb drill cp-outage: passed") {
		t.Fatalf("report.md: %v\n%s", err, md)
	}
	// --workdir is kept, with the children's logs.
	if !rep.Artifact.WorkDirKept {
		t.Error("--workdir not reported as kept")
	}
	for _, n := range rep.Nodes {
		if fi, err := os.Stat(n.Log); err != nil || fi.Size() == 0 {
			t.Errorf("log of %s: %v", n.Name, err)
		}
	}
}

// TestDrillCPOutageDeviates points the fresh DP at an empty storage: it
// cannot serve during the outage, so the drill must run to the end and
// report deviated (exit 1), with the two fresh-DP probes failed and the
// rest passed.
func TestDrillCPOutageDeviates(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	// The fresh DP is given 2 s (observed for 7 s); it serves only once the
	// CP is back.
	code, rep, stderr := runDrill(t, "--workdir", work, "--import-storage", "file://"+empty, "--max-time-to-serve", "2s", "--restart-dp1=false")
	if code != ExitFailure || rep.Verdict != drill.VerdictDeviated || rep.AbortReason != "" {
		t.Fatalf("exit %d, verdict %s (%s); want 1 and deviated\nstderr:\n%s", code, rep.Verdict, rep.AbortReason, stderr)
	}
	st := probeStatus(rep)
	for name, want := range map[string]string{
		"fresh DP (--import) time to serve":                 drill.ProbeFail,
		"fresh DP serves the snapshot":                      drill.ProbeFail,
		"dp-1 restarted during the outage serves its cache": drill.ProbeNotRun,
		"dp-1 detects the CP loss (TTD)":                    drill.ProbePass,
		"dp-1 error rate during the outage":                 drill.ProbePass,
		"every DP back on the CP (reconverge)":              drill.ProbePass,
		"a change after recovery reaches every DP":          drill.ProbePass,
		"rollback: every child stopped, no listener left":   drill.ProbePass,
	} {
		if st[name] != want {
			t.Errorf("probe %q: %s, want %s", name, st[name], want)
		}
	}
	if rep.Metrics.TimeToServeMS != nil {
		t.Errorf("time to serve measured (%v) although the fresh DP did not serve", *rep.Metrics.TimeToServeMS)
	}
	if len(rep.Gaps) == 0 || !strings.Contains(rep.Gaps[0].Observed, "fallback.state") || len(rep.Gaps[0].LogTail) == 0 {
		t.Errorf("gaps %+v", rep.Gaps)
	}
	if !strings.Contains(stderr, "drill cp-outage deviated: 2 of 15 probes failed") {
		t.Errorf("stderr lacks the verdict line:\n%s", stderr)
	}
	// dp-2 came back with the CP and was probed afterwards.
	if ps, ok := drill.FindPhase(rep.Metrics.Phases, drill.PhaseAfter, "dp-2"); !ok || ps.Requests == 0 {
		t.Errorf("dp-2 not probed after it converged: %+v", ps)
	}
	nodesStopped(t, rep, 3)
}

// TestDrillCPOutageMinIO runs the drill with the CP exporting to a real
// MinIO (s3://), the nodes and the drill reading it with credentials from
// the environment, as the AWS chain gives them.
func TestDrillCPOutageMinIO(t *testing.T) {
	m := storagetest.StartMinIO(t)
	t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
	t.Setenv("AWS_REGION", m.Region)
	code, rep, stderr := runDrill(t, "--storage", m.URL("drill"), "--s3-endpoint", m.Endpoint)
	if code != ExitOK || rep.Verdict != drill.VerdictPassed {
		t.Fatalf("exit %d, verdict %s (%s); probes %+v\ngaps %+v\nstderr:\n%s", code, rep.Verdict, rep.AbortReason, rep.Probes, rep.Gaps, stderr)
	}
	if rep.Settings.Storage != m.URL("drill") || rep.Metrics.Snapshot == nil || !strings.Contains(rep.Metrics.Snapshot.Key, "/snapshots/") {
		t.Errorf("storage %s, snapshot %+v", rep.Settings.Storage, rep.Metrics.Snapshot)
	}
	// Without --workdir the temporary work dir is removed after a pass.
	if rep.Artifact.WorkDirKept {
		t.Error("temporary work dir kept after a pass")
	}
	if _, err := os.Stat(rep.Settings.WorkDir); !os.IsNotExist(err) {
		t.Errorf("work dir %s: %v; want removed", rep.Settings.WorkDir, err)
	}
	nodesStopped(t, rep, 3)
}

// TestDrillAbortsOnTimeout: a --timeout too short for anything aborts the
// drill with the timeout as the reason.
func TestDrillAbortsOnTimeout(t *testing.T) {
	code, rep, stderr := runDrill(t, "--workdir", filepath.Join(t.TempDir(), "w"), "--timeout", "1ms")
	if code != ExitFailure || rep.Verdict != drill.VerdictAborted || !strings.Contains(rep.AbortReason, "--timeout (1ms) passed") {
		t.Fatalf("exit %d verdict %s reason %q\nstderr:\n%s", code, rep.Verdict, rep.AbortReason, stderr)
	}
	for _, p := range rep.Probes {
		if p.Status == drill.ProbePass && p.Kind != drill.KindRollback {
			t.Errorf("probe %q passed in a drill aborted at once", p.Name)
		}
	}
}

// interrupter is the drill's stderr: once a progress line contains at, it
// sends SIGINT to this process (as Ctrl-C would).
type interrupter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	at   string
	sent bool
}

func (w *interrupter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if !w.sent && strings.Contains(w.buf.String(), w.at) {
		w.sent = true
		_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
	}
	return n, err
}

func (w *interrupter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestDrillInterrupted: Ctrl-C (SIGINT) once the CP and dp-1 run aborts
// the drill; every child it started is stopped and the report says so.
func TestDrillInterrupted(t *testing.T) {
	drillInTest(t)
	var out bytes.Buffer
	errw := &interrupter{at: "prober started"}
	args := append(append([]string{"drill", "cp-outage", "-o", "json"}, testDrillArgs...), "--workdir", filepath.Join(t.TempDir(), "w"))
	code := Main(args, strings.NewReader(""), &out, errw)
	var rep drill.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("stdout is not a JSON report (%v):\n%s\nstderr:\n%s", err, out.String(), errw.String())
	}
	if code != ExitFailure || rep.Verdict != drill.VerdictAborted || !strings.Contains(rep.AbortReason, "interrupted by interrupt") {
		t.Fatalf("exit %d verdict %s reason %q\nstderr:\n%s", code, rep.Verdict, rep.AbortReason, errw.String())
	}
	st := probeStatus(&rep)
	if st["steady state: dp-1 serves the route"] != drill.ProbePass || st["rollback: every child stopped, no listener left"] != drill.ProbePass ||
		st["fresh DP (--import) time to serve"] != drill.ProbeNotRun {
		t.Errorf("probes %+v", rep.Probes)
	}
	for _, p := range rep.Probes {
		if p.Status == drill.ProbeFail {
			t.Errorf("probe %q failed (%s): an interrupted step is not a failed one", p.Name, p.Observed)
		}
	}
	if len(rep.Nodes) != 2 {
		t.Errorf("%d children reported, want the CP and dp-1", len(rep.Nodes))
	}
	nodesStopped(t, &rep, 2)
}

func TestDrillUsage(t *testing.T) {
	nonEmpty := t.TempDir()
	if err := os.WriteFile(filepath.Join(nonEmpty, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"drill", "cp-outage", "--max-error-rate", "2"}, "--max-error-rate must be between 0 and 1"},
		{[]string{"drill", "cp-outage", "--workdir", nonEmpty}, "is not empty"},
		{[]string{"drill", "cp-outage", "--storage", "ftp://x"}, "--storage"},
		{[]string{"drill", "cp-outage", "--dp-reconnect-min", "2s", "--dp-reconnect-max", "1s"}, "--dp-reconnect-max"},
		{[]string{"drill", "cp-outage", "--report", "/nonexistent-dir/r.json"}, "does not exist"},
		{[]string{"drill", "cp-outage", "--outage", "soon"}, "invalid argument"},
		{[]string{"drill", "no-such-scenario"}, "unknown command"},
	} {
		var out, errw bytes.Buffer
		code := Main(c.args, strings.NewReader(""), &out, &errw)
		if code != ExitUsage || !strings.Contains(errw.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errw.String(), c.want)
		}
	}
}

// TestDrillRefusesStorageInUse: a --storage that already holds objects
// (here Kong's config.json, which data planes import) is refused before
// anything starts, and left as it was: the drill's CP would replace it with
// the drill's configuration and prune the history.
func TestDrillRefusesStorageInUse(t *testing.T) {
	drillInTest(t)
	dir := filepath.Join(t.TempDir(), "fallback")
	kong := filepath.Join(dir, "3.9.1", "config.json")
	if err := os.MkdirAll(filepath.Dir(kong), 0o700); err != nil {
		t.Fatal(err)
	}
	const prod = `{"_format_version":"3.0","services":[{"name":"production","url":"http://prod.internal"}]}`
	if err := os.WriteFile(kong, []byte(prod), 0o600); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	var out, errw bytes.Buffer
	args := append(append([]string{"drill", "cp-outage"}, testDrillArgs...), "--storage", "file://"+dir, "--workdir", work)
	code := Main(args, strings.NewReader(""), &out, &errw)
	if code != ExitUsage || !strings.Contains(errw.String(), "--storage file://"+dir+" is not empty (it holds 3.9.1/config.json)") {
		t.Errorf("exit %d, stderr %q; want 2 and the storage named", code, errw.String())
	}
	if b, err := os.ReadFile(kong); err != nil || string(b) != prod {
		t.Errorf("Kong's config.json changed: %v %s", err, b)
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Errorf("the drill started (work dir %s: %v)", work, err)
	}
}

func TestDrillList(t *testing.T) {
	var out, errw bytes.Buffer
	if code := Main([]string{"drill", "-o", "json"}, strings.NewReader(""), &out, &errw); code != 0 {
		t.Fatalf("exit %d: %s", code, errw.String())
	}
	var list []drill.Scenario
	if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list) == 0 || list[0].Name != "cp-outage" {
		t.Fatalf("%v %s", err, out.String())
	}
	out.Reset()
	if code := Main([]string{"drill"}, strings.NewReader(""), &out, &errw); code != 0 || !strings.Contains(out.String(), "cp-outage") {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
}
