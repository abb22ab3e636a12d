package canary

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// benchInput is 20 latency-like metrics with 10,000 samples per side,
// half of them regressed, as the decision-time target states it.
func benchInput(metrics, n int) (Config, Input) {
	r := rand.New(rand.NewPCG(7, 7))
	cfg := Config{}
	in := Input{Metrics: map[string]MetricInput{}}
	for i := range metrics {
		name := fmt.Sprintf("metric_%02d", i)
		cfg.Metrics = append(cfg.Metrics, MetricConfig{Name: name, Group: fmt.Sprintf("g%d", i%4), AllowedIncrease: 0.05})
		b, c := make([]float64, n), make([]float64, n)
		shift := 1.0
		if i%2 == 1 {
			shift = 1.1
		}
		for j := range b {
			b[j] = lognormal(r)
			c[j] = lognormal(r) * shift
		}
		in.Metrics[name] = MetricInput{Baseline: b, Canary: c}
	}
	return cfg, in
}

// BenchmarkAnalysis is the decision time for 20 metrics x 10,000 samples
// per side; the target is under 50 ms on 2 cores.
// It also reports the process CPU time per analysis, which unlike wall
// time does not grow when other processes share the machine.
func BenchmarkAnalysis(b *testing.B) {
	cfg, in := benchInput(20, 10_000)
	// The power advice is cached per configuration and baseline spread:
	// the first analysis pays for it (BenchmarkPowerAdviceCold), the
	// decisions measured here do not.
	if _, err := Analyze(cfg, in); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := cpuTime()
	for b.Loop() {
		if _, err := Analyze(cfg, in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-start)/1e6/float64(b.N), "cpu-ms/op")
}

// cpuTime is the user and system CPU time of the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHodgesLehmann10k is one shift estimate with its interval over
// 10^8 pairwise differences.
func BenchmarkHodgesLehmann10k(b *testing.B) {
	_, in := benchInput(1, 10_000)
	m := in.Metrics["metric_00"]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := HodgesLehmann(m.Canary, m.Baseline, 0.95, TwoSided); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelectMedianReference materialises and sorts the 10^6
// differences of 1,000 x 1,000 samples, the naive way, to put the
// selection's cost in proportion.
func BenchmarkSelectMedianReference(b *testing.B) {
	_, in := benchInput(1, 1_000)
	m := in.Metrics["metric_00"]
	b.ReportAllocs()
	for b.Loop() {
		d := make([]float64, 0, len(m.Canary)*len(m.Baseline))
		for _, x := range m.Canary {
			for _, y := range m.Baseline {
				d = append(d, x-y)
			}
		}
		_ = quickSelect(d, len(d)/2)
	}
}

// BenchmarkSelectMedian1k is the same median by selection.
func BenchmarkSelectMedian1k(b *testing.B) {
	_, in := benchInput(1, 1_000)
	m := in.Metrics["metric_00"]
	xs, ys := sortedCopy(m.Canary), sortedCopy(m.Baseline)
	b.ReportAllocs()
	for b.Loop() {
		sel := newDiffSelector(xs, ys, 1)
		_ = sel.selectK(len(xs) * len(ys) / 2)
	}
}
