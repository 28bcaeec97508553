package drill

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestFinishVerdict(t *testing.T) {
	cases := []struct {
		name      string
		probes    []string // statuses
		abort     string
		want      string
		wantScore float64
	}{
		{"all pass", []string{ProbePass, ProbePass}, "", VerdictPassed, 1},
		{"one fails", []string{ProbePass, ProbeFail, ProbePass, ProbePass}, "", VerdictDeviated, 0.75},
		{"not run do not count", []string{ProbePass, ProbeNotRun}, "", VerdictPassed, 1},
		{"aborted wins over failures", []string{ProbeFail, ProbeNotRun}, "steady state not reached", VerdictAborted, 0},
		{"aborted with passing probes", []string{ProbePass}, "interrupted", VerdictAborted, 1},
		{"nothing ran cannot pass", []string{ProbeNotRun}, "", VerdictDeviated, 0},
		{"no probes cannot pass", nil, "", VerdictDeviated, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Report{AbortReason: c.abort}
			for i, st := range c.probes {
				switch st {
				case ProbeNotRun:
					r.AddNotRun("p", KindMethod, "tol", "why")
				default:
					r.AddProbe("p"+string(rune('a'+i)), KindMethod, "tol", "obs", st == ProbePass)
				}
			}
			r.Finish()
			if r.Verdict != c.want || r.Score != c.wantScore {
				t.Fatalf("verdict %s score %v; want %s %v", r.Verdict, r.Score, c.want, c.wantScore)
			}
			if r.Passed() != (c.want == VerdictPassed) {
				t.Fatalf("Passed() = %v with verdict %s", r.Passed(), r.Verdict)
			}
		})
	}
}

func at(base time.Time, msec int) time.Time { return base.Add(time.Duration(msec) * time.Millisecond) }

func TestAnalyzePhases(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b := Boundaries{Start: base, Fault: at(base, 1000), Recovered: at(base, 3000), End: at(base, 4000)}
	var samples []Sample
	add := func(target string, msec, status int, lat time.Duration) {
		s := Sample{Target: target, At: at(base, msec), Status: status, Latency: lat}
		if status == 0 {
			s.Err = "connection refused"
		}
		samples = append(samples, s)
	}
	// before: dp-1, 10 requests, 1..10 ms, all 200
	for i := range 10 {
		add("dp-1", i*100, 200, time.Duration(i+1)*time.Millisecond)
	}
	// during: dp-1 one 502 and one transport error among 4; dp-2 2 x 200
	add("dp-1", 1000, 200, time.Millisecond)
	add("dp-1", 1500, 502, 2*time.Millisecond)
	add("dp-1", 2000, 0, 0)
	add("dp-1", 2999, 200, 3*time.Millisecond)
	add("dp-2", 2500, 200, time.Millisecond)
	add("dp-2", 2600, 404, time.Millisecond)
	// after
	add("dp-2", 3000, 200, time.Millisecond)

	rows := Analyze(samples, b)
	get := func(phase, target string) PhaseStats {
		t.Helper()
		ps, ok := FindPhase(rows, phase, target)
		if !ok {
			t.Fatalf("no row %s/%s in %+v", phase, target, rows)
		}
		return ps
	}
	before := get(PhaseBefore, "dp-1")
	if before.Requests != 10 || before.Errors != 0 || before.P50MS != 5 || before.P99MS != 10 || before.MaxMS != 10 || before.RPS != 10 {
		t.Errorf("before/dp-1 = %+v", before)
	}
	d1 := get(PhaseDuring, "dp-1")
	if d1.Requests != 4 || d1.Errors != 2 || d1.ErrorRate != 0.5 || d1.Status.S2xx != 2 || d1.Status.S5xx != 1 || d1.Status.TransportErrors != 1 {
		t.Errorf("during/dp-1 = %+v", d1)
	}
	// Latency percentiles leave out requests that got no answer.
	if d1.P99MS != 3 || d1.P50MS != 2 {
		t.Errorf("during/dp-1 latency = p50 %v p99 %v; want 2 and 3", d1.P50MS, d1.P99MS)
	}
	d2 := get(PhaseDuring, "dp-2")
	if d2.Status.S4xx != 1 || d2.Errors != 1 {
		t.Errorf("during/dp-2 = %+v", d2)
	}
	all := get(PhaseDuring, "all")
	if all.Requests != 6 || all.Errors != 3 || all.DurationMS != 2000 || all.RPS != 3 {
		t.Errorf("during/all = %+v", all)
	}
	// The boundary itself belongs to the later phase.
	if a := get(PhaseAfter, "all"); a.Requests != 1 {
		t.Errorf("after/all = %+v", a)
	}
	if _, ok := FindPhase(rows, PhaseAfter, "dp-1"); ok {
		t.Error("a row for a target without samples in the phase")
	}
	// Order: phases in drill order, targets in order of appearance, "all" last.
	var order []string
	for _, r := range rows {
		order = append(order, r.Phase+"/"+r.Target)
	}
	want := "before/dp-1 before/all during/dp-1 during/dp-2 during/all after/dp-2 after/all"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("rows %s; want %s", got, want)
	}
}

