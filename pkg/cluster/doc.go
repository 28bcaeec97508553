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
//   - the DP pings every 30 s and right after applying a config, reporting its
//     config hash; either side drops the link after 45 s of silence.
//
// One deviation, forced by github.com/coder/websocket: a Go client cannot
// choose the payload of a WebSocket ping (Conn.Ping sends a counter), so a
// kongfb DP cannot put its hash in the ping frame as Kong's DP does. A kongfb
// DP therefore asks for "ping frames" in the handshake (header
// Kongfb-Ping-Frames) and, next to every control ping, sends a small text
// frame {"type":"ping","config_hash":"<32 hex>"}. A kongfb CP reads hashes from
// both: from the payload of control pings of a Kong DP (exactly as Kong does)
// and from ping frames of a kongfb DP. The semantics are Kong's: the hash is
// reported on every ping and right after an apply. A kongfb DP refuses to talk
// to a CP that does not confirm the extension (a Kong CP), because such a CP
// would drop it for its first ping.
//
// The CP push loop and the DP sync client build on this package; they live in
// internal/.
package cluster
