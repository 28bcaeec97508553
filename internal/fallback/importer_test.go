package fallback

import (
	"context"
	"crypto/ed25519"
	"errors"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

func newImporter(t *testing.T, s storage.Store, v snapshot.VerifyOptions, onAttempt func(Attempt)) *Importer {
	t.Helper()
	im, err := NewImporter(ImporterOptions{Store: s, Verify: v, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		OnAttempt: onAttempt, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestImporterRejectsBadObjects stores one valid snapshot and, newer than it,
// one bad object per case: the importer must refuse the bad one, naming the
// object and the reason, and import the older valid one.
func TestImporterRejectsBadObjects(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		signer, err := snapshot.NewSigningKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
		if err != nil {
			t.Fatal(err)
		}
		foreign, _, err := snapshot.GenerateSigningKey()
		if err != nil {
			t.Fatal(err)
		}
		foreignKey, err := snapshot.ParseSigningKey(foreign)
		if err != nil {
			t.Fatal(err)
		}
		mine, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		good := genConfig(t, "good", 2)
		bad := genConfig(t, "bad", 2)
		t0 := time.Date(2025, 1, 8, 10, 0, 0, 0, time.UTC)
		t1 := t0.Add(time.Minute)
		v := config.KongVersion

		for _, tc := range []struct {
			name   string
			verify snapshot.VerifyOptions
			good   snapshot.Options // how the older valid object is written
			write  func(t *testing.T, s storage.Store) string
			reason error
		}{
			{name: "truncated", reason: snapshot.ErrTruncated, write: func(t *testing.T, s storage.Store) string {
				enc, err := snapshot.Encode(bad, snapshot.Options{CreatedAt: t1})
				if err != nil {
					t.Fatal(err)
				}
				put(t, s, enc.Key(""), enc.Data[:len(enc.Data)-10])
				return enc.Key("")
			}},
			{name: "flipped-bit", reason: snapshot.ErrChecksum, write: func(t *testing.T, s storage.Store) string {
				enc, err := snapshot.Encode(bad, snapshot.Options{CreatedAt: t1})
				if err != nil {
					t.Fatal(err)
				}
				enc.Data[len(enc.Data)-5] ^= 0x10
				put(t, s, enc.Key(""), enc.Data)
				return enc.Key("")
			}},
			{name: "wrong-age-key", reason: snapshot.ErrDecrypt,
				verify: snapshot.VerifyOptions{Identities: []age.Identity{mine}},
				good:   snapshot.Options{Recipients: []string{mine.Recipient().String()}},
				write: func(t *testing.T, s storage.Store) string {
					k, _ := encodeAt(t, s, bad, t1, snapshot.Options{Recipients: []string{theirs.Recipient().String()}})
					return k
				}},
			{name: "unsigned-with-pinned-keys", reason: snapshot.ErrUnsigned,
				verify: snapshot.VerifyOptions{TrustedSignerKeys: []ed25519.PublicKey{signer.Public()}},
				good:   snapshot.Options{SigningKey: signer},
				write: func(t *testing.T, s storage.Store) string {
					k, _ := encodeAt(t, s, bad, t1, snapshot.Options{})
					return k
				}},
			{name: "foreign-signer", reason: snapshot.ErrUntrustedSigner,
				verify: snapshot.VerifyOptions{TrustedSignerKeys: []ed25519.PublicKey{signer.Public()}},
				good:   snapshot.Options{SigningKey: signer},
				write: func(t *testing.T, s storage.Store) string {
					k, _ := encodeAt(t, s, bad, t1, snapshot.Options{SigningKey: foreignKey})
					return k
				}},
			{name: "kong-object-with-pinned-keys", reason: snapshot.ErrUnsigned,
				verify: snapshot.VerifyOptions{TrustedSignerKeys: []ed25519.PublicKey{signer.Public()}},
				good:   snapshot.Options{SigningKey: signer},
				write: func(t *testing.T, s storage.Store) string {
					doc, _ := bad.MarshalJSON()
					put(t, s, snapshot.KongObjectKey("", v), doc)
					return snapshot.KongObjectKey("", v)
				}},
			{name: "schema-invalid", reason: snapshot.ErrInvalidConfig, write: func(t *testing.T, s storage.Store) string {
				k, data := forge(t, []byte(`{"_format_version":"3.0","services":[{"name":"x","host":"h","port":70000}]}`), t1, v)
				put(t, s, k, data)
				return k
			}},
			{name: "dangling-reference", reason: snapshot.ErrInvalidConfig, write: func(t *testing.T, s storage.Store) string {
				k, data := forge(t, []byte(`{"_format_version":"3.0","_transform":false,"routes":[{"id":"5b2b8f0e-1111-4aaa-8bbb-000000000001","name":"r","paths":["/x"],"service":"5b2b8f0e-1111-4aaa-8bbb-000000000002"}]}`), t1, v)
				put(t, s, k, data)
				return k
			}},
			{name: "empty-config", reason: snapshot.ErrEmptyConfig, write: func(t *testing.T, s storage.Store) string {
				k, data := forge(t, []byte(`{"_format_version":"3.0"}`), t1, v)
				put(t, s, k, data)
				return k
			}},
			{name: "over-size-limit", reason: snapshot.ErrTooLarge,
				verify: snapshot.VerifyOptions{MaxSize: 64 << 10},
				write: func(t *testing.T, s storage.Store) string {
					k, enc := encodeAt(t, s, genConfig(t, "huge", 600), t1, snapshot.Options{Compression: snapshot.CompressionNone})
					if len(enc.Data) <= 64<<10 {
						t.Fatalf("the big object is only %d bytes", len(enc.Data))
					}
					return k
				}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				s := b.open(t, tc.name)
				goodKey, _ := encodeAt(t, s, good, t0, tc.good)
				badKey := tc.write(t, s)
				r, err := newImporter(t, s, tc.verify, nil).Import(context.Background())
				if err != nil {
					t.Fatalf("Import: %v", err)
				}
				if r.Key != goodKey || r.Hash != hashOfConfig(good) {
					t.Errorf("imported %s (%s), want %s", r.Key, r.Hash, goodKey)
				}
				if len(r.Rejected) != 1 {
					t.Fatalf("rejected %v, want the bad object", r.Rejected)
				}
				rej := r.Rejected[0]
				if !errors.Is(rej, tc.reason) || !strings.Contains(rej.Error(), badKey) {
					t.Errorf("rejection %q: want reason %q naming %s", rej, tc.reason, badKey)
				}
				var se *snapshot.Error
				if !errors.As(rej, &se) || se.Object != badKey {
					t.Errorf("rejection %v is not a *snapshot.Error for %s", rej, badKey)
				}
				t.Logf("%s", rej)
			})
		}
	})
}

// TestImporterNewestValid: several valid objects, the newest wins; Kong's
// config.json is read when it is the newest, and when the history holds the
// same config the verified history copy is imported instead.
func TestImporterNewestValid(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, "newest")
		t0 := time.Now().Add(-time.Hour).UTC()
		var keys []string
		var cfgs []*config.Config
		for i, tag := range []string{"n1", "n2", "n3"} {
			c := genConfig(t, tag, 1)
			k, _ := encodeAt(t, s, c, t0.Add(time.Duration(i)*time.Minute), snapshotOptions(uint64(i+1)))
			keys, cfgs = append(keys, k), append(cfgs, c)
		}
		im := newImporter(t, s, snapshot.VerifyOptions{}, nil)
		r, err := im.Import(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != keys[2] || r.Manifest.Term != 3 || r.Kind != snapshot.KindSnapshot || len(r.Rejected) != 0 {
			t.Errorf("imported %s term %d kind %v, want %s", r.Key, r.Manifest.Term, r.Kind, keys[2])
		}
		// Kong's object written now (LastModified newer than the history),
		// holding the newest history config: the history copy is imported.
		doc, _ := cfgs[2].MarshalJSON()
		put(t, s, snapshot.KongObjectKey("", config.KongVersion), doc)
		r, err = im.Import(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != keys[2] {
			t.Errorf("imported %s, want the history copy %s of config.json's config", r.Key, keys[2])
		}
		// Kong's object with a config the history does not have (a Kong EE
		// exporter wrote it): it is the newest, it is imported.
		kongCfg := genConfig(t, "kong-ee", 1)
		doc, _ = kongCfg.MarshalJSON()
		put(t, s, snapshot.KongObjectKey("", config.KongVersion), doc)
		r, err = im.Import(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != snapshot.KongObjectKey("", config.KongVersion) || r.Kind != snapshot.KindKong || r.Hash != hashOfConfig(kongCfg) {
			t.Errorf("imported %s (%v), want Kong's config.json", r.Key, r.Kind)
		}
		if st := im.Status(); st.Attempts != 3 || st.ImportedKey != r.Key || st.ImportedHash != r.Hash || st.LastError != "" {
			t.Errorf("status %+v", st)
		}
	})
}

// TestImporterVersionPolicy: objects of other minor versions only → an error
// that lists the versions found; same major.minor is accepted by default,
// only the exact version with MatchExact.
func TestImporterVersionPolicy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, "versions")
		c := genConfig(t, "v", 1)
		at := time.Now().UTC()
		encodeAt(t, s, c, at, snapshot.Options{Version: "3.10.0"})
		encodeAt(t, s, c, at, snapshot.Options{Version: "4.0.0"})
		im := newImporter(t, s, snapshot.VerifyOptions{VersionPolicy: snapshot.VersionPolicy{Current: "3.9.1"}}, nil)
		_, err := im.Import(context.Background())
		var nm *snapshot.NoMatchingVersionError
		if !errors.As(err, &nm) || !errors.Is(err, snapshot.ErrNoSnapshot) || !strings.Contains(err.Error(), "versions found: 3.10.0, 4.0.0") {
			t.Fatalf("Import = %v, want the versions listed", err)
		}
		key, _ := encodeAt(t, s, c, at, snapshot.Options{Version: "3.9.0"})
		r, err := im.Import(context.Background())
		if err != nil || r.Key != key {
			t.Fatalf("Import = %v, %v; want %s (same major.minor)", r, err, key)
		}
		exact := newImporter(t, s, snapshot.VerifyOptions{VersionPolicy: snapshot.VersionPolicy{Current: "3.9.1", Match: snapshot.MatchExact}}, nil)
		if _, err := exact.Import(context.Background()); !errors.As(err, &nm) || !strings.Contains(err.Error(), "3.9.0, 3.10.0, 4.0.0") {
			t.Errorf("exact Import = %v", err)
		}
	})
}

