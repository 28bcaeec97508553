package dp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

// Kong's readiness messages (kong/status/ready.lua), kept verbatim because
// probes and runbooks match on them.
const (
	MsgReady          = "ready"
	MsgNoConfig       = "no configuration available (configuration hash is not initialized)"
	MsgEmptyConfig    = "no configuration available (empty configuration present)"
	MsgDraining       = "draining"
	msgNotFound       = "Not found"
	msgMethodNotAllow = "Method not allowed"
)

// Ready reports whether the node should receive traffic and, if not, Kong's
// reason: no configuration yet, an empty configuration, or draining.
func (n *Node) Ready() (bool, string) {
	if n.Draining() {
		return false, MsgDraining
	}
	st := n.State()
	switch st.Hash {
	case "":
		return false, MsgNoConfig
	case config.EmptyHash:
		return false, MsgEmptyConfig
	}
	return true, MsgReady
}

// StatusHandler serves Kong's status API: GET /status, GET /status/ready and
// POST /status/ready (status=draining).
func (n *Node) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Kong's Lapis routes tolerate a trailing slash.
		path := r.URL.Path
		if len(path) > 1 {
			path = strings.TrimSuffix(path, "/")
		}
		switch path {
		case "/status":
			switch r.Method {
			case http.MethodGet, http.MethodHead:
				n.serveStatus(w, r)
			default:
				methodNotAllowed(w, "GET, HEAD, OPTIONS")
			}
		case "/status/ready":
			switch r.Method {
			case http.MethodGet, http.MethodHead:
				if ok, msg := n.Ready(); ok {
					writeJSON(w, http.StatusOK, map[string]string{"message": msg})
				} else {
					writeJSON(w, http.StatusServiceUnavailable, map[string]string{"message": msg})
				}
			case http.MethodPost:
				n.serveReadyPost(w, r)
			default:
				methodNotAllowed(w, "GET, HEAD, OPTIONS, POST")
			}
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"message": msgNotFound})
		}
	})
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"message": msgMethodNotAllow})
}

// serveReadyPost implements POST /status/ready status=draining: later GETs
// answer 503 {"message":"draining"} while traffic keeps flowing, so a load
// balancer can take the node out before it is stopped.
func (n *Node) serveReadyPost(w http.ResponseWriter, r *http.Request) {
	status, err := readStatusParam(r)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}
	if status != "draining" {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"message": fmt.Sprintf("invalid status %q: only \"draining\" is accepted", status)})
		return
	}
	n.SetDraining(true)
	w.WriteHeader(http.StatusNoContent)
}

// readStatusParam takes `status` from a form or JSON body, or the query.
func readStatusParam(r *http.Request) (string, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if ct == "application/json" && len(strings.TrimSpace(string(body))) > 0 {
		var in map[string]any
		if err := json.Unmarshal(body, &in); err != nil {
			return "", errors.New("Cannot parse JSON body")
		}
		if s, ok := in["status"].(string); ok {
			return s, nil
		}
		return "", errors.New("status is required (status=draining)")
	}
	if ct == "" || ct == "application/x-www-form-urlencoded" {
		if form, err := url.ParseQuery(string(body)); err == nil && form.Has("status") {
			return form.Get("status"), nil
		}
	}
	if q := r.URL.Query(); q.Has("status") {
		return q.Get("status"), nil
	}
	return "", errors.New("status is required (status=draining)")
}

// statusDoc is Kong's /status response on a DB-less node or DP, plus a
// kongfb block telling where the configuration came from.
type statusDoc struct {
	Memory            memoryDoc   `json:"memory"`
	Server            serverDoc   `json:"server"`
	ConfigurationHash string      `json:"configuration_hash"`
	Kongfb            kongfbBlock `json:"kongfb"`
}

type memoryDoc struct {
	LuaSharedDicts map[string]sharedDictDoc `json:"lua_shared_dicts"`
	WorkersLuaVMs  []workerVMDoc            `json:"workers_lua_vms"`
}

type sharedDictDoc struct {
	AllocatedSlabs string `json:"allocated_slabs"`
	Capacity       string `json:"capacity"`
}

type workerVMDoc struct {
	HTTPAllocatedGC string `json:"http_allocated_gc"`
	PID             int    `json:"pid"`
}

