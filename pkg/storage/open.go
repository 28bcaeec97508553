package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// Environment variable names the storage package reads.
const (
	// EnvEndpoint is Kong's name for the endpoint of an S3-compatible
	// server (e.g. "http://minio:9000/"). Only scheme, host and port are
	// used, like Kong.
	EnvEndpoint = "AWS_CONFIG_STORAGE_ENDPOINT"
	// EnvExtraPutParams is the environment form of Kong's
	// cluster_fallback_export_s3_config. The storage package does not read
	// it itself (kong.conf can set it too): the configuration layer passes
	// its value as Options.ExtraPutParams.
	EnvExtraPutParams = "KONG_CLUSTER_FALLBACK_EXPORT_S3_CONFIG"
)

// DefaultOpTimeout bounds each Store call when Options.OpTimeout is 0.
const DefaultOpTimeout = 30 * time.Second

// Options configure Open. The zero value reads everything S3 needs from
// the standard AWS chain (environment, shared config and credentials
// files, web identity, ECS/EC2 instance roles).
type Options struct {
	// Region overrides AWS_REGION / AWS_DEFAULT_REGION / the shared config.
	// With a custom endpoint and no region anywhere, "us-east-1" is used
	// (MinIO's default); against AWS a missing region is an error.
	Region string
	// Endpoint of an S3-compatible server, e.g. "http://127.0.0.1:9000".
	// Empty means $AWS_CONFIG_STORAGE_ENDPOINT, and when that is empty too,
	// AWS S3. A custom endpoint always uses path-style addressing
	// (http://host/bucket/key), as Kong does, because that is what
	// S3-compatible servers support.
	Endpoint string
	// ForcePathStyle uses path-style addressing against AWS S3 too (Kong
	// always does). Without it AWS is addressed virtual-host style.
	ForcePathStyle bool
	// Static credentials. When AccessKeyID is empty the standard AWS
	// credential chain is used. These are secrets: Options' LogValue and
	// Store.String never show them.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// ExtraPutParams is Kong's cluster_fallback_export_s3_config: a JSON
	// object of PutObject parameters in AWS SDK names, applied to every Put,
	// e.g. {"ServerSideEncryption":"aws:kms","SSEKMSKeyId":"..."}. See
	// ParseExtraPutParams for the supported names. Only for s3:// URLs.
	ExtraPutParams string
	// MaxAttempts is the S3 client's attempt count per request (the AWS
	// SDK's standard retryer with backoff); 0 means the SDK default (3).
	MaxAttempts int
	// OpTimeout bounds every Store call (on top of the caller's context):
	// 0 means DefaultOpTimeout, a negative value disables it.
	OpTimeout time.Duration
	// CreateBucket creates the bucket (S3) or directory (file) at Open when
	// it does not exist. Without it a missing bucket makes operations fail
	// with ErrNoSuchBucket.
	CreateBucket bool
	// Logger receives debug logs of operations (never secrets); nil
	// discards them.
	Logger *slog.Logger
	// Getenv replaces os.Getenv for AWS_CONFIG_STORAGE_ENDPOINT and
	// AWS_DEFAULT_REGION (tests); the AWS SDK reads its own variables from
	// the process environment.
	Getenv func(string) string
}

// LogValue prints Options without secrets.
func (o Options) LogValue() slog.Value {
	redact := func(s string) string {
		if s == "" {
			return ""
		}
		return "REDACTED"
	}
	return slog.GroupValue(
		slog.String("region", o.Region),
		slog.String("endpoint", o.Endpoint),
		slog.Bool("force_path_style", o.ForcePathStyle),
		slog.String("access_key_id", o.AccessKeyID),
		slog.String("secret_access_key", redact(o.SecretAccessKey)),
		slog.String("session_token", redact(o.SessionToken)),
		slog.Bool("extra_put_params", o.ExtraPutParams != ""),
		slog.Duration("op_timeout", o.OpTimeout),
		slog.Bool("create_bucket", o.CreateBucket),
	)
}

func (o *Options) getenv(k string) string {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.Getenv(k)
}

// Location is a parsed storage URL.
type Location struct {
	Scheme string // "s3" or "file"
	// Bucket is the S3 bucket, or for file:// the absolute root directory.
	Bucket string
	// Prefix is the normalised key prefix without leading or trailing
	// slash ("" for none). Always "" for file:// (the whole path is the
	// directory).
	Prefix string
}

// String gives the URL form back.
func (l Location) String() string {
	switch l.Scheme {
	case "file":
		return (&url.URL{Scheme: "file", Path: l.Bucket}).String()
	default:
		if l.Prefix == "" {
			return l.Scheme + "://" + l.Bucket
		}
		return l.Scheme + "://" + l.Bucket + "/" + l.Prefix
	}
}

const supportedForms = "s3://bucket/prefix or file:///absolute/dir"

