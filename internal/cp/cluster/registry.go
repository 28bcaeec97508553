package cluster

import (
	"maps"
	"sort"
	"sync"
	"time"

	wire "github.com/kongfb/kongfb/pkg/cluster"
)

// DefaultPurgeDelay is cluster_data_plane_purge_delay's default (14 days):
// how long a data plane stays listed after it was last heard from.
const DefaultPurgeDelay = 1209600 * time.Second

// MinPurgeDelay is the smallest cluster_data_plane_purge_delay Kong accepts.
const MinPurgeDelay = 60 * time.Second

// DataPlane is one entry of the registry: what Kong keeps in its
// clustering_data_planes table.
type DataPlane struct {
	ID         string
	Hostname   string
	IP         string
	Version    string
	ConfigHash string
	// LastSeen is when the DP last pinged (or connected).
	LastSeen time.Time
	// UpdatedAt is when the entry was last written; the TTL counts from it,
	// as Kong re-sets the row's TTL on every upsert.
	UpdatedAt  time.Time
	SyncStatus wire.SyncStatus
	Labels     map[string]string
	// CertExpiry is the DP certificate's notAfter; zero when it sent none.
	CertExpiry time.Time
	// Connected reports a live connection to this CP process (not part of
	// Kong's row; used by logs and tests).
	Connected bool
}

// Registry is the control plane's list of data planes, in memory per CP
// process. Kong persists these rows in its database with a TTL, so every CP
// node lists every DP; in kongfb each CP lists the DPs connected to it (see
// docs/HYBRID.md). Entries expire PurgeDelay after their last update.
type Registry struct {
	mu         sync.Mutex
	dps        map[string]*DataPlane
	purgeDelay time.Duration
	now        func() time.Time
}

// NewRegistry returns an empty registry; purgeDelay <= 0 selects
// DefaultPurgeDelay.
func NewRegistry(purgeDelay time.Duration) *Registry {
	if purgeDelay <= 0 {
		purgeDelay = DefaultPurgeDelay
	}
	return &Registry{dps: map[string]*DataPlane{}, purgeDelay: purgeDelay, now: time.Now}
}

// PurgeDelay is the TTL of an entry.
func (r *Registry) PurgeDelay() time.Duration { return r.purgeDelay }

// connected records a DP that completed the handshake (or was refused for
// its version, with that status). A reconnecting DP keeps the hash it last
// reported until its first ping says otherwise.
func (r *Registry) connected(n wire.NodeInfo, status wire.SyncStatus, live bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	dp := r.dps[n.ID]
	if dp == nil {
		dp = &DataPlane{ID: n.ID, ConfigHash: wire.EmptyHash}
		r.dps[n.ID] = dp
	}
	dp.Hostname = n.Hostname
	dp.IP = n.IP
	dp.Version = n.Version
	dp.LastSeen = now
	dp.UpdatedAt = now
	dp.SyncStatus = status
	dp.Labels = maps.Clone(n.BasicInfo.Labels)
	dp.CertExpiry = time.Time{}
	if n.HasCert {
		dp.CertExpiry = time.Unix(n.CertDetails.ExpiryTimestamp, 0)
	}
	dp.Connected = live
}

// pinged records a ping carrying the DP's config hash.
func (r *Registry) pinged(id, hash string) {
	if hash == "" {
		// Kong/kong#11917: an empty hash is stored as the empty config's.
		hash = wire.EmptyHash
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if dp := r.dps[id]; dp != nil {
		now := r.now()
		dp.ConfigHash = hash
		dp.LastSeen = now
		dp.UpdatedAt = now
	}
}

// setStatus records the outcome of a push to the DP.
func (r *Registry) setStatus(id string, s wire.SyncStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if dp := r.dps[id]; dp != nil && dp.SyncStatus != s {
		dp.SyncStatus = s
		dp.UpdatedAt = r.now()
	}
}

// disconnected marks the DP's connection closed; the entry stays until it
// expires, as in Kong.
func (r *Registry) disconnected(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if dp := r.dps[id]; dp != nil {
		dp.Connected = false
	}
}

// List returns copies of the live entries ordered by id, dropping the
// expired ones.
func (r *Registry) List() []DataPlane {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	out := make([]DataPlane, 0, len(r.dps))
	for id, dp := range r.dps {
		if !dp.Connected && now.Sub(dp.UpdatedAt) >= r.purgeDelay {
			delete(r.dps, id)
			continue
		}
		c := *dp
		c.Labels = maps.Clone(dp.Labels)
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Get returns one entry.
func (r *Registry) Get(id string) (DataPlane, bool) {
	for _, dp := range r.List() {
		if dp.ID == id {
			return dp, true
		}
	}
	return DataPlane{}, false
}

// Rows returns the entries in the JSON shape of Kong's
// GET /clustering/data-planes items, ordered by id.
func (r *Registry) Rows() []map[string]any {
	list := r.List()
	now := r.now()
	out := make([]map[string]any, len(list))
	for i, dp := range list {
		out[i] = dp.row(now, r.purgeDelay)
	}
	return out
}

func (dp *DataPlane) row(now time.Time, purgeDelay time.Duration) map[string]any {
	var labels any
	if len(dp.Labels) > 0 {
		m := make(map[string]any, len(dp.Labels))
		for k, v := range dp.Labels {
			m[k] = v
		}
		labels = m
	}
	var cert any
	if !dp.CertExpiry.IsZero() {
		cert = map[string]any{"expiry_timestamp": dp.CertExpiry.Unix()}
	}
	// As in Kong, the TTL restarts with every write (each ping); a connected
	// DP is never dropped, even if it has not pinged for a while.
	ttl := purgeDelay - now.Sub(dp.UpdatedAt)
	if ttl < 0 {
		ttl = 0
	}
	return map[string]any{
		"id":               dp.ID,
		"hostname":         dp.Hostname,
		"ip":               dp.IP,
		"version":          dp.Version,
		"config_hash":      dp.ConfigHash,
		"last_seen":        dp.LastSeen.Unix(),
		"updated_at":       dp.UpdatedAt.Unix(),
		"sync_status":      string(dp.SyncStatus),
		"labels":           labels,
		"cert_details":     cert,
		"rpc_capabilities": []any{},
		"ttl":              int64(ttl / time.Second),
	}
}
