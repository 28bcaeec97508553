package fallback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// DefaultLeaseTTL is the election's default TTL: the failover bound.
const DefaultLeaseTTL = 30 * time.Second

// minLeaseTTL keeps the lease duration a whole, positive number of
// milliseconds (the lease object stores it in ms).
const minLeaseTTL = 10 * time.Millisecond

// Errors a leader's write check returns.
var (
	// ErrNotLeader: this node does not hold the lease, or its lease may
	// have expired in someone else's view (it could not renew in time).
	ErrNotLeader = errors.New("not the fallback export leader")
	// ErrFenced: the lease in storage carries another holder or a newer
	// term than the one this node writes under.
	ErrFenced = errors.New("fenced: the lease has a newer holder")
)

// ElectionOptions configure NewElection.
//
// TTL is the promise; the other durations are derived from it. The lease
// duration D that leaders and followers actually time (and that the lease
// object carries as ttl_ms) is TTL − PollInterval − RoundTrip, so that a
// follower that notices the last renewal up to one poll late, and then
// spends a read and a write on it, still holds the lease within TTL.
type ElectionOptions struct {
	// Store is the fallback storage (required).
	Store storage.Store
	// NodeID identifies this node in the lease and in every snapshot it
	// writes (required).
	NodeID string
	// Version is the gateway version directory the lease lives in
	// (<version>/election/lease), like Kong's per-version election; "" =
	// config.KongVersion.
	Version string
	// TTL is the failover bound: a follower holds the lease at most TTL
	// after the leader's last successful renewal (so at most TTL after the
	// leader died), as long as a storage round trip fits in RoundTrip/2 and
	// every node runs with the same options. Minimum 10ms; 0 =
	// DefaultLeaseTTL.
	TTL time.Duration
	// PollInterval is how often a follower reads the lease to see renewals
	// (it does not decide when the follower takes over: a timer does);
	// 0 = TTL/10. Reads start at most this far apart (jittered down by up
	// to 10 %).
	PollInterval time.Duration
	// RoundTrip is the part of TTL set aside for the follower's last read
	// and its takeover write; 0 = TTL/20.
	RoundTrip time.Duration
	// RenewInterval is how often the leader renews; 0 = D/3.
	RenewInterval time.Duration
	// Margin is how long before D (counted from the start of its last
	// successful renewal, on its own monotonic clock) the leader stops
	// writing. It absorbs clock-rate differences and bounds how long a
	// write may still be in flight; 0 = D/5.
	Margin time.Duration
	// Logger receives election events; nil discards them.
	Logger *slog.Logger
	// Now is the clock (monotonic readings are used for every interval);
	// nil = time.Now.
	Now func() time.Time
}

