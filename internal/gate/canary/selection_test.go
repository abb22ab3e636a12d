package canary

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSelectionAgainstSorting checks every rank, and the band selection of
// several ranks at once, against the sorted materialised differences, on
// data with heavy ties and sizes on both sides of the direct-selection
// limit.
func TestSelectionAgainstSorting(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, size := range [][2]int{{1, 1}, {1, 7}, {3, 2}, {40, 60}, {150, 120}, {300, 257}} {
		for _, ties := range []bool{false, true} {
			x, y := make([]float64, size[0]), make([]float64, size[1])
			for i := range x {
				x[i] = r.NormFloat64()
				if ties {
					x[i] = float64(r.IntN(6)) / 4
				}
			}
			for i := range y {
				y[i] = r.NormFloat64() + 0.3
				if ties {
					y[i] = float64(r.IntN(6)) / 4
				}
			}
			xs, ys := sortedCopy(x), sortedCopy(y)
			var all []float64
			for _, a := range xs {
				for _, b := range ys {
					all = append(all, a-b)
				}
			}
			slices.Sort(all)
			sel := newDiffSelector(xs, ys, uint64(size[0]))
			step := max(1, len(all)/97)
			for k := 0; k < len(all); k += step {
				if got := sel.selectK(k); got != all[k] {
					t.Fatalf("%v ties=%v: rank %d = %v, want %v", size, ties, k, got, all[k])
				}
			}
			ks := []int{0, len(all) / 3, len(all) / 2, len(all) - 1}
			ks = slices.Compact(ks)
			vals, nexts := sel.selectRanks(ks, ks[len(ks)/2])
			for i, k := range ks {
				if vals[i] != all[k] {
					t.Errorf("%v ties=%v: band rank %d = %v, want %v", size, ties, k, vals[i], all[k])
				}
				if k == ks[len(ks)/2] && k+1 < len(all) && nexts[i] != all[k+1] {
					t.Errorf("%v ties=%v: next of rank %d = %v, want %v", size, ties, k, nexts[i], all[k+1])
				}
			}
		}
	}
}