func TestAnalyzeAbortedBeforeFault(t *testing.T) {
	base := time.Now()
	b := Boundaries{Start: base, End: at(base, 500)}
	rows := Analyze([]Sample{{Target: "dp-1", At: at(base, 10), Status: 200}, {Target: "dp-1", At: at(base, 400), Status: 200}}, b)
	if len(rows) != 2 || rows[0].Phase != PhaseBefore || rows[0].Requests != 2 || rows[0].DurationMS != 500 {
		t.Fatalf("rows %+v", rows)
	}
}

func TestPercentile(t *testing.T) {
	var v []time.Duration
	for i := 1; i <= 100; i++ {
		v = append(v, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {99, 99}, {100, 100}, {1, 1}, {0.1, 1}} {
		if got := Percentile(v, c.p); got != c.want {
			t.Errorf("p%v = %v; want %v", c.p, got, c.want)
		}
	}
	if Percentile(nil, 99) != 0 {
		t.Error("percentile of nothing is not 0")
	}
	if got := Percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("p99 of one = %v", got)
	}
}

func sampleReport() *Report {
	v := 12.5
	r := &Report{
		SchemaVersion: SchemaVersion, DrillID: "cp-outage-x", Scenario: ScenarioCPOutage, Description: "desc",
		StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), EndedAt: time.Date(2026, 1, 2, 3, 4, 15, 0, time.UTC),
		Settings:  Settings{Storage: "file:///tmp/x", ImportStorage: "file:///tmp/x"},
		Timeline:  []Event{{TMS: 1500, Phase: PhaseDuring, Node: "cp", Name: "fault injected", Detail: "SIGKILL pid 1"}},
		Metrics:   Metrics{TTDMS: &v, Phases: []PhaseStats{{Phase: PhaseDuring, Target: "dp-1", Requests: 3}}},
		Rollback:  []Action{{Name: "stop cp-2", Result: "SIGTERM, exit status 0", OK: true}},
		Gaps:      []Gap{{Step: "fresh DP", Observed: "no 200 | not ready", LogTail: []string{"line 1"}}},
		NotTested: []string{"partitions"},
	}
	r.AddProbe("dp-1 detects the CP loss (TTD)", KindMethod, "<= 5s", "12.5 ms", true)
	r.AddProbe("fresh DP time to serve", KindMethod, "<= 10s", "no 200", false)
	r.Finish()
	return r
}

func TestReportJSONFile(t *testing.T) {
	r := sampleReport()
	path := filepath.Join(t.TempDir(), "report.json")
	if err := r.WriteJSONFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	// The stable top-level keys.
	for _, k := range []string{"schema_version", "drill_id", "scenario", "kongfb_version", "kong_version", "started_at", "ended_at",
		"verdict", "score", "settings", "nodes", "timeline", "metrics", "probes", "rollback", "gaps", "artifacts", "not_tested"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report.json has no %q", k)
		}
	}
	if m["verdict"] != VerdictDeviated || m["schema_version"].(float64) != SchemaVersion {
		t.Errorf("verdict %v schema %v", m["verdict"], m["schema_version"])
	}
	metrics := m["metrics"].(map[string]any)
	if metrics["ttd_ms"].(float64) != 12.5 || metrics["time_to_serve_ms"] != nil {
		t.Errorf("metrics: ttd %v, time_to_serve %v (unmeasured must be null)", metrics["ttd_ms"], metrics["time_to_serve_ms"])
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Probes[1].Status != ProbeFail || !back.StartedAt.Equal(r.StartedAt) {
		t.Fatalf("round trip: %v %+v", err, back.Probes)
	}
	// Nothing but the report is left in the directory.
	ents, _ := os.ReadDir(filepath.Dir(path))
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only report.json", len(ents))
	}
	// A directory that does not exist is an error, and leaves nothing.
	if err := r.WriteJSONFile(filepath.Join(t.TempDir(), "missing", "r.json")); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

func TestReportMarkdown(t *testing.T) {
	r := sampleReport()
	path := filepath.Join(t.TempDir(), "report.md")
	if err := r.WriteMarkdownFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	md := string(b)
	for _, want := range []string{
		"# kongfb drill cp-outage: deviated",
		"| drill id | cp-outage-x |",
		"## Probes", "| fresh DP time to serve | method | <= 10s | no 200 | fail |",
		"## Metrics", "| TTD (fault -> dp-1 sees the CP gone) | 12.5 ms |",
		"## Traffic by phase", "| during | dp-1 | 3 |",
		"## Timeline", "| 1.500s | during | cp | fault injected | SIGKILL pid 1 |",
		"## Rollback and clean-up", "| stop cp-2 | SIGTERM, exit status 0 | true |",
		"## Gaps", `no 200 \| not ready`, "  line 1",
		"## Not tested", "- partitions",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestMSFormat(t *testing.T) {
	for _, c := range []struct {
		v    *float64
		want string
	}{{nil, "-"}, {ptr(0.25), "0.2 ms"}, {ptr(12.34), "12.3 ms"}, {ptr(1520), "1.52 s"}} {
		if got := MS(c.v); got != c.want {
			t.Errorf("MS(%v) = %q; want %q", c.v, got, c.want)
		}
	}
}

func ptr(v float64) *float64 { return &v }
