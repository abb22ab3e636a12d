package canary

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Input holds the data of one analysis run, keyed by metric name.
type Input struct {
	Metrics map[string]MetricInput
}

// MetricInput is one metric's data: samples per side for sample metrics,
// counts per side for count metrics.
type MetricInput struct {
	Baseline, Canary             []float64
	BaselineCounts, CanaryCounts *Counts
}

// Counts are the events of one side of a count metric: Errors out of
// Total (requests). Non-integer counts (from PromQL increase()) are
// rounded to the nearest integer.
type Counts struct {
	Errors float64 `json:"errors"`
	Total  float64 `json:"total"`
}

// Analyze judges one run: every configured metric, then the score and the
// verdict. It does no I/O and reads no clock; the same inputs give the
// same result. The error reports an invalid configuration only: missing
// or unusable data gives metrics without a verdict, never an error and
// never a silent pass.
func Analyze(cfg Config, in Input) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	lv := levelsFor(cfg)
	res := Result{
		Pass: Float(cfg.Pass), Marginal: Float(cfg.Marginal),
		Alpha: Float(cfg.Alpha), MetricAlpha: Float(lv.metric), TailAlpha: Float(lv.tail),
		Kayenta: cfg.Kayenta, MaxInconclusive: Float(cfg.MaxInconclusive),
	}
	// Metrics are independent: judge them on all cores. Each worker
	// writes only its own slots, so the result does not depend on
	// scheduling.
	res.Metrics = make([]MetricResult, len(cfg.Metrics))
	workers := min(runtime.GOMAXPROCS(0), len(cfg.Metrics))
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				res.Metrics[i] = judgeMetric(cfg, i, lv, in)
			}
		})
	}
	for i := range cfg.Metrics {
		next <- i
	}
	close(next)
	wg.Wait()
	var unused []string
	for name := range in.Metrics {
		if !slices.ContainsFunc(cfg.Metrics, func(m MetricConfig) bool { return m.Name == name }) {
			unused = append(unused, name)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		res.Notes = append(res.Notes, "input metrics not configured, ignored: "+strings.Join(unused, ", "))
	}
	score(cfg, &res)
	res.Explanation = explainResult(res)
	return res, nil
}

// levels are the significance levels of one analysis: metric is each
// metric's share for its Holm-corrected checks, tail each tail-share
// check's own level. Together they add up to Alpha (a union bound), so
// the chance that any check of identical canary and baseline fails is
// at most Alpha whatever the dependence between the checks.
type levels struct {
	metric, tail float64
}

// tailShareChecks is the number of tail-share checks of a metric: one per
// harmful direction of a sample metric with tails checked.
func tailShareChecks(cfg Config, m MetricConfig) int {
	if cfg.Kayenta || m.Counts || m.Tail == TailDisabled {
		return 0
	}
	if m.Direction == Either {
		return 2
	}
	return 1
}

func levelsFor(cfg Config) levels {
	if cfg.Kayenta {
		return levels{metric: cfg.Alpha}
	}
	tails := 0
	for _, m := range cfg.Metrics {
		tails += tailShareChecks(cfg, m)
	}
	rest := cfg.Alpha
	lv := levels{}
	if tails > 0 {
		lv.tail = cfg.Alpha * cfg.TailAlphaShare / float64(tails)
		rest = cfg.Alpha * (1 - cfg.TailAlphaShare)
	}
	lv.metric = rest / float64(len(cfg.Metrics))
	return lv
}

// judgeMetric judges the i-th configured metric.
func judgeMetric(cfg Config, i int, lv levels, in Input) MetricResult {
	metricAlpha := lv.metric
	mc := cfg.Metrics[i]
	data, ok := in.Metrics[mc.Name]
	var mr MetricResult
	switch {
	case !ok:
		mr = baseResult(mc)
		mr.Status = StatusNoData
		mr.Reason = "no data for this metric in the input"
	case mc.Counts:
		mr = judgeCounts(mc, metricAlpha, cfg.Kayenta, data)
	default:
		mr = judgeSamples(mc, lv, cfg.Kayenta, data, cfg.Seed+uint64(i))
	}
	mr.Explanation = explainMetric(mr)
	return mr
}

func baseResult(mc MetricConfig) MetricResult {
	kind := "samples"
	if mc.Counts {
		kind = "counts"
	}
	return MetricResult{Name: mc.Name, Group: mc.Group, Kind: kind, Direction: mc.Direction, Critical: mc.Critical}
}

