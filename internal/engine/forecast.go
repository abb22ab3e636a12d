package engine

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// Forecast is one projection of when an SLO's error budget runs out.
type Forecast struct {
	// Method is slo.MethodBurn (the burn rate of Window goes on, the
	// oldest minutes rolling out of a rolling SLO window) or
	// slo.MethodTrend (least squares on the remaining budget, sampled
	// hourly over Window).
	Method string `json:"method"`
	Window string `json:"window"`
	// Rate is the burn rate (burn) or the fitted change of the remaining
	// budget per hour, negative while spending (trend).
	Rate float64 `json:"rate"`
	// Exhausts says the budget is projected to run out: within the SLO
	// window, or before a calendar period ends and the budget resets.
	Exhausts bool `json:"exhausts"`
	// Seconds is the time to exhaustion when Exhausts; 0 means spent.
	Seconds float64 `json:"timeToExhaustionSeconds"`
	// At is when, when Exhausts.
	At time.Time `json:"exhaustsAt,omitzero"`
}

// Name names the method as pages and reasons print it: "burn over 1h".
func (f Forecast) Name() string { return f.Method + " over " + f.Window }

// In returns the time to exhaustion and whether the budget runs out.
func (f Forecast) In() (time.Duration, bool) {
	return time.Duration(f.Seconds * float64(time.Second)), f.Exhausts
}

// ExhaustionResult explains a tier's timeToExhaustion condition.
type ExhaustionResult struct {
	Within string `json:"within"`
	Window string `json:"window"`
	// Seconds is the projected time to exhaustion; nil when the budget is
	// not projected to run out or the window cannot be judged.
	Seconds    *float64 `json:"timeToExhaustionSeconds"`
	Met        bool     `json:"met"`
	LowTraffic bool     `json:"lowTraffic,omitempty"`
	NoData     bool     `json:"noData,omitempty"`
}

// exhaustionCond is a tier's timeToExhaustion condition, compiled.
type exhaustionCond struct {
	within, window time.Duration
}

// trendPool lends the evaluations a buffer for the trend samples, so an
// SLO does not keep one between cycles.
var trendPool = sync.Pool{New: func() any { b := make([]slo.TrendPoint, 0, trendHours+1); return &b }}

// Trend windows: the last day and the last week, sampled hourly.
var trendWindows = []time.Duration{24 * time.Hour, 7 * 24 * time.Hour}

// trendHours is how many hourly samples the longest trend needs.
const trendHours = 7 * 24

// trendRing holds the remaining budget at the last trendHours+1 hour
// boundaries, by hour; float32 keeps it under 700 bytes a group. NaN is
// unknown (no events in the window then).
type trendRing struct {
	hour int64 // the newest sampled hour (minutes since the epoch / 60); 0 empty
	vals [trendHours + 1]float32
}

func (r *trendRing) set(h int64, v float64) {
	r.vals[h%int64(len(r.vals))] = float32(v)
}

// points appends to out the samples of the last n hours up to and
// including the newest, oldest first, skipping unknown ones and those
// before from.
func (r *trendRing) points(out []slo.TrendPoint, n int, from time.Time) []slo.TrendPoint {
	if r.hour == 0 {
		return out
	}
	for h := r.hour - int64(n); h <= r.hour; h++ {
		v := r.vals[h%int64(len(r.vals))]
		at := slo.Minute(h * 60).Time()
		if math.IsNaN(float64(v)) || at.Before(from) {
			continue
		}
		out = append(out, slo.TrendPoint{At: at, Remaining: float64(v)})
	}
	return out
}

// advance samples the hours after the newest one up to hour now, with
// sample(h) (NaN when unknown); at most the ring's length, so a fresh
// ring is filled from the rollup at once.
func (r *trendRing) advance(now int64, sample func(h int64) float64) {
	if r.hour >= now {
		return
	}
	first := max(r.hour+1, now-trendHours)
	if r.hour == 0 || r.hour < now-trendHours {
		for i := range r.vals {
			r.vals[i] = float32(math.NaN())
		}
	}
	for h := first; h <= now; h++ {
		r.set(h, sample(h))
	}
	r.hour = now
}

