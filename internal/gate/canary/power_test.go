package canary

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// powerRuns is how many simulated analyses check an advised size: 1,000
// with -canary.full, as docs/benchmarks/canary.md records them.
func powerRuns() int {
	switch {
	case *fullDetection:
		return 1000
	case raceEnabled:
		return 80
	}
	return 200
}

// powerTolerance is how far the simulated power at an advised size may
// be from the power it is advised for: 5 points over 1,000 runs, widened
// with the square root of fewer runs.
func powerTolerance(runs int) float64 {
	return 0.05 * math.Sqrt(1000/float64(runs))
}

// powerCase is one check's effect, drawn as the advice models it.
type powerCase struct {
	check  string
	metric string
	// draw fills one analysis of n per side.
	draw func(r *rand.Rand, n int) MetricInput
}

// powerSigma is the log-scale spread of the simulated latencies, a
// point of the advice's sigma grid.
var powerSigma = sigmaGrid(latencySigma)

func logNormals(r *rand.Rand, n int, f func(z float64) float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = latencyMedian * f(r.NormFloat64())
	}
	return v
}

func powerCases() []powerCase {
	base := func(z float64) float64 { return math.Exp(powerSigma * z) }
	cfg, _ := qspConfig().withDefaults()
	errs := cfg.Metrics[1]
	p0 := 0.01
	p1 := p0*(1+errs.AllowedIncrease) + errs.AllowedAbsoluteIncrease + errs.DetectRate
	binom := func(r *rand.Rand, n int, p float64) *Counts {
		e := 0
		for range n {
			if r.Float64() < p {
				e++
			}
		}
		return &Counts{Errors: float64(e), Total: float64(n)}
	}
	return []powerCase{
		{check: "shift", metric: "latency", draw: func(r *rand.Rand, n int) MetricInput {
			return MetricInput{Baseline: logNormals(r, n, base),
				Canary: logNormals(r, n, func(z float64) float64 { return (1 + cfg.Metrics[0].DetectShift) * base(z) })}
		}},
		{check: "spread", metric: "latency", draw: func(r *rand.Rand, n int) MetricInput {
			s := math.Sqrt(cfg.Metrics[0].DetectSpread)
			return MetricInput{Baseline: logNormals(r, n, base),
				Canary: logNormals(r, n, func(z float64) float64 { return base(s * z) })}
		}},
		{check: "tail-share", metric: "latency", draw: func(r *rand.Rand, n int) MetricInput {
			return MetricInput{Baseline: logNormals(r, n, base), Canary: logNormals(r, n, func(z float64) float64 {
				if r.Float64() < cfg.Metrics[0].DetectTail {
					return 1000 * base(z)
				}
				return base(z)
			})}
		}},
		{check: "counts", metric: "errors", draw: func(r *rand.Rand, n int) MetricInput {
			return MetricInput{BaselineCounts: binom(r, n, p0), CanaryCounts: binom(r, n, p1)}
		}},
	}
}

