package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// flakySource wraps a real source and fails while down is set, the way an
// unreachable Prometheus does.
type flakySource struct {
	Source
	mu   sync.Mutex
	down bool
	// onRead, when set, runs before every read.
	onRead func(ctx context.Context) error
}

func (f *flakySource) setDown(d bool) { f.mu.Lock(); f.down = d; f.mu.Unlock() }

func (f *flakySource) err(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.onRead != nil {
		if err := f.onRead(ctx); err != nil {
			return err
		}
	}
	if f.down {
		return fmt.Errorf("connection refused: %w", telemetry.ErrUnavailable)
	}
	return nil
}

func (f *flakySource) Range(ctx context.Context, q string, s, e time.Time, step time.Duration) (promql.Matrix, error) {
	if err := f.err(ctx); err != nil {
		return nil, err
	}
	return f.Source.Range(ctx, q, s, e, step)
}

// OldestAppended passes on where samples landed, as the app's source does.
func (f *flakySource) OldestAppended() map[string]int64 {
	return f.Source.(appendWatcher).OldestAppended()
}

func (f *flakySource) Samples(ctx context.Context, ms []*labels.Matcher, s, e time.Time) (promql.Matrix, error) {
	if err := f.err(ctx); err != nil {
		return nil, err
	}
	return f.Source.Samples(ctx, ms, s, e)
}

const twoSLOs = `
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
  objective: 99.9
  window: 30d
  alerting:
    minEvents: 10
    noData: {after: 3m}
  indicator:
    ratio:
      bad: sum(rate(req_total{service="shop",code="500"}[{{.window}}]))
      total: sum(rate(req_total{service="shop"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-tenants}
spec:
  service: shop
  category: quality
  objective: 99
  window: 7d
  groupBy: [tenant]
  maxGroups: 3
  indicator:
    ratio:
      bad: sum by (tenant) (rate(req_total{service="shop",code="500"}[{{.window}}]))
      total: sum by (tenant) (rate(req_total{service="shop"}[{{.window}}]))
`

// liveWriter appends samples of req_total as time advances: per tenant a
// 200 counter and a 500 counter, one sample per 15s.
type liveWriter struct {
	db     *telemetry.Embedded
	values map[string]float64
}