// groupWeights returns the weight of each group named by the metrics.
func groupWeights(cfg Config) map[string]float64 {
	w := map[string]float64{}
	mean := 1.0
	if len(cfg.Groups) > 0 {
		sum := 0.0
		for _, v := range cfg.Groups {
			sum += v
		}
		mean = sum / float64(len(cfg.Groups))
	}
	for _, m := range cfg.Metrics {
		if v, ok := cfg.Groups[m.Group]; ok {
			w[m.Group] = v
		} else {
			w[m.Group] = mean
		}
	}
	return w
}

// score fills in groups, weights, the score and the verdict.
func score(cfg Config, res *Result) {
	weights := groupWeights(cfg)
	var names []string
	groups := map[string]*GroupResult{}
	for _, m := range res.Metrics {
		g := groups[m.Group]
		if g == nil {
			g = &GroupResult{Name: m.Group, Weight: Float(weights[m.Group])}
			groups[m.Group] = g
			names = append(names, m.Group)
		}
		g.Metrics++
		switch m.Status {
		case StatusPass:
			g.Judged++
			g.Passed++
		case StatusFail:
			g.Judged++
		}
	}
	totalWeight, judgedWeight, weighted, missing, bestCase := 0.0, 0.0, 0.0, 0.0, 0.0
	for i := range res.Metrics {
		m := &res.Metrics[i]
		g := groups[m.Group]
		m.Weight = Float(float64(g.Weight) / float64(g.Metrics))
		totalWeight += float64(m.Weight)
		if m.Status == StatusNoData || m.Status == StatusInconclusive {
			missing += float64(m.Weight)
			bestCase += float64(m.Weight)
		} else if m.Status == StatusPass {
			bestCase += float64(m.Weight)
		}
	}
	for _, n := range names {
		g := groups[n]
		g.Score = Float(math.NaN())
		if g.Judged > 0 {
			g.Score = Float(100 * float64(g.Passed) / float64(g.Judged))
			judgedWeight += float64(g.Weight)
			weighted += float64(g.Weight) * float64(g.Score)
		}
		res.Groups = append(res.Groups, *g)
	}
	res.Score = Float(math.NaN())
	if judgedWeight > 0 {
		res.Score = Float(weighted / judgedWeight)
	}
	res.InconclusiveShare = Float(0)
	if totalWeight > 0 {
		res.InconclusiveShare = Float(missing / totalWeight)
		bestCase = 100 * bestCase / totalWeight
	} else {
		bestCase = 100
	}
	criticalFailed, criticalMissing := false, false
	for _, m := range res.Metrics {
		if !m.Critical {
			continue
		}
		switch m.Status {
		case StatusFail:
			criticalFailed = true
		case StatusNoData, StatusInconclusive:
			criticalMissing = true
		}
	}
	switch {
	case criticalFailed:
		res.Verdict = VerdictFail
	case judgedWeight == 0 && totalWeight > 0:
		res.Verdict = VerdictInconclusive
	case bestCase < cfg.Marginal:
		// Even if every metric without a verdict passed, the score would
		// stay below marginal: the missing data cannot rescue it.
		res.Verdict = VerdictFail
	case criticalMissing, float64(res.InconclusiveShare) > cfg.MaxInconclusive:
		res.Verdict = VerdictInconclusive
	case judgedWeight == 0:
		res.Verdict = VerdictInconclusive
	case float64(res.Score) >= cfg.Pass:
		res.Verdict = VerdictPass
	case float64(res.Score) >= cfg.Marginal:
		res.Verdict = VerdictMarginal
	default:
		res.Verdict = VerdictFail
	}
}

// clean applies the NaN policy to one side and returns the sorted values
// and how many were NaN or infinite.
func clean(v []float64, policy NaNPolicy) ([]float64, int) {
	out := make([]float64, 0, len(v))
	invalid := 0
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			invalid++
			if policy == NaNZero {
				out = append(out, 0)
			}
			continue
		}
		out = append(out, x)
	}
	sortFloats(out)
	return out, invalid
}

// trimOutliers returns the sorted values within k interquartile ranges of
// the quartiles.
func trimOutliers(s []float64, k float64) []float64 {
	if len(s) < 4 {
		return s
	}
	q1, q3 := quantileSorted(s, 0.25), quantileSorted(s, 0.75)
	lo, hi := q1-k*(q3-q1), q3+k*(q3-q1)
	i := sort.SearchFloat64s(s, lo)
	j := sort.Search(len(s), func(j int) bool { return s[j] > hi })
	return s[i:j]
}

