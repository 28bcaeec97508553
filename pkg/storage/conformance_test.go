package storage_test

import (
	"testing"

	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

func TestFileConformance(t *testing.T) {
	storagetest.Run(t, storagetest.FileHarness())
}
