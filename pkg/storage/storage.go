// Package storage is kongfb's object storage client: one Store interface
// with an S3 backend (AWS S3 and S3-compatible servers such as MinIO) and a
// local-directory backend, both with the same semantics. It is the ground
// under Kong's fallback configuration: backup nodes export the running
// config to storage, and a new data plane imports it when the control plane
// cannot be reached.
//
// Open takes Kong's storage URL forms:
//
//	s3://bucket/prefix     (cluster_fallback_config_storage)
//	file:///abs/dir        (kongfb extension, for single-host setups and tests)
//
// Keys given to a Store are relative to the URL's prefix and normalised the
// way Kong normalises object paths (dot segments removed, repeated slashes
// merged), so "<prefix>/3.9.1/config.json" lands on the same object name
// Kong would use.
//
// Both backends live in this one package (not in subpackages) so that Open
// can dispatch on the URL scheme without an import cycle or a registration
// step; the conformance suite and the MinIO test server are in
// storage/storagetest.
package storage

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"
)

// Store is an object store rooted at a bucket (or directory) and a key
// prefix. Every method honours its context, and Options.OpTimeout bounds each
// call in addition. All methods are safe for concurrent use.
type Store interface {
	// Put writes body under key, replacing any object there, and returns the
	// new object's info. With opts.IfNoneMatch "*" the write happens only if
	// no object exists (else ErrPreconditionFailed); with opts.IfMatch it
	// happens only if the current object's ETag equals it (else
	// ErrPreconditionFailed, or ErrNotFound when there is no object).
	Put(ctx context.Context, key string, body []byte, opts PutOptions) (ObjectInfo, error)
	// Get reads a whole object. ErrNotFound when it does not exist.
	Get(ctx context.Context, key string) ([]byte, ObjectInfo, error)
	// Head returns an object's info (with ContentType and Metadata) without
	// its body. ErrNotFound when it does not exist.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// Delete removes an object. Deleting a missing object succeeds, like S3,
	// unless opts.IfMatch is set: then a missing object is ErrNotFound and a
	// different ETag is ErrPreconditionFailed.
	Delete(ctx context.Context, key string, opts DeleteOptions) error
	// List returns one page of the objects whose key starts with prefix, in
	// lexicographic (byte) order of key, after opts.StartAfter. Use
	// ListAll to walk every page.
	List(ctx context.Context, prefix string, opts ListOptions) (ListPage, error)
	// String describes the store (URL form) without any secret.
	String() string
	// Close releases the store's resources.
	Close() error
}

// PutOptions are the optional parts of a Put.
type PutOptions struct {
	// IfNoneMatch "*" makes the write conditional on the key being absent.
	// Any other non-empty value is refused (S3 accepts only "*").
	IfNoneMatch string
	// IfMatch makes the write conditional on the current object's ETag.
	IfMatch string
	// ContentType defaults to "application/octet-stream".
	ContentType string
	// Metadata is user metadata (S3 x-amz-meta-*). Names are case-insensitive
	// and come back lower-cased; names and values must be printable ASCII.
	Metadata map[string]string
}

// DeleteOptions are the optional parts of a Delete.
type DeleteOptions struct {
	// IfMatch makes the delete conditional on the current object's ETag.
	// The file backend checks it atomically under its write lock. The S3
	// backend checks the ETag with a HEAD first (so a missing object is
	// ErrNotFound and a different one ErrPreconditionFailed on every
	// server) and then sends DELETE with If-Match: AWS S3 enforces that
	// header atomically, but MinIO (tested with the pinned release) ignores
	// it on DELETE, so there a write landing between the HEAD and the
	// DELETE is lost. Use conditional deletes for housekeeping (pruning
	// stale election entries), not as a lock release that must be exact.
	IfMatch string
}

// ListOptions select a page of List.
type ListOptions struct {
	// StartAfter lists only keys that sort after it (relative key).
	StartAfter string
	// MaxKeys caps the page size; 0 means 1000, and S3 never returns more
	// than 1000 per page whatever is asked.
	MaxKeys int
}

// ListPage is one page of a listing.
type ListPage struct {
	// Objects have Key, Size, ETag and LastModified set (not ContentType or
	// Metadata, which S3 listings do not carry).
	Objects []ObjectInfo
	// Truncated reports that more keys follow; pass NextStartAfter as
	// ListOptions.StartAfter to get them.
	Truncated      bool
	NextStartAfter string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	// Key is relative to the store's prefix.
	Key  string
	Size int64
	// ETag is quoted, as S3 sends it: for a single-part upload the hex MD5
	// of the content, e.g. "\"9e107d9d372bb6826bd81d3542a419d6\"".
	ETag         string
	LastModified time.Time
	ContentType  string
	Metadata     map[string]string
}

// DefaultContentType is stored when PutOptions.ContentType is empty.
const DefaultContentType = "application/octet-stream"

// DefaultMaxKeys is the page size when ListOptions.MaxKeys is 0, and the
// largest page S3 returns.
const DefaultMaxKeys = 1000

