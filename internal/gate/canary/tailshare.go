package canary

import (
	"fmt"
	"math"
	"sort"
)

// TailShareResult is the outcome of the tail-share test.
type TailShareResult struct {
	// K is the number of pooled values above Threshold, Canary how many
	// of them are canary values; Expected is its mean under the null
	// hypothesis, K*N/(M+N).
	K         int
	Canary    int
	Expected  float64
	Threshold float64
	// M and N are the baseline and canary sizes.
	M, N   int
	PValue float64
}

// tailShareK is how many of the pooled sample's largest values the
// tail-share test looks at for a canary of n samples and the tail
// percentile: the number of canary samples a new tail of share
// 1 - percentile/100 puts there, n * (1 - percentile/100), at least one.
// For n = 500 at p99 that is 5, the pooled sample's 99.5th percentile of
// 1,000 values.
func tailShareK(n int, percentile float64) int {
	return max(1, int(math.Round(float64(n)*(1-percentile/100))))
}

// TailShare tests whether more of the pooled sample's k largest values
// belong to x (canary) than chance would put there, k from tailShareK.
// Under the null hypothesis that the labels of the pooled values are
// exchangeable, the canary's count among any set of pooled values chosen
// from the pooled values alone is hypergeometric: k draws from n canary
// and m baseline values. The p-value P(count >= observed) equals
// scipy.stats.hypergeom.sf(count-1, m+n, n, k). With ties at the k-th
// largest value only the values strictly above the (k+1)-th largest
// count, and k shrinks accordingly: exact for the permutation
// distribution, never anti-conservative.
func TailShare(x, y []float64, percentile float64) (TailShareResult, error) {
	if len(x) == 0 || len(y) == 0 {
		return TailShareResult{}, ErrEmpty
	}
	if hasNaN(x) || hasNaN(y) {
		return TailShareResult{}, ErrNaN
	}
	if !(percentile > 0 && percentile < 100) {
		return TailShareResult{}, fmt.Errorf("tail percentile %v must be in (0, 100)", percentile)
	}
	return tailShareSorted(sortedCopy(x), sortedCopy(y), percentile), nil
}

func tailShareSorted(xs, ys []float64, percentile float64) TailShareResult {
	n, m := len(xs), len(ys)
	k := min(tailShareK(n, percentile), n+m)
	res := TailShareResult{M: m, N: n, PValue: 1}
	// The (k+1)-th largest pooled value, found by merging from the top;
	// with k = m+n every value counts and the threshold is -Inf.
	t := math.Inf(-1)
	i, j := n-1, m-1
	for step := 0; step <= k && (i >= 0 || j >= 0); step++ {
		var v float64
		if j < 0 || (i >= 0 && xs[i] >= ys[j]) {
			v = xs[i]
			i--
		} else {
			v = ys[j]
			j--
		}
		if step == k {
			t = v
		}
	}
	res.Threshold = t
	above := func(s []float64) int { return len(s) - sort.Search(len(s), func(i int) bool { return s[i] > t }) }
	cx, cy := above(xs), above(ys)
	res.K, res.Canary = cx+cy, cx
	res.Expected = float64(res.K) * float64(n) / float64(n+m)
	if res.K > 0 {
		res.PValue = hyperSF(int64(cx), int64(n), int64(m), int64(res.K))
	}
	return res
}
