package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// envCABundle is the AWS SDK's variable naming a PEM file of extra roots.
const envCABundle = "AWS_CA_BUNDLE"

// placeholderRoot is a self-signed Ed25519 certificate whose private key
// was thrown away when it was made, valid for one day in January 2000: a
// root that verifies nothing (see openS3). Made once and kept as text,
// because making a key and a certificate at run time costs milliseconds
// (the crypto self-tests run on first use).
const placeholderRoot = `-----BEGIN CERTIFICATE-----
MIIBUzCCAQWgAwIBAgIBATAFBgMrZXAwMTEvMC0GA1UEAxMma29uZ2ZiIHBsYWNl
aG9sZGVyIHJvb3QsIGtleSBkaXNjYXJkZWQwHhcNMDAwMTAxMDAwMDAwWhcNMDAw
MTAyMDAwMDAwWjAxMS8wLQYDVQQDEyZrb25nZmIgcGxhY2Vob2xkZXIgcm9vdCwg
a2V5IGRpc2NhcmRlZDAqMAUGAytlcAMhAOrMBDUpUPA3TcKqQ6DvtEbSwig/r9Q3
aTTRiSuR3cz2o0IwQDAOBgNVHQ8BAf8EBAMCAgQwDwYDVR0TAQH/BAUwAwEB/zAd
BgNVHQ4EFgQU1iRlSypMKTaFU1M8OVVIyLDVNv0wBQYDK2VwA0EA3eHIo6NLHowQ
ah1L/S8u8bJZ1uAJcito9sADK9G0bKqLn4K8sDO7bZZEx2yENE1YP8BEcmN3Y15f
IHNCkntGCQ==
-----END CERTIFICATE-----
`

type s3Store struct {
	loc      Location
	endpoint string // "" for AWS
	client   *s3.Client
	params   *PutParams
	opts     Options
	log      *slog.Logger
	// transports built for the HTTP client, so Close can drop their idle
	// connections.
	mu         sync.Mutex
	transports []*http.Transport
}

// parseEndpoint keeps scheme, host and port of an endpoint URL, as Kong
// does with AWS_CONFIG_STORAGE_ENDPOINT ("http://minio:9000/" works).
func parseEndpoint(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("S3 endpoint %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("S3 endpoint %q must be http://host[:port] or https://host[:port]", raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("S3 endpoint %q: credentials in the endpoint URL are not supported", redactURL(u))
	}
	return u.Scheme + "://" + u.Host, nil
}

func openS3(ctx context.Context, loc Location, opts Options) (Store, error) {
	params, err := ParseExtraPutParams(opts.ExtraPutParams)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", loc, err)
	}
	endpoint := opts.Endpoint
	endpointSource := "Options.Endpoint"
	if endpoint == "" {
		endpoint = opts.getenv(EnvEndpoint)
		endpointSource = EnvEndpoint
	}
	if endpoint != "" {
		if endpoint, err = parseEndpoint(endpoint); err != nil {
			return nil, fmt.Errorf("storage %s: %s: %w", loc, endpointSource, err)
		}
	}

	s := &s3Store{loc: loc, endpoint: endpoint, params: params, opts: opts, log: opts.Logger}
	// The SDK's buildable client, not a plain http.Client: the SDK adds
	// AWS_CA_BUNDLE roots to it through WithTransportOptions (and refuses
	// any other client when that variable is set).
	httpClient := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		s.mu.Lock()
		s.transports = append(s.transports, tr)
		s.mu.Unlock()
	})

	lo := []func(*config.LoadOptions) error{
		config.WithHTTPClient(httpClient),
		// Checksums only where S3 requires them: S3-compatible servers
		// differ in their support of the newer flexible checksums, and
		// SigV4 already covers the payload hash.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if opts.Region != "" {
		lo = append(lo, config.WithRegion(opts.Region))
	}
	if opts.AccessKeyID != "" {
		lo = append(lo, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken)))
	}
	if opts.MaxAttempts > 0 {
		lo = append(lo, config.WithRetryMaxAttempts(opts.MaxAttempts))
	}
	if strings.HasPrefix(endpoint, "http://") && os.Getenv(envCABundle) != "" {
		// A plain-http endpoint makes no TLS connection, yet the SDK reads
		// and parses the whole AWS_CA_BUNDLE into the transport's roots
		// while it loads the configuration: 5-60 ms for a distribution's
		// bundle, on the critical path of a data plane's cold start from
		// the storage. A bundle given here takes precedence over the
		// variable; it holds one expired root whose key is gone, so the
		// roots trust nothing. Only a 307/308 redirect to an https URL
		// could reach them, which an S3 endpoint has no reason to send.
		// (A bundle that is missing or invalid no longer stops the start
		// either: it would not be used.)
		lo = append(lo, config.WithCustomCABundle(strings.NewReader(placeholderRoot)))
	}
	start := time.Now()
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return nil, fmt.Errorf("storage %s: load AWS configuration: %w", loc, err)
	}
	if cfg.Region == "" {
		// The Go SDK reads AWS_REGION only; Kong (lua-resty-aws) also takes
		// AWS_DEFAULT_REGION.
		cfg.Region = opts.getenv("AWS_DEFAULT_REGION")
	}
	if cfg.Region == "" {
		if endpoint == "" {
			return nil, fmt.Errorf("storage %s: S3 region is not configured: set AWS_REGION or AWS_DEFAULT_REGION (or region in ~/.aws/config)", loc)
		}
		cfg.Region = "us-east-1" // what MinIO and most S3-compatible servers expect by default
	}
	s.client = s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
			o.UsePathStyle = true
		}
		if opts.ForcePathStyle {
			o.UsePathStyle = true
		}
	})
	s.log.Debug("storage opened", "storage", s.String(), "region", cfg.Region, "extra_put_params", params.Names(), "took", time.Since(start))

	if opts.CreateBucket {
		if err := s.ensureBucket(ctx, cfg.Region); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *s3Store) String() string {
	if s.endpoint != "" {
		return s.loc.String() + " (endpoint " + s.endpoint + ")"
	}
	return s.loc.String()
}

