package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/store"
)

// FullService, FullRoute and FullConsumer are rows shaped like what the
// Admin API stores (every field present), for realistic benchmarks.
func FullService(i int) store.Row {
	return store.Row{
		"id": uuid.NewString(), "name": fmt.Sprintf("service-%05d", i), "protocol": "http",
		"host": fmt.Sprintf("backend-%d.internal", i), "port": 8080, "path": "/api", "retries": 5,
		"connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
		"tags": []any{"bench", fmt.Sprintf("team-%d", i%10)}, "client_certificate": nil,
		"tls_verify": nil, "tls_verify_depth": nil, "ca_certificates": nil, "enabled": true,
	}
}

func FullRoute(i int, serviceID string) store.Row {
	return store.Row{
		"id": uuid.NewString(), "name": fmt.Sprintf("route-%05d", i), "protocols": []any{"http", "https"},
		"methods": nil, "hosts": []any{fmt.Sprintf("r%d.example.com", i)}, "paths": []any{fmt.Sprintf("/r%d", i)},
		"headers": nil, "https_redirect_status_code": 426, "regex_priority": 0, "strip_path": true,
		"path_handling": "v0", "preserve_host": false, "request_buffering": true, "response_buffering": true,
		"snis": nil, "sources": nil, "destinations": nil, "tags": []any{"bench"},
		"service": map[string]any{"id": serviceID},
	}
}

func FullConsumer(i int) store.Row {
	return store.Row{"id": uuid.NewString(), "username": fmt.Sprintf("user-%05d", i),
		"custom_id": fmt.Sprintf("cid-%05d", i), "tags": []any{"bench"}}
}

// BenchConfig is n services, n routes (one per service) and n consumers.
func BenchConfig(n int) map[string][]store.Row {
	cfg := map[string][]store.Row{}
	for i := 0; i < n; i++ {
		s := FullService(i)
		cfg["services"] = append(cfg["services"], s)
		cfg["routes"] = append(cfg["routes"], FullRoute(i, s["id"].(string)))
		cfg["consumers"] = append(cfg["consumers"], FullConsumer(i))
	}
	return cfg
}

// BenchmarkWrite measures single-row inserts (one transaction each, the
// Admin API's POST), run by b.RunParallel writers when parallel is set.
func BenchmarkWrite(b *testing.B, newStore func(testing.TB) store.Store, parallel bool) {
	s := newStore(b)
	ctx := context.Background()
	rows := make([]store.Row, b.N)
	for i := range rows {
		rows[i] = FullService(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for i := 0; i < b.N; i++ {
			if _, err := s.Insert(ctx, "services", rows[i]); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	next := make(chan store.Row, len(rows))
	for _, r := range rows {
		next <- r
	}
	close(next)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Insert(ctx, "services", <-next); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkExport measures Export of n services + n routes + n consumers.
func BenchmarkExport(b *testing.B, newStore func(testing.TB) store.Store, n int) {
	s := newStore(b)
	ctx := context.Background()
	if _, err := s.ReplaceAll(ctx, BenchConfig(n)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		snap, err := s.Export(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(snap.Collections["routes"]) != n {
			b.Fatalf("exported %d routes, want %d", len(snap.Collections["routes"]), n)
		}
	}
}

// BenchmarkReplaceAll measures an atomic load of n services + n routes + n
// consumers over the same amount of existing data.
func BenchmarkReplaceAll(b *testing.B, newStore func(testing.TB) store.Store, n int) {
	s := newStore(b)
	ctx := context.Background()
	cfgs := []map[string][]store.Row{BenchConfig(n), BenchConfig(n)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.ReplaceAll(ctx, cfgs[i%2]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList measures reading a 10,000-row collection in pages of
// 1000, the way decK dumps it.
func BenchmarkList(b *testing.B, newStore func(testing.TB) store.Store, n int) {
	s := newStore(b)
	ctx := context.Background()
	if _, err := s.ReplaceAll(ctx, BenchConfig(n)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		opts := store.ListOptions{Size: store.MaxPageSize}
		got := 0
		for {
			p, err := s.List(ctx, "routes", opts)
			if err != nil {
				b.Fatal(err)
			}
			got += len(p.Rows)
			if p.NextOffset == "" {
				break
			}
			opts.Offset = p.NextOffset
		}
		if got != n {
			b.Fatalf("listed %d routes, want %d", got, n)
		}
	}
}
