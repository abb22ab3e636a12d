package canary

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sample draws n log-normal latencies scaled by factor.
func sample(seed uint64, n int, factor float64) []float64 {
	r := rand.New(rand.NewPCG(seed, 1))
	v := make([]float64, n)
	for i := range v {
		v[i] = lognormal(r) * factor
	}
	return v
}

func counts(e, t float64) *Counts { return &Counts{Errors: e, Total: t} }

func metricByName(t *testing.T, r Result, name string) MetricResult {
	t.Helper()
	for _, m := range r.Metrics {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no metric %q", name)
	return MetricResult{}
}

func TestCountMetricJudgment(t *testing.T) {
	tests := []struct {
		name     string
		mc       MetricConfig
		base     *Counts
		can      *Counts
		want     Status
		contains string
	}{
		{"zero-error baseline, clear canary errors", MetricConfig{}, counts(0, 10000), counts(15, 10000), StatusFail, "FAIL"},
		{"zero-error baseline, few canary errors", MetricConfig{}, counts(0, 10000), counts(2, 10000), StatusInconclusive, "too few"},
		{"zero-error baseline, one canary error, huge canary", MetricConfig{}, counts(0, 100), counts(10, 1e6), StatusInconclusive, "baseline 0"},
		{"no errors anywhere", MetricConfig{}, counts(0, 10000), counts(0, 10000), StatusPass, "PASS"},
		{"tolerated absolute increase", MetricConfig{AllowedAbsoluteIncrease: 0.005}, counts(0, 10000), counts(20, 10000), StatusPass, "PASS"},
		{"same rate", MetricConfig{}, counts(100, 10000), counts(104, 10000), StatusPass, "PASS"},
		{"doubled rate", MetricConfig{}, counts(100, 10000), counts(200, 10000), StatusFail, "Fisher exact p="},
		{"within relative allowance", MetricConfig{AllowedIncrease: 1.5}, counts(100, 10000), counts(200, 10000), StatusPass, "PASS"},
		{"few events both sides", MetricConfig{}, counts(1, 200), counts(3, 200), StatusInconclusive, "too few"},
		{"too few requests", MetricConfig{MinSamples: 500}, counts(1, 200), counts(3, 200), StatusNoData, "need at least 500"},
		{"decrease is harmful", MetricConfig{Direction: Decrease}, counts(5000, 10000), counts(4700, 10000), StatusFail, "FAIL"},
		{"decrease direction ignores increase", MetricConfig{Direction: Decrease}, counts(100, 10000), counts(200, 10000), StatusPass, "PASS"},
		{"either catches increase", MetricConfig{Direction: Either}, counts(100, 10000), counts(200, 10000), StatusFail, "FAIL"},
		{"fractional counts from increase()", MetricConfig{}, counts(99.6, 9999.7), counts(100.2, 10000.4), StatusPass, "PASS"},
		{"canary counts missing", MetricConfig{}, counts(1, 100), nil, StatusNoData, "NODATA"},
		{"errors above total", MetricConfig{}, counts(1, 100), counts(200, 100), StatusInconclusive, "exceed total"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := tt.mc
			mc.Name, mc.Counts = "errors", true
			res, err := Analyze(Config{Metrics: []MetricConfig{mc}},
				Input{Metrics: map[string]MetricInput{"errors": {BaselineCounts: tt.base, CanaryCounts: tt.can}}})
			if err != nil {
				t.Fatal(err)
			}
			m := metricByName(t, res, "errors")
			if m.Status != tt.want || !strings.Contains(m.Explanation, tt.contains) {
				t.Errorf("status %s, explanation %q; want %s containing %q", m.Status, m.Explanation, tt.want, tt.contains)
			}
			if m.Status == StatusPass && res.Verdict != VerdictPass || m.Status == StatusFail && res.Verdict != VerdictFail {
				t.Errorf("verdict %s for a single %s metric", res.Verdict, m.Status)
			}
			if m.Status == StatusInconclusive || m.Status == StatusNoData {
				if res.Verdict != VerdictInconclusive {
					t.Errorf("verdict %s with the only metric %s", res.Verdict, m.Status)
				}
			}
		})
	}
}

