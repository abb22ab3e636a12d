package playbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/ids"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// Stage names, as the run's events and the metrics name them.
const (
	stageTrigger    = "trigger"
	stageDedupe     = "dedupe"
	stageKillSwitch = "kill-switch"
	stageConfig     = "config"
	stageInFlight   = "in-flight"
	stageCooldown   = "cooldown"
	stageRunLimit   = "run-limit"
	stagePolicy     = "policy"
	stageApproval   = "approval"
	stageQueue      = "queue"
	stageAct        = "act"
	stageDryRun     = "dry-run"
	stageExecute    = "execute"
	stageRecord     = "record"
)

// runCtx is one run on its way through the pipeline: the stored row (for
// versioned writes), the document, and what the stages share.
type runCtx struct {
	r   *Runner
	row store.PlaybookRun
	run *Run
	set *spec.Set
	// acts are the runs that acted on the actuator within the guard's
	// lookback, read once by the cooldown stage for the run-limit stage.
	acts []store.PlaybookAct
	// deferUntil is set when a guard that lifts at a known time (cooldown,
	// settling, run limit) stopped the run at admission.
	deferUntil time.Time
}

// verdict is a stage stopping a run (a final state) or holding it (a
// waiting state: pending approval, retrying).
type verdict struct {
	state State
	msg   string
	// until is when the guard that stopped the run lifts, if it is one
	// that does (cooldown, settling, run limit): a burn-rate trigger
	// whose burn still holds then fires again.
	until time.Time
}

// stage is one step of the pipeline. exec returns nil to pass the run on
// (having recorded its own pass event), a verdict to stop or hold it,
// or an error when it could not judge (the store failed): the run is
// left as it is, and resumed by whoever claims it after its lease.
type stage interface {
	name() string
	exec(ctx context.Context, x *runCtx) (*verdict, error)
}

// admission is the pipeline from a recorded trigger to a queued (or
// pending, or stopped) run. The dedupe stage is the insert in admit.
var admission = []stage{killSwitchStage{}, configStage{}, inFlightStage{}, cooldownStage{}, runLimitStage{}, policyStage{}, approvalStage{}}

// execution is the pipeline of a queued run, up to acting; the execute
// stage follows (executeSteps).
var execution = []stage{killSwitchStage{}, configStage{}, policyStage{}, actStage{}, dryRunStage{}}

// admit records a trigger's run (the dedupe stage: the idempotency key is
// unique in the store) and takes it through admission. It returns when
// the guard that stopped the run lifts, if one did that lifts.
func (r *Runner) admit(ctx context.Context, set *spec.Set, ev event, now time.Time) (time.Time, error) {
	x, err := r.newRun(ctx, set, ev, now)
	if err != nil {
		return time.Time{}, err
	}
	inserted, err := r.store.InsertPlaybookRun(ctx, x.row)
	if err != nil {
		return time.Time{}, err
	}
	r.seen[ev.key] = now
	if !inserted {
		r.metrics.deduped.Inc()
		return time.Time{}, nil
	}
	x.row.Version = 1
	r.metrics.triggers.WithLabelValues(ev.trig.Event).Inc()
	r.log.Info("playbook triggered", "playbook", x.run.Playbook, "run", x.run.ID, "event", ev.trig.Event, "reason", ev.trig.Reason)
	err = r.admitRun(ctx, x)
	return x.deferUntil, err
}