// forecastWindows returns the burn windows a plan projects with: every
// alert window and each timeToExhaustion window, sorted.
func (p *plan) forecastWindows() []time.Duration {
	var ws []time.Duration
	for _, t := range p.alertTiers {
		for _, c := range t.conds {
			ws = append(ws, c.Long, c.Short)
		}
		if t.exhaustion != nil {
			ws = append(ws, t.exhaustion.window)
		}
	}
	slices.Sort(ws)
	return slices.Compact(ws)
}

// headlineWindow is the burn window of the headline forecast: the page
// tier's longest long window (6h on 30d), else the longest alert window.
func (p *plan) headlineWindow() time.Duration {
	var w time.Duration
	for _, c := range p.tiers[spec.SeverityPage] {
		w = max(w, c.Long)
	}
	if w == 0 && len(p.forecastWin) > 0 {
		w = p.forecastWin[len(p.forecastWin)-1]
	}
	return w
}

// length is the SLO window's length at now: the rolling window or the
// whole calendar period.
func (p *plan) length(now time.Time) (length time.Duration, periodEnd time.Time) {
	if p.calendar == "" {
		return p.window, time.Time{}
	}
	start, end := slo.CalendarPeriod(now, p.calendar, p.loc)
	return end.Sub(start), end
}

// setForecasts projects the budget's exhaustion by every method into st.
// lastConsumed(d) is the share of the window's budget the last d of it
// consumed (rolling windows); trend holds the hourly samples.
//
// buf is scratch space for the trend samples, reused by the caller's
// evaluations (one goroutine evaluates an SLO's groups); it returns it.
func (p *plan) setForecasts(st *Status, lastConsumed func(time.Duration) float64, trend *trendRing, buf []slo.TrendPoint) []slo.TrendPoint {
	st.Forecasts, st.Exhaustion = nil, nil
	remaining := st.Budget.RemainingRatio
	if st.SLI == nil || math.IsNaN(remaining) || math.IsInf(remaining, 0) {
		return buf
	}
	now := st.EvaluatedAt
	length, periodEnd := p.length(now)
	if p.calendar != "" {
		lastConsumed = nil // nothing rolls out before the period resets
	}
	fs := make([]Forecast, 0, len(p.forecastWin)+len(trendWindows))
	finish := func(f Forecast, d time.Duration, ok bool) Forecast {
		if ok && (periodEnd.IsZero() || !now.Add(d).After(periodEnd)) {
			f.Exhausts, f.Seconds, f.At = true, d.Seconds(), now.Add(d).Truncate(time.Second)
		}
		return f
	}
	for _, w := range p.forecastWin {
		ws := st.WindowStat(w)
		if ws == nil || ws.BurnRate == nil {
			continue
		}
		d, ok := slo.ExhaustionAtBurn(remaining, *ws.BurnRate, length, lastConsumed)
		fs = append(fs, finish(Forecast{Method: slo.MethodBurn, Window: ws.Name, Rate: *ws.BurnRate}, d, ok))
	}
	for _, w := range trendWindows {
		pts := trend.points(buf[:0], int(w/time.Hour), periodStartOf(p, st))
		buf = pts
		d, slope, ok := slo.ExhaustionByTrend(pts, remaining, now)
		if len(pts) < 3 {
			continue
		}
		fs = append(fs, finish(Forecast{Method: slo.MethodTrend, Window: spec.Duration(w).String(), Rate: slope}, d, ok))
	}
	st.Forecasts = fs
	// The headline: the sooner of the page tier's longest window and the
	// day's trend (docs/benchmarks/forecast.md says why).
	head := spec.Duration(p.headlineWindow()).String()
	for i := range fs {
		f := &fs[i]
		if !(f.Method == slo.MethodBurn && f.Window == head) && !(f.Method == slo.MethodTrend && f.Window == "1d") {
			continue
		}
		if st.Exhaustion == nil || sooner(*f, *st.Exhaustion) {
			st.Exhaustion = f
		}
	}
	return buf
}