// TestImporterWaitsForAValidObject: with nothing valid in storage the
// importer keeps retrying; a valid object written later is imported.
func TestImporterWaitsForAValidObject(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, "wait")
		k, data := forge(t, []byte(`{"_format_version":"3.0"}`), time.Now(), config.KongVersion)
		put(t, s, k, data)
		var attempts atomic.Int32
		var lastErr atomic.Value
		im := newImporter(t, s, snapshot.VerifyOptions{}, func(a Attempt) {
			attempts.Store(int32(a.N))
			lastErr.Store(a.Err)
		})
		type res struct {
			r   *Result
			err error
		}
		done := make(chan res, 1)
		go func() {
			r, err := im.WaitForConfig(context.Background())
			done <- res{r, err}
		}()
		waitFor(t, 10*time.Second, "two failed attempts", func() bool { return attempts.Load() >= 2 })
		if err, _ := lastErr.Load().(error); !errors.Is(err, snapshot.ErrEmptyConfig) || !errors.Is(err, snapshot.ErrNoSnapshot) {
			t.Errorf("attempt error %v, want the empty object listed", err)
		}
		c := genConfig(t, "late", 1)
		key, _ := encodeAt(t, s, c, time.Now().Add(-time.Hour), snapshot.Options{})
		got := <-done
		if got.err != nil || got.r.Key != key || got.r.Hash != hashOfConfig(c) {
			t.Fatalf("WaitForConfig = %+v, %v; want %s", got.r, got.err, key)
		}
		if len(got.r.Rejected) != 1 || !errors.Is(got.r.Rejected[0], snapshot.ErrEmptyConfig) {
			t.Errorf("rejected %v", got.r.Rejected)
		}
	})
}

