package cp

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8001": true, "[::1]:8001": true, "localhost:8001": true, "127.3.2.1:1": true,
		"0.0.0.0:8001": false, ":8001": false, "[::]:8001": false, "10.0.0.5:8001": false, "example.com:8001": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestNodeIDPersists(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "p")
	a, err := NodeID(prefix)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NodeID(prefix)
	if err != nil || a != b {
		t.Fatalf("node id not stable: %q %q %v", a, b, err)
	}
	if err := os.WriteFile(filepath.Join(prefix, "node_id"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NodeID(prefix); err == nil || !strings.Contains(err.Error(), "not a UUID") {
		t.Errorf("corrupt node id file: %v", err)
	}
}

func TestServerServesAndStops(t *testing.T) {
	st := storetest.NewSQLite(t)
	s, err := New(Options{Store: st, AdminListen: []string{"127.0.0.1:0"}, StatusListen: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	get := func(url string) (int, string) {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("http://" + s.AdminAddrs()[0] + "/"); code != 200 || !strings.Contains(body, `"version":"3.9.1"`) {
		t.Errorf("admin GET /: %d %s", code, body)
	}
	if code, body := get("http://" + s.StatusAddrs()[0] + "/status/ready"); code != 200 || !strings.Contains(body, "ready") {
		t.Errorf("status ready: %d %s", code, body)
	}
	// The status listener serves only the status API.
	if code, _ := get("http://" + s.StatusAddrs()[0] + "/services"); code != 404 {
		t.Errorf("status listener serves /services: %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.DialTimeout("tcp", s.AdminAddrs()[0], time.Second); err == nil {
		t.Error("admin listener still accepts after shutdown")
	}
}

func TestServerListenConflict(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := New(Options{Store: storetest.NewSQLite(t), AdminListen: []string{ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err == nil || !strings.Contains(err.Error(), "admin_listen") {
		t.Errorf("Listen on a taken port: %v", err)
	}
}
