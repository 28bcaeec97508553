package fallback

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

// TestExporterLeadingEdgeAndCoalescing: the first config goes out at once
// (even with a one-hour delay), and five offers within the delay give two
// exports: the first and the newest.
func TestExporterLeadingEdgeAndCoalescing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		t.Run("leading-edge", func(t *testing.T) {
			s := b.open(t, "edge")
			events := &eventLog{}
			n := startNode(t, s, testElectionOptions(s, "a"), ExporterOptions{Delay: time.Hour, OnExport: events.hook("a")}, nil)
			c1, c2 := genConfig(t, "e1", 1), genConfig(t, "e2", 1)
			n.x.Offer(c1, "")
			waitFor(t, 10*time.Second, "the first export", func() bool { return len(events.ok("a")) == 1 })
			n.x.Offer(c2, "")
			waitFor(t, 10*time.Second, "c2 pending", func() bool { return n.x.Status().PendingHash == hashOfConfig(c2) })
			st := n.x.Status()
			if st.NextAttemptAt.Before(st.LastExportAt.Add(59 * time.Minute)) {
				t.Errorf("next export at %v, want an hour after the last (%v)", st.NextAttemptAt, st.LastExportAt)
			}
			if st.LastHash != hashOfConfig(c1) || st.Exports != 1 || st.LastResult != "ok" || st.Role != "leader" || !strings.HasPrefix(st.LastSnapshot, config.KongVersion+"/snapshots/") {
				t.Errorf("status %+v", st)
			}
		})
		t.Run("coalescing", func(t *testing.T) {
			const delay = 300 * time.Millisecond
			s := b.open(t, "coalesce")
			events := &eventLog{}
			n := startNode(t, s, testElectionOptions(s, "a"), ExporterOptions{Delay: delay, OnExport: events.hook("a")}, nil)
			var cfgs []*config.Config
			for _, tag := range []string{"c1", "c2", "c3", "c4", "c5"} {
				cfgs = append(cfgs, genConfig(t, tag, 1))
			}
			n.x.Offer(cfgs[0], "")
			waitFor(t, 10*time.Second, "the first export", func() bool { return len(events.ok("a")) == 1 })
			for _, c := range cfgs[1:] {
				n.x.Offer(c, "")
			}
			waitFor(t, 10*time.Second, "the newest export", func() bool { return len(events.ok("a")) == 2 })
			ok := events.ok("a")
			if ok[0].Hash != hashOfConfig(cfgs[0]) || ok[1].Hash != hashOfConfig(cfgs[4]) {
				t.Errorf("exported %s, %s; want c1, c5", ok[0].Hash, ok[1].Hash)
			}
			// The throttle is a lower bound on the gap between exports.
			if gap := ok[1].at.Sub(ok[0].at); gap < delay {
				t.Errorf("second export %v after the first, want ≥ %v", gap, delay)
			}
			n.kill()
			got := hashes(listHistory(t, s, config.KongVersion))
			if want := []string{hashOfConfig(cfgs[0]), hashOfConfig(cfgs[4])}; !slices.Equal(got, want) {
				t.Errorf("history %v, want %v", got, want)
			}
			if len(events.list()) != 2 {
				t.Errorf("events %+v, want 2 successful exports only", events.list())
			}
		})
	})
}

// TestExporterKongObject: without encryption Kong's config.json is written
// next to the history, readable by Kong EE (plain export JSON, uploader
// metadata); with encryption only on explicit request.
func TestExporterKongObject(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		_, recipient, err := snapshot.GenerateAgeIdentity(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name      string
			so        snapshot.Options
			plaintext bool
			wantKong  bool
		}{
			{"plain", snapshot.Options{}, false, true},
			{"encrypted", snapshot.Options{Recipients: []string{recipient}}, false, false},
			{"encrypted-with-plaintext", snapshot.Options{Recipients: []string{recipient}}, true, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := b.open(t, tc.name)
				events := &eventLog{}
				n := startNode(t, s, testElectionOptions(s, "node-k"), ExporterOptions{Snapshot: tc.so, KongCompatiblePlaintext: tc.plaintext, OnExport: events.hook("k")}, nil)
				cfg := genConfig(t, "kong", 2)
				n.x.Offer(cfg, "")
				waitFor(t, 10*time.Second, "the export", func() bool { return len(events.ok("")) == 1 })
				ev := events.ok("")[0]
				data, info, err := s.Get(context.Background(), snapshot.KongObjectKey("", config.KongVersion))
				if !tc.wantKong {
					if !errors.Is(err, storage.ErrNotFound) || ev.Kong != "" {
						t.Fatalf("config.json written while encrypted: %v %q", err, ev.Kong)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				want, _ := cfg.MarshalJSON()
				if string(data) != string(want) {
					t.Errorf("config.json is not the Kong export document")
				}
				head, err := s.Head(context.Background(), snapshot.KongObjectKey("", config.KongVersion))
				if err != nil {
					t.Fatal(err)
				}
				if head.ContentType != "application/json" || head.Metadata["uploader"] != "node-k" || head.Metadata[metaConfigHash] != hashOfConfig(cfg) || info.Size != int64(len(want)) {
					t.Errorf("config.json info %+v", head)
				}
			})
		}
	})
}