func (s *s3Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tr := range s.transports {
		tr.CloseIdleConnections()
	}
	return nil
}

func (s *s3Store) ensureBucket(ctx context.Context, region string) error {
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.loc.Bucket})
	if err == nil {
		return nil
	}
	if kind := classifyS3(err); kind != ErrNotFound && kind != ErrNoSuchBucket {
		return s.fail("create bucket", "", err)
	}
	in := &s3.CreateBucketInput{Bucket: &s.loc.Bucket}
	if region != "us-east-1" {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{
			LocationConstraint: types.BucketLocationConstraint(region),
		}
	}
	if _, err := s.client.CreateBucket(ctx, in); err != nil {
		var owned *types.BucketAlreadyOwnedByYou
		if errors.As(err, &owned) {
			return nil
		}
		return s.fail("create bucket", "", err)
	}
	s.log.Info("storage bucket created", "storage", s.String())
	return nil
}

// fullKey validates a relative key and puts the store prefix in front.
func (s *s3Store) fullKey(op, key string) (string, error) {
	k, err := cleanKey(key)
	if err != nil {
		return "", &Error{Op: op, Scheme: "s3", Bucket: s.loc.Bucket, Key: joinKey(s.loc.Prefix, key), Err: err}
	}
	full := joinKey(s.loc.Prefix, k)
	if len(full) > maxKeyLen {
		return "", &Error{Op: op, Scheme: "s3", Bucket: s.loc.Bucket, Key: full, Kind: ErrInvalidKey, Err: fmt.Errorf("%d bytes long with the prefix, the limit is %d", len(full), maxKeyLen)}
	}
	return full, nil
}

func (s *s3Store) relKey(full string) string {
	if s.loc.Prefix == "" {
		return full
	}
	return strings.TrimPrefix(full, s.loc.Prefix+"/")
}

