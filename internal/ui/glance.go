package ui

import (
	"cmp"
	"context"
	"fmt"
	"html/template"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/store"
)

// This file holds what the executive and on-call views show at a glance:
// sparklines, budget bars, forecasts and numbers rounded for people.

// perRequests formats a cost per request in units a person reads: the
// price of 1, 1k, 1M or 1B requests, whichever first reaches a cent, with
// two decimals ("$0.08 per 1k requests" for 7.98e-05 USD).
func perRequests(v float64, currency string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	scales := [...]struct {
		unit string
		n    float64
	}{{"request", 1}, {"1k requests", 1e3}, {"1M requests", 1e6}, {"1B requests", 1e9}}
	i := 0
	for i < len(scales)-1 && v != 0 && math.Abs(v*scales[i].n) < 0.00995 {
		i++
	}
	unit, n := scales[i].unit, scales[i].n
	x := v * n
	num := strconv.FormatFloat(x, 'f', 2, 64)
	if x != 0 && math.Abs(x) < 0.005 {
		num = strconv.FormatFloat(x, 'g', 2, 64)
	}
	switch strings.ToUpper(cmp.Or(currency, "USD")) {
	case "USD":
		return "$" + num + " per " + unit
	case "EUR":
		return "€" + num + " per " + unit
	case "GBP":
		return "£" + num + " per " + unit
	}
	return num + " " + currency + " per " + unit
}

// peoplePct formats a ratio as a percentage rounded for people: two
// decimals, "99.98 %"; a ratio just under 1 never shows as 100 %.
func peoplePct(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "–"
	}
	p := math.Round(r*1e4) / 100
	if p >= 100 && r < 1 {
		return "> 99.99 %"
	}
	s := strconv.FormatFloat(p, 'f', 2, 64)
	s = strings.TrimSuffix(strings.TrimSuffix(s, "0"), ".0")
	return s + " %"
}

// humanDuration is a duration rounded for people: "45 min", "3 h 20 min",
// "2 d 4 h".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "under a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d.Round(time.Minute)/time.Minute))
	case d < 24*time.Hour:
		d = d.Round(10 * time.Minute)
		h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%d h", h)
		}
		return fmt.Sprintf("%d h %d min", h, m)
	}
	d = d.Round(time.Hour)
	days, h := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour)
	if h == 0 {
		return fmt.Sprintf("%d d", days)
	}
	return fmt.Sprintf("%d d %d h", days, h)
}

// forecastText says when the budget runs out, and by which method.
func forecastText(f *engine.Forecast) string {
	if f == nil {
		return "no forecast (no events)"
	}
	d, ok := f.In()
	switch {
	case !ok:
		return "not projected to run out (" + f.Name() + ")"
	case d <= 0:
		return "budget spent"
	}
	return "runs out in " + humanDuration(d) + " (" + f.Name() + ")"
}

// sparkline draws daily attainments (NaN: no data) as a small SVG line
// against the objective, with a title a screen reader reads.
func sparkline(days []float64, objective float64) template.HTML {
	const w, h = 120.0, 24.0
	lo, n := objective, 0
	worst := math.NaN()
	for _, v := range days {
		if math.IsNaN(v) {
			continue
		}
		n++
		lo = math.Min(lo, v)
		if math.IsNaN(worst) || v < worst {
			worst = v
		}
	}
	if n == 0 {
		return template.HTML(`<span class="muted">no data</span>`)
	}
	// The scale runs from a little below the lowest day (or objective) to
	// 100 %, so a healthy month is a flat line at the top.
	lo = math.Max(0, lo-(1-lo)*0.2)
	span := math.Max(1-lo, 1e-9)
	y := func(v float64) float64 { return h - 2 - (v-lo)/span*(h-4) }
	var pts, dots strings.Builder
	step := (w - 4) / math.Max(float64(len(days)-1), 1)
	for i, v := range days {
		if math.IsNaN(v) {
			continue
		}
		x := 2 + float64(i)*step
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y(v))
		// A dot per day: a month with one day of data still shows.
		color := "#1d4ed8"
		if v < objective {
			color = "#b91c1c"
		}
		fmt.Fprintf(&dots, `<circle cx="%.1f" cy="%.1f" r="1.8" fill="%s"/>`, x, y(v), color)
	}
	title := fmt.Sprintf("%d-day attainment: lowest day %s, objective %s", len(days), peoplePct(worst), peoplePct(objective))
	return template.HTML(fmt.Sprintf(`<svg class="spark" role="img" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f"><title>%s</title>`+
		`<line x1="0" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#b45309" stroke-dasharray="2 2" stroke-width="1"/>`+
		`<polyline fill="none" stroke="#1d4ed8" stroke-width="1.5" points="%s"/>%s</svg>`,
		w, h, w, h, template.HTMLEscapeString(title), w, y(objective), y(objective), strings.TrimSpace(pts.String()), dots.String()))
}

