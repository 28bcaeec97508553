package storage

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The file backend stores each object as a plain file under the root
// directory (key "a/b/config.json" is <root>/a/b/config.json), so an
// operator can read an exported config with cat. Next to each object a
// sidecar "<dir>/.kongfb-meta.<name>" holds its ETag, content type and
// metadata, and the identity (inode, size, mtime) of the data file it
// describes: a reader that sees a sidecar of another version of the file
// (a write racing between the two renames, or a crash) notices and falls
// back to hashing the content.
//
// Writes go to a temporary file in the target directory, are fsynced and
// renamed into place, and the directory is fsynced, so readers never see a
// partial object. Writes and deletes are serialised by an in-process
// semaphore plus flock(2) on <root>/.kongfb-lock, which makes conditional
// writes exact across goroutines and processes. Readers take no lock.
//
// A difference with S3 that cannot be helped: a key cannot be both an
// object and a "directory" of other keys ("a" and "a/b"); such a Put fails
// with a clear error.

const (
	lockFileName  = reservedPrefix + "lock"
	tmpPattern    = reservedPrefix + "tmp-*"
	sidecarPrefix = reservedPrefix + "meta."
	// readRetries bounds how often a reader re-reads an object whose
	// sidecar describes another version of the file (a write in flight).
	readRetries = 3
)

type fileStore struct {
	loc  Location
	root string
	opts Options
	log  *slog.Logger
	sem  chan struct{} // in-process part of the write lock, shared per root
}

// fileSems shares one semaphore per root directory between all Stores of
// this process: flock alone would do, but waiting on a channel honours the
// context without polling.
var fileSems sync.Map // root -> chan struct{}