// newRun builds the run of a trigger event, not yet stored: its plan,
// steps and inputs, and the row that claims it for this runner.
func (r *Runner) newRun(ctx context.Context, set *spec.Set, ev event, now time.Time) (*runCtx, error) {
	pb := ev.pb
	plan := planOf(pb)
	run := &Run{
		ID: ids.New(now), Playbook: pb.Name(), Service: pb.Spec.Service, Kind: plan.Kind,
		Actuator: actuatorOf(pb.Spec.Service, plan.Kind, pb.Name()), State: StateNew, DryRun: plan.DryRun,
		IdempotencyKey: ev.key, Trigger: ev.trig, Plan: plan, CreatedAt: now, UpdatedAt: now,
	}
	r.lookupIncident(ctx, run)
	for _, a := range plan.Actions {
		step := Step{Action: a.Name, Type: a.Type, State: StepPlanned, IdempotencyKey: run.ID + "/" + a.Name}
		if a.Type == TypeExec {
			step.Command = slices.Clone(a.Command)
		}
		run.Steps = append(run.Steps, step)
	}
	x := &runCtx{r: r, run: run, set: set}
	x.recordInputs()
	x.event(stageTrigger, OutcomeInfo, ev.trig.Reason)
	x.event(stageDedupe, OutcomePass, "first run of episode "+ev.key)
	data, err := json.Marshal(run)
	if err != nil {
		return nil, fmt.Errorf("encode run %s: %w", run.ID, err)
	}
	x.row = store.PlaybookRun{
		ID: run.ID, IdempotencyKey: ev.key, Playbook: run.Playbook, Service: run.Service, Actuator: run.Actuator,
		State: string(StateNew), Owner: r.opts.Owner, LeaseUntil: now.Add(r.opts.Lease), CreatedAt: now, UpdatedAt: now, Data: data,
	}
	return x, nil
}

// admitRun takes a new run through admission and queues it.
func (r *Runner) admitRun(ctx context.Context, x *runCtx) error {
	done, err := x.pipeline(ctx, admission)
	if err != nil || done {
		return err
	}
	x.run.State = StateQueued
	x.row.NextAttemptAt = x.now()
	x.row.LeaseUntil, x.row.Owner = time.Time{}, ""
	x.event(stageQueue, OutcomePass, "admitted: queued to act")
	return x.save(ctx)
}

// execute continues a claimed run from its state.
func (r *Runner) execute(ctx context.Context, row store.PlaybookRun) error {
	var run Run
	if err := json.Unmarshal(row.Data, &run); err != nil {
		// A document this version cannot read is not acted on.
		run = Run{ID: row.ID, Playbook: row.Playbook, Service: row.Service, Actuator: row.Actuator, IdempotencyKey: row.IdempotencyKey, CreatedAt: row.CreatedAt}
		x := &runCtx{r: r, row: row, run: &run, set: r.set.Load()}
		return x.stop(ctx, stageRecord, &verdict{state: StateFailed, msg: fmt.Sprintf("the stored run cannot be read: %v", err)})
	}
	x := &runCtx{r: r, row: row, run: &run, set: r.set.Load()}
	switch State(row.State) {
	case StatePending:
		if x.now().Before(row.ExpiresAt) {
			x.row.LeaseUntil, x.row.Owner = time.Time{}, ""
			return x.save(ctx)
		}
		if run.Approval != nil {
			run.Approval.Decision, run.Approval.At = Expired, x.now()
		}
		return x.stop(ctx, stageApproval, &verdict{state: StateExpired, msg: fmt.Sprintf("expired: nobody approved it by %s", clock(row.ExpiresAt))})
	case StateNew:
		x.event(stageTrigger, OutcomeInfo, "admission resumed: the runner that recorded the trigger stopped")
		err := r.admitRun(ctx, x)
		if x.run.State == StateQueued {
			r.signal() // the next cycle executes it
		}
		return err
	case StateQueued, StateRunning, StateRetrying:
		done, err := x.pipeline(ctx, execution)
		if err != nil || done {
			return err
		}
		return x.executeSteps(ctx)
	}
	return nil
}

// pipeline runs stages until one stops or holds the run, which it then
// records. It reports whether the run stopped or waits.
func (x *runCtx) pipeline(ctx context.Context, stages []stage) (bool, error) {
	for _, s := range stages {
		v, err := s.exec(ctx, x)
		if err != nil {
			return true, fmt.Errorf("run %s: %s: %w", x.run.ID, s.name(), err)
		}
		if v != nil {
			return true, x.stop(ctx, s.name(), v)
		}
	}
	return false, nil
}