// budgetBar draws the budget left as a bar with its rounded share.
func budgetBar(remaining *float64) template.HTML {
	if remaining == nil {
		return template.HTML(`<span class="muted">no events</span>`)
	}
	r := *remaining
	fill, color := math.Max(0, math.Min(1, r)), "#15803d"
	switch {
	case r < 0.25:
		color = "#b91c1c"
	case r < 0.5:
		color = "#b45309"
	}
	label := peoplePct(r) + " left"
	if r < 0 {
		label = "none left (" + peoplePct(-r) + " overspent)"
	}
	return template.HTML(fmt.Sprintf(`<svg class="bar" role="img" width="80" height="10" viewBox="0 0 80 10"><title>error budget %s</title>`+
		`<rect width="80" height="10" fill="#e5e7eb"/><rect width="%.1f" height="10" fill="%s"/></svg> <span class="small">%s</span>`,
		template.HTMLEscapeString(label), 80*fill, color, template.HTMLEscapeString(label)))
}

// glance is what the executive view adds to a service's row.
type glance struct {
	Spark    template.HTML
	Bar      template.HTML
	Forecast string
}

// serviceGlance works out a service's sparkline (the worst SLO's
// attainment each day of the last 30), its least budget left and its
// soonest forecast.
func (u *UI) serviceGlance(ctx context.Context, sts []*engine.Status, now time.Time) glance {
	var g glance
	var least *float64
	var soonest *engine.Forecast
	objective := 0.0
	days := make([]float64, 30)
	for i := range days {
		days[i] = math.NaN()
	}
	for i, st := range sts {
		if r := st.Budget.RemainingRatio; st.SLI != nil && (least == nil || r < *least) {
			least = &r
		}
		if f := st.Exhaustion; f != nil && (soonest == nil || sooner(f, soonest)) {
			soonest = f
		}
		objective = math.Max(objective, st.Objective)
		// A service's first ten SLO groups draw its line: enough to show
		// a bad day, bounded for services with many groups.
		if u.opts.History == nil || i >= 10 {
			continue
		}
		end := now.Truncate(time.Minute)
		pts, err := u.opts.History.History(ctx, st.Key, end.Add(-30*24*time.Hour), end, 24*time.Hour)
		if err != nil {
			continue
		}
		for _, p := range pts {
			i := 29 - int(end.Sub(p.At)/(24*time.Hour))
			if i < 0 || i >= 30 || p.ErrorRatio == nil || p.Coverage == 0 {
				continue
			}
			if a := 1 - *p.ErrorRatio; math.IsNaN(days[i]) || a < days[i] {
				days[i] = a
			}
		}
	}
	g.Spark = sparkline(days, objective)
	g.Bar = budgetBar(least)
	g.Forecast = forecastText(soonest)
	if soonest == nil && least == nil {
		g.Forecast = "–"
	}
	return g
}

func sooner(a, b *engine.Forecast) bool {
	da, oka := a.In()
	db, okb := b.In()
	if oka != okb {
		return oka
	}
	return oka && da < db
}

// burning is an SLO group on the on-call view's "burning now" list.
type burning struct {
	Status   *engine.Status
	Forecast string
	// In orders the list: time to exhaustion, MaxInt64 when none.
	In      time.Duration
	BurnNow string
	Since   time.Time
	Deploy  *store.Deploy
}

// burningNow lists the SLO groups that burn faster than their budget
// allows over 1h, or have an alert pending or firing, soonest exhaustion
// first, each with the last deploy of its service before the burn began.
func burningNow(snap *engine.Snapshot, deps []store.Deploy) []burning {
	var out []burning
	for _, st := range snap.Statuses {
		w := st.WindowStat(time.Hour)
		active := hasActive(st)
		if !active && (w == nil || w.BurnRate == nil || *w.BurnRate <= 1) {
			continue
		}
		b := burning{Status: st, Forecast: forecastText(st.Exhaustion), In: math.MaxInt64, BurnNow: "–"}
		if st.Exhaustion != nil {
			if d, ok := st.Exhaustion.In(); ok {
				b.In = d
			}
		}
		if w != nil && w.BurnRate != nil {
			b.BurnNow = strconv.FormatFloat(*w.BurnRate, 'f', 1, 64) + "× over 1h"
		}
		for _, a := range st.Alerts {
			if (a.State == slo.Pending || a.State == slo.Firing) && (b.Since.IsZero() || a.Since.Before(b.Since)) {
				b.Since = a.Since
			}
		}
		before := b.Since
		if before.IsZero() {
			before = st.EvaluatedAt
		}
		for i := range deps { // newest first
			if deps[i].Service == st.Service && !deps[i].At.After(before) {
				b.Deploy = &deps[i]
				break
			}
		}
		out = append(out, b)
	}
	slices.SortStableFunc(out, func(a, b burning) int {
		return cmp.Or(cmp.Compare(a.In, b.In), strings.Compare(a.Status.Key, b.Status.Key))
	})
	return out
}

