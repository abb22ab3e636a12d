package canary

import (
	"math"
	"slices"
)

// sortFloats sorts NaN-free values ascending. Large inputs use an LSD
// radix sort on the IEEE 754 bit patterns (flipped so that unsigned order
// is numeric order), skipping the bytes all values share; for 10,000
// latencies that is several times faster than a comparison sort, and the
// analysis sorts two sides per metric.
func sortFloats(v []float64) {
	if len(v) < 512 {
		slices.Sort(v)
		return
	}
	keys := make([]uint64, len(v))
	var hist [8][256]int
	for i, f := range v {
		b := math.Float64bits(f)
		if b>>63 == 1 {
			b = ^b
		} else {
			b |= 1 << 63
		}
		keys[i] = b
		for d := range 8 {
			hist[d][byte(b>>(8*d))]++
		}
	}
	tmp := make([]uint64, len(v))
	for d := range 8 {
		h := &hist[d]
		if h[byte(keys[0]>>(8*d))] == len(keys) {
			continue // every key has the same byte here
		}
		var offs [256]int
		sum := 0
		for i, c := range h {
			offs[i] = sum
			sum += c
		}
		shift := uint(8 * d)
		for _, k := range keys {
			bkt := byte(k >> shift)
			tmp[offs[bkt]] = k
			offs[bkt]++
		}
		keys, tmp = tmp, keys
	}
	for i, b := range keys {
		if b>>63 == 1 {
			b &^= 1 << 63
		} else {
			b = ^b
		}
		v[i] = math.Float64frombits(b)
	}
}
