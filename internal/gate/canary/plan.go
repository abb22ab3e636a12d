package canary

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// PlanInput is what a plan knows before a rollout: how fast each side
// collects data and what the baseline looks like.
type PlanInput struct {
	// RequestsPerMinute is the requests each side (canary and baseline)
	// serves per minute: the sample of a count metric.
	RequestsPerMinute float64 `json:"requestsPerMinute"`
	// SamplesPerMinute is the samples each side collects per minute for
	// a sample metric; zero means RequestsPerMinute (one latency per
	// request).
	SamplesPerMinute float64 `json:"samplesPerMinute,omitempty"`
	// BaselineErrorRate is the expected baseline error rate of count
	// metrics (0-1). Default 0.01.
	BaselineErrorRate float64 `json:"baselineErrorRate,omitempty"`
	// Sigma is the expected log-scale spread of sample metrics (the
	// standard deviation of log-latency). Default 0.3.
	Sigma float64 `json:"sigma,omitempty"`
}

// Plan is how long a canary analysis must run for each configured check
// to reach 80% and 95% power for the effect it is configured to catch.
type Plan struct {
	Input   PlanInput    `json:"input"`
	Alpha   Float        `json:"alpha"`
	Metrics []MetricPlan `json:"metrics"`
	// Minutes80 is the longest Minutes80 over the checks of critical
	// metrics, or of all metrics when none is critical: how long the
	// analysis must run before a pass means something. +Inf when a
	// check cannot reach its power within the advice's search.
	Minutes80   Float  `json:"minutes80"`
	Explanation string `json:"explanation"`
}

// MetricPlan is one metric of a Plan.
type MetricPlan struct {
	Name     string      `json:"name"`
	Kind     string      `json:"kind"`
	Critical bool        `json:"critical,omitempty"`
	Checks   []CheckPlan `json:"checks"`
}

// CheckPlan is one check of a MetricPlan: the advice and the minutes at
// the planned rate.
type CheckPlan struct {
	Check     string `json:"check"`
	Power     Power  `json:"power"`
	Minutes80 Float  `json:"minutes80"`
	Minutes95 Float  `json:"minutes95"`
}

// ErrPlan wraps every problem with a plan's input.
var ErrPlan = errors.New("invalid canary plan input")

func (in PlanInput) withDefaults() (PlanInput, error) {
	if in.SamplesPerMinute == 0 {
		in.SamplesPerMinute = in.RequestsPerMinute
	}
	if in.BaselineErrorRate == 0 {
		in.BaselineErrorRate = 0.01
	}
	if in.Sigma == 0 {
		in.Sigma = defaultSigma
	}
	var problems []string
	for _, f := range []struct {
		name string
		v    float64
		ok   bool
	}{
		{"requestsPerMinute", in.RequestsPerMinute, in.RequestsPerMinute > 0 && in.RequestsPerMinute <= 1e12},
		{"samplesPerMinute", in.SamplesPerMinute, in.SamplesPerMinute > 0 && in.SamplesPerMinute <= 1e12},
		{"baselineErrorRate", in.BaselineErrorRate, in.BaselineErrorRate > 0 && in.BaselineErrorRate < 1},
		{"sigma", in.Sigma, in.Sigma > 0 && in.Sigma <= 3},
	} {
		if !f.ok {
			problems = append(problems, fmt.Sprintf("%s %v out of range", f.name, f.v))
		}
	}
	if len(problems) > 0 {
		return in, fmt.Errorf("%w: %s (requestsPerMinute and samplesPerMinute > 0, baselineErrorRate in (0, 1), sigma in (0, 3])",
			ErrPlan, strings.Join(problems, "; "))
	}
	return in, nil
}

// PlanAnalysis answers before a rollout how long the analysis of cfg must
// run, at the rates of in, for each check to reach its power: the advice
// Analyze would state, for the expected baseline, divided by the rate.
// The error reports an invalid configuration (ErrConfig) or input
// (ErrPlan). Kayenta mode has no advice.
func PlanAnalysis(cfg Config, in PlanInput) (Plan, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Plan{}, err
	}
	in, err = in.withDefaults()
	if err != nil {
		return Plan{}, err
	}
	if cfg.Kayenta {
		return Plan{}, fmt.Errorf("%w: Kayenta mode has no power advice", ErrPlan)
	}
	lv := levelsFor(cfg)
	plan := Plan{Input: in, Alpha: Float(cfg.Alpha)}
	sigma := sigmaGrid(in.Sigma)
	anyCritical := false
	for _, mc := range cfg.Metrics {
		anyCritical = anyCritical || mc.Critical
	}
	longest := 0.0
	for _, mc := range cfg.Metrics {
		mp := MetricPlan{Name: mc.Name, Kind: "samples", Critical: mc.Critical}
		rate := in.SamplesPerMinute
		var advice map[string]Power
		order := []string{"shift", "spread", "tail-share", "tail-share-low"}
		if mc.Counts {
			mp.Kind, rate = "counts", in.RequestsPerMinute
			order = []string{"counts"}
			advice = map[string]Power{}
			if mc.Direction != Decrease {
				advice["counts"] = countAdvice(mc, lv.metric, roundRate(in.BaselineErrorRate))
			}
		} else {
			advice = sampleAdvice(mc, lv, sigma)
		}
		for _, name := range order {
			p, ok := advice[name]
			if !ok {
				continue
			}
			cp := CheckPlan{Check: name, Power: p, Minutes80: minutes(p.N80, rate), Minutes95: minutes(p.N95, rate)}
			mp.Checks = append(mp.Checks, cp)
			if mc.Critical || !anyCritical {
				longest = math.Max(longest, float64(cp.Minutes80))
			}
		}
		plan.Metrics = append(plan.Metrics, mp)
	}
	plan.Minutes80 = Float(longest)
	plan.Explanation = explainPlan(plan)
	return plan, nil
}

// minutes is the time to collect n per side at rate per minute, +Inf
// when n is zero (not reached).
func minutes(n int, rate float64) Float {
	if n == 0 {
		return Float(math.Inf(1))
	}
	return Float(float64(n) / rate)
}

func explainPlan(p Plan) string {
	var slowest string
	slowestMin := -1.0
	for _, m := range p.Metrics {
		for _, c := range m.Checks {
			if v := float64(c.Minutes80); v > slowestMin && (m.Critical || !anyCriticalPlan(p)) {
				slowestMin, slowest = v, m.Name+" "+c.Check
			}
		}
	}
	if slowest == "" {
		return "no check has power advice"
	}
	if math.IsInf(slowestMin, 1) {
		return fmt.Sprintf("the %s check does not reach 80%% power within the advice's search at any duration", slowest)
	}
	return fmt.Sprintf("run the analysis for at least %s: the %s check needs the longest to reach 80%% power", durationString(slowestMin), slowest)
}

func anyCriticalPlan(p Plan) bool {
	for _, m := range p.Metrics {
		if m.Critical {
			return true
		}
	}
	return false
}

// durationString writes minutes as a rounded-up duration people read.
func durationString(min float64) string {
	switch {
	case min < 1:
		return fmt.Sprintf("%.0f s", math.Ceil(min*60))
	case min < 120:
		return fmt.Sprintf("%.0f min", math.Ceil(min))
	case min < 48*60:
		return fmt.Sprintf("%.1f h", math.Ceil(min/6)/10)
	}
	return fmt.Sprintf("%.1f days", math.Ceil(min/144)/10)
}
