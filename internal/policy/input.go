package policy

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/qsp-dev/qsp/internal/spec"
)

// Decision points: where QSP consults the engine. They are the values of
// spec.PolicySpec.AppliesTo.
const (
	PointGate     = spec.PointGate
	PointPlaybook = spec.PointPlaybook
)

// Kinds of change a gate is asked to let through (Change.Kind).
const (
	ChangeFeature    = "feature"    // new behaviour: risky, frozen with the budget
	ChangeFix        = "fix"        // a bug fix: allowed during a freeze
	ChangeRollback   = "rollback"   // back to a known version: allowed during a freeze
	ChangeMitigation = "mitigation" // reduces a risk of Change.Category: allowed during a freeze
	ChangeConfig     = "config"     // configuration only: frozen with the budget
)

// ChangeKinds lists the kinds of change, for validation and documentation.
var ChangeKinds = []string{ChangeFeature, ChangeFix, ChangeRollback, ChangeMitigation, ChangeConfig}

// SLO states, as the engine reports them (SLO.State).
const (
	StateOK         = "ok"
	StateWarning    = "warning"
	StateFiring     = "firing"
	StateNoData     = "no_data"
	StateLowTraffic = "low_traffic"
)

// SLOStates lists the SLO states.
var SLOStates = []string{StateOK, StateWarning, StateFiring, StateNoData, StateLowTraffic}

// Alert severities (SLO.FiringSeverity, Alert.Severity, Trigger.Severity).
const (
	SeverityPage   = "page"
	SeverityTicket = "ticket"
)

// Alert states (Alert.State).
const (
	AlertFiring   = "firing"
	AlertPending  = "pending"
	AlertResolved = "resolved"
)

// Input is the document a policy sees as `input`. One struct serves both
// decision points: a gate fills Gate, Change and Checks; a playbook fills
// Playbook, Action and Trigger. Field names are the JSON (and Rego) names;
// they are a stable contract with user policies and the API, so fields
// are only ever added.
//
// Shares (objective, budget, consumed, latency change) are ratios, not
// percent: 0.999, not 99.9. Maps and lists are never null in the document
// Rego sees; absent optional objects (change, checks, action, trigger,
// policy_step) are left out or null as documented per field.
type Input struct {
	// Point is the decision point: "gate" or "playbook". Required.
	Point string `json:"point"`
	// Gate is the name of the gate deciding (point gate).
	Gate string `json:"gate,omitempty"`
	// Playbook is the name of the playbook about to act (point playbook).
	Playbook string `json:"playbook,omitempty"`
	// Policies names the Policy objects the gate or playbook lists; they
	// are consulted in addition to every policy that applies to the point.
	Policies []string `json:"policies"`
	// Service is the service deployed to or acted on. Required.
	Service Service `json:"service"`
	// Change is what a gate is asked to let through. Required at gates.
	Change *Change `json:"change,omitempty"`
	// Checks are the results of the gate's checks, for the checks the gate
	// configures; nil members were not configured.
	Checks *Checks `json:"checks,omitempty"`
	// Action is what a playbook is about to do. Required at playbooks.
	Action *Action `json:"action,omitempty"`
	// Trigger is why the playbook runs (point playbook).
	Trigger *Trigger `json:"trigger,omitempty"`
	// SLOs are the service's SLOs as the engine last evaluated them.
	SLOs []SLO `json:"slos"`
	// Alerts are the SLO alerts currently pending or firing, of this
	// service and others (a policy may weigh a dependency's page).
	Alerts []Alert `json:"alerts"`
	// Now is the decision time; Evaluate fills it from its clock when zero.
	Now time.Time `json:"now"`
}

// Service identifies the service of a decision.
type Service struct {
	Name   string            `json:"name"`
	Tier   int               `json:"tier"`
	Labels map[string]string `json:"labels"`
}

