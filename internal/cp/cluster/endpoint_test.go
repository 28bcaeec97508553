package cluster

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/admin"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

func getJSON(t *testing.T, h http.Handler, path string) (int, http.Header, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET %s: %d %q: %v", path, rec.Code, rec.Body.String(), err)
	}
	return rec.Code, rec.Header(), body
}

// GET /clustering/data-planes through the real Admin API handler, fed by
// the registry of a CP with real DPs connected.
func TestDataPlanesEndpoint(t *testing.T) {
	st := storetest.NewSQLite(t)
	cp := startCP(t, st, sharedTLS(t), nil)
	api, err := admin.New(admin.Options{Store: st, Mount: map[string]http.Handler{
		"/clustering/": admin.ClusteringHandler(cp.Registry().Rows),
	}})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	var hash string
	for i, id := range ids {
		labels := map[string]string(nil)
		if i == 0 {
			labels = map[string]string{"env": "prod"}
		}
		d := mustDialDP(t, cp.addr, cp.cert, dpOpts{id: id, labels: labels})
		hash = d.next(t).msg.ConfigHash
	}
	waitFor(t, "every DP's hash reported", func() bool {
		for _, id := range ids {
			if e, _ := cp.Registry().Get(id); e.ConfigHash != hash || e.SyncStatus != "normal" {
				return false
			}
		}
		return true
	})

	code, _, body := getJSON(t, api, "/clustering/data-planes")
	if code != 200 || body["next"] != nil {
		t.Fatalf("GET /clustering/data-planes: %d %v", code, body)
	}
	data := body["data"].([]any)
	if len(data) != 3 {
		t.Fatalf("data: %v", data)
	}
	for _, x := range data {
		row := x.(map[string]any)
		for _, k := range []string{"id", "hostname", "ip", "version", "config_hash", "last_seen", "sync_status", "labels", "cert_details", "ttl", "updated_at"} {
			if _, ok := row[k]; !ok {
				t.Errorf("row lacks %q: %v", k, row)
			}
		}
		if row["ip"] != "127.0.0.1" || row["version"] != "3.9.1" || row["config_hash"] != hash || row["sync_status"] != "normal" ||
			row["ttl"].(float64) < 1209500 || row["cert_details"].(map[string]any)["expiry_timestamp"].(float64) <= 0 {
			t.Errorf("row: %v", row)
		}
		if row["id"] == ids[0] {
			if row["labels"].(map[string]any)["env"] != "prod" {
				t.Errorf("labels: %v", row["labels"])
			}
		} else if row["labels"] != nil {
			t.Errorf("labels of a DP without labels: %v", row["labels"])
		}
	}

	// Pagination: size=2 then the offset.
	code, _, p1 := getJSON(t, api, "/clustering/data-planes?size=2")
	if code != 200 || len(p1["data"].([]any)) != 2 || p1["offset"] == nil {
		t.Fatalf("page 1: %d %v", code, p1)
	}
	code, _, p2 := getJSON(t, api, p1["next"].(string))
	if code != 200 || len(p2["data"].([]any)) != 1 || p2["next"] != nil {
		t.Fatalf("page 2 (%s): %d %v", p1["next"], code, p2)
	}
	seen := map[any]bool{}
	for _, p := range []map[string]any{p1, p2} {
		for _, x := range p["data"].([]any) {
			seen[x.(map[string]any)["id"]] = true
		}
	}
	if len(seen) != 3 {
		t.Errorf("pages overlap or miss rows: %v", seen)
	}
	if code, _, b := getJSON(t, api, "/clustering/data-planes?offset=***"); code != 400 || b["name"] != "invalid offset" {
		t.Errorf("bad offset: %d %v", code, b)
	}
	if code, _, b := getJSON(t, api, "/clustering/data-planes?size=0"); code != 400 || b["name"] != "invalid size" {
		t.Errorf("bad size: %d %v", code, b)
	}

	// The deprecated map.
	code, hdr, st2 := getJSON(t, api, "/clustering/status")
	if code != 200 || hdr.Get("Deprecation") != "true" || len(st2) != 3 || st2[ids[1]].(map[string]any)["config_hash"] != hash {
		t.Errorf("GET /clustering/status: %d %v", code, st2)
	}
	if code, _, _ := getJSON(t, api, "/clustering/nothing"); code != 404 {
		t.Errorf("unknown clustering path: %d", code)
	}
}

// A CP without a cluster listener answers Kong's 400.
func TestDataPlanesEndpointWithoutCluster(t *testing.T) {
	st := storetest.NewSQLite(t)
	api, err := admin.New(admin.Options{Store: st, Mount: map[string]http.Handler{"/clustering/": admin.ClusteringHandler(nil)}})
	if err != nil {
		t.Fatal(err)
	}
	code, _, body := getJSON(t, api, "/clustering/data-planes")
	if code != 400 || body["message"] == nil {
		t.Fatalf("%d %v", code, body)
	}
}