// stop records a verdict: the run's state, its reason, the stage's
// event, and, for a final state, the end.
func (x *runCtx) stop(ctx context.Context, stageName string, v *verdict) error {
	x.run.State = v.state
	x.run.Reason = string(v.state) + ": " + v.msg
	if v.state == StatePending {
		x.run.Reason = "pending: " + v.msg
	}
	outcome := OutcomeStop
	if !v.state.Done() {
		outcome = OutcomeWait
	}
	x.event(stageName, outcome, v.msg)
	x.deferUntil = v.until
	// Stopped or waiting, the run is no longer this runner's to hold.
	x.row.LeaseUntil, x.row.Owner = time.Time{}, ""
	if v.state.Done() {
		x.run.FinishedAt = x.now()
		x.r.metrics.stops.WithLabelValues(stageName, string(v.state)).Inc()
		x.r.metrics.runs.WithLabelValues(string(v.state)).Inc()
		x.r.log.Info("playbook run ended", "playbook", x.run.Playbook, "run", x.run.ID, "state", v.state, "reason", v.msg)
	}
	return x.save(ctx)
}

func (x *runCtx) now() time.Time { return x.r.now() }

// event appends one stage's verdict to the run's trail.
func (x *runCtx) event(stageName, outcome, msg string) {
	x.run.Events = append(x.run.Events, Event{At: x.now(), Stage: stageName, Outcome: outcome, Message: msg})
}

// save writes the run over its stored version.
func (x *runCtx) save(ctx context.Context) error {
	now := x.now()
	x.run.UpdatedAt = now
	end := now
	if !x.run.FinishedAt.IsZero() {
		end = x.run.FinishedAt
	}
	x.run.DurationMs = end.Sub(x.run.CreatedAt).Milliseconds()
	data, err := json.Marshal(x.run)
	if err != nil {
		return fmt.Errorf("encode run %s: %w", x.run.ID, err)
	}
	x.row.State, x.row.Data, x.row.UpdatedAt = string(x.run.State), data, now
	if x.run.State == StatePending && x.run.Approval != nil {
		x.row.ExpiresAt = x.run.Approval.Deadline
	}
	v, err := x.r.store.UpdatePlaybookRun(ctx, x.row)
	if err != nil {
		return err
	}
	x.row.Version = v
	return nil
}

// data is the template data of action of the run.
func (x *runCtx) data(action, key string) *Data {
	t := x.run.Trigger
	d := &Data{
		Playbook: x.run.Playbook, Service: x.run.Service, SLO: t.SLO, Key: t.Key, Group: t.Group, Category: string(t.Category),
		Event: t.Event, Severity: t.Severity, Alert: t.Alert, Condition: t.Condition, Reason: t.Reason, BurnRate: t.BurnRate,
		Window: t.Window, Budget: t.Budget, Incident: t.Incident, Gate: t.Gate, Evaluation: t.Evaluation, Schedule: t.Schedule,
		RunID: x.run.ID, Action: action, IdempotencyKey: key, At: t.At.UTC().Format(time.RFC3339), DryRun: x.run.DryRun,
	}
	if d.Group == nil {
		d.Group = map[string]string{}
	}
	if u := x.r.opts.ExternalURL; u != "" {
		d.RunURL = strings.TrimSuffix(u, "/") + "/api/v1/playbooks/runs/" + x.run.ID
	}
	return d
}

