// Package cluster is the transport of Kong's hybrid mode, sync protocol v1:
// the messages a data plane (DP) and a control plane (CP) exchange over a
// WebSocket at /v1/outlet, version and plugin compatibility rules, and the
// mutual TLS that guards the link (shared certificate or PKI).
//
// The wire format follows Kong 3.9 (kong/clustering/control_plane.lua,
// data_plane.lua, compat/init.lua, tls.lua):
//
//   - the DP dials wss://<cp>/v1/outlet?node_id=<uuid>&node_hostname=<h>&node_version=<v>
//     and sends a binary `basic_info` JSON frame first;
//   - the CP sends `reconfigure` binary frames: gzip(JSON{type, timestamp,
//     config_table, config_hash, hashes}), at most cluster_max_payload
//     (16 MiB by default) compressed;
//   - the DP pings every 30 s and right after applying a config; each
//     WebSocket ping's payload is its config hash (32 hex characters, 32
//     zeros before its first config); either side drops the link after 45 s
//     of silence.
//
// kongfb speaks this protocol without extensions, so each side interoperates
// with Kong's other side. The DP side (Dial, DPConn) uses
// github.com/gorilla/websocket because it lets a client choose a ping's
// payload, which carries the hash; the CP side (Accept, Conn) uses
// github.com/coder/websocket, which hands every received ping's payload to a
// callback. A CP accepts no data frame from a DP after basic_info, as Kong's.
//
// The CP push loop and the DP sync client build on this package; they live in
// internal/.
package cluster
