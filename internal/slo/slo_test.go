package slo

import (
	"math"
	"testing"
	"time"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

func TestBudget(t *testing.T) {
	for _, tc := range []struct {
		name     string
		c        Counts
		fraction float64
		want     Budget
	}{
		// 1,000,000 requests at 99.9%: 1,000 may fail; 500 did.
		{"half spent", Counts{Good: 999_500, Total: 1_000_000}, 0.001,
			Budget{Fraction: 0.001, Total: 1e6, Allowed: 1000, Consumed: 500, Remaining: 500, ConsumedRatio: 0.5, RemainingRatio: 0.5}},
		// 2,500 of 100,000 failed at 99%: 1,000 allowed, 250% spent.
		{"overspent", Counts{Good: 97_500, Total: 100_000}, 0.01,
			Budget{Fraction: 0.01, Total: 1e5, Allowed: 1000, Consumed: 2500, Remaining: -1500, ConsumedRatio: 2.5, RemainingRatio: -1.5}},
		{"no events", Counts{}, 0.001,
			Budget{Fraction: 0.001, RemainingRatio: 1}},
		// 30 bad slices of 8,640 (5-minute slices in 30 days) at 99.5%:
		// 43.2 slices allowed.
		{"timeslices", Counts{Good: 8610, Total: 8640}, 0.005,
			Budget{Fraction: 0.005, Total: 8640, Allowed: 43.2, Consumed: 30, Remaining: 13.2, ConsumedRatio: 30 / 43.2, RemainingRatio: 1 - 30/43.2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ComputeBudget(tc.c, tc.fraction)
			if !near(got.Allowed, tc.want.Allowed) || !near(got.Consumed, tc.want.Consumed) || !near(got.Remaining, tc.want.Remaining) ||
				!near(got.ConsumedRatio, tc.want.ConsumedRatio) || !near(got.RemainingRatio, tc.want.RemainingRatio) || got.Total != tc.want.Total {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBurnRate(t *testing.T) {
	for _, tc := range []struct {
		c      Counts
		budget float64
		want   float64
		ok     bool
	}{
		{Counts{Good: 985.6, Total: 1000}, 0.001, 14.4, true}, // 1.44% errors at 99.9%
		{Counts{Good: 0, Total: 60}, 0.001, 1000, true},       // full outage
		{Counts{Good: 95, Total: 100}, 0.05, 1, true},         // exactly on budget
		{Counts{Good: 100, Total: 100}, 0.001, 0, true},
		{Counts{}, 0.001, 0, false}, // no events: no burn rate
	} {
		got, ok := BurnRate(tc.c, tc.budget)
		if ok != tc.ok || !near(got, tc.want) {
			t.Errorf("BurnRate(%+v, %v) = %v, %v; want %v, %v", tc.c, tc.budget, got, ok, tc.want, tc.ok)
		}
	}
}

func TestTimeBudget(t *testing.T) {
	// 99.9% over 30 days allows 43m12s of full outage.
	allowed, remaining := TimeBudget(Budget{Fraction: 0.001, RemainingRatio: 0.25}, 30*24*time.Hour)
	if allowed != 43*time.Minute+12*time.Second {
		t.Errorf("allowed: got %s, want 43m12s", allowed)
	}
	if remaining != 10*time.Minute+48*time.Second {
		t.Errorf("remaining: got %s, want 10m48s", remaining)
	}
}

func TestCalendarPeriod(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	ny, _ := time.LoadLocation("America/New_York")
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	for _, tc := range []struct {
		name       string
		t          time.Time
		period     string
		loc        *time.Location
		start, end string // UTC
		hours      float64
	}{
		// October 2026 in Berlin ends with the return to winter time on
		// the 25th: 31 days and one hour.
		{"october with DST end", time.Date(2026, 10, 15, 12, 0, 0, 0, time.UTC), Month, berlin, "2026-09-30T22:00:00Z", "2026-10-31T23:00:00Z", 745},
		// March 2026 loses an hour on the 29th.
		{"march with DST start", time.Date(2026, 3, 31, 21, 59, 0, 0, time.UTC), Month, berlin, "2026-02-28T23:00:00Z", "2026-03-31T22:00:00Z", 743},
		// 22:30 UTC on 31 March is already April in Berlin.
		{"month boundary", time.Date(2026, 3, 31, 22, 30, 0, 0, time.UTC), Month, berlin, "2026-03-31T22:00:00Z", "2026-04-30T22:00:00Z", 720},
		{"february UTC", time.Date(2028, 2, 29, 23, 59, 0, 0, time.UTC), Month, time.UTC, "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z", 29 * 24},
		// The week of the DST change (Sunday 29 March 2026) has 167 hours.
		{"week with DST start", time.Date(2026, 3, 29, 12, 0, 0, 0, time.UTC), Week, berlin, "2026-03-22T23:00:00Z", "2026-03-29T22:00:00Z", 167},
		{"week on a monday", time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC), Week, ny, "2026-11-23T05:00:00Z", "2026-11-30T05:00:00Z", 168},
		{"sunday belongs to the week before", time.Date(2026, 11, 23, 4, 59, 0, 0, time.UTC), Week, ny, "2026-11-16T05:00:00Z", "2026-11-23T05:00:00Z", 168},
		{"half-hour zone", time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC), Month, kolkata, "2026-10-31T18:30:00Z", "2026-11-30T18:30:00Z", 720},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start, end := CalendarPeriod(tc.t, tc.period, tc.loc)
			if got := start.UTC().Format(time.RFC3339); got != tc.start {
				t.Errorf("start: got %s, want %s", got, tc.start)
			}
			if got := end.UTC().Format(time.RFC3339); got != tc.end {
				t.Errorf("end: got %s, want %s", got, tc.end)
			}
			if got := end.Sub(start).Hours(); got != tc.hours {
				t.Errorf("length: got %vh, want %vh", got, tc.hours)
			}
			if tc.t.Before(start) || !tc.t.Before(end) {
				t.Errorf("%s is not inside [%s, %s)", tc.t, start, end)
			}
		})
	}
}

func TestCorrections(t *testing.T) {
	weekly := Correction{Start: time.Date(2026, 1, 4, 3, 0, 0, 0, time.UTC), Length: 30 * time.Minute, Every: 7 * 24 * time.Hour}
	got := weekly.Intervals(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 16, 0, 0, 0, 0, time.UTC))
	want := []string{"2026-11-01T03:00:00Z", "2026-11-08T03:00:00Z", "2026-11-15T03:00:00Z"}
	if len(got) != len(want) {
		t.Fatalf("got %v, want starts %v", got, want)
	}
	for i := range want {
		if got[i].Start.Format(time.RFC3339) != want[i] || got[i].End.Sub(got[i].Start) != 30*time.Minute {
			t.Errorf("occurrence %d: got %v, want start %s", i, got[i], want[i])
		}
	}
	cs := Corrections{weekly}
	for _, tc := range []struct {
		t    time.Time
		want bool
	}{
		{time.Date(2026, 11, 8, 2, 59, 0, 0, time.UTC), false},
		{time.Date(2026, 11, 8, 3, 0, 0, 0, time.UTC), true},
		{time.Date(2026, 11, 8, 3, 29, 0, 0, time.UTC), true},
		{time.Date(2026, 11, 8, 3, 30, 0, 0, time.UTC), false},
		{time.Date(2025, 12, 28, 3, 10, 0, 0, time.UTC), false}, // before the first
	} {
		if got := cs.Excludes(MinuteOf(tc.t)); got != tc.want {
			t.Errorf("Excludes(%s) = %v, want %v", tc.t, got, tc.want)
		}
	}
	once := Correction{Start: time.Date(2026, 11, 1, 2, 0, 30, 0, time.UTC), Length: time.Hour}
	if !(Corrections{once}).Excludes(MinuteOf(time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC))) {
		t.Error("a minute a correction starts in is excluded")
	}
	until := weekly
	until.Until = time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	if n := len(until.Intervals(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))); n != 2 {
		t.Errorf("with until: got %d occurrences, want 2", n)
	}
}

