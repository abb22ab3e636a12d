package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// pg is the PostgreSQL server shared by the package's tests; pgErr says
// why there is none.
var (
	pg        *externaltest.Postgres
	pgErr     error
	pgMissing bool
	dbSeq     atomic.Int64
)

func TestMain(m *testing.M) {
	var stop func()
	pg, stop, pgMissing, pgErr = externaltest.StartPostgresMain()
	code := m.Run()
	if stop != nil {
		stop()
	}
	os.Exit(code)
}

// eachStore runs fn against a fresh SQLite store and a fresh PostgreSQL
// store: the same suite for both drivers.
func eachStore(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) {
		s, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		s := openPostgresStore(t)
		fn(t, s)
	})
}

// openPostgresStore opens a store on a fresh database of the shared server.
func openPostgresStore(t testing.TB) *Store {
	t.Helper()
	if pg == nil {
		if pgMissing {
			externaltest.Missing(t, "PostgreSQL: %v", pgErr)
		}
		t.Fatalf("PostgreSQL did not start: %v", pgErr)
	}
	dsn := pg.CreateDB(t, fmt.Sprintf("qsp_test_%d", dbSeq.Add(1)))
	s, err := Open(context.Background(), Options{Driver: "postgres", DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