func (w *liveWriter) write(t testing.TB, from, to time.Time, perSample map[string][2]float64) {
	t.Helper()
	// Through the receivers' appender, which tells the engine where
	// samples landed: late ones revise the minutes already folded.
	app := w.db.AppenderV2(context.Background())
	for ts := from; ts.Before(to); ts = ts.Add(15 * time.Second) {
		for tenant, d := range perSample {
			for i, code := range []string{"200", "500"} {
				k := tenant + code
				w.values[k] += d[i]
				ls := labels.FromStrings("__name__", "req_total", "service", "shop", "tenant", tenant, "code", code)
				if _, err := app.Append(0, ls, 0, ts.UnixMilli(), w.values[k], nil, nil, storage.AOptions{}); err != nil {
					t.Fatalf("append: %v", err)
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestStates(t *testing.T) {
	db := openTSDB(t)
	w := &liveWriter{db: db, values: map[string]float64{}}
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	// Two hours of healthy history for three tenants.
	healthy := map[string][2]float64{"a": {100, 0}, "b": {50, 0}, "c": {20, 0}}
	w.write(t, t0.Add(-2*time.Hour), t0, healthy)
	src := &flakySource{Source: db}
	clk := &clock{t0.Add(30 * time.Second)}
	var mu sync.Mutex
	var got []Transition
	st := openStore(t)
	set := loadSpecs(t, twoSLOs)
	e, err := New(Options{Source: src, Store: st, Specs: set, Now: clk.now, Interval: 15 * time.Second,
		OnTransitions: func(_ context.Context, ts []Transition) { mu.Lock(); got = append(got, ts...); mu.Unlock() }})
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
	advance := func(d time.Duration, perSample map[string][2]float64) {
		t.Helper()
		for end := now.Add(d); now.Before(end); now = now.Add(15 * time.Second) {
			if perSample != nil {
				w.write(t, now, now.Add(15*time.Second), perSample)
			}
			clk.t = now.Add(15*time.Second + 30*time.Second)
			e.cycle(ctx)
		}
	}
	state := func(key string) *Status {
		t.Helper()
		s := e.Snapshot().Status(key)
		if s == nil {
			t.Fatalf("no status for %s (have %d statuses)", key, len(e.Snapshot().Statuses))
		}
		return s
	}
	transitions := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, tr := range got {
			out = append(out, fmt.Sprintf("%s %s %s->%s", tr.Key, tr.Severity, tr.From, tr.To))
		}
		got = nil
		return out
	}

	if s := state("shop-availability"); s.State != StateOK {
		t.Fatalf("after backfill: %s (%s)", s.State, s.Reason)
	}
	if n := len(e.Snapshot().SLO("shop-tenants")); n != 3 {
		t.Errorf("tenants: got %d groups, want 3", n)
	}

	t.Run("outage pages within two minutes", func(t *testing.T) {
		outage := map[string][2]float64{"a": {0, 100}, "b": {0, 50}, "c": {20, 0}}
		advance(2*time.Minute, outage)
		s := state("shop-availability")
		if p := s.Alert(spec.SeverityPage); p == nil || p.State != slo.Firing {
			t.Fatalf("page not firing 2 minutes into a full outage: %+v", s.Alerts)
		}
		// The 7d SLO pages on 14.4x over 14m/1m: a full outage needs
		// 14.4% of 14 minutes, a third minute.
		advance(time.Minute, outage)
		tenantA := state(`shop-tenants{tenant="a"}`)
		if tenantA.State != StateFiring {
			t.Errorf("tenant a: %s", tenantA.State)
		}
		if c := state(`shop-tenants{tenant="c"}`); c.State != StateOK {
			t.Errorf("tenant c is healthy but %s", c.State)
		}
		tr := strings.Join(transitions(), "\n")
		for _, want := range []string{"shop-availability page inactive->firing", `shop-tenants{tenant="a"} page inactive->firing`} {
			if !strings.Contains(tr, want) {
				t.Errorf("transitions lack %q:\n%s", want, tr)
			}
		}
	})

	t.Run("recovery resolves", func(t *testing.T) {
		// The 6h/30m pair holds until the outage leaves the 30m window.
		advance(35*time.Minute, healthy)
		s := state("shop-availability")
		if p := s.Alert(spec.SeverityPage); p.State != slo.Resolved {
			t.Errorf("page after recovery: %s", p.State)
		}
		if !strings.Contains(strings.Join(transitions(), "\n"), "shop-availability page firing->resolved") {
			t.Error("no resolve transition")
		}
	})

	t.Run("cardinality limit", func(t *testing.T) {
		advance(time.Minute, map[string][2]float64{"a": {100, 0}, "b": {50, 0}, "c": {20, 0}, "d": {5, 0}})
		statuses := e.Snapshot().SLO("shop-tenants")
		if len(statuses) != 3 {
			t.Errorf("got %d groups, want the limit of 3", len(statuses))
		}
		if statuses[0].DroppedGroup != 1 {
			t.Errorf("dropped groups: got %d, want 1", statuses[0].DroppedGroup)
		}
	})

	t.Run("telemetry stops: no_data, never ok", func(t *testing.T) {
		transitions()
		// no_data after 5 minutes without samples, the alert after the
		// 3m grace.
		advance(9*time.Minute, nil)
		s := state("shop-availability")
		if s.State != StateNoData || !strings.Contains(s.Reason, "no samples since") {
			t.Fatalf("got %s (%s), want no_data", s.State, s.Reason)
		}
		if a := s.Alert(SeverityNoData); a.State != slo.Firing {
			t.Errorf("telemetry alert: %s", a.State)
		}
		if !strings.Contains(strings.Join(transitions(), "\n"), "shop-availability no_data pending->firing") {
			t.Error("no QSPTelemetryMissing transition")
		}
	})

	t.Run("late data is folded in", func(t *testing.T) {
		// The samples of the last nine minutes arrive now, late (a
		// remote_write backlog after a partition).
		w.write(t, now.Add(-9*time.Minute), now, healthy)
		advance(time.Minute, healthy)
		s := state("shop-availability")
		if s.State == StateNoData {
			t.Fatalf("after data returned: %s (%s)", s.State, s.Reason)
		}
		// Every window saw every request, the late ones included: 4
		// samples a minute of 170 requests.
		// (The 30m window also holds the minute tenant d sent 4x5 more.)
		// Every window holds exactly the increases of the samples in
		// (From, To], the late ones included.
		for _, ww := range s.Windows {
			if want := exactIncrease(t, db, ww.From, ww.To); ww.Total != want {
				t.Errorf("%s window (%s, %s]: total %v, want %v", ww.Name, ww.From, ww.To, ww.Total, want)
			}
		}
		// 4 samples a minute of 170 requests, but the window ends 15s
		// after the newest sample written (the clock is 45s after it,
		// less the 10s partial settle, down to a half minute): one of its
		// scrapes is not written yet. Tenant d's one minute adds 3x5 to
		// the 30m window: its first sample only starts its series.
		for d, want := range map[time.Duration]float64{5 * time.Minute: 19 * 170, 30 * time.Minute: 119*170 + 15} {
			w := s.WindowStat(d)
			if w.Total != want || w.Coverage != 1 {
				t.Errorf("%s window after late data: total %v coverage %v, want %v and 1", w.Name, w.Total, w.Coverage, want)
			}
		}
		if a := s.Alert(SeverityNoData); a.State != slo.Resolved {
			t.Errorf("telemetry alert after data returned: %s", a.State)
		}
	})

	t.Run("source down raises one alert", func(t *testing.T) {
		transitions()
		src.setDown(true)
		advance(2*time.Minute, healthy)
		snap := e.Snapshot()
		if snap.SourceDown == nil || snap.SourceDown.State != slo.Firing {
			t.Fatalf("source-down alert: %+v", snap.SourceDown)
		}
		for _, s := range snap.Statuses {
			if s.State != StateNoData || !strings.Contains(s.Reason, "unavailable") {
				t.Errorf("%s: %s (%s), want no_data because the source is down", s.Key, s.State, s.Reason)
			}
			if a := s.Alert(SeverityNoData); a != nil && a.State == slo.Firing {
				t.Errorf("%s raised its own telemetry alert while the source is down", s.Key)
			}
		}
		// Only the source alert moves; SLO alerts hold their state.
		for _, tr := range transitions() {
			if !strings.HasPrefix(tr, " no_data") {
				t.Errorf("transition while the source is down: %s", tr)
			}
		}
		src.setDown(false)
		advance(time.Minute, healthy)
		if s := state("shop-availability"); s.State == StateNoData {
			t.Errorf("after the source returned: %s (%s)", s.State, s.Reason)
		}
		if snap := e.Snapshot(); snap.SourceDown == nil || snap.SourceDown.State != slo.Resolved {
			t.Errorf("source alert after the source returned: %+v", snap.SourceDown)
		}
		// Minutes during the outage were folded when the source came back.
		if w5 := state("shop-availability").WindowStat(5 * time.Minute); w5.Coverage != 1 {
			t.Errorf("coverage after the source returned: %v", w5.Coverage)
		}
	})

	t.Run("a shutdown during a cycle changes nothing", func(t *testing.T) {
		// SIGTERM arrives while a cycle reads: what it read is cut short,
		// and evaluating that would resolve the page, which the next
		// start fires again.
		outage := map[string][2]float64{"a": {0, 100}, "b": {0, 50}, "c": {0, 20}}
		advance(2*time.Minute, outage)
		if p := state("shop-availability").Alert(spec.SeverityPage); p.State != slo.Firing {
			t.Fatalf("page: %s", p.State)
		}
		transitions()
		before := e.Snapshot()
		w.write(t, now, now.Add(15*time.Second), outage)
		now = now.Add(15 * time.Second)
		clk.t = now.Add(30 * time.Second)
		cctx, cancel := context.WithCancel(ctx)
		src.mu.Lock()
		src.onRead = func(context.Context) error { cancel(); return context.Canceled }
		src.mu.Unlock()
		e.cycle(cctx)
		src.mu.Lock()
		src.onRead = nil
		src.mu.Unlock()
		if tr := transitions(); len(tr) > 0 {
			t.Errorf("a cycle cut short by shutdown changed alerts: %v", tr)
		}
		if e.Snapshot() != before {
			t.Error("a cycle cut short by shutdown published a snapshot")
		}
		if p := state("shop-availability").Alert(spec.SeverityPage); p.State != slo.Firing {
			t.Errorf("page after the cut cycle: %s", p.State)
		}
	})

	t.Run("restart resumes without re-alerting", func(t *testing.T) {
		// Fire the page, then restart from the store.
		outage := map[string][2]float64{"a": {0, 100}, "b": {0, 50}, "c": {0, 20}}
		advance(2*time.Minute, outage)
		if p := state("shop-availability").Alert(spec.SeverityPage); p.State != slo.Firing {
			t.Fatalf("page: %s", p.State)
		}
		if err := e.persist(ctx); err != nil {
			t.Fatal(err)
		}
		firingBefore := map[string]bool{}
		for _, st := range e.Snapshot().Statuses {
			if p := st.Alert(spec.SeverityPage); p != nil && p.State == slo.Firing {
				firingBefore[st.Key] = true
			}
		}
		transitions()
		e2, err := New(Options{Source: src, Store: st, Specs: set, Now: clk.now, Interval: 15 * time.Second,
			OnTransitions: func(_ context.Context, ts []Transition) { mu.Lock(); got = append(got, ts...); mu.Unlock() }})
		if err != nil {
			t.Fatal(err)
		}
		if err := e2.apply(ctx, set, true); err != nil {
			t.Fatal(err)
		}
		if err := e2.backfill(ctx); err != nil {
			t.Fatal(err)
		}
		e = e2
		advance(30*time.Second, outage)
		if p := state("shop-availability").Alert(spec.SeverityPage); p.State != slo.Firing {
			t.Errorf("page after restart: %s", p.State)
		}
		for _, tr := range transitions() {
			key, _, _ := strings.Cut(tr, " ")
			if strings.Contains(tr, "->firing") && firingBefore[key] {
				t.Errorf("re-alerted after restart: %s", tr)
			}
		}
	})
}

// tickingClock moves by step at every reading, as a real clock does while
// a cycle runs.
type tickingClock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *tickingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(c.step)
	return t
}

func (c *tickingClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// TestCycleReadsTheClockOnce: a cycle that straddles a minute boundary
// (its first clock reading before the boundary, later ones after it)
// still reads the partial minute and evaluates at the time it folded to.
// When each step of a cycle read the clock anew, such a cycle skipped
// the partial read and published windows ending a minute and a half
// before its time, earlier than the cycle before: a page resolved by one
// cycle was fired again by the next (seen in the playbook end-to-end
// test under load).
func TestCycleReadsTheClockOnce(t *testing.T) {
	db := openTSDB(t)
	w := &liveWriter{db: db, values: map[string]float64{}}
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	healthy := map[string][2]float64{"a": {100, 0}}
	w.write(t, t0.Add(-time.Hour), t0, healthy)
	clk := &tickingClock{t: t0, step: time.Second}
	set := loadSpecs(t, twoSLOs)
	e := prepare(t, Options{Source: db, Store: openStore(t), Specs: set, Now: clk.now, Interval: 15 * time.Second})
	ctx := context.Background()
	var lastTo time.Time
	written := t0
	// Cycles start 0.5s before the settle boundary of each minute (and in
	// between): the clock passes it during the cycle.
	for at := t0.Add(29*time.Second + 500*time.Millisecond); at.Before(t0.Add(10 * time.Minute)); at = at.Add(20 * time.Second) {
		w.write(t, written, at, healthy)
		for written.Before(at) {
			written = written.Add(15 * time.Second)
		}
		clk.set(at)
		e.cycle(ctx)
		snap := e.Snapshot()
		ws := snap.Status("shop-availability").WindowStat(5 * time.Minute)
		if ws == nil {
			t.Fatalf("cycle at %s: no 5m window", at)
		}
		// The partial read ends at now-PartialSettle (10s), on a half
		// minute: at most 40s before the evaluation.
		if lag := snap.At.Sub(ws.To); lag < 0 || lag > 40*time.Second {
			t.Errorf("cycle started at %s, evaluated at %s: the 5m window ends at %s, %s before", at.Format(time.TimeOnly), snap.At.Format(time.TimeOnly), ws.To.Format(time.TimeOnly), lag)
		}
		if ws.To.Before(lastTo) {
			t.Errorf("cycle at %s: the 5m window ends at %s, before the last cycle's %s", at.Format(time.TimeOnly), ws.To.Format(time.TimeOnly), lastTo.Format(time.TimeOnly))
		}
		lastTo = ws.To
	}
}

func TestSourceErrorClassification(t *testing.T) {
	if !errors.Is(fmt.Errorf("x: %w", telemetry.ErrUnavailable), telemetry.ErrUnavailable) {
		t.Fatal("wrapping")
	}
}

// TestSourceDownAtStart: a source that is down while the engine backfills
// is reported by the first snapshot, with the partial-minute read on (the
// default): the follow-up read of no SLOs must not clear what the
// backfill learnt.
func TestSourceDownAtStart(t *testing.T) {
	src := &flakySource{Source: openTSDB(t), down: true}
	clk := &clock{t: time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)}
	e, err := New(Options{Source: src, Store: openStore(t), Specs: loadSpecs(t, twoSLOs), Now: clk.now, Interval: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	snap := e.Snapshot()
	if snap.SourceDown == nil {
		t.Fatal("the first snapshot does not report the source down")
	}
	for _, st := range snap.Statuses {
		if st.State != StateNoData {
			t.Errorf("%s: state %s with the source down since start, want no_data", st.Key, st.State)
		}
	}
}

// exactIncrease sums, over every req_total series, the increases of the
// samples in (from, to]: each sample's difference to the one before it
// (after a reset, its value); a series' first sample adds nothing.
func exactIncrease(t *testing.T, db *telemetry.Embedded, from, to time.Time) float64 {
	t.Helper()
	m, err := db.Samples(context.Background(), []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "req_total")}, time.Unix(0, 0), to)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, ser := range m {
		for i := 1; i < len(ser.Floats); i++ {
			if ser.Floats[i].T > from.UnixMilli() {
				sum += increase(ser.Floats[i-1].F, ser.Floats[i].F)
			}
		}
	}
	return sum
}
