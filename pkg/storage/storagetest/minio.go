package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/storage"
)

// Environment variables of the MinIO test helper.
const (
	// EnvMinIOBin names the MinIO server binary (scripts/test.sh sets it
	// from scripts/ensure-minio.sh).
	EnvMinIOBin = "KONGFB_TEST_MINIO_BIN"
	// EnvRequireServices=1 turns "MinIO binary not available" from a skip
	// into a failure.
	EnvRequireServices = "KONGFB_TEST_REQUIRE_SERVICES"
)

// MinIO is a MinIO server started for one test, on 127.0.0.1 with a free
// port and a data directory in t.TempDir(). Stop and Start restart it on
// the same address and data, for fault tests.
type MinIO struct {
	Endpoint  string // http://127.0.0.1:port
	AccessKey string
	SecretKey string
	Region    string
	Bucket    string // created at start

	tb          testing.TB
	bin         string
	dataDir     string
	certsDir    string
	addr        string
	consoleAddr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	logs *syncBuffer
}

// MinIOBinary returns $KONGFB_TEST_MINIO_BIN, skipping the test when it is
// unset or missing (failing it when KONGFB_TEST_REQUIRE_SERVICES=1).
func MinIOBinary(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv(EnvMinIOBin)
	reason := ""
	if bin == "" {
		reason = EnvMinIOBin + " is not set (scripts/test.sh sets it via scripts/ensure-minio.sh)"
	} else if fi, err := os.Stat(bin); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		reason = fmt.Sprintf("%s=%s is not an executable file", EnvMinIOBin, bin)
	}
	if reason != "" {
		if os.Getenv(EnvRequireServices) == "1" {
			tb.Fatalf("MinIO is required (%s=1) but %s", EnvRequireServices, reason)
		}
		tb.Skipf("skipping MinIO test: %s", reason)
	}
	return bin
}

// StartMinIO starts a MinIO server for tb, waits until it is live,
// creates Bucket, and stops the server when the test ends.
func StartMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	bin := MinIOBinary(tb)
	dir := tb.TempDir()
	m := &MinIO{
		AccessKey: "kongfbtest",
		SecretKey: randHex(16),
		Region:    "us-east-1",
		Bucket:    "kongfb-test",
		tb:        tb,
		bin:       bin,
		dataDir:   filepath.Join(dir, "data"),
		certsDir:  filepath.Join(dir, "certs"), // empty: plain HTTP, whatever ~/.minio holds
		logs:      &syncBuffer{},
	}
	tb.Cleanup(func() {
		if err := m.Stop(); err != nil {
			tb.Errorf("stop MinIO: %v", err)
		}
		if tb.Failed() {
			tb.Logf("MinIO log:\n%s", m.logs.String())
		}
	})
	// Free ports are picked then released, so another process may take
	// one before MinIO binds it: retry with new ports in that case.
	var err error
	for range 3 {
		m.addr, m.consoleAddr = freeAddr(tb), freeAddr(tb)
		m.Endpoint = "http://" + m.addr
		if err = m.Start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("start MinIO: %v\n%s", err, m.logs.String())
	}
	m.CreateBucket(tb, m.Bucket)
	return m
}

// Start (re)starts the server on its address and data directory and waits
// until it answers /minio/health/live. It is a no-op while running.
func (m *MinIO) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return nil
	}
	cmd := exec.Command(m.bin, "server", m.dataDir,
		"--address", m.addr, "--console-address", m.consoleAddr, "--certs-dir", m.certsDir, "--quiet")
	env := []string{}
	for _, kv := range os.Environ() {
		// The test must not pick up a developer's MinIO or AWS settings.
		if !strings.HasPrefix(kv, "MINIO_") && !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env,
		"MINIO_ROOT_USER="+m.AccessKey,
		"MINIO_ROOT_PASSWORD="+m.SecretKey,
		"MINIO_UPDATE=off",
		"MINIO_BROWSER=off",
		"MINIO_REGION="+m.Region,
	)
	cmd.Stdout = m.logs
	cmd.Stderr = m.logs
	setChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", m.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done

	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: 2 * time.Second}
	defer client.CloseIdleConnections()
	for {
		resp, err := client.Get(m.Endpoint + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			// Live answers 200 before the object layer is up; the header
			// says "offline" until then, and requests get 503
			// XMinioServerNotInitialized (seen after a restart).
			if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Minio-Server-Status") != "offline" {
				return nil
			}
		}
		select {
		case <-done:
			m.cmd, m.done = nil, nil
			return fmt.Errorf("minio exited during startup (%v)", cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.stopLocked()
			return fmt.Errorf("minio at %s not live after 60s (last error: %v)", m.Endpoint, err)
		}
	}
}

