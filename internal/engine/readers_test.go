package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestReadersDuringCycles reads History, Counts, BadSince and
// DeployImpact, as page views and incidents do, while cycles fold new
// minutes and add groups: under -race, a reader that is not kept apart
// from folding is a data race (a viewer's page view racing the fold is
// how the demo's SLO page found it).
func TestReadersDuringCycles(t *testing.T) {
	db := openTSDB(t)
	w := &liveWriter{db: db, values: map[string]float64{}}
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	w.write(t, t0.Add(-time.Hour), t0, map[string][2]float64{"a": {100, 1}})
	clk := &tickingClock{t: t0}
	set := loadSpecs(t, strings.Replace(twoSLOs, "maxGroups: 3", "maxGroups: 50", 1))
	e := prepare(t, Options{Source: db, Store: openStore(t), Specs: set, Now: clk.now, Interval: 15 * time.Second})
	ctx := context.Background()

	done := make(chan struct{})
	var wg sync.WaitGroup
	reads := make([]int, 4)
	for r := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				now := clk.now()
				switch r {
				case 0:
					if _, err := e.History(ctx, "shop-availability", now.Add(-time.Hour), now, time.Minute); err != nil {
						t.Errorf("history: %v", err)
						return
					}
				case 1:
					if _, err := e.Counts(ctx, `shop-tenants{tenant="a"}`, now.Add(-time.Hour), now); err != nil {
						t.Errorf("counts: %v", err)
						return
					}
				case 2:
					e.BadSince(`shop-tenants{tenant="a"}`, 1)
				case 3:
					e.DeployImpact("shop", now.Add(-10*time.Minute), 5*time.Minute)
				}
				reads[r]++
			}
		}()
	}
	written := t0
	for i := range 40 {
		at := t0.Add(time.Duration(i+1) * 15 * time.Second)
		// A new tenant every few cycles: folding adds groups while
		// readers look them up.
		tenants := map[string][2]float64{"a": {100, 1}}
		for k := range i / 4 {
			tenants[fmt.Sprintf("t%d", k)] = [2]float64{10, 0}
		}
		w.write(t, written, at, tenants)
		written = at
		clk.set(at)
		e.cycle(ctx)
	}
	close(done)
	wg.Wait()
	for r, n := range reads {
		if n == 0 {
			t.Errorf("reader %d never read during the cycles", r)
		}
	}
	if got := len(e.Snapshot().SLO("shop-tenants")); got < 8 {
		t.Errorf("shop-tenants has %d groups after the cycles, want at least 8: the test did not add groups while reading", got)
	}
}
