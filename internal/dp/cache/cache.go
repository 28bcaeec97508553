// Package cache is a data plane's on-disk copy of the last configuration its
// control plane sent, so that a restarted node serves at once, before (or
// without) reaching the CP. It plays the part of Kong's LMDB store
// (<prefix>/dbless.lmdb), with integrity checks Kong leaves to LMDB.
//
// # File format
//
// <prefix>/config.cache holds, in this order:
//
//	kongfb-dp-cache\n                 magic line
//	{"format":1,...}\n                header: one JSON line (see Header)
//	<payload>                          gzip of the export document's JSON,
//	                                   or AES-256-GCM(nonce || ciphertext) of it
//
// The header records the format version, the config hash to report, the
// source, when it was written, the Kong version, the payload size and its
// SHA-256. A file whose magic, header, size or checksum does not hold, whose
// gzip stream is broken, or whose document is not a valid configuration is
// corrupt: Load renames it aside to config.cache.corrupt-<time> and never
// returns it.
//
// # Crash safety
//
// Write never touches the live file: it writes a temporary file in the same
// directory, fsyncs it, renames it over config.cache and fsyncs the
// directory. A process killed at any point leaves either the previous file or
// the new one, whole; a leftover temporary file is removed by the next Open.
// Open takes an exclusive lock (config.cache.lock) so that two nodes cannot
// share a prefix and remove each other's temporary files.
//
// # Encryption at rest
//
// With a key (Options.Key, from DeriveKey) the gzip'd document is sealed with
// AES-256-GCM under a random 96-bit nonce; the header fields (hash, source,
// origin, time, version) are the additional authenticated data, so they
// cannot be swapped between files either. The key is derived with
// HKDF-SHA256 from the cluster private key (cluster_cert_key), so a node that
// can reach its CP can read its cache and nothing else is needed. The header
// carries a key id (another HKDF output, which reveals nothing about the key)
// so that a cache written under another key (a rotated cluster certificate)
// is told apart from a damaged one. Such a cache, an encrypted cache read
// without a key, and a plain cache read with one (it would not be
// authenticated) are refused and renamed aside to config.cache.unreadable-<time>.
package cache

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// File names inside the cache directory (the node's prefix).
const (
	FileName       = "config.cache"
	lockName       = FileName + ".lock"
	tempPrefix     = FileName + ".tmp-"
	corruptPrefix  = FileName + ".corrupt-"
	unreadablePref = FileName + ".unreadable-"
)

// FormatVersion is the version of the file format written.
const FormatVersion = 1

const magic = "kongfb-dp-cache\n"

// Encodings and encryptions recorded in the header.
const (
	EncodingGzip     = "gzip"
	EncryptionNone   = "none"
	EncryptionAESGCM = "aes-256-gcm"
)

// maxHeader bounds the header line: it holds a few short fields.
const maxHeader = 4 << 10

// keepAside is how many set-aside files of each kind are kept: enough to
// investigate, bounded so that repeated failures cannot fill the disk.
const keepAside = 3

// Reasons a cache file is refused. Load's *UnusableError wraps one of them.
var (
	ErrCorrupt       = errors.New("corrupt")
	ErrUnsupported   = errors.New("unsupported format version")
	ErrInvalidConfig = errors.New("invalid configuration")
	ErrWrongKey      = errors.New("encrypted with another key")
	ErrDecrypt       = errors.New("cannot decrypt")
	ErrNeedKey       = errors.New("encrypted, but no cache key is configured")
	ErrNotEncrypted  = errors.New("not encrypted, but encryption is required")
)

// UnusableError is a cache file Load refused. The file was renamed to
// SetAside (empty if even that failed) and is never served.
type UnusableError struct {
	Path     string
	SetAside string
	Reason   error // one of the Err* values above
	Detail   string
	Err      error // the underlying error (e.g. *config.ValidationError), if any
}

func (e *UnusableError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "config cache %s is unusable: %v", e.Path, e.Reason)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.SetAside != "" {
		b.WriteString(" (moved to " + e.SetAside + ")")
	}
	return b.String()
}

