package engine

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// startsSeries is one generated counter: its samples and what each adds
// (a series' first sample adds nothing, after a reset the value).
type startsSeries struct {
	ls  labels.Labels
	ref storage.SeriesRef
	ts  []int64
	v   []float64
	cum []float64 // cum[i]: what samples 0..i add
}

// startsData writes req_total counters of tenants a and b, one sample
// per 15s, with traffic that changes every scrape, error bursts, a reset
// and a 10-minute scrape gap, and keeps them for the exact sums.
type startsData struct {
	db     *telemetry.Embedded
	series []*startsSeries
	k      int
}

func newStartsData(db *telemetry.Embedded) *startsData {
	d := &startsData{db: db}
	for _, tenant := range []string{"a", "b"} {
		for _, code := range []string{"200", "500"} {
			d.series = append(d.series, &startsSeries{ls: labels.FromStrings("__name__", "req_total", "service", "shop", "tenant", tenant, "code", code)})
		}
	}
	return d
}

// write appends the samples in [from, to).
func (d *startsData) write(t testing.TB, from, to time.Time) {
	t.Helper()
	app := d.db.DB().Appender(context.Background())
	for ts := from; ts.Before(to); ts = ts.Add(15 * time.Second) {
		d.k++
		k := d.k
		for i, s := range d.series {
			if i >= 2 && k%5000 > 4960 {
				continue // tenant b's exporter is down for 10 minutes
			}
			var inc float64
			if i%2 == 0 {
				inc = float64(1 + (k*7919+i)%23)
			} else if (k/61)%17 == 3 || k%31 == 0 {
				inc = float64(k % 4)
			}
			v := inc
			if n := len(s.v); n > 0 {
				v = s.v[n-1] + inc
			} else {
				v = 1000 * float64(i+1) // no series starts from zero
			}
			if i == 0 && k == 60000 {
				v = 3 // tenant a restarts
			}
			add := 0.0
			if n := len(s.v); n > 0 {
				add = increase(s.v[n-1], v)
			}
			ref, err := app.Append(s.ref, s.ls, ts.UnixMilli(), v)
			if err != nil {
				t.Fatal(err)
			}
			s.ref = ref
			prev := 0.0
			if n := len(s.cum); n > 0 {
				prev = s.cum[n-1]
			}
			s.ts, s.v, s.cum = append(s.ts, ts.UnixMilli()), append(s.v, v), append(s.cum, prev+add)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// exact returns the good and total events of the samples in (from, to]
// of the tenants selected (all when tenant is "").
func (d *startsData) exact(tenant string, from, to time.Time) (good, total float64) {
	var bad float64
	for _, s := range d.series {
		if tenant != "" && s.ls.Get("tenant") != tenant {
			continue
		}
		upTo := func(t int64) float64 {
			i, found := slices.BinarySearch(s.ts, t)
			if found {
				i++
			}
			if i == 0 {
				return 0
			}
			return s.cum[i-1]
		}
		n := upTo(to.UnixMilli()) - upTo(from.UnixMilli())
		total += n
		if s.ls.Get("code") == "500" {
			bad += n
		}
	}
	return total - bad, total
}

// forgetfulSource loses the samples before cutoff once set, as a source
// whose retention dropped them.
type forgetfulSource struct {
	Source
	cutoff atomic.Int64 // ms; 0: keeps everything
}

func (s *forgetfulSource) Samples(ctx context.Context, ms []*labels.Matcher, start, end time.Time) (promql.Matrix, error) {
	if c := s.cutoff.Load(); c != 0 && start.UnixMilli() < c {
		start = time.UnixMilli(c)
		if !start.Before(end) {
			return nil, nil
		}
	}
	return s.Source.Samples(ctx, ms, start, end)
}

// TestExactLongWindows: every window of a counter SLO, the 1d and 3d ones
// and the 7d and 30d budget windows included, holds exactly the increases
// of the samples in (end-d, end], at every moment of a minute's settling
// (windows ending on a minute and on a half minute), over more than an
// hour of live cycles, so the starts cross 5-minute and hour boundaries.
// The window edges reported are end-d and end. Then the source loses the
// old samples: the long windows start at the rollup's boundary after
// end-d, reported so, their counts exact over what they report.
func TestExactLongWindows(t *testing.T) {
	db := openTSDB(t)
	data := newStartsData(db)
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	data.write(t, t0.Add(-30*24*time.Hour-2*time.Hour), t0)
	src := &forgetfulSource{Source: db}
	clk := &clock{t0.Add(30 * time.Second)}
	reg := prometheus.NewRegistry()
	set := loadSpecs(t, twoSLOs)
	e, err := New(Options{Source: src, Store: openStore(t), Specs: set, Now: clk.now, Interval: 15 * time.Second, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	reads := func(result string) float64 {
		return testutil.ToFloat64(e.m.startReads.WithLabelValues(result))
	}
	type check struct{ key, tenant string }
	checks := []check{{"shop-availability", ""}, {`shop-tenants{tenant="a"}`, "a"}, {`shop-tenants{tenant="b"}`, "b"}}
	// verify compares every window and the budget of every status with
	// the exact sums over the edges it reports, and those edges with the
	// declared lengths when exact.
	verify := func(when string, exactEdges bool) (short int) {
		t.Helper()
		now := clk.t
		end := now.Add(-10 * time.Second).Truncate(30 * time.Second)
		for _, c := range checks {
			st := e.Snapshot().Status(c.key)
			if st == nil {
				t.Fatalf("%s: no status of %s", when, c.key)
			}
			for _, w := range st.Windows {
				if !w.To.Equal(end) {
					t.Errorf("%s: %s %s window ends at %s, want %s", when, c.key, w.Name, w.To, end)
				}
				if got := w.To.Sub(w.From); got != w.Window {
					short++
					if exactEdges || got > w.Window {
						t.Errorf("%s: %s %s window is (%s, %s], %s long", when, c.key, w.Name, w.From, w.To, got)
					}
				}
				good, total := data.exact(c.tenant, w.From, w.To)
				if w.Good != good || w.Total != total {
					t.Errorf("%s: %s %s window (%s, %s]: good %v total %v, want good %v total %v", when, c.key, w.Name, w.From, w.To, w.Good, w.Total, good, total)
				}
			}
			window := 30 * 24 * time.Hour
			if c.tenant != "" {
				window = 7 * 24 * time.Hour
			}
			if got := end.Sub(st.PeriodStart); got != window {
				short++
				if exactEdges || got > window {
					t.Errorf("%s: %s budget window starts at %s, %s before its end", when, c.key, st.PeriodStart, got)
				}
			}
			good, total := data.exact(c.tenant, st.PeriodStart, end)
			if st.Budget.Total != total || st.Budget.Consumed != total-good {
				t.Errorf("%s: %s budget over (%s, %s]: %v events %v bad, want %v and %v", when, c.key, st.PeriodStart, end, st.Budget.Total, st.Budget.Consumed, total, total-good)
			}
		}
		return short
	}
	verify("after the backfill", true)
	// 65 minutes of live cycles every 15s, the samples written as they
	// are scraped, the clock 31s, 37s or 43s past the newest one: the
	// windows end on minutes and on half minutes.
	now := t0.Add(15 * time.Second)
	for i := range 65 * 4 {
		data.write(t, now, now.Add(15*time.Second))
		now = now.Add(15 * time.Second)
		clk.t = now.Add(16*time.Second + time.Duration(i%3)*6*time.Second)
		e.cycle(ctx)
		verify(fmt.Sprintf("cycle %d at %s", i, clk.t.Format(time.TimeOnly)), true)
		if t.Failed() {
			t.FailNow()
		}
	}
	if n := reads("exact"); n < 3*13 {
		t.Errorf("%v buckets read back exactly, want at least 39: a 5-minute bucket and an hour one per hour per group", n)
	}
	if n := reads("disagreed") + reads("failed"); n != 0 {
		t.Errorf("%v reads back disagreed or failed, want none", n)
	}
	// The source loses everything older than two days: the 3d and longer
	// windows' buckets cannot be read back, and they start at the bucket's
	// end boundary, which they report.
	src.cutoff.Store(now.Add(-48 * time.Hour).UnixMilli())
	short := 0
	for range 6 * 4 {
		data.write(t, now, now.Add(15*time.Second))
		now = now.Add(15 * time.Second)
		clk.t = now.Add(16 * time.Second)
		e.cycle(ctx)
		short += verify("without old samples", false)
	}
	if short == 0 {
		t.Error("no window started short without the old samples: the test shows nothing")
	}
	if n := reads("disagreed"); n == 0 {
		t.Error("no read back was counted as disagreeing with the rollup")
	}
}

// TestNeedBucket: the buckets read back are the ones between the stored
// boundaries around a window's start.
func TestNeedBucket(t *testing.T) {
	r := newRollup(0, sizeFor(30*1440))
	for m := range slo.Minute(31 * 1440) {
		r.foldHeads(m, slo.Counts{Good: 1, Total: 1}, true, &minuteHeads{})
	}
	for _, tc := range []struct {
		s      slo.Minute
		q      int
		lo, hi slo.Minute
		ok     bool
	}{
		{s: r.next - 60, q: 1}, // the minute tier, heads known
		{s: r.next - 1440 + 3, lo: r.next - 1440, hi: r.next - 1440 + 5, ok: true},
		{s: r.next - 1440, q: 0}, // on a boundary
		{s: r.next - 1440, q: 1, lo: r.next - 1440, hi: r.next - 1440 + 5, ok: true},            // on a boundary, heads unknown
		{s: r.next - 7*1440 - 7, q: 1, lo: r.next - 7*1440 - 60, hi: r.next - 7*1440, ok: true}, // the hour tier
		{s: r.next + 1},
		{s: -5},
	} {
		lo, hi, ok := r.needBucket(tc.s, tc.q)
		if ok != tc.ok || ok && (lo != tc.lo || hi != tc.hi) {
			t.Errorf("start %d+%dq: got [%d, %d) %v, want [%d, %d) %v", tc.s, tc.q, lo, hi, ok, tc.lo, tc.hi, tc.ok)
		}
	}
}
