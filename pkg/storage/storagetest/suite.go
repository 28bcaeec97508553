// Package storagetest is the conformance suite every storage backend
// passes (Run), harnesses for the file backend and for a real MinIO server
// (StartMinIO), for use from _test files only.
//
// It lives under pkg/storage (not internal/testutil) because pkg must not
// import internal, and the storage package's own tests need the MinIO
// starter; other packages' tests (internal/..., cli) import it from here
// too.
package storagetest

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/storage"
)

// Harness opens stores of one backend for Run.
type Harness struct {
	// Open opens a store at prefix (may be "") inside a location private
	// to t: stores opened with the same t share that location, so
	// different prefixes are different views of one bucket.
	Open func(t *testing.T, prefix string) storage.Store
	// NoBucket opens a store whose bucket (directory) does not exist.
	NoBucket func(t *testing.T) storage.Store
	// Denied opens a store on an existing location whose every request is
	// refused. It may call t.Skip when the backend cannot arrange that
	// (the file backend running as root).
	Denied func(t *testing.T) storage.Store
}

// FileHarness runs the suite on file:// stores in t.TempDir().
func FileHarness() Harness {
	var mu sync.Mutex
	dirs := map[*testing.T]string{}
	root := func(t *testing.T) string {
		mu.Lock()
		defer mu.Unlock()
		d, ok := dirs[t]
		if !ok {
			d = t.TempDir()
			dirs[t] = d
			t.Cleanup(func() { mu.Lock(); delete(dirs, t); mu.Unlock() })
		}
		return d
	}
	open := func(t *testing.T, url string, create bool) storage.Store {
		t.Helper()
		s, err := storage.Open(context.Background(), url, storage.Options{CreateBucket: create})
		if err != nil {
			t.Fatalf("open %s: %v", url, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return Harness{
		Open: func(t *testing.T, prefix string) storage.Store {
			return open(t, "file://"+filepath.Join(root(t), "store", prefix), true)
		},
		NoBucket: func(t *testing.T) storage.Store {
			return open(t, "file://"+filepath.Join(root(t), "missing"), false)
		},
		Denied: func(t *testing.T) storage.Store {
			if os.Geteuid() == 0 {
				t.Skip("file permissions do not apply to root")
			}
			d := filepath.Join(root(t), "denied")
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			s := open(t, "file://"+d, false)
			if err := os.Chmod(d, 0); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(d, 0o700) }) // so TempDir can remove it
			return s
		},
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func md5ETag(b []byte) string {
	s := md5.Sum(b)
	return `"` + hex.EncodeToString(s[:]) + `"`
}

func mustPut(t *testing.T, s storage.Store, key string, body []byte, opts storage.PutOptions) storage.ObjectInfo {
	t.Helper()
	info, err := s.Put(ctxT(t), key, body, opts)
	if err != nil {
		t.Fatalf("put %q: %v", key, err)
	}
	return info
}

func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: want error %q, got %v", what, kind, err)
	}
}

func listAll(t *testing.T, s storage.Store, prefix string, opts storage.ListOptions) []storage.ObjectInfo {
	t.Helper()
	var out []storage.ObjectInfo
	for o, err := range storage.ListAll(ctxT(t), s, prefix, opts) {
		if err != nil {
			t.Fatalf("list %q: %v", prefix, err)
		}
		out = append(out, o)
	}
	return out
}

func keysOf(objs []storage.ObjectInfo) []string {
	ks := make([]string, len(objs))
	for i, o := range objs {
		ks[i] = o.Key
	}
	return ks
}

// Run is the conformance suite: every backend must pass all of it.
func Run(t *testing.T, h Harness) {
	t.Run("PutGetHead", func(t *testing.T) {
		s := h.Open(t, "pgh")
		body := []byte(`{"_format_version":"3.0"}`)
		before := time.Now().Add(-2 * time.Second)
		put := mustPut(t, s, "3.9.1/config.json", body, storage.PutOptions{
			ContentType: "application/json",
			Metadata:    map[string]string{"Uploader": "node-1", "x-extra": "a b=c"},
		})
		after := time.Now().Add(2 * time.Second)
		if put.Key != "3.9.1/config.json" || put.Size != int64(len(body)) || put.ETag != md5ETag(body) {
			t.Fatalf("put info = %+v, want key, size %d, etag %s", put, len(body), md5ETag(body))
		}
		if put.LastModified.Before(before) || put.LastModified.After(after) {
			t.Fatalf("put LastModified %v not near now", put.LastModified)
		}
		got, info, err := s.Get(ctxT(t), "3.9.1/config.json")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("get body = %q, want %q", got, body)
		}
		wantMD := map[string]string{"uploader": "node-1", "x-extra": "a b=c"}
		check := func(what string, info storage.ObjectInfo) {
			t.Helper()
			if info.Key != "3.9.1/config.json" || info.Size != int64(len(body)) || info.ETag != put.ETag ||
				info.ContentType != "application/json" || fmt.Sprint(info.Metadata) != fmt.Sprint(wantMD) {
				t.Fatalf("%s info = %+v; want key 3.9.1/config.json size %d etag %s application/json %v", what, info, len(body), put.ETag, wantMD)
			}
			if info.LastModified.Before(before) || info.LastModified.After(after) {
				t.Fatalf("%s LastModified %v not near now", what, info.LastModified)
			}
		}
		check("get", info)
		head, err := s.Head(ctxT(t), "3.9.1/config.json")
		if err != nil {
			t.Fatal(err)
		}
		check("head", head)
		if err := s.Delete(ctxT(t), "3.9.1/config.json", storage.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Get(ctxT(t), "3.9.1/config.json")
		wantKind(t, "get after delete", err, storage.ErrNotFound)
	})

	t.Run("EmptyObjectAndDefaultContentType", func(t *testing.T) {
		s := h.Open(t, "empty")
		mustPut(t, s, "e", nil, storage.PutOptions{})
		got, info, err := s.Get(ctxT(t), "e")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 || info.Size != 0 || info.ETag != `"d41d8cd98f00b204e9800998ecf8427e"` || info.ContentType != storage.DefaultContentType || len(info.Metadata) != 0 {
			t.Fatalf("empty object: body %q info %+v", got, info)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		s := h.Open(t, "nf")
		_, _, err := s.Get(ctxT(t), "missing/config.json")
		wantKind(t, "get", err, storage.ErrNotFound)
		if !strings.Contains(err.Error(), "missing/config.json") {
			t.Fatalf("error %q does not name the key", err)
		}
		_, err = s.Head(ctxT(t), "missing/config.json")
		wantKind(t, "head", err, storage.ErrNotFound)
		if err := s.Delete(ctxT(t), "missing/config.json", storage.DeleteOptions{}); err != nil {
			t.Fatalf("delete of a missing key: want nil like S3, got %v", err)
		}
		err = s.Delete(ctxT(t), "missing/config.json", storage.DeleteOptions{IfMatch: `"0123"`})
		wantKind(t, "conditional delete of a missing key", err, storage.ErrNotFound)
		// A "directory" of keys is not an object.
		mustPut(t, s, "dir/child", []byte("x"), storage.PutOptions{})
		_, _, err = s.Get(ctxT(t), "dir")
		wantKind(t, "get of a key prefix", err, storage.ErrNotFound)
		page, err := s.List(ctxT(t), "nothing/", storage.ListOptions{})
		if err != nil || len(page.Objects) != 0 || page.Truncated {
			t.Fatalf("list of an empty prefix = %+v, %v", page, err)
		}
	})

	t.Run("Overwrite", func(t *testing.T) {
		s := h.Open(t, "ow")
		a := mustPut(t, s, "k", []byte("v1"), storage.PutOptions{Metadata: map[string]string{"a": "1"}})
		b := mustPut(t, s, "k", []byte("version 2"), storage.PutOptions{})
		if a.ETag == b.ETag {
			t.Fatal("ETag did not change on overwrite")
		}
		got, info, err := s.Get(ctxT(t), "k")
		if err != nil || string(got) != "version 2" || info.ETag != b.ETag || len(info.Metadata) != 0 {
			t.Fatalf("get after overwrite = %q %+v %v", got, info, err)
		}
	})

	t.Run("KeyNormalisation", func(t *testing.T) {
		s := h.Open(t, "norm")
		info := mustPut(t, s, "./a//b/../c.json", []byte("x"), storage.PutOptions{})
		if info.Key != "a/c.json" {
			t.Fatalf("normalised key = %q, want a/c.json", info.Key)
		}
		if _, _, err := s.Get(ctxT(t), "/a/c.json"); err != nil {
			t.Fatalf("get by the normalised name: %v", err)
		}
		for _, bad := range []string{"", "/", ".", "../x", "a/../../x", "a/", ".kongfb-lock", "a/.kongfb-tmp-1"} {
			_, err := s.Put(ctxT(t), bad, []byte("x"), storage.PutOptions{})
			wantKind(t, fmt.Sprintf("put %q", bad), err, storage.ErrInvalidKey)
		}
		_, err := s.Put(ctxT(t), "a/../../x", []byte("x"), storage.PutOptions{})
		if !strings.Contains(err.Error(), `invalid key "a/../../x": ".." climbs above the storage prefix`) {
			t.Fatalf("invalid key text = %q", err)
		}
		_, err = s.List(ctxT(t), "../", storage.ListOptions{})
		wantKind(t, "list ../", err, storage.ErrInvalidKey)
	})

	t.Run("IfNoneMatch", func(t *testing.T) {
		s := h.Open(t, "inm")
		mustPut(t, s, "lock", []byte("first"), storage.PutOptions{IfNoneMatch: "*"})
		_, err := s.Put(ctxT(t), "lock", []byte("second"), storage.PutOptions{IfNoneMatch: "*"})
		wantKind(t, "second If-None-Match put", err, storage.ErrPreconditionFailed)
		if !strings.Contains(err.Error(), "lock") {
			t.Fatalf("error %q does not name the key", err)
		}
		got, _, err := s.Get(ctxT(t), "lock")
		if err != nil || string(got) != "first" {
			t.Fatalf("a lost conditional write changed the object: %q %v", got, err)
		}
	})

	t.Run("IfNoneMatchRace", func(t *testing.T) {
		s := h.Open(t, "race")
		const n = 8
		var wins, lost atomic.Int32
		winner := make(chan string, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				body := fmt.Sprintf("writer-%d", i)
				_, err := s.Put(ctxT(t), "election/leader", []byte(body), storage.PutOptions{IfNoneMatch: "*"})
				switch {
				case err == nil:
					wins.Add(1)
					winner <- body
				case errors.Is(err, storage.ErrPreconditionFailed):
					lost.Add(1)
				default:
					t.Errorf("writer %d: %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || lost.Load() != n-1 {
			t.Fatalf("%d writers racing If-None-Match: %d won, %d lost; want exactly 1 winner", n, wins.Load(), lost.Load())
		}
		got, _, err := s.Get(ctxT(t), "election/leader")
		if w := <-winner; err != nil || string(got) != w {
			t.Fatalf("object = %q (%v), want the winner's %q", got, err, w)
		}
	})

	t.Run("IfMatch", func(t *testing.T) {
		s := h.Open(t, "im")
		v1 := mustPut(t, s, "k", []byte("v1"), storage.PutOptions{})
		v2 := mustPut(t, s, "k", []byte("v2"), storage.PutOptions{IfMatch: v1.ETag})
		_, err := s.Put(ctxT(t), "k", []byte("v3"), storage.PutOptions{IfMatch: v1.ETag})
		wantKind(t, "put with a stale ETag", err, storage.ErrPreconditionFailed)
		// Bare (unquoted) ETags are accepted too.
		mustPut(t, s, "k", []byte("v3"), storage.PutOptions{IfMatch: strings.Trim(v2.ETag, `"`)})
		got, _, _ := s.Get(ctxT(t), "k")
		if string(got) != "v3" {
			t.Fatalf("object = %q, want v3", got)
		}
		_, err = s.Put(ctxT(t), "absent", []byte("x"), storage.PutOptions{IfMatch: v1.ETag})
		wantKind(t, "If-Match on a missing key", err, storage.ErrNotFound)
		_, err = s.Put(ctxT(t), "k", []byte("x"), storage.PutOptions{IfMatch: "x", IfNoneMatch: "*"})
		if err == nil {
			t.Fatal("IfMatch with IfNoneMatch accepted")
		}
	})

	t.Run("DeleteIfMatch", func(t *testing.T) {
		s := h.Open(t, "dim")
		v1 := mustPut(t, s, "k", []byte("v1"), storage.PutOptions{})
		v2 := mustPut(t, s, "k", []byte("v2"), storage.PutOptions{})
		err := s.Delete(ctxT(t), "k", storage.DeleteOptions{IfMatch: v1.ETag})
		wantKind(t, "delete with a stale ETag", err, storage.ErrPreconditionFailed)
		if _, err := s.Head(ctxT(t), "k"); err != nil {
			t.Fatalf("object gone after a failed conditional delete: %v", err)
		}
		if err := s.Delete(ctxT(t), "k", storage.DeleteOptions{IfMatch: v2.ETag}); err != nil {
			t.Fatal(err)
		}
		_, err = s.Head(ctxT(t), "k")
		wantKind(t, "head after delete", err, storage.ErrNotFound)
	})

	t.Run("ListOrderAndPrefix", func(t *testing.T) {
		s := h.Open(t, "lop")
		// Byte order: '-' < '.' < '/' < '0'. A file backend walking
		// directories naively would put x/b before x-a.
		keys := []string{"x0", "x/b", "x.c", "x-a", "x/a/deep", "y", "election/1700000000.5-node-b", "election/1700000000.1-node-a"}
		for _, k := range keys {
			mustPut(t, s, k, []byte(k), storage.PutOptions{})
		}
		want := slices.Sorted(slices.Values(keys))
		objs := listAll(t, s, "", storage.ListOptions{})
		if got := keysOf(objs); !slices.Equal(got, want) {
			t.Fatalf("list = %q, want %q", got, want)
		}
		for _, o := range objs {
			if o.Size != int64(len(o.Key)) || o.ETag != md5ETag([]byte(o.Key)) || o.LastModified.IsZero() {
				t.Fatalf("listed object %+v: wrong size, etag or time", o)
			}
		}
		cases := []struct {
			prefix, after string
			want          []string
		}{
			{"x/", "", []string{"x/a/deep", "x/b"}},
			{"x", "", []string{"x-a", "x.c", "x/a/deep", "x/b", "x0"}},
			{"x.", "", []string{"x.c"}},
			{"x/a", "", []string{"x/a/deep"}},
			{"election/", "", []string{"election/1700000000.1-node-a", "election/1700000000.5-node-b"}},
			{"", "x.c", []string{"x/a/deep", "x/b", "x0", "y"}},
			{"", "x/a", []string{"x/a/deep", "x/b", "x0", "y"}},
			{"x/", "x/a/deep", []string{"x/b"}},
			{"", "zz", nil},
			{"nope", "", nil},
		}
		for _, c := range cases {
			got := keysOf(listAll(t, s, c.prefix, storage.ListOptions{StartAfter: c.after}))
			if !slices.Equal(got, c.want) {
				t.Errorf("list prefix %q after %q = %q, want %q", c.prefix, c.after, got, c.want)
			}
		}
		// Small pages walk the same keys.
		if got := keysOf(listAll(t, s, "", storage.ListOptions{MaxKeys: 3})); !slices.Equal(got, want) {
			t.Fatalf("list by pages of 3 = %q, want %q", got, want)
		}
		page, err := s.List(ctxT(t), "", storage.ListOptions{MaxKeys: 3})
		if err != nil || len(page.Objects) != 3 || !page.Truncated || page.NextStartAfter != want[2] {
			t.Fatalf("first page of 3 = %+v, %v", page, err)
		}
	})

	t.Run("ListOver1000", func(t *testing.T) {
		s := h.Open(t, "many")
		const n = 1100
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("election/%05d-node", i)
		}
		putParallel(t, s, keys)
		mustPut(t, s, "other", []byte("x"), storage.PutOptions{})
		page, err := s.List(ctxT(t), "election/", storage.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Objects) != storage.DefaultMaxKeys || !page.Truncated || page.NextStartAfter != keys[storage.DefaultMaxKeys-1] {
			t.Fatalf("first page: %d objects, truncated %v, next %q", len(page.Objects), page.Truncated, page.NextStartAfter)
		}
		page2, err := s.List(ctxT(t), "election/", storage.ListOptions{StartAfter: page.NextStartAfter})
		if err != nil || len(page2.Objects) != n-storage.DefaultMaxKeys || page2.Truncated {
			t.Fatalf("second page: %d objects, truncated %v, %v", len(page2.Objects), page2.Truncated, err)
		}
		if got := keysOf(listAll(t, s, "election/", storage.ListOptions{})); !slices.Equal(got, keys) {
			t.Fatalf("ListAll returned %d keys, want %d in order", len(got), n)
		}
		// MaxKeys above 1000 still gets pages of at most 1000.
		page, err = s.List(ctxT(t), "", storage.ListOptions{MaxKeys: 5000})
		if err != nil || len(page.Objects) > storage.DefaultMaxKeys || !page.Truncated {
			t.Fatalf("MaxKeys 5000: %d objects, truncated %v, %v", len(page.Objects), page.Truncated, err)
		}
	})

	t.Run("PrefixIsolation", func(t *testing.T) {
		a := h.Open(t, "iso")
		b := h.Open(t, "iso2")
		sub := h.Open(t, "iso/sub")
		mustPut(t, a, "k", []byte("a"), storage.PutOptions{})
		mustPut(t, b, "k", []byte("b"), storage.PutOptions{})
		mustPut(t, a, "sub/k", []byte("a-sub"), storage.PutOptions{})
		if got := keysOf(listAll(t, a, "", storage.ListOptions{})); !slices.Equal(got, []string{"k", "sub/k"}) {
			t.Fatalf("store iso lists %q", got)
		}
		if got := keysOf(listAll(t, b, "", storage.ListOptions{})); !slices.Equal(got, []string{"k"}) {
			t.Fatalf("store iso2 lists %q", got)
		}
		got, _, err := b.Get(ctxT(t), "k")
		if err != nil || string(got) != "b" {
			t.Fatalf("iso2 k = %q, %v", got, err)
		}
		got, _, err = sub.Get(ctxT(t), "k")
		if err != nil || string(got) != "a-sub" {
			t.Fatalf("iso/sub k = %q, %v (same object as iso sub/k)", got, err)
		}
	})

	t.Run("ContextCancelled", func(t *testing.T) {
		s := h.Open(t, "ctx")
		mustPut(t, s, "k", []byte("v"), storage.PutOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := s.Put(ctx, "new", []byte("v"), storage.PutOptions{})
		wantKind(t, "put", err, context.Canceled)
		_, _, err = s.Get(ctx, "k")
		wantKind(t, "get", err, context.Canceled)
		_, err = s.Head(ctx, "k")
		wantKind(t, "head", err, context.Canceled)
		_, err = s.List(ctx, "", storage.ListOptions{})
		wantKind(t, "list", err, context.Canceled)
		err = s.Delete(ctx, "k", storage.DeleteOptions{})
		wantKind(t, "delete", err, context.Canceled)
		dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer dcancel()
		_, _, err = s.Get(dctx, "k")
		wantKind(t, "get past deadline", err, context.DeadlineExceeded)
		if _, err := s.Head(ctxT(t), "new"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("a cancelled put left an object: %v", err)
		}
		if _, err := s.Head(ctxT(t), "k"); err != nil {
			t.Fatalf("a cancelled delete removed the object: %v", err)
		}
	})

	t.Run("BadOptions", func(t *testing.T) {
		s := h.Open(t, "badopts")
		for _, o := range []storage.PutOptions{
			{IfNoneMatch: "\"abc\""},
			{IfMatch: "*"},
			{Metadata: map[string]string{"bad name": "x"}},
			{Metadata: map[string]string{"k": "caf\u00e9"}},
			{Metadata: map[string]string{"K": "1", "k": "2"}},
			{ContentType: "text/plain\r\nX: y"},
		} {
			if _, err := s.Put(ctxT(t), "k", []byte("x"), o); err == nil {
				t.Errorf("put with %+v accepted", o)
			}
		}
	})

	t.Run("NoSuchBucket", func(t *testing.T) {
		if h.NoBucket == nil {
			t.Skip("harness has no NoBucket")
		}
		s := h.NoBucket(t)
		_, err := s.Put(ctxT(t), "k", []byte("x"), storage.PutOptions{})
		wantKind(t, "put", err, storage.ErrNoSuchBucket)
		_, _, err = s.Get(ctxT(t), "k")
		wantKind(t, "get", err, storage.ErrNoSuchBucket)
		_, err = s.Head(ctxT(t), "k")
		wantKind(t, "head", err, storage.ErrNoSuchBucket)
		_, err = s.List(ctxT(t), "", storage.ListOptions{})
		wantKind(t, "list", err, storage.ErrNoSuchBucket)
		err = s.Delete(ctxT(t), "k", storage.DeleteOptions{})
		wantKind(t, "delete", err, storage.ErrNoSuchBucket)
		if errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("no-bucket error also matches ErrNotFound: %v", err)
		}
	})

	t.Run("AccessDenied", func(t *testing.T) {
		if h.Denied == nil {
			t.Skip("harness has no Denied")
		}
		s := h.Denied(t)
		_, err := s.Put(ctxT(t), "k", []byte("x"), storage.PutOptions{})
		wantKind(t, "put", err, storage.ErrAccessDenied)
		_, _, err = s.Get(ctxT(t), "k")
		wantKind(t, "get", err, storage.ErrAccessDenied)
		_, err = s.Head(ctxT(t), "k")
		wantKind(t, "head", err, storage.ErrAccessDenied)
		_, err = s.List(ctxT(t), "", storage.ListOptions{})
		wantKind(t, "list", err, storage.ErrAccessDenied)
		err = s.Delete(ctxT(t), "k", storage.DeleteOptions{})
		wantKind(t, "delete", err, storage.ErrAccessDenied)
	})
}

// putParallel writes one tiny object per key with a few workers, which
// keeps the >1000-key listing test quick against a server.
func putParallel(t *testing.T, s storage.Store, keys []string) {
	t.Helper()
	ctx := ctxT(t)
	var wg sync.WaitGroup
	work := make(chan string)
	var failed atomic.Pointer[error]
	for range 8 {
		wg.Go(func() {
			for k := range work {
				if _, err := s.Put(ctx, k, []byte("1"), storage.PutOptions{}); err != nil {
					e := fmt.Errorf("put %q: %w", k, err)
					failed.CompareAndSwap(nil, &e)
				}
			}
		})
	}
	for _, k := range keys {
		if failed.Load() != nil {
			break
		}
		work <- k
	}
	close(work)
	wg.Wait()
	if e := failed.Load(); e != nil {
		t.Fatal(*e)
	}
}