// Election is one node's side of the fenced leader election among
// exporters. Run it in its own goroutine; the exporter asks it Leader()
// before it writes and Confirm() right before each write.
//
// Safety (see docs/FALLBACK.md §3.3): a leader's deadline is the start of
// its last successful renewal + D − Margin, measured on its own clock. A
// follower takes the lease over only with a write conditional on the
// renewal's ETag, and not before D has passed since the end of the first
// read that returned that ETag. The renewal started before its write
// landed, and the write landed before that read returned, so the takeover
// starts at least Margin after the old leader stopped writing; and a
// takeover is an If-Match write that bumps the term, so two nodes can never
// hold one term.
//
// Liveness: the renewal that lands last (at w) is seen by the first read
// that starts after w, which starts by w + poll and returns one round trip
// later; the follower's timer fires D after that and its takeover write
// takes one more round trip. So the follower leads by w + poll + D + two
// round trips ≤ w + TTL when a round trip fits in RoundTrip/2.
type Election struct {
	store     storage.Store
	nodeID    string
	version   string
	key       string
	ttl       time.Duration // the failover bound (configured)
	hold      time.Duration // D: the lease duration timed by leader and followers
	roundTrip time.Duration
	renew     time.Duration
	poll      time.Duration
	margin    time.Duration
	opTimeout time.Duration
	log       *slog.Logger
	now       func() time.Time

	// hookBeforeStep, when set (tests), runs before every step of Run: a
	// test blocks it to simulate a stop-the-world pause of the leader.
	hookBeforeStep func()

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every change of role
	leading   bool          // we hold the lease (etag) at term
	term      uint64
	etag      string
	deadline  time.Time // stop writing at this instant (our clock)
	lapsed    bool      // deadline passed without a renewal (reported once)
	since     time.Time // when we took the lease: start of the winning write
	lastRenew time.Time
	maxTerm   uint64 // newest term seen in the lease or written by us
	holder    string // lease holder as last seen
	// A follower times the lease version seenETag: it may take the lease
	// over from seenAt (the end of the first read that returned it) +
	// seenHold. nextRead is when its next poll read starts.
	seenETag   string
	seenAt     time.Time
	seenHold   time.Duration
	seenFree   bool // the version was released: seenHold is 0
	nextRead   time.Time
	badLease   string // ETag of an unreadable lease already reported
	lastErr    string
	lastErrAt  time.Time
	running    bool
	stoppedRun bool
}

// NewElection checks opts and returns an election that does nothing until Run.
func NewElection(opts ElectionOptions) (*Election, error) {
	if opts.Store == nil {
		return nil, errors.New("fallback election: no storage")
	}
	if strings.TrimSpace(opts.NodeID) == "" {
		return nil, errors.New("fallback election: no node id")
	}
	e := &Election{
		store:     opts.Store,
		nodeID:    opts.NodeID,
		version:   opts.Version,
		ttl:       opts.TTL,
		roundTrip: opts.RoundTrip,
		renew:     opts.RenewInterval,
		poll:      opts.PollInterval,
		margin:    opts.Margin,
		log:       opts.Logger,
		now:       opts.Now,
		changed:   make(chan struct{}),
	}
	if e.version == "" {
		e.version = config.KongVersion
	}
	e.key = LeaseKey(e.version)
	if e.ttl == 0 {
		e.ttl = DefaultLeaseTTL
	}
	if e.ttl < minLeaseTTL {
		return nil, fmt.Errorf("fallback election: lease TTL %v is too short (minimum %v)", e.ttl, minLeaseTTL)
	}
	if e.poll == 0 {
		e.poll = e.ttl / 10
	}
	if e.roundTrip == 0 {
		e.roundTrip = e.ttl / 20
	}
	switch {
	case e.poll < 0:
		return nil, fmt.Errorf("fallback election: poll interval %v must be positive", e.poll)
	case e.roundTrip < 0:
		return nil, fmt.Errorf("fallback election: round-trip allowance %v must be positive", e.roundTrip)
	}
	// Whole milliseconds: the lease object carries D in ms, and a follower
	// must not read a shorter D than the leader times.
	e.hold = (e.ttl - e.poll - e.roundTrip).Truncate(time.Millisecond)
	if e.hold < time.Millisecond {
		return nil, fmt.Errorf("fallback election: poll interval %v + round-trip allowance %v leave no lease time within the TTL %v", e.poll, e.roundTrip, e.ttl)
	}
	if e.renew == 0 {
		e.renew = e.hold / 3
	}
	if e.margin == 0 {
		e.margin = e.hold / 5
	}
	switch {
	case e.margin < 0 || e.margin >= e.hold:
		return nil, fmt.Errorf("fallback election: margin %v must be between 0 and the lease duration %v (TTL %v − poll %v − round trip %v)", e.margin, e.hold, e.ttl, e.poll, e.roundTrip)
	case e.renew <= 0 || e.renew >= e.hold-e.margin:
		// A leader must get at least one renewal in before its deadline,
		// or it would lose its right to write between two renewals.
		return nil, fmt.Errorf("fallback election: renew interval %v must be shorter than the lease duration − margin (%v − %v = %v)", e.renew, e.hold, e.margin, e.hold-e.margin)
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	e.log = e.log.With("component", "fallback-election", "node_id", e.nodeID, "lease", e.key)
	if e.now == nil {
		e.now = time.Now
	}
	// A storage call longer than the TTL is useless to the election; the
	// floor keeps tests with very short TTLs from failing on a slow disk.
	// (A follower's read is also cut off when its takeover is due.)
	e.opTimeout = max(e.ttl, time.Second)
	return e, nil
}

// NodeID is this node's id.
func (e *Election) NodeID() string { return e.nodeID }

// Version is the gateway version directory of the lease.
func (e *Election) Version() string { return e.version }

// Run takes part in the election until ctx ends. It never releases the
// lease on the way out (a crashed process cannot either): call Release after
// Run returns for a quick handover on a clean shutdown. When Run returns,
// this node no longer counts itself leader.
func (e *Election) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.running || e.stoppedRun {
		e.mu.Unlock()
		return errors.New("fallback election: Run called twice")
	}
	e.running = true
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.running, e.stoppedRun = false, true
		if e.leading {
			// Without Run nobody renews: stop writing now rather than at
			// the deadline.
			e.leading = false
			e.notifyLocked()
		}
		e.mu.Unlock()
	}()
	e.log.Info("[fallback config] joining the export election", "ttl", e.ttl, "lease", e.hold, "renew_every", e.renew, "poll_every", e.poll, "margin", e.margin)
	for {
		if e.hookBeforeStep != nil {
			e.hookBeforeStep()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := e.step(ctx)
		if !sleep(ctx, wait) {
			return ctx.Err()
		}
	}
}