// periodStartOf is where trend samples may start: the calendar period's
// start (the budget resets there), else any time.
func periodStartOf(p *plan, st *Status) time.Time {
	if p.calendar == "" {
		return time.Time{}
	}
	return st.PeriodStart
}

// sooner reports whether a runs out before b.
func sooner(a, b Forecast) bool {
	switch {
	case a.Exhausts != b.Exhausts:
		return a.Exhausts
	case a.Exhausts:
		return a.Seconds < b.Seconds
	}
	return false
}

// Forecast returns the forecast of method over window, or nil.
func (st *Status) Forecast(method, window string) *Forecast {
	for i := range st.Forecasts {
		if st.Forecasts[i].Method == method && st.Forecasts[i].Window == window {
			return &st.Forecasts[i]
		}
	}
	return nil
}

// evaluateExhaustion checks a tier's timeToExhaustion condition on the
// forecasts already in st.
func (p *plan) evaluateExhaustion(st *Status, c *exhaustionCond, window func(time.Duration) slo.WindowResult) ExhaustionResult {
	r := ExhaustionResult{Within: spec.Duration(c.within).String(), Window: spec.Duration(c.window).String()}
	wr := window(c.window)
	switch {
	case wr.NoData:
		r.NoData = true
		return r
	case wr.Counts.Total <= 0 || wr.Counts.Total < p.minEvents:
		r.LowTraffic = true
		return r
	}
	f := st.Forecast(slo.MethodBurn, r.Window)
	if f == nil || !f.Exhausts {
		return r
	}
	secs := f.Seconds
	r.Seconds = &secs
	r.Met = secs <= c.within.Seconds()
	return r
}

// rollOffMemo keeps a group's lastConsumed values for one evaluation:
// every burn window's projection asks for the same RollOffSteps points.
type rollOffMemo struct {
	vals [slo.RollOffSteps + 1]float64
	set  [slo.RollOffSteps + 1]bool
}

// groupConsumed returns lastConsumed for a group: the bad events of the
// last d over the budget the whole window allows, each step read once.
func (rt *sloRuntime) groupConsumed(g *groupRuntime, allowed float64) func(time.Duration) float64 {
	if rt.memo == nil {
		rt.memo = new(rollOffMemo)
	}
	m := rt.memo
	*m = rollOffMemo{}
	step := rt.plan.window / slo.RollOffSteps
	return func(d time.Duration) float64 {
		if allowed <= 0 {
			return 0
		}
		i := -1
		if step > 0 && (rt.plan.window-d)%step == 0 {
			i = int((rt.plan.window - d) / step)
		}
		if i >= 0 && i < len(m.vals) && m.set[i] {
			return m.vals[i]
		}
		w, _ := windowOf(rt, g, d)
		v := w.counts.Bad() / allowed
		if i >= 0 && i < len(m.vals) {
			m.vals[i], m.set[i] = v, true
		}
		return v
	}
}

// sampleTrend advances a group's hourly trend samples from its rollup:
// the remaining budget of the SLO window ending at each hour boundary.
func (rt *sloRuntime) sampleTrend(g *groupRuntime) {
	p := rt.plan
	now := int64(g.roll.next) / 60
	g.trend.advance(now, func(h int64) float64 {
		end := slo.Minute(h * 60)
		from := end - slo.Minute(p.window/time.Minute)
		if p.calendar != "" {
			start, _ := slo.CalendarPeriod((end - 1).Time(), p.calendar, p.loc)
			from = slo.CeilMinute(start)
		}
		w := g.roll.window(from, end)
		if w.counts.Total <= 0 {
			return math.NaN()
		}
		return slo.ComputeBudget(w.counts, p.budget).RemainingRatio
	})
}
