package gate

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/ids"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

const policyGates = `
---
apiVersion: qsp/v1
kind: Policy
metadata: {name: release-labels}
spec:
  appliesTo: [gate]
  rego: |
    package team.release

    deny contains msg if {
      input.change.kind == "feature"
      not input.change.labels.ticket
      msg := sprintf("feature %s has no ticket label", [input.change.version])
    }

    warn contains msg if {
      input.service.tier == 1
      msg := sprintf("%s is tier 1: watch the rollout", [input.service.name])
    }
---
apiVersion: qsp/v1
kind: Policy
metadata: {name: broken}
spec:
  appliesTo: [gate]
  rego: |
    package team.broken

    deny contains msg if {
      to_number(input.change.labels.size) > 1
      msg := "too big"
    }
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: labelled}
spec:
  service: checkout
  security: {maxFindings: {critical: 5}}
  policies: [release-labels]
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: broken}
spec:
  service: checkout
  security: {maxFindings: {critical: 5}}
  policies: [broken]
`

// TestGatePolicies: user policies are consulted with the built-in ones;
// their deny fails the gate, their warning does not; a policy that fails
// at run time is an error, never an allow.
func TestGatePolicies(t *testing.T) {
	f := newFixture(t, fixtureOptions{specs: baseSpecs + policyGates, now: testNow, series: healthySeries()})
	reports := []Report{{Name: "grype.json", Content: testdata(t, "grype-checkout.json")}}
	var finished []*Evaluation
	f.runner.OnFinish(func(_ context.Context, ev *Evaluation) { finished = append(finished, ev) })
	defer func() {
		// Every evaluation was reported once, with its verdict.
		want := []State{StateFail, StatePass, StateError, StatePass}
		if len(finished) != len(want) {
			t.Fatalf("%d evaluations reported, want %d", len(finished), len(want))
		}
		for i, ev := range finished {
			if ev.State != want[i] || ev.FinishedAt.IsZero() {
				t.Errorf("reported %d: %s at %s, want %s", i, ev.State, ev.FinishedAt, want[i])
			}
		}
	}()

	ev := f.evaluate("labelled", Request{Change: Change{Kind: policy.ChangeFeature, Version: "1.2"}, Reports: reports})
	mustState(t, ev, StateFail)
	if !hasReason(ev, LevelDeny, "feature 1.2 has no ticket label") || !hasReason(ev, LevelWarn, "checkout is tier 1") {
		t.Errorf("reasons:%s", reasonsText(ev))
	}
	if got := ev.Decision.Policies; len(got) != 5 || got[3] != "release-labels" || got[4] != "broken" {
		t.Errorf("policies consulted %v", got)
	}

	ev = f.evaluate("labelled", Request{Change: Change{Kind: policy.ChangeFeature, Version: "1.2", Labels: map[string]string{"ticket": "OPS-1"}}, Reports: reports})
	mustState(t, ev, StatePass)
	if ev.Decision.Result != policy.Warn {
		t.Errorf("decision %s, want warn", ev.Decision.Result)
	}

	ev = f.evaluate("broken", Request{Change: Change{Labels: map[string]string{"size": "huge"}}, Reports: reports})
	mustState(t, ev, StateError)
	if !hasReason(ev, LevelError, `policy "broken"`, "to_number") || ev.Decision != nil {
		t.Errorf("reasons:%s decision %+v", reasonsText(ev), ev.Decision)
	}
	// Without the label the same policy evaluates (undefined, no deny).
	ev = f.evaluate("broken", Request{Change: Change{Kind: policy.ChangeFix}, Reports: reports})
	mustState(t, ev, StatePass)
}

