package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestTxRetryDeadlock makes PostgreSQL abort one of two transactions that
// lock two rows in opposite orders (deadlock_detected): txRetry runs it
// again and both writes land. SQLite serializes writers: PostgreSQL only.
func TestTxRetryDeadlock(t *testing.T) {
	s := openPostgresStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.SaveRollups(ctx, []Rollup{{Key: "a", SLO: "a", Data: []byte{1}}, {Key: "b", SLO: "b", Data: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	var both sync.WaitGroup
	both.Add(2)
	// Each side locks its first row, waits until the other has locked
	// its own (first attempt only), then asks for the other's.
	write := func(first, second string) error {
		return s.txRetry(ctx, func(tx *sql.Tx) error {
			n := attempts.Add(1)
			if _, err := s.txExec(ctx, tx, `UPDATE rollups SET plan_hash = ? WHERE key = ?`, "x", first); err != nil {
				return err
			}
			if n <= 2 {
				both.Done()
				both.Wait()
			}
			_, err := s.txExec(ctx, tx, `UPDATE rollups SET plan_hash = ? WHERE key = ?`, "y", second)
			return err
		})
	}
	errs := make(chan error, 2)
	go func() { errs <- write("a", "b") }()
	go func() { errs <- write("b", "a") }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("a writer failed despite the retry: %v", err)
		}
	}
	if n := attempts.Load(); n < 3 {
		t.Fatalf("%d attempts: PostgreSQL did not abort either transaction, the test proves nothing", n)
	}
}