func meanOf(s []float64) float64 {
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	return sum / float64(len(s))
}

// relative is the change from base to v relative to |base|; from zero it
// is +Inf, -Inf or 0.
func relative(v, base float64) float64 {
	if base == 0 {
		switch {
		case v > 0:
			return math.Inf(1)
		case v < 0:
			return math.Inf(-1)
		}
		return 0
	}
	return (v - base) / math.Abs(base)
}

// shiftRelative is a shift relative to the baseline median.
func shiftRelative(d, baseMedian float64) float64 {
	return relative(baseMedian+d, baseMedian)
}

func judgeSamples(mc MetricConfig, lv levels, kayenta bool, in MetricInput, seed uint64) MetricResult {
	alpha := lv.metric
	mr := baseResult(mc)
	if in.BaselineCounts != nil || in.CanaryCounts != nil {
		mr.Status = StatusNoData
		mr.Reason = "the input has counts, but the metric is configured for samples"
		return mr
	}
	bAll, bInvalid := clean(in.Baseline, mc.NaN)
	cAll, cInvalid := clean(in.Canary, mc.NaN)
	bs, cs := bAll, cAll
	if mc.Outliers == OutliersRemove {
		bs, cs = trimOutliers(bAll, mc.OutlierIQR), trimOutliers(cAll, mc.OutlierIQR)
	}
	mr.Baseline = Side{N: len(bs), Invalid: bInvalid, Outliers: len(bAll) - len(bs)}
	mr.Canary = Side{N: len(cs), Invalid: cInvalid, Outliers: len(cAll) - len(cs)}
	if len(bs) < mc.MinSamples || len(cs) < mc.MinSamples {
		mr.Status = StatusNoData
		mr.Reason = fmt.Sprintf("%d baseline and %d canary samples, need at least %d on each side", len(bs), len(cs), mc.MinSamples)
		return mr
	}
	bMed, cMed := medianSorted(bs), medianSorted(cs)
	mr.Baseline.Median, mr.Canary.Median = Float(bMed), Float(cMed)
	mr.Baseline.Mean, mr.Canary.Mean = Float(meanOf(bs)), Float(meanOf(cs))

	// Shift: Mann-Whitney U on the direction of harm, Hodges-Lehmann for
	// its size.
	alt := Greater
	switch mc.Direction {
	case Decrease:
		alt = Less
	case Either:
		alt = TwoSided
	}
	ranks := rankSums(cs, bs)
	mw, err := mannWhitneyRanked(cs, bs, ranks, alt, MethodAuto)
	if err != nil {
		mr.Status = StatusInconclusive
		mr.Reason = "mann-whitney: " + err.Error()
		return mr
	}
	conf := 1 - alpha
	sel := newDiffSelector(cs, bs, seed)
	hl, err := hodgesLehmannSorted(cs, bs, conf, TwoSided, ranks.ties, sel)
	if err != nil {
		mr.Status = StatusInconclusive
		mr.Reason = "hodges-lehmann: " + err.Error()
		return mr
	}
	rel := shiftRelative(hl.Estimate, bMed)
	mr.Shift = &ShiftOut{
		Estimate: Float(hl.Estimate), Lower: Float(hl.Lower), Upper: Float(hl.Upper), ConfLevel: Float(conf),
		Relative: Float(rel), RelativeLower: Float(shiftRelative(hl.Lower, bMed)),
		RelativeUpper: Float(shiftRelative(hl.Upper, bMed)), Method: hl.Method.String(),
	}
	shift := Check{
		Name: "shift", Test: "Mann-Whitney U", Alternative: alt.String(),
		Statistic: Float(mw.U), PValue: Float(mw.PValue),
		Effect:   Float(rel),
		Exceeded: exceeds(rel, mc.Direction, mc.AllowedIncrease, mc.AllowedDecrease),
		Allowed:  Float(allowedFor(rel, mc)),
		Detail:   fmt.Sprintf("%s method, U=%g", mw.Method, mw.U),
	}
	checks := []Check{shift}

	if !kayenta && mc.Tail != TailDisabled {
		// Spread and tails see every valid sample, outliers included.
		bf := brownForsytheSorted(cAll, bAll)
		// The effect is the change of the dispersion relative to the
		// median where both medians are positive, so that a pure change
		// of scale (all latencies 10% slower) counts as a shift, not
		// also as a spread change; the test itself is on absolute
		// deviations, as Brown and Forsythe define it.
		bAllMed, cAllMed := medianSorted(bAll), medianSorted(cAll)
		eff := relative(bf.MeanAbsDevX, bf.MeanAbsDevY)
		detail := fmt.Sprintf("mean absolute deviation from the median: canary %.4g vs baseline %.4g", bf.MeanAbsDevX, bf.MeanAbsDevY)
		if bAllMed > 0 && cAllMed > 0 {
			eff = relative(bf.MeanAbsDevX/cAllMed, bf.MeanAbsDevY/bAllMed)
			detail = fmt.Sprintf("mean absolute deviation from the median: canary %.4g (%.1f%% of its median) vs baseline %.4g (%.1f%%)",
				bf.MeanAbsDevX, 100*bf.MeanAbsDevX/cAllMed, bf.MeanAbsDevY, 100*bf.MeanAbsDevY/bAllMed)
		}
		checks = append(checks, Check{
			Name: "spread", Test: "Brown-Forsythe", Alternative: Greater.String(),
			Statistic: Float(bf.W), PValue: Float(bf.OneSided(Greater)),
			Effect: Float(eff), Allowed: Float(mc.SpreadIncrease), Exceeded: eff > mc.SpreadIncrease,
			Detail: detail,
		})
		q := mc.Tail / 100
		mr.Baseline.Tail, mr.Canary.Tail = Float(quantileSorted(bAll, q)), Float(quantileSorted(cAll, q))
		if mc.Direction != Decrease {
			checks = append(checks, tailChecks(cAll, bAll, mc, false)...)
		}
		if mc.Direction != Increase {
			checks = append(checks, tailChecks(negated(cAll), negated(bAll), mc, true)...)
		}
	}
	holm(checks, alpha)
	if !kayenta && mc.Tail != TailDisabled {
		// The tail-share checks have their own level, outside Holm.
		if mc.Direction != Decrease {
			checks = append(checks, tailShareCheck(cAll, bAll, mc, lv.tail, false))
		}
		if mc.Direction != Increase {
			checks = append(checks, tailShareCheck(negated(cAll), negated(bAll), mc, lv.tail, true))
		}
	}
	mr.Checks = checks
	mr.Status = StatusPass
	for _, c := range checks {
		if c.Failed {
			mr.Status = StatusFail
			mr.Failed = append(mr.Failed, c.Name)
		}
	}
	if !kayenta {
		mr.NeedSamples, mr.NeedCheck = attachAdvice(mr.Checks, sampleAdvice(mc, lv, logSigma(bAll)))
		underpowered(&mr, min(len(bs), len(cs)), "samples")
	}
	return mr
}

