//go:build race

package cache

// raceEnabled: the race detector slows gzip and parsing several times, so
// the kill test writes smaller documents to keep its run time in bounds.
const raceEnabled = true
