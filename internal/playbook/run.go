package playbook

import (
	"time"

	"github.com/prometheus/common/model"

	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// State is where a run is. Runs in the first five states have not ended.
type State string

// States of a run.
const (
	// StateNew: the trigger was recorded, the guards are being checked.
	StateNew State = store.PlaybookRunNew
	// StatePending: waiting for an approval until the approval deadline.
	StatePending State = store.PlaybookRunPending
	// StateQueued: admitted; the runner executes it next.
	StateQueued State = store.PlaybookRunQueued
	// StateRunning: executing its actions.
	StateRunning State = store.PlaybookRunRunning
	// StateRetrying: an action failed and is tried again later.
	StateRetrying State = store.PlaybookRunRetrying

	// StateSucceeded: every action succeeded.
	StateSucceeded State = "succeeded"
	// StateFailed: an action failed for good (all retries, or an error
	// that retrying does not fix).
	StateFailed State = "failed"
	// StateDryRun: the run passed every guard and recorded what it would
	// have done, without doing it.
	StateDryRun State = "dry_run"
	// StateSuppressed: a guard stopped it: kill switch, another run in
	// flight, cooldown, run limit, settling.
	StateSuppressed State = "suppressed"
	// StateDenied: a policy denied it, or the policy decision failed.
	StateDenied State = "denied"
	// StateRefused: the server configuration does not allow it (exec off,
	// a URL not on the allowlist, a template playbooks may not run).
	StateRefused State = "refused"
	// StateRejected: an operator rejected it.
	StateRejected State = "rejected"
	// StateExpired: nobody approved it before the deadline.
	StateExpired State = "expired"
)

// States lists every state, for filters.
var States = []State{StateNew, StatePending, StateQueued, StateRunning, StateRetrying, StateSucceeded, StateFailed,
	StateDryRun, StateSuppressed, StateDenied, StateRefused, StateRejected, StateExpired}

// Done reports whether the run has ended.
func (s State) Done() bool {
	switch s {
	case StateNew, StatePending, StateQueued, StateRunning, StateRetrying:
		return false
	}
	return true
}

// Trigger events (Trigger.Event, policy input trigger.event).
const (
	EventFiring   = spec.OnFiring
	EventResolved = spec.OnResolved
	EventNoData   = spec.OnNoData
	EventBurnRate = "burn_rate"
	EventGate     = "gate"
	EventSchedule = "schedule"
)

// Run is one run of a playbook: why it ran, what it was about to do,
// what the guards, the policies and the approver said, what each action
// did. Its JSON form is the audit log entry the API serves.
type Run struct {
	ID       string `json:"id"`
	Playbook string `json:"playbook"`
	Service  string `json:"service"`
	// Kind is the playbook's guards.kind.
	Kind string `json:"kind"`
	// Actuator is what the run acts on: cooldowns, run limits and
	// settling count the runs of an actuator (see the package doc).
	Actuator string `json:"actuator"`
	State    State  `json:"state"`
	// Reason says in one line why the run stopped, or what it waits for.
	Reason string `json:"reason,omitempty"`
	DryRun bool   `json:"dryRun"`
	// IdempotencyKey identifies the trigger episode: one run per key.
	IdempotencyKey string  `json:"idempotencyKey"`
	Trigger        Trigger `json:"trigger"`
	// Plan is the playbook as it was when the run was triggered: the run
	// executes what was approved even if the spec changes meanwhile.
	Plan Plan `json:"plan"`
	// Decisions are the policy decisions, one per action, the latest
	// first-to-last (an approved run is decided again before it acts).
	Decisions []DecisionRef `json:"decisions,omitempty"`
	Approval  *Approval     `json:"approval,omitempty"`
	Steps     []Step        `json:"steps"`
	// Events are the run's way through the pipeline: every stage that
	// passed, waited or stopped it.
	Events     []Event   `json:"events"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	ActedAt    time.Time `json:"actedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// DurationMs is from the trigger to the end (or to now while open).
	DurationMs int64 `json:"durationMs"`
}

// Trigger is why a run started.
type Trigger struct {
	Event    string            `json:"event"`
	SLO      string            `json:"slo,omitempty"`
	Key      string            `json:"key,omitempty"`
	Group    map[string]string `json:"group,omitempty"`
	Category spec.Category     `json:"category,omitempty"`
	Severity string            `json:"severity,omitempty"`
	Alert    string            `json:"alert,omitempty"`
	// Condition is the alert's window pair that held ("1h/5m").
	Condition string  `json:"condition,omitempty"`
	BurnRate  float64 `json:"burnRate,omitempty"`
	Window    string  `json:"window,omitempty"`
	// Above and Below are a burn-rate trigger's levels.
	Above float64 `json:"above,omitempty"`
	Below float64 `json:"below,omitempty"`
	// Budget is the SLO's remaining budget share when it triggered.
	Budget     float64 `json:"budget,omitempty"`
	Incident   int64   `json:"incident,omitempty"`
	Gate       string  `json:"gate,omitempty"`
	Evaluation string  `json:"evaluation,omitempty"`
	Schedule   string  `json:"schedule,omitempty"`
	// At is the time of the episode: when the alert fired or resolved,
	// when the burn rate rose above the trigger level, when the gate
	// evaluation was created, the scheduled time.
	At time.Time `json:"at"`
	// Reason says it in one line.
	Reason string `json:"reason"`
}

// Plan is a playbook as a run executes it.
type Plan struct {
	Kind            string       `json:"kind"`
	Cooldown        Duration     `json:"cooldown,omitempty"`
	MaxRuns         int          `json:"maxRuns,omitempty"`
	MaxRunsPer      Duration     `json:"maxRunsPer,omitempty"`
	DryRun          bool         `json:"dryRun,omitempty"`
	Approval        bool         `json:"approval,omitempty"`
	ApprovalTimeout Duration     `json:"approvalTimeout,omitempty"`
	Policies        []string     `json:"policies,omitempty"`
	Actions         []ActionPlan `json:"actions"`
}

// Action types (ActionPlan.Type, Step.Type).
const (
	TypeWebhook = "webhook"
	TypeNotify  = "notify"
	TypeExec    = "exec"
)

// ActionPlan is one action of a Plan: its templates as the spec has them.
type ActionPlan struct {
	Name    string            `json:"name"`
	Type    string            `json:"type"`
	Method  string            `json:"method,omitempty"`
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
	Message string            `json:"message,omitempty"`
	Command []string          `json:"command,omitempty"`
	Timeout Duration          `json:"timeout,omitempty"`
	Retries int               `json:"retries"`
}

// DecisionRef is a policy decision about one action of the run; the
// decision log (GET /api/v1/decisions/{id}) has its input.
type DecisionRef struct {
	Action   string          `json:"action"`
	ID       string          `json:"id,omitempty"`
	Result   policy.Result   `json:"result,omitempty"`
	Policies []string        `json:"policies,omitempty"`
	Reasons  []policy.Reason `json:"reasons,omitempty"`
	// Error is why no decision was made; the action did not run.
	Error string    `json:"error,omitempty"`
	At    time.Time `json:"at"`
}

// Approval is the approval a run needs (guards.approval) and what became
// of it.
type Approval struct {
	Deadline time.Time `json:"deadline"`
	// Decision is approved, rejected or expired; empty while pending.
	Decision string    `json:"decision,omitempty"`
	By       string    `json:"by,omitempty"`
	Note     string    `json:"note,omitempty"`
	At       time.Time `json:"at,omitzero"`
}

// Approval decisions.
const (
	Approved = "approved"
	Rejected = "rejected"
	Expired  = "expired"
)

// StepState is where one action of a run is.
type StepState string

// Step states.
const (
	StepPlanned   StepState = "planned"
	StepRetrying  StepState = "retrying"
	StepSucceeded StepState = "succeeded"
	StepFailed    StepState = "failed"
	// StepSkipped: not executed (dry run, or an earlier action failed).
	StepSkipped StepState = "skipped"
)

// Step is one action of a run: what it sends (secrets replaced by
// placeholders) and what came back (scrubbed of secrets).
type Step struct {
	Action string    `json:"action"`
	Type   string    `json:"type"`
	State  StepState `json:"state"`
	// IdempotencyKey is sent with every attempt (the Idempotency-Key
	// header, QSP_IDEMPOTENCY_KEY for exec, the notification's key).
	IdempotencyKey string   `json:"idempotencyKey"`
	Request        *Request `json:"request,omitempty"`
	Message        string   `json:"message,omitempty"`
	Command        []string `json:"command,omitempty"`
	Attempts       int      `json:"attempts"`
	// Status is the last HTTP status; ExitCode the last exit code.
	Status        int       `json:"status,omitempty"`
	ExitCode      *int      `json:"exitCode,omitempty"`
	Response      string    `json:"response,omitempty"`
	Output        string    `json:"output,omitempty"`
	Error         string    `json:"error,omitempty"`
	NextAttemptAt time.Time `json:"nextAttemptAt,omitzero"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	FinishedAt    time.Time `json:"finishedAt,omitzero"`
	// DurationMs is the time spent in attempts, summed.
	DurationMs int64 `json:"durationMs"`
}

// Request is a rendered webhook request.
type Request struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

// Event outcomes.
const (
	OutcomePass = "pass"
	OutcomeStop = "stop"
	OutcomeWait = "wait"
	OutcomeInfo = "info"
)

// Event is one stage's verdict on a run.
type Event struct {
	At      time.Time `json:"at"`
	Stage   string    `json:"stage"`
	Outcome string    `json:"outcome"`
	Message string    `json:"message"`
}

// Duration is a duration written as in specs ("30m", "1h") in JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalText writes d as in specs.
func (d Duration) MarshalText() ([]byte, error) { return []byte(model.Duration(d).String()), nil }

// UnmarshalText reads what MarshalText writes.
func (d *Duration) UnmarshalText(b []byte) error {
	md, err := model.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(md)
	return nil
}

// planOf is the Plan of a playbook spec (validated: defaults applied).
func planOf(pb *spec.Playbook) Plan {
	g := pb.Spec.Guards
	p := Plan{
		Kind: g.Kind, Cooldown: Duration(g.Cooldown), DryRun: g.DryRun, Approval: g.Approval,
		ApprovalTimeout: Duration(g.ApprovalTimeout), Policies: append([]string(nil), g.Policies...),
	}
	if p.Kind == "" {
		p.Kind = "other"
	}
	if p.ApprovalTimeout <= 0 {
		p.ApprovalTimeout = Duration(time.Hour)
	}
	if g.MaxRuns != nil {
		p.MaxRuns, p.MaxRunsPer = g.MaxRuns.Count, Duration(g.MaxRuns.Per)
	}
	for _, a := range pb.Spec.Actions {
		ap := ActionPlan{Name: a.Name, Retries: DefaultRetries}
		if a.Retries != nil {
			ap.Retries = *a.Retries
		}
		switch {
		case a.Webhook != nil:
			w := a.Webhook
			ap.Type, ap.Method, ap.URL, ap.Body, ap.Timeout = TypeWebhook, w.Method, w.URL, w.Body, Duration(w.Timeout)
			if ap.Method == "" {
				ap.Method = "POST"
			}
			if len(w.Headers) > 0 {
				ap.Headers = make(map[string]string, len(w.Headers))
				for k, v := range w.Headers {
					ap.Headers[k] = v
				}
			}
		case a.Notify != nil:
			ap.Type, ap.Message = TypeNotify, a.Notify.Message
		case a.Exec != nil:
			ap.Type, ap.Command, ap.Timeout = TypeExec, append([]string(nil), a.Exec.Command...), Duration(a.Exec.Timeout)
		}
		if ap.Timeout <= 0 {
			ap.Timeout = Duration(DefaultActionTimeout)
		}
		p.Actions = append(p.Actions, ap)
	}
	return p
}

// Defaults of actions.
const (
	// DefaultRetries is how often a failed action is retried when the
	// spec does not say.
	DefaultRetries = 3
	// DefaultActionTimeout bounds one attempt of an action when the spec
	// does not say (webhooks default to 10s in the spec).
	DefaultActionTimeout = 30 * time.Second
)

// actuatorOf names what a playbook acts on. Actions of one kind on one
// service act on the same thing (scale-up and scale-down both set the
// replica count), so they share cooldowns, run limits and settling; kind
// "other" says nothing about what is acted on, so each such playbook is
// its own actuator.
func actuatorOf(service, kind, playbook string) string {
	if kind == "" || kind == "other" {
		return service + "/other/" + playbook
	}
	return service + "/" + kind
}