// Change describes a deploy a gate is asked to let through.
type Change struct {
	// Kind is one of ChangeKinds.
	Kind    string `json:"kind"`
	Version string `json:"version,omitempty"`
	// Category is what the change is for: the category a mitigation
	// mitigates, or the one an optimisation improves (a performance tuning
	// is "performance"). Required for mitigations; optional otherwise.
	Category spec.Category `json:"category,omitempty"`
	// ExpectedImpact is what the change is expected to cost elsewhere; the
	// trade-off policy weighs it.
	ExpectedImpact *Impact           `json:"expected_impact,omitempty"`
	Labels         map[string]string `json:"labels"`
}

// Impact is the expected side effect of a change or action on the
// categories it is not for. Zero values mean no effect.
type Impact struct {
	// Latency is the relative change of latency: 0.2 is 20% slower.
	Latency float64 `json:"latency,omitempty"`
	// ErrorRate is the relative change of the error rate: 0.1 is 10% more
	// errors.
	ErrorRate float64 `json:"error_rate,omitempty"`
	// DisablesSecurityControls names the security controls (WAF rules,
	// authentication, rate limits) the change turns off.
	DisablesSecurityControls []string `json:"disables_security_controls,omitempty"`
}

// SLO is one SLO of the service as the engine last evaluated it.
type SLO struct {
	Name     string        `json:"name"`
	Category spec.Category `json:"category"`
	// Objective is the target as a ratio, e.g. 0.999.
	Objective float64 `json:"objective"`
	// BudgetRemaining is the share of the error budget left over the SLO
	// window: 1 untouched, 0 spent, negative overspent.
	BudgetRemaining float64 `json:"budget_remaining"`
	// BudgetConsumed is 1 - BudgetRemaining: above 1 when overspent.
	BudgetConsumed float64 `json:"budget_consumed"`
	// BurnRates maps a window ("5m", "1h", "6h", ...) to the burn rate
	// over it; 1 spends the budget exactly over the SLO window.
	BurnRates map[string]float64 `json:"burn_rates"`
	// State is one of SLOStates.
	State string `json:"state"`
	// FiringSeverity is "page" or "ticket" while State is firing, else "".
	FiringSeverity string `json:"firing_severity"`
	// HasBudgetPolicy says whether the SLO declares budget policy steps;
	// without steps an exhausted budget freezes risky deploys.
	HasBudgetPolicy bool `json:"has_budget_policy"`
	// PolicyStep is the furthest budget policy step reached, or nil.
	PolicyStep *PolicyStep `json:"policy_step"`
	// Forecast is when the error budget is projected to run out (the
	// engine's headline forecast); exhausts is false when it is not, or
	// when there is nothing to project from.
	Forecast Forecast `json:"forecast"`
}

// Forecast is an SLO's projected budget exhaustion.
type Forecast struct {
	// Method names how it was projected: "burn over 6h", "trend over 1d".
	Method string `json:"method"`
	// Exhausts says the budget is projected to run out.
	Exhausts bool `json:"exhausts"`
	// HoursToExhaustion is how long until then when Exhausts (0: spent);
	// 0 otherwise.
	HoursToExhaustion float64 `json:"hours_to_exhaustion"`
}

// PolicyStep is a reached step of an SLO's error budget policy
// (spec.BudgetPolicyStep).
type PolicyStep struct {
	// Consumed is the budget share at which the step applies, e.g. 1.
	Consumed float64 `json:"consumed"`
	// Action is one of spec.BudgetPolicyActions: warn, freeze, notify.
	Action  string `json:"action"`
	Message string `json:"message,omitempty"`
}

// Alert is a pending or firing SLO alert.
type Alert struct {
	SLO      string        `json:"slo"`
	Service  string        `json:"service"`
	Category spec.Category `json:"category"`
	// Severity is "page" or "ticket".
	Severity string `json:"severity"`
	// State is "firing", "pending" or "resolved".
	State string `json:"state"`
}

// Checks carries the results of a gate's checks.
type Checks struct {
	Budget   *BudgetCheck   `json:"budget,omitempty"`
	Security *SecurityCheck `json:"security,omitempty"`
	Canary   *CanaryCheck   `json:"canary,omitempty"`
}

