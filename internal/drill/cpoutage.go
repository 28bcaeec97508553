package drill

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/internal/dp/cache"
	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/storage"
)

// ScenarioCPOutage is the name of the control-plane outage drill.
const ScenarioCPOutage = "cp-outage"

// Scenario is a drill kongfb can run.
type Scenario struct {
	Name        string `json:"name"`
	Summary     string `json:"summary"`
	Description string `json:"description"`
}

// Scenarios lists the drills, in the order `kongfb drill` shows them.
func Scenarios() []Scenario {
	return []Scenario{{Name: ScenarioCPOutage, Summary: "kill the CP under traffic: running, fresh and restarted DPs keep serving, then reconverge", Description: cpOutageDescription}}
}

const cpOutageDescription = "The control plane is killed (SIGKILL) while a data plane serves traffic: " +
	"the running DP must keep serving, a brand-new DP must start from the fallback snapshot, " +
	"a restarted DP from its cache, and every DP must return to the CP once it is back."

// Paths the drill configures and probes.
const (
	probePath  = "/drill"
	changePath = "/drill-after"
)

// CPOutageOptions configure RunCPOutage. Zero durations and rates take
// the defaults of DefaultCPOutageOptions.
type CPOutageOptions struct {
	// Command builds the child processes (nil: DefaultCommand).
	Command CommandFunc
	// WorkDir holds everything the drill writes (children's logs, SQLite,
	// caches, file:// storage). "" = a new temporary directory, removed at
	// the end when the drill passed and Keep is false. A given WorkDir must
	// not exist or be empty, and is always kept.
	WorkDir string
	Keep    bool
	// Storage is the fallback storage the CP exports to (s3://bucket/prefix
	// or file:///dir); "" = file://<workdir>/backup. S3 credentials come
	// from the AWS chain (environment), which the children inherit.
	Storage string
	// ImportStorage is where the fresh DP imports from; "" = Storage.
	ImportStorage string
	// S3Endpoint is an S3-compatible server (--s3-endpoint of the nodes).
	S3Endpoint string

	ProbeInterval time.Duration // between two requests to one DP
	Baseline      time.Duration // traffic before the fault, at least
	Outage        time.Duration // the CP stays down at least this long
	After         time.Duration // traffic after the change that follows recovery, at least

	// Tolerances of the hypothesis.
	MaxErrorRate   float64
	MaxDetect      time.Duration
	MaxTimeToServe time.Duration
	MaxReconverge  time.Duration
	MaxP99         time.Duration
	MaxExport      time.Duration // 0: ElectionTTL + MaxReconverge
	Timeout        time.Duration // the whole drill

	// Settings of the children.
	ElectionTTL      time.Duration // the CP exporter's lease TTL
	ReconnectMin     time.Duration // DPs' --cluster-reconnect-min
	ReconnectMax     time.Duration // DPs' --cluster-reconnect-max
	CPConnectTimeout time.Duration // the fresh DP's --cp-connect-timeout
	RestartDP1       bool          // also restart dp-1 during the outage (cache path)
	ChildLogLevel    string

	// Progress receives one line per event while the drill runs (nil:
	// none).
	Progress io.Writer
	// Version and Commit are kongfb's, for the report.
	Version, Commit string
}

// DefaultCPOutageOptions are the drill's defaults.
func DefaultCPOutageOptions() CPOutageOptions {
	return CPOutageOptions{
		ProbeInterval: 20 * time.Millisecond, Baseline: time.Second, Outage: 3 * time.Second, After: time.Second,
		MaxErrorRate: 0.001, MaxDetect: 5 * time.Second, MaxTimeToServe: 10 * time.Second,
		MaxReconverge: 10 * time.Second, MaxP99: 500 * time.Millisecond, Timeout: 3 * time.Minute,
		ElectionTTL: 3 * time.Second, ReconnectMin: 500 * time.Millisecond, ReconnectMax: time.Second,
		CPConnectTimeout: time.Second, RestartDP1: true, ChildLogLevel: "info",
	}
}

// OptionError is a bad setting: the drill did not start.
type OptionError struct{ Msg string }

func (e *OptionError) Error() string { return e.Msg }

func optErr(format string, a ...any) error { return &OptionError{Msg: fmt.Sprintf(format, a...)} }

