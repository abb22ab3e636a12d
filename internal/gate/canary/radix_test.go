package canary

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestSortFloatsMatchesSlicesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	gens := map[string]func() float64{
		"lognormal": func() float64 { return lognormal(r) },
		"signed":    func() float64 { return r.NormFloat64() * 1e3 },
		"extremes": func() float64 {
			return []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.MaxFloat64, -math.MaxFloat64,
				math.SmallestNonzeroFloat64, -math.SmallestNonzeroFloat64, 1, -1}[r.IntN(10)]
		},
		"ties": func() float64 { return float64(r.IntN(5)) },
	}
	for name, gen := range gens {
		for _, n := range []int{0, 1, 511, 512, 5000} {
			v := make([]float64, n)
			for i := range v {
				v[i] = gen()
			}
			want := slices.Clone(v)
			slices.Sort(want)
			sortFloats(v)
			for i := range v {
				// -0 and +0 compare equal; their order is free.
				if v[i] != want[i] {
					t.Fatalf("%s n=%d: index %d is %v, want %v", name, n, i, v[i], want[i])
				}
			}
		}
	}
}
