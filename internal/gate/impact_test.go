package gate

import (
	"context"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/store"
)

// TestBudgetCitesLastDeploy checks that a gate's budget check cites what
// the service's previous deploy cost each SLO's budget.
func TestBudgetCitesLastDeploy(t *testing.T) {
	at := testNow.Add(-2 * time.Hour)
	var asked []string
	last := func(_ context.Context, service string, now time.Time) (*engine.DeployReport, error) {
		asked = append(asked, service)
		if service != "checkout" {
			return nil, nil
		}
		return &engine.DeployReport{
			Deploy: store.Deploy{At: at, Service: "checkout", Version: "1.9.0", Source: store.DeploySourceEvents},
			Impact: []engine.DeployImpact{{SLO: "checkout-availability", Span: "30m", Complete: true,
				Before: engine.Consumption{Budget: 0.01}, After: engine.Consumption{Budget: 0.25}}},
		}, nil
	}
	f := newFixture(t, fixtureOptions{specs: baseSpecs + budgetGates, now: testNow, series: healthySeries(), lastDeploy: last})
	ev := f.evaluate("checkout-budget", Request{Change: Change{Kind: policy.ChangeFeature, Version: "2.0.0"}})
	want := "last deploy 1.9.0 of checkout at " + at.Format(time.RFC3339) + ": SLO checkout-availability consumed 25.0% of the error budget in the 30m after it, 1.0% in the 30m before"
	if !hasReason(ev, LevelInfo, want) {
		t.Errorf("no reason %q; reasons:%s", want, reasonsText(ev))
	}
	if ev.Budget == nil || ev.Budget.LastDeploy == nil || ev.Budget.LastDeploy.Deploy.Version != "1.9.0" {
		t.Errorf("budget result lacks the last deploy: %+v", ev.Budget)
	}
	ev = f.evaluate("search-budget", Request{Change: Change{Kind: policy.ChangeFeature, Version: "2.0.0"}})
	if ev.Budget.LastDeploy != nil || hasReason(ev, LevelInfo, "last deploy") {
		t.Errorf("search has no deploy, got %+v", ev.Budget.LastDeploy)
	}
	if len(asked) != 2 {
		t.Errorf("asked for %v", asked)
	}
}