// TestImporterWaitForConfigStops: WaitForConfig ends with ctx, carrying the
// last failure, and never returns a config.
func TestImporterWaitForConfigStops(t *testing.T) {
	s := fileBackend(t.TempDir()).open(t, "stop")
	ctx, cancel := context.WithCancel(context.Background())
	im := newImporter(t, s, snapshot.VerifyOptions{}, func(a Attempt) {
		if a.N == 3 {
			cancel()
		}
	})
	r, err := im.WaitForConfig(ctx)
	if r != nil || !errors.Is(err, context.Canceled) || !errors.Is(err, snapshot.ErrNoSnapshot) || !strings.Contains(err.Error(), "no versions found") {
		t.Errorf("WaitForConfig = %v, %v", r, err)
	}
	if st := im.Status(); st.Attempts != 3 || st.ImportedKey != "" || st.LastError == "" {
		t.Errorf("status %+v", st)
	}
}

// TestImporterStorageDown: MinIO is down when the importer starts; it keeps
// retrying and imports once MinIO is back.
func TestImporterStorageDown(t *testing.T) {
	m := storagetest.StartMinIO(t)
	s := minioBackend(m, "down").open(t, "x")
	c := genConfig(t, "down", 1)
	key, _ := encodeAt(t, s, c, time.Now(), snapshot.Options{})
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	var lastErr atomic.Value
	im := newImporter(t, s, snapshot.VerifyOptions{}, func(a Attempt) { attempts.Add(1); lastErr.Store(a.Err) })
	done := make(chan *Result, 1)
	go func() {
		r, err := im.WaitForConfig(context.Background())
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	waitFor(t, 30*time.Second, "failed attempts", func() bool { return attempts.Load() >= 2 })
	if err, _ := lastErr.Load().(error); err == nil || !strings.Contains(err.Error(), "list fallback storage") {
		t.Errorf("attempt error %v", err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r == nil || r.Key != key {
		t.Fatalf("imported %+v, want %s", r, key)
	}
}

// TestExportThenImport: what the exporter writes (signed, encrypted), the
// importer verifies and returns.
func TestExportThenImport(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, "roundtrip")
		signer, err := snapshot.NewSigningKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
		if err != nil {
			t.Fatal(err)
		}
		id, err := age.GenerateX25519Identity()
		if err != nil {
			t.Fatal(err)
		}
		events := &eventLog{}
		n := startNode(t, s, testElectionOptions(s, "exporter-1"), ExporterOptions{
			Snapshot: snapshot.Options{SigningKey: signer, Recipients: []string{id.Recipient().String()}},
			OnExport: events.hook("x"),
		}, nil)
		c := genConfig(t, "rt", 3)
		n.x.Offer(c, "")
		waitFor(t, 10*time.Second, "the export", func() bool { return len(events.ok("")) == 1 })
		r, err := newImporter(t, b.open(t, "roundtrip"), snapshot.VerifyOptions{
			TrustedSignerKeys: []ed25519.PublicKey{signer.Public()}, Identities: []age.Identity{id},
		}, nil).Import(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Hash != hashOfConfig(c) || !r.Trusted || r.Manifest.NodeID != "exporter-1" || r.Manifest.Term != 1 || r.Key != events.ok("")[0].Snapshot {
			t.Errorf("imported %+v", r)
		}
	})
}

// countingStore counts the reads of each object.
type countingStore struct {
	storage.Store
	mu    sync.Mutex
	gets  map[string]int
	heads map[string]int
}

func newCountingStore(s storage.Store) *countingStore {
	return &countingStore{Store: s, gets: map[string]int{}, heads: map[string]int{}}
}

func (c *countingStore) Get(ctx context.Context, key string) ([]byte, storage.ObjectInfo, error) {
	c.mu.Lock()
	c.gets[key]++
	c.mu.Unlock()
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	c.mu.Lock()
	c.heads[key]++
	c.mu.Unlock()
	return c.Store.Head(ctx, key)
}

func (c *countingStore) counts() (gets, heads map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.gets), maps.Clone(c.heads)
}