// exceeds reports whether a relative change is beyond the tolerance in a
// harmful direction.
func exceeds(rel float64, d Direction, inc, dec float64) bool {
	up := rel > inc
	down := rel < -dec
	switch d {
	case Increase:
		return up
	case Decrease:
		return down
	}
	return up || down
}

func allowedFor(rel float64, mc MetricConfig) float64 {
	if mc.Direction == Decrease || (mc.Direction == Either && rel < 0) {
		return -mc.AllowedDecrease
	}
	return mc.AllowedIncrease
}

// negated returns -v in ascending order, which turns the lower tail into
// the upper one.
func negated(s []float64) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[len(s)-1-i] = -v
	}
	return out
}

// tailChecks compares the exceedances of the baseline's tail percentile
// and, when that is not already the baseline extreme, of the baseline
// extreme (a tail beyond anything the baseline showed). low marks the
// lower tail, checked on negated values.
func tailChecks(cs, bs []float64, mc MetricConfig, low bool) []Check {
	suffix, word, allowed := "", "above", mc.AllowedIncrease
	if low {
		suffix, word, allowed = "-low", "below", mc.AllowedDecrease
	}
	sign := 1.0
	if low {
		sign = -1
	}
	q := mc.Tail / 100
	bq, cq := quantileSorted(bs, q)*sign, quantileSorted(cs, q)*sign
	eff := relative(cq, bq)
	if low {
		eff = -eff
	}
	t := tailSorted(cs, bs, mc.Tail)
	pct := fmt.Sprintf("p%g", mc.Tail)
	if low {
		pct = fmt.Sprintf("p%g", 100-mc.Tail)
	}
	checks := []Check{{
		Name: "tail" + suffix, Test: "exceedance (beta-binomial)", Alternative: Greater.String(),
		Statistic: Float(t.Exceed), PValue: Float(t.PValue), Effect: Float(eff), Allowed: Float(allowed),
		Exceeded: eff > allowed && float64(t.Exceed) > t.Expected,
		Detail: fmt.Sprintf("%s canary %.4g vs baseline %.4g; %d of %d canary samples %s the baseline %s %.4g, expected %.1f",
			pct, cq, bq, t.Exceed, t.N, word, pct, t.Threshold*sign, t.Expected),
	}}
	if t.R > 1 {
		f := tailSorted(cs, bs, 100)
		extreme := "maximum"
		if low {
			extreme = "minimum"
		}
		share := float64(f.Exceed) / float64(f.N)
		checks = append(checks, Check{
			Name: "far-tail" + suffix, Test: "exceedance (beta-binomial)", Alternative: Greater.String(),
			Statistic: Float(f.Exceed), PValue: Float(f.PValue),
			Effect: Float(relative(float64(f.Exceed), f.Expected)), Allowed: Float(0),
			Exceeded: float64(f.Exceed) > f.Expected,
			Detail: fmt.Sprintf("%d of %d canary samples (%.2f%%) %s the baseline %s %.4g, expected %.1f",
				f.Exceed, f.N, 100*share, word, extreme, f.Threshold*sign, f.Expected),
		})
	}
	return checks
}