// faultStore wraps a Store and runs a hook before Put.
type faultStore struct {
	storage.Store
	beforePut func(key string) error
}

func (f faultStore) Put(ctx context.Context, key string, body []byte, opts storage.PutOptions) (storage.ObjectInfo, error) {
	if f.beforePut != nil {
		if err := f.beforePut(key); err != nil {
			return storage.ObjectInfo{}, err
		}
	}
	return f.Store.Put(ctx, key, body, opts)
}

// TestExporterRetriesAfterOutage stops MinIO during an export and starts it
// again: the export completes with no new Offer (Kong would wait for the
// next config change).
func TestExporterRetriesAfterOutage(t *testing.T) {
	m := storagetest.StartMinIO(t)
	b := minioBackend(m, "retry")
	var stopped atomic.Bool
	s := faultStore{Store: b.open(t, "x"), beforePut: func(key string) error {
		if strings.Contains(key, "/snapshots/") && !stopped.Swap(true) {
			if err := m.Stop(); err != nil {
				return err
			}
		}
		return nil
	}}
	events := &eventLog{}
	n := startNode(t, s, testElectionOptions(s, "a"), ExporterOptions{
		OnExport: events.hook("a"), RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}, nil)
	cfg := genConfig(t, "outage", 1)
	n.x.Offer(cfg, "")
	waitFor(t, 30*time.Second, "a failed export", func() bool { return n.x.Status().Failures >= 2 })
	st := n.x.Status()
	if st.LastResult != "error" || st.PendingHash != hashOfConfig(cfg) || st.LastError == "" {
		t.Errorf("status during the outage: %+v", st)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the export after the restart", func() bool { return len(events.ok("a")) == 1 })
	if got := hashes(listHistory(t, s, config.KongVersion)); !slices.Equal(got, []string{hashOfConfig(cfg)}) {
		t.Errorf("history %v", got)
	}
	ok := events.ok("a")[0]
	if ok.Attempt < 3 {
		t.Errorf("succeeded at attempt %d, want ≥ 3", ok.Attempt)
	}
	if st := n.x.Status(); st.Failures != 0 || st.PendingHash != "" || st.LastResult != "ok" {
		t.Errorf("status after recovery: %+v", st)
	}
	t.Logf("export completed after %v and %d attempts", ok.Took.Round(time.Millisecond), ok.Attempt)
}

// TestExporterSkipsWhatIsExported: a new leader holding the config that is
// already the newest snapshot does not write it again.
func TestExporterSkipsWhatIsExported(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, "skip")
		events := &eventLog{}
		cfg := genConfig(t, "same", 1)
		a := startNode(t, s, testElectionOptions(s, "a"), ExporterOptions{OnExport: events.hook("a")}, nil)
		a.x.Offer(cfg, "")
		waitFor(t, 10*time.Second, "a's export", func() bool { return len(events.ok("a")) == 1 })
		a.kill()
		s2 := b.open(t, "skip")
		nb := startNode(t, s2, testElectionOptions(s2, "b"), ExporterOptions{OnExport: events.hook("b")}, nil)
		nb.x.Offer(cfg, "")
		waitFor(t, 10*time.Second, "b leading with nothing to export", func() bool {
			nb.x.mu.Lock()
			loaded := nb.x.st.term != 0
			nb.x.mu.Unlock()
			st := nb.x.Status()
			return st.Role == "leader" && loaded && st.PendingHash == ""
		})
		nb.kill()
		if len(events.list()) != 1 {
			t.Errorf("events %+v, want a's export only", events.list())
		}
		if got := listHistory(t, s, config.KongVersion); len(got) != 1 {
			t.Errorf("history has %d objects, want 1", len(got))
		}
	})
}

