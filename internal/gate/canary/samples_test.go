package canary

import (
	"errors"
	"math"
	"strings"
	"testing"
)

const goodSamples = `{"metrics": {
  "latency": {"baseline": [0.21, 0.19, null, 0.2], "canary": [0.22, 0.25]},
  "errors":  {"baseline": {"errors": 3, "total": 1000},
              "canary":   {"errors": 9.4, "total": 1000.2}}
}}`

func TestDecodeSamples(t *testing.T) {
	in, err := DecodeSamples(strings.NewReader(goodSamples))
	if err != nil {
		t.Fatal(err)
	}
	lat := in.Metrics["latency"]
	if len(lat.Baseline) != 4 || !math.IsNaN(lat.Baseline[2]) || lat.Canary[1] != 0.25 || lat.BaselineCounts != nil {
		t.Errorf("latency %+v", lat)
	}
	e := in.Metrics["errors"]
	if e.BaselineCounts == nil || *e.BaselineCounts != (Counts{3, 1000}) || e.CanaryCounts.Errors != 9.4 || e.Baseline != nil {
		t.Errorf("errors %+v", e)
	}
}

func TestDecodeSamplesErrors(t *testing.T) {
	tests := []struct{ name, doc, want string }{
		{"not json", "metrics: {}", "line 1, column 1"},
		{"syntax error with line", "{\"metrics\": {\n\"a\": {\"baseline\": [1,,2]}}}", "line 2"},
		{"no metrics", `{}`, `no "metrics" object`},
		{"unknown top-level field", `{"metrics": {}, "extra": 1}`, `unknown field "extra"`},
		{"missing canary", `{"metrics": {"latency": {"baseline": [1]}}}`, `metric "latency": canary: missing`},
		{"unknown side field", `{"metrics": {"latency": {"baseline": [1], "canary": [2], "control": [3]}}}`, `metric "latency": json: unknown field "control"`},
		{"string sample", `{"metrics": {"latency": {"baseline": ["1"], "canary": [2]}}}`, `metric "latency": baseline:`},
		{"mixed kinds", `{"metrics": {"errors": {"baseline": [1], "canary": {"errors": 1, "total": 2}}}}`, `metric "errors": baseline and canary must both`},
		{"negative count", `{"metrics": {"errors": {"baseline": {"errors": -1, "total": 2}, "canary": {"errors": 1, "total": 2}}}}`, `metric "errors": baseline: counts must not be negative`},
		{"errors above total", `{"metrics": {"errors": {"baseline": {"errors": 1, "total": 2}, "canary": {"errors": 5, "total": 2}}}}`, `metric "errors": canary: errors 5 exceed total 2`},
		{"missing total", `{"metrics": {"errors": {"baseline": {"errors": 1}, "canary": {"errors": 1, "total": 2}}}}`, `metric "errors": baseline: counts need both`},
		{"unknown count field", `{"metrics": {"errors": {"baseline": {"errors": 1, "total": 2, "rate": 0.5}, "canary": {"errors": 1, "total": 2}}}}`, `unknown field "rate"`},
		{"scalar side", `{"metrics": {"latency": {"baseline": 1, "canary": [2]}}}`, `metric "latency": baseline: expected an array`},
		{"trailing data", `{"metrics": {}} []`, "unexpected data after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeSamples(strings.NewReader(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestDecodeSamplesSizeCap(t *testing.T) {
	big := strings.NewReader(`{"metrics": {"a": {"baseline": [` + strings.Repeat("1,", MaxSamplesBytes/2) + `1], "canary": [1]}}}`)
	if _, err := DecodeSamples(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("error %v", err)
	}
	if _, err := DecodeSamples(errReader{}); err == nil || !errors.Is(err, errBroken) {
		t.Errorf("read error not wrapped: %v", err)
	}
}

var errBroken = errors.New("broken pipe")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBroken }

// FuzzSamplesJSON feeds arbitrary documents to the decoder and what it
// accepts to the analysis: errors, never panics or hangs, and accepted
// counts are valid.
func FuzzSamplesJSON(f *testing.F) {
	f.Add([]byte(goodSamples))
	f.Add([]byte(`{"metrics": {"a": {"baseline": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], "canary": [1e308, -1e308, 0, 5, 6, 7, 8, 9, 10, 11, null]}}}`))
	f.Add([]byte(`{"metrics": {"e": {"baseline": {"errors": 0, "total": 1e6}, "canary": {"errors": 1e6, "total": 1e6}}}}`))
	f.Add([]byte(`{"metrics": {}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64<<10 {
			return
		}
		in, err := DecodeSamples(strings.NewReader(string(data)))
		if err != nil {
			return
		}
		cfg := Config{}
		for name, m := range in.Metrics {
			if m.BaselineCounts != nil {
				if err := m.BaselineCounts.validate(); err != nil {
					t.Fatalf("accepted invalid counts: %v", err)
				}
			}
			cfg.Metrics = append(cfg.Metrics, MetricConfig{Name: name, Counts: m.BaselineCounts != nil, MinSamples: 2})
		}
		if len(cfg.Metrics) == 0 {
			return
		}
		res, err := Analyze(cfg, in)
		if err != nil {
			t.Fatalf("analyze: %v", err)
		}
		if len(res.Metrics) != len(cfg.Metrics) || res.Verdict == "" {
			t.Fatalf("incomplete result %+v", res)
		}
	})
}