// Leader reports the term this node leads in, if it may write now: it holds
// the lease and its deadline (last renewal start + D − margin, on its own
// clock) has not passed.
func (e *Election) Leader() (term uint64, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.leading || !e.now().Before(e.deadline) {
		return 0, false
	}
	return e.term, true
}

// IsLeader reports whether this node may write now under term.
func (e *Election) IsLeader(term uint64) bool {
	t, ok := e.Leader()
	return ok && t == term
}

// Deadline is the instant (on this node's clock) after which a write under
// term is no longer allowed; false if the node does not lead in term. Use it
// as the deadline of the write's context, so a write that has not completed
// by then is abandoned.
func (e *Election) Deadline(term uint64) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.leading || e.term != term || !e.now().Before(e.deadline) {
		return time.Time{}, false
	}
	return e.deadline, true
}

// Changed returns a channel closed at the next change of role (became
// leader, lost or lapsed, renewed after a lapse). Call it again after it
// fires.
func (e *Election) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

// Confirm checks in storage, right before a write, that the lease still names
// this node at term: it refuses with ErrNotLeader when the local lease is not
// valid, and with ErrFenced when the stored lease has moved on (then this
// node steps down at once). It is the check that does not depend on clocks:
// even a node whose clock stalled cannot write once another node took over.
func (e *Election) Confirm(ctx context.Context, term uint64) error {
	if !e.IsLeader(term) {
		return fmt.Errorf("%w (term %d)", ErrNotLeader, term)
	}
	opCtx, cancel := context.WithTimeout(ctx, e.opTimeout)
	data, _, err := e.store.Get(opCtx, e.key)
	cancel()
	if errors.Is(err, storage.ErrNotFound) {
		e.stepDown(term, "the lease was removed")
		return fmt.Errorf("%w: lease %s was removed (our term %d)", ErrFenced, e.key, term)
	}
	if err != nil {
		return fmt.Errorf("confirm leadership (term %d): %w", term, err)
	}
	l, err := ParseLease(data)
	if err != nil {
		e.stepDown(term, "the lease is unreadable")
		return fmt.Errorf("%w: lease %s: %v (our term %d)", ErrFenced, e.key, err, term)
	}
	if l.Holder != e.nodeID || l.Term != term || l.Released {
		e.observeTerm(l.Term, l.Holder)
		e.stepDown(term, fmt.Sprintf("the lease is held by %q at term %d", l.Holder, l.Term))
		return fmt.Errorf("%w: lease %s is held by %q at term %d (our term %d)", ErrFenced, e.key, l.Holder, l.Term, term)
	}
	return nil
}

