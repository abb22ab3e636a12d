package canary

import "math"

// This file holds the special functions the tests need. They follow the
// published algorithms that the reference implementations use (R's nmath
// and Cephes, which scipy wraps), so that results agree to far better than
// the 1e-9 the reference vectors are checked with.

// normSF is the upper tail of the standard normal distribution, P(Z > z).
func normSF(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }

// normCDF is the lower tail of the standard normal distribution, P(Z <= z).
func normCDF(z float64) float64 { return 0.5 * math.Erfc(-z/math.Sqrt2) }

// qnorm is the standard normal quantile by Wichura's algorithm AS 241, as
// R's qnorm computes it (R 4.2, lower tail, not log). The upper-tail
// quantile R computes with lower.tail=FALSE is exactly -qnorm(p), which
// the Hodges-Lehmann interval relies on to reproduce R bit for bit.
func qnorm(p float64) float64 {
	switch {
	case math.IsNaN(p) || p < 0 || p > 1:
		return math.NaN()
	case p == 0:
		return math.Inf(-1)
	case p == 1:
		return math.Inf(1)
	}
	q := p - 0.5
	if math.Abs(q) <= 0.425 {
		r := 0.180625 - q*q
		return q * (((((((r*2509.0809287301226727+
			33430.575583588128105)*r+67265.770927008700853)*r+
			45921.953931549871457)*r+13731.693765509461125)*r+
			1971.5909503065514427)*r+133.14166789178437745)*r +
			3.387132872796366608) /
			(((((((r*5226.495278852854561+
				28729.085735721942674)*r+39307.89580009271061)*r+
				21213.794301586595867)*r+5394.1960214247511077)*r+
				687.1870074920579083)*r+42.313330701600911252)*r + 1.)
	}
	r := p
	if q > 0 {
		r = 0.5 - p + 0.5
	}
	r = math.Sqrt(-math.Log(r))
	var val float64
	if r <= 5 {
		r += -1.6
		val = (((((((r*7.7454501427834140764e-4+
			.0227238449892691845833)*r+.24178072517745061177)*
			r+1.27045825245236838258)*r+
			3.64784832476320460504)*r+5.7694972214606914055)*
			r+4.6303378461565452959)*r +
			1.42343711074968357734) /
			(((((((r*
				1.05075007164441684324e-9+5.475938084995344946e-4)*
				r+.0151986665636164571966)*r+
				.14810397642748007459)*r+.68976733498510000455)*
				r+1.6763848301838038494)*r+
				2.05319162663775882187)*r + 1.)
	} else {
		r += -5.
		val = (((((((r*2.01033439929228813265e-7+
			2.71155556874348757815e-5)*r+
			.0012426609473880784386)*r+.026532189526576123093)*
			r+.29656057182850489123)*r+
			1.7848265399172913358)*r+5.4637849111641143699)*
			r + 6.6579046435011037772) /
			(((((((r*
				2.04426310338993978564e-15+1.4215117583164458887e-7)*
				r+1.8463183175100546818e-5)*r+
				7.868691311456132591e-4)*r+.0148753612908506148525)*r+.13692988092273580531)*r+
				.59983220655588793769)*r + 1.)
	}
	if q < 0 {
		val = -val
	}
	return val
}

// lbeta is log B(a, b).
func lbeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}

// betaInc returns the regularized incomplete beta function I_x(a, b) and
// its complement 1 - I_x(a, b), each computed directly where it is the
// smaller one so that small tail probabilities keep their relative
// precision. y must be 1 - x, passed separately because callers often know
// it more precisely than 1 - x rounds to. The continued fraction is the
// modified Lentz evaluation of the classic expansion (Numerical Recipes
// betacf), run to full double precision.
func betaInc(a, b, x, y float64) (lower, upper float64) {
	switch {
	case x <= 0:
		return 0, 1
	case y <= 0:
		return 1, 0
	}
	lbt := a*math.Log(x) + b*math.Log(y) - lbeta(a, b)
	bt := math.Exp(lbt)
	if x < (a+1)/(a+b+2) {
		lo := bt * betaCF(a, b, x) / a
		return lo, 1 - lo
	}
	up := bt * betaCF(b, a, y) / b
	return 1 - up, up
}