func (o *CPOutageOptions) check() error {
	def := DefaultCPOutageOptions()
	durs := []struct {
		flag string
		v    *time.Duration
		d    time.Duration
	}{
		{"--probe-interval", &o.ProbeInterval, def.ProbeInterval}, {"--baseline", &o.Baseline, def.Baseline},
		{"--outage", &o.Outage, def.Outage}, {"--after", &o.After, def.After},
		{"--max-detect", &o.MaxDetect, def.MaxDetect}, {"--max-time-to-serve", &o.MaxTimeToServe, def.MaxTimeToServe},
		{"--max-reconverge", &o.MaxReconverge, def.MaxReconverge}, {"--max-p99", &o.MaxP99, def.MaxP99},
		{"--timeout", &o.Timeout, def.Timeout}, {"--election-ttl", &o.ElectionTTL, def.ElectionTTL},
		{"--dp-reconnect-min", &o.ReconnectMin, def.ReconnectMin}, {"--dp-reconnect-max", &o.ReconnectMax, def.ReconnectMax},
		{"--cp-connect-timeout", &o.CPConnectTimeout, def.CPConnectTimeout},
	}
	for _, d := range durs {
		if *d.v < 0 {
			return optErr("%s must not be negative, got %s", d.flag, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.d
		}
	}
	if o.MaxExport < 0 {
		return optErr("--max-export must not be negative, got %s", o.MaxExport)
	}
	if o.MaxExport == 0 {
		o.MaxExport = o.ElectionTTL + o.MaxReconverge
	}
	if o.MaxErrorRate < 0 || o.MaxErrorRate > 1 {
		return optErr("--max-error-rate must be between 0 and 1, got %g", o.MaxErrorRate)
	}
	if o.ReconnectMax < o.ReconnectMin {
		return optErr("--dp-reconnect-max (%s) is shorter than --dp-reconnect-min (%s)", o.ReconnectMax, o.ReconnectMin)
	}
	if o.ProbeInterval < time.Millisecond {
		return optErr("--probe-interval must be at least 1ms, got %s", o.ProbeInterval)
	}
	for _, s := range []struct{ flag, v string }{{"--storage", o.Storage}, {"--import-storage", o.ImportStorage}} {
		if s.v == "" {
			continue
		}
		if _, err := storage.ParseURL(s.v); err != nil {
			return optErr("%s: %v", s.flag, err)
		}
	}
	if o.WorkDir != "" {
		ents, err := os.ReadDir(o.WorkDir)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return optErr("--workdir %s: %v", o.WorkDir, err)
		case len(ents) > 0:
			return optErr("--workdir %s is not empty: give a new or empty directory (the drill creates a SQLite database, caches and storage there)", o.WorkDir)
		}
	}
	if o.Command == nil {
		o.Command = DefaultCommand
	}
	if o.ChildLogLevel == "" {
		o.ChildLogLevel = def.ChildLogLevel
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	return nil
}

// checkStorageEmpty refuses a given --storage that already holds objects:
// the drill's CP exports its own test configuration there (Kong's
// <version>/config.json included, which Kong data planes import) and its
// exporter prunes old history snapshots, so running against a storage in
// use would replace or delete what is not the drill's. A storage that
// cannot be opened or listed is left to the set-up, which reports it.
func checkStorageEmpty(ctx context.Context, o CPOutageOptions) error {
	if o.Storage == "" {
		return nil // file://<workdir>/backup: new
	}
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := storage.Open(lctx, o.Storage, storage.Options{Endpoint: o.S3Endpoint})
	if err != nil {
		return nil
	}
	defer st.Close()
	for obj, err := range storage.ListAll(lctx, st, "", storage.ListOptions{MaxKeys: 1}) {
		if err != nil {
			return nil
		}
		return optErr("--storage %s is not empty (it holds %s): the drill's CP exports its own configuration there, Kong's <version>/config.json included, and prunes old snapshots; give a new or empty bucket prefix or directory", o.Storage, obj.Key)
	}
	return nil
}

// Probe identities, in the order of the probe table.
type probeDef struct{ id, name, kind, tolerance string }

func (o *CPOutageOptions) probeDefs() []probeDef {
	return []probeDef{
		{"ss.dp1", "steady state: dp-1 serves the route", KindSteadyState, "200 on GET " + probePath + ", dp-1 on the CP's hash"},
		{"ss.snapshot", "steady state: newest verified snapshot = dp-1's config", KindSteadyState, "same config_hash within " + o.MaxExport.String()},
		{"ss.cache", "steady state: dp-1 has its config cache", KindSteadyState, "<prefix>/" + cache.FileName + " present"},
		{"c.before", "error rate before the fault (all DPs)", KindContinuous, "<= " + Pct(o.MaxErrorRate)},
		{"m.ttd", "dp-1 detects the CP loss (TTD)", KindMethod, "<= " + o.MaxDetect.String()},
		{"c.dp1.errors", "dp-1 error rate during the outage", KindContinuous, "<= " + Pct(o.MaxErrorRate)},
		{"c.dp1.p99", "dp-1 p99 latency during the outage", KindContinuous, "<= " + o.MaxP99.String()},
		{"m.fresh.tts", "fresh DP (--import) time to serve", KindMethod, "first 200 <= " + o.MaxTimeToServe.String() + " after its start"},
		{"m.fresh.source", "fresh DP serves the snapshot", KindMethod, "config_source=fallback, hash = snapshot's"},
		{"m.cache", "dp-1 restarted during the outage serves its cache", KindMethod, "config_source=cache, pre-fault hash, first 200 <= " + o.MaxTimeToServe.String()},
		{"m.reconverge", "every DP back on the CP (reconverge)", KindMethod, "config_source=cp, CP's hash <= " + o.MaxReconverge.String() + " after the CP is up"},
		{"m.change", "a change after recovery reaches every DP", KindMethod, "new route served <= " + o.MaxReconverge.String()},
		{"m.export", "the storage holds the change after recovery", KindMethod, "verified snapshot <= " + o.MaxExport.String()},
		{"c.after", "error rate after recovery (all DPs)", KindContinuous, "<= " + Pct(o.MaxErrorRate)},
		{"r.cleanup", "rollback: every child stopped, no listener left", KindRollback, "0 processes, 0 listeners"},
	}
}

// cpOutage is one run of the drill.
type cpOutage struct {
	o       CPOutageOptions
	rep     *Report
	start   time.Time
	phase   string
	results map[string]Probe
	skipped map[string]string

	dir         string
	tempDir     bool
	cert, key   string
	upstream    *http.Server
	upstreamURL string
	storeURL    string
	importURL   string
	store       storage.Store

	cpArgs  []string
	cluster string // the CP's cluster address, kept across its restart
	cp      *child
	dp1     *child
	dp2     *child
	dp2Live bool // dp-2 is being probed
	all     []*child

	prober  *Prober
	samples []Sample
	bounds  Boundaries
	cpHash  string // the CP's hash before the fault
	snap    *SnapshotInfo
	fault   time.Time
}

// RunCPOutage runs the control-plane outage drill. The error is an
// *OptionError for bad options (nothing was started); every other failure
// ends up in the report (verdict aborted or deviated). The children are
// stopped before it returns, whatever happened, and also when ctx ends.
func RunCPOutage(ctx context.Context, o CPOutageOptions) (*Report, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := checkStorageEmpty(ctx, o); err != nil {
		return nil, err
	}
	d := &cpOutage{o: o, start: time.Now(), phase: PhaseSetup, results: map[string]Probe{}, skipped: map[string]string{}}
	d.rep = d.newReport()
	ctx, cancel := context.WithTimeoutCause(ctx, o.Timeout, fmt.Errorf("the drill's --timeout (%s) passed", o.Timeout))
	defer cancel()

	err := d.run(ctx)
	if ctx.Err() != nil {
		// Interrupted or out of time: that is the reason, whatever step
		// noticed it.
		err = fmt.Errorf("%v, in the %s phase", context.Cause(ctx), d.phase)
	}
	if err != nil {
		d.rep.AbortReason = err.Error()
		d.event("", "drill aborted", err.Error())
		if ctx.Err() == nil && d.cp != nil && !d.gapFor(err) {
			// Whatever failed went through the CP's Admin API or cluster
			// listener: its log is where to look first.
			d.gap("drill aborted in the "+d.phase+" phase", err.Error(), d.cp)
		}
	}
	d.finishTraffic()
	d.phase = PhaseEnd
	d.cleanup()
	d.rep.Probes = nil
	for _, p := range o.probeDefs() {
		if r, ok := d.results[p.id]; ok {
			d.rep.Probes = append(d.rep.Probes, r)
			continue
		}
		why := d.skipped[p.id]
		if why == "" {
			why = "not reached: the drill aborted before this step"
		}
		d.rep.AddNotRun(p.name, p.kind, p.tolerance, why)
	}
	for _, c := range d.all {
		d.rep.Nodes = append(d.rep.Nodes, c.node())
	}
	d.rep.Finish()
	d.removeWorkDir()
	d.rep.EndedAt = time.Now().UTC()
	d.rep.DurationMS = ms(time.Since(d.start))
	return d.rep, nil
}

func (d *cpOutage) newReport() *Report {
	o := d.o
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	host, _ := os.Hostname()
	operator := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		operator = u.Username
	}
	return &Report{
		SchemaVersion: SchemaVersion,
		DrillID:       "cp-outage-" + d.start.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(id),
		Scenario:      ScenarioCPOutage, Description: cpOutageDescription,
		KongfbVersion: o.Version, KongfbCommit: o.Commit, KongVersion: config.KongVersion,
		Operator: operator, Host: host, StartedAt: d.start.UTC(),
		Settings: Settings{
			ProbeIntervalMS: ms(o.ProbeInterval), MaxErrorRate: o.MaxErrorRate, MaxDetectMS: ms(o.MaxDetect),
			MaxTimeToServeMS: ms(o.MaxTimeToServe), MaxReconvergeMS: ms(o.MaxReconverge), MaxP99MS: ms(o.MaxP99),
			MaxExportMS: ms(o.MaxExport), TimeoutMS: ms(o.Timeout), ElectionTTLMS: ms(o.ElectionTTL),
			ReconnectMinMS: ms(o.ReconnectMin), ReconnectMaxMS: ms(o.ReconnectMax), RestartDP1: o.RestartDP1,
		},
		Timeline: []Event{}, Probes: []Probe{}, Rollback: []Action{}, Gaps: []Gap{}, Nodes: []Node{},
		NotTested: []string{
			"a CP that is up but cannot read its database (could push an empty configuration, Kong/kong#12861)",
			"a network partition between the DPs and the CP (the CP process is killed: the kernel closes its connections, so detection is immediate; a silent partition is detected only after --cluster-ping-wait)",
			"the fallback storage down at the same time (the fresh DP then has nothing to import)",
			"stale, corrupt, tampered or foreign-version snapshots (rejection is covered by the importer's tests, not by this drill)",
			"the exporter dying mid-export, or several exporters competing (one CP exporter here)",
			"signed or encrypted snapshots (the drill's CP exports plain snapshots)",
			"PostgreSQL and several CPs (one CP on SQLite); production reconnect timing (the DPs reconnect after " +
				o.ReconnectMin.String() + "-" + o.ReconnectMax.String() + ", Kong's is 5-10 s)",
			"load: the prober sends one request at a time per DP every " + o.ProbeInterval.String(),
		},
	}
}

