package dp

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStatusHybridBlock(t *testing.T) {
	now := time.Date(2025, 12, 8, 9, 30, 0, 0, time.UTC)
	n := NewNode(Options{Engine: &fakeEngine{}, ControlPlane: "cp.example:8005", Now: func() time.Time { return now }})
	h := n.StatusHandler()

	_, doc, _ := get(t, h, "GET", "/status", nil, "")
	kb := doc["kongfb"].(map[string]any)
	if kb["control_plane"] != "cp.example:8005" || kb["cp_connected"] != false || kb["last_sync_at"] != nil ||
		kb["last_error"] != nil || kb["config_source"] != nil {
		t.Errorf("kongfb block before anything = %v", kb)
	}

	if _, err := n.Apply(&Snapshot{Config: sampleConfig("a.example"), Hash: strings.Repeat("c", 32), Source: SourceCache, Origin: "/p/config.cache"}); err != nil {
		t.Fatal(err)
	}
	n.SetLinkError(errors.New("connection to control plane broken: refused"))
	_, doc, _ = get(t, h, "GET", "/status", nil, "")
	if kb := doc["kongfb"].(map[string]any); kb["cp_error"] != "connection to control plane broken: refused" || kb["last_error"] != nil {
		t.Errorf("kongfb block with a link error = %v", kb)
	}
	n.SetCPConnected(true)
	n.ReportError(errors.New("bad config received from control plane: boom"))
	if !n.ConfirmSource(strings.Repeat("c", 32), SourceCP, "cp.example:8005") {
		t.Fatal("ConfirmSource refused the running hash")
	}
	if n.ConfirmSource(strings.Repeat("d", 32), SourceCP, "x") {
		t.Error("ConfirmSource accepted another hash")
	}
	n.MarkSynced(now)

	_, doc, _ = get(t, h, "GET", "/status", nil, "")
	kb = doc["kongfb"].(map[string]any)
	if kb["cp_connected"] != true || kb["last_sync_at"] != "2025-12-08T09:30:00Z" || kb["config_source"] != "cp" ||
		kb["config_origin"] != "cp.example:8005" || kb["last_error"] != "bad config received from control plane: boom" ||
		kb["last_error_at"] != "2025-12-08T09:30:00Z" || kb["cp_error"] != nil {
		t.Errorf("kongfb block = %v", kb)
	}
	if doc["configuration_hash"] != strings.Repeat("c", 32) {
		t.Errorf("configuration_hash = %v", doc["configuration_hash"])
	}
	// Ready follows Kong's rules, whatever the link state.
	n.SetCPConnected(false)
	if code, _, _ := get(t, h, "GET", "/status/ready", nil, ""); code != 200 {
		t.Errorf("/status/ready with a config but no CP = %d, want 200", code)
	}

	// DB-less nodes report no link.
	d := NewNode(Options{Engine: &fakeEngine{}})
	_, doc, _ = get(t, d.StatusHandler(), "GET", "/status", nil, "")
	kb = doc["kongfb"].(map[string]any)
	if kb["control_plane"] != nil || kb["cp_connected"] != nil || kb["last_sync_at"] != nil {
		t.Errorf("DB-less kongfb block = %v", kb)
	}
}

func TestNodeIDPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "prefix")
	id, err := NodeID(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := NodeID(dir)
	if err != nil || again != id {
		t.Fatalf("second NodeID = %q, %v; want %q", again, err, id)
	}
	b, err := os.ReadFile(filepath.Join(dir, "kong.id"))
	if err != nil || strings.TrimSpace(string(b)) != id {
		t.Errorf("kong.id = %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "kong.id"), []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NodeID(dir); err == nil || !strings.Contains(err.Error(), "not a UUID") {
		t.Errorf("NodeID with a bad file = %v", err)
	}
}