// betaCF evaluates the continued fraction of the incomplete beta function.
func betaCF(a, b, x float64) float64 {
	const (
		maxIter = 100000
		eps     = 1e-16
		fpmin   = 1e-300
	)
	qab, qap, qam := a+b, a+1, a-1
	c := 1.0
	d := 1 - qab*x/qap
	if math.Abs(d) < fpmin {
		d = fpmin
	}
	d = 1 / d
	h := d
	for m := 1; m <= maxIter; m++ {
		fm := float64(m)
		m2 := 2 * fm
		aa := fm * (b - fm) * x / ((qam + m2) * (a + m2))
		d = 1 + aa*d
		if math.Abs(d) < fpmin {
			d = fpmin
		}
		c = 1 + aa/c
		if math.Abs(c) < fpmin {
			c = fpmin
		}
		d = 1 / d
		h *= d * c
		aa = -(a + fm) * (qab + fm) * x / ((a + m2) * (qap + m2))
		d = 1 + aa*d
		if math.Abs(d) < fpmin {
			d = fpmin
		}
		c = 1 + aa/c
		if math.Abs(c) < fpmin {
			c = fpmin
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < eps {
			break
		}
	}
	return h
}

// fSF is the upper tail P(F > f) of Fisher's F distribution with d1 and d2
// degrees of freedom (Cephes fdtrc: I_{d2/(d2+d1 f)}(d2/2, d1/2)).
func fSF(f, d1, d2 float64) float64 {
	if math.IsNaN(f) {
		return math.NaN()
	}
	if f <= 0 {
		return 1
	}
	if math.IsInf(f, 1) {
		return 0
	}
	den := d2 + d1*f
	lo, _ := betaInc(d2/2, d1/2, d2/den, d1*f/den)
	return lo
}

// stirlerr is log(n!) - log(sqrt(2 pi n) (n/e)^n), the error of Stirling's
// formula, as R's nmath computes it (series beyond 15).
func stirlerr(n float64) float64 {
	const (
		s0 = 0.083333333333333333333       // 1/12
		s1 = 0.00277777777777777777778     // 1/360
		s2 = 0.00079365079365079365079365  // 1/1260
		s3 = 0.000595238095238095238095238 // 1/1680
		s4 = 0.0008417508417508417508417508
	)
	if n <= 15 {
		if n == 0 {
			return 0
		}
		lg, _ := math.Lgamma(n + 1)
		return lg - (n+0.5)*math.Log(n) + n - 0.918938533204672741780329736406 // log(sqrt(2 pi))
	}
	nn := n * n
	switch {
	case n > 500:
		return (s0 - s1/nn) / n
	case n > 80:
		return (s0 - (s1-s2/nn)/nn) / n
	case n > 35:
		return (s0 - (s1-(s2-s3/nn)/nn)/nn) / n
	}
	return (s0 - (s1-(s2-(s3-s4/nn)/nn)/nn)/nn) / n
}

// bd0 is x log(x/np) + np - x computed without cancellation (Loader 2000,
// as in R's nmath).
func bd0(x, np float64) float64 {
	if math.Abs(x-np) < 0.1*(x+np) {
		v := (x - np) / (x + np)
		s := (x - np) * v
		if math.Abs(s) < math.SmallestNonzeroFloat64 {
			return s
		}
		ej := 2 * x * v
		v *= v
		for j := 1; j < 1000; j++ {
			ej *= v
			s1 := s + ej/float64(2*j+1)
			if s1 == s {
				return s1
			}
			s = s1
		}
	}
	return x*math.Log(x/np) + np - x
}

// logDbinomRaw is the log of the binomial probability of x successes in n
// trials with success probability p (q = 1 - p), by Loader's saddle-point
// expansion (R's dbinom_raw), accurate for counts in the millions.
func logDbinomRaw(x, n, p, q float64) float64 {
	if p == 0 {
		if x == 0 {
			return 0
		}
		return math.Inf(-1)
	}
	if q == 0 {
		if x == n {
			return 0
		}
		return math.Inf(-1)
	}
	if x == 0 {
		if n == 0 {
			return 0
		}
		if p < 0.1 {
			return -bd0(n, n*q) - n*p
		}
		return n * math.Log(q)
	}
	if x == n {
		if q < 0.1 {
			return -bd0(n, n*p) - n*q
		}
		return n * math.Log(p)
	}
	if x < 0 || x > n {
		return math.Inf(-1)
	}
	lc := stirlerr(n) - stirlerr(x) - stirlerr(n-x) - bd0(x, n*p) - bd0(n-x, n*q)
	lf := 1.837877066409345483560659472811 + math.Log(x) + math.Log1p(-x/n) // log(2 pi)
	return lc - 0.5*lf
}

// logDhyper is the log probability that x of n draws without replacement
// from r white and b black balls are white (R's dhyper).
func logDhyper(x, r, b, n float64) float64 {
	if x < 0 || x > r || n-x < 0 || n-x > b {
		return math.Inf(-1)
	}
	if n == 0 {
		if x == 0 {
			return 0
		}
		return math.Inf(-1)
	}
	p := n / (r + b)
	q := (r + b - n) / (r + b)
	return logDbinomRaw(x, r, p, q) + logDbinomRaw(n-x, b, p, q) - logDbinomRaw(n, r+b, p, q)
}

// tailSum sums a unimodal probability mass function from start in steps of
// dir (+1 or -1) while the terms are not negligible, given the log mass at
// start and the ratio pmf(k+dir)/pmf(k). Callers start at or beyond the
// mode so that the terms only shrink; lo and hi bound the support.
func tailSum(logStart float64, start, lo, hi int64, dir int64, ratio func(k int64) float64) float64 {
	if math.IsInf(logStart, -1) {
		return 0
	}
	term := math.Exp(logStart)
	sum := term
	for k := start; ; k += dir {
		next := k + dir
		if next < lo || next > hi {
			break
		}
		term *= ratio(k)
		sum += term
		if term <= sum*1e-18 || term == 0 {
			break
		}
	}
	return sum
}

// hyperSF is P(X >= x) for X hypergeometric: n draws from r white and b
// black balls, X the white ones drawn.
func hyperSF(x, r, b, n int64) float64 {
	lo, hi := max(0, n-b), min(n, r)
	if x <= lo {
		return 1
	}
	if x > hi {
		return 0
	}
	mode := int64(math.Floor(float64(n+1) * float64(r+1) / float64(r+b+2)))
	up := func(k int64) float64 {
		return float64(r-k) * float64(n-k) / (float64(k+1) * float64(b-n+k+1))
	}
	if x >= mode {
		return min(1, tailSum(logDhyper(float64(x), float64(r), float64(b), float64(n)), x, lo, hi, 1, up))
	}
	return max(0, 1-hyperCDF(x-1, r, b, n))
}

// hyperCDF is P(X <= x) for X hypergeometric as in hyperSF.
func hyperCDF(x, r, b, n int64) float64 {
	lo, hi := max(0, n-b), min(n, r)
	if x < lo {
		return 0
	}
	if x >= hi {
		return 1
	}
	mode := int64(math.Floor(float64(n+1) * float64(r+1) / float64(r+b+2)))
	down := func(k int64) float64 {
		return float64(k) * float64(b-n+k) / (float64(r-k+1) * float64(n-k+1))
	}
	if x <= mode {
		return min(1, tailSum(logDhyper(float64(x), float64(r), float64(b), float64(n)), x, lo, hi, -1, down))
	}
	return max(0, 1-hyperSF(x+1, r, b, n))
}

// lchoose is log C(n, k).
func lchoose(n, k float64) float64 {
	a, _ := math.Lgamma(n + 1)
	b, _ := math.Lgamma(k + 1)
	c, _ := math.Lgamma(n - k + 1)
	return a - b - c
}

// betaBinomSF is P(K >= k) for K beta-binomial with n trials and shape
// parameters a and b.
func betaBinomSF(k, n int64, a, b float64) float64 {
	if k <= 0 {
		return 1
	}
	if k > n {
		return 0
	}
	logPMF := func(j int64) float64 {
		return lchoose(float64(n), float64(j)) + lbeta(float64(j)+a, float64(n-j)+b) - lbeta(a, b)
	}
	up := func(j int64) float64 {
		return float64(n-j) * (float64(j) + a) / (float64(j+1) * (float64(n-j-1) + b))
	}
	down := func(j int64) float64 {
		return float64(j) * (float64(n-j) + b) / (float64(n-j+1) * (float64(j-1) + a))
	}
	// pmf(k)/pmf(k-1) <= 1 means the mass decreases from k on: sum the
	// upper tail directly; otherwise sum the lower tail and complement.
	if up(k-1) <= 1 {
		return min(1, tailSum(logPMF(k), k, 0, n, 1, up))
	}
	return max(0, 1-tailSum(logPMF(k-1), k-1, 0, n, -1, down))
}
