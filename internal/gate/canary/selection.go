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
	ysPad  []float64 // ys and a NaN
	m, n   int
	rng    *rand.Rand

	lo, hi     []int // active columns [lo, hi) per row
	cutA, cutB []int
	sample     []float64
	buf        []float64
}

func newDiffSelector(xs, ys []float64, seed uint64) *diffSelector {
	m, n := len(xs), len(ys)
	return &diffSelector{
		xs: xs, ys: ys, m: m, n: n,
		ysPad: append(ys[:n:n], math.NaN()),
		rng:   rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)),
		lo:    make([]int, m),
		hi:    make([]int, m),
		cutA:  make([]int, m),
		cutB:  make([]int, m),
	}
}

// at is the difference in row i, column c (columns ascending).
func (s *diffSelector) at(i, c int) float64 { return s.xs[i] - s.ys[s.n-1-c] }

// cuts2 fills cutA[i] with the number of columns of row i whose difference
// is < a and cutB[i] with the number <= b, in one pass, and returns how
// many active differences are < a and <= b. The comparisons use
// the computed differences themselves, so they agree with materialised
// values even where floating-point rounding makes x - y and a disagree.
// The pass is restricted to the active columns: a row's cut only matters
// within [lo, hi], so each pointer jumps over the inactive columns on the
// left instead of walking them, and cuts below lo count as lo. This is
// sound because lo and hi, like the cuts they come from, never increase
// from one row to the next; both pointers only move forward, which keeps
// the pass linear.
func (s *diffSelector) cuts2(a, b float64) (lessA, leB int) {
	ja, jb := 0, 0
	n := s.n
	ys := s.ysPad // ys with a NaN sentinel: x - NaN compares false
	xs := s.xs
	lo, hi := s.lo[:len(xs)], s.hi[:len(xs)]
	cutA, cutB := s.cutA[:len(xs)], s.cutB[:len(xs)]
	for i, xi := range xs {
		// Active columns [lo, hi) are ys indices [n-hi, n-lo).
		from := n - hi[i]
		ja, jb = max(ja, from), max(jb, from)
		// The pointers mostly move zero, one or two places per row: two
		// branch-free steps first, then a loop for the rest, which saves
		// the mispredicted loop exits that dominate the pass.
		ja += b2i(xi-ys[ja] >= a)
		jb += b2i(xi-ys[jb] > b)
		ja += b2i(xi-ys[ja] >= a)
		jb += b2i(xi-ys[jb] > b)
		for xi-ys[ja] >= a {
			ja++
		}
		for xi-ys[jb] > b {
			jb++
		}
		ca, cb := max(n-ja, lo[i]), max(n-jb, lo[i])
		cutA[i], cutB[i] = ca, cb
		lessA += ca - lo[i]
		leB += cb - lo[i]
	}
	return lessA, leB
}

func b2i(c bool) int {
	if c {
		return 1
	}
	return 0
}

// reset makes every difference active.
func (s *diffSelector) reset() {
	for i := range s.lo {
		s.lo[i], s.hi[i] = 0, s.n
	}
}

// selectK returns the k-th smallest difference, k 0-based in [0, m*n).
func (s *diffSelector) selectK(k int) float64 {
	v, _ := s.selectRank(k, false)
	return v
}

// selectRank returns the k-th smallest difference and, with wantNext,
// the (k+1)-th (NaN past the end).
func (s *diffSelector) selectRank(k int, wantNext bool) (float64, float64) {
	s.reset()
	return s.selectFrom(k, wantNext, 0, s.m*s.n)
}

// selectFrom continues a selection from an active set that holds rank k,
// with below elements eliminated on its left.
func (s *diffSelector) selectFrom(k int, wantNext bool, below, active int) (float64, float64) {
	limit := s.limit()
	for {
		kk := k - below
		if active <= limit {
			v, next, ok := s.selectMaterialised(kk, active)
			if wantNext && !ok && k+1 < s.m*s.n {
				next = s.selectK(k + 1)
			}
			return v, next
		}
		s.drawSample(active)
		fi := (float64(kk) + 0.5) / float64(active) * float64(len(s.sample))
		// The wanted element lies between the sample quantiles two
		// standard errors either side of its rank with probability ~95%;
		// a miss costs one more round, never a wrong answer.
		delta := 2 * math.Sqrt(float64(len(s.sample)))
		ia := max(0, int(fi-delta))
		ib := min(len(s.sample)-1, int(fi+delta))
		a := quickSelect(s.sample, ia)
		b := quickSelect(s.sample[ia:], ib-ia)
		newActive, newBelow, found, v := s.partition(a, b, kk)
		if !found && newActive >= active {
			// No progress (all active values lie between a and b): a
			// single pivot always splits off something or is the answer.
			p := quickSelect(s.sample, min(len(s.sample)-1, max(0, int(fi))))
			newActive, newBelow, found, v = s.partition(p, p, kk)
		}
		if found {
			next := math.NaN()
			if wantNext && k+1 < s.m*s.n {
				next = s.selectK(k + 1)
			}
			return v, next
		}
		below += newBelow
		active = newActive
	}
}