// checkOf returns the named check of a metric result.
func checkOf(t *testing.T, m MetricResult, name string) Check {
	t.Helper()
	for _, c := range m.Checks {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("%s: no check %q in %+v", m.Name, name, m.Checks)
	return Check{}
}

// TestPowerAdviceMatchesSimulation checks the advice against what it
// promises: at the advised sizes, the check fails a canary with the
// configured effect in 80% and 95% of independent simulated analyses
// judged by Analyze, within 5 points over 1,000 runs (with
// -canary.full; wider with the fewer runs of the normal suite).
func TestPowerAdviceMatchesSimulation(t *testing.T) {
	runs := powerRuns()
	tol := powerTolerance(runs)
	cfg := qspConfig()
	var table strings.Builder
	fmt.Fprintf(&table, "| check | effect | method | power | advised n per side | runs | simulated power |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for ci, pc := range powerCases() {
		t.Run(pc.check, func(t *testing.T) {
			// The advice as a verdict states it, from one analysis of
			// data with the effect.
			r := rand.New(rand.NewPCG(uint64(ci), 99))
			first, err := Analyze(cfg, Input{Metrics: map[string]MetricInput{pc.metric: pc.draw(r, 2000)}})
			if err != nil {
				t.Fatal(err)
			}
			p := checkOf(t, metricByName(t, first, pc.metric), pc.check).Power
			if p == nil || p.N80 == 0 || p.N95 == 0 || p.N80 > p.N95 {
				t.Fatalf("advice %+v, want both sizes with N80 <= N95", p)
			}
			for _, target := range []struct {
				power float64
				n     int
			}{{0.80, p.N80}, {0.95, p.N95}} {
				failed := 0
				for i := range runs {
					r := rand.New(rand.NewPCG(uint64(ci)<<40|uint64(target.n)<<20|uint64(i), 7))
					res, err := Analyze(cfg, Input{Metrics: map[string]MetricInput{pc.metric: pc.draw(r, target.n)}})
					if err != nil {
						t.Fatal(err)
					}
					if checkOf(t, metricByName(t, res, pc.metric), pc.check).Failed {
						failed++
					}
				}
				got := float64(failed) / float64(runs)
				fmt.Fprintf(&table, "| %s | %s | %s | %.0f%% | %d | %d | %.1f%% |\n", pc.check, p.Effect, p.Method, 100*target.power, target.n, runs, 100*got)
				if math.Abs(got-target.power) > tol {
					t.Errorf("%s at the advised n=%d: simulated power %.1f%% over %d runs, want %.0f%% +- %.1f points",
						pc.check, target.n, 100*got, runs, 100*target.power, 100*tol)
				}
			}
		})
	}
	t.Logf("advice against simulation:\n%s", table.String())
}

// TestUnderpoweredCriticalMetricIsInconclusive: a critical metric that
// passes on fewer samples than its 80%-power size makes the analysis
// inconclusive with the size it needs; with enough samples, or when not
// critical, it passes.
func TestUnderpoweredCriticalMetricIsInconclusive(t *testing.T) {
	lat := func(n int) MetricInput { return MetricInput{Baseline: sample(1, n, 1), Canary: sample(2, n, 1)} }
	tests := []struct {
		name     string
		critical bool
		counts   bool
		in       MetricInput
		verdict  Verdict
		status   Status
		reason   string
	}{
		{name: "critical latency, 60 samples", critical: true, in: lat(60), verdict: VerdictInconclusive, status: StatusInconclusive,
			reason: "samples per side: the tail-share check reaches 80% power"},
		{name: "non-critical latency, 60 samples", in: lat(60), verdict: VerdictPass, status: StatusPass},
		{name: "critical latency, 3000 samples", critical: true, in: lat(3000), verdict: VerdictPass, status: StatusPass},
		{name: "critical errors, 500 requests", critical: true, counts: true,
			in:      MetricInput{BaselineCounts: counts(5, 500), CanaryCounts: counts(5, 500)},
			verdict: VerdictInconclusive, status: StatusInconclusive, reason: "requests per side: the counts check reaches 80% power"},
		{name: "critical errors, 100,000 requests", critical: true, counts: true,
			in:      MetricInput{BaselineCounts: counts(1000, 100_000), CanaryCounts: counts(1010, 100_000)},
			verdict: VerdictPass, status: StatusPass},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Metrics: []MetricConfig{{Name: "m", Counts: tc.counts, Critical: tc.critical, AllowedIncrease: 0.05}}}
			res, err := Analyze(cfg, Input{Metrics: map[string]MetricInput{"m": tc.in}})
			if err != nil {
				t.Fatal(err)
			}
			m := res.Metrics[0]
			if res.Verdict != tc.verdict || m.Status != tc.status {
				t.Fatalf("verdict %s, metric %s (%s), want %s and %s", res.Verdict, m.Status, m.Reason, tc.verdict, tc.status)
			}
			if m.NeedSamples == 0 || m.NeedCheck == "" {
				t.Errorf("need %d samples for %q, want the largest 80%% size and its check", m.NeedSamples, m.NeedCheck)
			}
			if tc.reason == "" {
				return
			}
			want := fmt.Sprintf("needs %d ", m.NeedSamples)
			if !strings.HasPrefix(m.Reason, want) || !strings.Contains(m.Reason, tc.reason) {
				t.Errorf("reason %q, want it to start with %q and contain %q", m.Reason, want, tc.reason)
			}
			if !strings.Contains(m.Explanation, m.Reason) {
				t.Errorf("explanation %q does not carry the reason %q", m.Explanation, m.Reason)
			}
		})
	}
}

