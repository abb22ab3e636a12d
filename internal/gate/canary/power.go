package canary

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// Power is the sample-size advice for one check: the smallest sample per
// side at which the check, at its level, fails a canary with the effect
// it is configured to catch in 80% and 95% of analyses.
//
// Methods, by check:
//
//   - tail-share: exact. A new tail of share s (MetricConfig.DetectTail)
//     puts S ~ Binomial(n, s) canary samples beyond every other value;
//     given S, the canary's count among the k largest pooled values is S
//     plus a hypergeometric draw of k - S from the rest, so the power is
//     a finite binomial mixture of hypergeometric tails.
//   - counts: exact. Canary and baseline errors are binomial per request
//     with rates p1 and p0: p0 the baseline's observed rate rounded to two
//     significant digits, p1 DetectRate beyond the tolerated rate
//     p0 * (1 + AllowedIncrease) + AllowedAbsoluteIncrease; for every baseline count y the
//     check fails from the smallest canary count that is beyond the
//     tolerance and significant by Fisher's test (both monotone in the
//     canary count and in y, so one sweep finds them all), and the power
//     is the sum over y of binomial tails. A normal approximation of the
//     same check only brackets the search.
//   - shift and spread: simulation with a fixed seed, SimRuns analyses
//     per size, of log-normal latencies whose log-scale spread sigma is
//     the baseline's (the interquartile range of its logs over 1.349, on
//     a grid 10% apart; 0.3 when a value is not positive): the canary
//     multiplied by 1 + DetectShift, or its log-deviations scaled by
//     sqrt(DetectSpread). The simulated check is the one Analyze runs
//     (Mann-Whitney significant and the Hodges-Lehmann shift beyond the
//     allowed change; Brown-Forsythe significant and the spread change
//     beyond the allowed one). A pilot of 100 runs at 200 per side gives
//     the mean standardised statistic, whose square-root-of-n growth
//     brackets the search. Both checks are scale-free, so the advice
//     depends on sigma and the configuration only.
//
// The tail and far-tail exceedance checks carry no advice of their own:
// the tail-share check is the one sized for a new tail. A count metric
// whose only harmful direction is a decrease has none either.
//
// Checks under Holm are held to their Bonferroni share (the metric's
// level over its number of checks), the smallest level Holm can give
// them, so the advice is what the check reaches at least. Sizes lie on a
// grid 3% apart from 10 up; the search starts from the approximation and
// bisects, evaluating the exact power or the simulation at about ten
// sizes. Simulated runs reuse their seeds across sizes (common random
// numbers), so the simulated power grows smoothly with n. The results
// are cached per configuration for the life of the process, and so are
// the simulated runs' p-values per model and size, which searches at
// other levels (another number of metrics) reuse: the first
// analysis with a new configuration or sigma pays for the search (up to
// about a second), later ones nothing.
type Power struct {
	// Effect is the effect the advice is for, in words.
	Effect string `json:"effect"`
	// Level is the significance level the advice assumes.
	Level Float `json:"level"`
	// N80 and N95 are samples (for counts: requests) per side; zero when
	// the power is not reached within the search, which Beyond then
	// bounds.
	N80    int    `json:"n80"`
	N95    int    `json:"n95"`
	Beyond int    `json:"beyond,omitempty"`
	Method string `json:"method"`
}

// Need is the size the advice asks for at 80% power: N80, or one beyond
// the search when that is not reached.
func (p Power) Need() int {
	if p.N80 == 0 {
		return p.Beyond + 1
	}
	return p.N80
}

// Simulation and search limits of the power advice.
const (
	// SimRuns is the number of simulated analyses per size.
	SimRuns = 400
	// MaxSampleAdvice bounds the search for sample checks (samples per
	// side), MaxCountAdvice for counts (requests per side).
	MaxSampleAdvice = 100_000
	MaxCountAdvice  = 10_000_000
	maxSimAdvice    = 5_000
	defaultSigma    = 0.3
	minAdviceN      = 10
	adviceStep      = 1.03
	adviceSeed      = 20261207
	pilotN          = 200
	pilotRuns       = 100
	maxPowerCache   = 4096
)

// powerKey identifies one cached advice.
type powerKey struct {
	check             string
	level             float64
	effect            float64
	allowed, allowed2 float64
	param, percentile float64
	direction         Direction
}

type powerEntry struct {
	once sync.Once
	p    Power
}