func TestEvaluateConditions(t *testing.T) {
	page := []BurnCondition{{time.Hour, 5 * time.Minute, 14.4}, {6 * time.Hour, 30 * time.Minute, 6}}
	windows := func(m map[time.Duration]WindowResult) func(time.Duration) WindowResult {
		return func(d time.Duration) WindowResult { return m[d] }
	}
	for _, tc := range []struct {
		name    string
		w       map[time.Duration]WindowResult
		active  bool
		low, nd bool
	}{
		{"fast burn fires", map[time.Duration]WindowResult{
			time.Hour: {Counts: Counts{Good: 5856, Total: 6000}}, 5 * time.Minute: {Counts: Counts{Good: 400, Total: 500}},
			6 * time.Hour: {Counts: Counts{Good: 35856, Total: 36000}}, 30 * time.Minute: {Counts: Counts{Good: 2900, Total: 3000}},
		}, true, false, false},
		// The long window still burns but the short one recovered: the
		// alert resets quickly.
		{"short window recovered", map[time.Duration]WindowResult{
			time.Hour: {Counts: Counts{Good: 5856, Total: 6000}}, 5 * time.Minute: {Counts: Counts{Good: 500, Total: 500}},
			6 * time.Hour: {Counts: Counts{Good: 35900, Total: 36000}}, 30 * time.Minute: {Counts: Counts{Good: 3000, Total: 3000}},
		}, false, false, false},
		{"low traffic", map[time.Duration]WindowResult{
			time.Hour: {Counts: Counts{Good: 0, Total: 5}}, 5 * time.Minute: {Counts: Counts{Good: 0, Total: 1}},
			6 * time.Hour: {Counts: Counts{Good: 0, Total: 8}}, 30 * time.Minute: {Counts: Counts{Good: 0, Total: 3}},
		}, false, true, false},
		{"no data", map[time.Duration]WindowResult{
			time.Hour: {NoData: true}, 5 * time.Minute: {NoData: true}, 6 * time.Hour: {NoData: true}, 30 * time.Minute: {NoData: true},
		}, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			active, res := EvaluateConditions(page, 0.001, 10, windows(tc.w))
			if active != tc.active {
				t.Errorf("active: got %v, want %v (%+v)", active, tc.active, res)
			}
			if res[0].LowTraffic != tc.low || res[0].NoData != tc.nd {
				t.Errorf("got %+v, want low traffic %v, no data %v", res[0], tc.low, tc.nd)
			}
		})
	}
	// Exactly at the factor fires despite float error in the ratio.
	exact := map[time.Duration]WindowResult{time.Hour: {Counts: Counts{Good: 1 - 0.0144, Total: 1}}, 5 * time.Minute: {Counts: Counts{Good: 1 - 0.0144, Total: 1}}}
	if active, _ := EvaluateConditions(page[:1], 0.001, 0, windows(exact)); !active {
		t.Error("a burn rate of exactly 14.4 must meet a factor of 14.4")
	}
}

