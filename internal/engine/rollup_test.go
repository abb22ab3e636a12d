package engine

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// TestRollupWindows folds 35 days of random minutes and checks windows of
// every length against a brute-force sum over the raw minutes.
func TestRollupWindows(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const days = 35
	start := slo.Minute(29_000_000 + 17) // not aligned to 5 or 60
	n := days * 24 * 60
	good := make([]float64, n)
	total := make([]float64, n)
	data := make([]bool, n)
	r := newRollup(start, sizeFor(30*24*60))
	for i := range n {
		total[i] = float64(rng.IntN(1000))
		good[i] = total[i] - float64(rng.IntN(3))
		data[i] = rng.IntN(50) != 0
		if good[i] < 0 {
			good[i] = 0
		}
		r.fold(start+slo.Minute(i), slo.Counts{Good: good[i], Total: total[i]}, data[i])
	}
	brute := func(from, to slo.Minute) (slo.Counts, uint32) {
		var c slo.Counts
		var d uint32
		for m := from; m < to; m++ {
			i := int(m - start)
			c.Good += good[i]
			c.Total += total[i]
			if data[i] {
				d++
			}
		}
		return c, d
	}
	for _, w := range []int64{1, 5, 30, 60, 120, 360, 1440, 3 * 1440, 7 * 1440, 28 * 1440, 30 * 1440} {
		for _, back := range []int64{0, 1, 7, 59, 61} { // window ending in the past too
			to := r.next - slo.Minute(back)
			from := to - slo.Minute(w)
			got := r.window(from, to)
			// The start may move up to the next boundary of the tier that
			// holds it, never before the start asked for.
			maxShift := slo.Minute(0)
			switch age := int64(r.next - from); {
			case age > 3*24*60+5:
				maxShift = coarseStep - 1
			case age > 6*60+5:
				maxShift = mediumStep - 1
			}
			if back > 0 && int64(r.next-to) > 6*60 {
				t.Fatalf("test bug")
			}
			if got.from < from || got.from-from > maxShift {
				t.Errorf("window %dm ending %dm ago: start moved from %d to %d (max %d)", w, back, from, got.from, maxShift)
			}
			want, wantData := brute(got.from, got.to)
			if got.counts != want || got.data != wantData {
				t.Errorf("window %dm ending %dm ago [%d,%d): got %+v data %d, want %+v data %d", w, back, got.from, got.to, got.counts, got.data, want, wantData)
			}
			if w <= 360 && back == 0 && got.from != from {
				t.Errorf("window %dm must be exact, started at %d not %d", w, got.from, from)
			}
		}
	}
	// Hour-aligned windows are exact at every length.
	for to := r.next - 30; to < r.next; to++ {
		if int64(to)%60 != 0 {
			continue
		}
		got := r.window(to-30*1440, to)
		if want, _ := brute(to-30*1440, to); got.counts != want || got.from != to-30*1440 {
			t.Errorf("aligned 30d window: got %+v from %d, want %+v", got.counts, got.from, want)
		}
	}
}

func TestRollupStartAndFuture(t *testing.T) {
	r := newRollup(1000, sizeFor(60))
	for m := slo.Minute(1000); m < 1010; m++ {
		r.fold(m, slo.Counts{Good: 1, Total: 2}, true)
	}
	// A window reaching before the first minute covers what there is.
	if got := r.window(900, 1010); got.counts != (slo.Counts{Good: 10, Total: 20}) || got.from != 1000 {
		t.Errorf("window before start: got %+v", got)
	}
	if got := r.window(1010, 1020); got.counts != (slo.Counts{}) {
		t.Errorf("future window: got %+v", got)
	}
}

func TestRollupRevise(t *testing.T) {
	r := newRollup(0, sizeFor(7*1440))
	for m := slo.Minute(0); m < 2000; m++ {
		r.fold(m, slo.Counts{Good: 10, Total: 10}, m != 1990)
	}
	// Late samples for minute 1990 arrive: 5 more events, 2 of them bad.
	r.revise(1990, slo.Counts{Good: 3, Total: 5}, true)
	w := r.window(1985, 2000)
	if want := (slo.Counts{Good: 153, Total: 155}); w.counts != want || w.data != 15 {
		t.Errorf("after revise: got %+v data %d, want %+v data 15", w.counts, w.data, want)
	}
	if w := r.window(1000, 1990); w.counts != (slo.Counts{Good: 9900, Total: 9900}) {
		t.Errorf("window before the revised minute changed: %+v", w.counts)
	}
	if w := r.window(0, 2000); w.counts.Total != 20005 {
		t.Errorf("whole: got %+v", w.counts)
	}
}

