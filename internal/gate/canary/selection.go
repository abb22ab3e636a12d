package canary

import (
	"math"
	"math/rand/v2"
	"slices"
)

// diffSelector finds order statistics of the m*n pairwise differences
// x_i - y_j of two sorted samples without materialising them: 10,000
// values per side give 10^8 differences.
//
// The differences form an implicitly sorted matrix: with x ascending and
// the columns taking y in descending order, every row and every column is
// ascending. Counting the differences below a pivot is then one merge-like
// walk in O(m+n). Selection keeps an active column range per row, draws a
// random sample of the active differences, takes two sample quantiles that
// bracket the wanted rank (Floyd-Rivest), and shrinks every row's range to
// what lies between them; a few rounds leave a few thousand candidates,
// which are selected directly. The random source is seeded, so the result
// (an exact order statistic) and the work done are deterministic.
type diffSelector struct {
	xs, ys []float64
	m, n   int
	rng    *rand.Rand

	lo, hi     []int // active columns [lo, hi) per row
	cutA, cutB []int
	prefix     []int
	sample     []float64
	buf        []float64
}

func newDiffSelector(xs, ys []float64, seed uint64) *diffSelector {
	m, n := len(xs), len(ys)
	return &diffSelector{
		xs: xs, ys: ys, m: m, n: n,
		rng:    rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		lo:     make([]int, m),
		hi:     make([]int, m),
		cutA:   make([]int, m),
		cutB:   make([]int, m),
		prefix: make([]int, m+1),
	}
}

// at is the difference in row i, column c (columns ascending).
func (s *diffSelector) at(i, c int) float64 { return s.xs[i] - s.ys[s.n-1-c] }

// cutsLess fills cut[i] with the number of columns of row i whose
// difference is < p (strict) or <= p (orEqual). The comparisons use the
// computed differences themselves, so they agree with materialised values
// even where floating-point rounding makes x - y and p disagree.
func (s *diffSelector) cuts(p float64, orEqual bool, cut []int) {
	j := 0 // index into ys ascending; row i has differences >= p for ys[:j]
	for i := 0; i < s.m; i++ {
		xi := s.xs[i]
		if orEqual {
			for j < s.n && xi-s.ys[j] > p {
				j++
			}
		} else {
			for j < s.n && xi-s.ys[j] >= p {
				j++
			}
		}
		cut[i] = s.n - j
	}
}

// activeBelow counts active elements left of cut.
func (s *diffSelector) activeBelow(cut []int) int {
	c := 0
	for i := 0; i < s.m; i++ {
		if v := min(s.hi[i], cut[i]) - s.lo[i]; v > 0 {
			c += v
		}
	}
	return c
}

// reset makes every difference active.
func (s *diffSelector) reset() {
	for i := range s.lo {
		s.lo[i], s.hi[i] = 0, s.n
	}
}

// selectK returns the k-th smallest difference, k 0-based in [0, m*n).
func (s *diffSelector) selectK(k int) float64 {
	s.reset()
	below, active := 0, s.m*s.n
	const sampleSize = 1024
	limit := max(4096, s.m+s.n)
	for {
		kk := k - below
		if active <= limit {
			return s.selectMaterialised(kk, active)
		}
		s.drawSample(sampleSize, active)
		fi := (float64(kk) + 0.5) / float64(active) * float64(len(s.sample))
		delta := 2.5 * math.Sqrt(float64(len(s.sample)))
		ia := max(0, int(fi-delta))
		ib := min(len(s.sample)-1, int(fi+delta))
		a, b := s.sample[ia], s.sample[ib]
		newActive, newBelow, found, v := s.partition(a, b, kk)
		if found {
			return v
		}
		if newActive >= active {
			// No progress (all active values lie between a and b): a
			// single pivot always splits off something or is the answer.
			p := s.sample[min(len(s.sample)-1, max(0, int(fi)))]
			newActive, newBelow, found, v = s.partition(p, p, kk)
			if found {
				return v
			}
		}
		below += newBelow
		active = newActive
	}
}

// partition narrows the active set to the part that holds the kk-th
// active element relative to pivots a <= b: below a, within [a, b], or
// above b. It returns the new active count and how many active elements
// were dropped on the left; found reports that the element equals a == b.
func (s *diffSelector) partition(a, b float64, kk int) (active, dropped int, found bool, v float64) {
	s.cuts(a, false, s.cutA)
	s.cuts(b, true, s.cutB)
	lessA := s.activeBelow(s.cutA)
	leB := s.activeBelow(s.cutB)
	switch {
	case kk < lessA:
		for i := range s.hi {
			s.hi[i] = max(s.lo[i], min(s.hi[i], s.cutA[i]))
		}
		return lessA, 0, false, 0
	case kk >= leB:
		total := 0
		for i := range s.lo {
			s.lo[i] = min(s.hi[i], max(s.lo[i], s.cutB[i]))
			total += s.hi[i] - s.lo[i]
		}
		return total, leB, false, 0
	}
	if a == b {
		return 0, 0, true, a
	}
	for i := range s.lo {
		s.lo[i] = min(s.hi[i], max(s.lo[i], s.cutA[i]))
		s.hi[i] = max(s.lo[i], min(s.hi[i], s.cutB[i]))
	}
	return leB - lessA, lessA, false, 0
}

// drawSample draws a sorted uniform sample (with replacement) of the
// active differences.
func (s *diffSelector) drawSample(size, active int) {
	s.prefix[0] = 0
	for i := 0; i < s.m; i++ {
		s.prefix[i+1] = s.prefix[i] + s.hi[i] - s.lo[i]
	}
	s.sample = s.sample[:0]
	for range size {
		r := s.rng.IntN(active)
		// Row i holds positions [prefix[i], prefix[i+1]).
		i, _ := slices.BinarySearch(s.prefix, r+1)
		i--
		s.sample = append(s.sample, s.at(i, s.lo[i]+r-s.prefix[i]))
	}
	slices.Sort(s.sample)
}

// selectMaterialised copies the active differences and selects the kk-th.
func (s *diffSelector) selectMaterialised(kk, active int) float64 {
	s.buf = s.buf[:0]
	if cap(s.buf) < active {
		s.buf = make([]float64, 0, active)
	}
	for i := 0; i < s.m; i++ {
		for c := s.lo[i]; c < s.hi[i]; c++ {
			s.buf = append(s.buf, s.at(i, c))
		}
	}
	return quickSelect(s.buf, kk)
}

// quickSelect returns the k-th smallest element of v (0-based), reordering
// v. Median-of-three Hoare partitioning; expected O(len(v)).
func quickSelect(v []float64, k int) float64 {
	lo, hi := 0, len(v)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if v[mid] < v[lo] {
			v[mid], v[lo] = v[lo], v[mid]
		}
		if v[hi] < v[lo] {
			v[hi], v[lo] = v[lo], v[hi]
		}
		if v[hi] < v[mid] {
			v[hi], v[mid] = v[mid], v[hi]
		}
		p := v[mid]
		i, j := lo, hi
		for i <= j {
			for v[i] < p {
				i++
			}
			for v[j] > p {
				j--
			}
			if i <= j {
				v[i], v[j] = v[j], v[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return v[k]
		}
	}
	return v[k]
}