// projectBudget extends a budget chart by the status's headline forecast:
// a dashed line from the budget left now to zero at the projected
// exhaustion, the time axis widened to show it (at most by half the
// range shown; beyond that the line stops at the edge, on its way down).
func projectBudget(c *LineChart, st *engine.Status) {
	f := st.Exhaustion
	if c == nil || f == nil || st.SLI == nil {
		return
	}
	d, ok := f.In()
	r := st.Budget.RemainingRatio
	if !ok || d <= 0 || r <= 0 || math.IsNaN(r) {
		return
	}
	now := st.EvaluatedAt
	span := c.To.Sub(c.From)
	ext := min(d, span/2)
	end := r * (1 - float64(ext)/float64(d))
	c.To = c.To.Add(ext)
	c.Projection = []Sample{{At: now, V: &r}, {At: now.Add(ext), V: &end}}
	c.ProjectionLabel = "projected: " + forecastText(f) + ", at " + ts(now.Add(d))
	c.Desc += " Projected: " + forecastText(f) + "."
}

// DeployImpacts measures a deploy's impact on the error budget of each SLO
// of its service; the app implements it over the store and the engine.
// It is safe for concurrent use.
type DeployImpacts interface {
	Impact(d store.Deploy) []engine.DeployImpact
}

// deployImpactRow is one deploy's impact on one SLO group, for people.
type deployImpactRow struct {
	Deploy        store.Deploy
	SLO           string
	After, Before string
	Span          string
	Worse         bool
	Running       bool
}

// reportRows returns a deploy's impact on every SLO group of its service.
func reportRows(rep *engine.DeployReport) []deployImpactRow {
	if rep == nil {
		return nil
	}
	out := make([]deployImpactRow, 0, len(rep.Impact))
	for _, imp := range rep.Impact {
		out = append(out, deployImpactRow{Deploy: rep.Deploy, SLO: imp.SLO, After: peoplePct(imp.After.Budget), Before: peoplePct(imp.Before.Budget),
			Span: imp.Span, Worse: imp.Excess() > 0.01, Running: !imp.Complete})
	}
	return out
}

// lastDeployBefore returns the service's newest deploy before t (within
// a day) with its impact, nil when there is none or impacts are off. A
// gate's marker counts only when it passed.
func (u *UI) lastDeployBefore(ctx context.Context, service string, t time.Time) (*engine.DeployReport, error) {
	if u.opts.DeployImpact == nil || u.opts.Records == nil || service == "" {
		return nil, nil
	}
	deps, _, err := u.opts.Records.Deploys(ctx, store.DeployFilter{Service: service, From: t.Add(-24 * time.Hour), To: t, Limit: 20})
	if err != nil {
		return nil, fmt.Errorf("deploys of %s before %s: %w", service, ts(t), err)
	}
	for _, d := range deps { // newest first
		if d.Source == store.DeploySourceGate && d.Verdict != string(gate.StatePass) {
			continue
		}
		return &engine.DeployReport{Deploy: d, Impact: u.opts.DeployImpact.Impact(d)}, nil
	}
	return nil, nil
}

// impactRows returns the impact of the newest five deploys on SLO group
// key.
func (u *UI) impactRows(key string, deps []store.Deploy) []deployImpactRow {
	if u.opts.DeployImpact == nil {
		return nil
	}
	var out []deployImpactRow
	for _, d := range deps[:min(len(deps), 5)] {
		for _, imp := range u.opts.DeployImpact.Impact(d) {
			if imp.SLO != key {
				continue
			}
			out = append(out, deployImpactRow{Deploy: d, After: peoplePct(imp.After.Budget), Before: peoplePct(imp.Before.Budget),
				Span: imp.Span, Worse: imp.Excess() > 0.01, Running: !imp.Complete})
		}
	}
	return out
}
