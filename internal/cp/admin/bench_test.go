package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
	"github.com/kongfb/kongfb/pkg/config"
)

func benchBackends(b *testing.B, fn func(b *testing.B, st store.Store)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, storetest.NewSQLite(b)) })
	b.Run("postgres", func(b *testing.B) { fn(b, storetest.NewPostgres(b)) })
}

func benchServer(b *testing.B, st store.Store) string {
	h, err := New(Options{Store: st})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(h)
	b.Cleanup(srv.Close)
	return srv.URL
}

// BenchmarkAdminPutService measures Admin API write throughput: PUT
// /services/{uuid} over HTTP (keep-alive), cycling over 1000 ids so that
// creates and full replacements are mixed as in a decK sync.
func BenchmarkAdminPutService(b *testing.B) {
	benchBackends(b, func(b *testing.B, st store.Store) {
		base := benchServer(b, st)
		ids := make([]string, 1000)
		for i := range ids {
			ids[i] = uuid.NewString()
		}
		client := &http.Client{}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			id := ids[i%len(ids)]
			body, _ := json.Marshal(map[string]any{"name": "svc-" + id[:8], "host": fmt.Sprintf("h%d.test", i), "port": 8080})
			req, _ := http.NewRequest("PUT", base+"/services/"+id, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			res, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("PUT: %d", res.StatusCode)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
	})
}

// BenchmarkAdminGetConfig measures GET /config (consistent export, typed
// conversion, Kong export JSON) of 10,000 services, 10,000 routes and 10,000
// consumers.
func BenchmarkAdminGetConfig(b *testing.B) {
	benchBackends(b, func(b *testing.B, st store.Store) {
		seedLarge(b, st, 10000)
		base := benchServer(b, st)
		b.ReportAllocs()
		b.ResetTimer()
		var size int64
		for i := 0; i < b.N; i++ {
			res, err := http.Get(base + "/config")
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				b.Fatalf("GET /config: %d", res.StatusCode)
			}
			size = n
		}
		b.StopTimer()
		b.ReportMetric(float64(size)/(1<<20), "MiB/doc")
	})
}

// seedLarge stores n services (each with one route) and n consumers in
// Admin-API form.
func seedLarge(b *testing.B, st store.Store, n int) {
	b.Helper()
	colls := map[string][]store.Row{}
	valid := func(coll string, in map[string]any) store.Row {
		row, v := config.ValidateEntity(coll, in, config.Insert)
		if v != nil {
			b.Fatalf("seed %s: %s", coll, v.Message())
		}
		row["created_at"] = int64(1700000000)
		row["updated_at"] = int64(1700000000)
		return row
	}
	for i := 0; i < n; i++ {
		sid := uuid.NewString()
		colls["services"] = append(colls["services"], valid("services", map[string]any{
			"id": sid, "name": fmt.Sprintf("svc-%05d", i), "host": fmt.Sprintf("u%d.internal", i), "tags": []any{"bench"},
		}))
		colls["routes"] = append(colls["routes"], valid("routes", map[string]any{
			"id": uuid.NewString(), "name": fmt.Sprintf("route-%05d", i), "paths": []any{fmt.Sprintf("/api/%d", i)},
			"service": map[string]any{"id": sid},
		}))
		colls["consumers"] = append(colls["consumers"], valid("consumers", map[string]any{
			"id": uuid.NewString(), "username": fmt.Sprintf("user-%05d", i),
		}))
	}
	if _, err := st.ReplaceAll(context.Background(), colls); err != nil {
		b.Fatal(err)
	}
}