// listed returns the LastModified the storage lists for key.
func listed(t *testing.T, s storage.Store, key string) time.Time {
	t.Helper()
	for obj, err := range storage.ListAll(context.Background(), s, "", storage.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		if obj.Key == key {
			return obj.LastModified
		}
	}
	t.Fatalf("%s is not listed", key)
	return time.Time{}
}

// TestImporterReadsOneObjectForTheExportersPair: the exporter writes a
// history snapshot and Kong's config.json (newer, with the config's hash in
// its metadata). The importer decides from that metadata and fetches and
// verifies only the history snapshot: config.json's body is never read.
// When the history copy does not verify, config.json is read and imported;
// no object is fetched twice.
func TestImporterReadsOneObjectForTheExportersPair(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, "pair")
		events := &eventLog{}
		n := startNode(t, s, testElectionOptions(s, "exporter-1"), ExporterOptions{OnExport: events.hook("x")}, nil)
		cfg := genConfig(t, "pair", 2)
		n.x.Offer(cfg, "")
		waitFor(t, 10*time.Second, "the export", func() bool { return len(events.ok("")) == 1 })
		n.kill()
		ev := events.ok("")[0]
		kongKey := snapshot.KongObjectKey("", config.KongVersion)
		if ev.Snapshot == "" || ev.Kong != kongKey {
			t.Fatalf("export event %+v: want a snapshot and Kong's object", ev)
		}

		cs := newCountingStore(b.open(t, "pair"))
		r, err := newImporter(t, cs, snapshot.VerifyOptions{}, nil).Import(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != ev.Snapshot || r.Kind != snapshot.KindSnapshot || r.Hash != hashOfConfig(cfg) || r.Manifest.NodeID != "exporter-1" || len(r.Rejected) != 0 {
			t.Errorf("imported %s (%v, %s), want the history copy %s", r.Key, r.Kind, r.Hash, ev.Snapshot)
		}
		if want := listed(t, s, ev.Snapshot); r.LastModified.IsZero() || !r.LastModified.Equal(want) {
			t.Errorf("LastModified %v, want the listed %v", r.LastModified, want)
		}
		gets, heads := cs.counts()
		if gets[kongKey] != 0 || gets[ev.Snapshot] != 1 || heads[kongKey] != 1 {
			t.Errorf("reads: gets %v heads %v; want config.json's metadata only and the snapshot once", gets, heads)
		}

		// The history copy is damaged: config.json (same config) is read,
		// verified and imported instead.
		data, _, err := s.Get(context.Background(), ev.Snapshot)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)-3] ^= 0x01
		put(t, s, ev.Snapshot, data)
		cs = newCountingStore(b.open(t, "pair"))
		r, err = newImporter(t, cs, snapshot.VerifyOptions{}, nil).Import(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != kongKey || r.Kind != snapshot.KindKong || r.Hash != hashOfConfig(cfg) {
			t.Errorf("imported %s (%v), want Kong's config.json", r.Key, r.Kind)
		}
		if want := listed(t, s, kongKey); r.LastModified.IsZero() || !r.LastModified.Equal(want) {
			t.Errorf("LastModified %v, want the listed %v", r.LastModified, want)
		}
		gets, _ = cs.counts()
		if gets[kongKey] != 1 || gets[ev.Snapshot] != 1 {
			t.Errorf("gets %v: want each object fetched once", gets)
		}
	})
}

