package storage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func openTestFile(t *testing.T, opts Options) (*fileStore, string) {
	t.Helper()
	dir := t.TempDir()
	opts.CreateBucket = true
	s, err := Open(context.Background(), "file://"+dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s.(*fileStore), dir
}

func TestFileHandPlacedObject(t *testing.T) {
	s, dir := openTestFile(t, Options{})
	ctx := context.Background()
	if err := os.MkdirAll(filepath.Join(dir, "p/3.9.1"), 0o755); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"_format_version":"3.0"}`)
	if err := os.WriteFile(filepath.Join(dir, "p/3.9.1/config.json"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	got, info, err := s.Get(ctx, "p/3.9.1/config.json")
	if err != nil || !bytes.Equal(got, body) || info.ETag != etagOf(body) || info.ContentType != DefaultContentType {
		t.Fatalf("get of a hand-placed file = %q %+v %v", got, info, err)
	}
	head, err := s.Head(ctx, "p/3.9.1/config.json")
	if err != nil || head.ETag != info.ETag || head.Size != int64(len(body)) {
		t.Fatalf("head = %+v %v", head, err)
	}
	page, err := s.List(ctx, "p/", ListOptions{})
	if err != nil || len(page.Objects) != 1 || page.Objects[0].ETag != info.ETag {
		t.Fatalf("list = %+v %v", page, err)
	}
	// A conditional write sees the content's ETag.
	if _, err := s.Put(ctx, "p/3.9.1/config.json", []byte("new"), PutOptions{IfMatch: info.ETag}); err != nil {
		t.Fatalf("If-Match with the hashed ETag: %v", err)
	}
}

func TestFileStaleSidecar(t *testing.T) {
	s, dir := openTestFile(t, Options{})
	ctx := context.Background()
	if _, err := s.Put(ctx, "k", []byte("old"), PutOptions{ContentType: "text/plain", Metadata: map[string]string{"a": "1"}}); err != nil {
		t.Fatal(err)
	}
	// As after a crash between the data and sidecar renames (or a manual
	// edit): the sidecar describes another version of the file.
	if err := os.WriteFile(filepath.Join(dir, "k"), []byte("new content"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, info, err := s.Get(ctx, "k")
	if err != nil || string(got) != "new content" || info.ETag != etagOf([]byte("new content")) || info.Metadata != nil || info.ContentType != DefaultContentType {
		t.Fatalf("get with a stale sidecar = %q %+v %v", got, info, err)
	}
	head, err := s.Head(ctx, "k")
	if err != nil || head.ETag != info.ETag || head.Size != int64(len("new content")) {
		t.Fatalf("head with a stale sidecar = %+v %v", head, err)
	}
	_, err = s.Put(ctx, "k", []byte("x"), PutOptions{IfMatch: etagOf([]byte("old"))})
	if !errors.Is(err, ErrPreconditionFailed) {
		t.Fatalf("If-Match with the stale sidecar's ETag: %v", err)
	}
}

func TestFileInternalNamesHidden(t *testing.T) {
	s, dir := openTestFile(t, Options{})
	ctx := context.Background()
	if _, err := s.Put(ctx, "d/k", []byte("v"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// A temp file left by a crashed writer.
	if err := os.WriteFile(filepath.Join(dir, "d", ".kongfb-tmp-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	page, err := s.List(ctx, "", ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range page.Objects {
		keys = append(keys, o.Key)
	}
	if !slices.Equal(keys, []string{"d/k"}) {
		t.Fatalf("list = %q, want only d/k (no lock, temp or sidecar files)", keys)
	}
	for _, name := range []string{".kongfb-lock", "d/.kongfb-meta.k"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("expected internal file %s: %v", name, err)
		}
	}
}

func TestFileModesAndPruning(t *testing.T) {
	s, dir := openTestFile(t, Options{})
	ctx := context.Background()
	if _, err := s.Put(ctx, "a/b/c", []byte("secret config"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{"a": 0o700, "a/b": 0o700, "a/b/c": 0o600, "a/b/.kongfb-meta.c": 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode().Perm(), err, want)
		}
	}
	if _, err := s.Put(ctx, "a/keep", []byte("x"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "a/b/c", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a/b")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("empty directory a/b left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a/keep")); err != nil {
		t.Errorf("sibling removed: %v", err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("root removed: %v", err)
	}
}

func TestFileKeyDirectoryConflict(t *testing.T) {
	s, _ := openTestFile(t, Options{})
	ctx := context.Background()
	if _, err := s.Put(ctx, "obj", []byte("v"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Put(ctx, "obj/child", []byte("v"), PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "cannot store keys under an object's name") || !strings.Contains(err.Error(), "obj/child") {
		t.Fatalf("put under an object: %v", err)
	}
	if _, err := s.Put(ctx, "dir/child", []byte("v"), PutOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = s.Put(ctx, "dir", []byte("v"), PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "is a directory holding keys") {
		t.Fatalf("put over a directory: %v", err)
	}
}

func TestFileAccessDeniedMapping(t *testing.T) {
	s := &fileStore{root: "/r"}
	err := s.fail("put", "k", &fs.PathError{Op: "open", Path: "/r/k", Err: syscall.EACCES})
	if !errors.Is(err, ErrAccessDenied) {
		t.Errorf("EACCES -> %v, want ErrAccessDenied", err)
	}
	err = s.fail("put", "k", &fs.PathError{Op: "open", Path: "/r/k", Err: syscall.EROFS})
	if !errors.Is(err, ErrAccessDenied) {
		t.Errorf("EROFS -> %v, want ErrAccessDenied", err)
	}
}

// TestFileLockHonoursContext holds the lock as another process would (an
// flock on a separate open file) and checks that writers give up at their
// deadline, from the caller's context or from Options.OpTimeout.
func TestFileLockHonoursContext(t *testing.T) {
	s, dir := openTestFile(t, Options{OpTimeout: 100 * time.Millisecond})
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ok, err := tryLockFile(f); !ok || err != nil {
		t.Fatalf("take the lock: %v %v", ok, err)
	}
	start := time.Now()
	_, err = s.Put(context.Background(), "k", []byte("v"), PutOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put while locked: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("put gave up after %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if err := s.Delete(ctx, "k", DeleteOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("delete while locked: %v, want canceled", err)
	}
	// Readers take no lock.
	if _, err := s.List(context.Background(), "", ListOptions{}); err != nil {
		t.Fatalf("list while locked: %v", err)
	}
	unlockFile(f)
	if _, err := s.Put(context.Background(), "k", []byte("v"), PutOptions{}); err != nil {
		t.Fatalf("put after unlock: %v", err)
	}
}

// TestFileReadersSeeWholeObjects races readers against a writer that
// alternates two large bodies: every read must return one whole body with
// that body's ETag.
func TestFileReadersSeeWholeObjects(t *testing.T) {
	s, _ := openTestFile(t, Options{})
	ctx := context.Background()
	bodies := [][]byte{bytes.Repeat([]byte("a"), 64<<10), bytes.Repeat([]byte("b"), 64<<10+1)}
	if _, err := s.Put(ctx, "obj", bodies[0], PutOptions{Metadata: map[string]string{"v": "0"}}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= 40; i++ {
			if _, err := s.Put(ctx, "obj", bodies[i%2], PutOptions{Metadata: map[string]string{"v": strconv.Itoa(i % 2)}}); err != nil {
				t.Errorf("put: %v", err)
			}
		}
		close(stop)
	})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, info, err := s.Get(ctx, "obj")
				if err != nil {
					t.Errorf("get: %v", err)
					return
				}
				which := -1
				for i, b := range bodies {
					if bytes.Equal(got, b) {
						which = i
					}
				}
				if which < 0 || info.ETag != etagOf(got) || info.Size != int64(len(got)) {
					t.Errorf("torn read: %d bytes, etag %s", len(got), info.ETag)
					return
				}
				if info.Metadata != nil && info.Metadata["v"] != strconv.Itoa(which) {
					t.Errorf("metadata %v with body %d", info.Metadata, which)
					return
				}
				head, err := s.Head(ctx, "obj")
				if err != nil || (head.ETag != etagOf(bodies[0]) && head.ETag != etagOf(bodies[1])) {
					t.Errorf("head = %+v %v", head, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

const childEnv = "KONGFB_STORAGE_TEST_CHILD"

// TestFileCrossProcess runs several processes (this test binary again)
// against one directory: If-None-Match rounds must have exactly one winner
// each, and a read-modify-write counter with If-Match must lose no update.
func TestFileCrossProcess(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		t.Skip("child mode")
	}
	dir := t.TempDir()
	const procs, rounds, incs = 4, 30, 20
	var outputs [procs]bytes.Buffer
	var cmds []*exec.Cmd
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestFileChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%d|%d|%d", childEnv, dir, i, rounds, incs))
		cmd.Stdout = &outputs[i]
		cmd.Stderr = &outputs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	wins := map[string][]int{}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outputs[i].String())
		}
		sc := bufio.NewScanner(&outputs[i])
		for sc.Scan() {
			if r, ok := strings.CutPrefix(sc.Text(), "WON "); ok {
				wins[r] = append(wins[r], i)
			}
		}
	}
	s, err := Open(context.Background(), "file://"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for r := range rounds {
		key := fmt.Sprintf("round-%d", r)
		w := wins[key]
		if len(w) != 1 {
			t.Errorf("%s: winners %v, want exactly one", key, w)
			continue
		}
		got, _, err := s.Get(context.Background(), key)
		if err != nil || string(got) != strconv.Itoa(w[0]) {
			t.Errorf("%s = %q (%v), want the winner %d", key, got, err, w[0])
		}
	}
	got, _, err := s.Get(context.Background(), "counter")
	if err != nil || string(got) != strconv.Itoa(procs*incs) {
		t.Errorf("counter = %q (%v), want %d: a conditional update was lost", got, err, procs*incs)
	}
}

// TestFileChild is the body of one TestFileCrossProcess process.
func TestFileChild(t *testing.T) {
	spec := os.Getenv(childEnv)
	if spec == "" {
		t.Skip("only run as a child of TestFileCrossProcess")
	}
	parts := strings.Split(spec, "|")
	id, _ := strconv.Atoi(parts[1])
	rounds, _ := strconv.Atoi(parts[2])
	incs, _ := strconv.Atoi(parts[3])
	ctx := context.Background()
	s, err := Open(ctx, "file://"+parts[0], Options{})
	if err != nil {
		t.Fatal(err)
	}
	for r := range rounds {
		key := fmt.Sprintf("round-%d", r)
		_, err := s.Put(ctx, key, []byte(strconv.Itoa(id)), PutOptions{IfNoneMatch: "*"})
		switch {
		case err == nil:
			fmt.Printf("WON %s\n", key)
		case !errors.Is(err, ErrPreconditionFailed):
			t.Fatalf("round %d: %v", r, err)
		}
	}
	for done := 0; done < incs; {
		body, info, err := s.Get(ctx, "counter")
		var opts PutOptions
		n := 0
		switch {
		case errors.Is(err, ErrNotFound):
			opts.IfNoneMatch = "*"
		case err != nil:
			t.Fatal(err)
		default:
			n, _ = strconv.Atoi(string(body))
			opts.IfMatch = info.ETag
		}
		_, err = s.Put(ctx, "counter", []byte(strconv.Itoa(n+1)), opts)
		switch {
		case err == nil:
			done++
		case errors.Is(err, ErrPreconditionFailed), errors.Is(err, ErrNotFound):
			// lost the race: read again
		default:
			t.Fatal(err)
		}
	}
}
