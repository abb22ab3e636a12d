package slo

import "math"

// A time slice is judged good or bad as a whole. These functions turn what
// was observed in one slice into slice counts: Total is 1 when the slice
// had data, Good is 1 (or, for RatioTimeslices, the slice's ratio) when it
// met its condition. A slice without data counts for nothing.

// RatioSlice judges a slice by its event ratio against objective (a ratio).
func RatioSlice(c Counts, objective float64) Counts {
	r, ok := c.Ratio()
	if !ok {
		return Counts{}
	}
	if r >= objective-1e-12 {
		return Counts{Good: 1, Total: 1}
	}
	return Counts{Total: 1}
}

// RatioTimeslice returns the slice's ratio as its good count, for OpenSLO's
// RatioTimeslices, where the SLI is the mean of per-slice ratios.
func RatioTimeslice(c Counts) Counts {
	r, ok := c.Ratio()
	if !ok {
		return Counts{}
	}
	return Counts{Good: r, Total: 1}
}

// ValueSlice judges a slice by values observed in it (a threshold query, a
// percentile, a probe): good when every value meets cond. NaN values are
// missing data.
func ValueSlice(values []float64, cond func(float64) bool) Counts {
	seen := false
	for _, v := range values {
		if math.IsNaN(v) {
			continue
		}
		seen = true
		if !cond(v) {
			return Counts{Total: 1}
		}
	}
	if !seen {
		return Counts{}
	}
	return Counts{Good: 1, Total: 1}
}