// simRuns is SimRuns; tests under the race detector lower it.
var simRuns = SimRuns

var (
	powerCache     sync.Map // powerKey -> *powerEntry
	powerCacheSize atomic.Int64
)

// cachedPower computes f once per key; past maxPowerCache keys it
// computes without keeping the result, so that a stream of unusual
// configurations cannot grow the process without bound.
func cachedPower(k powerKey, f func() Power) Power {
	if e, ok := powerCache.Load(k); ok {
		ent := e.(*powerEntry)
		ent.once.Do(func() { ent.p = f() })
		return ent.p
	}
	if powerCacheSize.Load() >= maxPowerCache {
		return f()
	}
	e, loaded := powerCache.LoadOrStore(k, &powerEntry{})
	if !loaded {
		powerCacheSize.Add(1)
	}
	ent := e.(*powerEntry)
	ent.once.Do(func() { ent.p = f() })
	return ent.p
}

// gridN is the i-th size of the search grid; gridIndex the index of the
// smallest grid size at or above n.
func gridN(i int) int { return int(math.Ceil(minAdviceN*math.Pow(adviceStep, float64(i)) - 1e-9)) }

func gridIndex(n int) int {
	if n <= minAdviceN {
		return 0
	}
	i := max(0, int(math.Floor(math.Log(float64(n)/minAdviceN)/math.Log(adviceStep))))
	for gridN(i) < n {
		i++
	}
	return i
}

// searchN returns for each target the smallest grid size up to maxN at
// which power reaches it, 0 when none does. guess is a size where the
// power is thought to reach the target; the search brackets the answer
// from there, widening in doubling steps, then bisects. power is
// evaluated once per size.
func searchN(power func(n int) float64, guess func(target float64) int, maxN int, targets ...float64) []int {
	memo := map[int]float64{}
	at := func(i int) float64 {
		if i < 0 {
			return 0
		}
		if v, ok := memo[i]; ok {
			return v
		}
		v := power(gridN(i))
		memo[i] = v
		return v
	}
	last := gridIndex(maxN)
	if gridN(last) > maxN {
		last--
	}
	out := make([]int, len(targets))
	for ti, target := range targets {
		// Brackets start on every fourth grid size, so that searches at
		// other levels evaluate the same sizes (the simulations are
		// cached per size).
		g := min(last, gridIndex(max(minAdviceN, min(guess(target), maxN))))
		g -= g % 4
		// Invariant once bracketed: at(lo) < target <= at(hi); lo = -1
		// stands for no samples at all.
		var lo, hi int
		if at(g) >= target {
			hi, lo = g, g-4
			for step := 4; lo >= 0 && at(lo) >= target; step *= 2 {
				hi, lo = lo, lo-step
			}
			lo = max(lo, -1)
		} else {
			lo, hi = g, min(g+4, last)
			for step := 4; at(hi) < target; step *= 2 {
				if hi == last {
					hi = -1
					break
				}
				lo, hi = hi, min(hi+step, last)
			}
			if hi < 0 {
				continue
			}
		}
		for hi-lo > 1 {
			mid := (lo + hi) / 2
			if at(mid) >= target {
				hi = mid
			} else {
				lo = mid
			}
		}
		out[ti] = gridN(hi)
	}
	return out
}

func newPower(effect string, level float64, method string, ns []int, maxN int) Power {
	p := Power{Effect: effect, Level: Float(level), N80: ns[0], N95: ns[1], Method: method}
	if p.N80 == 0 || p.N95 == 0 {
		p.Beyond = maxN
	}
	return p
}

// approxN is the smallest grid size at which an approximate power
// reaches target, maxN when none up to it does.
func approxN(power func(n float64) float64, target float64, maxN int) int {
	for i := 0; ; i++ {
		n := gridN(i)
		if n >= maxN {
			return maxN
		}
		if power(float64(n)) >= target {
			return n
		}
	}
}

// binomPMF is P(S = k) for S ~ Binomial(n, p).
func binomPMF(k, n int, p float64) float64 {
	switch {
	case p <= 0:
		if k == 0 {
			return 1
		}
		return 0
	case p >= 1:
		if k == n {
			return 1
		}
		return 0
	}
	return math.Exp(logDbinomRaw(float64(k), float64(n), p, 1-p))
}

