package spec

// Playbook is guarded automation: when its trigger holds, QSP runs its
// actions, subject to guards and policies.
type Playbook struct {
	Header `yaml:",inline"`
	Spec   PlaybookSpec `yaml:"spec"`
}

// PlaybookSpec is the body of a Playbook.
type PlaybookSpec struct {
	Service     string   `yaml:"service"`
	Description string   `yaml:"description,omitempty"`
	Trigger     Trigger  `yaml:"trigger"`
	Actions     []Action `yaml:"actions"`
	Guards      Guards   `yaml:"guards,omitempty"`
}

// Trigger is what starts a playbook. Exactly one of SLO (with On or
// BurnRate), Gate and Schedule is set.
type Trigger struct {
	// SLO names the SLO whose state is watched.
	SLO string `yaml:"slo,omitempty"`
	// On lists the SLO states that trigger: firing, resolved, no_data.
	On []string `yaml:"on,omitempty"`
	// Severity limits firing triggers to page or ticket.
	Severity string `yaml:"severity,omitempty"`
	// BurnRate triggers on the burn rate of the SLO.
	BurnRate *BurnRateTrigger `yaml:"burnRate,omitempty"`
	// Gate triggers when the named gate fails.
	Gate string `yaml:"gate,omitempty"`
	// Schedule triggers periodically: "@every 1h", or a 5-field cron line.
	Schedule string `yaml:"schedule,omitempty"`
}

// Trigger events on SLO state.
const (
	OnFiring   = "firing"
	OnResolved = "resolved"
	OnNoData   = "no_data"
)

// BurnRateTrigger fires when the burn rate over Window stays at or above
// Above for For, and re-arms only after it falls to or below Below
// (hysteresis).
type BurnRateTrigger struct {
	Window Duration `yaml:"window"`
	Above  float64  `yaml:"above"`
	// Below is the clear level; default Above/2.
	Below float64  `yaml:"below,omitempty"`
	For   Duration `yaml:"for,omitempty"`
}

// Action is one step of a playbook. Exactly one of Webhook, Notify and Exec
// is set.
type Action struct {
	Name    string         `yaml:"name"`
	Webhook *WebhookAction `yaml:"webhook,omitempty"`
	Notify  *NotifyAction  `yaml:"notify,omitempty"`
	Exec    *ExecAction    `yaml:"exec,omitempty"`
	// Retries is how often a failed action is retried. Default 3.
	Retries *int `yaml:"retries,omitempty"`
}

// WebhookAction calls an HTTP API (Argo Rollouts, Flux, a CI system, a
// feature-flag service). URL, headers and body are Go templates; secrets
// are referenced as {{ secret "NAME" }} and resolved from the environment
// (QSP_SECRET_NAME) or a file, never written in the spec.
type WebhookAction struct {
	Method  string            `yaml:"method,omitempty"` // default POST
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers,omitempty"`
	Body    string            `yaml:"body,omitempty"`
	Timeout Duration          `yaml:"timeout,omitempty"` // default 10s
}

// NotifyAction sends a notification through the configured notifiers.
type NotifyAction struct {
	Message string `yaml:"message"`
}

// ExecAction runs a command; the server refuses it unless exec is enabled
// in its configuration.
type ExecAction struct {
	Command []string `yaml:"command"`
	Timeout Duration `yaml:"timeout,omitempty"`
}

// Guards keep automation from flapping or acting without leave.
type Guards struct {
	// Cooldown is the least time between two runs of the playbook.
	Cooldown Duration `yaml:"cooldown,omitempty"`
	// MaxRuns caps runs per window for the service.
	MaxRuns *RunLimit `yaml:"maxRuns,omitempty"`
	// DryRun records what would have run without running it.
	DryRun bool `yaml:"dryRun,omitempty"`
	// Approval holds each run pending until an operator approves it.
	Approval bool `yaml:"approval,omitempty"`
	// ApprovalTimeout expires a pending run. Default 1h.
	ApprovalTimeout Duration `yaml:"approvalTimeout,omitempty"`
	// Policies names the Policy objects consulted before acting.
	Policies []string `yaml:"policies,omitempty"`
	// Kind classifies the action for policies: rollback, scale, throttle,
	// feature-flag, mitigation, other.
	Kind string `yaml:"kind,omitempty"`
}

// RunLimit is at most Count runs per Per.
type RunLimit struct {
	Count int      `yaml:"count"`
	Per   Duration `yaml:"per"`
}
