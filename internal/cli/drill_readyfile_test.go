package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDrillServeReadyFile: serve cp and serve dp write --ready-file atomically
// with the bound addresses and their pid once listening, replacing a stale
// one; a ready file in a missing directory is a usage error.
func TestDrillServeReadyFile(t *testing.T) {
	dir := t.TempDir()
	cpFile := filepath.Join(dir, "cp.json")
	if err := os.WriteFile(cpFile, []byte(`{"stale":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	o := cpTestOptions(t)
	o.ReadyFile = cpFile
	addrs, stop := startCP(t, o)
	var cpDoc map[string]any
	b, err := os.ReadFile(cpFile)
	if err != nil || json.Unmarshal(b, &cpDoc) != nil {
		t.Fatalf("cp ready file: %v %s", err, b)
	}
	if cpDoc["stale"] != nil || cpDoc["pid"].(float64) != float64(os.Getpid()) ||
		cpDoc["admin_listen"].([]any)[0] != addrs.Admin[0] || cpDoc["status_listen"].([]any)[0] != addrs.Status[0] {
		t.Fatalf("cp ready file %s; addresses %+v", b, addrs)
	}
	if code, _ := cpRequest(t, "GET", "http://"+cpDoc["admin_listen"].([]any)[0].(string)+"/", "", ""); code != 200 {
		t.Fatalf("the ready file's admin address answers %d", code)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	up := newUpstream(t)
	cfg := filepath.Join(dir, "kong.yaml")
	writeFile(t, cfg, declarative(up.URL, "/r"))
	dpFile := filepath.Join(dir, "dp.json")
	d := startDP(t, serveDPOptions{Declarative: cfg, ProxyListen: "127.0.0.1:0", StatusListen: "127.0.0.1:0", ReadyFile: dpFile})
	var dpDoc serveDPAddrs
	b, err = os.ReadFile(dpFile)
	if err != nil || json.Unmarshal(b, &dpDoc) != nil {
		t.Fatalf("dp ready file: %v %s", err, b)
	}
	if dpDoc.PID != os.Getpid() || len(dpDoc.Proxy) != 1 || dpDoc.Proxy[0] != d.addrs.Proxy[0] || dpDoc.Status != d.addrs.Status {
		t.Fatalf("dp ready file %s; addresses %+v", b, d.addrs)
	}
	if code, _, _ := httpGet(t, "http://"+dpDoc.Proxy[0]+"/r"); code != 200 {
		t.Fatalf("the ready file's proxy address answers %d", code)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 { // cp.json, kong.yaml, dp.json: no temporary file left
		t.Errorf("%d entries in %s", len(ents), dir)
	}

	missing := filepath.Join(dir, "nope", "ready.json")
	bad := cpTestOptions(t)
	bad.ReadyFile = missing
	err = runServeCP(context.Background(), bad)
	if ee, ok := err.(*ExitError); !ok || ee.Code != ExitUsage || !strings.Contains(err.Error(), "--ready-file") {
		t.Errorf("serve cp with a ready file in a missing directory: %v", err)
	}
	err = runServeDP(context.Background(), serveDPOptions{Declarative: cfg, ProxyListen: "127.0.0.1:0", StatusListen: "off", ReadyFile: missing})
	if ee, ok := err.(*ExitError); !ok || ee.Code != ExitUsage || !strings.Contains(err.Error(), "--ready-file") {
		t.Errorf("serve dp with a ready file in a missing directory: %v", err)
	}
}
