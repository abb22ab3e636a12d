package policy

import (
	"context"
	"slices"
	"testing"

	"github.com/qsp-dev/qsp/internal/spec"
)

// TestExampleExhaustionFreeze runs the example policy of
// examples/policies.yaml that refuses feature deploys while an SLO is
// projected to run out of budget within a day.
func TestExampleExhaustionFreeze(t *testing.T) {
	set, diags := spec.Load("../../examples/policies.yaml")
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	var pol *spec.Policy
	for _, p := range set.Policies {
		if p.Name() == "exhaustion-freeze" {
			pol = p
		}
	}
	if pol == nil {
		t.Fatal("examples/policies.yaml has no exhaustion-freeze policy")
	}
	e := newTestEngine(t, Options{Policies: []*spec.Policy{pol}})
	forecast := func(exhausts bool, hours float64) func(*SLO) {
		return func(s *SLO) {
			s.Forecast = Forecast{Method: "burn over 6h", Exhausts: exhausts, HoursToExhaustion: hours}
		}
	}
	for _, tc := range []struct {
		name string
		in   Input
		want []Reason
	}{
		{"5 h to exhaustion refuses a feature", gateInput(setSLO("checkout-availability", forecast(true, 4.96))),
			[]Reason{deny("exhaustion-freeze", "checkout-availability is projected to run out of error budget in 5 h (burn over 6h): only fixes, rollbacks and mitigations until it recovers")}},
		{"3 days to exhaustion passes", gateInput(setSLO("checkout-availability", forecast(true, 72))),
			[]Reason{info("exhaustion-freeze", "passed: no deny or warn")}},
		{"not exhausting passes", gateInput(setSLO("checkout-availability", forecast(false, 0))),
			[]Reason{info("exhaustion-freeze", "passed: no deny or warn")}},
		{"a fix passes", gateInput(setSLO("checkout-availability", forecast(true, 4.96)), func(in *Input) { in.Change.Kind = ChangeFix }),
			[]Reason{info("exhaustion-freeze", "passed: no deny or warn")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Evaluate(context.Background(), tc.in)
			if err != nil {
				t.Fatal(err)
			}
			var got []Reason
			for _, r := range d.Reasons {
				if r.Policy == pol.Name() {
					got = append(got, r)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got  %s\nwant %s", reasonLines(got), reasonLines(tc.want))
			}
		})
	}
}
