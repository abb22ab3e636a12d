package engine

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func openTSDB(t testing.TB) *telemetry.Embedded {
	t.Helper()
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: t.TempDir(), Retention: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func openStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func loadSpecs(t testing.TB, yaml string) *spec.Set {
	t.Helper()
	set, diags := spec.LoadBytes("test.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("spec: %s", diags.Error())
	}
	return set
}

// sample is one point of a synthetic series.
type sample struct {
	t time.Time
	v float64
}

// series is a synthetic series to write.
type series struct {
	labels  labels.Labels
	samples []sample
}

// appendSeries writes history in one appender: a fresh TSDB head accepts
// any timestamps in its first append, later ones only recent samples.
func appendSeries(t testing.TB, db *telemetry.Embedded, ss ...series) {
	t.Helper()
	app := db.DB().Appender(context.Background())
	for _, s := range ss {
		var ref storage.SeriesRef
		for _, p := range s.samples {
			r, err := app.Append(ref, s.labels, p.t.UnixMilli(), p.v)
			if err != nil {
				t.Fatalf("append %s at %s: %v", s.labels, p.t, err)
			}
			ref = r
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// counterGen builds a counter scraped every 30s whose increments are
// known: each sample carries the events since the previous one. It can
// reset (the process restarts: the value starts again from the events
// since the restart) and have scrape gaps (no samples; the next sample
// carries the events of the gap).
type counterGen struct {
	value   float64
	samples []sample
	// events records the increment carried by each sample, which is what
	// the engine must attribute to the sample's minute.
	events map[slo.Minute]float64
}

func newCounterGen() *counterGen { return &counterGen{events: map[slo.Minute]float64{}} }

func (g *counterGen) add(t time.Time, d float64, reset bool) {
	if reset {
		g.value = d
	} else {
		g.value += d
	}
	g.samples = append(g.samples, sample{t, g.value})
	// A sample belongs to the minute that ends at or after it: (m, m+1].
	g.events[slo.MinuteOf(t.Add(-time.Millisecond))] += d
}

func (g *counterGen) sum(from, to slo.Minute) float64 {
	s := 0.0
	for m, v := range g.events {
		if m >= from && m < to {
			s += v
		}
	}
	return s
}

// TestAccuracyOccurrences checks budgets and burn rates of a ratio SLO on
// 35 days of counter data with resets and scrape gaps against sums over
// the generator's known increments.
func TestAccuracyOccurrences(t *testing.T) {
	db := openTSDB(t)
	end := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	start := end.Add(-35 * 24 * time.Hour)
	total, errs := newCounterGen(), newCounterGen()
	// The error counter starts at zero; both reset together on restarts.
	total.add(start, 0, false)
	errs.add(start, 0, false)
	i := 0
	for ts := start.Add(30 * time.Second); ts.Before(end); ts = ts.Add(30 * time.Second) {
		i++
		// A scrape gap of 7 minutes every ~3.3 days: no samples.
		if i%10000 >= 9986 {
			continue
		}
		// Uneven traffic: 40 to 1000 requests per 30s; errors in bursts.
		n := float64(40 + (i*7919)%960)
		e := 0.0
		if (i/200)%17 == 3 {
			e = float64((i * 31) % 50)
		} else if i%13 == 0 {
			e = 1
		}
		reset := i%20000 == 0 // a restart every ~7 days
		total.add(ts, n, reset)
		errs.add(ts, e, reset)
	}
	appendSeries(t, db,
		series{labels.FromStrings("__name__", "http_requests_total", "service", "shop", "code", "200"), total.samples},
		series{labels.FromStrings("__name__", "http_errors_total", "service", "shop"), errs.samples})

	set := loadSpecs(t, `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-availability}
spec:
  service: shop
  category: quality
  objective: 99.5
  window: 30d
  indicator:
    ratio:
      bad: sum(rate(http_errors_total{service="shop"}[{{.window}}]))
      total: sum(rate(http_requests_total{service="shop"}[{{.window}}]))
`)
	// Settle 30s: at end+30s the target minute is end, hour-aligned, so
	// every window is exact.
	clk := &clock{end.Add(30 * time.Second)}
	e := newTestEngine(t, db, openStore(t), set, clk)
	st := e.Snapshot().Status("shop-availability")
	if st == nil {
		t.Fatal("no status")
	}
	target := slo.MinuteOf(end)
	check := func(name string, d time.Duration, got *WindowStat) {
		t.Helper()
		from := target - slo.Minute(d/time.Minute)
		tot, bad := total.sum(from, target), errs.sum(from, target)
		if got == nil {
			t.Fatalf("%s: window missing", name)
		}
		if got.Total != tot || got.Total-got.Good != bad {
			t.Errorf("%s: got total %v bad %v, want total %v bad %v", name, got.Total, got.Total-got.Good, tot, bad)
		}
		wantBurn := (bad / tot) / 0.005
		if got.BurnRate == nil || math.Abs(*got.BurnRate-wantBurn) > 1e-9 {
			t.Errorf("%s: burn rate got %v, want %v", name, got.BurnRate, wantBurn)
		}
	}
	for _, d := range []time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour} {
		check(spec.Duration(d).String(), d, st.WindowStat(d))
	}
	from := target - 30*24*60
	tot, bad := total.sum(from, target), errs.sum(from, target)
	wantConsumed := bad / (tot * 0.005)
	if math.Abs(st.Budget.ConsumedRatio-wantConsumed) > 1e-9 || st.Budget.Total != tot || st.Budget.Consumed != bad {
		t.Errorf("30d budget: got consumed %v (%v of %v), want %v (%v of %v)", st.Budget.ConsumedRatio, st.Budget.Consumed, st.Budget.Total, wantConsumed, bad, tot)
	}
	if math.Abs(st.Budget.RemainingRatio-(1-wantConsumed)) > 1e-9 {
		t.Errorf("remaining: got %v, want %v", st.Budget.RemainingRatio, 1-wantConsumed)
	}
	if st.Approximate {
		t.Error("a sum(rate(counter)) SLI must be exact, not approximate")
	}
	t.Logf("30d: %v events, %v bad, budget consumed %.6f", tot, bad, st.Budget.ConsumedRatio)
}

// newTestEngine prepares an engine that counts whole minutes only, so
// windows can be checked against sums computed by hand.
func newTestEngine(t testing.TB, src Source, st Store, set *spec.Set, clk *clock) *Engine {
	t.Helper()
	return prepare(t, Options{Source: src, Store: st, Specs: set, Now: clk.now, Interval: time.Second, PartialSettle: -1})
}

// prepare builds an engine from opts and applies its specs and backfill,
// as Run does before its first cycle.
func prepare(t testing.TB, opts Options) *Engine {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := e.apply(ctx, opts.Specs, true); err != nil {
		t.Fatal(err)
	}
	if err := e.backfill(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}