// event records a timeline entry and prints a progress line.
func (d *cpOutage) event(node, name, detail string) {
	now := time.Now()
	e := Event{At: now.UTC(), TMS: ms(now.Sub(d.start)), Phase: d.phase, Node: node, Name: name, Detail: detail}
	d.rep.Timeline = append(d.rep.Timeline, e)
	line := fmt.Sprintf("drill %8.3fs  %-7s %-5s %s", e.TMS/1000, e.Phase, node, name)
	if detail != "" {
		line += ": " + detail
	}
	fmt.Fprintln(d.o.Progress, line)
}

func (d *cpOutage) probe(id, observed string, ok bool) {
	for _, p := range d.o.probeDefs() {
		if p.id == id {
			st := ProbeFail
			if ok {
				st = ProbePass
			}
			d.results[id] = Probe{Name: p.name, Kind: p.kind, Tolerance: p.tolerance, Observed: observed, Status: st}
			if !ok {
				d.event("", "probe failed", p.name+": "+observed)
			}
			return
		}
	}
	panic("drill: unknown probe " + id)
}

// gap records a failed step with the tail of a child's log.
func (d *cpOutage) gap(step, observed string, c *child) {
	g := Gap{Step: step, Observed: observed}
	if c != nil {
		g.Log, g.LogTail = c.logPath, c.logTail(15)
	}
	d.rep.Gaps = append(d.rep.Gaps, g)
}

// gapFor reports whether a gap already describes err.
func (d *cpOutage) gapFor(err error) bool {
	for _, g := range d.rep.Gaps {
		if strings.Contains(err.Error(), g.Observed) {
			return true
		}
	}
	return false
}