// binomSF is P(S >= k) for S ~ Binomial(n, p).
func binomSF(k, n int, p float64) float64 {
	switch {
	case k <= 0:
		return 1
	case k > n:
		return 0
	case p <= 0:
		return 0
	case p >= 1:
		return 1
	}
	lower, _ := betaInc(float64(k), float64(n-k+1), p, 1-p)
	return lower
}

// TailSharePower is the exact power of the tail-share check at level
// for n samples per side, when a share s of the canary lies beyond every
// other value and the check looks at the pooled sample's largest values
// for the tail percentile (e.g. 99).
func TailSharePower(n int, s, percentile, level float64) float64 {
	k := min(tailShareK(n, percentile), 2*n)
	// The smallest significant count; a count above k/2, the mean under
	// no change, is also "exceeded", so significance is failure. The
	// p-value only falls as the count grows.
	c := -1
	for x := k / 2; x <= k; x++ {
		if hyperSF(int64(x), int64(n), int64(n), int64(k)) <= level && 2*x > k {
			c = x
			break
		}
	}
	if c < 0 {
		return 0
	}
	power, below := 0.0, 0.0
	for S := 0; S < c && S <= n; S++ {
		pS := binomPMF(S, n, s)
		below += pS
		power += pS * hyperSF(int64(c-S), int64(n-S), int64(n), int64(k-S))
	}
	return min(1, power+math.Max(0, 1-below))
}

func tailShareAdvice(mc MetricConfig, level float64) Power {
	k := powerKey{check: "tail-share", level: level, effect: mc.DetectTail, percentile: mc.Tail}
	return cachedPower(k, func() Power {
		effect := fmt.Sprintf("a new tail of %s of the canary beyond every baseline value", pctString(mc.DetectTail))
		method := "exact: binomial mixture of hypergeometric tails"
		if mc.DetectTail <= 0 {
			return newPower(effect+" (no tail to detect)", level, method, []int{0, 0}, MaxSampleAdvice)
		}
		// A 1-in-s tail puts n*s canary samples there; the check needs
		// several, which 10/s samples give, and the search brackets
		// the answer from there.
		guess := func(float64) int { return int(math.Ceil(10 / mc.DetectTail)) }
		ns := searchN(func(n int) float64 { return TailSharePower(n, mc.DetectTail, mc.Tail, level) },
			guess, MaxSampleAdvice, 0.8, 0.95)
		return newPower(effect, level, method, ns, MaxSampleAdvice)
	})
}

// CountPower is the exact power of the count check for n requests per
// side: baseline rate p0, canary rate p1, the increase test at level, the
// tolerances of mc.
func CountPower(n int, p0, p1, level float64, mc MetricConfig) float64 {
	sd := math.Sqrt(float64(n) * p0 * (1 - p0))
	yLo := max(0, int(math.Floor(float64(n)*p0-8*sd-2)))
	yHi := min(n, int(math.Ceil(float64(n)*p0+8*sd+2)))
	sig := func(x, y int) bool {
		p, _ := FisherExact(int64(x), int64(n-x), int64(y), int64(n-y), Greater)
		return p <= level
	}
	power := 0.0
	x := 0
	for y := yLo; y <= yHi; y++ {
		py := binomPMF(y, n, p0)
		// The smallest canary count beyond the tolerance, compared as
		// judgeCounts compares the rates.
		rb := float64(y) / float64(n)
		hiTol := rb*(1+mc.AllowedIncrease) + mc.AllowedAbsoluteIncrease
		xe := max(0, int(math.Floor(hiTol*float64(n)))-1)
		for xe <= n && !(float64(xe)/float64(n) > hiTol) {
			xe++
		}
		// The smallest significant count at or above it: the critical
		// count never falls as y grows, so the sweep starts from the
		// last one and gallops.
		x = max(x, xe)
		if x > n {
			break
		}
		if !sig(x, y) {
			lo, step := x, 1
			hi := n + 1
			for lo+step <= n {
				if sig(lo+step, y) {
					hi = lo + step
					break
				}
				lo += step
				step *= 2
			}
			for hi-lo > 1 {
				mid := (lo + hi) / 2
				if sig(mid, y) {
					hi = mid
				} else {
					lo = mid
				}
			}
			x = hi
		}
		if x > n {
			break
		}
		if py > 0 {
			power += py * binomSF(x, n, p1)
		}
	}
	return min(1, power)
}