// Unwrap exposes the reason and the cause to errors.Is / errors.As.
func (e *UnusableError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Err}
}

// Header is the cache file's metadata line.
type Header struct {
	Format        int       `json:"format"`
	ConfigHash    string    `json:"config_hash"`
	Source        string    `json:"source"`
	Origin        string    `json:"origin,omitempty"`
	WrittenAt     time.Time `json:"written_at"`
	KongVersion   string    `json:"kong_version"`
	Encoding      string    `json:"encoding"`
	Encryption    string    `json:"encryption"`
	KeyID         string    `json:"key_id,omitempty"`
	PayloadSize   int64     `json:"payload_size"`
	PayloadSHA256 string    `json:"payload_sha256"`
}

// aad is the data GCM authenticates next to the payload: every header field
// that is not derived from the payload itself.
func (h *Header) aad() []byte {
	return []byte(strings.Join([]string{
		strings.TrimSuffix(magic, "\n"), strconv.Itoa(h.Format), h.ConfigHash, h.Source, h.Origin,
		strconv.FormatInt(h.WrittenAt.UnixNano(), 10), h.KongVersion, h.Encoding, h.Encryption, h.KeyID,
	}, "\x00"))
}

// Meta describes a configuration being written.
type Meta struct {
	ConfigHash string // the hash the node reports for it (32 hex)
	Source     string // where the node got it: "cp", ...
	Origin     string // e.g. the CP address
}

// Entry is a configuration read back from the cache.
type Entry struct {
	Header Header
	Config *config.Config
}

// Options tune a Cache.
type Options struct {
	// Key, when set, encrypts the cache (32 bytes, see DeriveKey) and makes
	// Load refuse a cache that is not encrypted with it.
	Key []byte
	// MaxSize bounds the file read and the decompressed document; <= 0 means
	// cluster.DefaultMaxDecompressed (256 MiB).
	MaxSize int64
	Logger  *slog.Logger
	// Now is the clock for written_at and set-aside names; nil is time.Now.
	Now func() time.Time
}

// Cache is the configuration cache in one directory.
type Cache struct {
	dir, path string
	key       []byte
	keyID     string
	gcm       cipher.AEAD
	maxSize   int64
	log       *slog.Logger
	now       func() time.Time

	mu     sync.Mutex
	unlock func() error
}

// Open prepares the cache in dir (created 0700 if needed): it takes the
// directory's lock and removes temporary files left by an interrupted write.
func Open(dir string, opts Options) (*Cache, error) {
	c := &Cache{
		dir: dir, path: filepath.Join(dir, FileName),
		maxSize: opts.MaxSize, log: opts.Logger, now: opts.Now,
	}
	if c.maxSize <= 0 {
		c.maxSize = cluster.DefaultMaxDecompressed
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if opts.Key != nil {
		if len(opts.Key) != 32 {
			return nil, fmt.Errorf("config cache key: want 32 bytes (AES-256), got %d", len(opts.Key))
		}
		block, err := aes.NewCipher(opts.Key)
		if err != nil {
			return nil, fmt.Errorf("config cache key: %w", err)
		}
		if c.gcm, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("config cache key: %w", err)
		}
		c.key = append([]byte(nil), opts.Key...)
		c.keyID = KeyID(opts.Key)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("config cache: create directory %s: %w", dir, err)
	}
	unlock, err := lockFile(filepath.Join(dir, lockName))
	if err != nil {
		return nil, fmt.Errorf("config cache %s: %w", dir, err)
	}
	c.unlock = unlock
	c.removeTemps()
	return c, nil
}

// Close releases the directory's lock.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unlock == nil {
		return nil
	}
	err := c.unlock()
	c.unlock = nil
	return err
}

// Path is the cache file's path.
func (c *Cache) Path() string { return c.path }

// Encrypted reports whether the cache is written encrypted.
func (c *Cache) Encrypted() bool { return c.gcm != nil }