// observe is how long a measurement is followed: past its tolerance, so
// that the report shows the value even when it is over.
func observe(tol time.Duration) time.Duration { return max(2*tol, tol+5*time.Second) }

const setupWait = 30 * time.Second

func (d *cpOutage) run(ctx context.Context) error {
	if err := d.setup(ctx); err != nil {
		return err
	}
	if err := d.steadyState(ctx); err != nil {
		return err
	}
	if err := d.injectFault(ctx); err != nil {
		return err
	}
	if err := d.freshDP(ctx); err != nil {
		return err
	}
	if d.o.RestartDP1 {
		if err := d.restartDP1(ctx); err != nil {
			return err
		}
	} else {
		d.skipped["m.cache"] = "skipped: --restart-dp1=false"
	}
	if err := sleepUntil(ctx, d.fault.Add(d.o.Outage)); err != nil {
		return err
	}
	return d.recover(ctx)
}

func sleepUntil(ctx context.Context, t time.Time) error {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(wait):
		return nil
	}
}

// --- 1. set-up ---------------------------------------------------------------

func (d *cpOutage) setup(ctx context.Context) error {
	o := d.o
	if o.WorkDir == "" {
		dir, err := os.MkdirTemp("", "kongfb-drill-")
		if err != nil {
			return fmt.Errorf("create the work dir: %w", err)
		}
		d.dir, d.tempDir = dir, true
	} else {
		dir, err := filepath.Abs(o.WorkDir)
		if err != nil {
			return fmt.Errorf("--workdir %s: %w", o.WorkDir, err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create the work dir: %w", err)
		}
		d.dir = dir
	}
	d.rep.Settings.WorkDir = d.dir
	d.event("", "work dir", d.dir)

	certPEM, keyPEM, err := cluster.GenerateSharedCert(1)
	if err != nil {
		return fmt.Errorf("generate the cluster certificate: %w", err)
	}
	d.cert, d.key = filepath.Join(d.dir, "cluster.crt"), filepath.Join(d.dir, "cluster.key")
	if err := os.WriteFile(d.cert, certPEM, 0o644); err != nil {
		return fmt.Errorf("write the cluster certificate: %w", err)
	}
	if err := os.WriteFile(d.key, keyPEM, 0o600); err != nil {
		return fmt.Errorf("write the cluster key: %w", err)
	}
	d.event("", "cluster certificate generated", d.cert)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	d.upstream = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "kongfb drill upstream: %s\n", r.URL.Path)
	})}
	go func() { _ = d.upstream.Serve(ln) }()
	d.upstreamURL = "http://" + ln.Addr().String()
	d.event("upstream", "listening", d.upstreamURL)

	d.storeURL = o.Storage
	if d.storeURL == "" {
		d.storeURL = "file://" + filepath.Join(d.dir, "backup")
	}
	d.importURL = o.ImportStorage
	if d.importURL == "" {
		d.importURL = d.storeURL
	}
	d.rep.Settings.Storage, d.rep.Settings.ImportStorage = d.storeURL, d.importURL
	st, err := storage.Open(ctx, d.storeURL, storage.Options{Endpoint: o.S3Endpoint, CreateBucket: strings.HasPrefix(d.storeURL, "file:")})
	if err != nil {
		return fmt.Errorf("open the fallback storage %s: %w", d.storeURL, err)
	}
	d.store = st

	d.cpArgs = []string{"serve", "cp", "--log-level", o.ChildLogLevel,
		"--prefix", filepath.Join(d.dir, "cp"),
		"--admin-listen", "127.0.0.1:0", "--status-listen", "127.0.0.1:0",
		"--cluster-cert", d.cert, "--cluster-cert-key", d.key,
		"--export", "--fallback-storage", d.storeURL, "--export-delay", "0",
		"--election-ttl", o.ElectionTTL.String()}
	if o.S3Endpoint != "" {
		d.cpArgs = append(d.cpArgs, "--s3-endpoint", o.S3Endpoint)
	}
	// The restarted CP must bind the first one's cluster address again,
	// after the outage: a port the kernel hands out on its own (port 0, the
	// ephemeral range) can meanwhile become the source port of any outgoing
	// connection on the host, and the restart then fails with "address
	// already in use" (seen with MinIO's S3 traffic). So the cluster port
	// is a free one below the ephemeral range.
	for attempt := 1; ; attempt++ {
		addr, name := stableListenAddr(), "cp-1"
		if attempt > 1 {
			name = fmt.Sprintf("cp-1.try%d", attempt)
		}
		d.cp = nil
		err := d.startCP(ctx, name, addr)
		if err == nil {
			break
		}
		taken := d.cp != nil && d.cp.exited() && strings.Contains(strings.Join(d.cp.logTail(5), "\n"), "address already in use")
		if attempt == 3 || ctx.Err() != nil || !taken {
			return err
		}
		d.event("cp", "cluster port taken meanwhile, trying another", addr)
		if n := len(d.rep.Gaps); n > 0 && d.rep.Gaps[n-1].Log == d.cp.logPath {
			d.rep.Gaps = d.rep.Gaps[:n-1]
		}
	}
	d.cluster = d.cp.ready.Cluster

	c, err := d.startDP(ctx, "dp-1", "dp1", nil)
	if err != nil {
		return err
	}
	d.dp1 = c
	return nil
}

func (d *cpOutage) startCP(ctx context.Context, name, clusterListen string) error {
	args := append(append([]string{}, d.cpArgs...), "--cluster-listen", clusterListen)
	c, err := startChild(d.o.Command, d.dir, name, "control_plane", args)
	if err != nil {
		return err
	}
	d.all = append(d.all, c)
	d.cp = c
	d.event("cp", "process started", fmt.Sprintf("%s, pid %d", name, c.pid()))
	rctx, cancel := context.WithTimeout(ctx, setupWait)
	defer cancel()
	if err := c.waitReady(rctx); err != nil {
		if ctx.Err() == nil {
			d.gap("start the control plane", err.Error(), c)
		}
		return err
	}
	d.event("cp", "listening", fmt.Sprintf("admin %s, cluster %s (took %s)",
		strings.Join(c.ready.Admin, ","), c.ready.Cluster, time.Since(c.started).Round(time.Millisecond)))
	return nil
}