func TestSampleMetricJudgment(t *testing.T) {
	base := sample(1, 400, 1)
	nan := math.NaN()
	tests := []struct {
		name   string
		mc     MetricConfig
		base   []float64
		can    []float64
		want   Status
		failed []string
	}{
		{"same distribution", MetricConfig{}, base, sample(2, 400, 1), StatusPass, nil},
		{"+30% latency", MetricConfig{AllowedIncrease: 0.1}, base, sample(3, 400, 1.3), StatusFail, []string{"shift", "tail", "far-tail"}},
		{"+30% within allowance", MetricConfig{AllowedIncrease: 0.5, Tail: TailDisabled}, base, sample(3, 400, 1.3), StatusPass, nil},
		{"faster canary is fine", MetricConfig{}, base, sample(4, 400, 0.7), StatusPass, nil},
		{"slower canary with direction decrease", MetricConfig{Direction: Decrease}, base, sample(4, 400, 1.3), StatusPass, nil},
		{"lower throughput with direction decrease", MetricConfig{Direction: Decrease, Tail: TailDisabled}, base, sample(4, 400, 0.7), StatusFail, []string{"shift"}},
		{"either direction", MetricConfig{Direction: Either, Tail: TailDisabled}, base, sample(4, 400, 0.7), StatusFail, []string{"shift"}},
		{"too few samples", MetricConfig{}, base[:20], base[:5], StatusNoData, nil},
		{"NaNs removed leave too few", MetricConfig{}, base, []float64{nan, nan, nan, 0.2, 0.3}, StatusNoData, nil},
		{"NaNs as zero look faster", MetricConfig{NaN: NaNZero}, base, append(sample(5, 390, 1), nan, nan, nan), StatusPass, nil},
		{"NaNs as zero with decrease fail", MetricConfig{NaN: NaNZero, Direction: Decrease, Tail: TailDisabled},
			base, append(sample(5, 200, 1), make([]float64, 200)...), StatusFail, []string{"shift"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := tt.mc
			mc.Name = "latency"
			res, err := Analyze(Config{Metrics: []MetricConfig{mc}},
				Input{Metrics: map[string]MetricInput{"latency": {Baseline: tt.base, Canary: tt.can}}})
			if err != nil {
				t.Fatal(err)
			}
			m := metricByName(t, res, "latency")
			if m.Status != tt.want {
				t.Fatalf("status %s, want %s: %s", m.Status, tt.want, m.Explanation)
			}
			if tt.failed != nil && !reflect.DeepEqual(m.Failed, tt.failed) {
				t.Errorf("failed checks %v, want %v: %s", m.Failed, tt.failed, m.Explanation)
			}
		})
	}
}

func TestExplanationCarriesTheNumbers(t *testing.T) {
	res, err := Analyze(Config{Metrics: []MetricConfig{{Name: "latency_p50", AllowedIncrease: 0.1}}},
		Input{Metrics: map[string]MetricInput{"latency_p50": {Baseline: sample(1, 500, 1), Canary: sample(2, 500, 1.25)}}})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Metrics[0]
	for _, want := range []string{"latency_p50: canary median", "vs baseline", "shift +", "% CI +", "allowed +10.0%", "Mann-Whitney p=", "FAIL (shift"} {
		if !strings.Contains(m.Explanation, want) {
			t.Errorf("explanation %q lacks %q", m.Explanation, want)
		}
	}
	s := m.Shift
	if !(float64(s.RelativeLower) < float64(s.Relative) && float64(s.Relative) < float64(s.RelativeUpper)) || float64(s.Relative) < 0.15 || float64(s.Relative) > 0.35 {
		t.Errorf("relative shift %v in [%v, %v], want about +25%%", s.Relative, s.RelativeLower, s.RelativeUpper)
	}
	shift := m.Checks[0]
	if !shift.Significant || !shift.Exceeded || !shift.Failed || float64(shift.PValue) > float64(shift.Alpha) {
		t.Errorf("shift check %+v", shift)
	}
	if !strings.HasPrefix(res.Explanation, "FAIL: score 0.0") || !strings.Contains(res.Explanation, "1 of 1 metrics failed (latency_p50)") {
		t.Errorf("result explanation %q", res.Explanation)
	}
}