// countApprox is the normal approximation of CountPower: Fisher's test
// as the two-proportion z test, times the chance that the canary rate
// is beyond the tolerance.
func countApprox(n, p0, p1, level float64, mc MetricConfig) float64 {
	q0, q1 := 1-p0, 1-p1
	pbar := (p0 + p1) / 2
	v := p1*q1 + p0*q0
	za := qnorm(1 - level)
	sig := normCDF(((p1-p0)*math.Sqrt(n) - za*math.Sqrt(2*pbar*(1-pbar))) / math.Sqrt(v))
	f := 1 + mc.AllowedIncrease
	vt := p1*q1 + f*f*p0*q0
	tol := normCDF((p1 - f*p0 - mc.AllowedAbsoluteIncrease) * math.Sqrt(n) / math.Sqrt(vt))
	return sig * tol
}

// countLevel is the level the increase test of a count metric is held to.
func countLevel(mc MetricConfig, level float64) float64 {
	if mc.Direction == Either {
		return level / 2
	}
	return level
}

func countAdvice(mc MetricConfig, level, p0 float64) Power {
	level = countLevel(mc, level)
	p1 := p0*(1+mc.AllowedIncrease) + mc.AllowedAbsoluteIncrease + mc.DetectRate
	k := powerKey{check: "counts", level: level, effect: mc.DetectRate, allowed: mc.AllowedIncrease,
		allowed2: mc.AllowedAbsoluteIncrease, param: p0}
	return cachedPower(k, func() Power {
		effect := fmt.Sprintf("an error rate of %s against a baseline of %s", pctString(p1), pctString(p0))
		method := "exact: binomial sum over the baseline count of Fisher's test and the tolerance"
		if p1 >= 1 {
			return newPower(effect+" (not a rate)", level, method, []int{0, 0}, MaxCountAdvice)
		}
		guess := func(target float64) int {
			return approxN(func(n float64) float64 { return countApprox(n, p0, p1, level, mc) }, target, MaxCountAdvice)
		}
		ns := searchN(func(n int) float64 { return CountPower(n, p0, p1, level, mc) }, guess, MaxCountAdvice, 0.8, 0.95)
		return newPower(effect, level, method, ns, MaxCountAdvice)
	})
}

// roundRate rounds a baseline error rate to two significant digits, so
// that the cached advice serves similar baselines.
func roundRate(p float64) float64 {
	if !(p > 0) {
		return 0
	}
	e := math.Pow(10, math.Floor(math.Log10(p))-1)
	return math.Round(p/e) * e
}

// sigmaGrid rounds a log-scale spread to the grid 0.05 * 1.1^k, kept in
// [0.05, 3].
func sigmaGrid(s float64) float64 {
	if !(s > 0) {
		return defaultSigma
	}
	k := math.Round(math.Log(s/0.05) / math.Log(1.1))
	v := 0.05 * math.Pow(1.1, k)
	v = math.Round(v*1e4) / 1e4
	return math.Min(3, math.Max(0.05, v))
}

// logSigma is the log-scale spread of a sorted sample for the simulation
// model: the interquartile range of the logs over 1.349 on the sigma
// grid; defaultSigma when a value is not positive or the quartiles are
// equal.
func logSigma(s []float64) float64 {
	if len(s) < 4 || s[0] <= 0 {
		return defaultSigma
	}
	iqr := math.Log(quantileSorted(s, 0.75)) - math.Log(quantileSorted(s, 0.25))
	if !(iqr > 0) {
		return defaultSigma
	}
	return sigmaGrid(iqr / 1.349)
}

// simModel is one simulated effect: log-normal baseline with log-scale
// sigma, the canary drawn by canary from a standard normal.
type simModel struct {
	sigma  float64
	canary func(z float64) float64
}

// draw fills b and c with one simulated analysis, both sorted. Values
// are drawn alternately, so a larger n extends a smaller one's samples.
func (m simModel) draw(r *rand.Rand, b, c []float64) {
	for i := range b {
		b[i] = math.Exp(m.sigma * r.NormFloat64())
		c[i] = m.canary(r.NormFloat64())
	}
	sortFloats(b)
	sortFloats(c)
}

// simKey identifies one simulated model at one size; the runs' p-values
// do not depend on the level, so every level's search shares them. n
// zero is the model's pilot.
type simKey struct {
	check             string
	sigma, effect     float64
	allowed, allowed2 float64
	direction         Direction
	runs, n           int
}

