package canary

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Alternative is the alternative hypothesis of a two-sample test, stated
// for the first sample against the second (canary against baseline).
type Alternative int

// Alternatives. Greater means the first sample tends to be larger.
const (
	TwoSided Alternative = iota
	Less
	Greater
)

// String returns the scipy spelling of the alternative.
func (a Alternative) String() string {
	switch a {
	case Less:
		return "less"
	case Greater:
		return "greater"
	}
	return "two-sided"
}

// Method selects how the null distribution of a rank statistic is
// computed.
type Method int

// Methods. MethodAuto mirrors scipy.stats.mannwhitneyu(method="auto"):
// exact when one sample has at most 8 values and there are no ties,
// the normal approximation otherwise.
const (
	MethodAuto Method = iota
	MethodExact
	MethodAsymptotic
)

// String names the method.
func (m Method) String() string {
	switch m {
	case MethodExact:
		return "exact"
	case MethodAsymptotic:
		return "asymptotic"
	}
	return "auto"
}

// Errors of the statistics functions.
var (
	// ErrEmpty reports a sample without values.
	ErrEmpty = errors.New("empty sample")
	// ErrNaN reports a NaN in a sample; judgment removes or replaces NaNs
	// before testing, the tests themselves refuse them.
	ErrNaN = errors.New("sample contains NaN")
	// ErrNotFinite reports a NaN or infinite value where differences of
	// values are taken (Hodges-Lehmann).
	ErrNotFinite = errors.New("sample contains NaN or infinity")
	// ErrTooLarge reports an exact distribution that would not fit in
	// memory or time.
	ErrTooLarge = errors.New("samples too large for the exact distribution")
)

// MannWhitneyResult is the outcome of a Mann-Whitney U test.
type MannWhitneyResult struct {
	// U is the statistic of the first sample: the number of pairs (x, y)
	// with x > y plus half the pairs with x == y (scipy's U1).
	U float64
	// PValue for the requested alternative.
	PValue float64
	// Z is the standardized statistic of the normal approximation (with
	// continuity correction); NaN for the exact method.
	Z float64
	// Method actually used (never MethodAuto).
	Method Method
}

// MannWhitneyU tests whether x and y come from the same distribution
// against the alternative that x is stochastically smaller, larger or
// either. It reproduces scipy.stats.mannwhitneyu(x, y, use_continuity=True,
// alternative, method) of scipy 1.10: the exact null distribution for
// small samples without ties, otherwise the normal approximation with tie
// and continuity correction.
func MannWhitneyU(x, y []float64, alt Alternative, method Method) (MannWhitneyResult, error) {
	if len(x) == 0 || len(y) == 0 {
		return MannWhitneyResult{}, ErrEmpty
	}
	if hasNaN(x) || hasNaN(y) {
		return MannWhitneyResult{}, ErrNaN
	}
	xs, ys := sortedCopy(x), sortedCopy(y)
	return mannWhitneySorted(xs, ys, alt, method)
}

// mannWhitneySorted is MannWhitneyU on sorted samples.
func mannWhitneySorted(xs, ys []float64, alt Alternative, method Method) (MannWhitneyResult, error) {
	return mannWhitneyRanked(xs, ys, rankSums(xs, ys), alt, method)
}

// mannWhitneyRanked is mannWhitneySorted with the pooled ranks at hand.
func mannWhitneyRanked(xs, ys []float64, rs rankSummary, alt Alternative, method Method) (MannWhitneyResult, error) {
	n1, n2 := float64(len(xs)), float64(len(ys))
	u1 := rs.rankSumX - n1*(n1+1)/2
	u2 := n1*n2 - u1
	var u, f float64
	switch alt {
	case Greater:
		u, f = u1, 1
	case Less:
		u, f = u2, 1
	default:
		u, f = math.Max(u1, u2), 2
	}
	if method == MethodAuto {
		method = MethodExact
		if (len(xs) > 8 && len(ys) > 8) || rs.ties {
			method = MethodAsymptotic
		}
	}
	res := MannWhitneyResult{U: u1, Method: method, Z: math.NaN()}
	var p float64
	if method == MethodExact {
		dist, err := wilcoxCounts(len(xs), len(ys))
		if err != nil {
			return MannWhitneyResult{}, err
		}
		// scipy: sf(U) = cdf(mn - U), summing the pmf from the left, with U
		// truncated to an integer (it is one unless exact is forced on
		// tied data).
		k := len(xs)*len(ys) - int(u)
		p = dist.cdf(k)
	} else {
		mu := n1 * n2 / 2
		n := n1 + n2
		s := math.Sqrt(n1 * n2 / 12 * ((n + 1) - rs.tieTerm/(n*(n-1))))
		z := (u - mu - 0.5) / s
		res.Z = z
		p = normSF(z)
		if s == 0 {
			// All values tied: scipy divides -0.5 by 0 and gets sf(-inf).
			p = 1
		}
	}
	p *= f
	res.PValue = math.Min(math.Max(p, 0), 1)
	return res, nil
}

