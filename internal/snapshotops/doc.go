// Package snapshotops is the logic behind `kongfb snapshot …`: listing the
// fallback storage, verifying, exporting, restoring, diffing, pruning and
// re-encrypting snapshots. It works on a storage.Store and pkg/snapshot
// objects and knows nothing about flags or output formats; internal/cli
// wraps it (this package must not import internal/cli).
//
// Keys handled here are relative to the store's prefix (the path of the
// storage URL), the way storage.Store sees them: "3.9.1/config.json" and
// "3.9.1/snapshots/<ts>-<hash12>-<sha8>.snap".
package snapshotops
