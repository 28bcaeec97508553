package admin

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

// serverHeader is what Kong 3.9.1 sends; go-kong's Server() check and humans
// reading `curl -i` both look at it.
const serverHeader = "kong/" + config.KongVersion

// TokenHeader is the header Kong Enterprise's RBAC reads the admin token from
// (rbac_auth_header default). go-kong/decK send it with --headers or
// KONG_ADMIN_TOKEN.
const TokenHeader = "Kong-Admin-Token"

// writeJSON writes v with Kong's admin headers. Encoding errors are impossible
// for the values built here (maps of JSON-decoded or schema-built values);
// if one happens the client gets a 500 instead of half a body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"message":"An unexpected error occurred"}` + "\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func writeError(w http.ResponseWriter, e *kongError) {
	writeJSON(w, e.status(), e)
}

func writeEmpty(w http.ResponseWriter, status int) {
	w.Header().Del("Content-Type")
	w.WriteHeader(status)
}

// latencyWriter stamps X-Kong-Admin-Latency (milliseconds, like Kong) when
// the handler writes its header.
type latencyWriter struct {
	http.ResponseWriter
	start       time.Time
	wroteHeader bool
	status      int
}

func (lw *latencyWriter) WriteHeader(code int) {
	if !lw.wroteHeader {
		lw.wroteHeader = true
		lw.status = code
		lw.Header().Set("X-Kong-Admin-Latency", strconv.FormatInt(time.Since(lw.start).Milliseconds(), 10))
	}
	lw.ResponseWriter.WriteHeader(code)
}

func (lw *latencyWriter) Write(p []byte) (int, error) {
	if !lw.wroteHeader {
		lw.WriteHeader(http.StatusOK)
	}
	return lw.ResponseWriter.Write(p)
}

func requestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// tokenMatches compares in constant time so the token cannot be guessed byte
// by byte from response timings; comparing digests also hides its length.
func tokenMatches(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