// TestExporterKongObjectChangedBehindItsBack: when someone else rewrites
// config.json (a Kong EE exporter, an operator), the conditional write fails
// once, the exporter looks again and the retry succeeds.
func TestExporterKongObjectChangedBehindItsBack(t *testing.T) {
	s := fileBackend(t.TempDir()).open(t, "kong")
	events := &eventLog{}
	n := startNode(t, s, testElectionOptions(s, "a"), ExporterOptions{Delay: -1, OnExport: events.hook("a"), RetryMin: 10 * time.Millisecond}, nil)
	c1, c2 := genConfig(t, "o1", 1), genConfig(t, "o2", 1)
	n.x.Offer(c1, "")
	waitFor(t, 10*time.Second, "c1 exported", func() bool { return len(events.ok("a")) == 1 })
	put(t, s, snapshot.KongObjectKey("", config.KongVersion), []byte(`{"_format_version":"3.0"}`))
	n.x.Offer(c2, "")
	waitFor(t, 10*time.Second, "c2 exported", func() bool { return len(events.ok("a")) == 2 })
	var failed []nodeEvent
	for _, ev := range events.list() {
		if ev.Err != nil {
			failed = append(failed, ev)
		}
	}
	if len(failed) != 1 || !errors.Is(failed[0].Err, storage.ErrPreconditionFailed) {
		t.Errorf("failures %+v, want one precondition failure", failed)
	}
	data, _, err := s.Get(context.Background(), snapshot.KongObjectKey("", config.KongVersion))
	want, _ := c2.MarshalJSON()
	if err != nil || string(data) != string(want) {
		t.Errorf("config.json is not c2: %v", err)
	}
	// c2's snapshot was written once, before the config.json failure.
	if got := hashes(listHistory(t, s, config.KongVersion)); !slices.Equal(got, []string{hashOfConfig(c1), hashOfConfig(c2)}) {
		t.Errorf("history %v", got)
	}
}

// TestExporterRetain keeps only the newest snapshots.
func TestExporterRetain(t *testing.T) {
	s := fileBackend(t.TempDir()).open(t, "retain")
	events := &eventLog{}
	n := startNode(t, s, testElectionOptions(s, "a"), ExporterOptions{Delay: -1, Retain: 2, OnExport: events.hook("a")}, nil)
	var want []string
	for i, tag := range []string{"r1", "r2", "r3", "r4"} {
		c := genConfig(t, tag, 1)
		n.x.Offer(c, "")
		waitFor(t, 10*time.Second, tag+" exported", func() bool { return len(events.ok("a")) == i+1 })
		want = append(want, hashOfConfig(c))
	}
	// Pruning runs after the export event; await it before stopping the node.
	waitFor(t, 10*time.Second, "history pruned to 2", func() bool {
		return len(listHistory(t, s, config.KongVersion)) == 2
	})
	n.kill()
	if got := hashes(listHistory(t, s, config.KongVersion)); !slices.Equal(got, want[2:]) {
		t.Errorf("history %v, want %v", got, want[2:])
	}
}