// ParseURL parses a storage URL without opening anything, so configuration
// can be validated early.
func ParseURL(raw string) (Location, error) {
	if strings.TrimSpace(raw) == "" {
		return Location{}, fmt.Errorf("storage URL is empty; use %s", supportedForms)
	}
	scheme, _, ok := strings.Cut(raw, ":")
	if !ok || scheme == "" || strings.ContainsAny(scheme, "/?#") {
		return Location{}, fmt.Errorf("storage URL %q has no scheme; use %s", raw, supportedForms)
	}
	switch strings.ToLower(scheme) {
	case "s3":
		return parseS3URL(raw)
	case "file":
		return parseFileURL(raw)
	case "gcs", "gs":
		return Location{}, fmt.Errorf("storage URL %q: Google Cloud Storage (gcs://) is not supported yet; use %s", raw, supportedForms)
	default:
		return Location{}, fmt.Errorf("storage URL %q: unsupported scheme %q; use %s", raw, scheme, supportedForms)
	}
}

func parseS3URL(raw string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("storage URL %q: %w", raw, err)
	}
	switch {
	case u.Opaque != "":
		return Location{}, fmt.Errorf("storage URL %q: expected s3://bucket/prefix", raw)
	case u.User != nil:
		// Credentials in URLs end up in logs; the AWS chain is the place.
		return Location{}, fmt.Errorf("storage URL %q: credentials in the URL are not supported; use the AWS credential chain (AWS_ACCESS_KEY_ID, ...)", redactURL(u))
	case u.RawQuery != "" || u.Fragment != "":
		return Location{}, fmt.Errorf("storage URL %q: query and fragment are not supported", raw)
	case u.Port() != "":
		return Location{}, fmt.Errorf("storage URL %q: the host part is the bucket name and cannot have a port; set the server with %s", raw, EnvEndpoint)
	}
	bucket := u.Host
	if err := checkBucketName(bucket); err != nil {
		return Location{}, fmt.Errorf("storage URL %q: %w", raw, err)
	}
	p := strings.TrimPrefix(u.Path, "/")
	if err := checkKeyChars(p); err != nil {
		return Location{}, fmt.Errorf("storage URL %q: prefix: %w", raw, err)
	}
	// Kong normalises "<prefix>/<version>/config.json" as a whole, so ".."
	// climbing above the bucket root is simply dropped, as here.
	prefix, _ := normalizePath(p)
	prefix = strings.TrimSuffix(prefix, "/")
	if err := checkReserved(prefix, p); err != nil {
		return Location{}, fmt.Errorf("storage URL %q: prefix: %w", raw, err)
	}
	return Location{Scheme: "s3", Bucket: bucket, Prefix: prefix}, nil
}

// checkBucketName applies S3's bucket naming rules, which MinIO shares, so
// a typo fails at startup rather than as an obscure signature error.
func checkBucketName(b string) error {
	if b == "" {
		return errors.New("bucket name is missing (expected s3://bucket/prefix)")
	}
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("bucket name %q must be 3 to 63 characters long", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return fmt.Errorf("bucket name %q: only lower-case letters, digits, '.' and '-' are allowed", b)
		}
	}
	first, last := b[0], b[len(b)-1]
	if first == '.' || first == '-' || last == '.' || last == '-' {
		return fmt.Errorf("bucket name %q must start and end with a letter or digit", b)
	}
	if strings.Contains(b, "..") {
		return fmt.Errorf("bucket name %q cannot contain \"..\"", b)
	}
	return nil
}

func parseFileURL(raw string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("storage URL %q: %w", raw, err)
	}
	if u.Opaque != "" || (u.Host != "" && u.Host != "localhost") {
		return Location{}, fmt.Errorf("storage URL %q: a file URL needs an absolute path: file:///absolute/dir", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return Location{}, fmt.Errorf("storage URL %q: a file URL is file:///absolute/dir, without user, query or fragment", raw)
	}
	if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
		return Location{}, fmt.Errorf("storage URL %q: a file URL needs an absolute path: file:///absolute/dir", raw)
	}
	if strings.IndexByte(u.Path, 0) >= 0 {
		return Location{}, fmt.Errorf("storage URL %q: path contains a NUL byte", raw)
	}
	dir := path.Clean(u.Path)
	if dir == "/" {
		return Location{}, fmt.Errorf("storage URL %q: refusing to use the file system root as storage", raw)
	}
	return Location{Scheme: "file", Bucket: dir}, nil
}

func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// Open opens the store a storage URL names. For s3:// it builds the client
// (no request is made unless opts.CreateBucket); for file:// it checks the
// directory (creating it with opts.CreateBucket).
func Open(ctx context.Context, rawURL string, opts Options) (Store, error) {
	loc, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	if opts.OpTimeout == 0 {
		opts.OpTimeout = DefaultOpTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	switch loc.Scheme {
	case "s3":
		return openS3(ctx, loc, opts)
	default:
		if opts.ExtraPutParams != "" {
			return nil, fmt.Errorf("storage %s: extra S3 put parameters (%s) are only valid with an s3:// storage URL", loc, EnvExtraPutParams)
		}
		return openFile(ctx, loc, opts)
	}
}

// withTimeout applies the per-operation timeout.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