// limit is the size of active set that is selected directly.
func (s *diffSelector) limit() int { return max(8192, 2*(s.m+s.n)) }

// selectRanks returns the differences of the given 0-based ranks (sorted
// ascending), and for the rank pairAt also the one of the next rank (NaN
// otherwise). The rounds that narrow the search to the band holding
// all ranks are shared; each rank is then finished on its own.
func (s *diffSelector) selectRanks(ks []int, pairAt int) (vals, nexts []float64) {
	s.reset()
	below, active := 0, s.m*s.n
	kLo, kHi := ks[0], ks[len(ks)-1]
	for active > s.limit() {
		s.drawSample(active)
		scale := float64(len(s.sample)) / float64(active)
		delta := 2 * math.Sqrt(float64(len(s.sample)))
		ia := max(0, int((float64(kLo-below)+0.5)*scale-delta))
		ib := min(len(s.sample)-1, int((float64(kHi-below)+0.5)*scale+delta))
		if ib-ia > len(s.sample)/2 {
			break // the band is most of what is left
		}
		a := quickSelect(s.sample, ia)
		b := quickSelect(s.sample[ia:], ib-ia)
		lessA, leB := s.cuts2(a, b)
		if kLo-below < lessA || kHi-below >= leB || leB-lessA >= active {
			break // a rank escaped the band, or no progress: finish singly
		}
		for i := range s.lo {
			s.lo[i] = min(s.hi[i], max(s.lo[i], s.cutA[i]))
			s.hi[i] = max(s.lo[i], min(s.hi[i], s.cutB[i]))
		}
		below += lessA
		active = leB - lessA
	}
	lo, hi := slices.Clone(s.lo), slices.Clone(s.hi)
	vals = make([]float64, len(ks))
	nexts = make([]float64, len(ks))
	for i, k := range ks {
		copy(s.lo, lo)
		copy(s.hi, hi)
		vals[i], nexts[i] = s.selectFrom(k, k == pairAt, below, active)
	}
	return vals, nexts
}

// partition narrows the active set to the part that holds the kk-th
// active element relative to pivots a <= b: below a, within [a, b], or
// above b. It returns the new active count and how many active elements
// were dropped on the left; found reports that the element equals a == b.
func (s *diffSelector) partition(a, b float64, kk int) (active, dropped int, found bool, v float64) {
	lessA, leB := s.cuts2(a, b)
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

// drawSample draws a systematic sample of the active differences: evenly
// spaced positions in the row-major order of the active set, from a random
// offset. The sample only steers the pivots; any sample gives the exact
// answer. 1,024 values shrink the active set about eightfold per round.
func (s *diffSelector) drawSample(active int) {
	size := min(4096, active)
	step := float64(active) / float64(size)
	pos := s.rng.Float64() * step
	s.sample = s.sample[:0]
	row, rowStart := 0, 0 // rowStart: position of row's first active element
	for range size {
		p := int(pos)
		for row < s.m && rowStart+s.hi[row]-s.lo[row] <= p {
			rowStart += s.hi[row] - s.lo[row]
			row++
		}
		if row >= s.m {
			break
		}
		s.sample = append(s.sample, s.at(row, s.lo[row]+p-rowStart))
		pos += step
	}
}

// selectMaterialised copies the active differences and selects the kk-th
// and, when it is among them, the next one (ok).
func (s *diffSelector) selectMaterialised(kk, active int) (v, next float64, ok bool) {
	s.buf = s.buf[:0]
	if cap(s.buf) < active {
		s.buf = make([]float64, 0, active)
	}
	for i := 0; i < s.m; i++ {
		for c := s.lo[i]; c < s.hi[i]; c++ {
			s.buf = append(s.buf, s.at(i, c))
		}
	}
	v = quickSelect(s.buf, kk)
	if kk+1 >= len(s.buf) {
		return v, math.NaN(), false
	}
	// quickSelect leaves everything after kk no smaller than v.
	next = s.buf[kk+1]
	for _, x := range s.buf[kk+2:] {
		if x < next {
			next = x
		}
	}
	return v, next, true
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