type serverDoc struct {
	ConnectionsActive   int64 `json:"connections_active"`
	ConnectionsReading  int64 `json:"connections_reading"`
	ConnectionsWriting  int64 `json:"connections_writing"`
	ConnectionsWaiting  int64 `json:"connections_waiting"`
	ConnectionsAccepted int64 `json:"connections_accepted"`
	ConnectionsHandled  int64 `json:"connections_handled"`
	TotalRequests       int64 `json:"total_requests"`
}

// kongfbBlock is kongfb's addition to /status. config_source is one of
// cp, cache, declarative, fallback (config_origin then names the storage and
// the snapshot). In hybrid mode control_plane names the CP,
// cp_connected says whether the sync link is up, cp_error why it is down, and
// last_sync_at when the CP last delivered the configuration being served; in
// DB-less mode these are null. last_error is the most recent rejected
// configuration, unusable cache or failed cache write (null if none since
// start), with last_error_at.
type kongfbBlock struct {
	ConfigSource *string    `json:"config_source"`
	ConfigOrigin *string    `json:"config_origin"`
	LoadedAt     *time.Time `json:"loaded_at"`
	Draining     bool       `json:"draining"`
	ControlPlane *string    `json:"control_plane"`
	CPConnected  *bool      `json:"cp_connected"`
	CPError      *string    `json:"cp_error"`
	LastSyncAt   *time.Time `json:"last_sync_at"`
	LastError    *string    `json:"last_error"`
	LastErrorAt  *time.Time `json:"last_error_at"`
	// Fallback is the fallback importer (--import), Exporter the fallback
	// exporter (--export); null when not enabled.
	Fallback *fallbackDoc `json:"fallback"`
	Exporter *exporterDoc `json:"exporter"`
}

// fallbackDoc is kongfb.fallback: state is one of the Fallback* constants;
// snapshot (the object key under the storage prefix), config_hash and
// imported_at are null until a snapshot is served; attempts counts the
// importer's attempts and last_error is the last one's failure (naming each
// refused object and why), null once an attempt succeeded.
type fallbackDoc struct {
	State      string     `json:"state"`
	Storage    string     `json:"storage"`
	Snapshot   *string    `json:"snapshot"`
	ConfigHash *string    `json:"config_hash"`
	ImportedAt *time.Time `json:"imported_at"`
	Attempts   int        `json:"attempts"`
	LastError  *string    `json:"last_error"`
}