type simEntry struct {
	once sync.Once
	// ps are the sorted p-values of the runs whose effect was beyond the
	// tolerance (the others never fail); for the pilot, the mean
	// standardised statistic alone.
	ps []float64
}

var (
	simCache     sync.Map // simKey -> *simEntry
	simCacheSize atomic.Int64
)

// maxSimCache bounds the simulation cache: at most 400 values per entry,
// 13 MB in all.
const maxSimCache = 4096

func cachedSim(k simKey, f func() []float64) []float64 {
	if e, ok := simCache.Load(k); ok {
		ent := e.(*simEntry)
		ent.once.Do(func() { ent.ps = f() })
		return ent.ps
	}
	if simCacheSize.Load() >= maxSimCache {
		return f()
	}
	e, loaded := simCache.LoadOrStore(k, &simEntry{})
	if !loaded {
		simCacheSize.Add(1)
	}
	ent := e.(*simEntry)
	ent.once.Do(func() { ent.ps = f() })
	return ent.ps
}

// simPValues simulates k.runs analyses of k.n per side of model m and
// returns, sorted, the p-values pval gives (2 for a run whose effect is
// within the tolerance, which no level fails); run i always draws from
// the same seed. The runs are shared among the cores; the result does
// not depend on how.
func simPValues(k simKey, m simModel, pval func(b, c []float64) float64) []float64 {
	return cachedSim(k, func() []float64 {
		workers := max(1, min(runtime.GOMAXPROCS(0), k.runs/50))
		out := make([]float64, k.runs)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				b, c := make([]float64, k.n), make([]float64, k.n)
				for i := w; i < k.runs; i += workers {
					r := rand.New(rand.NewPCG(adviceSeed, uint64(i)))
					m.draw(r, b, c)
					out[i] = pval(b, c)
				}
			})
		}
		wg.Wait()
		sortFloats(out)
		// Keep only the runs that can fail at some level.
		return out[:sort.SearchFloat64s(out, 1.5)]
	})
}

// simPower is the share of simulated runs that fail at level.
func simPower(ps []float64, runs int, level float64) float64 {
	return float64(sort.Search(len(ps), func(i int) bool { return ps[i] > level })) / float64(runs)
}

// simGuess brackets a simulated search: the mean standardised statistic
// z at pilotN per side over pilotRuns runs grows with sqrt(n), and the
// power is about Phi(z sqrt(n/pilotN) - z_level).
func simGuess(k simKey, m simModel, z func(b, c []float64) float64, level float64) func(target float64) int {
	k.n, k.runs = 0, pilotRuns
	delta := cachedSim(k, func() []float64 {
		b, c := make([]float64, pilotN), make([]float64, pilotN)
		sum := 0.0
		for i := range pilotRuns {
			r := rand.New(rand.NewPCG(adviceSeed+1, uint64(i)))
			m.draw(r, b, c)
			sum += z(b, c)
		}
		return []float64{sum / pilotRuns}
	})[0]
	za := qnorm(1 - level)
	return func(target float64) int {
		if !(delta > 0) {
			return 4 * maxSimAdvice
		}
		k := (za + qnorm(target)) / delta
		return int(math.Min(4*maxSimAdvice, math.Ceil(pilotN*k*k)))
	}
}

// countLE is the number of pairs with xs[i] - ys[j] <= d, for sorted xs
// and ys, in O(len(xs) + len(ys)).
func countLE(xs, ys []float64, d float64) int {
	count, i := 0, 0
	for _, y := range ys {
		for i < len(xs) && xs[i] <= y+d {
			i++
		}
		count += i
	}
	return count
}

// hlAbove reports whether the Hodges-Lehmann estimate of sorted xs
// against sorted ys (the median of the pairwise differences) is above d,
// by counting the differences at or below d; only when d splits the two
// middle differences of an even count does it select them.
func hlAbove(xs, ys []float64, d float64) bool {
	mn := len(xs) * len(ys)
	le := countLE(xs, ys, d)
	if mn%2 == 1 {
		return le < (mn+1)/2
	}
	switch {
	case le < mn/2:
		return true
	case le > mn/2:
		return false
	}
	sel := newDiffSelector(xs, ys, 1)
	a, b := sel.selectRank(mn/2-1, true)
	return (a+b)/2 > d
}

