package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kongfb/kongfb/internal/fallback"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/storage"
)

// httpClient is the drill's client for the Admin and status APIs (the
// prober has its own).
var httpClient = &http.Client{Timeout: 5 * time.Second}

// adminPost sends a JSON body to the CP's Admin API and wants 201.
func adminPost(ctx context.Context, admin, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+admin+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("Admin API POST %s: %w", path, err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if res.StatusCode != http.StatusCreated {
		return fmt.Errorf("Admin API POST %s: %d %s", path, res.StatusCode, bytes.TrimSpace(out))
	}
	return nil
}

// cpConfigHash is the hash of the configuration the CP pushes: GET /config,
// without the disabled entities, hashed as the DPs report it.
func cpConfigHash(ctx context.Context, admin string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/config", nil)
	if err != nil {
		return "", err
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("Admin API GET /config: %w", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return "", fmt.Errorf("Admin API GET /config: %w", err)
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("Admin API GET /config: %d %s", res.StatusCode, bytes.TrimSpace(body))
	}
	cfg, err := config.Parse(body, "config.json")
	if err != nil {
		return "", fmt.Errorf("Admin API GET /config: %w", err)
	}
	h, _ := config.Hash(cfg.WithoutDisabled())
	return h, nil
}

// dpStatus is the part of a DP's GET /status the drill reads.
type dpStatus struct {
	ConfigurationHash string `json:"configuration_hash"`
	Kongfb            struct {
		ConfigSource *string `json:"config_source"`
		ConfigOrigin *string `json:"config_origin"`
		CPConnected  *bool   `json:"cp_connected"`
		CPError      *string `json:"cp_error"`
		Fallback     *struct {
			State      string  `json:"state"`
			Snapshot   *string `json:"snapshot"`
			ConfigHash *string `json:"config_hash"`
			Attempts   int     `json:"attempts"`
			LastError  *string `json:"last_error"`
		} `json:"fallback"`
	} `json:"kongfb"`
}

func (s dpStatus) source() string {
	if s.Kongfb.ConfigSource == nil {
		return ""
	}
	return *s.Kongfb.ConfigSource
}

func (s dpStatus) connected() bool { return s.Kongfb.CPConnected != nil && *s.Kongfb.CPConnected }

func getStatus(ctx context.Context, addr string) (dpStatus, error) {
	var st dpStatus
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return st, err
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("GET /status: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /status: %d", res.StatusCode)
	}
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("GET /status: %w", err)
	}
	return st, nil
}

// getCode is the status of GET path through a DP's proxy (0 and the error
// if it did not answer).
func getCode(ctx context.Context, addr, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, err
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, nil
}

// newestSnapshot imports (fully verifies) the newest fallback config from
// st, as a fresh DP would, and describes it.
func newestSnapshot(ctx context.Context, st storage.Store) (*SnapshotInfo, error) {
	im, err := fallback.NewImporter(fallback.ImporterOptions{Store: st})
	if err != nil {
		return nil, err
	}
	r, err := im.Import(ctx)
	if err != nil {
		return nil, err
	}
	si := &SnapshotInfo{Key: r.Key, Hash: r.Hash, Kind: r.Kind.String(), Signed: r.Signed}
	if m := r.Manifest; m != nil {
		si.CreatedAt, si.NodeID, si.Term, si.Entities = m.CreatedAt.UTC(), m.NodeID, m.Term, m.Entities
	}
	if si.CreatedAt.IsZero() && !r.LastModified.IsZero() {
		si.CreatedAt = r.LastModified.UTC()
	}
	return si, nil
}

// poll calls f every interval until it reports done, ctx ends, or limit
// passes; it returns whether f reported done, and f's last error.
func poll(ctx context.Context, interval, limit time.Duration, f func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(limit)
	var last error
	for {
		ok, err := f()
		if ok {
			return true, nil
		}
		if err != nil {
			last = err
		}
		if ctx.Err() != nil || !time.Now().Before(deadline) {
			return false, last
		}
		select {
		case <-ctx.Done():
			return false, last
		case <-time.After(interval):
		}
	}
}