func (s *s3Store) Put(ctx context.Context, key string, body []byte, opts PutOptions) (ObjectInfo, error) {
	full, err := s.fullKey("put", key)
	if err != nil {
		return ObjectInfo{}, err
	}
	md, err := checkPutOptions(opts)
	if err != nil {
		return ObjectInfo{}, &Error{Op: "put", Scheme: "s3", Bucket: s.loc.Bucket, Key: full, Err: err}
	}
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	start := time.Now()

	in := s.params.apply()
	in.Bucket = &s.loc.Bucket
	in.Key = &full
	in.Body = bytes.NewReader(body)
	in.ContentLength = aws.Int64(int64(len(body)))
	ct := opts.ContentType
	if ct == "" {
		ct = DefaultContentType
	}
	in.ContentType = &ct
	in.Metadata = md
	if opts.IfNoneMatch != "" {
		in.IfNoneMatch = aws.String(opts.IfNoneMatch)
	}
	if opts.IfMatch != "" {
		in.IfMatch = aws.String(normalizeETag(opts.IfMatch))
	}
	out, err := s.client.PutObject(ctx, &in)
	s.log.Debug("storage put", "storage", s.String(), "key", full, "size", len(body), "duration", time.Since(start), "error", err)
	if err != nil {
		return ObjectInfo{}, s.fail("put", full, err)
	}
	info := ObjectInfo{
		Key:         s.relKey(full),
		Size:        int64(len(body)),
		ETag:        aws.ToString(out.ETag),
		ContentType: ct,
		Metadata:    md,
	}
	// PutObject does not return Last-Modified; the response Date is the
	// server's clock at the write, at the same one-second precision, and
	// saves a HEAD.
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		if t, err := http.ParseTime(raw.Header.Get("Date")); err == nil {
			info.LastModified = t
		}
	}
	return info, nil
}

func (s *s3Store) Get(ctx context.Context, key string) ([]byte, ObjectInfo, error) {
	full, err := s.fullKey("get", key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	start := time.Now()
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.loc.Bucket, Key: &full})
	if err != nil {
		s.log.Debug("storage get", "storage", s.String(), "key", full, "error", err)
		return nil, ObjectInfo{}, s.fail("get", full, err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if n := aws.ToInt64(out.ContentLength); n > 0 && n < 1<<31 {
		buf.Grow(int(n))
	}
	if _, err := io.Copy(&buf, out.Body); err != nil {
		return nil, ObjectInfo{}, s.fail("get", full, fmt.Errorf("read body: %w", err))
	}
	s.log.Debug("storage get", "storage", s.String(), "key", full, "size", buf.Len(), "duration", time.Since(start))
	info := ObjectInfo{
		Key:          s.relKey(full),
		Size:         int64(buf.Len()),
		ETag:         aws.ToString(out.ETag),
		LastModified: aws.ToTime(out.LastModified),
		ContentType:  aws.ToString(out.ContentType),
		Metadata:     lowerKeys(out.Metadata),
	}
	return buf.Bytes(), info, nil
}

func (s *s3Store) Head(ctx context.Context, key string) (ObjectInfo, error) {
	full, err := s.fullKey("head", key)
	if err != nil {
		return ObjectInfo{}, err
	}
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.loc.Bucket, Key: &full})
	if err != nil {
		s.log.Debug("storage head", "storage", s.String(), "key", full, "error", err)
		return ObjectInfo{}, s.failHead(ctx, "head", full, err)
	}
	return ObjectInfo{
		Key:          s.relKey(full),
		Size:         aws.ToInt64(out.ContentLength),
		ETag:         aws.ToString(out.ETag),
		LastModified: aws.ToTime(out.LastModified),
		ContentType:  aws.ToString(out.ContentType),
		Metadata:     lowerKeys(out.Metadata),
	}, nil
}

// failHead maps a HEAD error. A HEAD response has no body, so a missing
// bucket and a missing key both come back as a bare 404: ask the bucket to
// tell them apart.
func (s *s3Store) failHead(ctx context.Context, op, full string, err error) error {
	if classifyS3(err) == ErrNotFound {
		if _, berr := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.loc.Bucket}); berr != nil {
			if k := classifyS3(berr); k == ErrNotFound || k == ErrNoSuchBucket {
				return &Error{Op: op, Scheme: "s3", Bucket: s.loc.Bucket, Key: full, Kind: ErrNoSuchBucket, Err: s3Cause(berr)}
			}
		}
	}
	return s.fail(op, full, err)
}

func (s *s3Store) Delete(ctx context.Context, key string, opts DeleteOptions) error {
	full, err := s.fullKey("delete", key)
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	in := &s3.DeleteObjectInput{Bucket: &s.loc.Bucket, Key: &full}
	if opts.IfMatch != "" {
		etag := normalizeETag(opts.IfMatch)
		// Check first: a missing object must be ErrNotFound (S3 answers 204
		// to any delete of a missing key), and servers that ignore If-Match
		// on DELETE still get the check, if not atomically.
		out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.loc.Bucket, Key: &full})
		if err != nil {
			return s.failHead(ctx, "delete", full, err)
		}
		if got := aws.ToString(out.ETag); got != etag {
			return &Error{Op: "delete", Scheme: "s3", Bucket: s.loc.Bucket, Key: full, Kind: ErrPreconditionFailed,
				Err: fmt.Errorf("ETag is %s, not %s", got, etag)}
		}
		in.IfMatch = &etag
	}
	_, err = s.client.DeleteObject(ctx, in)
	s.log.Debug("storage delete", "storage", s.String(), "key", full, "error", err)
	if err != nil {
		return s.fail("delete", full, err)
	}
	return nil
}

