// Package slo is the arithmetic of service level objectives: error budgets,
// burn rates, windows (rolling and calendar), time slices, corrections,
// composite SLOs and the multi-window multi-burn-rate alert conditions.
//
// Everything here is a pure function of its arguments: no clock, no I/O.
// The engine feeds it counts; the spec package has already converted
// objectives from percent to ratios (spec.Objective), so this package only
// ever sees ratios and budget fractions.
package slo

import (
	"math"
	"time"
)

// Counts are the events (or time slices) of a window: how many there were
// and how many were good.
type Counts struct {
	Good  float64
	Total float64
}

// Add returns the sum of two counts.
func (c Counts) Add(o Counts) Counts { return Counts{c.Good + o.Good, c.Total + o.Total} }

// Sub returns c minus o.
func (c Counts) Sub(o Counts) Counts { return Counts{c.Good - o.Good, c.Total - o.Total} }

// Bad returns the events that were not good, never below zero.
func (c Counts) Bad() float64 { return math.Max(c.Total-c.Good, 0) }

// Ratio returns good/total, the SLI. ok is false when there were no events:
// an empty window is neither good nor bad.
func (c Counts) Ratio() (sli float64, ok bool) {
	if c.Total <= 0 {
		return 0, false
	}
	return clamp01(c.Good / c.Total), true
}

// ErrorRatio returns bad/total; ok is false when there were no events.
func (c Counts) ErrorRatio() (float64, bool) {
	if c.Total <= 0 {
		return 0, false
	}
	return clamp01(c.Bad() / c.Total), true
}

func clamp01(x float64) float64 { return math.Min(math.Max(x, 0), 1) }

// BurnRate is how fast a window spends the error budget: its error ratio
// divided by the budget fraction (1 - objective). 1 spends exactly the
// budget over the SLO window; 14.4 spends a 30-day budget in 50 hours.
// ok is false when the window has no events.
func BurnRate(c Counts, budget float64) (float64, bool) {
	e, ok := c.ErrorRatio()
	if !ok || budget <= 0 {
		return 0, false
	}
	return e / budget, true
}

// Budget is the error budget of a window.
type Budget struct {
	// Fraction is 1 - objective, e.g. 0.001 for 99.9%.
	Fraction float64 `json:"fraction"`
	// Total is the events (or slices) the window saw.
	Total float64 `json:"total"`
	// Allowed is how many of them may be bad: Total * Fraction.
	Allowed float64 `json:"allowed"`
	// Consumed is how many were bad.
	Consumed float64 `json:"consumed"`
	// Remaining is Allowed - Consumed; negative when overspent.
	Remaining float64 `json:"remaining"`
	// ConsumedRatio is Consumed / Allowed: 0.5 means half of the budget
	// is gone, above 1 means overspent. Zero when there were no events.
	ConsumedRatio float64 `json:"consumedRatio"`
	// RemainingRatio is 1 - ConsumedRatio.
	RemainingRatio float64 `json:"remainingRatio"`
}

// ComputeBudget returns the error budget of window counts c for a budget
// fraction. A window without events has its whole budget left.
func ComputeBudget(c Counts, fraction float64) Budget {
	b := Budget{Fraction: fraction, Total: c.Total, Consumed: c.Bad()}
	b.Allowed = c.Total * fraction
	b.Remaining = b.Allowed - b.Consumed
	if b.Allowed > 0 {
		b.ConsumedRatio = b.Consumed / b.Allowed
	} else if b.Consumed > 0 {
		b.ConsumedRatio = math.Inf(1)
	}
	b.RemainingRatio = 1 - b.ConsumedRatio
	return b
}

// TimeBudget expresses a budget in time: how long a full outage the whole
// budget of a window of length w allows, and how much of that is left.
// For time-slice SLOs this is exact (bad slices times their length); for
// event SLOs it assumes traffic spread evenly over the window.
func TimeBudget(b Budget, w time.Duration) (allowed, remaining time.Duration) {
	allowed = time.Duration(float64(w) * b.Fraction)
	remaining = time.Duration(float64(allowed) * b.RemainingRatio)
	return allowed, remaining
}

// SLI returns the ratio of a window, or NaN when it had no events.
func SLI(c Counts) float64 {
	r, ok := c.Ratio()
	if !ok {
		return math.NaN()
	}
	return r
}
