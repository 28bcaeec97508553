// Package snapshot is kongfb's fallback-configuration object format: Kong
// EE's plain `<prefix>/<version>/config.json` and kongfb's own history of
// immutable, checksummed, optionally compressed, age-encrypted and
// ed25519-signed snapshots under `<prefix>/<version>/snapshots/`.
//
// It works on bytes and keys only; the exporter and importer move the
// bytes with pkg/storage. Encode writes a snapshot, Decode reads and
// verifies either format, Candidates and NewestValid pick the newest
// object that verifies, and Encrypt/Decrypt re-wrap an existing snapshot.
// The format is specified in docs/SNAPSHOT-FORMAT.md.
package snapshot
