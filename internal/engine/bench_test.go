package engine

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// benchSpecs declares n ratio SLOs, one per service, on a shared counter.
// Every window gets the same alert windows (the workbook's), so 7d and
// 30d SLOs differ only in the length of the SLO window.
func benchSpecs(tb testing.TB, n int, window string) *spec.Set {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: qsp/v1
kind: Service
metadata: {name: svc-%d}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: svc-%d-availability}
spec:
  service: svc-%d
  category: quality
  objective: 99.9
  window: %s
  alerting:
    page:
      windows: [{long: 1h, short: 5m, factor: 14.4}, {long: 6h, short: 30m, factor: 6}]
    ticket:
      windows: [{long: 1d, short: 2h, factor: 3}, {long: 3d, short: 6h, factor: 1}]
  indicator:
    ratio:
      bad: sum(rate(http_requests_total{service="svc-%d",code="500"}[{{.window}}]))
      total: sum(rate(http_requests_total{service="svc-%d"}[{{.window}}]))
`, i, i, i, window, i, i)
	}
	return loadSpecs(tb, b.String())
}

// benchWriter appends one sample per series every 15s for n services.
type benchWriter struct {
	db    *telemetry.Embedded
	n     int
	refs  []storage.SeriesRef
	ls    []labels.Labels
	value []float64
}

func newBenchWriter(db *telemetry.Embedded, n int) *benchWriter {
	w := &benchWriter{db: db, n: n, refs: make([]storage.SeriesRef, 2*n), value: make([]float64, 2*n)}
	for i := range n {
		w.ls = append(w.ls,
			labels.FromStrings("__name__", "http_requests_total", "service", fmt.Sprintf("svc-%d", i), "code", "200"),
			labels.FromStrings("__name__", "http_requests_total", "service", fmt.Sprintf("svc-%d", i), "code", "500"))
	}
	return w
}

func (w *benchWriter) write(tb testing.TB, from, to time.Time) {
	app := w.db.DB().Appender(context.Background())
	for ts := from; ts.Before(to); ts = ts.Add(15 * time.Second) {
		for i := range w.ls {
			if i%2 == 0 {
				w.value[i] += 100
			} else {
				w.value[i] += 0.1
			}
			ref, err := app.Append(w.refs[i], w.ls[i], ts.UnixMilli(), w.value[i])
			if err != nil {
				tb.Fatal(err)
			}
			w.refs[i] = ref
		}
	}
	if err := app.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// prefill gives every runtime the rollups of a full window of history, as
// after a backfill, without reading it from the TSDB: one rollup is built
// and copied.
func prefill(e *Engine, end slo.Minute) {
	var proto *rollup
	for _, rt := range e.runtimes {
		if proto == nil {
			start := end - slo.Minute(rt.plan.span)
			proto = newRollup(start, sizeFor(rt.plan.span))
			for m := start; m < end; m++ {
				proto.fold(m, slo.Counts{Good: 399.6, Total: 400}, true)
			}
		}
		data := proto.marshal()
		for _, g := range rt.groups {
			g.roll, _ = unmarshalRollup(data)
			g.lastSampled = end - 1
		}
		rt.next = end
	}
}

func BenchmarkCycle(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, window := range []string{"7d", "30d"} {
			b.Run(fmt.Sprintf("slos=%d/window=%s", n, window), func(b *testing.B) {
				benchCycle(b, n, window)
			})
		}
	}
}

func benchCycle(b *testing.B, n int, window string) {
	db := openTSDB(b)
	set := benchSpecs(b, n, window)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	w := newBenchWriter(db, n)
	w.write(b, t0.Add(-10*time.Minute), t0)
	clk := &clock{t0.Add(30 * time.Second)}
	e, err := New(Options{Source: db, Store: openStore(b), Specs: set, Now: clk.now, PersistInterval: 1000 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if err := e.apply(ctx, set, false); err != nil {
		b.Fatal(err)
	}
	prefill(e, slo.MinuteOf(t0)-5)
	e.lastPersist = clk.t
	e.cycle(ctx) // warm: counters find their predecessors
	runtime.GC()
	runtime.ReadMemStats(&after)
	perSLO := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)

	now := t0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		w.write(b, now, now.Add(time.Minute))
		now = now.Add(time.Minute)
		clk.t = now.Add(30 * time.Second)
		b.StartTimer()
		e.cycle(ctx)
	}
	b.StopTimer()
	b.ReportMetric(perSLO, "heap-bytes/SLO")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/cycle")
	if st := e.Snapshot().Status("svc-0-availability"); st == nil || st.State != StateOK {
		b.Fatalf("benchmark SLO not ok: %+v", st)
	}
}
