package gate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// Stage names; the check stages share their names with the checks.
const (
	stageBudget   = CheckBudget
	stageSecurity = CheckSecurity
	stageCanary   = CheckCanary
	stagePolicy   = CheckPolicy
	stageRecord   = "record"
	stageDone     = "done"
)

// stage is one step of an evaluation. Exec reads the request and the
// facts of earlier stages from x and adds its own; an error stops the
// pipeline and becomes a reason of level error.
type stage interface {
	name() string
	exec(ctx context.Context, x *run) error
}

// ErrNotReady is returned by the budget check and the policies while the
// engine cannot vouch for budgets: it is still backfilling, or the
// telemetry source is down.
var ErrNotReady = errors.New("error budgets are not known")

// errBackfilling says why budgets are not known at start-up.
var errBackfilling = fmt.Errorf("%w yet: the engine is still backfilling; retry when /readyz answers ok", ErrNotReady)

// budgetStage gathers the error budgets, burn rates and budget policy
// steps of the gate's SLOs. The error-budget policy judges them.
type budgetStage struct{}

func (budgetStage) name() string { return stageBudget }

func (budgetStage) exec(ctx context.Context, x *run) error {
	b := x.gate.Spec.Budget
	eng := x.r.opts.Engine
	if !eng.Ready() {
		return errBackfilling
	}
	snap := eng.Snapshot()
	if d := snap.SourceDown; d != nil && (d.State == slo.Pending || d.State == slo.Firing) {
		// Budgets are as of the last data: a budget that cannot move is
		// no evidence for a deploy.
		return fmt.Errorf("%w: the telemetry source is down (since %s): error budgets are not current", ErrNotReady, d.Since.Format(time.RFC3339))
	}
	slos := serviceSLOs(snap, x.set, x.gate.Spec.Service)
	res := &BudgetResult{MinRemaining: b.MinRemaining.Ratio(), MaxBurnRate: b.MaxBurnRate, EvaluatedAt: snap.At, SLOs: []BudgetSLO{}}
	// The check's scope names SLOs; a grouped SLO is one entry per group,
	// named with its group labels, so the scope lists those names.
	var scope []string
	for i, s := range slos.inputs {
		if len(b.SLOs) > 0 && !slices.Contains(b.SLOs, slos.sloNames[i]) {
			continue
		}
		scope = append(scope, s.Name)
		res.SLOs = append(res.SLOs, BudgetSLO{
			Name: s.Name, SLO: slos.sloNames[i], Category: s.Category, State: s.State, Objective: s.Objective,
			BudgetRemaining: s.BudgetRemaining, BudgetConsumed: s.BudgetConsumed, BurnRates: s.BurnRates, PolicyStep: s.PolicyStep,
		})
	}
	for _, name := range b.SLOs {
		if !slices.Contains(slos.sloNames, name) {
			scope = append(scope, name) // the policy warns that it has no evaluation
			res.SLOs = append(res.SLOs, BudgetSLO{Name: name, SLO: name, State: policy.StateNoData, Missing: true})
		}
	}
	x.ev.Budget = res
	if len(res.SLOs) == 0 {
		return fmt.Errorf("service %s has no SLO to check: declare SLOs for it or remove the budget check", x.gate.Spec.Service)
	}
	if len(b.SLOs) == 0 {
		scope = nil // every SLO of the service, as the policy reads an empty list
	}
	x.checks.Budget = &policy.BudgetCheck{SLOs: scope, MinRemaining: b.MinRemaining.Ratio(), MaxBurnRate: b.MaxBurnRate}
	for _, s := range res.SLOs {
		x.addReason(CheckBudget, LevelInfo, "", budgetFact(s))
	}
	if last := x.r.opts.LastDeploy; last != nil {
		rep, err := last(ctx, x.gate.Spec.Service, x.r.now())
		if err != nil {
			return fmt.Errorf("last deploy of %s: %w", x.gate.Spec.Service, err)
		}
		if rep != nil {
			res.LastDeploy = rep
			for _, imp := range rep.Impact {
				x.addReason(CheckBudget, LevelInfo, "", impactFact(rep.Deploy, imp))
			}
		}
	}
	return nil
}

// impactFact cites what the service's last deploy cost one SLO's budget.
func impactFact(d store.Deploy, imp engine.DeployImpact) string {
	name := d.Version
	if name == "" {
		name = "deploy"
	}
	running := ""
	if !imp.Complete {
		running = " so far"
	}
	return fmt.Sprintf("last deploy %s of %s at %s: SLO %s consumed %s of the error budget in the %s after it%s, %s in the %s before",
		name, d.Service, d.At.UTC().Format(time.RFC3339), imp.SLO, pct(imp.After.Budget), imp.Span, running, pct(imp.Before.Budget), imp.Span)
}

// budgetFact describes one SLO's budget with its numbers.
func budgetFact(s BudgetSLO) string {
	if s.Missing {
		return fmt.Sprintf("SLO %s: not evaluated yet", s.Name)
	}
	if s.State == policy.StateNoData {
		return fmt.Sprintf("SLO %s: no data", s.Name)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SLO %s: %s of the error budget left (%s consumed)", s.Name, pct(s.BudgetRemaining), pct(s.BudgetConsumed))
	if r, ok := s.BurnRates["1h"]; ok {
		fmt.Fprintf(&b, ", burn rate %.2fx over 1h", r)
	}
	if s.PolicyStep != nil {
		fmt.Fprintf(&b, ", budget policy step %s at %s", s.PolicyStep.Action, pct(s.PolicyStep.Consumed))
	}
	if s.State != policy.StateOK {
		fmt.Fprintf(&b, ", state %s", s.State)
	}
	return b.String()
}

// pct formats a ratio as a percentage with one decimal.
func pct(r float64) string {
	return fmt.Sprintf("%.1f%%", math.Round(r*1000)/10)
}

// sloSet is the policy's view of a service's SLOs: inputs[i] is the
// status of SLO sloNames[i] (one entry per group of a grouped SLO).
type sloSet struct {
	inputs   []policy.SLO
	sloNames []string
}

// serviceSLOs maps the engine's statuses of service to policy SLOs.
func serviceSLOs(snap *engine.Snapshot, set *spec.Set, service string) sloSet {
	var out sloSet
	for _, st := range snap.Statuses {
		if st.Service != service {
			continue
		}
		out.inputs = append(out.inputs, st.PolicySLO(set))
		out.sloNames = append(out.sloNames, st.SLO)
	}
	return out
}

func bad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }

func finite(f float64) float64 {
	if bad(f) {
		return 0
	}
	return f
}