// Stop stops the server (SIGTERM, then SIGKILL after 10 s) and keeps its
// data for a later Start. It is a no-op when stopped.
func (m *MinIO) Stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopLocked()
}

func (m *MinIO) stopLocked() error {
	if m.cmd == nil {
		return nil
	}
	cmd, done := m.cmd, m.done
	m.cmd, m.done = nil, nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = cmd.Process.Kill()
	<-done
	return errors.New("minio did not stop within 10s of SIGTERM; killed")
}

// Options are storage options reaching this server with its root
// credentials. MaxAttempts is 1 so that fault tests see a stopped server
// at once instead of after the SDK's retries.
func (m *MinIO) Options() storage.Options {
	return storage.Options{
		Endpoint:        m.Endpoint,
		Region:          m.Region,
		AccessKeyID:     m.AccessKey,
		SecretAccessKey: m.SecretKey,
		MaxAttempts:     1,
	}
}

// URL is s3://<Bucket>/<prefix>.
func (m *MinIO) URL(prefix string) string {
	return "s3://" + m.Bucket + "/" + strings.TrimPrefix(prefix, "/")
}

// Open opens a store on s3://<Bucket>/<prefix> of this server, closed at
// the end of the test.
func (m *MinIO) Open(tb testing.TB, prefix string) storage.Store {
	tb.Helper()
	return m.OpenWith(tb, m.URL(prefix), m.Options())
}

// OpenWith opens url with opts, closed at the end of the test.
func (m *MinIO) OpenWith(tb testing.TB, url string, opts storage.Options) storage.Store {
	tb.Helper()
	s, err := storage.Open(context.Background(), url, opts)
	if err != nil {
		tb.Fatalf("open %s: %v", url, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// CreateBucket creates a bucket on the server (no error if it exists).
func (m *MinIO) CreateBucket(tb testing.TB, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := m.Options()
	opts.CreateBucket = true
	opts.MaxAttempts = 5 // the server may still be finishing its start
	s, err := storage.Open(ctx, "s3://"+name, opts)
	if err != nil {
		tb.Fatalf("create bucket %s: %v", name, err)
	}
	s.Close()
}

// MinIOHarness runs the suite against m: each test gets its own random
// prefix in m.Bucket.
func MinIOHarness(m *MinIO) Harness {
	var mu sync.Mutex
	roots := map[*testing.T]string{}
	root := func(t *testing.T) string {
		mu.Lock()
		defer mu.Unlock()
		r, ok := roots[t]
		if !ok {
			r = "t-" + randHex(6)
			roots[t] = r
			t.Cleanup(func() { mu.Lock(); delete(roots, t); mu.Unlock() })
		}
		return r
	}
	return Harness{
		Open: func(t *testing.T, prefix string) storage.Store {
			return m.Open(t, root(t)+"/"+prefix)
		},
		NoBucket: func(t *testing.T) storage.Store {
			return m.OpenWith(t, "s3://kongfb-missing-"+randHex(4)+"/p", m.Options())
		},
		Denied: func(t *testing.T) storage.Store {
			opts := m.Options()
			opts.AccessKeyID = "not-a-user"
			opts.SecretAccessKey = "not-the-secret"
			return m.OpenWith(t, m.URL(root(t)), opts)
		},
	}
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("find a free port: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// syncBuffer collects the server's output for failure reports.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep the tail bounded
		b.buf.Reset()
		b.buf.WriteString("[earlier output dropped]\n")
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