// TestPowerAdviceIsMonotone: sizes grow with a smaller effect and a
// stricter level, and the 95% size is never below the 80% one.
func TestPowerAdviceIsMonotone(t *testing.T) {
	mc := MetricConfig{Name: "m", AllowedIncrease: 0.2}
	cfg, err := Config{Metrics: []MetricConfig{mc}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	mc = cfg.Metrics[0]
	prev := 0
	for _, rate := range []float64{0.05, 0.02, 0.01, 0.005} {
		mc.DetectRate = rate
		p := countAdvice(mc, 0.01, 0.01)
		if p.N80 <= prev || p.N95 < p.N80 {
			t.Errorf("detect %v: N80 %d N95 %d, want N80 above %d and N95 >= N80", rate, p.N80, p.N95, prev)
		}
		prev = p.N80
	}
	prev = 0
	for _, level := range []float64{0.1, 0.01, 0.001} {
		n := TailShareAdviceFor(0.01, 99, level).N80
		if n <= prev {
			t.Errorf("tail share at level %v: N80 %d, want above %d", level, n, prev)
		}
		prev = n
	}
}

// TailShareAdviceFor is tailShareAdvice for a share and percentile.
func TailShareAdviceFor(share, percentile, level float64) Power {
	return tailShareAdvice(MetricConfig{DetectTail: share, Tail: percentile}, level)
}

func TestSearchN(t *testing.T) {
	// A step function: the answer is the first grid size at or above
	// the step, whatever the guess.
	for _, step := range []int{5, 10, 11, 97, 1000, 123456} {
		for _, guess := range []int{1, 10, 500, 1_000_000} {
			evals := 0
			got := searchN(func(n int) float64 {
				evals++
				if n >= step {
					return 1
				}
				return 0
			}, func(float64) int { return guess }, 1_000_000, 0.8, 0.95)
			want := gridN(gridIndex(step))
			if got[0] != want || got[1] != want {
				t.Errorf("step %d guess %d: got %v, want %d", step, guess, got, want)
			}
			if evals > 40 {
				t.Errorf("step %d guess %d: %d evaluations, want a bisection", step, guess, evals)
			}
		}
	}
	got := searchN(func(int) float64 { return 0.5 }, func(float64) int { return 100 }, 5000, 0.8)
	if got[0] != 0 {
		t.Errorf("unreachable power: got %v, want 0", got)
	}
}

func TestHLAboveMatchesSelection(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for trial := range 200 {
		m, n := 1+r.IntN(30), 1+r.IntN(30)
		xs, ys := make([]float64, m), make([]float64, n)
		for i := range xs {
			xs[i] = float64(r.IntN(10))
		}
		for i := range ys {
			ys[i] = float64(r.IntN(10))
		}
		sortFloats(xs)
		sortFloats(ys)
		hl := hlEstimate(xs, ys)
		for _, d := range []float64{hl - 1, hl - 0.5, hl, hl + 0.5, hl + 1} {
			if got, want := hlAbove(xs, ys, d), hl > d; got != want {
				t.Fatalf("trial %d: hlAbove(%v) = %v, estimate %v", trial, d, got, hl)
			}
		}
	}
}

// hlEstimate is the Hodges-Lehmann estimate by materialising the
// differences, for the test.
func hlEstimate(xs, ys []float64) float64 {
	var d []float64
	for _, x := range xs {
		for _, y := range ys {
			d = append(d, x-y)
		}
	}
	sortFloats(d)
	return medianSorted(d)
}

func BenchmarkPowerAdviceCold(b *testing.B) {
	cfg, _ := qspConfig().withDefaults()
	lv := levelsFor(cfg)
	b.ReportAllocs()
	for b.Loop() {
		powerCache.Clear()
		powerCacheSize.Store(0)
		simCache.Clear()
		simCacheSize.Store(0)
		_ = sampleAdvice(cfg.Metrics[0], lv, sigmaGrid(latencySigma))
		_ = countAdvice(cfg.Metrics[1], lv.metric, 0.01)
	}
}

// TestExactPowerMatchesScipy compares the exact tail-share and count
// powers with testdata/power.json, which testdata/gen_power.py computes
// independently with scipy.
func TestExactPowerMatchesScipy(t *testing.T) {
	var ref struct {
		TailShare []struct {
			N                        int
			Share, Percentile, Level float64
			Power                    float64
		} `json:"tail_share"`
		Counts []struct {
			N                       int
			P0, P1, Level           float64
			AllowedIncrease         float64 `json:"allowedIncrease"`
			AllowedAbsoluteIncrease float64 `json:"allowedAbsoluteIncrease"`
			Power                   float64
		} `json:"counts"`
	}
	loadJSON(t, "power.json", &ref)
	if len(ref.TailShare) == 0 || len(ref.Counts) == 0 {
		t.Fatal("no reference cases")
	}
	for _, c := range ref.TailShare {
		if got := TailSharePower(c.N, c.Share, c.Percentile, c.Level); math.Abs(got-c.Power) > 1e-9 {
			t.Errorf("tail share n=%d share %v p%v level %v: got %.12f, scipy %.12f", c.N, c.Share, c.Percentile, c.Level, got, c.Power)
		}
	}
	for _, c := range ref.Counts {
		mc := MetricConfig{AllowedIncrease: c.AllowedIncrease, AllowedAbsoluteIncrease: c.AllowedAbsoluteIncrease}
		if got := CountPower(c.N, c.P0, c.P1, c.Level, mc); math.Abs(got-c.Power) > 1e-9 {
			t.Errorf("counts n=%d %v -> %v level %v: got %.12f, scipy %.12f", c.N, c.P0, c.P1, c.Level, got, c.Power)
		}
	}
}