// windowsToNext remembers start boundaries between evaluations; whatever
// happens in between (folds, late-data revisions, ring eviction), it must
// give exactly what window gives.
func TestWindowsToNextEqualsWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, span := range []int64{60, 7 * 1440, 30 * 1440} {
		r := newRollup(0, sizeFor(span))
		lengths := []int64{5, 30, 60, 120, 360, 1440, 4320, span, 2 * span}
		froms := make([]slo.Minute, len(lengths))
		got := make([]windowSums, len(lengths))
		for m := slo.Minute(0); m < slo.Minute(span)+3*1440; m++ {
			total := float64(rng.IntN(100))
			r.fold(m, slo.Counts{Good: total - float64(rng.IntN(3)), Total: total}, rng.IntN(50) != 0)
			if rng.IntN(200) == 0 {
				// Late data, recent or long ago (telemetry that returns
				// after an outage fills the gap).
				r.revise(m-slo.Minute(rng.Int64N(int64(m)+1)), slo.Counts{Good: 1, Total: 2}, false)
			}
			if rng.IntN(7) != 0 {
				continue // evaluations do not happen every minute
			}
			for i, l := range lengths {
				froms[i] = r.next - slo.Minute(l)
			}
			r.windowsToNext(froms, got)
			for i := range froms {
				if want := r.window(froms[i], r.next); got[i] != want {
					t.Fatalf("span %d, minute %d, window %dm: windowsToNext %+v, window %+v", span, m, lengths[i], got[i], want)
				}
			}
		}
	}
}

func TestRollupMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r := newRollup(12345, sizeFor(30*1440))
	for i := range 10 * 1440 {
		c := slo.Counts{Good: float64(rng.IntN(100)), Total: 100}
		if i%97 == 0 {
			c.Good = 12.5 // not an integer: approximate SLIs
		}
		r.fold(r.next, c, i%13 != 0)
	}
	b := r.marshal()
	got, err := unmarshalRollup(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []int64{5, 60, 1440, 7 * 1440, 10 * 1440} {
		a, b := r.last(w), got.last(w)
		if a != b {
			t.Errorf("last %dm: before %+v, after %+v", w, a, b)
		}
	}
	if got.next != r.next || got.cum != r.cum {
		t.Errorf("header differs: %+v vs %+v", got.cum, r.cum)
	}
	t.Logf("10 days of minutes marshal to %d bytes (memory %d bytes)", len(b), r.bytes())
	for _, bad := range [][]byte{nil, {9}, b[:len(b)/2], append(append([]byte{}, b...), 0)} {
		if _, err := unmarshalRollup(bad); err == nil {
			t.Errorf("corrupt input of %d bytes accepted", len(bad))
		}
	}
}

func TestRollupMemoryBound(t *testing.T) {
	r := newRollup(0, sizeFor(30*1440))
	if b := r.bytes(); b > 50*1024 {
		t.Errorf("a 30d rollup holds %d bytes, more than 50 KiB", b)
	}
}

func FuzzUnmarshalRollup(f *testing.F) {
	r := newRollup(0, sizeFor(7*1440))
	for m := range slo.Minute(3000) {
		r.fold(m, slo.Counts{Good: 1, Total: 1}, true)
	}
	f.Add(r.marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := unmarshalRollup(b); err == nil {
			_ = r.last(60)
			_ = r.window(r.start-10, r.next+10)
		}
	})
}

// historyData writes three hours of one service's requests ending at t0:
// 1% errors, then 10% in the last hour.
func historyData(t *testing.T) (db *telemetry.Embedded, t0 time.Time) {
	db = openTSDB(t)
	w := &liveWriter{db: db, values: map[string]float64{}}
	t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	w.write(t, t0.Add(-3*time.Hour), t0.Add(-time.Hour), map[string][2]float64{"a": {99, 1}})
	w.write(t, t0.Add(-time.Hour), t0, map[string][2]float64{"a": {90, 10}})
	return db, t0
}