// lookupIncident fills the trigger's incident: the open incident the
// alert belongs to. Incidents are opened by the alerting component from
// the same transitions, maybe after this run was recorded, so the
// execution looks again if there was none.
func (r *Runner) lookupIncident(ctx context.Context, run *Run) {
	t := &run.Trigger
	if t.Incident != 0 || t.Key == "" || (t.Severity != spec.SeverityPage && t.Severity != spec.SeverityTicket) {
		return
	}
	incs, err := r.store.OpenIncidentsWithAlert(ctx, t.Key, t.Severity)
	if err != nil {
		r.log.Warn("look up incident", "run", run.ID, "err", err)
		return
	}
	if len(incs) > 0 {
		t.Incident = incs[0].ID
	}
}

// recordInputs records what each action would send, secrets as
// placeholders, so that every run has its inputs in the audit log, also
// one a guard stops before the config stage. Rendering errors are the
// config stage's to report.
func (x *runCtx) recordInputs() {
	for i, a := range x.run.Plan.Actions {
		step := &x.run.Steps[i]
		data := x.data(a.Name, step.IdempotencyKey)
		switch a.Type {
		case TypeWebhook:
			if req, err := redactedRequest(a, data); err == nil {
				step.Request = req
			}
		case TypeNotify:
			if msg, err := newRenderer(nil).render("message", a.Message, data); err == nil {
				step.Message = msg
			}
		}
	}
}

// killSwitchStage stops every run while the kill switch is on.
type killSwitchStage struct{}

func (killSwitchStage) name() string { return stageKillSwitch }

func (killSwitchStage) exec(ctx context.Context, x *runCtx) (*verdict, error) {
	ks, err := x.r.KillSwitch(ctx)
	if err != nil {
		return nil, err
	}
	if ks.On {
		return &verdict{state: StateSuppressed, msg: "kill switch is on (" + ks.describe() + ")"}, nil
	}
	x.event(stageKillSwitch, OutcomePass, "kill switch is off")
	return nil, nil
}

// configStage refuses what the server configuration does not allow:
// exec actions without playbooks.exec, templates playbooks may not run,
// webhook URLs not on the allowlist. The URL is checked again, with the
// secrets' values, before every attempt; here it is checked with
// stand-ins, so that a run that cannot act does not ask for approval.
// It also records what each action will send, secrets as placeholders.
type configStage struct{}

func (configStage) name() string { return stageConfig }

func (configStage) exec(_ context.Context, x *runCtx) (*verdict, error) {
	for i, a := range x.run.Plan.Actions {
		step := &x.run.Steps[i]
		data := x.data(a.Name, step.IdempotencyKey)
		switch a.Type {
		case TypeExec:
			if !x.r.opts.Exec {
				return &verdict{state: StateRefused, msg: fmt.Sprintf("action %s: %v", a.Name, errExecDisabled)}, nil
			}
		case TypeNotify:
			msg, err := newRenderer(nil).render("message", a.Message, data)
			if err != nil {
				return &verdict{state: StateRefused, msg: fmt.Sprintf("action %s: %v", a.Name, err)}, nil
			}
			step.Message = msg
		case TypeWebhook:
			req, err := redactedRequest(a, data)
			if err != nil {
				return &verdict{state: StateRefused, msg: fmt.Sprintf("action %s: %v", a.Name, err)}, nil
			}
			step.Request = req
			probe, err := renderRequest(&renderer{secrets: &Secrets{Getenv: func(string) string { return "x" }}, used: map[string]string{}}, a, data)
			if err != nil {
				return &verdict{state: StateRefused, msg: fmt.Sprintf("action %s: %v", a.Name, err)}, nil
			}
			if _, err := x.r.allow.Check(probe.URL); err != nil {
				return &verdict{state: StateRefused, msg: fmt.Sprintf("action %s: %v", a.Name, err)}, nil
			}
		}
	}
	x.event(stageConfig, OutcomePass, "every action is allowed by the server config")
	return nil, nil
}

// inFlightStage holds one run per actuator at a time: while an older run
// on it waits for approval, is queued or is executing, a new one is
// suppressed (the older run is the response to the same trouble).
type inFlightStage struct{}

func (inFlightStage) name() string { return stageInFlight }

