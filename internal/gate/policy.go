package gate

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/policy"
)

// policyStage hands every fact the checks gathered to the policies; their
// decision is the verdict (with the canary's own).
type policyStage struct{}

func (policyStage) name() string { return stagePolicy }

func (policyStage) exec(ctx context.Context, x *run) error {
	d, err := x.decide(ctx)
	if err != nil {
		return err
	}
	x.ev.Decision = decisionRef(d)
	x.addDecisionReasons(d)
	return nil
}

// precheck consults the policies on the facts gathered so far, before a
// timed canary waits for its intervals. A deny stops the evaluation: the
// canary cannot change it.
func (x *run) precheck(ctx context.Context) (stop bool, err error) {
	d, err := x.decide(ctx)
	if err != nil {
		return false, err
	}
	x.ev.Precheck = decisionRef(d)
	if d.Result != policy.Deny {
		return false, nil
	}
	x.ev.Decision = x.ev.Precheck
	x.addDecisionReasons(d)
	x.addReason(CheckCanary, LevelInfo, "", "canary analysis skipped: the policies denied the deploy on the budget and security checks alone")
	x.stopped = true
	return true, nil
}

// decide builds the policy input from the gate, the request, the
// engine's latest statuses and the checks' facts, and evaluates it.
func (x *run) decide(ctx context.Context) (*policy.Decision, error) {
	eng := x.r.opts.Engine
	if !eng.Ready() {
		// Without SLO states and alerts the trade-off policy cannot see a
		// firing page: no decision rather than a blind one.
		return nil, errBackfilling
	}
	snap := eng.Snapshot()
	g := x.gate
	in := policy.Input{
		Point:    policy.PointGate,
		Gate:     g.Name(),
		Policies: slices.Clone(g.Spec.Policies),
		Service:  policy.Service{Name: g.Spec.Service},
		Change: &policy.Change{
			Kind: x.req.Change.Kind, Version: x.req.Change.Version, Category: x.req.Change.Category,
			ExpectedImpact: x.req.Change.ExpectedImpact, Labels: maps.Clone(x.req.Change.Labels),
		},
		Now: x.r.now(),
	}
	snap.FillPolicyInput(&in, x.set)
	checks := x.checks
	in.Checks = &checks
	d, err := x.r.opts.Policy.Evaluate(ctx, in)
	if err != nil {
		// A decision that could not be recorded is still a decision, but
		// the decision log must not miss one: an error.
		return nil, err
	}
	return d, nil
}

func decisionRef(d *policy.Decision) *DecisionRef {
	return &DecisionRef{ID: d.ID, Result: d.Result, Policies: slices.Clone(d.Policies), Reasons: slices.Clone(d.Reasons)}
}

func (x *run) addDecisionReasons(d *policy.Decision) {
	for _, r := range d.Reasons {
		x.addReason(CheckPolicy, r.Level, r.Policy, r.Message)
	}
}

// recordStage sets the verdict and records the evaluation and its deploy
// marker. It runs even when an earlier stage failed.
type recordStage struct{}

func (recordStage) name() string { return stageRecord }

func (recordStage) exec(ctx context.Context, x *run) error {
	ev := x.ev
	ev.State = x.verdict()
	ev.FinishedAt = x.r.now()
	ev.Progress.Stage = stageDone
	ev.Progress.NextRunAt = time.Time{}
	if err := recordDeploy(ctx, x.r.opts.Deploys, ev); err != nil {
		x.addError(stageRecord, fmt.Errorf("record deploy marker: %w", err))
		ev.State = StateError
	}
	ev.UpdatedAt = ev.FinishedAt
	ev.summarize()
	if err := x.r.save(ctx, ev); err != nil {
		// The result stays in memory for polls; say it is not stored.
		x.addError(stageRecord, fmt.Errorf("store evaluation: %w", err))
		ev.State = StateError
		ev.summarize()
		x.r.mu.Lock()
		if data, merr := json.Marshal(ev); merr == nil {
			if l := x.r.live[ev.ID]; l != nil {
				l.data = data
			}
		}
		x.r.mu.Unlock()
		return err
	}
	return nil
}

// verdict maps what the stages found to a state: any error is an error;
// a policy deny or a failed canary is a fail; an inconclusive or
// marginal canary is inconclusive; otherwise the policies allowed (or
// warned) and the gate passes.
func (x *run) verdict() State {
	for _, r := range x.ev.Reasons {
		if r.Level == LevelError {
			return StateError
		}
	}
	if x.ev.Decision != nil && x.ev.Decision.Result == policy.Deny {
		return StateFail
	}
	if c := x.ev.Canary; c != nil {
		switch c.Verdict {
		case canary.VerdictFail:
			return StateFail
		case canary.VerdictPass:
		default: // inconclusive, marginal
			return StateInconclusive
		}
	}
	if x.ev.Decision == nil {
		return StateError // no decision was taken: never a pass
	}
	return StatePass
}
