// Package admin is kongfb's Kong-compatible Admin API: the HTTP surface decK,
// go-kong, Kong's Manager-less tooling and curl users drive. It speaks Kong
// 3.9.1's endpoints, status codes and error bodies (kong/api/endpoints.lua,
// kong/db/errors.lua) over the control plane's store.
//
// Requests flow: authentication (optional admin token) → routing → body
// decoding (JSON, form, multipart; Kong's type inference for forms) →
// foreign-key resolution by name → pkg/config.ValidateEntity (defaults and
// Kong's schema errors) → store write (unique / foreign-key errors mapped to
// Kong's codes) → the stored row, every field present.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/pkg/config"
)

// Options configure a Handler.
type Options struct {
	// Store holds the configuration. Required.
	Store store.Store
	// Logger receives request errors; nil discards.
	Logger *slog.Logger
	// NodeID and Hostname are reported by GET /.
	NodeID   string
	Hostname string
	// Token, when set, is required in the Kong-Admin-Token header of every
	// request (compared in constant time).
	Token string
	// MaxBodyBytes bounds request bodies (413 beyond); 0 = DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Configuration is the node's effective settings in kong.conf form,
	// reported by GET / under "configuration" (secrets are masked there).
	Configuration map[string]any
	// Stats counts connections for GET /status; nil = a private counter.
	Stats *Stats
	// Mount adds handlers for path prefixes the control plane serves beside
	// the entity API (e.g. "/clustering/" for the data-plane registry). The
	// prefix must start and end with "/".
	Mount map[string]http.Handler
	// Parser turns the stored rows into the configuration for GET /config
	// and POST /config?check_hash, reusing the rows unchanged since its
	// last parse. A control plane shares it with its push loop, so each
	// entity is kept once; nil: the handler's own.
	Parser *config.Reparser
}

// Handler serves the Admin API.
type Handler struct {
	store   store.Store
	log     *slog.Logger
	opts    Options
	stats   *Stats
	started time.Time
}

// New returns the Admin API handler.
func New(opts Options) (*Handler, error) {
	if opts.Store == nil {
		return nil, errors.New("admin api: no store")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Parser == nil {
		opts.Parser = &config.Reparser{}
	}
	if opts.Hostname == "" {
		opts.Hostname, _ = os.Hostname()
	}
	for p := range opts.Mount {
		if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
			return nil, fmt.Errorf("admin api: mount prefix %q must start and end with /", p)
		}
	}
	st := opts.Stats
	if st == nil {
		st = &Stats{}
	}
	return &Handler{store: opts.Store, log: opts.Logger, opts: opts, stats: st, started: time.Now()}, nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.serve(w, r, h.route)
}

// StatusHandler serves the status API (GET /status, GET /status/ready) on
// its own listener, with the same authentication-free, read-only contract as
// Kong's status_listen.
func (h *Handler) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.serveHeaders(w, r, func(w http.ResponseWriter, r *http.Request, segs []string) {
			switch {
			case len(segs) == 1 && segs[0] == "status":
				if !allow(w, r, "GET") {
					return
				}
				h.getStatus(w, r)
			case len(segs) == 2 && segs[0] == "status" && segs[1] == "ready":
				if !allow(w, r, "GET") {
					return
				}
				h.getReady(w, r)
			default:
				writeJSON(w, http.StatusNotFound, msgNotFound)
			}
		})
	})
}

type routeFunc func(w http.ResponseWriter, r *http.Request, segs []string)

// serve wraps every Admin API request: Kong's headers, latency, request
// counting, panic recovery and the admin token check.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, route routeFunc) {
	h.serveHeaders(w, r, func(w http.ResponseWriter, r *http.Request, segs []string) {
		// OPTIONS answers only which methods a path allows; browsers send
		// CORS preflights without custom headers, so it needs no token.
		if h.opts.Token != "" && r.Method != http.MethodOptions && !tokenMatches(r.Header.Get(TokenHeader), h.opts.Token) {
			writeJSON(w, http.StatusUnauthorized, msgUnauthorized)
			return
		}
		route(w, r, segs)
	})
}

func (h *Handler) serveHeaders(w http.ResponseWriter, r *http.Request, route routeFunc) {
	done := h.stats.track()
	defer done()
	lw := &latencyWriter{ResponseWriter: w, start: time.Now()}
	hdr := lw.Header()
	hdr.Set("Server", serverHeader)
	hdr.Set("Access-Control-Allow-Origin", "*")
	hdr.Set("X-Kong-Admin-Request-ID", requestID())
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.log.Error("admin api: panic while serving request", "method", r.Method, "path", r.URL.Path,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !lw.wroteHeader {
				writeJSON(lw, http.StatusInternalServerError, msgUnexpected)
			}
		}
	}()
	segs, ok := splitPath(r.URL)
	if !ok {
		writeJSON(lw, http.StatusNotFound, msgNotFound)
		return
	}
	route(lw, r, segs)
}