func TestScoreGroupsAndVerdicts(t *testing.T) {
	same := MetricInput{Baseline: sample(1, 300, 1), Canary: sample(2, 300, 1)}
	worse := MetricInput{Baseline: sample(1, 300, 1), Canary: sample(3, 300, 1.5)}
	empty := MetricInput{Baseline: sample(1, 300, 1)}
	metric := func(name, group string, critical bool) MetricConfig {
		return MetricConfig{Name: name, Group: group, Critical: critical, Tail: TailDisabled}
	}
	tests := []struct {
		name    string
		cfg     Config
		in      map[string]MetricInput
		verdict Verdict
		score   float64
	}{
		{
			// latency group (weight 3): 1 of 2 pass = 50; errors group
			// (weight 1): 1 of 1 = 100; (3*50 + 1*100) / 4 = 62.5.
			name: "weighted groups",
			cfg: Config{Groups: map[string]float64{"latency": 3, "errors": 1}, Metrics: []MetricConfig{
				metric("a", "latency", false), metric("b", "latency", false), metric("c", "errors", false)}},
			in:      map[string]MetricInput{"a": same, "b": worse, "c": same},
			verdict: VerdictFail, score: 62.5,
		},
		{
			// 9 of 10 equal-weight metrics pass: 90, marginal.
			name: "marginal",
			cfg: Config{Metrics: []MetricConfig{metric("m0", "", false), metric("m1", "", false), metric("m2", "", false),
				metric("m3", "", false), metric("m4", "", false), metric("m5", "", false), metric("m6", "", false),
				metric("m7", "", false), metric("m8", "", false), metric("m9", "", false)}},
			in: map[string]MetricInput{"m0": worse, "m1": same, "m2": same, "m3": same, "m4": same, "m5": same,
				"m6": same, "m7": same, "m8": same, "m9": same},
			verdict: VerdictMarginal, score: 90,
		},
		{
			name: "critical failure overrides the score",
			cfg: Config{Pass: 50, Marginal: 10, Metrics: []MetricConfig{metric("a", "", true), metric("b", "", false),
				metric("c", "", false)}},
			in:      map[string]MetricInput{"a": worse, "b": same, "c": same},
			verdict: VerdictFail, score: 100 * 2.0 / 3,
		},
		{
			name:    "critical metric without data",
			cfg:     Config{Metrics: []MetricConfig{metric("a", "", true), metric("b", "", false), metric("c", "", false), metric("d", "", false), metric("e", "", false)}},
			in:      map[string]MetricInput{"a": empty, "b": same, "c": same, "d": same, "e": same},
			verdict: VerdictInconclusive, score: 100,
		},
		{
			name:    "too much missing",
			cfg:     Config{Metrics: []MetricConfig{metric("a", "", false), metric("b", "", false)}},
			in:      map[string]MetricInput{"a": same},
			verdict: VerdictInconclusive, score: 100,
		},
		{
			// Even if the missing metric passed, 1 of 2 = 50 < 75.
			name:    "missing data cannot rescue a failure",
			cfg:     Config{Metrics: []MetricConfig{metric("a", "", false), metric("b", "", false)}},
			in:      map[string]MetricInput{"a": worse},
			verdict: VerdictFail, score: 0,
		},
		{
			name:    "a little missing is tolerated",
			cfg:     Config{Metrics: []MetricConfig{metric("a", "", false), metric("b", "", false), metric("c", "", false), metric("d", "", false), metric("e", "", false)}},
			in:      map[string]MetricInput{"a": same, "b": same, "c": same, "d": same},
			verdict: VerdictPass, score: 100,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Analyze(tt.cfg, Input{Metrics: tt.in})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tt.verdict || math.Abs(float64(res.Score)-tt.score) > 1e-9 {
				t.Errorf("verdict %s score %v, want %s %v: %s", res.Verdict, res.Score, tt.verdict, tt.score, res.Explanation)
			}
		})
	}
}

func TestOutlierRemovalOnlyForShift(t *testing.T) {
	base := sample(1, 400, 1)
	can := append(sample(2, 388, 1), 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100, 105)
	cfg := Config{Metrics: []MetricConfig{{Name: "latency", Outliers: OutliersRemove, Tail: TailDisabled}}}
	res, err := Analyze(cfg, Input{Metrics: map[string]MetricInput{"latency": {Baseline: base, Canary: can}}})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Metrics[0]
	if m.Canary.Outliers != 12 || m.Canary.N != 388 || m.Status != StatusPass {
		t.Errorf("outliers %d, n %d, status %s: %s", m.Canary.Outliers, m.Canary.N, m.Status, m.Explanation)
	}
	// With the tail checks on, the same twelve samples far beyond the
	// baseline are a new tail.
	cfg.Metrics[0].Tail = 0
	res, _ = Analyze(cfg, Input{Metrics: map[string]MetricInput{"latency": {Baseline: base, Canary: can}}})
	if m := res.Metrics[0]; m.Status != StatusFail || !slices.Contains(m.Failed, "far-tail") || slices.Contains(m.Failed, "shift") {
		t.Errorf("status %s failed %v: %s", m.Status, m.Failed, m.Explanation)
	}
}

