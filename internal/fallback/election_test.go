package fallback

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/storage"
)

func TestNewElectionOptions(t *testing.T) {
	store, err := storage.Open(context.Background(), "file://"+t.TempDir(), storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, tc := range []struct {
		opts ElectionOptions
		want string
	}{
		{ElectionOptions{NodeID: "a"}, "no storage"},
		{ElectionOptions{Store: store}, "no node id"},
		{ElectionOptions{Store: store, NodeID: "a", TTL: time.Second, Margin: time.Second}, "margin"},
		{ElectionOptions{Store: store, NodeID: "a", TTL: time.Second, RenewInterval: 900 * time.Millisecond}, "renew interval"},
		{ElectionOptions{Store: store, NodeID: "a", TTL: time.Second, PollInterval: -1}, "poll interval"},
		{ElectionOptions{Store: store, NodeID: "a", TTL: time.Second, RoundTrip: -1}, "round-trip allowance"},
		{ElectionOptions{Store: store, NodeID: "a", TTL: time.Second, PollInterval: 950 * time.Millisecond}, "leave no lease time"},
		{ElectionOptions{Store: store, NodeID: "a", TTL: 5 * time.Millisecond}, "too short"},
	} {
		if _, err := NewElection(tc.opts); err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("NewElection(%+v) = %v, want error containing %q", tc.opts, err, tc.want)
		}
	}
	e, err := NewElection(ElectionOptions{Store: store, NodeID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := NewElection(testElectionOptions(store, "a")); err != nil {
		t.Errorf("test options: %v", err)
	} else if e.hold != 400*time.Millisecond {
		t.Errorf("test options: lease %v, want 400ms (the helpers' comment)", e.hold)
	}
	if e.ttl != DefaultLeaseTTL || e.poll != 3*time.Second || e.roundTrip != 1500*time.Millisecond ||
		e.hold != 25500*time.Millisecond || e.renew != 8500*time.Millisecond || e.margin != 5100*time.Millisecond {
		t.Errorf("defaults: ttl %v poll %v round trip %v lease %v renew %v margin %v", e.ttl, e.poll, e.roundTrip, e.hold, e.renew, e.margin)
	}
	// The failover bound: one poll to see the last renewal, the lease
	// duration, and the round trips must fit in the TTL, for the defaults
	// and for the options the other tests use.
	for _, eo := range []ElectionOptions{{TTL: DefaultLeaseTTL}, {TTL: failoverTTL}, {TTL: 300 * time.Millisecond}, testElectionOptions(store, "a"), {TTL: 1234567 * time.Microsecond}} {
		eo.Store, eo.NodeID = store, "a"
		e, err := NewElection(eo)
		if err != nil {
			t.Fatalf("NewElection(TTL %v): %v", eo.TTL, err)
		}
		if e.poll+e.hold+e.roundTrip > e.ttl || e.hold%time.Millisecond != 0 || e.renew >= e.hold-e.margin {
			t.Errorf("TTL %v: poll %v + lease %v + round trip %v, renew %v, margin %v", e.ttl, e.poll, e.hold, e.roundTrip, e.renew, e.margin)
		}
	}
	if e.key != config.KongVersion+"/election/lease" {
		t.Errorf("lease key %q", e.key)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// Failover test timing. failoverTTL is the bound under test, with every
// other duration at its default (poll 150ms, round trip 75ms, lease D
// 1275ms, renew 425ms, margin 255ms).
//
// failoverSlack is what a takeover may take beyond the TTL in these tests.
// The design budgets the storage round trips (TTL/20 = 75ms; a local
// file:// or MinIO round trip takes a few ms). What it cannot budget is
// scheduling: the follower's poll timer and takeover timer each wake a
// goroutine late on a loaded 2-core machine under -race (tens of ms seen),
// the test observes leadership by polling every 2ms, and a renewal the
// killed leader had in flight may land just after the kill. 150ms is 10 %
// of the TTL, while the former bound (TTL + a poll of TTL/3) overshot it
// by a third.
const (
	failoverTTL   = 1500 * time.Millisecond
	failoverSlack = 150 * time.Millisecond
)

// TestElectionKillLeader runs three exporters on one bucket, each with its
// own store client, kills the leader repeatedly without a release and checks
// that every term has exactly one writer, that terms never go backwards in
// the history, that no takeover starts before the killed leader's own
// deadline + margin, and that each takeover comes within the TTL (+ slack)
// of the kill.
func TestElectionKillLeader(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		const kills = 5
		cfgs := make([]*config.Config, 40)
		for i := range cfgs {
			cfgs[i] = genConfig(t, fmt.Sprint("k", i), 2)
		}
		var (
			mu    sync.Mutex
			nodes []*node
			seq   int
		)
		events := &eventLog{}
		start := func() {
			seq++
			id := fmt.Sprintf("node-%d", seq)
			s := b.open(t, "kill")
			n := startNode(t, s, ElectionOptions{Store: s, NodeID: id, TTL: failoverTTL}, ExporterOptions{
				Delay: 20 * time.Millisecond, RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
				OnExport: events.hook(id), Retain: -1,
			}, nil)
			mu.Lock()
			nodes = append(nodes, n)
			mu.Unlock()
		}
		for range 3 {
			start()
		}
		// Feed every live node the same stream of configs, as a CP does.
		feedCtx, stopFeed := context.WithCancel(context.Background())
		fed := make(chan struct{})
		go func() {
			defer close(fed)
			tick := time.NewTicker(15 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				mu.Lock()
				live := slices.Clone(nodes)
				mu.Unlock()
				for _, n := range live {
					n.x.Offer(cfgs[i%len(cfgs)], "")
				}
				select {
				case <-feedCtx.Done():
					return
				case <-tick.C:
				}
			}
		}()
		leader := func(exclude *node) *node {
			var found *node
			waitFor(t, 10*time.Second, "a leader", func() bool {
				mu.Lock()
				defer mu.Unlock()
				for _, n := range nodes {
					if _, ok := n.el.Leader(); ok && n != exclude {
						found = n
						return true
					}
				}
				return false
			})
			return found
		}
		var takeovers []time.Duration
		lastTerm := uint64(0)
		for k := range kills {
			l := leader(nil)
			term, _ := l.el.Leader()
			if term <= lastTerm {
				t.Fatalf("round %d: leader %s has term %d, not above the previous %d", k, l.id, term, lastTerm)
			}
			lastTerm = term
			// Let it export a few configs in its term before it dies.
			waitFor(t, 10*time.Second, l.id+" exporting in term "+fmt.Sprint(term), func() bool {
				n := 0
				for _, ev := range events.ok(l.id) {
					if ev.Term == term {
						n++
					}
				}
				return n >= 3
			})
			// The replacement joins before the kill, so that opening its
			// store client is not counted in the takeover time.
			start()
			killed := time.Now()
			l.kill()
			mu.Lock()
			nodes = slices.DeleteFunc(nodes, func(n *node) bool { return n == l })
			mu.Unlock()
			l.el.mu.Lock()
			oldDeadline, margin := l.el.deadline, l.el.margin
			l.el.mu.Unlock()
			nl := leader(l)
			took := time.Since(killed)
			takeovers = append(takeovers, took)
			nl.el.mu.Lock()
			newStart, newTerm := nl.el.since, nl.el.term
			nl.el.mu.Unlock()
			// Safety: the takeover write started at least Margin after the
			// old leader's own deadline (= its last renewal start + D).
			if gap := newStart.Sub(oldDeadline); gap < margin {
				t.Errorf("round %d: %s took over %v after %s's deadline, want ≥ margin %v", k, nl.id, gap, l.id, margin)
			}
			if newTerm != term+1 {
				t.Errorf("round %d: new term %d, want %d", k, newTerm, term+1)
			}
			t.Logf("round %d: %s (term %d) killed; %s took over at term %d after %v (%v after its deadline)", k, l.id, term, nl.id, newTerm, took.Round(time.Millisecond), newStart.Sub(oldDeadline).Round(time.Millisecond))
		}
		// The last leader exports in its term too, then everything stops.
		l := leader(nil)
		term, _ := l.el.Leader()
		waitFor(t, 10*time.Second, "last leader exporting", func() bool {
			for _, ev := range events.ok(l.id) {
				if ev.Term == term {
					return true
				}
			}
			return false
		})
		stopFeed()
		<-fed
		mu.Lock()
		for _, n := range nodes {
			n.kill()
		}
		mu.Unlock()

		objs := listHistory(t, b.open(t, "kill"), config.KongVersion)
		writers := map[uint64]map[string]int{}
		var prevTerm uint64
		for _, o := range objs { // key order = capture-time order
			m := o.manifest
			if writers[m.Term] == nil {
				writers[m.Term] = map[string]int{}
			}
			writers[m.Term][m.NodeID]++
			if m.Term < prevTerm {
				t.Errorf("history goes back from term %d to term %d at %s (written by %s): a deposed leader wrote late", prevTerm, m.Term, o.key, m.NodeID)
			}
			prevTerm = m.Term
		}
		for term, w := range writers {
			if len(w) != 1 {
				t.Errorf("term %d has %d writers: %v", term, len(w), w)
			}
		}
		if len(writers) < kills+1 {
			t.Errorf("history has %d terms, want at least %d (one per leader)", len(writers), kills+1)
		}
		// Every successful export event is in storage under its term.
		for _, ev := range events.ok("") {
			if ev.Snapshot == "" {
				continue
			}
			if w := writers[ev.Term]; w[ev.node] == 0 {
				t.Errorf("export %s by %s in term %d is not in the history", ev.Snapshot, ev.node, ev.Term)
			}
		}
		for i, d := range takeovers {
			if d > failoverTTL+failoverSlack {
				t.Errorf("takeover %d took %v after the kill, want ≤ TTL %v (+%v scheduling slack)", i, d, failoverTTL, failoverSlack)
			}
		}
		t.Logf("%s: %d objects in %d terms; kill→takeover max %v, all %v (TTL %v)", b.name, len(objs), len(writers),
			slices.Max(takeovers).Round(time.Millisecond), roundAll(takeovers), failoverTTL)
	})
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// hookStore runs a hook once, in the caller's goroutine, in the next Get:
// before the read reaches storage (beforeGet) or after it returned but
// before the caller sees the result (afterGet).
type hookStore struct {
	storage.Store
	beforeGet, afterGet atomic.Pointer[func()]
}

func (s *hookStore) Get(ctx context.Context, key string) ([]byte, storage.ObjectInfo, error) {
	if fn := s.beforeGet.Swap(nil); fn != nil {
		(*fn)()
	}
	data, info, err := s.Store.Get(ctx, key)
	if fn := s.afterGet.Swap(nil); fn != nil {
		(*fn)()
	}
	return data, info, err
}

// TestElectionFailoverWorstCase stages the two edges of a follower's timing
// with a "leader" that is the test writing the lease, so the phase is exact:
//
//   - after-read: the leader's last renewal lands just after a follower's
//     read, so the follower sees it only one poll later, then the leader
//     dies. This is the slowest failover the design allows: the follower
//     must still take over within the TTL of that renewal.
//   - during-read: the renewal starts 100ms after the follower's read
//     started and lands before it returns. A follower timing from the start
//     of that read would take over 100ms before the renewal's start + D,
//     that is less than Margin after the leader's deadline.
//
// In both, the takeover must not start before the renewal's start + D.
func TestElectionFailoverWorstCase(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, stage := range []string{"after-read", "during-read"} {
			t.Run(stage, func(t *testing.T) {
				ghost := b.open(t, "worst-"+stage)
				hs := &hookStore{Store: b.open(t, "worst-"+stage)}
				// A long poll makes "one poll late" count: a follower timing
				// D on the poll grid, or D without the poll taken off, would
				// overshoot the TTL by far more than the slack.
				eo := ElectionOptions{Store: hs, NodeID: "b", TTL: failoverTTL, PollInterval: failoverTTL / 5, Logger: testLogger(t)}
				el, err := NewElection(eo)
				if err != nil {
					t.Fatal(err)
				}
				key := LeaseKey("")
				put := func(term uint64, opts storage.PutOptions) storage.ObjectInfo {
					now := time.Now()
					body, err := (&Lease{Format: leaseFormat, Holder: "ghost", Term: term, TTLMillis: el.hold.Milliseconds(),
						AcquiredAt: now.UTC(), RenewedAt: now.UTC(), ExpiresAt: now.Add(el.hold).UTC()}).marshal()
					if err != nil {
						t.Fatal(err)
					}
					info, err := ghost.Put(context.Background(), key, body, opts)
					if err != nil {
						t.Fatalf("ghost lease write: %v", err)
					}
					return info
				}
				v1 := put(7, storage.PutOptions{IfNoneMatch: "*"})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { el.Run(ctx); close(done) }()
				defer func() { cancel(); <-done }()
				waitFor(t, 5*time.Second, "b following the ghost", func() bool { return el.Status().Holder == "ghost" })

				var renewStart, renewEnd time.Time
				renewed := make(chan struct{})
				renew := func() {
					renewStart = time.Now()
					put(7, storage.PutOptions{IfMatch: v1.ETag})
					renewEnd = time.Now()
					close(renewed)
				}
				if stage == "after-read" {
					hs.afterGet.Store(&renew)
				} else {
					// A slow read: the request is on its way for 100ms
					// (simulated latency, not a wait for an event) before
					// the renewal starts, and returns the renewal.
					slow := func() { time.Sleep(100 * time.Millisecond); renew() }
					hs.beforeGet.Store(&slow)
				}
				<-renewed
				waitFor(t, 10*time.Second, "b taking over", func() bool { _, ok := el.Leader(); return ok })
				took := time.Since(renewEnd)
				el.mu.Lock()
				since, term, hold := el.since, el.term, el.hold
				el.mu.Unlock()
				if term != 8 {
					t.Errorf("b's term %d, want 8", term)
				}
				if after := since.Sub(renewStart); after < hold {
					t.Errorf("b's takeover started %v after the last renewal started, want ≥ D %v", after, hold)
				}
				if took > failoverTTL+failoverSlack {
					t.Errorf("b took over %v after the last renewal landed, want ≤ TTL %v (+%v scheduling slack)", took, failoverTTL, failoverSlack)
				}
				t.Logf("%s %s: last renewal → takeover %v, takeover write started D + %v after the renewal started (TTL %v, D %v, poll %v)",
					b.name, stage, took.Round(time.Millisecond), (since.Sub(renewStart) - hold).Round(time.Millisecond), failoverTTL, hold, el.poll)
			})
		}
	})
}

// TestElectionOldLease: a lease written by a node that holds it longer than
// this node's D (the format before D existed wrote the whole TTL as ttl_ms,
// and the holder stopped at TTL − margin) is timed with the lease's own
// ttl_ms, so the takeover still comes after that holder's deadline.
func TestElectionOldLease(t *testing.T) {
	s, err := storage.Open(context.Background(), "file://"+t.TempDir(), storage.Options{CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const oldTTL = 600 * time.Millisecond
	now := time.Now()
	body := fmt.Sprintf(`{"format":1,"holder":"old","term":3,"ttl_ms":%d,"acquired_at":%q,"renewed_at":%q,"expires_at":%q}`,
		oldTTL.Milliseconds(), now.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano), now.Add(oldTTL).UTC().Format(time.RFC3339Nano))
	if _, err := s.Put(context.Background(), LeaseKey(""), []byte(body), storage.PutOptions{IfNoneMatch: "*"}); err != nil {
		t.Fatal(err)
	}
	e, err := NewElection(ElectionOptions{Store: s, NodeID: "new", TTL: 500 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	joined := time.Now() // the follower's first read returns after this
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "the new node leading", func() bool { _, ok := e.Leader(); return ok })
	e.mu.Lock()
	since, term := e.since, e.term
	e.mu.Unlock()
	if waited := since.Sub(joined); waited < oldTTL {
		t.Errorf("took the old lease over %v after first reading it, want ≥ its ttl_ms %v (own D is %v)", waited, oldTTL, e.hold)
	}
	if term != 4 {
		t.Errorf("term %d, want 4", term)
	}
}

// pauser blocks an election's Run loop on demand, like a stop-the-world
// pause of the whole process would.
type pauser struct {
	paused  atomic.Bool
	blocked chan struct{} // receives when the loop is blocked
	resume  chan struct{}
	once    sync.Once
}

func newPauser() *pauser {
	return &pauser{blocked: make(chan struct{}, 1), resume: make(chan struct{})}
}

func (p *pauser) hook() {
	if !p.paused.Load() {
		return
	}
	select {
	case p.blocked <- struct{}{}:
	default:
	}
	<-p.resume
}

func (p *pauser) pause() { p.paused.Store(true); <-p.blocked }

// unpause lets the loop go on; calling it again does nothing (a test that
// fails while paused unpauses in a cleanup, or the node could never stop).
func (p *pauser) unpause() { p.paused.Store(false); p.once.Do(func() { close(p.resume) }) }

// stallClock is a clock that can stop: a node whose clock stalls believes
// its lease is still valid.
type stallClock struct {
	mu     sync.Mutex
	frozen time.Time
}

func (c *stallClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen.IsZero() {
		return c.frozen
	}
	return time.Now()
}

func (c *stallClock) freeze() { c.mu.Lock(); c.frozen = time.Now(); c.mu.Unlock() }

func (c *stallClock) thaw() { c.mu.Lock(); c.frozen = time.Time{}; c.mu.Unlock() }

// TestElectionPausedLeader pauses a leader's renew loop beyond the TTL. With
// an honest clock the leader stops writing at its deadline (before anyone may
// take over); with a stalled clock, which makes it believe it still leads, the
// lease check before the write refuses it. Either way its late write never
// reaches storage, and the successor's term is the only one writing.
func TestElectionPausedLeader(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		for _, stall := range []bool{false, true} {
			name := "honest-clock"
			if stall {
				name = "stalled-clock"
			}
			t.Run(name, func(t *testing.T) {
				open := func(t *testing.T) storage.Store { return b.open(t, name) }
				events := &eventLog{}
				p := newPauser()
				clk := &stallClock{}
				eo := testElectionOptions(open(t), "node-a")
				eo.Now = clk.now
				a := startNode(t, eo.Store, eo, ExporterOptions{Delay: -1, OnExport: events.hook("node-a"), RetryMin: 10 * time.Millisecond}, func(e *Election) { e.hookBeforeStep = p.hook })
				t.Cleanup(p.unpause) // runs before the node's kill
				c0, c1, c2 := genConfig(t, "p0", 1), genConfig(t, "p1", 1), genConfig(t, "p2", 1)
				a.x.Offer(c0, "")
				waitFor(t, 10*time.Second, "a exporting c0", func() bool { return len(events.ok("node-a")) == 1 })
				termA, _ := a.el.Leader()
				bs := open(t)
				nb := startNode(t, bs, testElectionOptions(bs, "node-b"), ExporterOptions{Delay: -1, OnExport: events.hook("node-b")}, nil)

				if stall {
					// Stall the clock first: a leader whose clock stops
					// while its lease is valid keeps believing it leads,
					// whenever the pause then catches its loop.
					clk.freeze()
				}
				p.pause()
				pausedAt := time.Now()
				if !stall {
					// The honest leader's local lease ends before B may
					// take over: it stops by itself.
					waitFor(t, 10*time.Second, "a's lease to lapse", func() bool { _, ok := a.el.Leader(); return !ok })
				}
				waitFor(t, 10*time.Second, "b taking over", func() bool { _, ok := nb.el.Leader(); return ok })
				termB, _ := nb.el.Leader()
				a.el.mu.Lock()
				deadlineA := a.el.deadline
				a.el.mu.Unlock()
				nb.el.mu.Lock()
				startB := nb.el.since
				nb.el.mu.Unlock()
				if !stall && startB.Sub(deadlineA) < testMargin {
					t.Errorf("b took over %v after a's deadline, want ≥ margin %v", startB.Sub(deadlineA), testMargin)
				}
				if termB != termA+1 {
					t.Fatalf("b's term %d, want %d", termB, termA+1)
				}
				nb.x.Offer(c2, "")
				waitFor(t, 10*time.Second, "b exporting c2", func() bool { return len(events.ok("node-b")) == 1 })

				// The paused leader now tries to export c1.
				if _, ok := a.el.Leader(); ok != stall {
					t.Fatalf("a believes it leads: %v, want %v", ok, stall)
				}
				a.x.Offer(c1, "")
				if stall {
					// It believes it leads, so it tries: the lease check
					// refuses the write and it steps down.
					waitFor(t, 10*time.Second, "a's refused write", func() bool {
						for _, ev := range events.list() {
							if ev.node == "node-a" && errors.Is(ev.Err, ErrFenced) {
								return true
							}
						}
						return false
					})
					if _, ok := a.el.Leader(); ok {
						t.Error("a still leads after being fenced")
					}
					if st := a.x.Status(); !contains(st.LastError, "node-b") || st.Role != "follower" {
						t.Errorf("a's status after the refusal: %+v", st)
					}
				} else {
					waitFor(t, 10*time.Second, "a's exporter to see c1 pending", func() bool { return a.x.Status().PendingHash == hashOfConfig(c1) })
				}
				clk.thaw()
				p.unpause()
				// Back from the pause, a's renewal fails: it is a follower.
				waitFor(t, 10*time.Second, "a following", func() bool { return a.el.Status().Role == "follower" && a.el.Status().Term == termB })
				a.kill()
				nb.kill()

				for _, o := range listHistory(t, open(t), config.KongVersion) {
					m := o.manifest
					switch {
					case m.NodeID == "node-a" && (m.Term != termA || m.ConfigHash != hashOfConfig(c0)):
						t.Errorf("a wrote %s (term %d, config %s) after its pause at %v", o.key, m.Term, m.ConfigHash, pausedAt)
					case m.NodeID == "node-b" && m.Term != termB:
						t.Errorf("b wrote %s under term %d, want %d", o.key, m.Term, termB)
					}
				}
				if got := hashes(listHistory(t, open(t), config.KongVersion)); !slices.Equal(got, []string{hashOfConfig(c0), hashOfConfig(c2)}) {
					t.Errorf("history hashes %v, want [c0 c2]", got)
				}
			})
		}
	})
}

// TestElectionRelease: a clean shutdown hands the lease over at once, at the
// next term.
func TestElectionRelease(t *testing.T) {
	dir := t.TempDir()
	open := func() storage.Store {
		s, err := storage.Open(context.Background(), "file://"+dir, storage.Options{CreateBucket: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	eo := testElectionOptions(open(), "a")
	eo.TTL, eo.RenewInterval, eo.PollInterval, eo.Margin = time.Hour, time.Minute, 10*time.Millisecond, time.Minute
	a, err := NewElection(eo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { a.Run(ctx); close(doneA) }()
	waitFor(t, 5*time.Second, "a leading", func() bool { _, ok := a.Leader(); return ok })
	eo2 := eo
	eo2.Store, eo2.NodeID = open(), "b"
	b, err := NewElection(eo2)
	if err != nil {
		t.Fatal(err)
	}
	ctxB, cancelB := context.WithCancel(context.Background())
	doneB := make(chan struct{})
	go func() { b.Run(ctxB); close(doneB) }()
	defer func() { cancelB(); <-doneB }()
	waitFor(t, 5*time.Second, "b following a", func() bool { return b.Status().Holder == "a" })
	cancel()
	<-doneA
	if _, ok := a.Leader(); ok {
		t.Fatal("a leads after Run returned")
	}
	if err := a.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	// With a one-hour TTL, only the release lets b in.
	waitFor(t, 5*time.Second, "b leading", func() bool { _, ok := b.Leader(); return ok })
	if term, _ := b.Leader(); term != 2 {
		t.Errorf("b's term %d, want 2", term)
	}
	if err := a.Release(context.Background()); err != nil {
		t.Errorf("second release: %v", err)
	}
}

// TestElectionTermsSurviveLeaseDeletion: a lease deleted by hand (or by a
// lifecycle rule) does not restart the terms: the new lease starts above the
// newest snapshot's term.
func TestElectionTermsSurviveLeaseDeletion(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(context.Background(), "file://"+dir, storage.Options{CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg := genConfig(t, "del", 1)
	encodeAt(t, s, cfg, time.Now(), snapshotOptions(7))
	e, err := NewElection(testElectionOptions(s, "a"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "a leading", func() bool { _, ok := e.Leader(); return ok })
	if term, _ := e.Leader(); term != 8 {
		t.Errorf("term %d, want 8 (newest snapshot has term 7)", term)
	}
}

// TestConfirmNotLeader: Confirm refuses without the lease.
func TestConfirmNotLeader(t *testing.T) {
	s, err := storage.Open(context.Background(), "file://"+t.TempDir(), storage.Options{CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := NewElection(testElectionOptions(s, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Confirm(context.Background(), 1); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Confirm without Run = %v, want ErrNotLeader", err)
	}
}

// TestParseLease checks the lease object's validation.
func TestParseLease(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`nope`, "not valid JSON"},
		{`{"format":2,"holder":"a","term":1,"ttl_ms":1}`, "format 2"},
		{`{"format":1,"holder":"a","term":0,"ttl_ms":1}`, "no term"},
		{`{"format":1,"holder":"a","term":1,"ttl_ms":0}`, "ttl_ms"},
		{`{"format":1,"holder":"","term":1,"ttl_ms":1}`, "no holder"},
	} {
		if _, err := ParseLease([]byte(tc.in)); err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("ParseLease(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
	l, err := ParseLease([]byte(`{"format":1,"holder":"a","term":3,"ttl_ms":1500}`))
	if err != nil || l.TTL() != 1500*time.Millisecond || l.Term != 3 {
		t.Errorf("ParseLease = %+v, %v", l, err)
	}
}