type sidecar struct {
	ETag        string            `json:"etag"`
	Size        int64             `json:"size"`
	ContentType string            `json:"content_type"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	// Identity of the data file this sidecar was written with.
	Ino     uint64 `json:"ino"`
	MtimeNs int64  `json:"mtime_ns"`
}

func openFile(ctx context.Context, loc Location, opts Options) (Store, error) {
	if err := fileBackendSupported(); err != nil {
		return nil, fmt.Errorf("storage %s: %w", loc, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sem, _ := fileSems.LoadOrStore(loc.Bucket, make(chan struct{}, 1))
	s := &fileStore{loc: loc, root: loc.Bucket, opts: opts, log: opts.Logger, sem: sem.(chan struct{})}
	if opts.CreateBucket {
		// 0700: an exported Kong config carries certificate private keys.
		if err := os.MkdirAll(s.root, 0o700); err != nil {
			return nil, s.fail("create directory", "", err)
		}
	}
	return s, nil
}

func (s *fileStore) String() string { return s.loc.String() }
func (s *fileStore) Close() error   { return nil }

func (s *fileStore) fullKey(op, key string) (string, error) {
	k, err := cleanKey(key)
	if err != nil {
		return "", &Error{Op: op, Scheme: "file", Bucket: s.root, Key: key, Err: err}
	}
	return k, nil
}

func (s *fileStore) path(full string) string { return filepath.Join(s.root, filepath.FromSlash(full)) }

func sidecarPath(p string) string {
	return filepath.Join(filepath.Dir(p), sidecarPrefix+filepath.Base(p))
}

func (s *fileStore) fail(op, full string, err error) error {
	e := &Error{Op: op, Scheme: "file", Bucket: s.root, Key: full, Err: err}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		e.Kind = ErrNotFound
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		e.Kind = ErrAccessDenied
	}
	return e
}

func (s *fileStore) failKind(op, full string, kind, err error) error {
	return &Error{Op: op, Scheme: "file", Bucket: s.root, Key: full, Kind: kind, Err: err}
}

// checkRoot tells a missing root directory (ErrNoSuchBucket) from a
// missing key.
func (s *fileStore) checkRoot(op, full string) error {
	fi, err := os.Stat(s.root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s.failKind(op, full, ErrNoSuchBucket, nil)
	case err != nil:
		return s.fail(op, full, err)
	case !fi.IsDir():
		return s.failKind(op, full, ErrNoSuchBucket, errors.New("not a directory"))
	}
	return nil
}

// lock takes the store-wide write lock: the in-process semaphore, then an
// exclusive flock on the lock file, polled so that ctx is honoured.
func (s *fileStore) lock(ctx context.Context) (unlock func(), err error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	release := func() { <-s.sem }
	f, err := os.OpenFile(filepath.Join(s.root, lockFileName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		release()
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	wait := time.Millisecond
	for {
		ok, err := tryLockFile(f)
		if err != nil {
			f.Close()
			release()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if ok {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			f.Close()
			release()
			return nil, ctx.Err()
		}
		wait = min(wait*2, 50*time.Millisecond)
	}
	return func() {
		unlockFile(f)
		f.Close()
		release()
	}, nil
}

func etagOf(b []byte) string {
	sum := md5.Sum(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

func readSidecar(p string) (sidecar, bool) {
	b, err := os.ReadFile(sidecarPath(p))
	if err != nil {
		return sidecar{}, false
	}
	var sc sidecar
	if json.Unmarshal(b, &sc) != nil || sc.ETag == "" {
		return sidecar{}, false
	}
	return sc, true
}

// describes reports whether sc was written for exactly this data file.
func (sc sidecar) describes(fi fs.FileInfo) bool {
	ino, ok := fileIno(fi)
	return ok && sc.Ino == ino && sc.Size == fi.Size() && sc.MtimeNs == fi.ModTime().UnixNano()
}

func (sc sidecar) info(key string, fi fs.FileInfo) ObjectInfo {
	ct := sc.ContentType
	if ct == "" {
		ct = DefaultContentType
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ETag: sc.ETag, LastModified: fi.ModTime(), ContentType: ct, Metadata: cloneMap(sc.Metadata)}
}

// infoFromContent is the info of a data file without a valid sidecar (put
// there by hand, or a write racing): the ETag is hashed from the content;
// the sidecar's content type and metadata are kept only if its ETag matches.
func infoFromContent(key string, fi fs.FileInfo, data []byte, sc sidecar, haveSC bool) ObjectInfo {
	info := ObjectInfo{Key: key, Size: int64(len(data)), ETag: etagOf(data), LastModified: fi.ModTime(), ContentType: DefaultContentType}
	if haveSC && sc.ETag == info.ETag {
		if sc.ContentType != "" {
			info.ContentType = sc.ContentType
		}
		info.Metadata = cloneMap(sc.Metadata)
	}
	return info
}

func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// isMissing reports errors that mean "no object at this path": the file
// or a parent is missing, or a parent is a file (ENOTDIR).
func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// stat returns the data file's info, or fs.ErrNotExist if the key names
// no object (including a directory of other keys).
func statObject(p string) (fs.FileInfo, error) {
	fi, err := os.Stat(p)
	if err != nil {
		if isMissing(err) {
			return nil, fs.ErrNotExist
		}
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fs.ErrNotExist
	}
	return fi, nil
}

// headPath returns an object's info without reading the data when the
// sidecar is valid.
func headPath(key, p string) (ObjectInfo, error) {
	for range readRetries {
		fi, err := statObject(p)
		if err != nil {
			return ObjectInfo{}, err
		}
		sc, ok := readSidecar(p)
		if ok && sc.describes(fi) {
			return sc.info(key, fi), nil
		}
	}
	_, info, err := getPath(key, p)
	return info, err
}

func getPath(key, p string) ([]byte, ObjectInfo, error) {
	var (
		data   []byte
		fi     fs.FileInfo
		sc     sidecar
		haveSC bool
	)
	for range readRetries {
		f, err := os.Open(p)
		if err != nil {
			if isMissing(err) {
				return nil, ObjectInfo{}, fs.ErrNotExist
			}
			return nil, ObjectInfo{}, err
		}
		fi, err = f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			f.Close()
			return nil, ObjectInfo{}, fs.ErrNotExist
		}
		if err == nil {
			var buf bytes.Buffer
			buf.Grow(int(fi.Size()))
			_, err = io.Copy(&buf, f)
			data = buf.Bytes()
		}
		f.Close()
		if err != nil {
			return nil, ObjectInfo{}, err
		}
		sc, haveSC = readSidecar(p)
		if haveSC && sc.describes(fi) {
			return data, sc.info(key, fi), nil
		}
	}
	return data, infoFromContent(key, fi, data, sc, haveSC), nil
}

func (s *fileStore) Get(ctx context.Context, key string) ([]byte, ObjectInfo, error) {
	full, err := s.fullKey("get", key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, ObjectInfo{}, s.fail("get", full, err)
	}
	data, info, err := getPath(full, s.path(full))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if rerr := s.checkRoot("get", full); rerr != nil {
				return nil, ObjectInfo{}, rerr
			}
		}
		return nil, ObjectInfo{}, s.fail("get", full, err)
	}
	return data, info, nil
}

func (s *fileStore) Head(ctx context.Context, key string) (ObjectInfo, error) {
	full, err := s.fullKey("head", key)
	if err != nil {
		return ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, s.fail("head", full, err)
	}
	info, err := headPath(full, s.path(full))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if rerr := s.checkRoot("head", full); rerr != nil {
				return ObjectInfo{}, rerr
			}
		}
		return ObjectInfo{}, s.fail("head", full, err)
	}
	return info, nil
}

// checkCondition evaluates If-None-Match / If-Match against the current
// object; call it under the write lock.
func (s *fileStore) checkCondition(op, full, p, ifNoneMatch, ifMatch string) error {
	if ifNoneMatch == "" && ifMatch == "" {
		return nil
	}
	cur, err := headPath(full, p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if ifMatch != "" {
			return s.failKind(op, full, ErrNotFound, fmt.Errorf("If-Match %s: no object", ifMatch))
		}
		return nil
	case err != nil:
		return s.fail(op, full, err)
	case ifNoneMatch != "":
		return s.failKind(op, full, ErrPreconditionFailed, errors.New("If-None-Match *: the object exists"))
	case cur.ETag != ifMatch:
		return s.failKind(op, full, ErrPreconditionFailed, fmt.Errorf("If-Match: ETag is %s, not %s", cur.ETag, ifMatch))
	}
	return nil
}

func (s *fileStore) Put(ctx context.Context, key string, body []byte, opts PutOptions) (ObjectInfo, error) {
	full, err := s.fullKey("put", key)
	if err != nil {
		return ObjectInfo{}, err
	}
	md, err := checkPutOptions(opts)
	if err != nil {
		return ObjectInfo{}, s.failKind("put", full, nil, err)
	}
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	if err := s.checkRoot("put", full); err != nil {
		return ObjectInfo{}, err
	}
	start := time.Now()
	unlock, err := s.lock(ctx)
	if err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	defer unlock()

	p := s.path(full)
	if err := s.checkCondition("put", full, p, opts.IfNoneMatch, normalizeETag(opts.IfMatch)); err != nil {
		return ObjectInfo{}, err
	}
	dir := filepath.Dir(p)
	created, err := s.mkdirs(full, dir)
	if err != nil {
		return ObjectInfo{}, err
	}
	if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
		return ObjectInfo{}, s.failKind("put", full, nil, fmt.Errorf(
			"%s is a directory holding keys under %q/: the file backend cannot store an object under the same name", p, full))
	}

	ct := opts.ContentType
	if ct == "" {
		ct = DefaultContentType
	}
	etag := etagOf(body)
	dataTmp, fi, err := writeTemp(dir, body)
	if err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	defer os.Remove(dataTmp) // no-op once renamed
	ino, _ := fileIno(fi)
	scBytes, err := json.Marshal(sidecar{ETag: etag, Size: int64(len(body)), ContentType: ct, Metadata: md, Ino: ino, MtimeNs: fi.ModTime().UnixNano()})
	if err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	scTmp, _, err := writeTemp(dir, scBytes)
	if err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	defer os.Remove(scTmp)
	// Last point where the caller can still call the write off.
	if err := ctx.Err(); err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	if err := os.Rename(dataTmp, p); err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	if err := os.Rename(scTmp, sidecarPath(p)); err != nil {
		return ObjectInfo{}, s.fail("put", full, fmt.Errorf("write metadata: %w", err))
	}
	if err := syncDirs(append([]string{dir}, created...)); err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	s.log.Debug("storage put", "storage", s.String(), "key", full, "size", len(body), "duration", time.Since(start))
	return ObjectInfo{Key: full, Size: int64(len(body)), ETag: etag, LastModified: fi.ModTime(), ContentType: ct, Metadata: cloneMap(md)}, nil
}

// mkdirs creates the directories from the root down to dir (0700) and
// returns the parents of those it created, to fsync them.
func (s *fileStore) mkdirs(full, dir string) (parents []string, err error) {
	rel, err := filepath.Rel(s.root, dir)
	if err != nil || rel == "." {
		return nil, nil
	}
	cur := s.root
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		next := filepath.Join(cur, part)
		err := os.Mkdir(next, 0o700)
		switch {
		case err == nil:
			parents = append(parents, cur)
		case errors.Is(err, fs.ErrExist):
			fi, serr := os.Stat(next)
			if serr != nil {
				return nil, s.fail("put", full, serr)
			}
			if !fi.IsDir() {
				return nil, s.failKind("put", full, nil, fmt.Errorf(
					"%s is an object: the file backend cannot store keys under an object's name", next))
			}
		default:
			return nil, s.fail("put", full, err)
		}
		cur = next
	}
	return parents, nil
}

// writeTemp writes data to a new temporary file in dir, fsynced, and
// returns its name and info.
func writeTemp(dir string, data []byte) (string, fs.FileInfo, error) {
	f, err := os.CreateTemp(dir, tmpPattern) // mode 0600
	if err != nil {
		return "", nil, err
	}
	name := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	var fi fs.FileInfo
	if err == nil {
		fi, err = f.Stat()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", nil, err
	}
	return name, fi, nil
}

func syncDirs(dirs []string) error {
	for _, d := range slices.Compact(dirs) {
		f, err := os.Open(d)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("fsync %s: %w", d, err)
		}
	}
	return nil
}

func (s *fileStore) Delete(ctx context.Context, key string, opts DeleteOptions) error {
	full, err := s.fullKey("delete", key)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return s.fail("delete", full, err)
	}
	if err := s.checkRoot("delete", full); err != nil {
		return err
	}
	unlock, err := s.lock(ctx)
	if err != nil {
		return s.fail("delete", full, err)
	}
	defer unlock()
	p := s.path(full)
	if err := s.checkCondition("delete", full, p, "", normalizeETag(opts.IfMatch)); err != nil {
		return err
	}
	if _, err := statObject(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // like S3: deleting a missing key succeeds
		}
		return s.fail("delete", full, err)
	}
	if err := os.Remove(p); err != nil && !isMissing(err) {
		return s.fail("delete", full, err)
	}
	if err := os.Remove(sidecarPath(p)); err != nil && !isMissing(err) {
		return s.fail("delete", full, fmt.Errorf("remove metadata: %w", err))
	}
	dir := filepath.Dir(p)
	if err := syncDirs([]string{dir}); err != nil {
		return s.fail("delete", full, err)
	}
	// Drop directories left empty, as S3 "directories" vanish with their
	// last key. Best effort: a failing rmdir (not empty) ends it.
	for dir != s.root && strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		if os.Remove(dir) != nil {
			break
		}
		dir = filepath.Dir(dir)
	}
	s.log.Debug("storage delete", "storage", s.String(), "key", full)
	return nil
}

func (s *fileStore) List(ctx context.Context, prefix string, opts ListOptions) (ListPage, error) {
	rel, err := cleanListPrefix(prefix)
	if err != nil {
		return ListPage{}, &Error{Op: "list", Scheme: "file", Bucket: s.root, Key: prefix, Err: err}
	}
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return ListPage{}, s.fail("list", rel, err)
	}
	if err := s.checkRoot("list", rel); err != nil {
		return ListPage{}, err
	}
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 || maxKeys > DefaultMaxKeys {
		maxKeys = DefaultMaxKeys
	}
	w := &lister{ctx: ctx, s: s, prefix: rel, startAfter: opts.StartAfter, limit: maxKeys + 1}
	startDir := rel[:strings.LastIndex(rel, "/")+1] // "" or "a/b/"
	if err := w.walk(startDir); err != nil && !errors.Is(err, errListFull) {
		return ListPage{}, s.fail("list", rel, err)
	}
	page := ListPage{Objects: w.out}
	if len(page.Objects) > maxKeys {
		page.Objects = page.Objects[:maxKeys]
		page.Truncated = true
		page.NextStartAfter = page.Objects[maxKeys-1].Key
	}
	return page, nil
}

var errListFull = errors.New("list page full")

type lister struct {
	ctx        context.Context
	s          *fileStore
	prefix     string
	startAfter string
	limit      int
	out        []ObjectInfo
}

type dirEntry struct {
	name, sortKey string
	isDir         bool
}

// walk visits dirRel ("" or "a/b/") in key order: within a directory,
// entries sort by their name with "/" appended to directories, which is
// exactly the byte order of the keys below them.
func (w *lister) walk(dirRel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	dirPath := filepath.Join(w.s.root, filepath.FromSlash(dirRel))
	des, err := os.ReadDir(dirPath)
	if err != nil {
		if isMissing(err) {
			return nil
		}
		return err
	}
	ents := make([]dirEntry, 0, len(des))
	for _, de := range des {
		name := de.Name()
		if strings.HasPrefix(name, reservedPrefix) {
			continue // temp files, sidecars, the lock
		}
		isDir := de.IsDir()
		if de.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(filepath.Join(dirPath, name))
			if err != nil {
				continue // dangling link: no object
			}
			isDir = fi.IsDir()
		} else if !isDir && !de.Type().IsRegular() {
			continue
		}
		sk := dirRel + name
		if isDir {
			sk += "/"
		}
		ents = append(ents, dirEntry{name: name, sortKey: sk, isDir: isDir})
	}
	slices.SortFunc(ents, func(a, b dirEntry) int { return strings.Compare(a.sortKey, b.sortKey) })
	for _, e := range ents {
		sk := e.sortKey
		if e.isDir {
			if !strings.HasPrefix(sk, w.prefix) && !strings.HasPrefix(w.prefix, sk) {
				continue
			}
			// Every key below sk is greater than sk; if StartAfter is past
			// sk without being inside it, the whole subtree is before it.
			if w.startAfter >= sk && !strings.HasPrefix(w.startAfter, sk) {
				continue
			}
			if err := w.walk(sk); err != nil {
				return err
			}
			continue
		}
		if !strings.HasPrefix(sk, w.prefix) || sk <= w.startAfter {
			continue
		}
		p := filepath.Join(dirPath, e.name)
		info, err := headPath(sk, p)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while listing
			}
			return err
		}
		w.out = append(w.out, ObjectInfo{Key: info.Key, Size: info.Size, ETag: info.ETag, LastModified: info.LastModified})
		if len(w.out) >= w.limit {
			return errListFull
		}
	}
	return nil
}