func TestKayentaModeOnlyShift(t *testing.T) {
	in := Input{Metrics: map[string]MetricInput{
		"latency": {Baseline: sample(1, 500, 1), Canary: sample(2, 500, 1)},
		"errors":  {BaselineCounts: counts(0, 1000), CanaryCounts: counts(50, 1000)},
	}}
	cfg := Config{Kayenta: true, Metrics: []MetricConfig{{Name: "latency"}, {Name: "errors", Counts: true}}}
	res, err := Analyze(cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	if l := metricByName(t, res, "latency"); len(l.Checks) != 1 || l.Checks[0].Name != "shift" || float64(l.Checks[0].Alpha) != 0.05 {
		t.Errorf("kayenta checks %+v", l.Checks)
	}
	if e := metricByName(t, res, "errors"); e.Status != StatusNoData {
		t.Errorf("kayenta judged counts: %s", e.Explanation)
	}
	cfg.Kayenta = false
	res, _ = Analyze(cfg, in)
	// Tail share gets 65% of alpha; the other 35% is split over the two
	// metrics.
	if l := metricByName(t, res, "latency"); len(l.Checks) != 5 || math.Abs(float64(res.MetricAlpha)-0.00875) > 1e-12 ||
		math.Abs(float64(res.TailAlpha)-0.0325) > 1e-12 || l.Checks[4].Name != "tail-share" || float64(l.Checks[4].Alpha) != float64(res.TailAlpha) {
		t.Errorf("qsp checks %d, metric alpha %v, tail alpha %v", len(l.Checks), res.MetricAlpha, res.TailAlpha)
	}
}

func TestAnalyzeIsDeterministicAndJSONSafe(t *testing.T) {
	cfg, in := benchInput(6, 3000)
	cfg.Metrics = append(cfg.Metrics, MetricConfig{Name: "missing"}, MetricConfig{Name: "errors", Counts: true, Direction: Either})
	in.Metrics["errors"] = MetricInput{BaselineCounts: counts(0, 500), CanaryCounts: counts(0, 500)}
	in.Metrics["unused"] = MetricInput{Baseline: []float64{1}}
	a, err := Analyze(cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Analyze(cfg, in)
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Error("two analyses of the same input differ")
	}
	var back Result
	if err := json.Unmarshal(ja, &back); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if back.Verdict != a.Verdict || len(back.Metrics) != len(a.Metrics) || !strings.Contains(string(ja), `"upper"`) {
		t.Error("round trip lost data")
	}
	if len(a.Notes) != 1 || !strings.Contains(a.Notes[0], "unused") {
		t.Errorf("notes %v", a.Notes)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no metrics"},
		{Config{Alpha: 2, Metrics: []MetricConfig{{Name: "a"}}}, "alpha 2"},
		{Config{Pass: 50, Marginal: 80, Metrics: []MetricConfig{{Name: "a"}}}, "marginal <= pass"},
		{Config{Metrics: []MetricConfig{{Name: "a"}, {Name: "a"}}}, `metric "a": defined twice`},
		{Config{Metrics: []MetricConfig{{Name: "a", Direction: "up"}}}, `direction "up"`},
		{Config{Metrics: []MetricConfig{{Name: "a", NaN: "drop"}}}, `nan "drop"`},
		{Config{Metrics: []MetricConfig{{Name: "a", Tail: 30}}}, "tail percentile 30"},
		{Config{Metrics: []MetricConfig{{Name: "a", AllowedIncrease: -0.1}}}, "allowedIncrease -0.1"},
		{Config{Metrics: []MetricConfig{{}}}, "metric 0: no name"},
		{Config{Groups: map[string]float64{"g": math.NaN()}, Metrics: []MetricConfig{{Name: "a"}}}, `group "g" weight`},
	}
	for _, tt := range tests {
		_, err := Analyze(tt.cfg, Input{})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error %v, want ErrConfig containing %q", err, tt.want)
		}
	}
}

