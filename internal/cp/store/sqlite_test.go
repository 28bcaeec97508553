package store_test

import (
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, storetest.SQLite())
}
