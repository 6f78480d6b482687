package server_test

import (
	"testing"

	"github.com/ringfence/ringfence/internal/pgtest"
)

// TestMain stops the throwaway PostgreSQL server the PostgreSQL benchmark
// starts (internal/pgtest), if it started one.
func TestMain(m *testing.M) { pgtest.Main(m) }