func TestRuns(t *testing.T) {
	pass := Result{Verdict: VerdictPass, Explanation: "PASS: score 100.0"}
	fail := Result{Verdict: VerdictFail, Explanation: "FAIL: score 0.0"}
	marginal := Result{Verdict: VerdictMarginal, Explanation: "MARGINAL: score 80.0"}
	tests := []struct {
		name     string
		planned  int
		failFast bool
		add      []Result
		stopAt   int
		verdict  Verdict
	}{
		{"all pass", 3, true, []Result{pass, pass, pass}, 3, VerdictPass},
		{"fail fast", 3, true, []Result{pass, fail, pass}, 2, VerdictFail},
		{"no fail fast still fails", 3, false, []Result{fail, pass, pass}, 3, VerdictFail},
		{"last decides between pass and marginal", 2, true, []Result{marginal, pass}, 2, VerdictPass},
		{"marginal last", 2, true, []Result{pass, marginal}, 2, VerdictMarginal},
		{"stopped early without failure", 3, true, []Result{pass}, 0, VerdictInconclusive},
		{"nothing ran", 2, true, nil, 0, VerdictInconclusive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRuns(tt.planned, tt.failFast)
			stopped := 0
			for i, res := range tt.add {
				if r.Add(res) {
					stopped = i + 1
					break
				}
			}
			out := r.Result()
			if stopped != tt.stopAt || out.Verdict != tt.verdict {
				t.Errorf("stopped after %d, verdict %s (%s); want %d, %s", stopped, out.Verdict, out.Explanation, tt.stopAt, tt.verdict)
			}
		})
	}
}

func TestEdgeCaseData(t *testing.T) {
	constant := func(v float64, n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = v
		}
		return s
	}
	inf := math.Inf(1)
	tests := []struct {
		name     string
		base     []float64
		can      []float64
		want     Status
		contains string
	}{
		{"identical constants", constant(0.2, 50), constant(0.2, 50), StatusPass, "shift +0.0%"},
		{"zero baseline, positive canary", constant(0, 50), constant(1, 50), StatusFail, "+inf%"},
		{"negative values", sample(1, 100, -1), sample(2, 100, -1), StatusPass, "PASS"},
		{"infinities are invalid samples", append(sample(1, 100, 1), inf, -inf), append(sample(2, 100, 1), inf), StatusPass, "PASS"},
		{"huge magnitudes", sample(1, 100, 1e300), sample(2, 100, 1e300), StatusPass, "PASS"},
		{"all NaN", []float64{math.NaN(), math.NaN()}, []float64{math.NaN()}, StatusNoData, "need at least 10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Analyze(Config{Metrics: []MetricConfig{{Name: "m"}}},
				Input{Metrics: map[string]MetricInput{"m": {Baseline: tt.base, Canary: tt.can}}})
			if err != nil {
				t.Fatal(err)
			}
			m := res.Metrics[0]
			if m.Status != tt.want || !strings.Contains(m.Explanation, tt.contains) {
				t.Errorf("status %s: %s; want %s containing %q", m.Status, m.Explanation, tt.want, tt.contains)
			}
			if _, err := json.Marshal(res); err != nil {
				t.Errorf("marshal: %v", err)
			}
		})
	}
}

// Counts at the largest accepted size stay exact and quick: the tail
// sums stop where the terms no longer matter.
func TestLargeCounts(t *testing.T) {
	res, err := Analyze(Config{Metrics: []MetricConfig{{Name: "errors", Counts: true}}},
		Input{Metrics: map[string]MetricInput{"errors": {
			BaselineCounts: counts(5e11, 1e12), CanaryCounts: counts(5.00001e11, 1e12)}}})
	if err != nil {
		t.Fatal(err)
	}
	if m := res.Metrics[0]; m.Status != StatusPass || !(float64(m.Checks[0].PValue) > 0 && float64(m.Checks[0].PValue) < 1) {
		t.Errorf("%s", m.Explanation)
	}
	_, err = DecodeSamples(strings.NewReader(`{"metrics": {"e": {"baseline": {"errors": 1, "total": 2e12}, "canary": {"errors": 1, "total": 2}}}}`))
	if err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("error %v", err)
	}
}