func (inFlightStage) exec(ctx context.Context, x *runCtx) (*verdict, error) {
	open, err := x.r.store.OpenPlaybookRuns(ctx, x.run.Actuator, x.run.ID)
	if err != nil {
		return nil, err
	}
	for _, o := range open {
		// Only older runs count, so that of two runs recorded at once
		// (two replicas) the older goes on, rather than both stopping.
		if o.CreatedAt.After(x.run.CreatedAt) || o.CreatedAt.Equal(x.run.CreatedAt) && o.ID > x.run.ID {
			continue
		}
		what := map[string]string{
			store.PlaybookRunNew: "is being admitted", store.PlaybookRunPending: "is pending approval",
			store.PlaybookRunQueued: "is queued", store.PlaybookRunRunning: "is running", store.PlaybookRunRetrying: "is retrying",
		}[o.State]
		return &verdict{state: StateSuppressed, msg: fmt.Sprintf("run %s of playbook %s on %s %s", o.ID, o.Playbook, x.run.Actuator, what)}, nil
	}
	x.event(stageInFlight, OutcomePass, "no other run on "+x.run.Actuator+" is open")
	return nil, nil
}

func (x *runCtx) guard() actuatorGuard {
	return actuatorGuard{plan: x.run.Plan, playbook: x.run.Playbook, actuator: x.run.Actuator, settle: x.r.opts.SettleWindow}
}

// cooldownStage holds the cooldown since the last act on the actuator,
// and the longer settling wait when the run would reverse another
// playbook's act (see actuatorGuard.cooldown).
type cooldownStage struct{}

func (cooldownStage) name() string { return stageCooldown }

func (cooldownStage) exec(ctx context.Context, x *runCtx) (*verdict, error) {
	g := x.guard()
	now := x.now()
	acts, err := x.r.store.PlaybookActs(ctx, x.run.Actuator, now.Add(-g.lookback()))
	if err != nil {
		return nil, err
	}
	x.acts = acts
	if msg, until := g.cooldown(acts, now); msg != "" {
		return &verdict{state: StateSuppressed, msg: msg, until: until}, nil
	}
	x.event(stageCooldown, OutcomePass, fmt.Sprintf("no cooldown holds on %s (cooldown %s)", x.run.Actuator, x.run.Plan.Cooldown))
	return nil, nil
}

// runLimitStage holds guards.maxRuns on the actuator.
type runLimitStage struct{}

func (runLimitStage) name() string { return stageRunLimit }

func (runLimitStage) exec(_ context.Context, x *runCtx) (*verdict, error) {
	if msg, until := x.guard().runLimit(x.acts, x.now()); msg != "" {
		return &verdict{state: StateSuppressed, msg: msg, until: until}, nil
	}
	if x.run.Plan.MaxRuns > 0 {
		x.event(stageRunLimit, OutcomePass, fmt.Sprintf("under the run limit of %d per %s on %s", x.run.Plan.MaxRuns, x.run.Plan.MaxRunsPer, x.run.Actuator))
	} else {
		x.event(stageRunLimit, OutcomePass, "no run limit")
	}
	return nil, nil
}

// policyStage asks the policy engine about every action. Any deny, and
// any error (no decision), stops the run. At execution it decides again
// only for an approved run that waited, since the facts may have changed
// while it waited.
type policyStage struct{}

func (policyStage) name() string { return stagePolicy }

