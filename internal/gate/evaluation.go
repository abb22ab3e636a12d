package gate

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// State is where an evaluation is: running, or its verdict.
type State string

// States. Every state but running is final.
const (
	StateRunning      State = "running"
	StatePass         State = "pass"
	StateFail         State = "fail"
	StateInconclusive State = "inconclusive"
	StateError        State = "error"
)

// States lists every state, for validation of filters.
var States = []State{StateRunning, StatePass, StateFail, StateInconclusive, StateError}

// Done reports whether the state is a verdict.
func (s State) Done() bool { return s != StateRunning && s != "" }

// ExitCode is the exit code of `qsp gate` for the state: 0 pass, 1 fail,
// 2 for everything else (inconclusive, error, still running).
func (s State) ExitCode() int {
	switch s {
	case StatePass:
		return 0
	case StateFail:
		return 1
	}
	return 2
}

// Levels of a Reason, from most to least severe.
const (
	LevelError        = "error"        // a check could not run
	LevelDeny         = "deny"         // a policy denied
	LevelFail         = "fail"         // the canary (or one metric) failed
	LevelInconclusive = "inconclusive" // the canary could not be judged
	LevelWarn         = "warn"
	LevelInfo         = "info"
)

// Checks a Reason belongs to.
const (
	CheckBudget   = "budget"
	CheckSecurity = "security"
	CheckCanary   = "canary"
	CheckPolicy   = "policy"
	CheckGate     = "gate"
)

// Reason is one statement about an evaluation: a policy's reason, a
// canary metric's judgment, a fact a check gathered, or an error.
type Reason struct {
	// Check is budget, security, canary, policy or gate.
	Check string `json:"check"`
	// Level is error, deny, fail, inconclusive, warn or info.
	Level string `json:"level"`
	// Source is the policy or canary metric the reason comes from.
	Source  string `json:"source,omitempty"`
	Message string `json:"message"`
}

// String formats the reason as the CLI prints it:
// "deny error-budget: feature 1.4.2 may not deploy: ...".
func (r Reason) String() string {
	src := r.Source
	if src == "" {
		src = r.Check
	}
	return r.Level + " " + src + ": " + r.Message
}

// Change is the deploy a gate is asked to let through.
type Change struct {
	// Kind is feature, fix, rollback, mitigation or config; default
	// feature, the kind the policies treat most strictly.
	Kind        string `json:"kind"`
	Version     string `json:"version,omitempty"`
	Description string `json:"description,omitempty"`
	// Category is what the change is for; required for mitigations.
	Category       spec.Category     `json:"category,omitempty"`
	ExpectedImpact *policy.Impact    `json:"expectedImpact,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	// Deploy says the change is being deployed: only then does the
	// evaluation record a deploy marker. A dry gate run from a laptop or
	// a CI test is not a deploy and must not flag the SLO charts.
	Deploy bool `json:"deploy,omitempty"`
}

// Report is one vulnerability report (Trivy or Grype JSON) uploaded with
// a request.
type Report struct {
	// Name names the report in findings and errors, e.g. its path.
	Name    string
	Content []byte
}

// Request asks for one evaluation of a gate.
type Request struct {
	Change Change
	// Reports are uploaded reports; the gate's spec.security.reports that
	// are not among them (by name) are read from disk.
	Reports []Report
	// Samples is canary data in the canary package's JSON samples format;
	// nil queries the Source.
	Samples []byte
	// Runs overrides spec.canary.runs when positive.
	Runs int
}

// Evaluation is one run of a gate, with its verdict, every reason and the
// numbers behind them. Its JSON form is the API's and the CLI's JSON
// report.
type Evaluation struct {
	ID      string `json:"id"`
	Gate    string `json:"gate"`
	Service string `json:"service"`
	// State is running until the verdict: pass, fail, inconclusive or
	// error.
	State  State  `json:"state"`
	Change Change `json:"change"`
	// Summary is one line: the verdict and why.
	Summary    string    `json:"summary"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
	// Deadline is when a running evaluation gives up: its canary's
	// intervals plus the runner's timeout.
	Deadline time.Time `json:"deadline,omitzero"`
	Progress Progress  `json:"progress"`
	// Reasons are every reason, in stage order: budget, security, canary,
	// policy, then errors.
	Reasons  []Reason        `json:"reasons"`
	Budget   *BudgetResult   `json:"budget,omitempty"`
	Security *SecurityResult `json:"security,omitempty"`
	Canary   *CanaryResult   `json:"canary,omitempty"`
	// Decision is the policy decision the verdict rests on; Precheck the
	// one taken on budget and security alone before a timed canary.
	Decision *DecisionRef `json:"decision,omitempty"`
	Precheck *DecisionRef `json:"precheck,omitempty"`
}

// Progress says where a running evaluation is.
type Progress struct {
	// Stage is the stage running (budget, security, canary, policy,
	// record) or done.
	Stage string `json:"stage"`
	// CanaryRuns and CanaryDone count the canary's planned and analysed
	// runs; NextRunAt is when the next run's window ends.
	CanaryRuns int       `json:"canaryRuns,omitempty"`
	CanaryDone int       `json:"canaryDone,omitempty"`
	NextRunAt  time.Time `json:"nextRunAt,omitzero"`
}

// DecisionRef is the policy decision of an evaluation; the decision log
// (GET /api/v1/decisions/{id}) has its input.
type DecisionRef struct {
	ID       string          `json:"id"`
	Result   policy.Result   `json:"result"`
	Policies []string        `json:"policies"`
	Reasons  []policy.Reason `json:"reasons"`
}

