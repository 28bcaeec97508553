package cli

import (
	"context"
	"log/slog"
	"testing"
	"time"

	cpcluster "github.com/kongfb/kongfb/internal/cp/cluster"
	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/dp/cpclient/cptest"
	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// TestServeDPWithKongfbCP runs a hybrid DP against kongfb's own CP cluster
// listener (internal/cp/cluster over a SQLite store): entities written to
// the store reach the DP and are proxied.
func TestServeDPWithKongfbCP(t *testing.T) {
	up := newUpstream(t)
	cert, key, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := store.Open(ctx, store.Config{Database: store.BackendSQLite, Prefix: t.TempDir(), AutoMigrate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	insert := func(coll string, in map[string]any) store.Row {
		t.Helper()
		row, verr := config.ValidateEntity(coll, in, config.Insert)
		if verr != nil {
			t.Fatalf("validate %s: %s", coll, verr.Message())
		}
		out, err := st.Insert(ctx, coll, row)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	svc := insert("services", map[string]any{"name": "interop", "url": up.URL})
	insert("routes", map[string]any{"name": "interop-route", "paths": []any{"/interop"}, "service": map[string]any{"id": svc["id"]}})

	cp, err := cpcluster.New(cpcluster.Options{Store: st, Listen: "127.0.0.1:0",
		TLS: cluster.TLSOptions{Mode: cluster.TLSModeShared, Cert: cert, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Listen(); err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	cpDone := make(chan error, 1)
	go func() { cpDone <- cp.Serve(cctx) }()
	defer func() { ccancel(); <-cpDone }()

	d := startDP(t, hybridDP(cp.Addr(), t.TempDir(), cert, key))
	eventually(t, "the CP's config on the DP", func() bool {
		code, _, _ := httpGet(t, "http://"+d.addrs.Proxy[0]+"/interop/x")
		return code == 200
	})
	if kb := hyKongfb(t, d.addrs.Status); kb["config_source"] != "cp" || kb["cp_connected"] != true {
		t.Errorf("kongfb block = %v", kb)
	}

	// A change in the store is pushed and applied.
	insert("routes", map[string]any{"name": "second", "paths": []any{"/second"}, "service": map[string]any{"id": svc["id"]}})
	eventually(t, "the pushed change", func() bool {
		code, _, _ := httpGet(t, "http://"+d.addrs.Proxy[0]+"/second/x")
		return code == 200
	})
	hash := statusDoc(t, d.addrs.Status)["configuration_hash"]
	eventually(t, "the CP registry to show the DP's hash", func() bool {
		for _, p := range cp.Registry().List() {
			if p.ConfigHash == hash {
				return true
			}
		}
		return false
	})
}