func TestAlertStep(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	type step struct {
		at     time.Duration
		active bool
		want   AlertState
	}
	run := func(t *testing.T, forDur time.Duration, steps []step) {
		var a Alert
		for i, s := range steps {
			a, _ = a.Step(t0.Add(s.at), s.active, forDur)
			if a.State != s.want {
				t.Fatalf("step %d (t+%s, active %v): got %s, want %s", i, s.at, s.active, a.State, s.want)
			}
		}
	}
	t.Run("for 0 fires at once", func(t *testing.T) {
		run(t, 0, []step{{0, false, Inactive}, {time.Minute, true, Firing}, {2 * time.Minute, false, Resolved},
			{10 * time.Minute, false, Resolved}, {17 * time.Minute, false, Inactive}})
	})
	t.Run("for 2m pends", func(t *testing.T) {
		run(t, 2*time.Minute, []step{{0, true, Pending}, {time.Minute, true, Pending}, {2 * time.Minute, true, Firing},
			{3 * time.Minute, true, Firing}, {4 * time.Minute, false, Resolved}, {5 * time.Minute, true, Pending}})
	})
	t.Run("pending that clears never fires", func(t *testing.T) {
		run(t, 5*time.Minute, []step{{0, true, Pending}, {time.Minute, false, Inactive}, {2 * time.Minute, true, Pending}})
	})
}

func TestCompositeErrorRatio(t *testing.T) {
	// Availability (99.9%) spends half its budget, latency (99%) a quarter;
	// weights 0.6/0.4 on a 99.5% composite: 0.005 * (0.6*0.5 + 0.4*0.25).
	parts := []Part{{Weight: 0.6, ErrorRatio: 0.0005, Budget: 0.001}, {Weight: 0.4, ErrorRatio: 0.0025, Budget: 0.01}}
	e, ok := CompositeErrorRatio(parts, 0.005)
	if !ok || !near(e, 0.005*(0.6*0.5+0.4*0.25)) {
		t.Errorf("got %v, %v; want %v", e, ok, 0.005*0.4)
	}
	parts[1].NoData = true
	if _, ok := CompositeErrorRatio(parts, 0.005); ok {
		t.Error("a composite with a child without data has no value")
	}
}

func TestSlices(t *testing.T) {
	lt300 := func(v float64) bool { return v <= 0.3 }
	for _, tc := range []struct {
		name string
		got  Counts
		want Counts
	}{
		{"ratio met", RatioSlice(Counts{Good: 995, Total: 1000}, 0.995), Counts{1, 1}},
		{"ratio missed", RatioSlice(Counts{Good: 994, Total: 1000}, 0.995), Counts{0, 1}},
		{"ratio empty", RatioSlice(Counts{}, 0.995), Counts{}},
		{"ratio timeslice", RatioTimeslice(Counts{Good: 3, Total: 4}), Counts{0.75, 1}},
		{"values good", ValueSlice([]float64{0.1, 0.3, math.NaN()}, lt300), Counts{1, 1}},
		{"values bad", ValueSlice([]float64{0.1, 0.31}, lt300), Counts{0, 1}},
		{"values missing", ValueSlice([]float64{math.NaN()}, lt300), Counts{}},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, tc.got, tc.want)
		}
	}
}