func (policyStage) exec(ctx context.Context, x *runCtx) (*verdict, error) {
	if x.run.State != StateNew {
		if x.run.Approval == nil || x.run.Approval.Decision != Approved || !x.run.ActedAt.IsZero() || x.redecided() {
			return nil, nil
		}
	}
	snap := x.r.opts.Engine.Snapshot()
	var denies, warns []string
	for _, a := range x.run.Plan.Actions {
		ref := DecisionRef{Action: a.Name, At: x.now()}
		d, err := x.r.opts.Policy.Evaluate(ctx, x.policyInput(snap, a))
		if d != nil {
			ref.ID, ref.Result, ref.Policies, ref.Reasons = d.ID, d.Result, slices.Clone(d.Policies), slices.Clone(d.Reasons)
		}
		if err != nil {
			// Never act on an error: a decision that could not be made
			// or recorded stops the run.
			ref.Error = err.Error()
			x.run.Decisions = append(x.run.Decisions, ref)
			return &verdict{state: StateDenied, msg: fmt.Sprintf("policy decision for action %s failed: %v", a.Name, err)}, nil
		}
		x.run.Decisions = append(x.run.Decisions, ref)
		for _, rs := range d.Reasons {
			switch rs.Level {
			case policy.LevelDeny:
				denies = append(denies, fmt.Sprintf("%s: %s", a.Name, rs))
			case policy.LevelWarn:
				warns = append(warns, fmt.Sprintf("%s: %s", a.Name, rs))
			}
		}
		if d.Result == policy.Deny && len(denies) == 0 {
			denies = append(denies, a.Name+": denied (decision "+d.ID+")")
		}
	}
	if len(denies) > 0 {
		return &verdict{state: StateDenied, msg: strings.Join(denies, "; ")}, nil
	}
	ids := make([]string, 0, len(x.run.Decisions))
	for _, d := range x.run.Decisions[len(x.run.Decisions)-len(x.run.Plan.Actions):] {
		ids = append(ids, d.Action+"="+string(d.Result)+" ("+d.ID+")")
	}
	msg := "allowed: " + strings.Join(ids, ", ")
	if len(warns) > 0 {
		msg += "; " + strings.Join(warns, "; ")
	}
	x.event(stagePolicy, OutcomePass, msg)
	return nil, nil
}

// redecided reports whether the policies were asked again after the
// approval.
func (x *runCtx) redecided() bool {
	if x.run.Approval == nil || len(x.run.Decisions) == 0 {
		return false
	}
	return !x.run.Decisions[len(x.run.Decisions)-1].At.Before(x.run.Approval.At)
}

// policyInput is the policy input for one action of the run.
func (x *runCtx) policyInput(snap *engine.Snapshot, a ActionPlan) policy.Input {
	t := x.run.Trigger
	in := policy.Input{
		Point: policy.PointPlaybook, Playbook: x.run.Playbook, Policies: slices.Clone(x.run.Plan.Policies),
		Service: policy.Service{Name: x.run.Service},
		Action:  &policy.Action{Name: a.Name, Kind: x.run.Plan.Kind, DryRun: x.run.DryRun},
		Trigger: &policy.Trigger{SLO: t.SLO, Category: t.Category, Event: t.Event, Severity: t.Severity, BurnRate: finite(t.BurnRate)},
		Now:     x.now(),
	}
	if in.Policies == nil {
		in.Policies = []string{}
	}
	snap.FillPolicyInput(&in, x.set)
	return in
}

// approvalStage holds a run of a playbook with guards.approval until an
// operator approves it (Runner.Approve) or the approval times out.
type approvalStage struct{}

func (approvalStage) name() string { return stageApproval }

func (approvalStage) exec(_ context.Context, x *runCtx) (*verdict, error) {
	if !x.run.Plan.Approval {
		x.event(stageApproval, OutcomePass, "no approval required")
		return nil, nil
	}
	if x.run.Approval == nil {
		x.run.Approval = &Approval{Deadline: x.now().Add(x.run.Plan.ApprovalTimeout.D())}
	}
	return &verdict{state: StatePending, msg: "waiting for an approval until " + clock(x.run.Approval.Deadline)}, nil
}

// actStage is the moment of acting: inside the store's lock on the
// actuator, it checks the cooldown, settling and run limit again (another
// run may have acted since admission, or while this one waited for
// approval) and records the act, so that no two runs pass the same
// cooldown, on any number of replicas. A run that acted already (a retry)
// passes.
type actStage struct{}

