package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// writeSharedCert writes a shared-mode cluster certificate (what `kongfb
// cert gen` makes) and returns the two file names.
func writeSharedCert(t *testing.T) (string, string) {
	t.Helper()
	c, k, err := cluster.GenerateSharedCert(1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cluster.crt"), filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(cert, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// serves reports whether the DP's proxy answers path with want.
func serves(t *testing.T, d *runningDP, path string, want int) bool {
	t.Helper()
	res, err := http.Get("http://" + d.addrs.Proxy[0] + path)
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == want
}

// TestHybridEndToEnd runs the real thing in one process: `serve cp` (Admin
// API, SQLite store, cluster listener) and three `serve dp --cp`, each with
// its own listeners and cache, and walks them through a CP outage.
func TestHybridEndToEnd(t *testing.T) {
	up := newUpstream(t)
	cert, key := writeSharedCert(t)
	cpOpts := cpTestOptions(t)
	cpOpts.ClusterListen = "127.0.0.1:0"
	cpOpts.ClusterCert, cpOpts.ClusterCertKey = cert, key
	cpLog := &syncBuffer{}
	cpOpts.Logger = newTestLogger(cpLog)
	addrs, stopCP := startCP(t, cpOpts)
	if addrs.Cluster == "" {
		t.Fatal("no cluster listener")
	}
	admin := "http://" + addrs.Admin[0]
	mustPost := func(path, body string) map[string]any {
		t.Helper()
		code, m := cpRequest(t, "POST", admin+path, body, "")
		if code != 201 {
			t.Fatalf("POST %s: %d %v", path, code, m)
		}
		return m
	}
	svc := mustPost("/services", fmt.Sprintf(`{"name":"e2e","url":%q}`, up.URL))
	mustPost("/services/e2e/routes", `{"name":"r1","paths":["/r1"]}`)

	prefixes := make([]string, 3)
	for i := range prefixes {
		prefixes[i] = filepath.Join(t.TempDir(), fmt.Sprintf("dp%d", i))
	}
	dpOpts := func(i int) serveDPOptions { return hybridDP(addrs.Cluster, prefixes[i], cert, key) }
	dps := make([]*runningDP, 3)
	for i := range dps {
		dps[i] = startDP(t, dpOpts(i))
	}
	allServe := func(what, path string, want int) {
		t.Helper()
		for i, d := range dps {
			eventually(t, fmt.Sprintf("DP %d: %s", i, what), func() bool { return serves(t, d, path, want) })
		}
	}
	allServe("the initial config", "/r1", 200)

	// A change through the Admin API reaches all three.
	mustPost("/services/e2e/routes", `{"name":"r2","paths":["/r2"]}`)
	allServe("the pushed route", "/r2", 200)

	// The registry lists the three, with the hash each reports.
	eventually(t, "/clustering/data-planes to list the DPs in sync", func() bool {
		code, body := cpRequest(t, "GET", admin+"/clustering/data-planes", "", "")
		data, _ := body["data"].([]any)
		if code != 200 || len(data) != 3 {
			return false
		}
		hashes := map[string]bool{}
		for _, d := range dps {
			hashes[statusDoc(t, d.addrs.Status)["configuration_hash"].(string)] = true
		}
		for _, x := range data {
			row := x.(map[string]any)
			if !hashes[row["config_hash"].(string)] || row["sync_status"] != "normal" || row["ip"] != "127.0.0.1" {
				return false
			}
		}
		return len(hashes) == 1
	})

	// The CP goes away: the DPs keep serving what they have.
	if err := stopCP(); err != nil {
		t.Fatalf("stop CP: %v", err)
	}
	for i, d := range dps {
		eventually(t, fmt.Sprintf("DP %d to notice the CP is gone", i), func() bool {
			return hyKongfb(t, d.addrs.Status)["cp_connected"] == false
		})
		for _, p := range []string{"/r1", "/r2"} {
			if !serves(t, d, p, 200) {
				t.Fatalf("DP %d stopped serving %s without its CP", i, p)
			}
		}
	}

	// A DP restarted while the CP is down serves its cache.
	if err := dps[0].stop(t); err != nil {
		t.Fatalf("stop DP 0: %v", err)
	}
	dps[0] = startDP(t, dpOpts(0))
	if !serves(t, dps[0], "/r2", 200) {
		t.Fatal("restarted DP does not serve its cached config")
	}

	// While the CP is down, the database changes (another process, a
	// restore...): the restarted CP pushes it and every DP converges.
	st, err := store.Open(context.Background(), store.Config{Database: store.BackendSQLite, Prefix: cpOpts.Prefix, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	row, verr := config.ValidateEntity("routes", map[string]any{"name": "r3", "paths": []any{"/r3"}, "service": map[string]any{"id": svc["id"]}}, config.Insert)
	if verr != nil {
		t.Fatal(verr.Message())
	}
	if _, err := st.Insert(context.Background(), "routes", row); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()

	cpOpts.ClusterListen = addrs.Cluster // the address the DPs dial
	cpOpts.AdminListen = "127.0.0.1:0"
	addrs2, _ := startCP(t, cpOpts)
	allServe("the change made while the CP was down", "/r3", 200)
	mustPost2 := func(path, body string) {
		t.Helper()
		if code, m := cpRequest(t, "POST", "http://"+addrs2.Admin[0]+path, body, ""); code != 201 {
			t.Fatalf("POST %s: %d %v", path, code, m)
		}
	}
	mustPost2("/services/e2e/routes", `{"name":"r4","paths":["/r4"]}`)
	allServe("a change after the CP restart", "/r4", 200)
	for i, d := range dps {
		eventually(t, fmt.Sprintf("DP %d reconnected", i), func() bool {
			return hyKongfb(t, d.addrs.Status)["cp_connected"] == true
		})
	}
	if !strings.Contains(cpLog.String(), "config pushed") {
		t.Errorf("CP log has no push:\n%s", cpLog.String())
	}
}

func TestServeCPClusterSettings(t *testing.T) {
	cert, key := writeSharedCert(t)
	// No certificate: Admin-only, said at start; the registry endpoint
	// answers Kong's 400.
	o := cpTestOptions(t)
	logs := &syncBuffer{}
	o.Logger = newTestLogger(logs)
	addrs, _ := startCP(t, o)
	if addrs.Cluster != "" {
		t.Errorf("cluster listener without a certificate: %s", addrs.Cluster)
	}
	if !strings.Contains(logs.String(), "Admin-only control plane") {
		t.Errorf("start log does not say the CP is Admin-only:\n%s", logs.String())
	}
	code, body := cpRequest(t, "GET", "http://"+addrs.Admin[0]+"/clustering/data-planes", "", "")
	if code != 400 || !strings.Contains(fmt.Sprint(body["message"]), "only available when Kong is configured to run as Control Plane") {
		t.Errorf("GET /clustering/data-planes on an Admin-only CP: %d %v", code, body)
	}

	for _, tc := range []struct {
		name string
		mod  func(*serveCPOptions)
		want string
	}{
		{"cert without key", func(o *serveCPOptions) { o.ClusterCert = cert }, "cluster certificate and key must be provided"},
		{"key without cert", func(o *serveCPOptions) { o.ClusterCertKey = key }, "cluster certificate and key must be provided"},
		{"bad mtls", func(o *serveCPOptions) { o.ClusterCert, o.ClusterCertKey, o.ClusterMTLS = cert, key, "tls" }, "cluster_mtls has an invalid value"},
		{"pki without CA", func(o *serveCPOptions) { o.ClusterCert, o.ClusterCertKey, o.ClusterMTLS = cert, key, "pki" }, "cluster_ca_cert must be specified"},
		{"missing cert file", func(o *serveCPOptions) {
			o.ClusterCert, o.ClusterCertKey = filepath.Join(t.TempDir(), "nope.crt"), key
		}, "cluster_cert"},
		{"small payload", func(o *serveCPOptions) { o.ClusterCert, o.ClusterCertKey, o.ClusterMaxPayload = cert, key, 1024 }, "cluster_max_payload must be 4194304"},
		{"short purge delay", func(o *serveCPOptions) {
			o.ClusterCert, o.ClusterCertKey, o.ClusterPurgeDelay = cert, key, 10*time.Second
		}, "cluster_data_plane_purge_delay must be 60 or greater"},
		{"two cluster listeners", func(o *serveCPOptions) {
			o.ClusterCert, o.ClusterCertKey, o.ClusterListen = cert, key, "127.0.0.1:0, 127.0.0.1:0"
		}, "one address expected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := cpTestOptions(t)
			o.ClusterListen = "127.0.0.1:0"
			tc.mod(&o)
			err := runServeCP(context.Background(), o)
			var ee *ExitError
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ee) || ee.Code != ExitUsage {
				t.Fatalf("err = %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
}

// HA: two `serve cp` on one PostgreSQL database. A write through CP A's
// Admin API reaches a DP connected to CP B (the stores' LISTEN/NOTIFY), and
// the other way round.
func TestHybridTwoControlPlanesPostgres(t *testing.T) {
	cfg := storetest.PostgresConfig(t)
	cfg.AutoMigrate = true // what `kongfb migrations bootstrap` does
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	cert, key := writeSharedCert(t)
	cpOpts := func() serveCPOptions {
		o := cpTestOptions(t)
		o.Database = "postgres"
		o.PGDSN, o.PGSchema = cfg.Postgres.DSN, cfg.Postgres.Schema
		o.ClusterListen = "127.0.0.1:0"
		o.ClusterCert, o.ClusterCertKey = cert, key
		return o
	}
	a, _ := startCP(t, cpOpts())
	b, _ := startCP(t, cpOpts())
	dpA := startDP(t, hybridDP(a.Cluster, filepath.Join(t.TempDir(), "dpa"), cert, key))
	dpB := startDP(t, hybridDP(b.Cluster, filepath.Join(t.TempDir(), "dpb"), cert, key))

	post := func(admin, path, body string) {
		t.Helper()
		if code, m := cpRequest(t, "POST", "http://"+admin+path, body, ""); code != 201 {
			t.Fatalf("POST %s: %d %v", path, code, m)
		}
	}
	post(a.Admin[0], "/services", fmt.Sprintf(`{"name":"ha","url":%q}`, up.URL))
	post(a.Admin[0], "/services/ha/routes", `{"name":"via-a","paths":["/via-a"]}`)
	eventually(t, "the write on CP A served by the DP on CP B", func() bool { return serves(t, dpB, "/via-a", 200) })
	post(b.Admin[0], "/services/ha/routes", `{"name":"via-b","paths":["/via-b"]}`)
	eventually(t, "the write on CP B served by the DP on CP A", func() bool { return serves(t, dpA, "/via-b", 200) })
	eventually(t, "both DPs on the same hash", func() bool {
		return statusDoc(t, dpA.addrs.Status)["configuration_hash"] == statusDoc(t, dpB.addrs.Status)["configuration_hash"]
	})
}
