package engine

import (
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/qsp-dev/qsp/internal/slo"
)

// TestLateDroppedCountsEachSampleOnce reads back the same folded minutes
// several times, as cycles after late appends do, and checks that the
// late count is exactly the samples that arrived too late: samples
// folded in time and read again count nothing, a dropped one read again
// counts nothing more.
func TestLateDroppedCountsEachSampleOnce(t *testing.T) {
	a := labels.FromStrings("__name__", "req_total", "pod", "a")
	b := labels.FromStrings("__name__", "req_total", "pod", "b")
	// Samples every 15s from minute 0 of series s, with value v per scrape.
	samples := func(ls labels.Labels, from, to slo.Minute, skip func(int64) bool) promql.Series {
		s := promql.Series{Metric: ls}
		for t := minuteMs(from) + 15_000; t <= minuteMs(to); t += 15_000 {
			if skip == nil || !skip(t) {
				s.Floats = append(s.Floats, promql.FPoint{T: t, F: float64(t / 15_000)})
			}
		}
		return s
	}
	all := func(string) bool { return true }
	const start = slo.Minute(1000)
	hole := minuteMs(start+20) + 30_000 // a's sample held back
	for _, tc := range []struct {
		name  string
		reads int // read backs of the same range after the late samples
	}{{"one read back", 1}, {"three read backs", 3}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCounter(nil, nil)
			c.horizon = 12
			// Minute by minute to start+60, a without one sample; b is not
			// written at all (a partition).
			c.increases(promql.Matrix{samples(a, start-5, start+1, func(t int64) bool { return t == hole })}, minuteMs(start-5), start, start+1, all)
			for m := start + 1; m < start+60; m++ {
				c.increases(promql.Matrix{samples(a, m, m+1, func(t int64) bool { return t == hole })}, minuteMs(m), m, m+1, all)
			}
			if c.late != 0 {
				t.Fatalf("in order: %d late", c.late)
			}
			// Now a's held sample and b's 60 minutes arrive, and the engine
			// reads back an hour: all of b's samples before the horizon and
			// a's one are too late; b's last 12 minutes revise.
			for range tc.reads {
				c.increases(promql.Matrix{samples(a, start, start+60, nil), samples(b, start, start+60, nil)}, minuteMs(start), start+60, start+60, all)
			}
			floor := minuteMs(start + 60 - 12)
			want := int64(1) // a's
			for t := minuteMs(start) + 15_000; t <= floor; t += 15_000 {
				want++ // b's before the horizon
			}
			if c.late != want {
				t.Errorf("late: got %d, want %d", c.late, want)
			}
		})
	}
}
