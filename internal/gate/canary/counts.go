package canary

import (
	"errors"
	"fmt"
)

// FisherExact returns the one-sided p-value of Fisher's exact test on the
// 2x2 table [[a, b], [c, d]], as scipy.stats.fisher_exact(table,
// alternative) computes it: Greater tests whether the odds a/b exceed
// c/d, Less the opposite. For a count metric the rows are canary and
// baseline and the columns errors and successes. A table with an empty
// row or column gives 1. The two-sided test is not offered: judgment
// combines the one-sided ones.
func FisherExact(a, b, c, d int64, alt Alternative) (float64, error) {
	if a < 0 || b < 0 || c < 0 || d < 0 {
		return 0, fmt.Errorf("fisher exact: negative cell in [[%d %d] [%d %d]]", a, b, c, d)
	}
	if alt == TwoSided {
		return 0, errors.New("fisher exact: two-sided alternative not supported")
	}
	n1, n2 := a+b, c+d
	col1 := a + c
	if n1 == 0 || n2 == 0 || col1 == 0 || b+d == 0 {
		return 1, nil
	}
	// a is hypergeometric: col1 draws from n1 "row one" and n2 "row two"
	// items.
	if alt == Greater {
		return hyperSF(a, n1, n2, col1), nil
	}
	return hyperCDF(a, n1, n2, col1), nil
}
