package gate

import (
	"cmp"
	"fmt"

	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/spec"
)

// CanaryPlan answers before a rollout how long a gate's canary analysis
// must run for each configured check to reach its power, and whether
// the gate's own interval (or lookback, for a one-shot analysis) is that
// long. Each run judges one interval's data on its own, so it is the
// interval, not the runs together, that must be long enough.
type CanaryPlan struct {
	Gate string `json:"gate"`
	// IntervalMinutes is the data one analysis run sees: spec.canary
	// interval, or lookback for a one-shot analysis.
	IntervalMinutes canary.Float `json:"intervalMinutes"`
	// Enough says IntervalMinutes reaches Plan.Minutes80.
	Enough bool        `json:"enough"`
	Plan   canary.Plan `json:"plan"`
}

// PlanCanary plans the canary check of gate g at the rates of in. When
// in.SamplesPerMinute is zero, a sample metric is taken to give one
// sample per query step (one series; a query returning several series
// gives proportionally more). Errors wrap ErrInvalidRequest.
func PlanCanary(g *spec.Gate, in canary.PlanInput) (*CanaryPlan, error) {
	c := g.Spec.Canary
	if c == nil {
		return nil, fmt.Errorf("%w: gate %q has no canary check", ErrInvalidRequest, g.Name())
	}
	if in.SamplesPerMinute == 0 {
		in.SamplesPerMinute = 60 / cmp.Or(c.Step.D(), DefaultStep).Seconds()
	}
	p, err := canary.PlanAnalysis(canaryConfig(c), in)
	if err != nil {
		return nil, fmt.Errorf("%w: gate %q: %w", ErrInvalidRequest, g.Name(), err)
	}
	interval := cmp.Or(c.Interval.D(), c.Lookback.D(), DefaultLookback)
	cp := &CanaryPlan{Gate: g.Name(), IntervalMinutes: canary.Float(interval.Minutes()), Plan: p}
	cp.Enough = float64(cp.IntervalMinutes) >= float64(p.Minutes80)
	return cp, nil
}

// Plan is PlanCanary for the gate named name; ErrUnknownGate when there
// is none.
func (r *Runner) Plan(name string, in canary.PlanInput) (*CanaryPlan, error) {
	g := r.Gate(name)
	if g == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownGate, name)
	}
	return PlanCanary(g, in)
}
