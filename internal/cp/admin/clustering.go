package admin

import (
	"encoding/base64"
	"net/http"
	"sort"
	"strings"
)

// DataPlaneRows lists the control plane's data planes as the items of
// Kong's GET /clustering/data-planes (id, hostname, ip, version,
// config_hash, last_seen, sync_status, labels, cert_details, ttl, …).
type DataPlaneRows func() []map[string]any

// msgNotControlPlane is Kong's answer on a node that has no cluster
// listener.
const msgNotControlPlane = "this endpoint is only available when Kong is configured to run as Control Plane for the cluster"

// ClusteringHandler serves the /clustering/ endpoints of a hybrid control
// plane; mount it at "/clustering/" (Options.Mount) so that it runs behind
// the Admin API's headers and token check:
//
//	GET /clustering/data-planes   Kong's paginated list (size, offset)
//	GET /clustering/status        the deprecated map id -> {config_hash, hostname, ip, last_seen}
//
// rows nil means the control plane runs without a cluster listener; the
// endpoints then answer 400 as Kong does on a node that is not a CP.
func ClusteringHandler(rows DataPlaneRows) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		segs, ok := splitPath(r.URL)
		if !ok || len(segs) != 2 || segs[0] != "clustering" || (segs[1] != "data-planes" && segs[1] != "status") {
			writeJSON(w, http.StatusNotFound, msgNotFound)
			return
		}
		if !allow(w, r, "GET") {
			return
		}
		if rows == nil {
			writeJSON(w, http.StatusBadRequest, message{msgNotControlPlane +
				" (this kongfb control plane runs without a cluster listener: set --cluster-cert and --cluster-cert-key)"})
			return
		}
		if segs[1] == "status" {
			getClusteringStatus(w, rows())
			return
		}
		getDataPlanes(w, r, rows())
	})
}

// getDataPlanes pages through the rows (ordered by id) like any Kong
// collection; the offset is the last id of the previous page.
func getDataPlanes(w http.ResponseWriter, r *http.Request, all []map[string]any) {
	q := r.URL.Query()
	pq, kerr := parsePageQuery(q)
	if kerr != nil {
		writeError(w, kerr)
		return
	}
	if pq.hasTags {
		writeError(w, invalidOptions(map[string]any{"tags": "cannot be used with 'clustering_data_planes'"}))
		return
	}
	sort.SliceStable(all, func(i, j int) bool { return idOf(all[i]) < idOf(all[j]) })
	start := 0
	if pq.Offset != "" {
		after, err := base64.StdEncoding.DecodeString(pq.Offset)
		if err != nil || len(after) == 0 {
			writeError(w, newKongError(codeInvalidOffset, "'"+pq.Offset+"' is not a valid offset: bad base64 encoding", nil))
			return
		}
		start = sort.Search(len(all), func(i int) bool { return idOf(all[i]) > string(after) })
	}
	end := min(start+pq.Size, len(all))
	data := make([]any, 0, end-start)
	for _, row := range all[start:end] {
		data = append(data, row)
	}
	offset := ""
	if end < len(all) {
		offset = base64.StdEncoding.EncodeToString([]byte(idOf(all[end-1])))
	}
	writePage(w, data, strings.TrimSuffix(r.URL.Path, "/"), offset, pq, false)
}

// getClusteringStatus is Kong's deprecated GET /clustering/status.
func getClusteringStatus(w http.ResponseWriter, all []map[string]any) {
	out := make(map[string]any, len(all))
	for _, row := range all {
		out[idOf(row)] = map[string]any{
			"config_hash": row["config_hash"],
			"hostname":    row["hostname"],
			"ip":          row["ip"],
			"last_seen":   row["last_seen"],
		}
	}
	w.Header().Set("Deprecation", "true")
	writeJSON(w, http.StatusOK, out)
}
