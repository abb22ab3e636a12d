package slo

import (
	"math"
	"time"
)

// Forecast methods: how a time to exhaustion was projected.
//
//   - MethodBurn assumes the burn rate of one window (an alert window, say
//     1h) goes on unchanged. For a rolling SLO window it also lets the
//     oldest minutes roll out of the window as time passes, so an old
//     incident stops counting when it leaves the window, and a steady burn
//     below 1 never exhausts (see ExhaustionAtBurn).
//   - MethodTrend fits a straight line by least squares to the remaining
//     budget sampled over a trend window (the last day or week) and
//     extends it to zero (see ExhaustionByTrend).
const (
	MethodBurn  = "burn"
	MethodTrend = "trend"
)

// RollOffSteps is how many steps ExhaustionAtBurn looks ahead over one
// SLO window: the cost of a projection does not grow with the window, and
// within a step the roll-off is linear (a 30d window has 7.5h steps).
const RollOffSteps = 96

// ExhaustionAtBurn returns how long until the remaining budget (a ratio of
// the whole window's budget) is gone if the burn rate stays at burn, and
// whether that happens at all.
//
// For a rolling window of length length, lastConsumed(d) is the share of
// the window's budget consumed by the last d of the window (so
// lastConsumed(length) = 1 - remaining). After h the budget consumed is
//
//	C(h) = 1 - remaining - (consumed by the oldest h) + burn*h/length
//
// assuming steady traffic; exhaustion is the first h with C(h) >= 1, found
// in RollOffSteps steps with linear interpolation inside a step. After one
// whole window C = burn, so a burn below 1 exhausts only if the minutes
// that stay in the window already spend the rest.
//
// A nil lastConsumed (calendar windows: nothing rolls out before the
// period resets) gives remaining*length/burn.
func ExhaustionAtBurn(remaining, burn float64, length time.Duration, lastConsumed func(d time.Duration) float64) (time.Duration, bool) {
	switch {
	case math.IsNaN(remaining) || math.IsNaN(burn) || length <= 0:
		return 0, false
	case remaining <= 0:
		return 0, true
	case burn <= 0:
		return 0, false
	}
	if lastConsumed == nil {
		return clampDuration(remaining * float64(length) / burn), true
	}
	// Spending at burn adds at most burn over a window: if that is below
	// what is left, the budget cannot run out, whatever rolls out.
	if burn < remaining {
		return 0, false
	}
	consumed := 1 - remaining
	// gain(h) is how much more of the budget is consumed after h than now.
	gain := func(h time.Duration) float64 {
		dropped := consumed - lastConsumed(length-h)
		return burn*float64(h)/float64(length) - dropped
	}
	step := length / RollOffSteps
	prevH, prevG := time.Duration(0), 0.0
	for i := 1; i <= RollOffSteps; i++ {
		h := time.Duration(i) * step
		if i == RollOffSteps {
			h = length
		}
		g := gain(h)
		if g >= remaining-1e-12 {
			// Linear between the previous step and this one.
			f := 1.0
			if g > prevG {
				f = (remaining - prevG) / (g - prevG)
			}
			return prevH + time.Duration(math.Max(0, math.Min(1, f))*float64(h-prevH)), true
		}
		prevH, prevG = h, g
	}
	return 0, false
}

// TrendPoint is the remaining budget at one past time.
type TrendPoint struct {
	At        time.Time
	Remaining float64
}

// ExhaustionByTrend fits remaining = a + slope*t by least squares to the
// points and returns how long after now the line, started at the current
// remaining budget, reaches zero; ok is false with fewer than three points
// or a line that does not fall. slope is the fitted change of the
// remaining budget per hour (negative while spending).
func ExhaustionByTrend(points []TrendPoint, remaining float64, now time.Time) (d time.Duration, slope float64, ok bool) {
	if len(points) < 3 || math.IsNaN(remaining) {
		return 0, 0, false
	}
	// Hours relative to now keep the sums well conditioned.
	var n, sx, sy, sxx, sxy float64
	for _, p := range points {
		if math.IsNaN(p.Remaining) || math.IsInf(p.Remaining, 0) {
			continue
		}
		x := p.At.Sub(now).Hours()
		n++
		sx += x
		sy += p.Remaining
		sxx += x * x
		sxy += x * p.Remaining
	}
	den := n*sxx - sx*sx
	if n < 3 || den <= 0 {
		return 0, 0, false
	}
	slope = (n*sxy - sx*sy) / den
	if remaining <= 0 {
		return 0, slope, true
	}
	// A slope this flat would take longer than a century: call it flat.
	if slope >= -1e-9 {
		return 0, slope, false
	}
	return clampDuration(remaining / -slope * float64(time.Hour)), slope, true
}

// clampDuration converts nanoseconds to a duration without overflow.
func clampDuration(ns float64) time.Duration {
	if ns >= math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return time.Duration(ns)
}