func (s *s3Store) List(ctx context.Context, prefix string, opts ListOptions) (ListPage, error) {
	rel, err := cleanListPrefix(prefix)
	if err != nil {
		return ListPage{}, &Error{Op: "list", Scheme: "s3", Bucket: s.loc.Bucket, Key: prefix, Err: err}
	}
	full := rel
	if s.loc.Prefix != "" {
		// The store prefix is a directory: "p" must not see "p2/...".
		full = s.loc.Prefix + "/" + rel
	}
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 || maxKeys > DefaultMaxKeys {
		maxKeys = DefaultMaxKeys
	}
	ctx, cancel := withTimeout(ctx, s.opts.OpTimeout)
	defer cancel()
	in := &s3.ListObjectsV2Input{
		Bucket:  &s.loc.Bucket,
		Prefix:  &full,
		MaxKeys: aws.Int32(int32(maxKeys)),
	}
	if opts.StartAfter != "" {
		in.StartAfter = aws.String(joinKey(s.loc.Prefix, opts.StartAfter))
	}
	out, err := s.client.ListObjectsV2(ctx, in)
	if err != nil {
		s.log.Debug("storage list", "storage", s.String(), "prefix", full, "error", err)
		return ListPage{}, s.fail("list", full, err)
	}
	page := ListPage{Objects: make([]ObjectInfo, 0, len(out.Contents))}
	for _, o := range out.Contents {
		page.Objects = append(page.Objects, ObjectInfo{
			Key:          s.relKey(aws.ToString(o.Key)),
			Size:         aws.ToInt64(o.Size),
			ETag:         aws.ToString(o.ETag),
			LastModified: aws.ToTime(o.LastModified),
		})
	}
	page.Truncated = aws.ToBool(out.IsTruncated)
	if page.Truncated && len(page.Objects) > 0 {
		page.NextStartAfter = page.Objects[len(page.Objects)-1].Key
	}
	return page, nil
}

func lowerKeys(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

func (s *s3Store) fail(op, full string, err error) error {
	return &Error{Op: op, Scheme: "s3", Bucket: s.loc.Bucket, Key: full, Kind: classifyS3(err), Err: s3Cause(err)}
}

// classifyS3 maps an AWS SDK error to a sentinel kind (nil when none fits:
// network failures, timeouts, server errors).
func classifyS3(err error) error {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "NoSuchKey", "NotFound":
			return ErrNotFound
		case "NoSuchBucket":
			return ErrNoSuchBucket
		case "PreconditionFailed", "ConditionalRequestConflict":
			// 409 ConditionalRequestConflict is AWS's answer to a conditional
			// write racing another one on the same key: it lost all the same.
			return ErrPreconditionFailed
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
			"ExpiredToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "Forbidden",
			"InvalidObjectState":
			return ErrAccessDenied
		}
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch re.HTTPStatusCode() {
		case http.StatusNotFound:
			return ErrNotFound
		case http.StatusPreconditionFailed:
			return ErrPreconditionFailed
		case http.StatusForbidden, http.StatusUnauthorized:
			return ErrAccessDenied
		}
	}
	return nil
}

// s3Cause shortens an AWS SDK error to the server's message, code and
// status (the SDK's own text repeats the operation and request ids), while
// keeping the original in the chain for errors.Is / errors.As.
func s3Cause(err error) error {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return err
	}
	msg := apiErr.ErrorMessage()
	if msg == "" {
		msg = http.StatusText(httpStatus(err))
	}
	detail := apiErr.ErrorCode()
	if st := httpStatus(err); st != 0 {
		detail += fmt.Sprintf(", HTTP %d", st)
	}
	return &causeError{msg: fmt.Sprintf("%s (%s)", msg, detail), err: err}
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

type causeError struct {
	msg string
	err error
}

func (c *causeError) Error() string { return c.msg }
func (c *causeError) Unwrap() error { return c.err }
