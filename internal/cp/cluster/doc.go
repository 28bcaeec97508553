// Package cluster is the control plane's side of Kong's hybrid mode: the
// cluster listener data planes (DPs) connect to over mutual TLS
// (cluster_listen, /v1/outlet), the push loop that sends them the whole
// configuration whenever the store changes, and the registry behind
// GET /clustering/data-planes.
//
// The push loop differs from Kong's in two ways that matter to operators:
//
//   - No trailing throttle. Kong pushes at most once per db_update_frequency
//     (5 s) per worker. kongfb exports at once on the first change after a
//     quiet period and coalesces changes that arrive during an export into
//     one follow-up export of the newest state.
//   - Never a partial config. Any error reading or converting the store keeps
//     the last good payload; the DPs keep serving what they have, the error
//     is logged, and the export is retried with backoff (Kong/kong#12861).
//
// The payload is encoded (gzip) once per export and the same bytes go to
// every DP; Kong's per-version down-conversion of plugin fields for older
// DPs is not done (see docs/HYBRID.md).
//
// The registry is kept in memory by each CP process; see Registry.
package cluster
