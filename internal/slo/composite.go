package slo

import "math"

// Part is one weighted child of a composite SLO, as seen over one window.
type Part struct {
	Weight float64
	// ErrorRatio is the child's bad/total over the window.
	ErrorRatio float64
	// Budget is the child's budget fraction.
	Budget float64
	// NoData is true when the child has no telemetry over the window.
	NoData bool
}

// CompositeErrorRatio is the weighted mean of the children's error ratios,
// each first normalised to the composite's budget by its own budget: a
// child that spends 50% of its budget contributes as if the composite had
// spent 50% of its own. ok is false when any child has no data: a composite
// is never healthier than what it can see.
//
//	e = budget * sum(w_i * e_i / budget_i) / sum(w_i)
func CompositeErrorRatio(parts []Part, budget float64) (e float64, ok bool) {
	var num, den float64
	for _, p := range parts {
		if p.NoData || p.Budget <= 0 {
			return 0, false
		}
		num += p.Weight * p.ErrorRatio / p.Budget
		den += p.Weight
	}
	if den <= 0 {
		return 0, false
	}
	return math.Min(budget*num/den, 1), true
}