// BudgetCheck is the gate's budget check configuration
// (spec.BudgetCheck); the error-budget policy enforces it.
type BudgetCheck struct {
	// SLOs limits the check to these SLOs; empty means every SLO in
	// Input.SLOs.
	SLOs []string `json:"slos"`
	// MinRemaining is the budget share that must remain (ratio).
	MinRemaining float64 `json:"min_remaining"`
	// MaxBurnRate is the highest 1h burn rate allowed; 0 disables it.
	MaxBurnRate float64 `json:"max_burn_rate"`
}

// SecurityCheck is the gate's security check: its thresholds
// (spec.SecurityCheck) and the findings of the scanned reports, after the
// gate applied its ignore list and onlyFixable.
type SecurityCheck struct {
	// Counts maps a severity (spec.Severities) to its number of findings.
	Counts map[string]int `json:"counts"`
	// MaxFindings maps a severity to the most findings allowed; a severity
	// absent is unlimited.
	MaxFindings map[string]int `json:"max_findings"`
	// MaxAgeDays denies findings of AgeSeverity or worse seen for longer;
	// 0 disables the age check.
	MaxAgeDays float64 `json:"max_age_days"`
	// AgeSeverity is the least severity the age check applies to; empty
	// means every finding.
	AgeSeverity string    `json:"age_severity"`
	Findings    []Finding `json:"findings"`
}

// Finding is one vulnerability of a report.
type Finding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Package  string `json:"package,omitempty"`
	// InstalledVersion is the vulnerable version; FixedVersion the first
	// fixed one, empty when no fix exists yet.
	InstalledVersion string `json:"installed_version,omitempty"`
	FixedVersion     string `json:"fixed_version,omitempty"`
	// AgeDays is how long QSP has seen the finding, in days.
	AgeDays float64 `json:"age_days"`
	Title   string  `json:"title,omitempty"`
}

// CanaryCheck is the verdict of the gate's canary analysis.
type CanaryCheck struct {
	// Verdict is "pass", "marginal", "fail" or "inconclusive".
	Verdict       string   `json:"verdict"`
	Score         float64  `json:"score"`
	FailedMetrics []string `json:"failed_metrics"`
}

// Action is what a playbook is about to do.
type Action struct {
	Name string `json:"name"`
	// Kind is the playbook's spec.Guards.Kind: rollback, scale, throttle,
	// feature-flag, mitigation or other.
	Kind   string `json:"kind"`
	DryRun bool   `json:"dry_run"`
	// ExpectedImpact is what the action is expected to cost elsewhere.
	ExpectedImpact *Impact `json:"expected_impact,omitempty"`
}

// Trigger is why a playbook runs.
type Trigger struct {
	// SLO is the SLO whose state or burn rate triggered, if any.
	SLO string `json:"slo,omitempty"`
	// Category is that SLO's category: the one the playbook acts for.
	Category spec.Category `json:"category,omitempty"`
	// Event is firing, resolved, no_data, burn_rate, gate or schedule.
	Event    string  `json:"event"`
	Severity string  `json:"severity,omitempty"`
	BurnRate float64 `json:"burn_rate,omitempty"`
}

// ErrInvalidInput is wrapped by Evaluate when the input is not a valid
// decision request; it is a caller bug, not a policy outcome.
var ErrInvalidInput = errors.New("invalid policy input")

