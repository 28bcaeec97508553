package storage_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/kongfb/kongfb/pkg/storage"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

// BenchmarkPutGet writes and reads back a 64 KiB object (about the size of
// a small exported Kong config) per iteration.
//
//	KONGFB_TEST_MINIO_BIN=$(scripts/ensure-minio.sh) go test ./pkg/storage -run '^$' -bench PutGet -benchtime 200x
func BenchmarkPutGet(b *testing.B) {
	body := make([]byte, 64<<10)
	rand.Read(body)
	run := func(b *testing.B, s storage.Store) {
		ctx := context.Background()
		b.SetBytes(int64(2 * len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Put(ctx, "3.9.1/config.json", body, storage.PutOptions{ContentType: "application/json"}); err != nil {
				b.Fatal(err)
			}
			got, _, err := s.Get(ctx, "3.9.1/config.json")
			if err != nil || !bytes.Equal(got, body) {
				b.Fatalf("get: %v", err)
			}
		}
	}
	b.Run("file", func(b *testing.B) {
		s, err := storage.Open(context.Background(), "file://"+b.TempDir(), storage.Options{CreateBucket: true})
		if err != nil {
			b.Fatal(err)
		}
		run(b, s)
	})
	b.Run("minio", func(b *testing.B) {
		m := storagetest.StartMinIO(b)
		run(b, m.Open(b, "bench"))
	})
}