// TestMalformedRego: a module that does not parse is refused when the
// specs load, and one that reads a field the input does not have is
// refused when the policy engine is built, both naming the policy: a
// server or `qsp gate --specs` never starts deciding with it.
func TestMalformedRego(t *testing.T) {
	_, diags := spec.LoadBytes("p.yaml", []byte(`apiVersion: qsp/v1
kind: Policy
metadata: {name: typo}
spec:
  rego: |
    package team.typo
    deny contains msg if {
      input.change.kind == 
    }
`))
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "typo") {
		t.Errorf("syntax error not reported: %v", diags)
	}
	set, diags := spec.LoadBytes("p.yaml", []byte(`apiVersion: qsp/v1
kind: Policy
metadata: {name: misspelt}
spec:
  rego: |
    package team.misspelt
    deny contains msg if {
      input.chnage.kind == "feature"
      msg := "no"
    }
`))
	if diags.HasErrors() {
		t.Fatalf("specs: %v", diags)
	}
	_, err := policy.New(policy.Options{Policies: set.Policies})
	if err == nil || !strings.Contains(err.Error(), `policy "misspelt"`) || !strings.Contains(err.Error(), "rego_type_error") {
		t.Errorf("type error not reported: %v", err)
	}
}

// TestInterruptedEvaluation: an evaluation a previous process left
// running is finished as an error (exit 2) when the runner starts, and its
// deploy marker says so.
func TestInterruptedEvaluation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qsp.db")
	f := newFixture(t, fixtureOptions{specs: baseSpecs + canaryGates, now: testNow, series: healthySeries(), storePath: path})
	ctx := context.Background()
	ev := &Evaluation{ID: ids.New(testNow), Gate: "canary-good", Service: "search", State: StateRunning, Change: Change{Kind: "feature", Version: "7", Deploy: true},
		CreatedAt: testNow, UpdatedAt: testNow, Reasons: []Reason{}, Progress: Progress{Stage: stageCanary, CanaryRuns: 3}}
	data, _ := json.Marshal(ev)
	if err := f.store.SaveGateEvaluation(ctx, storedEvaluation(ev, data)); err != nil {
		t.Fatal(err)
	}
	if err := f.store.RecordDeploy(ctx, deployMarker(ev)); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.runner.Run(runCtx) }()
	var got *Evaluation
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if got, err = f.runner.Evaluation(ctx, ev.ID); err != nil {
			t.Fatal(err)
		}
		if got.State.Done() || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	mustState(t, got, StateError)
	if !hasReason(got, LevelError, "interrupted: qsp stopped while the evaluation was running") || got.FinishedAt.IsZero() {
		t.Errorf("reasons:%s", reasonsText(got))
	}
	ds, _, err := f.store.Deploys(ctx, store.DeployFilter{Service: "search"})
	if err != nil || len(ds) != 1 || ds[0].Verdict != string(StateError) || ds[0].EvaluationID != ev.ID {
		t.Errorf("deploys %+v %v", ds, err)
	}

	// Runners sharing a store (replicas) leave another's evaluation alone
	// until its deadline has passed.
	other := &Evaluation{ID: ids.New(testNow), Gate: "canary-good", Service: "search", State: StateRunning, Change: Change{Kind: "feature"},
		CreatedAt: testNow, UpdatedAt: testNow, Deadline: testNow.Add(30 * time.Minute), Reasons: []Reason{}}
	data, _ = json.Marshal(other)
	if err := f.store.SaveGateEvaluation(ctx, storedEvaluation(other, data)); err != nil {
		t.Fatal(err)
	}
	f.runner.recoverInterrupted(ctx, false)
	if got, _ := f.runner.Evaluation(ctx, other.ID); got.State != StateRunning {
		t.Fatalf("another runner's evaluation finished before its deadline: %s", got.State)
	}
	f.clock.add(30*time.Minute + recoverGrace + time.Second)
	f.runner.recoverInterrupted(ctx, false)
	if got, _ := f.runner.Evaluation(ctx, other.ID); got.State != StateError {
		t.Fatalf("an evaluation past its deadline is still %s", got.State)
	}
}
