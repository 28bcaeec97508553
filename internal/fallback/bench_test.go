package fallback

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/storage"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

// BenchmarkExportLatency measures Offer → snapshot and config.json written
// (the OnExport callback) by a leader with no delay pending: the election
// check, the lease confirmation read, encoding (zstd, unsigned) and two
// conditional writes.
//
//	KONGFB_TEST_MINIO_BIN=$(cat /tmp/minio-path.txt) go test ./internal/fallback -run '^$' -bench ExportLatency -benchtime 200x
func BenchmarkExportLatency(b *testing.B) {
	sizes := []struct {
		name     string
		services int
	}{{"10-services", 10}, {"1000-services", 1000}}
	backends := []struct {
		name string
		open func(b *testing.B) storage.Store
	}{
		{"file", func(b *testing.B) storage.Store {
			s, err := storage.Open(context.Background(), "file://"+b.TempDir(), storage.Options{CreateBucket: true})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{"minio", func(b *testing.B) storage.Store {
			m := storagetest.StartMinIO(b)
			return m.Open(b, "bench")
		}},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := be.open(b)
			runs := 0
			for _, sz := range sizes {
				b.Run(sz.name, func(b *testing.B) {
					// Two configs alternate, so every offer is a change.
					cfgs := [2]*config.Config{benchConfig(b, "a", sz.services), benchConfig(b, "b", sz.services)}
					hs := [2]string{hashOfConfig(cfgs[0]), hashOfConfig(cfgs[1])}
					// The benchmark function runs more than once (b.N grows):
					// each run gets its own version directory, so it starts
					// with no lease and no history.
					runs++
					x, exported, stop := benchExporter(b, s, fmt.Sprintf("3.9.%d", runs), -1)
					defer stop()
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						x.Offer(cfgs[i%2], hs[i%2])
						if ev := <-exported; ev.Err != nil {
							b.Fatal(ev.Err)
						}
					}
				})
			}
		})
	}
}

func benchConfig(b *testing.B, tag string, services int) *config.Config {
	var buf bytes.Buffer
	buf.WriteString(`{"_format_version":"3.0","services":[`)
	for i := range services {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"name":"svc-%s-%d","url":"http://up-%d.internal:8080/base","routes":[{"name":"r-%s-%d","paths":["/v1/s%d"],"hosts":["h%d.example.com"]}]}`, tag, i, i, tag, i, i, i)
	}
	buf.WriteString(`]}`)
	cfg, err := config.Parse(buf.Bytes(), "bench.json")
	if err != nil {
		b.Fatal(err)
	}
	return cfg
}

// BenchmarkColdImport measures what a new DP with --import does before it
// can serve: open the S3 store (a new client, as in a new process), list,
// fetch and verify the newest config. The storage holds what an exporter
// writes (lease, history snapshot, Kong's config.json with its metadata).
// "import" excludes the store's opening, "open" is the opening alone.
//
//	KONGFB_TEST_MINIO_BIN=… go test ./internal/fallback -run '^$' -bench ColdImport -benchtime 100x
func BenchmarkColdImport(b *testing.B) {
	m := storagetest.StartMinIO(b)
	for _, sz := range []struct {
		name     string
		services int
	}{{"1-service", 1}, {"1000-services", 1000}} {
		url := m.URL("cold-" + sz.name)
		seed := m.OpenWith(b, url, m.Options())
		exportOnce(b, seed, benchConfig(b, "cold", sz.services))
		open := func(b *testing.B) storage.Store {
			s, err := storage.Open(context.Background(), url, m.Options())
			if err != nil {
				b.Fatal(err)
			}
			return s
		}
		importOnce := func(b *testing.B, s storage.Store) {
			im, err := NewImporter(ImporterOptions{Store: s})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := im.Import(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(sz.name+"/open", func(b *testing.B) {
			for b.Loop() {
				s := open(b)
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
		b.Run(sz.name+"/import", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				s := open(b)
				b.StartTimer()
				importOnce(b, s)
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
		b.Run(sz.name+"/open+import", func(b *testing.B) {
			for b.Loop() {
				s := open(b)
				importOnce(b, s)
				b.StopTimer()
				s.Close()
				b.StartTimer()
			}
		})
	}
}

// exportOnce runs an exporter until cfg is exported (history snapshot and
// Kong's config.json), then stops it.
func exportOnce(b *testing.B, s storage.Store, cfg *config.Config) {
	b.Helper()
	x, exported, stop := benchExporter(b, s, "", 0)
	defer stop()
	x.Offer(cfg, "")
	select {
	case ev := <-exported:
		if ev.Err != nil || ev.Kong == "" {
			b.Fatalf("export: %+v", ev)
		}
	case <-time.After(30 * time.Second):
		b.Fatal("no export within 30s")
	}
}

// benchExporter runs an election and an exporter (no delay) on s under
// version ("" = the gateway's) until the election makes it leader. Every
// export is sent on the channel; stop ends both.
func benchExporter(b *testing.B, s storage.Store, version string, retain int) (x *Exporter, exported <-chan ExportEvent, stop func()) {
	b.Helper()
	events := make(chan ExportEvent, 1)
	el, err := NewElection(ElectionOptions{Store: s, NodeID: "bench", Version: version, TTL: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	x, err = NewExporter(ExporterOptions{Store: s, Election: el, Delay: -1, Retain: retain, OnExport: func(ev ExportEvent) { events <- ev }})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { el.Run(ctx); done <- struct{}{} }()
	go func() { x.Run(ctx); done <- struct{}{} }()
	stop = func() { cancel(); <-done; <-done }
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := el.Leader(); ok {
			return x, events, stop
		}
		if time.Now().After(deadline) {
			stop()
			b.Fatal("the benchmark exporter did not become leader within 30s")
		}
		time.Sleep(time.Millisecond)
	}
}
