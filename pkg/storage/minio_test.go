package storage_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kongfb/kongfb/pkg/storage"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

func TestMinIOConformance(t *testing.T) {
	m := storagetest.StartMinIO(t)
	storagetest.Run(t, storagetest.MinIOHarness(m))
}

// rawClient talks to the MinIO server directly, to check what the store
// wrote independently of the store's own reading code.
func rawClient(m *storagetest.MinIO) *s3.Client {
	return s3.New(s3.Options{
		Region:       m.Region,
		BaseEndpoint: aws.String(m.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(m.AccessKey, m.SecretKey, ""),
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestMinIOKongLayout checks that keys land where Kong puts them, with the
// endpoint taken from AWS_CONFIG_STORAGE_ENDPOINT (whose path is ignored,
// like Kong) and a prefix that needs normalising.
func TestMinIOKongLayout(t *testing.T) {
	m := storagetest.StartMinIO(t)
	opts := m.Options()
	opts.Endpoint = ""
	opts.Getenv = func(k string) string {
		if k == storage.EnvEndpoint {
			return m.Endpoint + "/ignored/path/"
		}
		return ""
	}
	s := m.OpenWith(t, "s3://"+m.Bucket+"//test-prefix/./", opts)
	body := []byte(`{"_format_version":"3.0","_transform":false}`)
	if _, err := s.Put(testCtx(t), "3.9.1.0/config.json", body, storage.PutOptions{
		ContentType: "application/json", Metadata: map[string]string{"uploader": "node-1"},
	}); err != nil {
		t.Fatal(err)
	}
	out, err := rawClient(m).GetObject(testCtx(t), &s3.GetObjectInput{Bucket: &m.Bucket, Key: aws.String("test-prefix/3.9.1.0/config.json")})
	if err != nil {
		t.Fatalf("object not at Kong's key: %v", err)
	}
	defer out.Body.Close()
	var got bytes.Buffer
	got.ReadFrom(out.Body)
	if got.String() != string(body) || aws.ToString(out.ContentType) != "application/json" || out.Metadata["uploader"] != "node-1" {
		t.Fatalf("raw object = %q, content type %q, metadata %v", got.String(), aws.ToString(out.ContentType), out.Metadata)
	}
	// Election registrations: empty bodies listed under the election prefix.
	for _, k := range []string{"3.9.1.0/election/1704921469.123-node-b", "3.9.1.0/election/1704921400-node-a"} {
		if _, err := s.Put(testCtx(t), k, nil, storage.PutOptions{ContentType: "text/plain"}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for o, err := range storage.ListAll(testCtx(t), s, "3.9.1.0/election/", storage.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, o.Key)
	}
	if strings.Join(keys, ",") != "3.9.1.0/election/1704921400-node-a,3.9.1.0/election/1704921469.123-node-b" {
		t.Fatalf("election listing = %q", keys)
	}
}

// TestMinIOExtraPutParams checks that Kong's
// cluster_fallback_export_s3_config parameters reach the server.
func TestMinIOExtraPutParams(t *testing.T) {
	m := storagetest.StartMinIO(t)
	opts := m.Options()
	opts.ExtraPutParams = `{"StorageClass":"REDUCED_REDUNDANCY","CacheControl":"no-cache","Tagging":"team=gateway"}`
	s := m.OpenWith(t, m.URL("extra"), opts)
	if _, err := s.Put(testCtx(t), "config.json", []byte("{}"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	raw := rawClient(m)
	head, err := raw.HeadObject(testCtx(t), &s3.HeadObjectInput{Bucket: &m.Bucket, Key: aws.String("extra/config.json")})
	if err != nil {
		t.Fatal(err)
	}
	if head.StorageClass != "REDUCED_REDUNDANCY" || aws.ToString(head.CacheControl) != "no-cache" {
		t.Fatalf("storage class %q, cache control %q", head.StorageClass, aws.ToString(head.CacheControl))
	}
	tags, err := raw.GetObjectTagging(testCtx(t), &s3.GetObjectTaggingInput{Bucket: &m.Bucket, Key: aws.String("extra/config.json")})
	if err != nil || len(tags.TagSet) != 1 || aws.ToString(tags.TagSet[0].Key) != "team" || aws.ToString(tags.TagSet[0].Value) != "gateway" {
		t.Fatalf("tags = %+v, %v", tags, err)
	}

	// This MinIO has no KMS, so SSE is refused: proof that the parameter is
	// sent, and a look at the error text an operator gets.
	opts.ExtraPutParams = `{"ServerSideEncryption":"aws:kms","SSEKMSKeyId":"my-key"}`
	s = m.OpenWith(t, m.URL("sse"), opts)
	_, err = s.Put(testCtx(t), "3.9.1/config.json", []byte("{}"), storage.PutOptions{})
	if err == nil {
		t.Fatal("SSE-KMS put accepted by a MinIO without KMS")
	}
	for _, want := range []string{`bucket "` + m.Bucket + `"`, `key "sse/3.9.1/config.json"`, "KMS", "HTTP 501"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// TestMinIORestart stops the server during an export and starts it again:
// operations fail with an error naming bucket and key (no hang, no wrong
// kind), and work again once the server is back, data intact.
func TestMinIORestart(t *testing.T) {
	m := storagetest.StartMinIO(t)
	opts := m.Options()
	opts.OpTimeout = 5 * time.Second
	s := m.OpenWith(t, m.URL("fault"), opts)
	if _, err := s.Put(testCtx(t), "config.json", []byte("v1"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Put(testCtx(t), "config.json", []byte("v2"), storage.PutOptions{})
	if err == nil {
		t.Fatal("put succeeded with the server down")
	}
	for _, kind := range []error{storage.ErrNotFound, storage.ErrAccessDenied, storage.ErrPreconditionFailed, storage.ErrNoSuchBucket} {
		if errors.Is(err, kind) {
			t.Fatalf("server down reported as %v: %v", kind, err)
		}
	}
	// A fresh dial fails with "connection refused"; a pooled keep-alive
	// connection that the stopped server dropped fails with "broken pipe" or
	// "connection reset": all are the connection failure the text must name.
	connFailure := false
	for _, sign := range []string{"connect", "broken pipe", "connection reset", "EOF"} {
		connFailure = connFailure || strings.Contains(err.Error(), sign)
	}
	if !strings.Contains(err.Error(), `key "fault/config.json"`) || !connFailure {
		t.Fatalf("error text %q should name the key and the connection failure", err)
	}
	t.Logf("server down: %v", err)
	if _, _, err := s.Get(testCtx(t), "config.json"); err == nil {
		t.Fatal("get succeeded with the server down")
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Get(testCtx(t), "config.json")
	if err != nil || string(got) != "v1" {
		t.Fatalf("after restart: %q, %v", got, err)
	}
	if _, err := s.Put(testCtx(t), "config.json", []byte("v2"), storage.PutOptions{}); err != nil {
		t.Fatalf("put after restart: %v", err)
	}
}

func TestMinIOCredentialErrors(t *testing.T) {
	m := storagetest.StartMinIO(t)
	var logs bytes.Buffer
	opts := m.Options()
	opts.SecretAccessKey = "wrong-secret-value-123"
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := m.OpenWith(t, m.URL("creds"), opts)
	_, _, err := s.Get(testCtx(t), "config.json")
	if !errors.Is(err, storage.ErrAccessDenied) || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("wrong secret: %v, want access denied (SignatureDoesNotMatch)", err)
	}
	want := `storage: get in bucket "` + m.Bucket + `" key "creds/config.json": access denied: `
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("error text %q, want prefix %q", err, want)
	}

	// Secrets never show in logs, errors or the store's description.
	good := m.Options()
	good.Logger = opts.Logger
	gs := m.OpenWith(t, m.URL("creds"), good)
	gs.Put(testCtx(t), "k", []byte("v"), storage.PutOptions{})
	gs.Get(testCtx(t), "k")
	_, _, nf := gs.Get(testCtx(t), "missing")
	if nf == nil || nf.Error() != `storage: get in bucket "`+m.Bucket+`" key "creds/missing": object not found: The specified key does not exist. (NoSuchKey, HTTP 404)` {
		t.Errorf("not-found text = %v", nf)
	}
	opts.Logger.Info("options", "storage", good)
	all := logs.String() + err.Error() + s.String() + gs.String()
	for _, secret := range []string{"wrong-secret-value-123", m.SecretKey} {
		if strings.Contains(all, secret) {
			t.Fatalf("a secret leaked into logs or errors:\n%s", all)
		}
	}
	if !strings.Contains(logs.String(), "storage put") {
		t.Fatalf("expected debug logs of operations, got:\n%s", logs.String())
	}
}