// ListAll walks every object under prefix, fetching pages as it goes. The
// iteration stops at the first error, which is yielded with a zero
// ObjectInfo.
func ListAll(ctx context.Context, s Store, prefix string, opts ListOptions) iter.Seq2[ObjectInfo, error] {
	return func(yield func(ObjectInfo, error) bool) {
		for {
			page, err := s.List(ctx, prefix, opts)
			if err != nil {
				yield(ObjectInfo{}, err)
				return
			}
			for _, o := range page.Objects {
				if !yield(o, nil) {
					return
				}
			}
			if !page.Truncated {
				return
			}
			if page.NextStartAfter == "" || page.NextStartAfter <= opts.StartAfter {
				// A server that claims more keys but gives no way forward
				// would loop forever; stop with an error instead.
				yield(ObjectInfo{}, fmt.Errorf("storage: list %s prefix %q: truncated page without progress after %q", s, prefix, opts.StartAfter))
				return
			}
			opts.StartAfter = page.NextStartAfter
		}
	}
}

// Sentinel error kinds. Store methods return *Error values that match one
// of these with errors.Is when the failure is of that kind.
var (
	ErrNotFound           = errors.New("object not found")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrAccessDenied       = errors.New("access denied")
	ErrNoSuchBucket       = errors.New("bucket does not exist")
	// ErrInvalidKey is a key or prefix that cannot name an object: empty,
	// climbing above the prefix with "..", ending in "/", or using a name
	// reserved by the file backend.
	ErrInvalidKey = errors.New("invalid key")
)

// Error is the error of a Store operation. It names the bucket (or
// directory) and the full object key so that a log line alone says what
// failed where.
type Error struct {
	Op     string // "put", "get", "head", "delete", "list"
	Scheme string // "s3" or "file"
	Bucket string // S3 bucket, or the root directory of a file store
	Key    string // full object key (with the store prefix); for list the prefix
	Kind   error  // one of the Err* sentinels, or nil
	Err    error  // the cause, may be nil when Kind says it all
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("storage: ")
	b.WriteString(e.Op)
	switch e.Scheme {
	case "file":
		fmt.Fprintf(&b, " in directory %q", e.Bucket)
	default:
		fmt.Fprintf(&b, " in bucket %q", e.Bucket)
	}
	if e.Op == "list" {
		fmt.Fprintf(&b, " prefix %q", e.Key)
	} else {
		fmt.Fprintf(&b, " key %q", e.Key)
	}
	if e.Kind != nil {
		b.WriteString(": ")
		b.WriteString(e.Kind.Error())
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes both the kind and the cause to errors.Is / errors.As, so
// that errors.Is(err, context.DeadlineExceeded) works as well as
// errors.Is(err, ErrNotFound).
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// normalizeETag quotes an ETag given bare, so callers may pass either form.
func normalizeETag(etag string) string {
	etag = strings.TrimSpace(etag)
	if etag == "" || etag == "*" {
		return etag
	}
	etag = strings.TrimPrefix(etag, "W/")
	if !strings.HasPrefix(etag, `"`) {
		etag = `"` + etag + `"`
	}
	return etag
}

// checkPutOptions validates the options both backends share, and returns
// the normalised metadata (lower-cased names).
func checkPutOptions(opts PutOptions) (map[string]string, error) {
	if opts.IfNoneMatch != "" && opts.IfNoneMatch != "*" {
		return nil, fmt.Errorf("IfNoneMatch must be \"*\" or empty, got %q", opts.IfNoneMatch)
	}
	if opts.IfNoneMatch != "" && opts.IfMatch != "" {
		return nil, errors.New("IfNoneMatch and IfMatch cannot be combined")
	}
	if opts.IfMatch == "*" {
		return nil, errors.New("IfMatch \"*\" is not supported; pass the ETag of the object to replace")
	}
	for _, r := range opts.ContentType {
		if r < 0x20 || r > 0x7e {
			return nil, fmt.Errorf("content type %q has a character outside printable ASCII", opts.ContentType)
		}
	}
	if len(opts.Metadata) == 0 {
		return nil, nil
	}
	md := make(map[string]string, len(opts.Metadata))
	for _, k := range slices.Sorted(maps.Keys(opts.Metadata)) {
		v := opts.Metadata[k]
		if k == "" {
			return nil, errors.New("metadata name is empty")
		}
		for _, r := range k {
			// HTTP token characters: the name becomes part of a header name.
			if r <= 0x20 || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) {
				return nil, fmt.Errorf("metadata name %q: only letters, digits and -_.!#$%%&'*+^`|~ are allowed", k)
			}
		}
		for _, r := range v {
			// S3 signs metadata values as header values; non-ASCII would
			// be mangled or rejected by the server.
			if r < 0x20 || r > 0x7e {
				return nil, fmt.Errorf("metadata %q: value has a character outside printable ASCII", k)
			}
		}
		lk := strings.ToLower(k)
		if _, dup := md[lk]; dup {
			return nil, fmt.Errorf("metadata name %q is given twice (names are case-insensitive)", k)
		}
		md[lk] = v
	}
	return md, nil
}
