package slo

import (
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

var writeForecastDoc = flag.String("forecast.doc", "", "write the forecast accuracy table to this Markdown file")

func TestExhaustionAtBurn(t *testing.T) {
	const L = 30 * 24 * time.Hour
	uniform := func(c float64) func(time.Duration) float64 {
		return func(d time.Duration) float64 { return c * float64(d) / float64(L) }
	}
	for _, tc := range []struct {
		name      string
		remaining float64
		burn      float64
		last      func(time.Duration) float64
		want      time.Duration
		ok        bool
	}{
		{"calendar: remaining*length/burn", 0.5, 2, nil, L / 4, true},
		{"exhausted", 0, 1, nil, 0, true},
		{"overspent", -0.2, 1, uniform(1.2), 0, true},
		{"no burn", 0.5, 0, uniform(0.5), 0, false},
		{"steady 0.97 never exhausts", 0.03, 0.97, uniform(0.97), 0, false},
		{"steady 1.5 over a uniform 0.5 past: 0.5/(1.5-0.5) windows", 0.5, 1.5, uniform(0.5), L / 2, true},
		{"below remaining cannot exhaust", 0.6, 0.5, uniform(0.4), 0, false},
		{"NaN", math.NaN(), 1, nil, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ExhaustionAtBurn(tc.remaining, tc.burn, L, tc.last)
			if ok != tc.ok || (ok && math.Abs(float64(got-tc.want)) > float64(time.Minute)) {
				t.Errorf("got %v %v, want %v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestExhaustionByTrend(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	line := func(r0, perHour float64, n int) []TrendPoint {
		var ps []TrendPoint
		for i := range n {
			h := float64(i - n + 1)
			ps = append(ps, TrendPoint{now.Add(time.Duration(h) * time.Hour), r0 + perHour*h})
		}
		return ps
	}
	for _, tc := range []struct {
		name   string
		points []TrendPoint
		rem    float64
		want   time.Duration
		ok     bool
	}{
		{"falling 1% per hour from 50%", line(0.5, -0.01, 24), 0.5, 50 * time.Hour, true},
		{"flat", line(0.5, 0, 24), 0.5, 0, false},
		{"rising", line(0.5, 0.01, 24), 0.5, 0, false},
		{"too few points", line(0.5, -0.01, 2), 0.5, 0, false},
		{"already exhausted", line(0, -0.01, 24), 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, ok := ExhaustionByTrend(tc.points, tc.rem, now)
			if ok != tc.ok || (ok && math.Abs(float64(got-tc.want)) > float64(time.Minute)) {
				t.Errorf("got %v %v, want %v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// burnScenario is a synthetic burn: the burn rate of every minute, with
// steady traffic, so the consumed budget of a rolling window is the mean
// burn rate of its minutes and the true exhaustion time follows exactly.
type burnScenario struct {
	name string
	desc string
	burn func(m int) float64 // minute relative to the evaluation time (0 = now)
}

// simulation holds prefix sums of a scenario's burn rates from history
// (one SLO window and a week before now) to 60 days after now.
type simulation struct {
	window int // minutes
	origin int // index of minute 0
	prefix []float64
}

func simulate(s burnScenario, window int) *simulation {
	past := window + 7*24*60
	future := 60 * 24 * 60
	sim := &simulation{window: window, origin: past, prefix: make([]float64, past+future+1)}
	for i := range past + future {
		sim.prefix[i+1] = sim.prefix[i] + s.burn(i-past)
	}
	return sim
}

// sum returns the sum of burn rates of minutes [from, to) relative to now.
func (s *simulation) sum(from, to int) float64 {
	return s.prefix[s.origin+to] - s.prefix[s.origin+from]
}

// consumed is the budget share consumed by the window ending at minute end.
func (s *simulation) consumed(end int) float64 {
	return s.sum(end-s.window, end) / float64(s.window)
}

// exhaustion returns the first minute after now at which the window's
// consumed budget reaches 1.
func (s *simulation) exhaustion() (int, bool) {
	for m := 0; m < len(s.prefix)-s.origin-1; m++ {
		if s.consumed(m) >= 1 {
			return m, true
		}
	}
	return 0, false
}

type forecastMethod struct {
	name    string
	project func(s *simulation, now time.Time) (time.Duration, bool)
}

func burnMethod(w time.Duration, rollOff bool) forecastMethod {
	name := fmt.Sprintf("burn over %s", formatDuration(w))
	if !rollOff {
		name += " without roll-off"
	}
	return forecastMethod{name, func(s *simulation, _ time.Time) (time.Duration, bool) {
		wm := int(w / time.Minute)
		burn := s.sum(-wm, 0) / float64(wm)
		length := time.Duration(s.window) * time.Minute
		var last func(time.Duration) float64
		if rollOff {
			last = func(d time.Duration) float64 {
				return s.sum(-int(d/time.Minute), 0) / float64(s.window)
			}
		}
		return ExhaustionAtBurn(1-s.consumed(0), burn, length, last)
	}}
}

func trendMethod(w time.Duration) forecastMethod {
	return forecastMethod{"trend over " + formatDuration(w), func(s *simulation, now time.Time) (time.Duration, bool) {
		// Hourly samples, as the engine keeps them.
		var ps []TrendPoint
		for h := -int(w / time.Hour); h <= 0; h++ {
			ps = append(ps, TrendPoint{now.Add(time.Duration(h) * time.Hour), 1 - s.consumed(h*60)})
		}
		d, _, ok := ExhaustionByTrend(ps, 1-s.consumed(0), now)
		return d, ok
	}}
}

var forecastScenarios = []burnScenario{
	{"constant", "burn 0.5 for the window, then 3× for the last 3 days and on", func(m int) float64 {
		if m >= -3*24*60 {
			return 3
		}
		return 0.5
	}},
	{"rising", "burn 0.5, rising by 1 per day from 2 days ago", func(m int) float64 {
		return 0.5 + math.Max(0, float64(m+2*24*60))/(24*60)
	}},
	{"bursty", "burn 0.3 with 10-minute bursts of 30× every 3 h from 4 days ago", func(m int) float64 {
		if m >= -4*24*60 && ((m%180)+180)%180 < 10 {
			return 30
		}
		return 0.3
	}},
}

var forecastMethods = []forecastMethod{
	burnMethod(5*time.Minute, true),
	burnMethod(time.Hour, true),
	burnMethod(time.Hour, false),
	burnMethod(6*time.Hour, true),
	burnMethod(24*time.Hour, true),
	burnMethod(72*time.Hour, true),
	trendMethod(24 * time.Hour),
	trendMethod(7 * 24 * time.Hour),
}

// TestForecastAccuracy projects the exhaustion of synthetic burns whose
// true exhaustion time is known and checks the methods that should be
// exact are; with -forecast.doc it writes the error table of every method.
func TestForecastAccuracy(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	const window = 30 * 24 * 60
	var doc strings.Builder
	fmt.Fprintf(&doc, "| scenario | true exhaustion | method | projected | error | relative error |\n| --- | ---: | --- | ---: | ---: | ---: |\n")
	errs := map[string]float64{}
	for _, sc := range forecastScenarios {
		sim := simulate(sc, window)
		truth, ok := sim.exhaustion()
		if !ok {
			t.Fatalf("%s: the scenario never exhausts", sc.name)
		}
		trueD := time.Duration(truth) * time.Minute
		for _, m := range forecastMethods {
			got, ok := m.project(sim, now)
			if !ok {
				fmt.Fprintf(&doc, "| %s | %s | %s | never | — | — |\n", sc.name, hours(trueD), m.name)
				errs[sc.name+"/"+m.name] = math.Inf(1)
				continue
			}
			rel := float64(got-trueD) / float64(trueD)
			errs[sc.name+"/"+m.name] = rel
			fmt.Fprintf(&doc, "| %s | %s | %s | %s | %+.1f h | %+.1f %% |\n", sc.name, hours(trueD), m.name, hours(got), (got - trueD).Hours(), 100*rel)
		}
	}
	t.Log("\n" + doc.String())
	// The constant burn is what the burn method with roll-off and the
	// day's trend model exactly: their error is rounding to minutes.
	for _, k := range []string{"constant/burn over 1h", "constant/burn over 24h", "constant/trend over 1d"} {
		if e := errs[k]; math.Abs(e) > 0.01 {
			t.Errorf("%s: relative error %.3f, want within 1%%", k, e)
		}
	}
	// Without roll-off the burn method ignores that the old 0.5 burn leaves
	// the window, so it projects exhaustion too early.
	if e := errs["constant/burn over 1h without roll-off"]; e > -0.1 {
		t.Errorf("constant without roll-off: relative error %.3f, want an early projection (below -10%%)", e)
	}
	// A rising burn exhausts sooner than any projection at today's rate.
	for _, m := range forecastMethods {
		if e := errs["rising/"+m.name]; e < 0 && m.name != "burn over 1h without roll-off" {
			t.Errorf("rising/%s: relative error %.3f, want late (positive)", m.name, e)
		}
	}
	if *writeForecastDoc != "" {
		writeAccuracyDoc(t, *writeForecastDoc, doc.String())
	}
}

func hours(d time.Duration) string { return fmt.Sprintf("%.1f h", d.Hours()) }

func writeAccuracyDoc(t *testing.T, path, table string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Forecast accuracy (issue 18)\n\n")
	b.WriteString("Written by `go test ./internal/slo -run TestForecastAccuracy -forecast.doc=$PWD/docs/benchmarks/forecast.md`\n")
	b.WriteString("(pure arithmetic, no timing: the figures do not depend on the machine).\n\n")
	b.WriteString("Each scenario is a 99.9 %/30d SLO with steady traffic whose burn rate is known minute by minute,\n")
	b.WriteString("for a 30-day window and a week of history before now and 60 days after it, so the true\n")
	b.WriteString("exhaustion time (the first minute the rolling window has consumed its whole budget) is exact.\n")
	b.WriteString("Every method projects from what it would see now; the error is projected minus true.\n\n")
	for _, sc := range forecastScenarios {
		fmt.Fprintf(&b, "- **%s**: %s.\n", sc.name, sc.desc)
	}
	b.WriteString("\nMethods (`internal/slo/forecast.go`):\n\n")
	b.WriteString("- **burn over W**: the burn rate of window W continues; the oldest minutes roll out of the\n")
	b.WriteString("  rolling window as time passes (in 96 steps over a window, linear inside a step).\n")
	b.WriteString("- **burn over W without roll-off**: remaining × window / burn, the usual formula, for comparison.\n")
	b.WriteString("- **trend over W**: least squares on the remaining budget sampled hourly over W, extended to zero.\n\n")
	b.WriteString(table)
	b.WriteString("\nReading: a constant burn is projected exactly by the burn method with roll-off and by the\n")
	b.WriteString("day's trend; without roll-off the burn method calls exhaustion early because it keeps\n")
	b.WriteString("counting old budget that will leave the window. A rising burn is projected late by every\n")
	b.WriteString("method (each assumes today's rate); the shortest windows are closest. Bursts make short\n")
	b.WriteString("windows swing between a burst (far too early) and a quiet spell (never); windows of a day or\n")
	b.WriteString("more, and the trends, average the bursts out. QSP's headline forecast is therefore the\n")
	b.WriteString("sooner of the page tier's longest window and the day's trend.\n")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