func (actStage) name() string { return stageAct }

func (actStage) exec(ctx context.Context, x *runCtx) (*verdict, error) {
	if !x.run.ActedAt.IsZero() {
		return nil, nil
	}
	g := x.guard()
	now := x.now()
	x.run.State, x.run.ActedAt = StateRunning, now
	what := "acting"
	if x.run.DryRun {
		what = "acting in dry run"
	}
	x.event(stageAct, OutcomePass, what+" on "+x.run.Actuator)
	x.run.UpdatedAt = now
	data, err := json.Marshal(x.run)
	if err != nil {
		return nil, fmt.Errorf("encode run: %w", err)
	}
	row := x.row
	row.State, row.Data, row.UpdatedAt = string(StateRunning), data, now
	var stop string
	v, err := x.r.store.ActOnActuator(ctx, row, now, now.Add(-g.lookback()), func(acts []store.PlaybookAct) error {
		if stop, _ = g.cooldown(acts, now); stop == "" {
			stop, _ = g.runLimit(acts, now)
		}
		if stop != "" {
			return errGuard
		}
		return nil
	})
	if errors.Is(err, errGuard) {
		x.run.ActedAt = time.Time{}
		x.run.Events = x.run.Events[:len(x.run.Events)-1]
		return &verdict{state: StateSuppressed, msg: stop}, nil
	}
	if err != nil {
		return nil, err
	}
	x.row = row
	x.row.Version = v
	x.row.ActedAt = now
	return nil, nil
}

var errGuard = errors.New("guard holds")

// dryRunStage ends a dry run after it acted: what each action would have
// sent is recorded (by the config stage), nothing is sent.
type dryRunStage struct{}

func (dryRunStage) name() string { return stageDryRun }

func (dryRunStage) exec(_ context.Context, x *runCtx) (*verdict, error) {
	if !x.run.DryRun {
		return nil, nil
	}
	for i := range x.run.Steps {
		x.run.Steps[i].State = StepSkipped
	}
	return &verdict{state: StateDryRun, msg: "guards.dryRun: recorded what each action would have sent; nothing was sent"}, nil
}