func TestHistory(t *testing.T) {
	db, t0 := historyData(t)
	e := newTestEngine(t, db, openStore(t), loadSpecs(t, twoSLOs), &clock{t0.Add(30 * time.Second)})
	h, err := e.History(context.Background(), "shop-availability", t0.Add(-3*time.Hour), t0, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 7 {
		t.Fatalf("got %d points, want 7", len(h))
	}
	// The step ending 90 minutes ago had 1% errors, the last one 10%.
	if got := *h[3].ErrorRatio; math.Abs(got-0.01) > 1e-12 {
		t.Errorf("error ratio 90m ago: got %v, want 0.01", got)
	}
	if got := *h[6].ErrorRatio; math.Abs(got-0.1) > 1e-12 {
		t.Errorf("error ratio of the last step: got %v, want 0.1", got)
	}
	if *h[6].BudgetRemaining >= *h[3].BudgetRemaining {
		t.Errorf("budget did not burn down: %v then %v", *h[3].BudgetRemaining, *h[6].BudgetRemaining)
	}
	if _, err := e.History(context.Background(), "nope", t0, t0, time.Minute); !errors.Is(err, ErrUnknownSLO) {
		t.Errorf("unknown SLO: %v", err)
	}
}

type noShard struct{}

func (noShard) Owns(string) bool { return false }
func (noShard) Epoch() uint64    { return 1 }

// A replica that does not evaluate an SLO serves its history from the
// rollups the owner persisted, the same points the owner computes.
func TestHistoryOfAnotherReplicasSLO(t *testing.T) {
	db, t0 := historyData(t)
	st := openStore(t)
	set := loadSpecs(t, twoSLOs)
	clk := &clock{t0.Add(30 * time.Second)}
	owner := newTestEngine(t, db, st, set, clk)
	ctx := context.Background()

	other, err := New(Options{Source: db, Store: st, Specs: set, Now: clk.now, Shard: noShard{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.apply(ctx, set, true); err != nil {
		t.Fatal(err)
	}
	from := t0.Add(-3 * time.Hour)
	// The owner persisted after its backfill and does every minute.
	if err := owner.persist(ctx); err != nil {
		t.Fatal(err)
	}
	want, err := owner.History(ctx, "shop-availability", from, t0, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.History(ctx, "shop-availability", from, t0, 30*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(got) != 7 {
		t.Fatalf("got %d points, want %d (7)", len(got), len(want))
	}
	for i := range want {
		if (got[i].ErrorRatio == nil) != (want[i].ErrorRatio == nil) ||
			got[i].ErrorRatio != nil && *got[i].ErrorRatio != *want[i].ErrorRatio ||
			got[i].SLI != nil && *got[i].SLI != *want[i].SLI {
			t.Errorf("point %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := other.History(ctx, "nope", from, t0, time.Minute); !errors.Is(err, ErrUnknownSLO) {
		t.Errorf("unknown SLO: %v", err)
	}
}

// TestRollupStepWindows folds minutes split by step (see subSteps) and
// checks windows that end (and so start) on every step of a minute
// against a brute-force sum over the steps, before and after a marshal round
// trip, with heads that do not fit a cell (non-integer, huge) among them.
func TestRollupStepWindows(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	start := slo.Minute(29_000_000 + 3)
	const n = 8 * 60
	q := make([][subSteps]slo.Counts, n)
	r := newRollup(start, sizeFor(30*24*60))
	for i := range n {
		var c slo.Counts
		var h minuteHeads
		for k := range subSteps {
			tot := float64(rng.IntN(50))
			switch i % 41 {
			case 7:
				tot += 0.25 // not an integer: kept wide
			case 8:
				tot += 1 << 33 // too big for a cell
			}
			q[i][k] = slo.Counts{Good: tot - float64(rng.IntN(2)), Total: tot}
			if q[i][k].Good < 0 {
				q[i][k].Good = 0
			}
			c = c.Add(q[i][k])
			if k < subSteps-1 {
				h[k] = c
			}
		}
		r.foldHeads(start+slo.Minute(i), c, true, &h)
	}
	// A late sample revises minute n-3's second step.
	late := slo.Counts{Good: 2, Total: 3}
	q[n-3][1] = q[n-3][1].Add(late)
	var lateHeads minuteHeads
	for k := 1; k < subSteps-1; k++ {
		lateHeads[k] = late
	}
	r.reviseHeads(start+n-3, late, false, &lateHeads)
	brute := func(from, to edge) slo.Counts {
		var c slo.Counts
		for i := range n {
			for k := range subSteps {
				at := edge{start + slo.Minute(i), k} // the step (at, at+subMs]
				if !from.after(at) && to.after(at) {
					c = c.Add(q[i][k])
				}
			}
		}
		return c
	}
	check := func(t *testing.T, r *rollup) {
		for _, d := range []int64{5, 30, 60, 360} {
			for _, back := range []int64{1, 2, 4} {
				for eq := range subSteps {
					end := edge{r.next - slo.Minute(back), eq}
					st := r.startOf(end, d)
					w := r.window(st.read, end.m)
					st.apply(&w)
					// The partial steps of the end minute: what peek adds.
					var part slo.Counts
					for k := range eq {
						part = part.Add(q[int(end.m-start)][k])
					}
					got := w.counts.Add(part)
					want := brute(edge{end.m - slo.Minute(d), eq}, end)
					if w.from != end.m-slo.Minute(d) || w.fromQ != eq || math.Abs(got.Good-want.Good) > 1e-6 || math.Abs(got.Total-want.Total) > 1e-6 {
						t.Errorf("%dm window ending %d+%dq: got %+v from %d+%dq, want %+v", d, end.m, eq, got, w.from, w.fromQ, want)
					}
				}
			}
		}
	}
	check(t, r)
	got, err := unmarshalRollup(r.marshal())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("restored", func(t *testing.T) { check(t, got) })
	// A window whose start is older than the minute tier starts at the
	// next minute: short, never long.
	if st := r.startOf(edge{r.next, 1}, 3*1440); st.read != r.next-3*1440+1 || st.q != 0 {
		t.Errorf("3d window ending mid-minute starts at %d+%dq, want the next minute", st.read, st.q)
	}
}
