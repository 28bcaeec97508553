package cluster

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/cluster/clustertest"
	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
	"github.com/kongfb/kongfb/internal/proxy"
	wire "github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// BenchmarkLargeConfig: a 10,000-route configuration (100 services x 100
// routes) in a SQLite store, one light DP (decode + parse + engine apply).
// Each iteration adds one route and waits until the DP applied it.
// Reported: the CP's export (read + convert + hash + gzip), the frame
// size, the DP's decode+parse+apply time, write -> applied, the first
// connect -> applied, and the Go heap a DP holds for the applied config.
// The propagation benchmarks over real `serve cp`/`serve dp` are in
// internal/cli (BenchmarkPropagation); scripts/bench/propagation.sh runs both.
//
//	go test -run '^$' -bench LargeConfig -benchtime 5x ./internal/cp/cluster/
func BenchmarkLargeConfig(b *testing.B) {
	const services, routesPer = 100, 100
	st := storetest.NewSQLite(b)
	colls := map[string][]store.Row{}
	for s := 0; s < services; s++ {
		row, verr := config.ValidateEntity("services", map[string]any{
			"id": uuid.NewString(), "name": fmt.Sprintf("s%d", s), "host": "127.0.0.1", "port": 9,
		}, config.Insert)
		if verr != nil {
			b.Fatal(verr.Message())
		}
		colls["services"] = append(colls["services"], row)
		for r := 0; r < routesPer; r++ {
			rr, verr := config.ValidateEntity("routes", map[string]any{
				"id": uuid.NewString(), "name": fmt.Sprintf("s%d-r%d", s, r), "paths": []any{fmt.Sprintf("/s%d/r%d", s, r)},
				"service": map[string]any{"id": row["id"]},
			}, config.Insert)
			if verr != nil {
				b.Fatal(verr.Message())
			}
			colls["routes"] = append(colls["routes"], rr)
		}
	}
	if _, err := st.ReplaceAll(context.Background(), colls); err != nil {
		b.Fatal(err)
	}
	tlsOpts := clustertest.SharedCert(b)
	cp := startCP(b, st, tlsOpts, func(o *Options) { o.Logger = nil })
	waitFor(b, "the initial export", func() bool { p := cp.Current(); return p != nil && p.Entities >= services*(routesPer+1) })
	p := cp.Current()
	heap := dpHeap(b, p)

	got := make(chan struct{}, 16)
	start := time.Now()
	d := clustertest.Start(b, cp.addr, tlsOpts, clustertest.Options{OnApplied: func(*clustertest.LightDP, time.Time) { got <- struct{}{} }})
	select {
	case <-got:
	case <-time.After(2 * time.Minute):
		b.Fatal("no config applied")
	}
	first := time.Since(start)

	svcID := colls["services"][0]["id"].(string)
	var push, apply, export []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("extra-%d", i)
		start := time.Now()
		insert(b, st, "routes", map[string]any{"name": name, "paths": []any{"/extra/" + name}, "service": map[string]any{"id": svcID}})
		for !d.HasRoute(name) {
			select {
			case <-got:
			case <-time.After(2 * time.Minute):
				b.Fatal("change not applied")
			}
		}
		push = append(push, time.Since(start))
		apply = append(apply, d.ApplyTook())
		export = append(export, cp.Current().ExportTook)
	}
	b.StopTimer()
	med := func(x []time.Duration) float64 {
		sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
		return float64(x[len(x)/2].Microseconds()) / 1000
	}
	// ResetTimer drops metrics reported before it: report everything here.
	b.ReportMetric(float64(len(p.Frame))/1024, "frame-KiB")
	b.ReportMetric(float64(first.Microseconds())/1000, "connect-to-applied-ms")
	b.ReportMetric(heap/(1<<20), "dp-heap-MiB")
	b.ReportMetric(med(push), "write-to-applied-p50-ms")
	b.ReportMetric(med(apply), "dp-apply-p50-ms")
	b.ReportMetric(med(export), "cp-export-p50-ms")
	st2 := cp.Current().Stages
	b.ReportMetric(ms(st2.Read), "cp-read-ms")
	b.ReportMetric(ms(st2.Convert), "cp-convert-ms")
	b.ReportMetric(ms(st2.Hash), "cp-hash-ms")
	b.ReportMetric(ms(st2.Encode), "cp-encode-ms")
	b.ReportMetric(0, "ns/op")
}

// dpHeap is the Go heap a DP holds for an applied configuration: the
// decoded config and the engine's compiled router and balancers, measured
// by applying the payload to a fresh engine in this (quiet) process.
func dpHeap(tb testing.TB, p *Payload) float64 {
	var m0, m1 runtime.MemStats
	// Twice: objects with finalizers are only freed by the second cycle.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m0)
	e := applyFrame(tb, p.Frame)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if h, _ := e.Current(); h != p.Hash {
		tb.Fatalf("engine holds %s, want %s", h, p.Hash)
	}
	runtime.KeepAlive(e)
	_ = e.Shutdown(context.Background())
	return float64(int64(m1.HeapAlloc) - int64(m0.HeapAlloc))
}

func applyFrame(tb testing.TB, frame []byte) *proxy.Engine {
	m, err := wire.DecodeReconfigure(frame, 0, 0)
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Parse(m.ConfigTable, "config_table")
	if err != nil {
		tb.Fatal(err)
	}
	e := proxy.New(proxy.Options{})
	if err := e.Apply(cfg, m.ConfigHash); err != nil {
		tb.Fatal(err)
	}
	return e
}
