package engine

import (
	"context"
	"testing"
	"time"
)

// blindSource hides where samples landed, as a remote Prometheus does:
// only Range and Samples.
type blindSource struct{ Source }

// TestLateReadBack: with a source that cannot report late appends, the
// engine reads its revision horizon again every cycle when LateReadBack
// is set, so a backlog that arrives late revises its minutes exactly;
// without it the backlog is not seen, and the test shows the difference.
func TestLateReadBack(t *testing.T) {
	for _, readBack := range []bool{true, false} {
		t.Run(map[bool]string{true: "read back", false: "no read back"}[readBack], func(t *testing.T) {
			db := openTSDB(t)
			w := &liveWriter{db: db, values: map[string]float64{}}
			t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
			healthy := map[string][2]float64{"a": {100, 1}, "b": {50, 0}}
			w.write(t, t0.Add(-2*time.Hour), t0, healthy)
			clk := &clock{t0.Add(30 * time.Second)}
			set := loadSpecs(t, twoSLOs)
			e, err := New(Options{Source: blindSource{db}, Store: openStore(t), Specs: set, Now: clk.now, Interval: 15 * time.Second,
				LateWindow: 10 * time.Minute, LateReadBack: readBack})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := e.apply(ctx, set, true); err != nil {
				t.Fatal(err)
			}
			if err := e.backfill(ctx); err != nil {
				t.Fatal(err)
			}
			now := t0
			onlyB := map[string][2]float64{"b": {50, 0}}
			// Tenant a's writer stalls for 6 minutes, then its backlog
			// arrives, in order but after its minutes were folded.
			stall := now
			for end := now.Add(6 * time.Minute); now.Before(end); now = now.Add(15 * time.Second) {
				w.write(t, now, now.Add(15*time.Second), onlyB)
				clk.t = now.Add(45 * time.Second)
				e.cycle(ctx)
			}
			w.write(t, stall, now, map[string][2]float64{"a": {100, 1}})
			for end := now.Add(time.Minute); now.Before(end); now = now.Add(15 * time.Second) {
				w.write(t, now, now.Add(15*time.Second), healthy)
				clk.t = now.Add(45 * time.Second)
				e.cycle(ctx)
			}
			s := e.Snapshot().Status("shop-availability")
			if s == nil {
				t.Fatal("no status")
			}
			exact := true
			for _, ww := range s.Windows {
				if want := exactIncrease(t, db, ww.From, ww.To); ww.Total != want {
					exact = false
					if readBack {
						t.Errorf("%s window (%s, %s]: total %v, want %v", ww.Name, ww.From, ww.To, ww.Total, want)
					}
				}
			}
			if !readBack && exact {
				t.Error("without read back the late backlog was counted: the test shows nothing")
			}
			if s.LateSamplesDropped != 0 {
				t.Errorf("%d samples dropped, want 0: the backlog is inside the horizon", s.LateSamplesDropped)
			}
		})
	}
}
