package fallback

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

// leaseFormat is the version of the lease object's JSON.
const leaseFormat = 1

// Lease is the election object <version>/election/lease. It is only ever
// written with a conditional put: If-None-Match "*" to create it, If-Match
// <etag> to renew, hand over or take it over. Its times are the writer's wall
// clock and are informational: no node compares them with its own clock (a
// follower measures expiry as "this ETag has not changed for TTL", on its own
// monotonic clock), so clock skew between nodes cannot break the election.
type Lease struct {
	Format int `json:"format"`
	// Holder is the node id of the leader.
	Holder string `json:"holder"`
	// Term increases by one at every change of leader. Every snapshot a
	// leader writes records it (manifest "term"), and a leader checks the
	// lease still carries its term right before each write.
	Term uint64 `json:"term"`
	// TTLMillis is how long, after a follower first sees this version of
	// the lease (this ETag), it must wait before taking the lease over.
	TTLMillis int64 `json:"ttl_ms"`
	// AcquiredAt is when Holder took the lease at Term.
	AcquiredAt time.Time `json:"acquired_at"`
	// RenewedAt is when Holder last renewed it.
	RenewedAt time.Time `json:"renewed_at"`
	// ExpiresAt is RenewedAt + TTL by the holder's clock (for humans).
	ExpiresAt time.Time `json:"expires_at"`
	// Released says the holder stepped down on purpose: a follower may take
	// the lease at Term+1 at once instead of waiting for TTL.
	Released bool `json:"released,omitempty"`
}

// TTL is the lease's time to live.
func (l *Lease) TTL() time.Duration { return time.Duration(l.TTLMillis) * time.Millisecond }

// ParseLease reads a lease object and checks its fields.
func ParseLease(data []byte) (*Lease, error) {
	var l Lease
	if err := json.Unmarshal(data, &l); err != nil {
		return nil, fmt.Errorf("lease is not valid JSON: %w", err)
	}
	switch {
	case l.Format != leaseFormat:
		return nil, fmt.Errorf("lease format %d is not supported (want %d)", l.Format, leaseFormat)
	case l.Term == 0:
		return nil, errors.New("lease has no term")
	case l.TTLMillis <= 0:
		return nil, fmt.Errorf("lease ttl_ms %d is not positive", l.TTLMillis)
	case l.Holder == "":
		return nil, errors.New("lease has no holder")
	}
	return &l, nil
}

func (l *Lease) marshal() ([]byte, error) {
	b, err := json.Marshal(l)
	if err != nil {
		// Only a time outside years 0-9999 (a broken clock) can fail here.
		return nil, fmt.Errorf("encode lease: %w", err)
	}
	return b, nil
}

// LeaseKey is the election lease's key under the store's prefix:
// "<version>/election/lease". It sits in the directory Kong EE uses for its
// election registrations (<prefix>/<version>/election/); Kong's parser skips
// the name with a warning, so the two never mistake each other's objects.
func LeaseKey(version string) string {
	if version == "" {
		version = config.KongVersion
	}
	return snapshot.VersionPrefix("", version) + "election/lease"
}