func (d *cpOutage) dpArgs(prefix string, extra []string) []string {
	args := []string{"serve", "dp", "--log-level", d.o.ChildLogLevel,
		"--cp", d.cluster, "--cluster-cert", d.cert, "--cluster-cert-key", d.key,
		"--prefix", filepath.Join(d.dir, prefix),
		"--proxy-listen", "127.0.0.1:0", "--status-listen", "127.0.0.1:0",
		"--cluster-reconnect-min", d.o.ReconnectMin.String(), "--cluster-reconnect-max", d.o.ReconnectMax.String()}
	return append(args, extra...)
}

// startDP starts a DP child and waits until its listeners are bound.
func (d *cpOutage) startDP(ctx context.Context, name, prefix string, extra []string) (*child, error) {
	c, err := startChild(d.o.Command, d.dir, name, "data_plane", d.dpArgs(prefix, extra))
	if err != nil {
		return nil, err
	}
	d.all = append(d.all, c)
	node := strings.SplitN(name, ".", 2)[0]
	d.event(node, "process started", fmt.Sprintf("%s, pid %d", name, c.pid()))
	rctx, cancel := context.WithTimeout(ctx, setupWait)
	defer cancel()
	if err := c.waitReady(rctx); err != nil {
		if ctx.Err() == nil {
			d.gap("start "+name, err.Error(), c)
		}
		return c, err
	}
	if len(c.ready.Proxy) == 0 || c.ready.statusAddr() == "" {
		return c, fmt.Errorf("%s: its ready file names no proxy or status listener (%s)", name, c.readyPath)
	}
	d.event(node, "listening", fmt.Sprintf("proxy %s, status %s (took %s)",
		c.ready.Proxy[0], c.ready.statusAddr(), time.Since(c.started).Round(time.Millisecond)))
	return c, nil
}

func proxyOf(c *child) string  { return c.ready.Proxy[0] }
func statusOf(c *child) string { return c.ready.statusAddr() }

// --- 2. steady state -----------------------------------------------------------

func (d *cpOutage) steadyState(ctx context.Context) error {
	admin := d.cp.ready.Admin[0]
	if err := adminPost(ctx, admin, "/services", map[string]any{"name": "drill-upstream", "url": d.upstreamURL}); err != nil {
		return err
	}
	if err := adminPost(ctx, admin, "/services/drill-upstream/routes", map[string]any{"name": "drill", "paths": []string{probePath}}); err != nil {
		return err
	}
	d.event("cp", "configured", "service drill-upstream -> "+d.upstreamURL+", route "+probePath)

	hash, err := cpConfigHash(ctx, admin)
	if err != nil {
		return err
	}
	d.cpHash = hash
	var last string
	ok, perr := poll(ctx, 10*time.Millisecond, setupWait, func() (bool, error) {
		code, err := getCode(ctx, proxyOf(d.dp1), probePath)
		if err != nil {
			return false, err
		}
		st, err := getStatus(ctx, statusOf(d.dp1))
		if err != nil {
			return false, err
		}
		last = fmt.Sprintf("GET %s -> %d, config_source %s, hash %s", probePath, code, st.source(), st.ConfigurationHash)
		return code == http.StatusOK && st.source() == dp.SourceCP && st.ConfigurationHash == hash, nil
	})
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if !ok {
		obs := "not within " + setupWait.String() + ": " + last
		if perr != nil {
			obs += " (" + perr.Error() + ")"
		}
		d.probe("ss.dp1", obs, false)
		d.gap("steady state: dp-1 serves the route", obs, d.dp1)
		return errors.New("steady state not reached: dp-1 does not serve the CP's configuration")
	}
	d.probe("ss.dp1", "200, config_source cp, hash "+short(hash), true)
	d.event("dp-1", "serves the CP's configuration", "hash "+hash)

	// Traffic from here on.
	d.prober = NewProber(probePath, d.o.ProbeInterval, 2*time.Second)
	d.bounds.Start = time.Now()
	d.prober.Add("dp-1", proxyOf(d.dp1))
	d.phase = PhaseBefore
	d.event("", "prober started", fmt.Sprintf("GET %s every %s per DP", probePath, d.o.ProbeInterval))

	// The exporter has written what dp-1 serves: read it back as an
	// importer would (list, fetch, verify).
	var lastErr string
	ok, _ = poll(ctx, 50*time.Millisecond, d.o.MaxExport, func() (bool, error) {
		si, err := newestSnapshot(ctx, d.store)
		if err != nil {
			lastErr = err.Error()
			return false, nil
		}
		lastErr = "newest verified snapshot has hash " + si.Hash
		d.snap = si
		return si.Hash == hash, nil
	})
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if !ok {
		obs := "no verified snapshot of " + hash + " in " + d.storeURL + ": " + lastErr
		d.probe("ss.snapshot", obs, false)
		d.gap("steady state: snapshot exported", obs, d.cp)
		return errors.New("steady state not reached: the CP did not export the configuration to " + d.storeURL)
	}
	d.probe("ss.snapshot", fmt.Sprintf("hash %s, %s, term %d, %s old", short(d.snap.Hash), d.snap.Kind, d.snap.Term, time.Since(d.snap.CreatedAt).Round(time.Millisecond)), true)
	d.event("storage", "snapshot verified", d.snap.Key+" hash "+d.snap.Hash)

	cachePath := filepath.Join(d.dir, "dp1", cache.FileName)
	if _, err := os.Stat(cachePath); err != nil {
		d.probe("ss.cache", err.Error(), false)
		return errors.New("steady state not reached: dp-1 has no config cache")
	}
	d.probe("ss.cache", cachePath, true)
	return sleepUntil(ctx, d.bounds.Start.Add(d.o.Baseline))
}

