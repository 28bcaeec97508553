package admin

import (
	"context"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/pkg/config"
)

// getRoot serves GET /: Kong's node information. decK requires `version`
// (a string) and, if present, `configuration.database` as a string.
func (h *Handler) getRoot(w http.ResponseWriter, r *http.Request) {
	available := map[string]any{}
	for _, p := range config.BundledPlugins() {
		available[p] = map[string]any{"version": config.KongVersion}
	}
	enabled, err := h.pluginsInUse(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	pid := os.Getpid()
	writeJSON(w, http.StatusOK, map[string]any{
		"tagline":     "Welcome to kong",
		"version":     config.KongVersion,
		"edition":     "community",
		"hostname":    h.opts.Hostname,
		"node_id":     h.opts.NodeID,
		"lua_version": runtime.Version(),
		"timers":      map[string]any{"running": 0, "pending": 0},
		"plugins": map[string]any{
			"available_on_server": available,
			"enabled_in_cluster":  enabled,
		},
		"configuration": h.configuration(),
		"pids":          map[string]any{"master": pid, "workers": []any{pid}},
	})
}

// pluginsInUse lists the distinct plugin names configured (Kong's
// enabled_in_cluster), always as a JSON array.
func (h *Handler) pluginsInUse(ctx context.Context) ([]any, error) {
	seen := map[string]bool{}
	err := h.eachRow(ctx, "plugins", nil, func(row store.Row) {
		if n, ok := row["name"].(string); ok {
			seen[n] = true
		}
	})
	if err != nil {
		return nil, err
	}
	return anySlice(sortedKeys(seen)), nil
}

// secretHints mark configuration keys whose values GET / must not reveal;
// Kong prints "******" for them (pg_password and friends).
var secretHints = []string{"password", "token", "secret", "dsn", "_key_passphrase"}

func isSecretKey(k string) bool {
	k = strings.ToLower(k)
	for _, h := range secretHints {
		if strings.Contains(k, h) {
			return true
		}
	}
	return false
}

func (h *Handler) configuration() map[string]any {
	out := map[string]any{}
	for k, v := range h.opts.Configuration {
		if isSecretKey(k) && v != nil && v != "" {
			out[k] = "******"
			continue
		}
		out[k] = v
	}
	if _, ok := out["database"]; !ok {
		out["database"] = h.store.Backend()
	}
	if _, ok := out["role"]; !ok {
		out["role"] = "control_plane"
	}
	return out
}

// getStatus serves GET /status with Kong's shape: memory, server counters,
// and database.reachable (a control plane has a database).
func (h *Handler) getStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	unit, scale, err := parseUnitScale(q.Get("unit"), q.Get("scale"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, message{err.Error()})
		return
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	reachable := h.store.Ping(ctx) == nil
	writeJSON(w, http.StatusOK, map[string]any{
		"memory": map[string]any{
			"lua_shared_dicts": map[string]any{},
			"workers_lua_vms": []any{map[string]any{
				"http_allocated_gc": formatMemory(ms.HeapAlloc, unit, scale),
				"pid":               os.Getpid(),
			}},
		},
		"server":   h.stats.server(),
		"database": map[string]any{"reachable": reachable},
	})
}

// getReady serves GET /status/ready: a control plane is ready when its
// database answers.
func (h *Handler) getReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := h.store.Ping(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, message{"failed to connect to database: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, message{"ready"})
}

func (h *Handler) getEnabledPlugins(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"enabled_plugins": anySlice(config.BundledPlugins())})
}

// getEndpoints serves GET /endpoints: every path template served.
func (h *Handler) getEndpoints(w http.ResponseWriter, _ *http.Request) {
	set := map[string]bool{
		"/": true, "/status": true, "/config": true, "/endpoints": true, "/plugins/enabled": true,
		"/tags": true, "/tags/{tags}": true, "/schemas/{name}": true, "/schemas/{name}/validate": true,
		"/schemas/plugins/{name}": true, "/schemas/plugins/validate": true,
	}
	for _, c := range adminCollections {
		if c == "targets" {
			continue
		}
		set["/"+c] = true
		set["/"+c+"/{"+c+"}"] = true
		m, _ := store.Meta(c)
		for _, fk := range m.ForeignKeys {
			set["/"+c+"/{"+c+"}/"+fk.Field] = true
		}
		for child := range children(c) {
			if child == "targets" {
				continue
			}
			set["/"+c+"/{"+c+"}/"+child] = true
			set["/"+c+"/{"+c+"}/"+child+"/{"+child+"}"] = true
		}
	}
	set["/upstreams/{upstreams}/targets"] = true
	set["/upstreams/{upstreams}/targets/all"] = true
	set["/upstreams/{upstreams}/targets/{targets}"] = true
	writeJSON(w, http.StatusOK, map[string]any{"data": anySlice(sortedKeys(set))})
}

// getTags serves GET /tags and GET /tags/{tag}.
func (h *Handler) getTags(w http.ResponseWriter, r *http.Request, tag string, byTag bool) {
	q := r.URL.Query()
	pq, kerr := parsePageQuery(q)
	if kerr != nil {
		writeError(w, kerr)
		return
	}
	if byTag && (tag == "" || !tagsAndRe.MatchString(tag) || strings.Contains(tag, ",")) {
		writeError(w, invalidOptions(map[string]any{"tags": "must only contain printable ascii (except `,` and `/`) or valid utf-8"}))
		return
	}
	page, err := h.store.ListTags(r.Context(), store.TagListOptions{Tag: tag, Size: pq.Size, Offset: pq.Offset})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	data := make([]any, 0, len(page.Rows))
	for _, t := range page.Rows {
		data = append(data, map[string]any{"entity_name": t.EntityName, "entity_id": t.EntityID, "tag": t.Tag})
	}
	path := "/tags"
	if byTag {
		path += "/" + escapeURI(tag)
	}
	pq.hasTags = false
	writePage(w, data, path, page.NextOffset, pq, false)
}
