package canary

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// The detection table: synthetic canary/baseline pairs, many seeded runs
// per scenario, judged by QSP's configuration and by a Kayenta-equivalent
// one (the Mann-Whitney shift check only). Reproduce the table in
// docs/benchmarks/canary.md with
//
//	go test -run TestDetectionRates -v ./internal/gate/canary/
//
// Assumptions, stated once: latency samples are log-normal with median
// 200ms and log-scale sigma 0.3; errors are Bernoulli per request with a
// 1% baseline rate, 20 requests per step and n steps per side (10,000
// requests per side at n=500). QSP judges the error counts per side;
// Kayenta, which has no count test, judges the per-step error ratios, as
// its users configure it.

type scenario struct {
	name string
	n    int
	// baseLatency draws a baseline latency, lognormal unless set.
	baseLatency func(r *rand.Rand) float64
	// canaryLatency turns a baseline-distributed latency into the canary's.
	canaryLatency func(r *rand.Rand, v float64) float64
	baseRate      float64
	canaryRate    float64
	regression    bool
	// want is the bar: the least share caught for a regression, the most
	// share not passed for an A/A row.
	want float64
}

const (
	latencyMedian = 0.2
	latencySigma  = 0.3
	stepRequests  = 20
)

func identity(_ *rand.Rand, v float64) float64 { return v }

// scenarios are the rows of the detection table, each at n = 500 and
// n = 2,000 per side.
func scenarios() []scenario {
	var out []scenario
	for _, n := range []int{500, 2000} {
		tailBar := 0.95
		if n == 500 {
			// The ceiling is about 67%: see docs/benchmarks/canary.md.
			tailBar = 0.55
		}
		out = append(out,
			scenario{name: "A/A (no change)", n: n, canaryLatency: identity, baseRate: 0.01, canaryRate: 0.01, want: 0.05},
			scenario{name: "+10% latency", n: n, canaryLatency: func(_ *rand.Rand, v float64) float64 { return v * 1.1 },
				baseRate: 0.01, canaryRate: 0.01, regression: true, want: 0.95},
			scenario{name: "+1 point error rate (1% -> 2%)", n: n, canaryLatency: identity, baseRate: 0.01, canaryRate: 0.02,
				regression: true, want: 0.95},
			scenario{name: "doubled variance, same median", n: n, canaryLatency: func(_ *rand.Rand, v float64) float64 {
				// Scale the log-deviation from the median by sqrt(2).
				return latencyMedian * math.Exp(math.Log(v/latencyMedian)*math.Sqrt2)
			}, baseRate: 0.01, canaryRate: 0.01, regression: true, want: 0.95},
			scenario{name: "new 1% slow tail (5-10x)", n: n, canaryLatency: slowTail,
				baseRate: 0.01, canaryRate: 0.01, regression: true, want: tailBar},
			scenario{name: "zero-error baseline, canary 0.3% errors", n: n, canaryLatency: identity, baseRate: 0, canaryRate: 0.003,
				regression: true, want: 0.95},
			scenario{name: "A/A heavy tail: log-normal sigma 1.5", n: n, baseLatency: func(r *rand.Rand) float64 {
				return latencyMedian * math.Exp(1.5*r.NormFloat64())
			}, canaryLatency: identity, baseRate: 0.01, canaryRate: 0.01, want: 0.05},
			scenario{name: "A/A heavy tail: Pareto shape 1.1", n: n, baseLatency: func(r *rand.Rand) float64 {
				// Infinite variance: x_m / U^(1/1.1).
				return 0.05 / math.Pow(1-r.Float64(), 1/1.1)
			}, canaryLatency: identity, baseRate: 0.01, canaryRate: 0.01, want: 0.05},
			scenario{name: "A/A bimodal: 90% 50ms, 10% 2s", n: n, baseLatency: func(r *rand.Rand) float64 {
				if r.Float64() < 0.1 {
					return 2 * math.Exp(0.2*r.NormFloat64())
				}
				return 0.05 * math.Exp(0.2*r.NormFloat64())
			}, canaryLatency: identity, baseRate: 0.01, canaryRate: 0.01, want: 0.05},
		)
	}
	return out
}

func slowTail(r *rand.Rand, v float64) float64 {
	if r.Float64() < 0.01 {
		return v * (5 + 5*r.Float64())
	}
	return v
}

func lognormal(r *rand.Rand) float64 {
	return latencyMedian * math.Exp(latencySigma*r.NormFloat64())
}