// --- 3. fault ------------------------------------------------------------------

func (d *cpOutage) injectFault(ctx context.Context) error {
	d.fault = time.Now()
	d.bounds.Fault = d.fault
	d.phase = PhaseDuring
	d.event("cp", "fault injected", fmt.Sprintf("SIGKILL pid %d", d.cp.pid()))
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.cp.kill(kctx); err != nil {
		return err
	}
	d.event("cp", "process gone", d.cp.exitText())
	m := &d.rep.Metrics
	m.Snapshot = d.snap
	match := d.snap.Hash == d.cpHash
	m.SnapshotMatchesCP = &match
	if !d.snap.CreatedAt.IsZero() {
		m.SnapshotAgeAtFaultMS = msPtr(d.fault.Sub(d.snap.CreatedAt))
	}

	var detected time.Time
	ok, _ := poll(ctx, 5*time.Millisecond, observe(d.o.MaxDetect), func() (bool, error) {
		st, err := getStatus(ctx, statusOf(d.dp1))
		if err != nil {
			return false, err
		}
		if st.Kongfb.CPConnected != nil && !*st.Kongfb.CPConnected {
			detected = time.Now()
			return true, nil
		}
		return false, nil
	})
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if !ok {
		d.probe("m.ttd", "dp-1 still reports cp_connected=true after "+observe(d.o.MaxDetect).String(), false)
		d.gap("dp-1 detects the CP loss", "cp_connected still true", d.dp1)
		return nil
	}
	ttd := detected.Sub(d.fault)
	m.TTDMS = msPtr(ttd)
	d.event("dp-1", "detected the CP loss", "cp_connected=false after "+ttd.Round(time.Microsecond*100).String())
	d.probe("m.ttd", fmtMS(ms(ttd)), ttd <= d.o.MaxDetect)
	return nil
}

// --- 4. a fresh DP while the CP is down -----------------------------------------

func (d *cpOutage) freshDP(ctx context.Context) error {
	extra := []string{"--import", "--fallback-storage", d.importURL,
		"--cp-connect-timeout", d.o.CPConnectTimeout.String(),
		"--fallback-retry-min", "100ms", "--fallback-retry-max", "1s"}
	if d.o.S3Endpoint != "" {
		extra = append(extra, "--s3-endpoint", d.o.S3Endpoint)
	}
	c, err := d.startDP(ctx, "dp-2", "dp2", extra)
	if c != nil {
		d.dp2 = c
	}
	if err != nil {
		return err
	}
	d.rep.Metrics.FreshDPListenMS = msPtr(time.Since(c.started))
	served, ttsObs, err := d.timeToServe(ctx, c, "dp-2")
	if err != nil {
		return err
	}
	if !served {
		d.probe("m.fresh.tts", ttsObs, false)
		st, _ := getStatus(ctx, statusOf(c))
		obs := "does not serve: config_source " + orNone(st.source())
		if fb := st.Kongfb.Fallback; fb != nil {
			obs += ", fallback.state " + fb.State
			if fb.LastError != nil {
				obs += ", last_error " + *fb.LastError
			}
		}
		d.probe("m.fresh.source", obs, false)
		d.gap("fresh DP serves from the fallback storage", obs, c)
		return nil
	}
	tts := d.rep.Metrics.TimeToServeMS
	d.probe("m.fresh.tts", fmtMS(*tts), *tts <= ms(d.o.MaxTimeToServe))
	st, err := getStatus(ctx, statusOf(c))
	if err != nil {
		d.probe("m.fresh.source", err.Error(), false)
		return nil
	}
	snapKey := ""
	if fb := st.Kongfb.Fallback; fb != nil {
		a := fb.Attempts
		d.rep.Metrics.ImportAttempts = &a
		if fb.Snapshot != nil {
			snapKey = *fb.Snapshot
		}
	}
	which := "the verified snapshot"
	if snapKey != d.snap.Key {
		which = "snapshot " + orNone(snapKey)
	}
	obs := fmt.Sprintf("config_source %s, hash %s, %s", orNone(st.source()), short(st.ConfigurationHash), which)
	ok := st.source() == dp.SourceFallback && st.ConfigurationHash == d.snap.Hash
	d.probe("m.fresh.source", obs, ok)
	if !ok {
		d.gap("fresh DP serves the snapshot", obs, c)
	}
	d.event("dp-2", "serves", obs)
	d.prober.Add("dp-2", proxyOf(c))
	d.dp2Live = true
	return nil
}

// timeToServe polls GET probePath through c until 200: the time from the
// process start is the metric (TimeToServeMS for dp-2, the cache restart
// for dp-1). served is false when it did not serve within observe(max).
func (d *cpOutage) timeToServe(ctx context.Context, c *child, node string) (served bool, obs string, err error) {
	var last string
	var at time.Time
	ok, _ := poll(ctx, 5*time.Millisecond, observe(d.o.MaxTimeToServe)-time.Since(c.started), func() (bool, error) {
		code, err := getCode(ctx, proxyOf(c), probePath)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("GET %s -> %d", probePath, code)
		if code == http.StatusOK {
			at = time.Now()
			return true, nil
		}
		return false, nil
	})
	if ctx.Err() != nil {
		return false, "", context.Cause(ctx)
	}
	if !ok {
		return false, "no 200 within " + observe(d.o.MaxTimeToServe).String() + " (last: " + last + ")", nil
	}
	took := at.Sub(c.started)
	if node == "dp-2" {
		d.rep.Metrics.TimeToServeMS = msPtr(took)
	} else {
		d.rep.Metrics.CacheRestartTimeToServeMS = msPtr(took)
	}
	d.event(node, "first 200", took.Round(100*time.Microsecond).String()+" after the process started")
	return true, "", nil
}

