package snapshotops

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

// Admin is a client of a control plane's Admin API (kongfb's, or Kong's in
// DB-less mode): GET /config exports the whole configuration, POST /config
// replaces it.
type Admin struct {
	// URL is the Admin API's base, e.g. http://127.0.0.1:8001.
	URL string
	// Token is sent as Kong-Admin-Token when set.
	Token string
	// Client defaults to one with a 60 s timeout.
	Client *http.Client
}

// MaxConfigBytes bounds an Admin API's GET /config answer.
const MaxConfigBytes = 256 << 20

func (a Admin) client() *http.Client {
	if a.Client != nil {
		return a.Client
	}
	return &http.Client{Timeout: 60 * time.Second}
}

func (a Admin) endpoint() string { return strings.TrimRight(a.URL, "/") + "/config" }

func (a Admin) do(ctx context.Context, method string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.endpoint(), bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, a.endpoint(), err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.Token != "" {
		req.Header.Set("Kong-Admin-Token", a.Token)
	}
	resp, err := a.client().Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, a.endpoint(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxConfigBytes+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read answer: %w", method, a.endpoint(), err)
	}
	if len(b) > MaxConfigBytes {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, a.endpoint(), MaxConfigBytes)
	}
	return resp.StatusCode, b, nil
}

// apiMessage is the "message" of a Kong error body, or the body itself.
func apiMessage(b []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return m.Message
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// GetConfig reads the CP's whole configuration (GET /config) and parses it.
func (a Admin) GetConfig(ctx context.Context) (*config.Config, []byte, error) {
	code, b, err := a.do(ctx, http.MethodGet, nil)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case code == http.StatusOK:
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		return nil, nil, fmt.Errorf("GET %s: %d %s: this Admin API cannot export its configuration (kongfb's control plane serves GET /config; Kong serves it only in DB-less mode — export a Kong with a database with `deck gateway dump` and use --from-file)", a.endpoint(), code, apiMessage(b))
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return nil, nil, fmt.Errorf("GET %s: %d %s (set the admin token with --admin-token or KONG_ADMIN_TOKEN)", a.endpoint(), code, apiMessage(b))
	default:
		return nil, nil, fmt.Errorf("GET %s: %d %s", a.endpoint(), code, apiMessage(b))
	}
	cfg, err := config.ParseJSON(b, a.endpoint())
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: the answer is not a valid configuration: %w", a.endpoint(), err)
	}
	return cfg, b, nil
}

// PostConfig replaces the CP's configuration with doc (POST /config).
func (a Admin) PostConfig(ctx context.Context, doc []byte) error {
	code, b, err := a.do(ctx, http.MethodPost, doc)
	if err != nil {
		return err
	}
	switch code {
	case http.StatusCreated, http.StatusOK, http.StatusNoContent, http.StatusNotModified:
		return nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("POST %s: %d %s (set the admin token with --admin-token or KONG_ADMIN_TOKEN)", a.endpoint(), code, apiMessage(b))
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fmt.Errorf("POST %s: %d %s: this Admin API does not load declarative configuration (kongfb's control plane and Kong in DB-less mode do)", a.endpoint(), code, apiMessage(b))
	}
	return fmt.Errorf("POST %s: %d %s", a.endpoint(), code, apiMessage(b))
}
