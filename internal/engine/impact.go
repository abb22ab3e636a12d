package engine

import (
	"time"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/store"
)

// DefaultImpactSpan is how long after (and before) a deploy its impact on
// the error budget is measured.
const DefaultImpactSpan = 30 * time.Minute

// Consumption is the error budget an SLO group spent over a span.
type Consumption struct {
	// From and To are the span as the rollup answers it: minutes for the
	// last 6h, 5-minute steps for 3 days, hours beyond.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Bad and Total are the span's bad and all events (or slices).
	Bad   float64 `json:"bad"`
	Total float64 `json:"total"`
	// Budget is Bad as a share of the error budget of the SLO window
	// ending at To: 0.02 is 2% of the budget.
	Budget float64 `json:"budget"`
}

// DeployImpact is the budget one SLO (group) consumed in the span after a
// deploy, against the same span before it.
type DeployImpact struct {
	SLO    string      `json:"slo"` // the status key
	Span   string      `json:"span"`
	Before Consumption `json:"before"`
	After  Consumption `json:"after"`
	// Complete is false while the span after the deploy is still running
	// (After covers what has passed).
	Complete bool `json:"complete"`
}

// Excess is the budget share the span after the deploy consumed beyond
// the span before it; negative when the deploy improved things.
func (d DeployImpact) Excess() float64 { return d.After.Budget - d.Before.Budget }

// DeployImpact returns, for every SLO group of service this replica
// evaluates (composites have no events of their own), the budget consumed
// in span after at and in the same span before it. Spans end at the
// newest folded minute at most.
func (e *Engine) DeployImpact(service string, at time.Time, span time.Duration) []DeployImpact {
	if span < time.Minute {
		span = DefaultImpactSpan
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []DeployImpact
	for _, rt := range e.ordered {
		if rt.plan.composite != nil || rt.plan.slo.Spec.Service != service {
			continue
		}
		rt.mu.RLock()
		for _, g := range rt.list {
			if g.roll == nil {
				continue
			}
			out = append(out, rt.impact(g, at, span))
		}
		rt.mu.RUnlock()
	}
	return out
}

// impact measures one group around a deploy at at.
func (rt *sloRuntime) impact(g *groupRuntime, at time.Time, span time.Duration) DeployImpact {
	n := slo.Minute(span / time.Minute)
	m := slo.MinuteOf(at)
	end := min(m+n, g.roll.next)
	return DeployImpact{
		SLO: g.statusKey, Span: durationString(span),
		Before: rt.consumption(g, m-n, m), After: rt.consumption(g, m, max(end, m)),
		Complete: m+n <= g.roll.next,
	}
}

// consumption is the budget spent over [from, to) as a share of the
// budget of the SLO window ending at to.
func (rt *sloRuntime) consumption(g *groupRuntime, from, to slo.Minute) Consumption {
	p := rt.plan
	w := g.roll.window(from, to)
	c := Consumption{From: w.from.Time(), To: w.to.Time(), Bad: w.counts.Bad(), Total: w.counts.Total}
	wfrom := to - slo.Minute(p.window/time.Minute)
	if p.calendar != "" {
		start, _ := slo.CalendarPeriod((to - 1).Time(), p.calendar, p.loc)
		wfrom = slo.CeilMinute(start)
	}
	if allowed := g.roll.window(wfrom, to).counts.Total * p.budget; allowed > 0 {
		c.Budget = c.Bad / allowed
	}
	return c
}

// DeployReport is a deploy marker with its impact on each SLO group of
// its service.
type DeployReport struct {
	Deploy store.Deploy   `json:"deploy"`
	Impact []DeployImpact `json:"impact"`
}