// executeSteps is the execute stage: each action in order, one attempt
// per action per claim. A retryable failure with attempts left holds the
// run as retrying until its backoff ends (any runner may take it up then,
// with the same idempotency key); anything else ends it.
func (x *runCtx) executeSteps(ctx context.Context) error {
	// Writes after an attempt must land even when ctx ended during it
	// (shutdown): the attempt happened.
	wctx := context.WithoutCancel(ctx)
	for i := range x.run.Steps {
		step := &x.run.Steps[i]
		if step.State == StepSucceeded || step.State == StepSkipped {
			continue
		}
		if ctx.Err() != nil {
			return x.hold(wctx, step, "interrupted: the runner is stopping", x.now())
		}
		if step.Attempts > 0 || i > 0 {
			// The kill switch also stops retries and later actions.
			ks, err := x.r.KillSwitch(ctx)
			if err != nil {
				return err
			}
			if ks.On {
				return x.stop(wctx, stageKillSwitch, &verdict{state: StateSuppressed, msg: fmt.Sprintf("kill switch turned on before action %s (attempt %d): %s", step.Action, step.Attempts+1, ks.describe())})
			}
		}
		if x.run.Trigger.Incident == 0 {
			x.r.lookupIncident(ctx, x.run)
		}
		ap := x.run.Plan.Actions[i]
		now := x.now()
		step.Attempts++
		if step.StartedAt.IsZero() {
			step.StartedAt = now
		}
		x.run.State = StateRunning
		x.row.LeaseUntil, x.row.Owner = now.Add(ap.Timeout.D()+x.r.opts.Lease), x.r.opts.Owner
		// The attempt is counted before it starts: if the runner dies in
		// it, the next runner's attempt is a retry (same key), and the
		// retry budget holds.
		if err := x.save(ctx); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, ap.Timeout.D())
		started := time.Now()
		o := x.attempt(actx, i)
		elapsed := time.Since(started)
		cancel()
		x.r.metrics.attemptDuration.WithLabelValues(ap.Type).Observe(elapsed.Seconds())
		step.DurationMs += elapsed.Milliseconds()
		step.Status, step.ExitCode, step.Response, step.Output = o.status, o.exitCode, o.response, o.output
		if o.err == nil {
			step.State, step.Error, step.FinishedAt, step.NextAttemptAt = StepSucceeded, "", x.now(), time.Time{}
			x.r.metrics.attempts.WithLabelValues(ap.Type, "success").Inc()
			x.event(stageExecute, OutcomePass, fmt.Sprintf("action %s: %s in %s (attempt %d)", ap.Name, x.describeSuccess(step), elapsed.Round(time.Millisecond), step.Attempts))
			if err := x.save(wctx); err != nil {
				return err
			}
			continue
		}
		step.Error = o.err.Error()
		if errors.Is(o.err, ErrPermanent) || step.Attempts > ap.Retries {
			x.r.metrics.attempts.WithLabelValues(ap.Type, "failure").Inc()
			step.State, step.FinishedAt = StepFailed, x.now()
			for j := i + 1; j < len(x.run.Steps); j++ {
				x.run.Steps[j].State = StepSkipped
			}
			state := StateFailed
			if errors.Is(o.err, ErrNotAllowed) || errors.Is(o.err, errExecDisabled) {
				state = StateRefused
			}
			why := "not retried"
			if !errors.Is(o.err, ErrPermanent) {
				why = fmt.Sprintf("after %d attempts", step.Attempts)
			}
			return x.stop(wctx, stageExecute, &verdict{state: state, msg: fmt.Sprintf("action %s failed %s: %s", ap.Name, why, step.Error)})
		}
		x.r.metrics.attempts.WithLabelValues(ap.Type, "retry").Inc()
		next := x.now().Add(x.r.backoff(step.Attempts))
		if ctx.Err() != nil {
			next = x.now()
		}
		return x.hold(wctx, step, fmt.Sprintf("action %s attempt %d of %d failed: %s", ap.Name, step.Attempts, ap.Retries+1, step.Error), next)
	}
	for i := range x.run.Steps {
		if x.run.Steps[i].State == StepSkipped && !x.run.DryRun {
			return x.stop(wctx, stageRecord, &verdict{state: StateFailed, msg: "an action was skipped"})
		}
	}
	return x.stop(wctx, stageRecord, &verdict{state: StateSucceeded, msg: fmt.Sprintf("%d actions succeeded", len(x.run.Steps))})
}

// hold sets the run retrying at next and gives up the claim.
func (x *runCtx) hold(ctx context.Context, step *Step, msg string, next time.Time) error {
	step.State, step.NextAttemptAt = StepRetrying, next
	x.row.NextAttemptAt = next
	return x.stop(ctx, stageExecute, &verdict{state: StateRetrying, msg: msg + "; next attempt at " + clock(next)})
}

func (x *runCtx) describeSuccess(s *Step) string {
	switch s.Type {
	case TypeWebhook:
		if s.Request != nil {
			return fmt.Sprintf("%s %s answered %d", s.Request.Method, s.Request.URL, s.Status)
		}
		return fmt.Sprintf("answered %d", s.Status)
	case TypeExec:
		return fmt.Sprintf("%s exited 0", strings.Join(s.Command, " "))
	}
	return "notification sent"
}

// backoff is the wait before retry n (n >= 1): RetryBase doubled n-1
// times, at most RetryMax. No jitter: runs are few and spread by their
// triggers.
func (r *Runner) backoff(n int) time.Duration {
	d := r.opts.RetryBase
	for i := 1; i < n && d < r.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, r.opts.RetryMax)
}