// tailShareCheck is the tail-share test at its own level: how many of
// the pooled sample's largest values (smallest, when low) are canary.
func tailShareCheck(cs, bs []float64, mc MetricConfig, level float64, low bool) Check {
	name, word := "tail-share", "largest"
	if low {
		name, word = "tail-share-low", "smallest"
	}
	t := tailShareSorted(cs, bs, mc.Tail)
	c := Check{
		Name: name, Test: "tail share (hypergeometric)", Alternative: Greater.String(),
		Statistic: Float(t.Canary), PValue: Float(t.PValue), Alpha: Float(level),
		Effect: Float(relative(float64(t.Canary), t.Expected)), Allowed: Float(0),
		Exceeded: float64(t.Canary) > t.Expected,
		Detail: fmt.Sprintf("%d of the %d %s of %d pooled samples are canary, expected %.1f",
			t.Canary, t.K, word, t.M+t.N, t.Expected),
	}
	c.Significant = t.K > 0 && t.PValue <= level
	c.Failed = c.Significant && c.Exceeded
	return c
}

// holm applies Holm's step-down correction at level alpha to the checks
// of one metric: the i-th smallest p-value is held to alpha/(k-i) until
// the first one that is not significant. Holm controls the chance of any
// false significance at alpha whatever the dependence between checks.
func holm(checks []Check, alpha float64) {
	idx := make([]int, len(checks))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return checks[idx[a]].PValue < checks[idx[b]].PValue })
	stopped := false
	for rank, i := range idx {
		c := &checks[i]
		c.Alpha = Float(alpha / float64(len(checks)-rank))
		if !stopped && c.PValue <= c.Alpha {
			c.Significant = true
		} else {
			stopped = true
		}
		c.Failed = c.Significant && c.Exceeded
	}
}