// TestExporterDoesNotRollBack: a new leader whose config was captured before
// the newest snapshot (it lags behind the previous leader) does not export
// it over the newer one.
func TestExporterDoesNotRollBack(t *testing.T) {
	old := genConfig(t, "old", 1)
	events := &eventLog{}
	s2 := fileBackend(t.TempDir()).open(t, "rollback")
	el, err := NewElection(testElectionOptions(s2, "b"))
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewExporter(ExporterOptions{Store: s2, Election: el, OnExport: events.hook("b"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Offered first, then a newer snapshot appears (the previous leader's).
	x.Offer(old, "")
	newer := genConfig(t, "newer", 1)
	encodeAt(t, s2, newer, time.Now().Add(time.Second), snapshotOptions(1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { el.Run(ctx); done <- struct{}{} }()
	go func() { x.Run(ctx); done <- struct{}{} }()
	waitFor(t, 10*time.Second, "b leading and judging its config", func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		return x.latest != nil && x.latest.skipped
	})
	cancel()
	<-done
	<-done
	if len(events.list()) != 0 {
		t.Errorf("events %+v, want none", events.list())
	}
	if got := hashes(listHistory(t, s2, config.KongVersion)); !slices.Equal(got, []string{hashOfConfig(newer)}) {
		t.Errorf("history %v", got)
	}
}

func TestNewExporterOptions(t *testing.T) {
	s := fileBackend(t.TempDir()).open(t, "opts")
	el, err := NewElection(testElectionOptions(s, "a"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts ExporterOptions
		want string
	}{
		{ExporterOptions{Election: el}, "no storage"},
		{ExporterOptions{Store: s}, "no election"},
		{ExporterOptions{Store: s, Election: el, Snapshot: snapshot.Options{Passphrase: "x", Recipients: []string{"age1x"}}}, "passphrase"},
		{ExporterOptions{Store: s, Election: el, Snapshot: snapshot.Options{Recipients: []string{"age1nope"}}}, "age1nope"},
	} {
		if _, err := NewExporter(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewExporter = %v, want error containing %q", err, tc.want)
		}
	}
	x, err := NewExporter(ExporterOptions{Store: s, Election: el})
	if err != nil {
		t.Fatal(err)
	}
	if x.delay != DefaultExportDelay || x.retain != DefaultRetain || x.retry.min != DefaultRetryMin || x.retry.max != DefaultRetryMax || !x.kong {
		t.Errorf("defaults: %+v", x)
	}
	x, _ = NewExporter(ExporterOptions{Store: s, Election: el, Delay: -1, KongObjectVersion: "3.9.1.2"})
	if x.delay != 0 || x.kongKey != "3.9.1.2/config.json" {
		t.Errorf("delay %v, kong key %q", x.delay, x.kongKey)
	}
}

// TestExporterOfferedHashChecked: Offer trusts a given hash only to tell
// offers apart; the export carries the config's own hash everywhere (event,
// history key and manifest, config.json's metadata, status), so an importer
// finds the history copy config.json names. A correct hash changes nothing.
func TestExporterOfferedHashChecked(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, "hash")
		events := &eventLog{}
		n := startNode(t, s, testElectionOptions(s, "node-h"), ExporterOptions{Delay: -1, OnExport: events.hook("h")}, nil)
		cfg := genConfig(t, "hash", 2)
		want := hashOfConfig(cfg)
		wrong := "0123456789abcdef0123456789abcdef"
		n.x.Offer(cfg, wrong)
		waitFor(t, 10*time.Second, "the export", func() bool { return len(events.ok("")) == 1 })
		ev := events.ok("")[0]
		if ev.Hash != want || !strings.Contains(ev.Snapshot, "-"+want[:12]+"-") {
			t.Errorf("export event hash %s snapshot %s, want the config's hash %s", ev.Hash, ev.Snapshot, want)
		}
		head, err := s.Head(context.Background(), snapshot.KongObjectKey("", config.KongVersion))
		if err != nil {
			t.Fatal(err)
		}
		if head.Metadata[metaConfigHash] != want {
			t.Errorf("config.json metadata hash %q, want %s", head.Metadata[metaConfigHash], want)
		}
		if h := listHistory(t, s, config.KongVersion); len(h) != 1 || h[0].manifest.ConfigHash != want {
			t.Errorf("history %v, want one snapshot of %s", hashes(h), want)
		}
		if st := n.x.Status(); st.LastHash != want || st.PendingHash != "" {
			t.Errorf("status last %s pending %s, want %s exported", st.LastHash, st.PendingHash, want)
		}

		// The same config offered with its right hash: already exported.
		n.x.Offer(cfg, want)
		other := genConfig(t, "hash2", 2)
		n.x.Offer(other, hashOfConfig(other))
		waitFor(t, 10*time.Second, "the second export", func() bool { return len(events.ok("")) == 2 })
		if evs := events.ok(""); evs[1].Hash != hashOfConfig(other) {
			t.Errorf("second export %s, want %s", evs[1].Hash, hashOfConfig(other))
		}
	})
}