// BudgetResult is what the budget check saw.
type BudgetResult struct {
	// MinRemaining (ratio) and MaxBurnRate are the gate's thresholds,
	// which the error-budget policy enforces.
	MinRemaining float64     `json:"minRemaining"`
	MaxBurnRate  float64     `json:"maxBurnRate,omitempty"`
	SLOs         []BudgetSLO `json:"slos"`
	// EvaluatedAt is the engine's last evaluation.
	EvaluatedAt time.Time `json:"evaluatedAt"`
	// LastDeploy is the service's previous deploy with its impact on
	// the budget of each SLO, when known.
	LastDeploy *engine.DeployReport `json:"lastDeploy,omitempty"`
}

// BudgetSLO is one SLO (or one group of a grouped SLO) in the budget
// check.
type BudgetSLO struct {
	// Name is the SLO, with the group's labels for a grouped SLO.
	Name     string        `json:"name"`
	SLO      string        `json:"slo"`
	Category spec.Category `json:"category,omitempty"`
	// State is the policy's view of the SLO: ok, warning, firing, no_data
	// or low_traffic.
	State           string             `json:"state"`
	Objective       float64            `json:"objective,omitempty"`
	BudgetRemaining float64            `json:"budgetRemaining"`
	BudgetConsumed  float64            `json:"budgetConsumed"`
	BurnRates       map[string]float64 `json:"burnRates,omitempty"`
	PolicyStep      *policy.PolicyStep `json:"policyStep,omitempty"`
	// Missing is set for an SLO the check names that the engine has not
	// evaluated.
	Missing bool `json:"missing,omitempty"`
}

// SecurityResult is what the security check saw.
type SecurityResult struct {
	Reports []ReportSummary `json:"reports"`
	// Counts are findings by severity after deduplication, the ignore
	// list and onlyFixable; MaxFindings the gate's thresholds.
	Counts      map[string]int `json:"counts"`
	MaxFindings map[string]int `json:"maxFindings"`
	Total       int            `json:"total"`
	Ignored     int            `json:"ignored"`
	Unfixable   int            `json:"unfixable"`
	MaxAgeDays  float64        `json:"maxAgeDays,omitempty"`
	AgeSeverity string         `json:"ageSeverity,omitempty"`
	// OverAge counts findings of AgeSeverity or worse older than
	// MaxAgeDays.
	OverAge int `json:"overAge"`
	// Findings are the counted findings, most severe then oldest first,
	// at most Options.MaxListedFindings; Unlisted counts the rest.
	Findings []Finding `json:"findings"`
	Unlisted int       `json:"unlisted,omitempty"`
}

// ReportSummary describes one parsed report.
type ReportSummary struct {
	Name     string `json:"name"`
	Format   string `json:"format"`
	Findings int    `json:"findings"`
}

// Finding is one counted vulnerability finding with its age.
type Finding struct {
	ID               string    `json:"id"`
	Aliases          []string  `json:"aliases,omitempty"`
	Severity         string    `json:"severity"`
	SeveritySource   string    `json:"severitySource,omitempty"`
	Package          string    `json:"package,omitempty"`
	InstalledVersion string    `json:"installedVersion,omitempty"`
	FixedVersion     string    `json:"fixedVersion,omitempty"`
	Scanner          string    `json:"scanner,omitempty"`
	Report           string    `json:"report,omitempty"`
	FirstSeen        time.Time `json:"firstSeen"`
	AgeDays          float64   `json:"ageDays"`
}

// CanaryResult is the canary analysis: every run's result with every
// metric's numbers (canary.RunsResult) and the windows the runs judged.
type CanaryResult struct {
	// Source is "promql" or "samples".
	Source  string   `json:"source"`
	Windows []Window `json:"windows,omitempty"`
	canary.RunsResult
	// ExampleTraces are, by failed metric, example traces from the
	// canary side's exemplars over the analysed windows, newest first.
	ExampleTraces map[string][]tracelink.Example `json:"exampleTraces,omitempty"`
}

// Window is the time range of one canary run.
type Window struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// levelRank orders levels for printing, most severe first.
var levelRank = map[string]int{LevelError: 0, LevelDeny: 1, LevelFail: 2, LevelInconclusive: 3, LevelWarn: 4, LevelInfo: 5}

// SortedReasons returns the reasons most severe first (error, deny, fail,
// inconclusive, warn, info), in stage order within a level.
func (e *Evaluation) SortedReasons() []Reason {
	out := slices.Clone(e.Reasons)
	slices.SortStableFunc(out, func(a, b Reason) int { return levelRank[a.Level] - levelRank[b.Level] })
	return out
}

// summarize sets the one-line summary from the state and the reasons.
func (e *Evaluation) summarize() {
	var why []string
	for _, r := range e.SortedReasons() {
		if levelRank[r.Level] > levelRank[LevelInconclusive] {
			break
		}
		why = append(why, r.String())
	}
	head := strings.ToUpper(string(e.State))
	switch {
	case e.State == StateRunning:
		e.Summary = "RUNNING: " + e.Progress.Stage
	case len(why) == 0:
		e.Summary = head
		if e.Decision != nil {
			e.Summary += fmt.Sprintf(": policy decision %s", e.Decision.Result)
		}
	case len(why) == 1:
		e.Summary = head + ": " + why[0]
	default:
		e.Summary = fmt.Sprintf("%s: %s (and %d more)", head, why[0], len(why)-1)
	}
}
