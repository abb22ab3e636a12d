package engine

import (
	"context"
	"testing"
	"time"
)

// TestShardedBatchEqualsSingleReads: 300 SLOs on one metric are read in
// sharded batches from the embedded TSDB; every number equals what the
// same engine computes reading each selector on its own.
func TestShardedBatchEqualsSingleReads(t *testing.T) {
	const n = 300
	db := openTSDB(t)
	set := benchSpecs(t, n, "7d")
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	w := newBenchWriter(db, n)
	w.write(t, t0.Add(-3*time.Hour), t0)
	ctx := context.Background()
	run := func(batchMin int) *Snapshot {
		clk := &clock{t0.Add(30 * time.Second)}
		e, err := New(Options{Source: db, Store: openStore(t), Specs: set, Now: clk.now, BatchMin: batchMin, PartialSettle: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
		e.Cycle(ctx)
		return e.Snapshot()
	}
	batched, single := run(0), run(-1)
	if len(batched.Statuses) != n || len(single.Statuses) != n {
		t.Fatalf("%d and %d statuses, want %d", len(batched.Statuses), len(single.Statuses), n)
	}
	for _, b := range batched.Statuses {
		s := single.Status(b.Key)
		if s == nil {
			t.Fatalf("%s missing from the single reads", b.Key)
		}
		if b.Budget != s.Budget || len(b.Windows) != len(s.Windows) {
			t.Fatalf("%s: budget %+v batched, %+v single", b.Key, b.Budget, s.Budget)
		}
		for i := range b.Windows {
			bw, sw := b.Windows[i], s.Windows[i]
			if bw.Good != sw.Good || bw.Total != sw.Total {
				t.Fatalf("%s window %s: %v/%v batched, %v/%v single", b.Key, bw.Name, bw.Good, bw.Total, sw.Good, sw.Total)
			}
		}
		if b.Windows[0].Total == 0 {
			t.Fatalf("%s: no events in %s: the test reads nothing", b.Key, b.Windows[0].Name)
		}
	}
}
