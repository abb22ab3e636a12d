package gate

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

const budgetGates = `
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: checkout-budget}
spec:
  service: checkout
  budget: {}
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: search-budget}
spec:
  service: search
  budget:
    minRemaining: 50%
    maxBurnRate: 2
`

// TestBudgetGate runs budget gates on a real engine over two hours of
// telemetry: checkout has spent five times its budget (5% errors on a
// 99% objective) and its budget policy freezes at 100%, so a feature
// fails and a rollback or fix passes with a warning; search is healthy.
func TestBudgetGate(t *testing.T) {
	f := newFixture(t, fixtureOptions{specs: baseSpecs + budgetGates, now: testNow, series: budgetSeries()})
	for _, tc := range []struct {
		gate, kind string
		want       State
		level      string // a reason of this level
		parts      []string
	}{
		{"checkout-budget", policy.ChangeFeature, StateFail, LevelDeny, []string{"feature 2.0.0 may not deploy", "SLO checkout-availability has consumed 500.0%", "freeze at 100.0%"}},
		{"checkout-budget", policy.ChangeConfig, StateFail, LevelDeny, []string{"config 2.0.0 may not deploy"}},
		{"checkout-budget", policy.ChangeRollback, StatePass, LevelWarn, []string{"rollback 2.0.0 allowed despite the freeze"}},
		{"checkout-budget", policy.ChangeFix, StatePass, LevelWarn, []string{"fix 2.0.0 allowed despite the freeze"}},
		{"search-budget", policy.ChangeFeature, StatePass, LevelInfo, []string{"every SLO within budget (1 checked)"}},
	} {
		t.Run(tc.gate+"/"+tc.kind, func(t *testing.T) {
			ev := f.evaluate(tc.gate, Request{Change: Change{Kind: tc.kind, Version: "2.0.0", Deploy: true}})
			mustState(t, ev, tc.want)
			if ev.State.ExitCode() != map[State]int{StatePass: 0, StateFail: 1}[tc.want] {
				t.Errorf("exit code %d for %s", ev.State.ExitCode(), ev.State)
			}
			if !hasReason(ev, tc.level, tc.parts...) {
				t.Errorf("no %s reason with %q; reasons:%s", tc.level, tc.parts, reasonsText(ev))
			}
			if ev.Decision == nil || ev.Decision.ID == "" {
				t.Fatalf("no decision: %+v", ev)
			}
			// The decision log has the decision with the facts it was
			// taken on.
			d, err := f.store.Decision(context.Background(), ev.Decision.ID)
			if err != nil {
				t.Fatal(err)
			}
			var in policy.Input
			if err := json.Unmarshal(d.Input, &in); err != nil {
				t.Fatal(err)
			}
			if in.Gate != tc.gate || in.Change.Kind != tc.kind || in.Checks == nil || in.Checks.Budget == nil || len(in.SLOs) != 1 {
				t.Errorf("decision input: %s", d.Input)
			}
			// The deploy marker carries the verdict.
			ds, _, err := f.store.Deploys(context.Background(), store.DeployFilter{Service: ev.Service})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, d := range ds {
				if d.EvaluationID == ev.ID {
					found = d.Verdict == string(tc.want) && d.Version == "2.0.0" && d.Gate == tc.gate && d.Source == store.DeploySourceGate
				}
			}
			if !found {
				t.Errorf("no deploy marker with verdict %s for %s in %+v", tc.want, ev.ID, ds)
			}
		})
	}

	// The numbers behind the verdict: 5% errors of a 1% budget is 500%
	// consumed, and a 1h burn rate of 5.
	ev := f.evaluate("checkout-budget", Request{})
	if ev.Change.Kind != policy.ChangeFeature {
		t.Errorf("default change kind %q, want feature", ev.Change.Kind)
	}
	if len(ev.Budget.SLOs) != 1 {
		t.Fatalf("budget SLOs %+v", ev.Budget.SLOs)
	}
	s := ev.Budget.SLOs[0]
	if math.Abs(s.BudgetConsumed-5) > 1e-9 || math.Abs(s.BudgetRemaining+4) > 1e-9 {
		t.Errorf("consumed %v remaining %v, want 5 and -4", s.BudgetConsumed, s.BudgetRemaining)
	}
	if r := s.BurnRates["1h"]; math.Abs(r-5) > 1e-9 {
		t.Errorf("1h burn rate %v, want 5", r)
	}
	if s.PolicyStep == nil || s.PolicyStep.Action != "freeze" || s.PolicyStep.Consumed != 1 {
		t.Errorf("policy step %+v, want freeze at 1", s.PolicyStep)
	}
	if !strings.HasPrefix(ev.Summary, "FAIL: deny error-budget: feature may not deploy") {
		t.Errorf("summary %q", ev.Summary)
	}
}

