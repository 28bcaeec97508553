package drill

import (
	"math"
	"slices"
	"time"
)

// Phases of a drill's traffic.
const (
	PhaseSetup  = "setup"  // before the probes run
	PhaseBefore = "before" // steady state, up to the fault
	PhaseDuring = "during" // fault injected, until the CP is back
	PhaseAfter  = "after"  // the CP is back, until the drill ends
	PhaseEnd    = "cleanup"
)

// Sample is one probe request.
type Sample struct {
	Target  string        `json:"target"`
	At      time.Time     `json:"at"` // when it was sent
	Latency time.Duration `json:"latency"`
	// Status is the HTTP status, 0 when the request failed (Err).
	Status int    `json:"status"`
	Err    string `json:"error,omitempty"`
}

// OK reports a 2xx answer.
func (s Sample) OK() bool { return s.Status >= 200 && s.Status < 300 }

// StatusClasses counts answers by class.
type StatusClasses struct {
	S2xx            int `json:"2xx"`
	S3xx            int `json:"3xx"`
	S4xx            int `json:"4xx"`
	S5xx            int `json:"5xx"`
	TransportErrors int `json:"transport_errors"`
}

// PhaseStats is the traffic of one target (or "all") in one phase.
type PhaseStats struct {
	Phase      string        `json:"phase"`
	Target     string        `json:"target"`
	Requests   int           `json:"requests"`
	Status     StatusClasses `json:"status"`
	Errors     int           `json:"errors"`
	ErrorRate  float64       `json:"error_rate"`
	P50MS      float64       `json:"p50_ms"`
	P95MS      float64       `json:"p95_ms"`
	P99MS      float64       `json:"p99_ms"`
	MaxMS      float64       `json:"max_ms"`
	DurationMS float64       `json:"duration_ms"`
	RPS        float64       `json:"rps"`
}

// Boundaries split the drill's traffic into phases: before [Start, Fault),
// during [Fault, Recovered), after [Recovered, End]. A zero Fault or
// Recovered means the phase never began (samples stay in the earlier one).
type Boundaries struct {
	Start, Fault, Recovered, End time.Time
}

// PhaseOf names the phase t falls in.
func (b Boundaries) PhaseOf(t time.Time) string {
	switch {
	case !b.Recovered.IsZero() && !t.Before(b.Recovered):
		return PhaseAfter
	case !b.Fault.IsZero() && !t.Before(b.Fault):
		return PhaseDuring
	default:
		return PhaseBefore
	}
}

func (b Boundaries) span(phase string) time.Duration {
	end := b.End
	var from time.Time
	switch phase {
	case PhaseBefore:
		from = b.Start
		if !b.Fault.IsZero() {
			end = b.Fault
		} else if !b.Recovered.IsZero() {
			end = b.Recovered
		}
	case PhaseDuring:
		from = b.Fault
		if !b.Recovered.IsZero() {
			end = b.Recovered
		}
	case PhaseAfter:
		from = b.Recovered
	}
	if from.IsZero() || end.Before(from) {
		return 0
	}
	return end.Sub(from)
}

// Analyze computes the per-phase statistics: one row per phase and target
// (targets in order of first appearance), then one per phase for "all".
// Phases without a sample are left out.
func Analyze(samples []Sample, b Boundaries) []PhaseStats {
	var targets []string
	type key struct{ phase, target string }
	groups := map[key][]Sample{}
	for _, s := range samples {
		if !slices.Contains(targets, s.Target) {
			targets = append(targets, s.Target)
		}
		p := b.PhaseOf(s.At)
		groups[key{p, s.Target}] = append(groups[key{p, s.Target}], s)
		groups[key{p, "all"}] = append(groups[key{p, "all"}], s)
	}
	var out []PhaseStats
	for _, phase := range []string{PhaseBefore, PhaseDuring, PhaseAfter} {
		for _, t := range append(append([]string{}, targets...), "all") {
			g := groups[key{phase, t}]
			if len(g) == 0 {
				continue
			}
			out = append(out, Summarize(phase, t, g, b.span(phase)))
		}
	}
	return out
}

// Summarize counts one group of samples over span (for the rate).
func Summarize(phase, target string, g []Sample, span time.Duration) PhaseStats {
	ps := PhaseStats{Phase: phase, Target: target, Requests: len(g), DurationMS: ms(span)}
	var lat []time.Duration
	for _, s := range g {
		switch {
		case s.Status == 0:
			ps.Status.TransportErrors++
		case s.Status < 300:
			ps.Status.S2xx++
		case s.Status < 400:
			ps.Status.S3xx++
		case s.Status < 500:
			ps.Status.S4xx++
		default:
			ps.Status.S5xx++
		}
		if !s.OK() {
			ps.Errors++
		}
		if s.Status != 0 {
			lat = append(lat, s.Latency)
		}
	}
	if ps.Requests > 0 {
		ps.ErrorRate = float64(ps.Errors) / float64(ps.Requests)
	}
	slices.Sort(lat)
	ps.P50MS = ms(Percentile(lat, 50))
	ps.P95MS = ms(Percentile(lat, 95))
	ps.P99MS = ms(Percentile(lat, 99))
	if len(lat) > 0 {
		ps.MaxMS = ms(lat[len(lat)-1])
	}
	if span > 0 {
		ps.RPS = float64(ps.Requests) / span.Seconds()
	}
	return ps
}

// Percentile is the nearest-rank percentile p (0 < p <= 100) of sorted
// values; 0 for none.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// FindPhase returns the row of phase and target, if any.
func FindPhase(rows []PhaseStats, phase, target string) (PhaseStats, bool) {
	for _, r := range rows {
		if r.Phase == phase && r.Target == target {
			return r, true
		}
	}
	return PhaseStats{}, false
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func msPtr(d time.Duration) *float64 {
	v := ms(d)
	return &v
}