// normalize validates in and returns a copy whose nil maps and slices are
// empty, so that Rego sees [] and {} rather than null and iteration over
// them is well defined.
func normalize(in Input, now time.Time) (Input, error) {
	bad := func(format string, args ...any) (Input, error) {
		return Input{}, fmt.Errorf("%w: %s", ErrInvalidInput, fmt.Sprintf(format, args...))
	}
	if in.Service.Name == "" {
		return bad("service.name is empty")
	}
	switch in.Point {
	case PointGate:
		if in.Gate == "" {
			return bad("gate is empty")
		}
		if in.Change == nil {
			return bad("change is missing at a gate")
		}
		if !slices.Contains(ChangeKinds, in.Change.Kind) {
			return bad("change.kind %q is not one of %v", in.Change.Kind, ChangeKinds)
		}
		if in.Change.Kind == ChangeMitigation && in.Change.Category == "" {
			return bad("change.category is required for a mitigation")
		}
		if err := checkCategory("change.category", in.Change.Category); err != nil {
			return bad("%v", err)
		}
		c := *in.Change
		c.Labels = orEmptyMap(c.Labels)
		c.ExpectedImpact = normImpact(c.ExpectedImpact)
		in.Change = &c
	case PointPlaybook:
		if in.Playbook == "" {
			return bad("playbook is empty")
		}
		if in.Action == nil || in.Action.Name == "" {
			return bad("action.name is missing at a playbook")
		}
		a := *in.Action
		a.ExpectedImpact = normImpact(a.ExpectedImpact)
		in.Action = &a
		if in.Trigger != nil {
			if err := checkCategory("trigger.category", in.Trigger.Category); err != nil {
				return bad("%v", err)
			}
		}
	default:
		return bad("point %q is not gate or playbook", in.Point)
	}
	in.Policies = orEmpty(in.Policies)
	in.Service.Labels = orEmptyMap(in.Service.Labels)
	in.Alerts = orEmpty(in.Alerts)

	slos := make([]SLO, len(in.SLOs))
	for i, s := range in.SLOs {
		if s.Name == "" {
			return bad("slos[%d].name is empty", i)
		}
		if !slices.Contains(SLOStates, s.State) {
			return bad("slos[%d] (%s): state %q is not one of %v", i, s.Name, s.State, SLOStates)
		}
		if err := checkCategory(fmt.Sprintf("slos[%d].category", i), s.Category); err != nil {
			return bad("%v", err)
		}
		if s.PolicyStep != nil && !slices.Contains(spec.BudgetPolicyActions, s.PolicyStep.Action) {
			return bad("slos[%d] (%s): policy_step.action %q is not one of %v", i, s.Name, s.PolicyStep.Action, spec.BudgetPolicyActions)
		}
		s.BurnRates = orEmptyMap(s.BurnRates)
		slos[i] = s
	}
	in.SLOs = slos

	if in.Checks != nil {
		c := *in.Checks
		if c.Budget != nil {
			b := *c.Budget
			b.SLOs = orEmpty(b.SLOs)
			c.Budget = &b
		}
		if c.Security != nil {
			s := *c.Security
			s.Counts = orEmptyMap(s.Counts)
			s.MaxFindings = orEmptyMap(s.MaxFindings)
			s.Findings = orEmpty(s.Findings)
			if s.AgeSeverity != "" && !slices.Contains(spec.Severities, s.AgeSeverity) {
				return bad("checks.security.age_severity %q is not one of %v", s.AgeSeverity, spec.Severities)
			}
			for _, m := range []struct {
				name string
				keys map[string]int
			}{{"counts", s.Counts}, {"max_findings", s.MaxFindings}} {
				for sev := range m.keys {
					if !slices.Contains(spec.Severities, sev) {
						return bad("checks.security.%s severity %q is not one of %v", m.name, sev, spec.Severities)
					}
				}
			}
			for i, f := range s.Findings {
				if !slices.Contains(spec.Severities, f.Severity) {
					return bad("checks.security.findings[%d] (%s): severity %q is not one of %v", i, f.ID, f.Severity, spec.Severities)
				}
			}
			c.Security = &s
		}
		if c.Canary != nil {
			k := *c.Canary
			k.FailedMetrics = orEmpty(k.FailedMetrics)
			c.Canary = &k
		}
		in.Checks = &c
	}
	if in.Now.IsZero() {
		in.Now = now
	}
	return in, nil
}

func checkCategory(field string, c spec.Category) error {
	if c == "" || slices.Contains(spec.Categories, c) {
		return nil
	}
	return fmt.Errorf("%s %q is not one of %v", field, c, spec.Categories)
}

func normImpact(i *Impact) *Impact {
	if i == nil {
		return nil
	}
	c := *i
	c.DisablesSecurityControls = orEmpty(c.DisablesSecurityControls)
	return &c
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func orEmptyMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return m
}
