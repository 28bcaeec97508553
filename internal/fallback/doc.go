// Package fallback is kongfb's fallback configuration: backup nodes export
// the configuration they validated to object storage, and a data plane that
// cannot reach its control plane imports the newest object that verifies.
//
// It has three parts, each with a Run loop and a Status for /status:
//
//   - Election: a fenced lease (<version>/election/lease) taken and renewed
//     with conditional writes, so that at most one exporter writes per term
//     and a deposed leader stops writing before anyone else may start.
//   - Exporter: fed with configs that passed validation (Offer); exports the
//     first change at once and coalesces later ones to one export per delay,
//     retries failed uploads with capped, jittered backoff, and writes only
//     while its election says it leads.
//   - Importer: lists the history and Kong's config.json, and returns the
//     newest object that verifies (checksum, signature, decryption, schema,
//     references, version policy); WaitForConfig retries until one does.
//
// Keys given to the storage.Store are relative to the store's prefix (the
// path of cluster_fallback_config_storage), so the objects land where Kong
// EE puts them: <prefix>/<version>/config.json beside kongfb's
// <prefix>/<version>/snapshots/ history. docs/FALLBACK.md explains the
// design, the fencing argument and how it compares with Kong EE.
package fallback
