package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeS3 is a scripted S3 endpoint for request-shape and error-mapping
// tests that need no server (MinIO tests cover real behaviour).
type fakeS3 struct {
	mu      sync.Mutex
	reqs    []*http.Request
	handler func(w http.ResponseWriter, r *http.Request)
}

func newFakeS3(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) (*fakeS3, *httptest.Server) {
	f := &fakeS3{handler: h}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, r)
		h := f.handler
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeS3) req(i int) *http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[i]
}

func (f *fakeS3) setHandler(h func(w http.ResponseWriter, r *http.Request)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handler = h
}

func openFake(t *testing.T, srv *httptest.Server, url string, mod func(*Options)) Store {
	t.Helper()
	opts := Options{Endpoint: srv.URL, Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "s3cr3t", MaxAttempts: 1}
	if mod != nil {
		mod(&opts)
	}
	s, err := Open(context.Background(), url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func s3Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>1</RequestId></Error>`, code, msg)
}

func TestS3RequestShape(t *testing.T) {
	date := time.Date(2024, 1, 10, 21, 17, 49, 0, time.UTC)
	f, srv := newFakeS3(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Date", date.Format(http.TimeFormat))
		w.Header().Set("ETag", `"abc"`)
		w.WriteHeader(200)
	})
	s := openFake(t, srv, "s3://fallback-bucket/test-prefix/", func(o *Options) {
		o.ExtraPutParams = `{"ServerSideEncryption":"aws:kms","SSEKMSKeyId":"key-1","StorageClass":"STANDARD_IA"}`
	})
	info, err := s.Put(context.Background(), "3.6.0.0/config.json", []byte(`{}`), PutOptions{
		ContentType: "application/json", Metadata: map[string]string{"Uploader": "node-1"}, IfNoneMatch: "*",
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.ETag != `"abc"` || !info.LastModified.Equal(date) || info.Key != "3.6.0.0/config.json" {
		t.Errorf("put info = %+v", info)
	}
	r := f.req(0)
	checks := map[string][2]string{
		"method":       {r.Method, "PUT"},
		"path":         {r.URL.Path, "/fallback-bucket/test-prefix/3.6.0.0/config.json"}, // path style, like Kong
		"content-type": {r.Header.Get("Content-Type"), "application/json"},
		"metadata":     {r.Header.Get("X-Amz-Meta-Uploader"), "node-1"},
		"if-none":      {r.Header.Get("If-None-Match"), "*"},
		"sse":          {r.Header.Get("X-Amz-Server-Side-Encryption"), "aws:kms"},
		"sse-key":      {r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"), "key-1"},
		"class":        {r.Header.Get("X-Amz-Storage-Class"), "STANDARD_IA"},
	}
	for what, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", what, c[0], c[1])
		}
	}
	if !regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/s3/aws4_request`).MatchString(r.Header.Get("Authorization")) {
		t.Errorf("Authorization = %q, want SigV4 for eu-west-1/s3", r.Header.Get("Authorization"))
	}
	if r.Header.Get("X-Amz-Date") == "" || r.Header.Get("X-Amz-Content-Sha256") == "" {
		t.Error("SigV4 headers X-Amz-Date / X-Amz-Content-Sha256 missing")
	}

	// List maps the store prefix and StartAfter to full keys.
	f.setHandler(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>fallback-bucket</Name><IsTruncated>true</IsTruncated>`+
			`<Contents><Key>test-prefix/3.6.0.0/election/1-a</Key><Size>0</Size><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><LastModified>2024-01-10T21:17:49.000Z</LastModified></Contents></ListBucketResult>`)
	})
	page, err := s.List(context.Background(), "3.6.0.0/election/", ListOptions{StartAfter: "3.6.0.0/election/0", MaxKeys: 10})
	if err != nil {
		t.Fatal(err)
	}
	q := f.req(1).URL.Query()
	if q.Get("list-type") != "2" || q.Get("prefix") != "test-prefix/3.6.0.0/election/" || q.Get("start-after") != "test-prefix/3.6.0.0/election/0" || q.Get("max-keys") != "10" {
		t.Errorf("list query = %v", q)
	}
	if len(page.Objects) != 1 || page.Objects[0].Key != "3.6.0.0/election/1-a" || !page.Truncated || page.NextStartAfter != "3.6.0.0/election/1-a" ||
		!page.Objects[0].LastModified.Equal(date) {
		t.Errorf("page = %+v", page)
	}
}

func TestS3ErrorMapping(t *testing.T) {
	cases := []struct {
		status     int
		code, msg  string
		kind       error
		wantInText string
	}{
		{404, "NoSuchKey", "The specified key does not exist.", ErrNotFound, "The specified key does not exist. (NoSuchKey, HTTP 404)"},
		{404, "NoSuchBucket", "The specified bucket does not exist", ErrNoSuchBucket, "NoSuchBucket"},
		{403, "AccessDenied", "Access Denied.", ErrAccessDenied, "Access Denied. (AccessDenied, HTTP 403)"},
		{403, "InvalidAccessKeyId", "The Access Key Id you provided does not exist in our records.", ErrAccessDenied, "InvalidAccessKeyId"},
		{403, "SignatureDoesNotMatch", "bad signature", ErrAccessDenied, "SignatureDoesNotMatch"},
		{400, "ExpiredToken", "The provided token has expired.", ErrAccessDenied, "ExpiredToken"},
		{412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold", ErrPreconditionFailed, "HTTP 412"},
		{409, "ConditionalRequestConflict", "A conflicting conditional operation is currently in progress", ErrPreconditionFailed, "HTTP 409"},
		{500, "InternalError", "We encountered an internal error.", nil, "We encountered an internal error. (InternalError, HTTP 500)"},
	}
	for _, c := range cases {
		_, srv := newFakeS3(t, func(w http.ResponseWriter, r *http.Request) { s3Error(w, c.status, c.code, c.msg) })
		s := openFake(t, srv, "s3://bucket/p", nil)
		_, err := s.Put(context.Background(), "k", []byte("x"), PutOptions{})
		if err == nil {
			t.Fatalf("%s: no error", c.code)
		}
		for _, k := range []error{ErrNotFound, ErrNoSuchBucket, ErrAccessDenied, ErrPreconditionFailed} {
			if errors.Is(err, k) != (k == c.kind) {
				t.Errorf("%s: errors.Is(%v) = %v; err = %v", c.code, k, !(k == c.kind), err)
			}
		}
		if !strings.Contains(err.Error(), c.wantInText) || !strings.Contains(err.Error(), `bucket "bucket" key "p/k"`) {
			t.Errorf("%s: text %q lacks %q or the bucket/key", c.code, err, c.wantInText)
		}
	}
}

// TestS3HeadNotFound: HEAD has no body, so a missing key and a missing
// bucket look alike; the store asks the bucket to tell them apart.
func TestS3HeadNotFound(t *testing.T) {
	var bucketMissing atomic.Bool
	_, srv := newFakeS3(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bucket" && !bucketMissing.Load() { // HeadBucket
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(404)
	})
	s := openFake(t, srv, "s3://bucket/p", nil)
	_, err := s.Head(context.Background(), "k")
	if !errors.Is(err, ErrNotFound) || errors.Is(err, ErrNoSuchBucket) {
		t.Errorf("missing key: %v", err)
	}
	bucketMissing.Store(true)
	_, err = s.Head(context.Background(), "k")
	if !errors.Is(err, ErrNoSuchBucket) {
		t.Errorf("missing bucket: %v", err)
	}
}

// TestS3Timeouts: a server that never answers is cut off by the per-op
// timeout and by the caller's context.
func TestS3Timeouts(t *testing.T) {
	release := make(chan struct{})
	_, srv := newFakeS3(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	s := openFake(t, srv, "s3://bucket/p", func(o *Options) { o.OpTimeout = 100 * time.Millisecond })
	start := time.Now()
	_, _, err := s.Get(context.Background(), "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get from a hung server: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("returned after %v", d)
	}
	s = openFake(t, srv, "s3://bucket/p", func(o *Options) { o.OpTimeout = -1 })
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := s.Put(ctx, "k", []byte("x"), PutOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("put cancelled by the caller: %v", err)
	}
}

// TestS3PlainHTTPSkipsCABundle: the SDK reads AWS_CA_BUNDLE while it loads
// its configuration, costing a cold start 5-60 ms for a distribution's
// bundle. A plain-http endpoint never uses it, so it is not read: a bundle
// that does not exist makes opening an https endpoint fail, not an http one
// (which still works).
func TestS3PlainHTTPSkipsCABundle(t *testing.T) {
	t.Setenv(envCABundle, filepath.Join(t.TempDir(), "no-such-bundle.pem"))
	_, srv := newFakeS3(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bucket</Name><IsTruncated>false</IsTruncated></ListBucketResult>`)
	})
	s := openFake(t, srv, "s3://bucket/p", nil)
	if _, err := s.List(context.Background(), "", ListOptions{}); err != nil {
		t.Fatalf("list through the plain-http endpoint: %v", err)
	}
	opts := Options{Endpoint: "https://127.0.0.1:1", Region: "eu-west-1", AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "s3cr3t"}
	if s, err := Open(context.Background(), "s3://bucket/p", opts); err == nil {
		s.Close()
		t.Fatalf("https endpoint opened with a missing %s; the bundle was not read", envCABundle)
	}
}
