package gate

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/spec"
)

// TestCanaryPlan plans a gate's canary: the minutes are the advised
// sizes over the rates, sample metrics default to one sample per query
// step, and the gate's interval is compared with the longest need.
func TestCanaryPlan(t *testing.T) {
	f := canaryFixture(t)
	p, err := f.runner.Plan("canary-good", canary.PlanInput{RequestsPerMinute: 600})
	if err != nil {
		t.Fatal(err)
	}
	if p.Gate != "canary-good" || p.IntervalMinutes != 10 || len(p.Plan.Metrics) != 2 {
		t.Fatalf("plan %+v", p)
	}
	// The default step is 15s: 4 latency samples a minute.
	if got := float64(p.Plan.Input.SamplesPerMinute); got != 4 {
		t.Errorf("samples per minute %v, want 4", got)
	}
	for _, m := range p.Plan.Metrics {
		rate := 4.0
		if m.Kind == "counts" {
			rate = 600
		}
		for _, c := range m.Checks {
			if c.Power.N80 == 0 || math.Abs(float64(c.Minutes80)-float64(c.Power.N80)/rate) > 1e-9 {
				t.Errorf("%s %s: %v minutes for %d per side at %v a minute", m.Name, c.Check, c.Minutes80, c.Power.N80, rate)
			}
		}
	}
	// errors is the critical metric: 3,282 requests per side at 600 a
	// minute fit in the 10-minute interval.
	if !p.Enough || float64(p.Plan.Minutes80) > 10 {
		t.Errorf("enough %v with %v minutes needed, want the critical errors metric within the interval", p.Enough, p.Plan.Minutes80)
	}
	if p, err := f.runner.Plan("canary-good", canary.PlanInput{RequestsPerMinute: 60}); err != nil || p.Enough {
		t.Errorf("at 60 requests a minute: %+v, %v; want not enough", p, err)
	}

	for _, tc := range []struct {
		gate string
		in   canary.PlanInput
		want error
		msg  string
	}{
		{"nope", canary.PlanInput{RequestsPerMinute: 1}, ErrUnknownGate, "nope"},
		{"canary-good", canary.PlanInput{}, ErrInvalidRequest, "requestsPerMinute"},
	} {
		_, err := f.runner.Plan(tc.gate, tc.in)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s %+v: got %v, want %v with %q", tc.gate, tc.in, err, tc.want, tc.msg)
		}
	}
	if _, err := PlanCanary(&spec.Gate{}, canary.PlanInput{RequestsPerMinute: 1}); !errors.Is(err, ErrInvalidRequest) ||
		!strings.Contains(err.Error(), "no canary check") {
		t.Errorf("gate without canary: got %v, want ErrInvalidRequest", err)
	}
}

// TestCanaryDetectSpec: spec.canary.metrics[].detect sets the effects the
// advice is sized for, and bad values are spec errors at their path.
func TestCanaryDetectSpec(t *testing.T) {
	gateSpec := func(detect string, rate ...string) string {
		errDetect := "{}"
		if len(rate) > 0 {
			errDetect = rate[0]
		}
		return baseSpecs + `
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: sized}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    metrics:
      - name: latency
        query: lat_seconds{ {{.selector}} }
        detect: ` + detect + `
      - name: errors
        errors: sum(increase(err_total{ {{.selector}} }[1m]))
        total: sum(increase(req_total{ {{.selector}} }[1m]))
        detect: ` + errDetect + `
`
	}
	set, diags := spec.LoadBytes("gates.yaml", []byte(gateSpec("{shift: 20%, spread: 3, tail: 2%}", "{rate: 5%}")))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	sized, err := PlanCanary(set.Gate("sized"), canary.PlanInput{RequestsPerMinute: 100})
	if err != nil {
		t.Fatal(err)
	}
	set, diags = spec.LoadBytes("gates.yaml", []byte(gateSpec("{}")))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	plain, err := PlanCanary(set.Gate("sized"), canary.PlanInput{RequestsPerMinute: 100})
	if err != nil {
		t.Fatal(err)
	}
	// Larger effects need fewer samples, check by check.
	for i, m := range sized.Plan.Metrics {
		for j, c := range m.Checks {
			d := plain.Plan.Metrics[i].Checks[j]
			if c.Check != d.Check || c.Power.N80 >= d.Power.N80 || c.Power.Effect == d.Power.Effect {
				t.Errorf("%s %s: detect gives %+v, defaults %+v; want fewer samples for the larger effect", m.Name, c.Check, c.Power, d.Power)
			}
		}
	}
	for _, tc := range []struct{ detect, path string }{
		{"{shift: 2000%}", "spec.canary.metrics[0].detect.shift"},
		{"{spread: 0.5}", "spec.canary.metrics[0].detect.spread"},
		{"{tail: 100%}", "spec.canary.metrics[0].detect"},
		{"{bogus: 1}", "bogus"},
	} {
		_, diags := spec.LoadBytes("gates.yaml", []byte(gateSpec(tc.detect)))
		if !diags.HasErrors() || !strings.Contains(diags.Error(), tc.path) {
			t.Errorf("detect %s: got %v, want an error at %s", tc.detect, diags, tc.path)
		}
	}
}