// --- 5. dp-1 restarts while the CP is down ---------------------------------------

func (d *cpOutage) restartDP1(ctx context.Context) error {
	d.prober.Pause("dp-1")
	d.event("dp-1", "restart", fmt.Sprintf("probing paused; SIGKILL pid %d", d.dp1.pid()))
	kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.dp1.kill(kctx); err != nil {
		return err
	}
	c, err := d.startDP(ctx, "dp-1.restart", "dp1", nil)
	if c != nil {
		d.dp1 = c
	}
	if err != nil {
		return err
	}
	served, obs, err := d.timeToServe(ctx, c, "dp-1")
	if err != nil {
		return err
	}
	if !served {
		d.probe("m.cache", obs, false)
		d.gap("dp-1 restarted from its cache", obs, c)
		return nil
	}
	st, err := getStatus(ctx, statusOf(c))
	if err != nil {
		d.probe("m.cache", err.Error(), false)
		return nil
	}
	tts := *d.rep.Metrics.CacheRestartTimeToServeMS
	obs = fmt.Sprintf("config_source %s, hash %s, first 200 after %s", orNone(st.source()), short(st.ConfigurationHash), fmtMS(tts))
	ok := st.source() == dp.SourceCache && st.ConfigurationHash == d.cpHash && tts <= ms(d.o.MaxTimeToServe)
	d.probe("m.cache", obs, ok)
	if !ok {
		d.gap("dp-1 restarted from its cache", obs, c)
	}
	d.prober.Resume("dp-1", proxyOf(c))
	d.event("dp-1", "serves its cache; probing resumed", "proxy "+proxyOf(c))
	return nil
}

// --- 6. recovery -------------------------------------------------------------------

func (d *cpOutage) dps() []*child {
	out := []*child{d.dp1}
	if d.dp2 != nil {
		out = append(out, d.dp2)
	}
	return out
}

func nodeName(c *child) string { return strings.SplitN(c.name, ".", 2)[0] }

func (d *cpOutage) recover(ctx context.Context) error {
	if err := d.startCP(ctx, "cp-2", d.cluster); err != nil {
		return fmt.Errorf("restart the control plane on %s: %w", d.cluster, err)
	}
	ready := time.Now()
	d.rep.Metrics.CPRestartMS = msPtr(ready.Sub(d.cp.started))
	d.bounds.Recovered = ready
	d.phase = PhaseAfter
	admin := d.cp.ready.Admin[0]
	hash, err := cpConfigHash(ctx, admin)
	if err != nil {
		return err
	}
	if hash != d.cpHash {
		d.event("cp", "configuration differs after the restart", "hash "+hash+", was "+d.cpHash)
	}

	back := map[string]bool{}
	ok, _ := poll(ctx, 10*time.Millisecond, observe(d.o.MaxReconverge), func() (bool, error) {
		all := true
		for _, c := range d.dps() {
			n := nodeName(c)
			if back[n] {
				continue
			}
			st, err := getStatus(ctx, statusOf(c))
			if err == nil && st.source() == dp.SourceCP && st.connected() && st.ConfigurationHash == hash {
				back[n] = true
				d.event(n, "back on the CP", "config_source cp, hash "+hash)
				continue
			}
			all = false
		}
		return all, nil
	})
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if ok {
		took := time.Since(ready)
		d.rep.Metrics.ReconvergeMS = msPtr(took)
		d.probe("m.reconverge", fmtMS(ms(took)), took <= d.o.MaxReconverge)
	} else {
		var lag []string
		for _, c := range d.dps() {
			if !back[nodeName(c)] {
				st, _ := getStatus(ctx, statusOf(c))
				lag = append(lag, fmt.Sprintf("%s: config_source %s, hash %s, cp_connected %v", nodeName(c), orNone(st.source()), st.ConfigurationHash, st.connected()))
			}
		}
		obs := "not within " + observe(d.o.MaxReconverge).String() + ": " + strings.Join(lag, "; ")
		d.probe("m.reconverge", obs, false)
		d.gap("every DP back on the CP", obs, nil)
	}
	if d.dp2 != nil && !d.dp2Live && back["dp-2"] {
		d.prober.Add("dp-2", proxyOf(d.dp2))
		d.dp2Live = true
	}

	// A change made now reaches every DP, and the storage.
	if err := adminPost(ctx, admin, "/services/drill-upstream/routes", map[string]any{"name": "drill-after", "paths": []string{changePath}}); err != nil {
		return err
	}
	changed := time.Now()
	d.event("cp", "configuration changed", "route "+changePath+" added")
	serving := map[string]bool{}
	ok, _ = poll(ctx, 10*time.Millisecond, observe(d.o.MaxReconverge), func() (bool, error) {
		all := true
		for _, c := range d.dps() {
			n := nodeName(c)
			if serving[n] {
				continue
			}
			if code, err := getCode(ctx, proxyOf(c), changePath); err == nil && code == http.StatusOK {
				serving[n] = true
				d.event(n, "serves the change", "GET "+changePath+" -> 200")
				continue
			}
			all = false
		}
		return all, nil
	})
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if ok {
		now := time.Now()
		took := now.Sub(changed)
		d.rep.Metrics.ChangePropagationMS = msPtr(took)
		d.rep.Metrics.RTOMS = msPtr(now.Sub(d.fault))
		d.probe("m.change", fmtMS(ms(took)), took <= d.o.MaxReconverge)
		d.event("", "full service restored", "RTO "+now.Sub(d.fault).Round(time.Millisecond).String())
	} else {
		var missing []string
		for _, c := range d.dps() {
			if !serving[nodeName(c)] {
				missing = append(missing, nodeName(c))
			}
		}
		d.probe("m.change", "not served by "+strings.Join(missing, ", ")+" within "+observe(d.o.MaxReconverge).String(), false)
	}

	newHash, err := cpConfigHash(ctx, admin)
	if err != nil {
		return err
	}
	var lastErr string
	ok, _ = poll(ctx, 50*time.Millisecond, observe(d.o.MaxExport), func() (bool, error) {
		si, err := newestSnapshot(ctx, d.store)
		if err != nil {
			lastErr = err.Error()
			return false, nil
		}
		lastErr = "newest verified snapshot has hash " + si.Hash
		return si.Hash == newHash, nil
	})
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if ok {
		took := time.Since(changed)
		d.rep.Metrics.ExportAfterRecoveryMS = msPtr(took)
		d.probe("m.export", fmtMS(ms(took)), took <= d.o.MaxExport)
		d.event("storage", "snapshot of the change verified", "hash "+newHash)
	} else {
		obs := "not within " + observe(d.o.MaxExport).String() + ": " + lastErr
		d.probe("m.export", obs, false)
		d.gap("the storage holds the change after recovery", obs, d.cp)
	}
	return sleepUntil(ctx, time.Now().Add(d.o.After))
}

