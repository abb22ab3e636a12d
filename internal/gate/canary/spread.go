package canary

import (
	"math"
)

// SpreadResult is the outcome of the Brown-Forsythe test for equal spread
// of two samples.
type SpreadResult struct {
	// W is the test statistic, scipy's levene(x, y, center='median').
	W float64
	// PValue is the two-sided p-value, scipy's.
	PValue float64
	// MeanAbsDevX and MeanAbsDevY are the mean absolute deviations from
	// each sample's median: the spreads being compared.
	MeanAbsDevX, MeanAbsDevY float64
}

// OneSided returns the p-value for the alternative that x is more spread
// out than y (Greater) or less (Less). With two groups W is the square of
// the pooled two-sample t statistic on the absolute deviations, so the
// one-sided p-value is half the two-sided one in the observed direction.
func (r SpreadResult) OneSided(alt Alternative) float64 {
	if alt == TwoSided || math.IsNaN(r.PValue) {
		return r.PValue
	}
	larger := r.MeanAbsDevX > r.MeanAbsDevY
	if (alt == Greater) == larger && r.MeanAbsDevX != r.MeanAbsDevY {
		return r.PValue / 2
	}
	return 1 - r.PValue/2
}

// BrownForsythe tests whether x and y have the same spread, the Levene
// test centred on the medians, robust to skewed data such as latencies.
// It reproduces scipy.stats.levene(x, y, center='median'). When both
// samples have no spread at all the p-value is 1.
func BrownForsythe(x, y []float64) (SpreadResult, error) {
	if len(x) == 0 || len(y) == 0 {
		return SpreadResult{}, ErrEmpty
	}
	if hasNaN(x) || hasNaN(y) {
		return SpreadResult{}, ErrNaN
	}
	return brownForsytheSorted(sortedCopy(x), sortedCopy(y)), nil
}

func brownForsytheSorted(xs, ys []float64) SpreadResult {
	groups := [2][]float64{xs, ys}
	var zbar [2]float64
	var ni [2]float64
	ntot := 0.0
	for g, s := range groups {
		med := medianSorted(s)
		sum := 0.0
		for _, v := range s {
			sum += math.Abs(v - med)
		}
		ni[g] = float64(len(s))
		zbar[g] = sum / ni[g]
		ntot += ni[g]
	}
	const k = 2.0
	all := (zbar[0]*ni[0] + zbar[1]*ni[1]) / ntot
	numer := (ntot - k) * (ni[0]*(zbar[0]-all)*(zbar[0]-all) + ni[1]*(zbar[1]-all)*(zbar[1]-all))
	dvar := 0.0
	for g, s := range groups {
		med := medianSorted(s)
		for _, v := range s {
			d := math.Abs(v-med) - zbar[g]
			dvar += d * d
		}
	}
	res := SpreadResult{MeanAbsDevX: zbar[0], MeanAbsDevY: zbar[1]}
	denom := (k - 1) * dvar
	switch {
	case ntot <= k:
		res.W, res.PValue = math.NaN(), 1
	case denom == 0 && numer == 0:
		res.W, res.PValue = math.NaN(), 1
	case denom == 0:
		res.W, res.PValue = math.Inf(1), 0
	default:
		res.W = numer / denom
		res.PValue = fSF(res.W, k-1, ntot-k)
	}
	return res
}

// medianSorted is numpy's median of a sorted sample.
func medianSorted(s []float64) float64 {
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// quantileSorted is the q-quantile (0..1) of a sorted sample with linear
// interpolation between order statistics (numpy's default, R type 7).
func quantileSorted(s []float64, q float64) float64 {
	n := len(s)
	if n == 0 {
		return math.NaN()
	}
	h := q * float64(n-1)
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return s[n-1]
	}
	return s[lo] + (h-float64(lo))*(s[lo+1]-s[lo])
}