// removeTemps deletes leftovers of writes that never reached their rename.
// The lock makes sure no live writer owns them.
func (c *Cache) removeTemps() {
	names, _ := filepath.Glob(filepath.Join(c.dir, tempPrefix+"*"))
	for _, n := range names {
		if err := os.Remove(n); err != nil {
			c.log.Warn("cannot remove a temporary cache file left by an interrupted write", "path", n, "error", err)
			continue
		}
		c.log.Warn("removed a temporary cache file left by an interrupted write; the previous cache is intact", "path", n)
	}
}

// DeriveKey derives the cache key from the cluster private key
// (cluster_cert_key): HKDF-SHA256 over the key's PKCS#8 DER, which is the
// same whatever form (PEM file, inline, base64, PKCS#1 or SEC1) the key was
// given in.
func DeriveKey(priv any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("derive config cache key from cluster_cert_key: %w", err)
	}
	key, err := hkdf.Key(sha256.New, der, []byte("kongfb dp config cache"), "kongfb-dp-cache-v1 aes-256-gcm", 32)
	if err != nil {
		return nil, fmt.Errorf("derive config cache key: %w", err)
	}
	return key, nil
}

// KeyID names a cache key without revealing it: 8 bytes of HKDF-SHA256 under
// another label, hex.
func KeyID(key []byte) string {
	id, err := hkdf.Key(sha256.New, key, nil, "kongfb-dp-cache-v1 key id", 8)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(id)
}

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // a valid level: no error
	return zw
}}

// Write stores doc (the export document's JSON, as the CP sent it) as the
// cache, atomically and durably.
func (c *Cache) Write(doc []byte, m Meta) error {
	if !cluster.IsValidHash(m.ConfigHash) {
		return fmt.Errorf("write config cache: invalid config hash %q", m.ConfigHash)
	}
	var zbuf bytes.Buffer
	// BestSpeed: the cache is rewritten after every change and large
	// configurations compress well enough at any level. A compressor's
	// state is large; reusing it keeps every push from allocating one.
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&zbuf)
	if _, err := zw.Write(doc); err != nil {
		return fmt.Errorf("write config cache: compress: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write config cache: compress: %w", err)
	}
	h := Header{
		Format: FormatVersion, ConfigHash: m.ConfigHash, Source: m.Source, Origin: m.Origin,
		WrittenAt: c.now().UTC(), KongVersion: config.KongVersion,
		Encoding: EncodingGzip, Encryption: EncryptionNone,
	}
	payload := zbuf.Bytes()
	if c.gcm != nil {
		h.Encryption, h.KeyID = EncryptionAESGCM, c.keyID
		nonce := make([]byte, c.gcm.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return fmt.Errorf("write config cache: nonce: %w", err)
		}
		payload = c.gcm.Seal(nonce, nonce, payload, h.aad())
	}
	sum := sha256.Sum256(payload)
	h.PayloadSize, h.PayloadSHA256 = int64(len(payload)), hex.EncodeToString(sum[:])
	hdr, err := json.Marshal(&h)
	if err != nil {
		return fmt.Errorf("write config cache: header: %w", err)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writeAtomic(func(w io.Writer) error {
		if _, err := io.WriteString(w, magic); err != nil {
			return err
		}
		if _, err := w.Write(append(hdr, '\n')); err != nil {
			return err
		}
		_, err := w.Write(payload)
		return err
	})
}

// writeHook, when set (by tests only), is called at each step of
// writeAtomic with the step's name, so that a test can SIGKILL a writing
// process at a chosen point of the write and not only at random ones.
var writeHook func(step string)

// Steps of writeAtomic reported to writeHook.
const (
	stepBegin   = "begin"   // nothing on disk changed yet
	stepCreated = "created" // the temporary file exists, empty
	stepPartial = "partial" // the temporary file holds part of the new cache
	stepWritten = "written" // the temporary file is complete, not fsynced
	stepSynced  = "synced"  // the temporary file is fsynced and closed, not renamed
	stepRenamed = "renamed" // the new cache is in place, its directory not fsynced
)

func step(name string) {
	if writeHook != nil {
		writeHook(name)
	}
}

// partialWriter reports stepPartial once its first chunk is in the file.
type partialWriter struct {
	w    io.Writer
	done bool
}

func (p *partialWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	if !p.done && err == nil {
		p.done = true
		step(stepPartial)
	}
	return n, err
}

