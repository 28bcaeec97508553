//go:build !unix

package storage

import (
	"errors"
	"io/fs"
	"os"
)

// The file backend relies on flock(2) for conditional writes across
// processes; without it the guarantees documented for Store would not
// hold, so it is refused rather than weakened.
func fileBackendSupported() error {
	return errors.New("file:// storage needs a Unix system (flock); use s3://")
}

func tryLockFile(*os.File) (bool, error) { return false, fileBackendSupported() }
func unlockFile(*os.File)                {}
func fileIno(fs.FileInfo) (uint64, bool) { return 0, false }
