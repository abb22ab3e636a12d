package canary

import (
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
	// canaryLatency turns a baseline-distributed latency into the canary's.
	canaryLatency func(r *rand.Rand, v float64) float64
	baseRate      float64
	canaryRate    float64
	regression    bool
	// assert is false for rows that are reported, not required.
	assert bool
}

const (
	latencyMedian = 0.2
	latencySigma  = 0.3
	stepRequests  = 20
)

func identity(_ *rand.Rand, v float64) float64 { return v }

func scenarios() []scenario {
	return []scenario{
		{name: "A/A (no change)", n: 500, canaryLatency: identity, baseRate: 0.01, canaryRate: 0.01, assert: true},
		{name: "+10% latency", n: 500, canaryLatency: func(_ *rand.Rand, v float64) float64 { return v * 1.1 },
			baseRate: 0.01, canaryRate: 0.01, regression: true, assert: true},
		{name: "+1 point error rate (1% -> 2%)", n: 500, canaryLatency: identity, baseRate: 0.01, canaryRate: 0.02,
			regression: true, assert: true},
		{name: "doubled variance, same median", n: 500, canaryLatency: func(_ *rand.Rand, v float64) float64 {
			// Scale the log-deviation from the median by sqrt(2).
			return latencyMedian * math.Exp(math.Log(v/latencyMedian)*math.Sqrt2)
		}, baseRate: 0.01, canaryRate: 0.01, regression: true, assert: true},
		{name: "new 1% slow tail (5-10x), n=500", n: 500, canaryLatency: slowTail,
			baseRate: 0.01, canaryRate: 0.01, regression: true, assert: false},
		{name: "new 1% slow tail (5-10x), n=2000", n: 2000, canaryLatency: slowTail,
			baseRate: 0.01, canaryRate: 0.01, regression: true, assert: true},
		{name: "zero-error baseline, canary 0.3% errors", n: 500, canaryLatency: identity, baseRate: 0, canaryRate: 0.003,
			regression: true, assert: true},
	}
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
	for i := range base {
		base[i] = lognormal(r)
		can[i] = sc.canaryLatency(r, lognormal(r))
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

func TestDetectionRates(t *testing.T) {
	runs := 1000
	if raceEnabled {
		runs = 400
	}
	var table strings.Builder
	fmt.Fprintf(&table, "| scenario | n per side | runs | QSP: not passed | Kayenta-equivalent: not passed |\n")
	fmt.Fprintf(&table, "| --- | --- | --- | --- | --- |\n")
	for si, sc := range scenarios() {
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
		q := 100 * float64(qspHits) / float64(runs)
		k := 100 * float64(kayHits) / float64(runs)
		fmt.Fprintf(&table, "| %s | %d | %d | %.1f%% | %.1f%% |\n", sc.name, sc.n, runs, q, k)
		if !sc.assert {
			continue
		}
		if sc.regression && q < 95 {
			t.Errorf("%s: QSP caught %.1f%% of %d runs, want >= 95%%", sc.name, q, runs)
		}
		if !sc.regression && q > 5 {
			t.Errorf("%s: QSP false-failed %.1f%% of %d runs, want <= 5%%", sc.name, q, runs)
		}
	}
	t.Logf("detection table:\n%s", table.String())
}