// --- 7. traffic, rollback and clean-up ---------------------------------------------

// finishTraffic stops the prober and evaluates the continuous probes.
func (d *cpOutage) finishTraffic() {
	if d.prober == nil {
		return
	}
	d.samples = d.prober.Stop()
	d.bounds.End = time.Now()
	d.prober = nil
	d.event("", "prober stopped", fmt.Sprintf("%d requests", len(d.samples)))
	m := &d.rep.Metrics
	m.Requests = len(d.samples)
	m.Phases = Analyze(d.samples, d.bounds)
	rate := func(id, phase, target string) {
		ps, ok := FindPhase(m.Phases, phase, target)
		switch {
		case (!ok || ps.Requests == 0) && d.rep.AbortReason != "":
			d.skipped[id] = "no requests before the drill aborted"
		case !ok || ps.Requests == 0:
			d.probe(id, "no requests", false)
		default:
			d.probe(id, fmt.Sprintf("%s (%d of %d)", Pct(ps.ErrorRate), ps.Errors, ps.Requests), ps.ErrorRate <= d.o.MaxErrorRate)
		}
	}
	rate("c.before", PhaseBefore, "all")
	if !d.bounds.Fault.IsZero() {
		rate("c.dp1.errors", PhaseDuring, "dp-1")
		if ps, ok := FindPhase(m.Phases, PhaseDuring, "dp-1"); ok && ps.Requests > 0 {
			d.probe("c.dp1.p99", fmtMS(ps.P99MS), ps.P99MS <= ms(d.o.MaxP99))
		} else if d.rep.AbortReason != "" {
			d.skipped["c.dp1.p99"] = "no requests before the drill aborted"
		} else {
			d.probe("c.dp1.p99", "no requests", false)
		}
	}
	if !d.bounds.Recovered.IsZero() {
		rate("c.after", PhaseAfter, "all")
	}
}

// cleanup stops every child, the upstream and the storage client, and
// checks that nothing is left: no process, no listener.
func (d *cpOutage) cleanup() {
	act := func(name, result string, ok bool) {
		d.rep.Rollback = append(d.rep.Rollback, Action{Name: name, Result: result, OK: ok})
		d.event("", name, result)
	}
	// Data planes first, then the control plane: the reverse of the start.
	for i := len(d.all) - 1; i >= 0; i-- {
		c := d.all[i]
		res, err := c.stop(10 * time.Second)
		if err != nil {
			act("stop "+c.name, err.Error(), false)
			continue
		}
		act("stop "+c.name, res, true)
	}
	if d.upstream != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := d.upstream.Shutdown(sctx)
		cancel()
		act("stop the upstream", errText(err, "stopped"), err == nil)
	}
	if d.store != nil {
		_ = d.store.Close()
	}
	if len(d.all) == 0 {
		return
	}
	// Residual state: every child reaped, none of their addresses answers.
	var running, listening []string
	addrs := 0
	for _, c := range d.all {
		if !c.exited() {
			running = append(running, fmt.Sprintf("%s (pid %d)", c.name, c.pid()))
		}
		for _, a := range c.node().Listen {
			addrs++
			if conn, err := net.DialTimeout("tcp", a, 500*time.Millisecond); err == nil {
				conn.Close()
				listening = append(listening, c.name+" "+a)
			}
		}
	}
	obs := fmt.Sprintf("%d processes running, %d of %d addresses still accept connections", len(running), len(listening), addrs)
	if len(running)+len(listening) > 0 {
		obs += ": " + strings.Join(append(running, listening...), ", ")
	}
	ok := len(running) == 0 && len(listening) == 0
	act("residual state", obs, ok)
	d.probe("r.cleanup", obs, ok)
}

func (d *cpOutage) removeWorkDir() {
	if d.dir == "" {
		return
	}
	keep := !d.tempDir || d.o.Keep || !d.rep.Passed()
	d.rep.Artifact.WorkDirKept = keep
	if keep {
		why := "kept"
		switch {
		case !d.tempDir:
			why = "kept (--workdir)"
		case d.o.Keep:
			why = "kept (--keep)"
		default:
			why = "kept: the drill did not pass (logs in " + filepath.Join(d.dir, "logs") + ")"
		}
		d.rep.Rollback = append(d.rep.Rollback, Action{Name: "work dir " + d.dir, Result: why, OK: true})
		return
	}
	err := os.RemoveAll(d.dir)
	d.rep.Rollback = append(d.rep.Rollback, Action{Name: "work dir " + d.dir, Result: errText(err, "removed"), OK: err == nil})
}

func errText(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

// short is the first 12 characters of a hash, as in the snapshot keys.
func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