// TestBudgetGateThresholds: a gate's minRemaining and maxBurnRate deny
// a feature although the budget policy does not freeze. With a 90%
// objective, 5% errors spend half the budget at a burn rate of 0.5.
func TestBudgetGateThresholds(t *testing.T) {
	gates := `
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: min-remaining}
spec:
  service: checkout
  budget: {minRemaining: 60%}
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: max-burn}
spec:
  service: checkout
  budget: {maxBurnRate: 0.4}
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: lenient}
spec:
  service: checkout
  budget: {minRemaining: 40%, maxBurnRate: 0.6}
`
	specs := strings.Replace(baseSpecs, "    - consumed: 100%\n      action: freeze\n      message: Budget exhausted; only fixes and rollbacks may ship.\n", "", 1)
	specs = strings.Replace(specs, "objective: 99\n", "objective: 90\n", 1)
	f := newFixture(t, fixtureOptions{specs: specs + gates, now: testNow, series: budgetSeries()})
	for _, tc := range []struct {
		gate  string
		want  State
		level string
		parts []string
	}{
		{"min-remaining", StateFail, LevelDeny, []string{"SLO checkout-availability has 50.0% of its error budget left, the gate requires 60.0%"}},
		{"max-burn", StateFail, LevelDeny, []string{"SLO checkout-availability burns its error budget at 0.5x over 1h, the gate allows at most 0.4x"}},
		{"lenient", StatePass, LevelWarn, []string{"SLO checkout-availability has consumed 50.0% of its error budget (budget policy: warn at 50.0%)"}},
	} {
		t.Run(tc.gate, func(t *testing.T) {
			ev := f.evaluate(tc.gate, Request{Change: Change{Kind: policy.ChangeFeature}})
			mustState(t, ev, tc.want)
			if !hasReason(ev, tc.level, tc.parts...) {
				t.Errorf("no %s reason with %q; reasons:%s", tc.level, tc.parts, reasonsText(ev))
			}
		})
	}
}

// TestBudgetGateNotReady: before the engine's backfill, budgets are not
// known: an error (exit 2), never a pass.
func TestBudgetGateNotReady(t *testing.T) {
	f := newFixture(t, fixtureOptions{specs: baseSpecs + budgetGates, now: testNow, noEngineRun: true})
	ev := f.evaluate("search-budget", Request{})
	mustState(t, ev, StateError)
	if ev.State.ExitCode() != 2 || !hasReason(ev, LevelError, "still backfilling") {
		t.Fatalf("reasons:%s", reasonsText(ev))
	}
	if ev.Decision != nil {
		t.Errorf("a decision was taken without budgets: %+v", ev.Decision)
	}
}

// TestBudgetGateSourceDown: with the telemetry source down, budgets do
// not move: an error (exit 2), not a decision on stale budgets.
func TestBudgetGateSourceDown(t *testing.T) {
	down, err := telemetry.NewRemote(telemetry.RemoteOptions{URL: "http://" + externaltest.FreeAddr(t), MaxRetries: -1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	f := newFixture(t, fixtureOptions{specs: baseSpecs + budgetGates, now: testNow, engineSource: down})
	if f.eng.Snapshot().SourceDown == nil {
		t.Fatal("the engine does not see its source down")
	}
	ev := f.evaluate("search-budget", Request{Change: Change{Kind: policy.ChangeFix}})
	mustState(t, ev, StateError)
	if !hasReason(ev, LevelError, "the telemetry source is down", "error budgets are not current") || ev.Decision != nil {
		t.Fatalf("reasons:%s", reasonsText(ev))
	}
}