// exporterDoc is kongfb.exporter: the election role (leader, lapsed or
// follower) and term, and the last export attempt.
type exporterDoc struct {
	Storage      string     `json:"storage"`
	Role         string     `json:"role"`
	Term         uint64     `json:"term"`
	Holder       *string    `json:"holder"`
	LastExportAt *time.Time `json:"last_export_at"`
	LastResult   *string    `json:"last_result"`
	LastSnapshot *string    `json:"last_snapshot"`
	LastHash     *string    `json:"last_hash"`
	LastError    *string    `json:"last_error"`
	PendingHash  *string    `json:"pending_hash"`
	Exports      uint64     `json:"exports"`
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

func (n *Node) serveStatus(w http.ResponseWriter, r *http.Request) {
	// Like Kong, ?unit= (b, k, m, g; default m) and ?scale= (decimals,
	// default 2) shape the memory figures, and bad values are a 400.
	q := r.URL.Query()
	unit := "m"
	if q.Has("unit") {
		unit = q.Get("unit")
	}
	scale := 2
	if q.Has("scale") {
		// Kong uses tonumber(): a non-number falls back to the default.
		if s, err := strconv.Atoi(q.Get("scale")); err == nil {
			scale = s
		}
	}
	if _, err := FormatBytes(0, unit, scale); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": err.Error()})
		return
	}

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fb := func(v uint64) string { s, _ := FormatBytes(v, unit, scale); return s }
	st := n.State()
	ss := n.stats()
	doc := statusDoc{
		Memory: memoryDoc{
			// kongfb has no nginx shared dicts. The Go heap stands in for
			// Kong's "kong" dict (in use vs reserved) so dashboards that read
			// these keys show the process's real memory, not zeros.
			LuaSharedDicts: map[string]sharedDictDoc{
				"kong": {AllocatedSlabs: fb(ms.HeapInuse), Capacity: fb(ms.HeapSys)},
			},
			// One Go process plays all of Kong's workers: report it as one.
			WorkersLuaVMs: []workerVMDoc{{HTTPAllocatedGC: fb(ms.HeapAlloc), PID: os.Getpid()}},
		},
		Server: serverDoc{
			ConnectionsActive:   ss.ConnectionsActive,
			ConnectionsReading:  ss.ConnectionsReading,
			ConnectionsWriting:  ss.ConnectionsWriting,
			ConnectionsWaiting:  ss.ConnectionsWaiting,
			ConnectionsAccepted: ss.ConnectionsAccepted,
			ConnectionsHandled:  ss.ConnectionsHandled,
			TotalRequests:       ss.TotalRequests,
		},
		ConfigurationHash: orEmpty(st.Hash),
		Kongfb:            kongfbBlock{Draining: n.Draining()},
	}
	if st.Hash != "" {
		src, origin, at := st.Source, st.Origin, st.LoadedAt.UTC()
		doc.Kongfb.ConfigSource, doc.Kongfb.ConfigOrigin, doc.Kongfb.LoadedAt = &src, &origin, &at
	}
	if n.controlPlane != "" {
		si := n.Sync()
		cp, connected := n.controlPlane, si.Connected
		doc.Kongfb.ControlPlane, doc.Kongfb.CPConnected = &cp, &connected
		if si.LinkError != "" {
			le := si.LinkError
			doc.Kongfb.CPError = &le
		}
		if !si.LastSyncAt.IsZero() {
			at := si.LastSyncAt.UTC()
			doc.Kongfb.LastSyncAt = &at
		}
	}
	if msg, at := n.LastError(); msg != "" {
		at = at.UTC()
		doc.Kongfb.LastError, doc.Kongfb.LastErrorAt = &msg, &at
	}
	n.mu.RLock()
	fbSt, exSt := n.fallbackSt, n.exporterSt
	n.mu.RUnlock()
	if fbSt != nil {
		f := fbSt()
		doc.Kongfb.Fallback = &fallbackDoc{
			State: f.State, Storage: f.Storage, Snapshot: strOrNil(f.Snapshot), ConfigHash: strOrNil(f.ConfigHash),
			ImportedAt: timeOrNil(f.ImportedAt), Attempts: f.Attempts, LastError: strOrNil(f.LastError),
		}
	}
	if exSt != nil {
		e := exSt()
		doc.Kongfb.Exporter = &exporterDoc{
			Storage: e.Storage, Role: e.Role, Term: e.Term, Holder: strOrNil(e.Holder),
			LastExportAt: timeOrNil(e.LastExportAt), LastResult: strOrNil(e.LastResult),
			LastSnapshot: strOrNil(e.LastSnapshot), LastHash: strOrNil(e.LastHash),
			LastError: strOrNil(e.LastError), PendingHash: strOrNil(e.PendingHash), Exports: e.Exports,
		}
	}
	writeJSON(w, http.StatusOK, doc)
}

// FormatBytes renders a byte count like Kong's bytes_to_str: unit "b" gives
// the plain integer, "k"/"m"/"g" (either case) give "%.<scale>f KiB|MiB|GiB".
func FormatBytes(v uint64, unit string, scale int) (string, error) {
	if unit == "" || strings.EqualFold(unit, "b") {
		return strconv.FormatUint(v, 10), nil
	}
	if scale < 0 {
		return "", errors.New("scale must be equal or greater than 0")
	}
	var div float64
	var label string
	switch strings.ToLower(unit) {
	case "k":
		div, label = 1<<10, "KiB"
	case "m":
		div, label = 1<<20, "MiB"
	case "g":
		div, label = 1<<30, "GiB"
	default:
		return "", fmt.Errorf("invalid unit '%s' (expected 'k/K', 'm/M', or 'g/G')", unit)
	}
	return strconv.FormatFloat(float64(v)/div, 'f', scale, 64) + " " + label, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Every value written here is a plain struct or map of strings.
		http.Error(w, `{"message":"An unexpected error occurred"}`, http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Server", "kong/"+config.KongVersion)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