// splitPath splits the request path into unescaped segments. A trailing "/"
// is tolerated, as in Kong; empty segments elsewhere match nothing.
func splitPath(u *url.URL) ([]string, bool) {
	p := u.EscapedPath()
	p = strings.TrimPrefix(p, "/")
	p = strings.TrimSuffix(p, "/")
	if p == "" {
		return nil, true
	}
	raw := strings.Split(p, "/")
	segs := make([]string, len(raw))
	for i, s := range raw {
		if s == "" {
			return nil, false
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		segs[i] = d
	}
	return segs, true
}

// allow answers OPTIONS (204 with Allow) and unsupported methods (405) and
// reports whether the handler should go on. HEAD is served as GET (net/http
// drops the body).
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	m := r.Method
	if m == http.MethodHead {
		m = http.MethodGet
	}
	if m == http.MethodOptions {
		set := map[string]bool{"OPTIONS": true}
		for _, x := range methods {
			set[x] = true
			if x == "GET" {
				set["HEAD"] = true
			}
		}
		list := make([]string, 0, len(set))
		for x := range set {
			list = append(list, x)
		}
		sort.Strings(list)
		v := strings.Join(list, ", ")
		w.Header().Set("Allow", v)
		w.Header().Set("Access-Control-Allow-Methods", v)
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		writeEmpty(w, http.StatusNoContent)
		return false
	}
	for _, x := range methods {
		if x == m {
			return true
		}
	}
	writeJSON(w, http.StatusMethodNotAllowed, msgMethodNotAllowed)
	return false
}

func (h *Handler) route(w http.ResponseWriter, r *http.Request, segs []string) {
	if len(segs) == 0 {
		if allow(w, r, "GET") {
			h.getRoot(w, r)
		}
		return
	}
	for prefix, mh := range h.opts.Mount {
		p := "/" + strings.Join(segs, "/") + "/"
		if strings.HasPrefix(p, prefix) {
			mh.ServeHTTP(w, r)
			return
		}
	}
	switch segs[0] {
	case "status":
		if len(segs) == 1 {
			if allow(w, r, "GET") {
				h.getStatus(w, r)
			}
			return
		}
	case "schemas":
		h.routeSchemas(w, r, segs[1:])
		return
	case "config":
		if len(segs) == 1 {
			if allow(w, r, "GET", "POST") {
				if r.Method == http.MethodPost {
					h.postConfig(w, r)
				} else {
					h.getConfig(w, r)
				}
			}
			return
		}
	case "tags":
		if len(segs) <= 2 {
			if allow(w, r, "GET") {
				tag := ""
				if len(segs) == 2 {
					tag = segs[1]
				}
				h.getTags(w, r, tag, len(segs) == 2)
			}
			return
		}
	case "endpoints":
		if len(segs) == 1 {
			if allow(w, r, "GET") {
				h.getEndpoints(w, r)
			}
			return
		}
	case "plugins":
		if len(segs) == 2 && segs[1] == "enabled" {
			if allow(w, r, "GET") {
				h.getEnabledPlugins(w, r)
			}
			return
		}
	}
	if isAdminCollection(segs[0]) {
		h.routeEntities(w, r, segs)
		return
	}
	writeJSON(w, http.StatusNotFound, msgNotFound)
}

// fail answers an error from the store or elsewhere: Kong's error for the
// ones it defines, 500 (logged) otherwise.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	if ke, sm := storeError(err); ke != nil {
		writeError(w, ke)
		return
	} else if sm != nil {
		if sm.status >= 500 {
			h.log.Warn("admin api: database unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeJSON(w, sm.status, sm.body)
		return
	}
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away; nobody reads the answer.
		return
	}
	h.log.Error("admin api: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeJSON(w, http.StatusInternalServerError, msgUnexpected)
}

// readEntityBody decodes a write body; it answers the request itself on
// error and returns nil then.
func (h *Handler) readEntityBody(w http.ResponseWriter, r *http.Request) *requestBody {
	b, err := readBody(r, h.opts.MaxBodyBytes, false)
	if err != nil {
		h.bodyError(w, err)
		return nil
	}
	if b.args == nil {
		b.args = map[string]any{}
	}
	return b
}

func (h *Handler) bodyError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errBodyTooLarge):
		writeJSON(w, http.StatusRequestEntityTooLarge,
			message{fmt.Sprintf("request body too large (limit %d bytes)", h.opts.MaxBodyBytes)})
	case errors.Is(err, errUnsupportedMedia):
		writeEmpty(w, http.StatusUnsupportedMediaType)
	case errors.Is(err, errBadJSON):
		writeJSON(w, http.StatusBadRequest, msgBadJSON)
	default:
		writeJSON(w, http.StatusBadRequest, message{err.Error()})
	}
}