// shiftP is the shift check of judgeSamples on sorted samples: the
// Mann-Whitney p-value when the Hodges-Lehmann shift is beyond the
// allowed change, else 2. The check fails at level when shiftP <= level.
func shiftP(mc MetricConfig, b, c []float64) float64 {
	// The relative shift is the estimate over |baseline median|.
	med := math.Abs(medianSorted(b))
	exceeded := mc.Direction != Decrease && hlAbove(c, b, mc.AllowedIncrease*med)
	if !exceeded && mc.Direction != Increase {
		exceeded = hlAbove(negated(c), negated(b), mc.AllowedDecrease*med)
	}
	if !exceeded {
		return 2
	}
	alt := Greater
	switch mc.Direction {
	case Decrease:
		alt = Less
	case Either:
		alt = TwoSided
	}
	mw, err := mannWhitneyRanked(c, b, rankSums(c, b), alt, MethodAuto)
	if err != nil {
		return 2
	}
	return mw.PValue
}

// spreadP is the spread check of judgeSamples on sorted samples: the
// one-sided Brown-Forsythe p-value when the spread change is beyond the
// allowed one, else 2.
func spreadP(mc MetricConfig, b, c []float64) float64 {
	bf := brownForsytheSorted(c, b)
	eff := relative(bf.MeanAbsDevX, bf.MeanAbsDevY)
	if bm, cm := medianSorted(b), medianSorted(c); bm > 0 && cm > 0 {
		eff = relative(bf.MeanAbsDevX/cm, bf.MeanAbsDevY/bm)
	}
	if !(eff > mc.SpreadIncrease) {
		return 2
	}
	return bf.OneSided(Greater)
}

// mwZ is the standardised Mann-Whitney statistic of sorted c against b,
// positive when c is larger; spreadZ the signed square root of the
// Brown-Forsythe statistic, positive when c is more spread out.
func mwZ(b, c []float64) float64 {
	n1, n2 := float64(len(c)), float64(len(b))
	u := rankSums(c, b).rankSumX - n1*(n1+1)/2
	return (u - n1*n2/2) / math.Sqrt(n1*n2*(n1+n2+1)/12)
}

func spreadZ(b, c []float64) float64 {
	bf := brownForsytheSorted(c, b)
	if math.IsNaN(bf.W) || math.IsInf(bf.W, 0) {
		return 0
	}
	z := math.Sqrt(bf.W)
	if bf.MeanAbsDevX < bf.MeanAbsDevY {
		z = -z
	}
	return z
}

func simMethod(sigma float64) string {
	return fmt.Sprintf("simulation: %d runs per size (seed %d) of log-normal samples, log-scale sigma %.3g", simRuns, adviceSeed, sigma)
}

// shiftModel is the simulated shift effect.
func shiftModel(mc MetricConfig, sigma float64) (simModel, string) {
	factor, effect := 1+mc.DetectShift, fmt.Sprintf("a median %s higher", pctString(mc.DetectShift))
	if mc.Direction == Decrease {
		factor, effect = 1-mc.DetectShift, fmt.Sprintf("a median %s lower", pctString(mc.DetectShift))
	}
	return simModel{sigma: sigma, canary: func(z float64) float64 { return factor * math.Exp(sigma*z) }}, effect
}

// spreadModel is the simulated spread effect.
func spreadModel(mc MetricConfig, sigma float64) (simModel, string) {
	scale := math.Sqrt(mc.DetectSpread)
	return simModel{sigma: sigma, canary: func(z float64) float64 { return math.Exp(scale * sigma * z) }},
		fmt.Sprintf("%gx the variance of log-latency, same median", mc.DetectSpread)
}

// simAdvice searches the simulated power of a check at level. When the
// pilot puts even the 80% size beyond the search limit it is not
// simulated: the pilot leaves out the tolerance, so it can only
// understate the size, and every size up to the limit would be spent on
// a power below 80%.
func simAdvice(k simKey, effect string, level float64, m simModel, pval func(b, c []float64) float64, guess func(float64) int) Power {
	if guess(0.8) > maxSimAdvice {
		return newPower(effect, level, simMethod(k.sigma)+"; the pilot puts 80% beyond the search", []int{0, 0}, maxSimAdvice)
	}
	k.runs = simRuns
	ns := searchN(func(n int) float64 {
		k.n = n
		return simPower(simPValues(k, m, pval), k.runs, level)
	}, guess, maxSimAdvice, 0.8, 0.95)
	return newPower(effect, level, simMethod(k.sigma), ns, maxSimAdvice)
}

