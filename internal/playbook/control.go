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
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// KillSwitch is the global stop of every playbook action. While it is
// on, every run stops at the kill-switch stage (recorded as suppressed),
// and runs already executing stop before their next attempt.
type KillSwitch struct {
	On bool `json:"on"`
	// Forced is set when the server config holds it on
	// (playbooks.killSwitch); the API cannot turn it off then.
	Forced bool      `json:"forced"`
	By     string    `json:"by,omitempty"`
	Note   string    `json:"note,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

func (k KillSwitch) describe() string {
	if k.Forced {
		return "set in the server config"
	}
	s := "set by " + k.By
	if !k.At.IsZero() {
		s += " at " + clock(k.At)
	}
	if k.Note != "" {
		s += ": " + k.Note
	}
	return s
}

const killSwitchSetting = "kill_switch"

// KillSwitch returns the kill switch's state. It is read from the store
// every time, so a switch thrown on one replica stops all of them.
func (r *Runner) KillSwitch(ctx context.Context) (KillSwitch, error) {
	if r.opts.KillSwitch {
		return KillSwitch{On: true, Forced: true}, nil
	}
	s, err := r.store.PlaybookSetting(ctx, killSwitchSetting)
	if errors.Is(err, store.ErrNotFound) {
		return KillSwitch{}, nil
	}
	if err != nil {
		return KillSwitch{}, err
	}
	return KillSwitch{On: s.Value == "on", By: s.UpdatedBy, Note: s.Note, At: s.UpdatedAt}, nil
}

// SetKillSwitch turns the kill switch on or off; by names who did it. It
// returns ErrKillSwitchForced when turning off a switch the server config
// holds on.
func (r *Runner) SetKillSwitch(ctx context.Context, on bool, by, note string) (KillSwitch, error) {
	if strings.TrimSpace(by) == "" {
		return KillSwitch{}, fmt.Errorf("%w: by is required (who throws the switch)", ErrInvalid)
	}
	if r.opts.KillSwitch && !on {
		return KillSwitch{}, ErrKillSwitchForced
	}
	value := "off"
	if on {
		value = "on"
	}
	if err := r.store.SetPlaybookSetting(ctx, store.PlaybookSetting{Name: killSwitchSetting, Value: value, UpdatedBy: by, Note: note, UpdatedAt: r.now()}); err != nil {
		return KillSwitch{}, err
	}
	r.metrics.killSwitch.Set(boolGauge(on || r.opts.KillSwitch))
	r.log.Warn("playbook kill switch set", "on", on, "by", by, "note", note)
	return r.KillSwitch(ctx)
}

// Approve approves a pending run; the runner executes it next (after
// checking the kill switch, the policies and the guards again). It
// returns ErrNotFound, ErrNotPending (with the run's state) or
// ErrInvalid (no approver).
func (r *Runner) Approve(ctx context.Context, id, by, note string) (*Run, error) {
	return r.decideApproval(ctx, id, by, note, Approved)
}

// Reject rejects a pending run, which ends it.
func (r *Runner) Reject(ctx context.Context, id, by, note string) (*Run, error) {
	return r.decideApproval(ctx, id, by, note, Rejected)
}

func (r *Runner) decideApproval(ctx context.Context, id, by, note, decision string) (*Run, error) {
	if strings.TrimSpace(by) == "" {
		return nil, fmt.Errorf("%w: by is required (who approves or rejects)", ErrInvalid)
	}
	// Two tries: a write that lost to another (the runner renewing
	// nothing, an expiry) is read again; a second loss is reported.
	for try := 0; ; try++ {
		row, err := r.store.PlaybookRun(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return nil, err
		}
		var run Run
		if err := json.Unmarshal(row.Data, &run); err != nil {
			return nil, fmt.Errorf("read run %s: %w", id, err)
		}
		now := r.now()
		if row.State != string(StatePending) {
			return nil, fmt.Errorf("%w: run %s is %s", ErrNotPending, id, row.State)
		}
		if !now.Before(row.ExpiresAt) {
			return nil, fmt.Errorf("%w: run %s expired at %s", ErrNotPending, id, clock(row.ExpiresAt))
		}
		x := &runCtx{r: r, row: row, run: &run, set: r.set.Load()}
		if run.Approval == nil {
			run.Approval = &Approval{Deadline: row.ExpiresAt}
		}
		run.Approval.Decision, run.Approval.By, run.Approval.Note, run.Approval.At = decision, by, note, now
		msg := decision + " by " + by
		if note != "" {
			msg += ": " + note
		}
		if decision == Approved {
			x.event(stageApproval, OutcomePass, msg)
			run.State, run.Reason = StateQueued, ""
			x.row.NextAttemptAt = now
			err = x.save(ctx)
		} else {
			err = x.stop(ctx, stageApproval, &verdict{state: StateRejected, msg: msg})
		}
		if errors.Is(err, store.ErrConflict) && try == 0 {
			continue
		}
		if errors.Is(err, store.ErrConflict) {
			return nil, fmt.Errorf("%w: run %s changed while it was being decided", ErrNotPending, id)
		}
		if err != nil {
			return nil, err
		}
		r.log.Info("playbook run "+decision, "run", id, "playbook", run.Playbook, "by", by)
		r.signal()
		return &run, nil
	}
}

// RunFilter selects runs. Empty fields match everything.
type RunFilter struct {
	Playbook, Service string
	State             State
	From, To          time.Time
	// Limit defaults to 100 and is capped at 10000.
	Limit, Offset int
}

// Runs returns the runs matching f, newest first, and the number of
// matches: the audit log.
func (r *Runner) Runs(ctx context.Context, f RunFilter) ([]*Run, int, error) {
	if f.State != "" && !slices.Contains(States, f.State) {
		return nil, 0, fmt.Errorf("%w: state %q is not one of %s", ErrInvalid, f.State, stateList())
	}
	rows, total, err := r.store.PlaybookRuns(ctx, store.PlaybookRunFilter{
		Playbook: f.Playbook, Service: f.Service, State: string(f.State), From: f.From, To: f.To, Limit: f.Limit, Offset: f.Offset,
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]*Run, 0, len(rows))
	for _, row := range rows {
		run, err := runOf(row)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, run)
	}
	return out, total, nil
}

// RunByID returns one run, or ErrNotFound.
func (r *Runner) RunByID(ctx context.Context, id string) (*Run, error) {
	row, err := r.store.PlaybookRun(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return runOf(row)
}

func runOf(row store.PlaybookRun) (*Run, error) {
	var run Run
	if err := json.Unmarshal(row.Data, &run); err != nil {
		return nil, fmt.Errorf("read run %s: %w", row.ID, err)
	}
	// The columns are authoritative for the state (a claim does not
	// rewrite the document).
	run.State = State(row.State)
	return &run, nil
}

func stateList() string {
	s := make([]string, len(States))
	for i, st := range States {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

// Info is a playbook as the API lists it: its spec, its hysteresis
// state, its last run, and what keeps it from running.
type Info struct {
	Name        string      `json:"name"`
	Service     string      `json:"service"`
	Description string      `json:"description,omitempty"`
	Trigger     TriggerSpec `json:"trigger"`
	Plan        Plan        `json:"plan"`
	Actuator    string      `json:"actuator"`
	// Arms are the hysteresis states of a burn-rate trigger, per SLO
	// group.
	Arms    []ArmState `json:"arms,omitempty"`
	LastRun *RunBrief  `json:"lastRun,omitempty"`
	// Problems say why runs of the playbook would be refused.
	Problems []string `json:"problems,omitempty"`
}

// TriggerSpec is a playbook's trigger as the spec writes it.
type TriggerSpec struct {
	SLO      string        `json:"slo,omitempty"`
	On       []string      `json:"on,omitempty"`
	Severity string        `json:"severity,omitempty"`
	BurnRate *BurnRateSpec `json:"burnRate,omitempty"`
	Gate     string        `json:"gate,omitempty"`
	Schedule string        `json:"schedule,omitempty"`
}

// BurnRateSpec is a burn-rate trigger.
type BurnRateSpec struct {
	Window Duration `json:"window"`
	Above  float64  `json:"above"`
	Below  float64  `json:"below"`
	For    Duration `json:"for"`
}

// ArmState is the hysteresis state of a burn-rate trigger for one SLO
// group.
type ArmState struct {
	Key        string    `json:"key"`
	Armed      bool      `json:"armed"`
	AboveSince time.Time `json:"aboveSince,omitzero"`
	ChangedAt  time.Time `json:"changedAt,omitzero"`
}

// RunBrief is a run in one line.
type RunBrief struct {
	ID         string    `json:"id"`
	State      State     `json:"state"`
	Reason     string    `json:"reason,omitempty"`
	CreatedAt  time.Time `json:"createdAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// Playbooks lists the declared playbooks with their state.
func (r *Runner) Playbooks(ctx context.Context) ([]Info, error) {
	set := r.set.Load()
	last, err := r.store.LastPlaybookRuns(ctx)
	if err != nil {
		return nil, err
	}
	snap := r.opts.Engine.Snapshot()
	r.armsMu.Lock()
	arms := map[string][]ArmState{}
	for _, a := range r.arms {
		arms[a.Playbook] = append(arms[a.Playbook], ArmState{Key: a.Key, Armed: a.Armed, AboveSince: a.AboveSince, ChangedAt: a.ChangedAt})
	}
	r.armsMu.Unlock()
	checked := r.checked.Load()
	problems := func(pb *spec.Playbook) []string {
		if checked != nil && checked.set == set {
			return slices.Clone(checked.byPlaybook[pb.Name()])
		}
		return r.problems(pb)
	}
	out := make([]Info, 0, len(set.Playbooks))
	for _, pb := range set.Playbooks {
		plan := planOf(pb)
		tr := pb.Spec.Trigger
		info := Info{
			Name: pb.Name(), Service: pb.Spec.Service, Description: pb.Spec.Description, Plan: plan,
			Actuator: actuatorOf(pb.Spec.Service, plan.Kind, pb.Name()),
			Trigger:  TriggerSpec{SLO: tr.SLO, On: tr.On, Severity: tr.Severity, Gate: tr.Gate, Schedule: tr.Schedule},
			Problems: problems(pb),
		}
		if br := tr.BurnRate; br != nil {
			below := br.Below
			if below == 0 {
				below = br.Above / 2
			}
			info.Trigger.BurnRate = &BurnRateSpec{Window: Duration(br.Window), Above: br.Above, Below: below, For: Duration(br.For)}
			info.Problems = append(info.Problems, windowProblem(pb, snap)...)
		}
		info.Arms = arms[pb.Name()]
		slices.SortFunc(info.Arms, func(a, b ArmState) int { return strings.Compare(a.Key, b.Key) })
		if row, ok := last[pb.Name()]; ok {
			if run, err := runOf(row); err == nil {
				info.LastRun = &RunBrief{ID: run.ID, State: run.State, Reason: run.Reason, CreatedAt: run.CreatedAt, FinishedAt: run.FinishedAt}
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// problems says what in a playbook the server will refuse to run.
func (r *Runner) problems(pb *spec.Playbook) []string {
	var out []string
	if err := CheckTemplates(pb); err != nil {
		out = append(out, strings.Split(err.Error(), "\n")...)
	}
	for _, a := range pb.Spec.Actions {
		switch {
		case a.Exec != nil && !r.opts.Exec:
			out = append(out, fmt.Sprintf("action %s: %v", a.Name, errExecDisabled))
		case a.Webhook != nil && !strings.Contains(a.Webhook.URL, "{{"):
			if _, err := r.allow.Check(a.Webhook.URL); err != nil {
				out = append(out, fmt.Sprintf("action %s: %v", a.Name, err))
			}
		case a.Webhook != nil && r.allow.Empty():
			out = append(out, fmt.Sprintf("action %s: the allowlist is empty, so no webhook may be called (set playbooks.allowlist in the server config)", a.Name))
		}
	}
	return out
}

// windowProblem reports a burn-rate trigger whose window the engine does
// not report for its SLO: such a trigger never fires.
func windowProblem(pb *spec.Playbook, snap *engine.Snapshot) []string {
	br := pb.Spec.Trigger.BurnRate
	if snap == nil || br == nil {
		return nil
	}
	groups := snap.SLO(pb.Spec.Trigger.SLO)
	if len(groups) == 0 {
		return nil
	}
	// Every group of an SLO reports the same windows: the first tells.
	st := groups[0]
	if st.WindowStat(br.Window.D()) != nil {
		return nil
	}
	names := make([]string, 0, len(st.Windows))
	for _, w := range st.Windows {
		names = append(names, w.Name)
	}
	return []string{fmt.Sprintf("trigger.burnRate.window %s: the engine does not report a burn rate over %s for SLO %s (it reports %s), so the trigger never fires",
		br.Window, br.Window, st.SLO, strings.Join(names, ", "))}
}