// writeAtomic writes a temporary file with fill, fsyncs it, renames it over
// the cache file and fsyncs the directory, so that the rename itself survives
// a power loss.
func (c *Cache) writeAtomic(fill func(io.Writer) error) error {
	step(stepBegin)
	tmp, err := os.CreateTemp(c.dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("write config cache %s: %w", c.path, err)
	}
	step(stepCreated)
	fail := func(what string, err error) error {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write config cache %s: %s: %w", c.path, what, err)
	}
	var w io.Writer = tmp
	if writeHook != nil {
		w = &partialWriter{w: tmp}
	}
	// fill writes a short header and the payload, already in memory: the
	// buffer only joins the header's writes (it used to be 256 KiB, zeroed
	// on every push).
	bw := bufio.NewWriterSize(w, 4<<10)
	if err := fill(bw); err != nil {
		return fail("write", err)
	}
	if err := bw.Flush(); err != nil {
		return fail("write", err)
	}
	step(stepWritten)
	if err := tmp.Sync(); err != nil {
		return fail("fsync", err)
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write config cache %s: close: %w", c.path, err)
	}
	step(stepSynced)
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("write config cache %s: rename: %w", c.path, err)
	}
	step(stepRenamed)
	if err := syncDir(c.dir); err != nil {
		// The file is in place; only its durability across a power loss
		// is in doubt, so report without failing the write.
		c.log.Warn("config cache written but its directory could not be synced", "dir", c.dir, "error", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Load reads, checks and parses the cache. It returns an error wrapping
// fs.ErrNotExist when there is none, and an *UnusableError when the file
// cannot be served; that file has then been renamed aside.
func (c *Cache) Load() (*Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, uerr := c.read()
	if uerr == nil {
		return e, nil
	}
	if errors.Is(uerr.Reason, fs.ErrNotExist) {
		return nil, fmt.Errorf("config cache %s: %w", c.path, fs.ErrNotExist)
	}
	if uerr.Reason == nil {
		// An I/O error reading the file: not the file's fault, keep it.
		return nil, fmt.Errorf("read config cache %s: %w", c.path, uerr.Err)
	}
	prefix := corruptPrefix
	switch uerr.Reason {
	case ErrWrongKey, ErrNeedKey, ErrNotEncrypted, ErrUnsupported:
		// Not damaged, only not readable by this node as configured.
		prefix = unreadablePref
	}
	aside := filepath.Join(c.dir, prefix+c.now().UTC().Format("20060102T150405.000000000Z"))
	if err := os.Rename(c.path, aside); err != nil {
		c.log.Error("cannot move an unusable config cache aside", "path", c.path, "error", err)
	} else {
		uerr.SetAside = aside
		_ = syncDir(c.dir)
		c.pruneAside(prefix)
	}
	return nil, uerr
}

// pruneAside keeps the newest keepAside set-aside files of one kind.
func (c *Cache) pruneAside(prefix string) {
	names, _ := filepath.Glob(filepath.Join(c.dir, prefix+"*"))
	if len(names) <= keepAside {
		return
	}
	sort.Strings(names) // the fixed-width UTC timestamp sorts by time
	for _, n := range names[:len(names)-keepAside] {
		if err := os.Remove(n); err == nil {
			c.log.Info("removed an old unusable config cache", "path", n)
		}
	}
}

func (c *Cache) read() (*Entry, *UnusableError) {
	bad := func(reason error, detail string, err error) *UnusableError {
		return &UnusableError{Path: c.path, Reason: reason, Detail: detail, Err: err}
	}
	f, err := os.Open(c.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, bad(fs.ErrNotExist, "", nil)
		}
		return nil, bad(nil, "", err)
	}
	defer f.Close()
	// The header says how long the payload is; read a little past the
	// limit so that an oversized file is recognised as such.
	data, err := io.ReadAll(io.LimitReader(f, c.maxSize+maxHeader+int64(len(magic))+1))
	if err != nil {
		return nil, bad(nil, "", err)
	}
	if !bytes.HasPrefix(data, []byte(magic)) {
		return nil, bad(ErrCorrupt, "not a kongfb config cache (bad magic line)", nil)
	}
	rest := data[len(magic):]
	nl := bytes.IndexByte(rest[:min(len(rest), maxHeader)], '\n')
	if nl < 0 {
		return nil, bad(ErrCorrupt, "header line missing or truncated", nil)
	}
	var h Header
	dec := json.NewDecoder(bytes.NewReader(rest[:nl]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return nil, bad(ErrCorrupt, "header", err)
	}
	if h.Format != FormatVersion {
		return nil, bad(ErrUnsupported, fmt.Sprintf("format %d, this kongfb reads %d", h.Format, FormatVersion), nil)
	}
	if !cluster.IsValidHash(h.ConfigHash) {
		return nil, bad(ErrCorrupt, fmt.Sprintf("header config_hash %q is not a hash", h.ConfigHash), nil)
	}
	if h.Encoding != EncodingGzip {
		return nil, bad(ErrCorrupt, fmt.Sprintf("header encoding %q (want %q)", h.Encoding, EncodingGzip), nil)
	}
	payload := rest[nl+1:]
	if h.PayloadSize < 0 || h.PayloadSize > c.maxSize {
		return nil, bad(ErrCorrupt, fmt.Sprintf("header payload_size %d out of range", h.PayloadSize), nil)
	}
	if int64(len(payload)) != h.PayloadSize {
		what := "truncated"
		if int64(len(payload)) > h.PayloadSize {
			what = "trailing data"
		}
		return nil, bad(ErrCorrupt, fmt.Sprintf("%s: payload is %d bytes, header says %d", what, len(payload), h.PayloadSize), nil)
	}
	sum := sha256.Sum256(payload)
	if hex.EncodeToString(sum[:]) != h.PayloadSHA256 {
		return nil, bad(ErrCorrupt, "payload checksum mismatch (sha256)", nil)
	}
	switch h.Encryption {
	case EncryptionNone:
		if c.gcm != nil {
			return nil, bad(ErrNotEncrypted, "a plain cache is not authenticated and is not served with --cache-encrypt", nil)
		}
	case EncryptionAESGCM:
		if c.gcm == nil {
			return nil, bad(ErrNeedKey, "start with --cache-encrypt and the cluster key that wrote it", nil)
		}
		if h.KeyID != c.keyID {
			return nil, bad(ErrWrongKey, fmt.Sprintf("key id %s, this node's is %s (was the cluster key changed?)", h.KeyID, c.keyID), nil)
		}
		ns := c.gcm.NonceSize()
		if len(payload) < ns+c.gcm.Overhead() {
			return nil, bad(ErrCorrupt, "encrypted payload too short", nil)
		}
		plain, err := c.gcm.Open(nil, payload[:ns], payload[ns:], h.aad())
		if err != nil {
			// The checksum held and the key id matches: the header or the
			// payload was altered after the checksum was computed.
			return nil, bad(ErrDecrypt, "authentication failed", err)
		}
		payload = plain
	default:
		return nil, bad(ErrCorrupt, fmt.Sprintf("header encryption %q is unknown", h.Encryption), nil)
	}
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, bad(ErrCorrupt, "gzip", err)
	}
	doc, err := io.ReadAll(io.LimitReader(zr, c.maxSize+1))
	if err != nil {
		return nil, bad(ErrCorrupt, "gzip", err)
	}
	if int64(len(doc)) > c.maxSize {
		return nil, bad(ErrCorrupt, fmt.Sprintf("document larger than %d bytes", c.maxSize), nil)
	}
	cfg, err := config.Parse(doc, "")
	if err != nil {
		nameFile(err, c.path)
		return nil, bad(ErrInvalidConfig, "", err)
	}
	return &Entry{Header: h, Config: cfg}, nil
}

// nameFile puts the cache path into config's errors, which name the input
// file (Parse is given none so that it reads JSON first, like Kong).
func nameFile(err error, path string) {
	var ve *config.ValidationError
	if errors.As(err, &ve) && ve.File == "" {
		ve.File = path
	}
	var se *config.SyntaxError
	if errors.As(err, &se) && se.File == "" {
		se.File = path
	}
}
