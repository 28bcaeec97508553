package dp

import (
	"path/filepath"
	"time"

	"github.com/kongfb/kongfb/pkg/cluster"
)

// SyncInfo is the hybrid-mode part of /status: how the node's link to its
// control plane stands. It is only reported when the node has a control plane
// (Options.ControlPlane).
type SyncInfo struct {
	// Connected is true while a sync connection to the CP is open.
	Connected bool
	// LastSyncAt is when the CP last delivered a configuration that the node
	// now serves (applied, or identical to the running one); zero if never.
	LastSyncAt time.Time
	// LinkError says why the link is down ("" while connected or before
	// the first attempt).
	LinkError string
}

// errorInfo is the node's most recent configuration or sync error.
type errorInfo struct {
	msg string
	at  time.Time
}

// SetCPConnected records whether the sync connection to the CP is open. A
// new connection clears the link error.
func (n *Node) SetCPConnected(v bool) {
	n.mu.Lock()
	n.sync.Connected = v
	if v {
		n.sync.LinkError = ""
	}
	n.mu.Unlock()
}

// SetLinkError records why the link to the CP is down (/status
// kongfb.cp_error). It is kept apart from ReportError so that a CP outage,
// reported on every reconnection attempt, does not hide a rejected
// configuration or an unusable cache.
func (n *Node) SetLinkError(err error) {
	if err == nil {
		return
	}
	n.mu.Lock()
	n.sync.LinkError = err.Error()
	n.mu.Unlock()
}

// MarkSynced records that the CP delivered a configuration the node serves.
func (n *Node) MarkSynced(at time.Time) {
	n.mu.Lock()
	n.sync.LastSyncAt = at
	n.mu.Unlock()
}

// Sync returns the hybrid-mode link state.
func (n *Node) Sync() SyncInfo {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.sync
}

// ReportError records err as the node's last configuration error, shown in
// /status (kongfb.last_error) so that a rejected configuration, an unusable
// cache or a failed cache write is visible without reading logs. It stays until a newer error replaces it:
// last_error_at tells whether it is still relevant.
func (n *Node) ReportError(err error) {
	if err == nil {
		return
	}
	n.mu.Lock()
	n.lastErr = errorInfo{msg: err.Error(), at: n.now()}
	n.mu.Unlock()
}

// LastError returns the last reported error and when it happened ("" and a
// zero time if none).
func (n *Node) LastError() (string, time.Time) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.lastErr.msg, n.lastErr.at
}

// ConfirmSource records that source now vouches for the running
// configuration, when its hash is hash: the CP re-sending the configuration
// the node loaded from its cache makes the CP its source, without a reload.
// It reports whether hash is the running hash.
func (n *Node) ConfirmSource(hash, source, origin string) bool {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	n.mu.Lock()
	if n.state.Hash == "" || n.state.Hash != hash {
		n.mu.Unlock()
		return false
	}
	n.state.Source, n.state.Origin = source, origin
	cfg := n.cfg
	n.mu.Unlock()
	n.served(ServeEvent{Config: cfg, Hash: hash, Source: source, Origin: origin})
	return true
}

// NodeIDFile is where a data plane keeps its node id inside its prefix, the
// file Kong uses (kong/pdk/private/node.lua).
const NodeIDFile = "kong.id"

// NodeID returns the node id stored in <prefix>/kong.id, creating it (a
// random UUID) on first use, so that the CP sees the same node across
// restarts, as with Kong.
func NodeID(prefix string) (string, error) {
	return cluster.LoadOrCreateNodeID(filepath.Join(prefix, NodeIDFile))
}
