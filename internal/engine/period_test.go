package engine

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// Counts over any span of a rollup: two hours at 1% errors, then one at
// 10%. The spans start 10 minutes into the data (its first minutes hold
// the counters' first samples), and a minute holds the samples in (start,
// end]: the one ending where the 10% begins has a 15-second sample of it,
// so ratios are checked to 3%.
func TestCounts(t *testing.T) {
	db, t0 := historyData(t)
	e := newTestEngine(t, db, openStore(t), loadSpecs(t, twoSLOs), &clock{t0.Add(30 * time.Second)})
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		from, to time.Time
		errRatio float64
		minutes  int64
	}{
		{"the 1% hours", t0.Add(-170 * time.Minute), t0.Add(-time.Hour), 0.01, 110},
		{"the 10% hour", t0.Add(-time.Hour), t0, 0.1, 60},
		// (110×1 + 60×10) bad of 170×100.
		{"all three", t0.Add(-170 * time.Minute), t0, 710.0 / 17000, 170},
		{"beyond the newest minute", t0.Add(-time.Hour), t0.Add(24 * time.Hour), 0.1, 60},
	} {
		t.Run(c.name, func(t *testing.T) {
			pc, err := e.Counts(ctx, "shop-availability", c.from, c.to)
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := pc.Counts.ErrorRatio(); !ok || math.Abs(r-c.errRatio) > 0.03*c.errRatio {
				t.Errorf("error ratio %v (%v), want %v", r, ok, c.errRatio)
			}
			if pc.DataMinutes != c.minutes || !pc.To.After(pc.From) {
				t.Errorf("covers %d minutes [%s, %s), want %d", pc.DataMinutes, pc.From, pc.To, c.minutes)
			}
		})
	}
	if _, err := e.Counts(ctx, "nope", t0, t0); !errors.Is(err, ErrUnknownSLO) {
		t.Errorf("unknown SLO: %v", err)
	}
	if _, err := e.Counts(ctx, "shop-availability", t0, t0.Add(-time.Minute)); err == nil {
		t.Error("to before from: no error")
	}
}