// Release hands the lease over on a clean shutdown: it stops counting itself
// leader, then marks the lease released so that a follower takes it at the
// next term without waiting for the lease to expire. Call it after Run has
// returned. A lease already taken over is not an error.
func (e *Election) Release(ctx context.Context) error {
	e.mu.Lock()
	if !e.leading && e.etag == "" {
		e.mu.Unlock()
		return nil
	}
	term, etag, since := e.term, e.etag, e.since
	e.etag = ""
	if e.leading {
		e.leading = false
		e.notifyLocked()
	}
	e.mu.Unlock()
	_, err := e.writeLease(ctx, term, since, e.now(), true, etag)
	if errors.Is(err, storage.ErrPreconditionFailed) || errors.Is(err, storage.ErrNotFound) {
		e.log.Info("[fallback config] lease already taken over; nothing to release", "term", term)
		return nil
	}
	if err != nil {
		return fmt.Errorf("release fallback export lease (term %d): %w", term, err)
	}
	e.log.Info("[fallback config] released the export lease", "term", term)
	return nil
}

// ElectionStatus is the election's part of /status.
type ElectionStatus struct {
	NodeID string `json:"node_id"`
	// Role is "leader" (may write), "lapsed" (holds the lease but could not
	// renew it in time, so does not write) or "follower".
	Role string `json:"role"`
	// Term is this node's term while it holds the lease, otherwise the
	// newest term it has seen.
	Term uint64 `json:"term"`
	// Holder is the lease holder as last seen.
	Holder      string    `json:"holder"`
	LeaderSince time.Time `json:"leader_since,omitzero"`
	LastRenewAt time.Time `json:"last_renew_at,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// Status reports the election state.
func (e *Election) Status() ElectionStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := ElectionStatus{NodeID: e.nodeID, Role: "follower", Term: e.maxTerm, Holder: e.holder,
		LastError: e.lastErr, LastErrorAt: e.lastErrAt}
	if e.leading {
		s.Role, s.Term, s.Holder = "leader", e.term, e.nodeID
		if !e.now().Before(e.deadline) {
			s.Role = "lapsed"
		}
		s.LeaderSince, s.LastRenewAt = wallClock(e.since), wallClock(e.lastRenew)
	}
	return s
}

// wallClock strips the monotonic reading (it means nothing in JSON).
func wallClock(t time.Time) time.Time { return t.Round(0) }

func (e *Election) notifyLocked() {
	close(e.changed)
	e.changed = make(chan struct{})
}

func (e *Election) recordErr(err error) {
	e.mu.Lock()
	e.lastErr, e.lastErrAt = err.Error(), wallClock(e.now())
	e.mu.Unlock()
}

func (e *Election) observeTerm(term uint64, holder string) {
	e.mu.Lock()
	e.maxTerm = max(e.maxTerm, term)
	e.holder = holder
	e.mu.Unlock()
}

// stepDown gives up term locally (the lease moved on).
func (e *Election) stepDown(term uint64, why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.leading || e.term != term {
		return
	}
	e.leading, e.etag = false, ""
	e.seenETag = "" // time the new lease from now
	e.notifyLocked()
	e.log.Warn("[fallback config] stepped down: "+why+"; export disabled", "term", term)
}

// step does one round and returns how long to wait before the next.
func (e *Election) step(ctx context.Context) time.Duration {
	e.mu.Lock()
	leading := e.leading
	e.mu.Unlock()
	if leading {
		return e.renewStep(ctx)
	}
	return e.followStep(ctx)
}

func (e *Election) renewStep(ctx context.Context) time.Duration {
	start := e.now()
	e.mu.Lock()
	term, etag, since := e.term, e.etag, e.since
	e.mu.Unlock()
	info, err := e.writeLease(ctx, term, since, start, false, etag)
	if ctx.Err() != nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.leading || e.term != term {
		return 0 // stepped down meanwhile (Confirm saw a newer term)
	}
	now := e.now()
	switch {
	case err == nil:
		// The deadline may have passed without a failed renewal noticing
		// it (a stalled process, or this renewal landing late): anyone who
		// asked Leader() meanwhile was told no, and the exporter then waits
		// for a change. So the deadline counts as passed if it passed
		// before this renewal completed, not only before it started.
		wasLapsed := e.lapsed || !now.Before(e.deadline)
		e.etag = info.ETag
		e.deadline = start.Add(e.hold - e.margin)
		e.lastRenew = start
		e.lastErr = ""
		e.lapsed = false
		if wasLapsed {
			e.log.Info("[fallback config] renewed the export lease after a lapse; export enabled again", "term", term)
			e.notifyLocked()
		}
		return e.renew
	case errors.Is(err, storage.ErrPreconditionFailed) || errors.Is(err, storage.ErrNotFound):
		// Someone took the lease over (or removed it): our term is over.
		e.leading, e.etag, e.seenETag = false, "", ""
		e.lapsed = false
		e.notifyLocked()
		e.log.Warn("[fallback config] lost the export lease: it was taken over or removed; export disabled", "term", term)
		return 0
	}
	e.lastErr, e.lastErrAt = err.Error(), wallClock(now)
	if !now.Before(e.deadline) {
		if !e.lapsed {
			e.lapsed = true
			e.log.Error("[fallback config] could not renew the export lease in time; export disabled until it is renewed", "term", term, "error", err)
			e.notifyLocked()
		}
		// Keep trying with If-Match: as long as nobody took the lease over,
		// renewing it is safe and re-enables export.
		return e.renew / 2
	}
	e.log.Warn("[fallback config] failed to renew the export lease; retrying", "term", term, "error", err, "writing_for", e.deadline.Sub(now).Round(time.Millisecond))
	// Retry soon, but leave room for more attempts before the deadline.
	return max(min(e.renew, e.deadline.Sub(now)/3), e.renew/10)
}

// followStep either takes the lease over, when the version it times is due,
// or reads the lease. It returns the wait until the earlier of the next
// poll read and the takeover instant, so the takeover runs on a timer set
// for its exact due time rather than on the poll grid.
func (e *Election) followStep(ctx context.Context) time.Duration {
	e.mu.Lock()
	etag, due, free, next := e.seenETag, e.seenAt.Add(e.seenHold), e.seenFree, e.nextRead
	e.mu.Unlock()
	now := e.now()
	if etag != "" && !now.Before(due) {
		// The If-Match write itself checks that the version is unchanged:
		// no read first, which would cost a round trip of the TTL.
		return e.takeover(ctx, etag, free)
	}
	if now.Before(next) {
		return e.untilNext(now)
	}
	return e.read(ctx)
}

// untilNext is the wait from now to the follower's next event.
func (e *Election) untilNext(now time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	at := e.nextRead
	if e.seenETag != "" {
		if due := e.seenAt.Add(e.seenHold); due.Before(at) {
			at = due
		}
	}
	return max(at.Sub(now), 0)
}

// read polls the lease: a new version (a renewal, a new holder) restarts the
// follower's timer.
func (e *Election) read(ctx context.Context) time.Duration {
	start := e.now()
	e.mu.Lock()
	// Reads start one (jittered) poll interval apart however long each
	// takes, so a renewal is seen at most one poll after it landed.
	e.nextRead = start.Add(e.pollEvery())
	pending, due := e.seenETag != "", e.seenAt.Add(e.seenHold)
	e.mu.Unlock()
	opDeadline := start.Add(e.opTimeout)
	if pending && due.Before(opDeadline) {
		// A slow read must not hold up a takeover that falls due meanwhile
		// (the takeover's If-Match does not need the read's answer).
		opDeadline = due
	}
	opCtx, cancel := context.WithDeadline(ctx, opDeadline)
	data, info, err := e.store.Get(opCtx, e.key)
	cancel()
	// The lease version we got was written before this instant: timing its
	// expiry from here (not from the start of the read, which may have
	// begun before the renewal did) can only make the follower wait longer.
	after := e.now()
	if ctx.Err() != nil {
		return 0
	}
	if errors.Is(err, storage.ErrNotFound) {
		return e.create(ctx)
	}
	if err != nil {
		if pending && !after.Before(due) && errors.Is(err, context.DeadlineExceeded) {
			return 0 // cut off for the takeover, which comes next
		}
		e.recordErr(err)
		e.log.Warn("[fallback config] failed to read the export lease", "error", err)
		return e.untilNext(after)
	}
	l, perr := ParseLease(data)
	e.mu.Lock()
	// An unreadable lease (another format, a hand edit) is taken over once
	// it has been unchanged for the whole TTL: its writer's D is unknown,
	// and a kongfb leader's D is shorter than its TTL.
	hold, free := e.ttl, false
	if perr == nil {
		e.maxTerm = max(e.maxTerm, l.Term)
		e.holder = l.Holder
		hold, free = l.TTL(), l.Released
		if free {
			hold = 0
		}
	} else {
		e.holder = ""
		if e.badLease != info.ETag {
			e.badLease = info.ETag
			e.log.Error("[fallback config] the export lease is unreadable; taking it over once it has been unchanged for the TTL", "error", perr, "ttl", hold)
		}
	}
	if info.ETag != e.seenETag {
		e.seenETag, e.seenAt, e.seenHold, e.seenFree = info.ETag, after, hold, free
	}
	e.lastErr = ""
	e.mu.Unlock()
	return e.untilNext(after)
}

// pollEvery is the poll interval, jittered down by up to 10 % so that
// followers do not read in step, without lengthening the failover bound.
func (e *Election) pollEvery() time.Duration {
	if e.poll < 10 {
		return e.poll
	}
	return e.poll - rand.N(e.poll/10)
}

// takeover replaces the lease version etag (expired or released) with ours
// at the next term.
func (e *Election) takeover(ctx context.Context, etag string, released bool) time.Duration {
	e.mu.Lock()
	term := e.maxTerm + 1
	prev := e.holder
	e.mu.Unlock()
	start := e.now()
	info, err := e.writeLease(ctx, term, start, start, false, etag)
	switch {
	case err == nil:
		why := "the previous lease expired"
		if released {
			why = "the previous leader released the lease"
		}
		e.becomeLeader(term, info.ETag, start, why, prev)
		return e.renew
	case errors.Is(err, storage.ErrPreconditionFailed) || errors.Is(err, storage.ErrNotFound):
		// The lease changed (a renewal, another follower won the race) or
		// went away: stop timing this version and look again at once.
		e.mu.Lock()
		if e.seenETag == etag {
			e.seenETag = ""
		}
		e.nextRead = time.Time{}
		e.mu.Unlock()
		return 0
	}
	if ctx.Err() == nil {
		e.recordErr(err)
		e.log.Warn("[fallback config] failed to take over the export lease", "error", err)
	}
	// The version is still due: retry the conditional write without a read
	// (a read would only tell what the If-Match checks anyway). If the
	// failed write did land, the retry's If-Match fails and the follower
	// reads the lease again.
	return jitter(e.poll / 2)
}

// writeLease writes this node's lease for term, held since acquired and
// renewed at now (expiring D later, or at once when released), on the
// condition that the lease is still version etag; etag "" creates the first
// lease (If-None-Match: *).
func (e *Election) writeLease(ctx context.Context, term uint64, acquired, now time.Time, released bool, etag string) (storage.ObjectInfo, error) {
	expires := now.Add(e.hold)
	if released {
		expires = now
	}
	l := &Lease{Format: leaseFormat, Holder: e.nodeID, Term: term, TTLMillis: e.hold.Milliseconds(),
		AcquiredAt: acquired.UTC(), RenewedAt: now.UTC(), ExpiresAt: expires.UTC(), Released: released}
	body, err := l.marshal()
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	opts := storage.PutOptions{IfMatch: etag, ContentType: "application/json"}
	if etag == "" {
		opts = storage.PutOptions{IfNoneMatch: "*", ContentType: "application/json"}
	}
	opCtx, cancel := context.WithTimeout(ctx, e.opTimeout)
	defer cancel()
	return e.store.Put(opCtx, e.key, body, opts)
}

// create writes the first lease.
func (e *Election) create(ctx context.Context) time.Duration {
	floor := e.termFloor(ctx)
	e.mu.Lock()
	term := max(e.maxTerm, floor) + 1
	e.mu.Unlock()
	start := e.now()
	info, err := e.writeLease(ctx, term, start, start, false, "")
	switch {
	case err == nil:
		e.becomeLeader(term, info.ETag, start, "no lease existed", "")
		return e.renew
	case errors.Is(err, storage.ErrPreconditionFailed):
		// Another node created it first: read it soon.
		e.mu.Lock()
		e.nextRead = time.Time{}
		e.mu.Unlock()
		return e.poll / 20
	}
	if ctx.Err() == nil {
		e.recordErr(err)
		e.log.Warn("[fallback config] failed to create the export lease", "error", err)
	}
	return jitter(e.poll)
}

// termFloor is the term of the newest snapshot in this version's history.
// A new lease starts above it, so that terms keep increasing even if the
// lease object was deleted (by hand or by a lifecycle rule): a term is never
// handed out twice. Errors fall back to the terms seen in the lease.
func (e *Election) termFloor(ctx context.Context) uint64 {
	prefix := snapshot.HistoryPrefix("", e.version)
	opCtx, cancel := context.WithTimeout(ctx, e.opTimeout)
	defer cancel()
	newest := ""
	for obj, err := range storage.ListAll(opCtx, e.store, prefix, storage.ListOptions{}) {
		if err != nil {
			e.log.Warn("[fallback config] cannot list the history to continue its terms", "error", err)
			return 0
		}
		if _, perr := snapshot.ParseHistoryKey(obj.Key); perr == nil && obj.Key > newest {
			newest = obj.Key
		}
	}
	if newest == "" {
		return 0
	}
	data, _, err := e.store.Get(opCtx, newest)
	if err != nil {
		e.log.Warn("[fallback config] cannot read the newest snapshot to continue its terms", "object", newest, "error", err)
		return 0
	}
	h, err := snapshot.ReadHeader(newest, data, snapshot.VerifyOptions{VersionPolicy: snapshot.VersionPolicy{Match: snapshot.MatchAny}})
	if err != nil {
		e.log.Warn("[fallback config] cannot read the newest snapshot to continue its terms", "object", newest, "error", err)
		return 0
	}
	return h.Manifest.Term
}

func (e *Election) becomeLeader(term uint64, etag string, start time.Time, why, prev string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.leading, e.term, e.etag = true, term, etag
	e.deadline = start.Add(e.hold - e.margin)
	e.since, e.lastRenew = start, start
	e.maxTerm = max(e.maxTerm, term)
	e.holder = e.nodeID
	e.lapsed = false
	e.lastErr = ""
	e.notifyLocked()
	e.log.Info("[fallback config] node is chosen as leader. Enabling exporting.", "term", term, "reason", why, "previous_holder", prev)
}
