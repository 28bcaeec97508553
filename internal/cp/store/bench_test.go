package store_test

import (
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

// benchN is the size of the export benchmarks: 10,000 services, 10,000
// routes and 10,000 consumers.
const benchN = 10000

func benchBackends(b *testing.B, fn func(b *testing.B, newStore func(testing.TB) store.Store)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, storetest.NewSQLite) })
	b.Run("postgres", func(b *testing.B) {
		storetest.PostgresDSN(b)
		fn(b, storetest.NewPostgres)
	})
}

func BenchmarkWrite(b *testing.B) {
	benchBackends(b, func(b *testing.B, newStore func(testing.TB) store.Store) {
		storetest.BenchmarkWrite(b, newStore, false)
	})
}

func BenchmarkWriteParallel(b *testing.B) {
	benchBackends(b, func(b *testing.B, newStore func(testing.TB) store.Store) {
		storetest.BenchmarkWrite(b, newStore, true)
	})
}

func BenchmarkExport(b *testing.B) {
	benchBackends(b, func(b *testing.B, newStore func(testing.TB) store.Store) {
		storetest.BenchmarkExport(b, newStore, benchN)
	})
}

func BenchmarkReplaceAll(b *testing.B) {
	benchBackends(b, func(b *testing.B, newStore func(testing.TB) store.Store) {
		storetest.BenchmarkReplaceAll(b, newStore, benchN)
	})
}

func BenchmarkList(b *testing.B) {
	benchBackends(b, func(b *testing.B, newStore func(testing.TB) store.Store) {
		storetest.BenchmarkList(b, newStore, benchN)
	})
}