func shiftAdvice(mc MetricConfig, level, sigma float64) Power {
	k := powerKey{check: "shift", level: level, effect: mc.DetectShift, allowed: mc.AllowedIncrease,
		allowed2: mc.AllowedDecrease, param: sigma, direction: mc.Direction}
	return cachedPower(k, func() Power {
		m, effect := shiftModel(mc, sigma)
		sk := simKey{check: "shift", sigma: sigma, effect: mc.DetectShift, allowed: mc.AllowedIncrease,
			allowed2: mc.AllowedDecrease, direction: mc.Direction}
		z, zl := mwZ, level
		switch mc.Direction {
		case Decrease:
			z = func(b, c []float64) float64 { return -mwZ(b, c) }
		case Either:
			zl = level / 2
		}
		pval := func(b, c []float64) float64 { return shiftP(mc, b, c) }
		return simAdvice(sk, effect, level, m, pval, simGuess(sk, m, z, zl))
	})
}

func spreadAdvice(mc MetricConfig, level, sigma float64) Power {
	k := powerKey{check: "spread", level: level, effect: mc.DetectSpread, allowed: mc.SpreadIncrease, param: sigma}
	return cachedPower(k, func() Power {
		m, effect := spreadModel(mc, sigma)
		sk := simKey{check: "spread", sigma: sigma, effect: mc.DetectSpread, allowed: mc.SpreadIncrease}
		pval := func(b, c []float64) float64 { return spreadP(mc, b, c) }
		return simAdvice(sk, effect, level, m, pval, simGuess(sk, m, spreadZ, level))
	})
}

// holmChecks is how many checks of a sample metric share its level under
// Holm: shift, and with tails spread and, per harmful direction, tail and
// far-tail (counted even where the far-tail check is skipped, which only
// makes the advice conservative).
func holmChecks(mc MetricConfig) int {
	if mc.Tail == TailDisabled {
		return 1
	}
	n := 2
	if mc.Direction != Decrease {
		n += 2
	}
	if mc.Direction != Increase {
		n += 2
	}
	return n
}

// sampleAdvice is the advice for each check of a sample metric, keyed
// by check name; sigma is the model's log-scale spread.
func sampleAdvice(mc MetricConfig, lv levels, sigma float64) map[string]Power {
	out := map[string]Power{}
	bonf := lv.metric / float64(holmChecks(mc))
	out["shift"] = shiftAdvice(mc, bonf, sigma)
	if mc.Tail == TailDisabled {
		return out
	}
	out["spread"] = spreadAdvice(mc, bonf, sigma)
	if mc.DetectTail > 0 {
		ts := tailShareAdvice(mc, lv.tail)
		if mc.Direction != Decrease {
			out["tail-share"] = ts
		}
		if mc.Direction != Increase {
			ts.Effect = fmt.Sprintf("a new tail of %s of the canary below every baseline value", pctString(mc.DetectTail))
			out["tail-share-low"] = ts
		}
	}
	return out
}

// attachAdvice sets the advice on the checks it is for and returns the
// largest 80%-power size over them and that check's name.
func attachAdvice(checks []Check, advice map[string]Power) (need int, check string) {
	for i := range checks {
		p, ok := advice[checks[i].Name]
		if !ok {
			continue
		}
		checks[i].Power = &p
		if n := p.Need(); n > need {
			need, check = n, checks[i].Name
		}
	}
	return need, check
}

// underpowered makes a passing critical metric with fewer than the
// 80%-power size on a side inconclusive: it looked at too few samples to
// see the regression it is configured to catch.
func underpowered(mr *MetricResult, n int, unit string) {
	if !mr.Critical || mr.Status != StatusPass || mr.NeedSamples == 0 || n >= mr.NeedSamples {
		return
	}
	var p *Power
	for i := range mr.Checks {
		if mr.Checks[i].Name == mr.NeedCheck {
			p = mr.Checks[i].Power
		}
	}
	need := fmt.Sprintf("needs %d %s per side", mr.NeedSamples, unit)
	effect := ""
	if p != nil {
		if p.N80 == 0 {
			need = fmt.Sprintf("needs more than %d %s per side", p.Beyond, unit)
		}
		effect = " to catch " + p.Effect
	}
	mr.Status = StatusInconclusive
	mr.Reason = fmt.Sprintf("%s: the %s check reaches 80%% power%s only from there, and it has %d", need, mr.NeedCheck, effect, n)
}
