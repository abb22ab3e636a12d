package canary

import (
	"fmt"
	"math"
	"sort"
)

// TailResult is the outcome of the tail exceedance test.
type TailResult struct {
	// Threshold is the baseline's r-th largest value, its empirical
	// percentile.
	Threshold float64
	// R is the rank from the top of the threshold in the baseline.
	R int
	// Exceed is the number of canary values strictly above Threshold,
	// out of N; Expected is its mean under the null hypothesis.
	Exceed   int
	N        int
	Expected float64
	PValue   float64
}

// TailExceedance tests whether more of x (canary) than expected lies above
// the percentile-th percentile of y (baseline), e.g. 99: a new slow tail.
// The threshold is the baseline's r-th largest value with
// r = max(1, floor(len(y) * (1 - percentile/100))), percentile 100 meaning
// the baseline maximum. Under the null hypothesis that both samples come
// from one continuous distribution the count above it is exactly
// beta-binomial (n = len(x), alpha = r, beta = len(y) - r + 1), which
// accounts for the threshold being estimated from the baseline; the
// p-value is P(count >= observed) and equals
// scipy.stats.betabinom.sf(k-1, n, r, len(y)-r+1). Ties with the
// threshold do not count, which only makes the test conservative.
func TailExceedance(x, y []float64, percentile float64) (TailResult, error) {
	if len(x) == 0 || len(y) == 0 {
		return TailResult{}, ErrEmpty
	}
	if hasNaN(x) || hasNaN(y) {
		return TailResult{}, ErrNaN
	}
	if !(percentile > 0 && percentile <= 100) {
		return TailResult{}, fmt.Errorf("tail percentile %v must be in (0, 100]", percentile)
	}
	return tailSorted(sortedCopy(x), sortedCopy(y), percentile), nil
}

// tailRank is the rank from the top of the percentile in m values.
func tailRank(m int, percentile float64) int {
	return max(1, int(math.Floor(float64(m)*(1-percentile/100)+1e-9)))
}

func tailSorted(xs, ys []float64, percentile float64) TailResult {
	m, n := len(ys), len(xs)
	r := tailRank(m, percentile)
	t := ys[m-r]
	// Canary values strictly above t.
	above := n - sort.Search(n, func(i int) bool { return xs[i] > t })
	return TailResult{
		Threshold: t,
		R:         r,
		Exceed:    above,
		N:         n,
		Expected:  float64(n) * float64(r) / float64(m+1),
		PValue:    betaBinomSF(int64(above), int64(n), float64(r), float64(m-r+1)),
	}
}