// rankSummary is what rank-based statistics need from the pooled sample.
type rankSummary struct {
	rankSumX float64 // sum of the midranks of x in the pooled sample
	tieTerm  float64 // sum over tie groups of t^3 - t
	ties     bool
}

// rankSums ranks the pooled sorted samples with midranks for ties by
// merging them, in O(len(xs)+len(ys)).
func rankSums(xs, ys []float64) rankSummary {
	var rs rankSummary
	i, j := 0, 0
	rank := 0.0 // ranks used so far
	for i < len(xs) || j < len(ys) {
		var v float64
		if j >= len(ys) || (i < len(xs) && xs[i] <= ys[j]) {
			v = xs[i]
		} else {
			v = ys[j]
		}
		cx, cy := 0, 0
		for i < len(xs) && xs[i] == v {
			i++
			cx++
		}
		for j < len(ys) && ys[j] == v {
			j++
			cy++
		}
		t := float64(cx + cy)
		mid := rank + (t+1)/2
		rs.rankSumX += float64(cx) * mid
		if t > 1 {
			rs.ties = true
			rs.tieTerm += t*t*t - t
		}
		rank += t
	}
	return rs
}

// wilcoxDist is the null distribution of U for sample sizes m and n: the
// number of arrangements giving each value of U, and their total.
type wilcoxDist struct {
	counts []float64
	total  float64
	m, n   int
}

// maxExactCells bounds the exact distribution: counts for U = 0..m*n, each
// built in O(m*n*min(m,n)).
const maxExactCells = 4_000_000

// wilcoxCounts computes the distribution of U by Harding's (1984)
// generating function: the counts are the coefficients of the Gaussian
// binomial coefficient [m+n choose m]_q, built as the product of
// (1 - q^(n+i)) / (1 - q^i) for i = 1..min(m, n). Every intermediate
// polynomial has non-negative integer coefficients, exact in float64 up to
// 2^53 and correct to rounding beyond.
func wilcoxCounts(m, n int) (wilcoxDist, error) {
	small, large := min(m, n), max(m, n)
	cells := m * n
	if cells/max(small, 1) != large || cells > maxExactCells || float64(cells)*float64(small) > 4e9 {
		return wilcoxDist{}, fmt.Errorf("exact Mann-Whitney for %d x %d: %w", m, n, ErrTooLarge)
	}
	// The product before each division reaches degree cells + small.
	c := make([]float64, cells+small+1)
	c[0] = 1
	deg := 0
	for i := 1; i <= small; i++ {
		// Multiply by (1 - q^(large+i)).
		s := large + i
		newDeg := deg + s
		for k := newDeg; k >= s; k-- {
			c[k] -= c[k-s]
		}
		// Divide by (1 - q^i): c'[k] = c[k] + c'[k-i].
		for k := i; k <= newDeg-i; k++ {
			c[k] += c[k-i]
		}
		// The quotient has degree newDeg-i; what is left above it is the
		// remainder of an exact division, zero in exact arithmetic.
		for k := newDeg - i + 1; k <= newDeg; k++ {
			c[k] = 0
		}
		deg = newDeg - i
	}
	c = c[:cells+1]
	total := 0.0
	for _, v := range c {
		total += v
	}
	return wilcoxDist{counts: c, total: total, m: m, n: n}, nil
}

// cdf is P(U <= k) summed from the left as scipy does.
func (d wilcoxDist) cdf(k int) float64 {
	if k < 0 {
		return 0
	}
	if k >= len(d.counts) {
		return 1
	}
	p := 0.0
	for i := 0; i <= k; i++ {
		p += d.counts[i] / d.total
	}
	return p
}

func hasNaN(v []float64) bool {
	for _, x := range v {
		if math.IsNaN(x) {
			return true
		}
	}
	return false
}

func sortedCopy(v []float64) []float64 {
	s := slices.Clone(v)
	sortFloats(s)
	return s
}
