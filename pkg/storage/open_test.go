package storage

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	good := map[string]Location{
		"s3://my-bucket/test-prefix":       {Scheme: "s3", Bucket: "my-bucket", Prefix: "test-prefix"},
		"s3://my-bucket/test-prefix/":      {Scheme: "s3", Bucket: "my-bucket", Prefix: "test-prefix"},
		"s3://my-bucket//a//b/./c/../d":    {Scheme: "s3", Bucket: "my-bucket", Prefix: "a/b/d"},
		"s3://my-bucket":                   {Scheme: "s3", Bucket: "my-bucket"},
		"s3://my-bucket/":                  {Scheme: "s3", Bucket: "my-bucket"},
		"s3://b.with.dots/p":               {Scheme: "s3", Bucket: "b.with.dots", Prefix: "p"},
		"S3://my-bucket/p":                 {Scheme: "s3", Bucket: "my-bucket", Prefix: "p"},
		"s3://my-bucket/../up":             {Scheme: "s3", Bucket: "my-bucket", Prefix: "up"},
		"file:///var/lib/kongfb/fallback":  {Scheme: "file", Bucket: "/var/lib/kongfb/fallback"},
		"file:///var/lib/kongfb/fallback/": {Scheme: "file", Bucket: "/var/lib/kongfb/fallback"},
		"file://localhost/srv/x":           {Scheme: "file", Bucket: "/srv/x"},
		"file:///srv/with%20space":         {Scheme: "file", Bucket: "/srv/with space"},
		"file:///srv/a/../b":               {Scheme: "file", Bucket: "/srv/b"},
	}
	for in, want := range good {
		got, err := ParseURL(in)
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"":                          "empty",
		"my-bucket/prefix":          "no scheme",
		"/abs/path":                 "no scheme",
		"gcs://bucket/prefix":       "not supported yet",
		"gs://bucket/prefix":        "not supported yet",
		"http://bucket/prefix":      `unsupported scheme "http"`,
		"s3:///prefix":              "bucket name is missing",
		"s3://My_Bucket/p":          "only lower-case",
		"s3://ab/p":                 "3 to 63",
		"s3://-bucket/p":            "start and end",
		"s3://bucket:9000/p":        "cannot have a port",
		"s3://key:secret@bucket/p":  "credentials in the URL",
		"s3://bucket/p?versionId=1": "query",
		"s3://bucket/.kongfb-x":     "reserved",
		"file://relative/dir":       "absolute path",
		"file:relative":             "absolute path",
		"file:///":                  "root",
		"file:///x?y=1":             "without user, query",
	}
	for in, want := range bad {
		_, err := ParseURL(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseURL(%q) error = %v, want it to mention %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseURL(%q) error shows the secret: %v", in, err)
		}
	}
	if s := (Location{Scheme: "s3", Bucket: "b", Prefix: "p/q"}).String(); s != "s3://b/p/q" {
		t.Errorf("Location.String() = %q", s)
	}
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://minio:9000/":            "http://minio:9000",
		"https://s3.example.com":        "https://s3.example.com",
		"http://127.0.0.1:9000/ignored": "http://127.0.0.1:9000",
	} {
		if got, err := parseEndpoint(in); err != nil || got != want {
			t.Errorf("parseEndpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"minio:9000", "ftp://x", "http://", "http://u:p@h:1"} {
		if _, err := parseEndpoint(in); err == nil {
			t.Errorf("parseEndpoint(%q) accepted", in)
		}
	}
}

func TestOpenS3Config(t *testing.T) {
	ctx := context.Background()
	// Keep the SDK away from any developer configuration.
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_PROFILE", "")
	noEnv := func(string) string { return "" }

	_, err := Open(ctx, "s3://bucket/p", Options{Getenv: noEnv})
	if err == nil || !strings.Contains(err.Error(), "S3 region is not configured") {
		t.Fatalf("open without a region: %v", err)
	}
	// AWS_DEFAULT_REGION is honoured like Kong does.
	s, err := Open(ctx, "s3://bucket/p", Options{Getenv: func(k string) string {
		if k == "AWS_DEFAULT_REGION" {
			return "eu-west-1"
		}
		return ""
	}})
	if err != nil {
		t.Fatalf("open with AWS_DEFAULT_REGION: %v", err)
	}
	if got := s.(*s3Store).client.Options().Region; got != "eu-west-1" {
		t.Errorf("region = %q", got)
	}
	// A custom endpoint from AWS_CONFIG_STORAGE_ENDPOINT implies path style
	// and a default region.
	s, err = Open(ctx, "s3://bucket/p", Options{Getenv: func(k string) string {
		if k == EnvEndpoint {
			return "http://minio:9000/"
		}
		return ""
	}})
	if err != nil {
		t.Fatal(err)
	}
	o := s.(*s3Store).client.Options()
	if !o.UsePathStyle || o.BaseEndpoint == nil || *o.BaseEndpoint != "http://minio:9000" || o.Region != "us-east-1" {
		t.Errorf("client options: path style %v, endpoint %v, region %q", o.UsePathStyle, o.BaseEndpoint, o.Region)
	}
	if got := s.String(); got != "s3://bucket/p (endpoint http://minio:9000)" {
		t.Errorf("String() = %q", got)
	}
	// Options.Endpoint wins over the environment.
	s, err = Open(ctx, "s3://bucket/p", Options{Endpoint: "http://other:1", Getenv: func(string) string { return "http://minio:9000" }})
	if err != nil || *s.(*s3Store).client.Options().BaseEndpoint != "http://other:1" {
		t.Errorf("Options.Endpoint not preferred: %v", err)
	}
	_, err = Open(ctx, "s3://bucket/p", Options{Getenv: func(k string) string {
		if k == EnvEndpoint {
			return "minio:9000"
		}
		return ""
	}})
	if err == nil || !strings.Contains(err.Error(), EnvEndpoint) {
		t.Errorf("bad endpoint error = %v, want it to name %s", err, EnvEndpoint)
	}
	_, err = Open(ctx, "s3://bucket/p", Options{Region: "us-east-1", ExtraPutParams: `{"Nope":1}`})
	if err == nil || !strings.Contains(err.Error(), `"Nope" is not supported`) {
		t.Errorf("bad extra params error = %v", err)
	}
	_, err = Open(ctx, "file:///tmp/x", Options{ExtraPutParams: `{"StorageClass":"STANDARD"}`})
	if err == nil || !strings.Contains(err.Error(), "only valid with an s3://") {
		t.Errorf("extra params with file:// error = %v", err)
	}
}

func TestOptionsLogValueHidesSecrets(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	o := Options{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI-secret", SessionToken: "tok-secret", Region: "eu-west-1"}
	log.Info("opening", "storage", o)
	out := buf.String()
	if strings.Contains(out, "wJalrXUtnFEMI-secret") || strings.Contains(out, "tok-secret") {
		t.Fatalf("secret in log: %s", out)
	}
	if !strings.Contains(out, "AKIAEXAMPLE") || !strings.Contains(out, "REDACTED") || !strings.Contains(out, "eu-west-1") {
		t.Fatalf("log lacks the non-secret fields: %s", out)
	}
}