// simulate draws one run of a scenario.
func simulate(sc scenario, seed uint64) (qsp, kayenta Input) {
	r := rand.New(rand.NewPCG(seed, 42))
	base := make([]float64, sc.n)
	can := make([]float64, sc.n)
	draw := sc.baseLatency
	if draw == nil {
		draw = lognormal
	}
	for i := range base {
		base[i] = draw(r)
		can[i] = sc.canaryLatency(r, draw(r))
	}
	steps := func(p float64) ([]float64, Counts) {
		ratios := make([]float64, sc.n)
		var c Counts
		for i := range ratios {
			e := 0
			for range stepRequests {
				if r.Float64() < p {
					e++
				}
			}
			ratios[i] = float64(e) / stepRequests
			c.Errors += float64(e)
			c.Total += stepRequests
		}
		return ratios, c
	}
	bRatios, bCounts := steps(sc.baseRate)
	cRatios, cCounts := steps(sc.canaryRate)
	qsp = Input{Metrics: map[string]MetricInput{
		"latency": {Baseline: base, Canary: can},
		"errors":  {BaselineCounts: &bCounts, CanaryCounts: &cCounts},
	}}
	kayenta = Input{Metrics: map[string]MetricInput{
		"latency": {Baseline: base, Canary: can},
		"errors":  {Baseline: bRatios, Canary: cRatios},
	}}
	return qsp, kayenta
}

func qspConfig() Config {
	return Config{Metrics: []MetricConfig{
		{Name: "latency", Group: "latency", AllowedIncrease: 0.05},
		{Name: "errors", Group: "errors", Counts: true, AllowedIncrease: 0.2},
	}}
}

func kayentaConfig() Config {
	return Config{Kayenta: true, Metrics: []MetricConfig{
		{Name: "latency", Group: "latency", AllowedIncrease: 0.05},
		{Name: "errors", Group: "errors", AllowedIncrease: 0.2},
	}}
}

// notPass reports whether a verdict stops the rollout.
func notPass(v Verdict) bool { return v != VerdictPass }

// fullDetection runs the table's 1,000 runs per row and holds them to
// the bars themselves; without it the test runs fewer and loosens the
// bars by the binomial 99.9% interval of that many runs.
var fullDetection = flag.Bool("canary.full", false, "run the detection table and the power checks with 1,000 runs each")

// detectionRuns is how many runs a table row gets.
func detectionRuns() int {
	switch {
	case *fullDetection:
		return 1000
	case raceEnabled:
		// The race detector looks for data races; the rates are held
		// to their bars by the runs without it.
		return 40
	}
	return 200
}

// slack is how far an observed share of runs may fall short of a bar p
// by chance: 3.3 standard errors (99.9%) of a binomial share, zero with
// the full runs, which are held to the bars as the table states them.
func slack(p float64, runs int) float64 {
	if *fullDetection {
		return 0
	}
	return 3.3 * math.Sqrt(p*(1-p)/float64(runs))
}

func TestDetectionRates(t *testing.T) {
	runs := detectionRuns()
	var table strings.Builder
	fmt.Fprintf(&table, "| scenario | n per side | runs | bar | QSP: not passed | Kayenta-equivalent: not passed |\n")
	fmt.Fprintf(&table, "| --- | --- | --- | --- | --- | --- |\n")
	for si, sc := range scenarios() {
		if raceEnabled && sc.n > 500 {
			// Under the race detector the rows at 500 per side exercise
			// the same code; the larger rows run without it.
			continue
		}
		qspHits, kayHits := 0, 0
		for i := range runs {
			qin, kin := simulate(sc, uint64(si)<<32|uint64(i))
			qr, err := Analyze(qspConfig(), qin)
			if err != nil {
				t.Fatal(err)
			}
			kr, err := Analyze(kayentaConfig(), kin)
			if err != nil {
				t.Fatal(err)
			}
			if notPass(qr.Verdict) {
				qspHits++
			}
			if notPass(kr.Verdict) {
				kayHits++
			}
		}
		q := float64(qspHits) / float64(runs)
		k := float64(kayHits) / float64(runs)
		bar := fmt.Sprintf("<= %.0f%%", 100*sc.want)
		if sc.regression {
			bar = fmt.Sprintf(">= %.0f%%", 100*sc.want)
		}
		fmt.Fprintf(&table, "| %s | %d | %d | %s | %.1f%% | %.1f%% |\n", sc.name, sc.n, runs, bar, 100*q, 100*k)
		if sc.regression && q < sc.want-slack(sc.want, runs) {
			t.Errorf("%s, n=%d: QSP caught %.1f%% of %d runs, want >= %.0f%%", sc.name, sc.n, 100*q, runs, 100*sc.want)
		}
		if !sc.regression && q > sc.want+slack(sc.want, runs) {
			t.Errorf("%s, n=%d: QSP false-failed %.1f%% of %d runs, want <= %.0f%%", sc.name, sc.n, 100*q, runs, 100*sc.want)
		}
	}
	t.Logf("detection table:\n%s", table.String())
}
