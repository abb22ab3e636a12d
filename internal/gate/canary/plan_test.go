package canary

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestPlanAgreesWithAnalyze: the plan's sizes are the advice an analysis
// of the expected data states, and its minutes are those sizes over the
// rate.
func TestPlanAgreesWithAnalyze(t *testing.T) {
	cfg := qspConfig()
	cfg.Metrics[1].Critical = true
	in := PlanInput{RequestsPerMinute: 120, SamplesPerMinute: 4}
	plan, err := PlanAnalysis(cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 5))
	base := func(z float64) float64 { return math.Exp(powerSigma * z) }
	res, err := Analyze(cfg, Input{Metrics: map[string]MetricInput{
		"latency": {Baseline: logNormals(r, 3000, base), Canary: logNormals(r, 3000, base)},
		"errors":  {BaselineCounts: counts(300, 30000), CanaryCounts: counts(300, 30000)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Metrics) != 2 {
		t.Fatalf("plan has %d metrics, want 2", len(plan.Metrics))
	}
	longest := 0.0
	for _, mp := range plan.Metrics {
		rate := 4.0
		if mp.Kind == "counts" {
			rate = 120
		}
		m := metricByName(t, res, mp.Name)
		if len(mp.Checks) == 0 {
			t.Fatalf("%s: no checks planned", mp.Name)
		}
		for _, cp := range mp.Checks {
			got := checkOf(t, m, cp.Check).Power
			if got == nil || got.N80 != cp.Power.N80 || got.N95 != cp.Power.N95 {
				t.Errorf("%s %s: analysis advises %+v, plan %+v", mp.Name, cp.Check, got, cp.Power)
			}
			if want := float64(cp.Power.N80) / rate; math.Abs(float64(cp.Minutes80)-want) > 1e-9 {
				t.Errorf("%s %s: %v minutes for 80%%, want %v", mp.Name, cp.Check, cp.Minutes80, want)
			}
			if mp.Critical {
				longest = math.Max(longest, float64(cp.Minutes80))
			}
		}
	}
	if float64(plan.Minutes80) != longest {
		t.Errorf("plan needs %v minutes, want the critical metric's longest %v", plan.Minutes80, longest)
	}
	if !strings.Contains(plan.Explanation, "errors counts") {
		t.Errorf("explanation %q does not name the critical metric's check", plan.Explanation)
	}
	if _, err := json.Marshal(plan); err != nil {
		t.Errorf("plan does not marshal: %v", err)
	}
}

func TestPlanInputErrors(t *testing.T) {
	for _, in := range []PlanInput{
		{},
		{RequestsPerMinute: -1},
		{RequestsPerMinute: math.NaN()},
		{RequestsPerMinute: 10, BaselineErrorRate: 1.5},
		{RequestsPerMinute: 10, Sigma: 7},
		{RequestsPerMinute: 10, SamplesPerMinute: math.Inf(1)},
	} {
		_, err := PlanAnalysis(qspConfig(), in)
		if !errors.Is(err, ErrPlan) {
			t.Errorf("%+v: got %v, want ErrPlan", in, err)
		}
	}
	if _, err := PlanAnalysis(Config{}, PlanInput{RequestsPerMinute: 1}); !errors.Is(err, ErrConfig) {
		t.Errorf("no metrics: got %v, want ErrConfig", err)
	}
}

func TestDurationString(t *testing.T) {
	for _, tc := range []struct {
		min  float64
		want string
	}{{0.25, "15 s"}, {1.2, "2 min"}, {150, "2.5 h"}, {4000, "2.8 days"}} {
		if got := durationString(tc.min); got != tc.want {
			t.Errorf("%v minutes: got %q, want %q", tc.min, got, tc.want)
		}
	}
}

// FuzzPlanInput: any rates, error rate and sigma give a plan or an
// ErrPlan, never a panic, and a plan's minutes are positive.
func FuzzPlanInput(f *testing.F) {
	f.Add(600.0, 4.0, 0.01, 0.3)
	f.Add(0.0, 0.0, 0.0, 0.0)
	f.Add(-1.0, math.Inf(1), 2.0, math.NaN())
	f.Add(1e12, 1e-9, 0.999, 0.05)
	f.Fuzz(func(t *testing.T, rpm, spm, rate, sigma float64) {
		p, err := PlanAnalysis(qspConfig(), PlanInput{RequestsPerMinute: rpm, SamplesPerMinute: spm, BaselineErrorRate: rate, Sigma: sigma})
		if err != nil {
			if !errors.Is(err, ErrPlan) {
				t.Fatalf("error %v is not ErrPlan", err)
			}
			return
		}
		for _, m := range p.Metrics {
			for _, c := range m.Checks {
				if !(c.Minutes80 > 0) || c.Minutes95 < c.Minutes80 && c.Power.N95 != 0 {
					t.Fatalf("%s %s: minutes %v / %v", m.Name, c.Check, c.Minutes80, c.Minutes95)
				}
			}
		}
	})
}