func judgeCounts(mc MetricConfig, alpha float64, kayenta bool, in MetricInput) MetricResult {
	mr := baseResult(mc)
	if in.BaselineCounts == nil || in.CanaryCounts == nil {
		mr.Status = StatusNoData
		mr.Reason = "the metric is configured for counts, but the input has no counts for both sides"
		if len(in.Baseline) > 0 || len(in.Canary) > 0 {
			mr.Reason = "the input has samples, but the metric is configured for counts"
		}
		return mr
	}
	if kayenta {
		mr.Status = StatusNoData
		mr.Reason = "Kayenta mode has no test on counts; give Kayenta per-step ratios as samples"
		return mr
	}
	b, c := *in.BaselineCounts, *in.CanaryCounts
	for _, s := range []struct {
		name string
		c    Counts
	}{{"baseline", b}, {"canary", c}} {
		if err := s.c.validate(); err != nil {
			mr.Status = StatusInconclusive
			mr.Reason = s.name + ": " + err.Error()
			return mr
		}
	}
	eb, tb := int64(math.Round(b.Errors)), int64(math.Round(b.Total))
	ec, tc := int64(math.Round(c.Errors)), int64(math.Round(c.Total))
	rb, rc := rate(eb, tb), rate(ec, tc)
	mr.Baseline = Side{Errors: Float(eb), Total: Float(tb), Rate: Float(rb)}
	mr.Canary = Side{Errors: Float(ec), Total: Float(tc), Rate: Float(rc)}
	if tb < int64(mc.MinSamples) || tc < int64(mc.MinSamples) {
		mr.Status = StatusNoData
		mr.Reason = fmt.Sprintf("%d baseline and %d canary requests, need at least %d on each side", tb, tc, mc.MinSamples)
		return mr
	}
	var p float64
	var alt Alternative
	greater, _ := FisherExact(ec, tc-ec, eb, tb-eb, Greater)
	less, _ := FisherExact(ec, tc-ec, eb, tb-eb, Less)
	switch mc.Direction {
	case Increase:
		p, alt = greater, Greater
	case Decrease:
		p, alt = less, Less
	default:
		// Both one-sided tests at half the level each (Bonferroni).
		p, alt = math.Min(1, 2*math.Min(greater, less)), TwoSided
	}
	hiTol := rb*(1+mc.AllowedIncrease) + mc.AllowedAbsoluteIncrease
	loTol := rb*(1-mc.AllowedDecrease) - mc.AllowedAbsoluteIncrease
	up, down := rc > hiTol, rc < loTol
	exceeded := (up && mc.Direction != Decrease) || (down && mc.Direction != Increase)
	eff := relative(rc, rb)
	allowed := mc.AllowedIncrease
	if mc.Direction == Decrease || (mc.Direction == Either && down) {
		allowed = -mc.AllowedDecrease
	}
	check := Check{
		Name: "counts", Test: "Fisher exact", Alternative: alt.String(),
		Statistic: Float(ec), PValue: Float(p), Effect: Float(eff), Allowed: Float(allowed), Exceeded: exceeded,
		Detail: fmt.Sprintf("tolerated canary rate %s", tolerated(mc, loTol, hiTol)),
	}
	checks := []Check{check}
	holm(checks, alpha)
	if mc.Direction != Decrease {
		mr.NeedSamples, mr.NeedCheck = attachAdvice(checks, map[string]Power{"counts": countAdvice(mc, alpha, roundRate(rb))})
	}
	mr.Checks = checks
	switch {
	case checks[0].Failed:
		mr.Status = StatusFail
		mr.Failed = []string{"counts"}
	case exceeded && (eb+ec < int64(mc.MinEvents) || (up && eb == 0) || (down && ec == 0)):
		// The canary looks worse than tolerated but the test cannot tell
		// with so few events, or the baseline has none to compare with:
		// a zero-error baseline must never let a canary's errors pass.
		mr.Status = StatusInconclusive
		mr.Reason = fmt.Sprintf("canary rate %s is beyond the tolerated %s but %d error events (baseline %d) are too few to judge",
			pctString(rc), tolerated(mc, loTol, hiTol), eb+ec, eb)
	default:
		mr.Status = StatusPass
	}
	underpowered(&mr, int(min(tb, tc)), "requests")
	return mr
}

func tolerated(mc MetricConfig, lo, hi float64) string {
	switch mc.Direction {
	case Increase:
		return "<= " + pctString(hi)
	case Decrease:
		return ">= " + pctString(math.Max(lo, 0))
	}
	return fmt.Sprintf("%s..%s", pctString(math.Max(lo, 0)), pctString(hi))
}

func rate(e, t int64) float64 {
	if t == 0 {
		return math.NaN()
	}
	return float64(e) / float64(t)
}

// validate checks one side's counts.
func (c Counts) validate() error {
	switch {
	case math.IsNaN(c.Errors) || math.IsNaN(c.Total) || math.IsInf(c.Errors, 0) || math.IsInf(c.Total, 0):
		return fmt.Errorf("counts must be finite numbers, got errors %v total %v", c.Errors, c.Total)
	case c.Errors < 0 || c.Total < 0:
		return fmt.Errorf("counts must not be negative, got errors %v total %v", c.Errors, c.Total)
	case math.Round(c.Errors) > math.Round(c.Total):
		return fmt.Errorf("errors %v exceed total %v", c.Errors, c.Total)
	case c.Total > 1e12:
		return fmt.Errorf("total %v is too large", c.Total)
	}
	return nil
}