// TestImporterKongObjectMetadataIsNotTrusted: config.json's metadata only
// chooses which history snapshot to verify. Metadata naming a hash that no
// history snapshot has leads to config.json itself; metadata naming a
// forged snapshot (checksums fine, config invalid) leads to config.json too.
func TestImporterKongObjectMetadataIsNotTrusted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s := b.open(t, "meta")
		t0 := time.Now().Add(-time.Hour).UTC()
		old := genConfig(t, "old", 1)
		oldKey, _ := encodeAt(t, s, old, t0, snapshot.Options{})
		kongCfg := genConfig(t, "kong", 1)
		doc, _ := kongCfg.MarshalJSON()
		kongKey := snapshot.KongObjectKey("", config.KongVersion)
		putMeta := func(hash string) {
			t.Helper()
			if _, err := s.Put(context.Background(), kongKey, doc, storage.PutOptions{Metadata: map[string]string{metaConfigHash: hash}}); err != nil {
				t.Fatal(err)
			}
		}
		im := newImporter(t, s, snapshot.VerifyOptions{}, nil)

		putMeta("0123456789abcdef0123456789abcdef") // in no history key
		r, err := im.Import(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != kongKey || r.Hash != hashOfConfig(kongCfg) {
			t.Errorf("imported %s (%s), want config.json", r.Key, r.Hash)
		}

		// A forged history object under the hash the metadata names:
		// refused, config.json is imported; the valid older snapshot is
		// not (config.json is newer).
		forgedKey, forged := forge(t, []byte(`{"_format_version":"3.0","services":[{"name":"x","host":"h","port":70000}]}`), t0.Add(time.Minute), config.KongVersion)
		put(t, s, forgedKey, forged)
		putMeta("0123456789abcdef0123456789abcdef")
		r, err = im.Import(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if r.Key != kongKey || r.Hash != hashOfConfig(kongCfg) || r.Key == oldKey {
			t.Errorf("imported %s (%s), want config.json", r.Key, r.Hash)
		}
	})
}
