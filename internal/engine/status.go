package engine

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// State is the overall state of an SLO (or of one group of a grouped SLO).
type State string

// SLO states, from worst to best. no_data is its own state: missing
// telemetry is never reported as healthy.
const (
	StateNoData     State = "no_data"
	StateFiring     State = "firing"
	StatePending    State = "pending"
	StateLowTraffic State = "low_traffic"
	StateOK         State = "ok"
	StateUnknown    State = "unknown" // not evaluated yet (backfill running)
)

// Severity of the telemetry-missing alert, next to page and ticket.
const SeverityNoData = "no_data"

// Alert names QSP raises besides an SLO's own burn-rate alert name.
const (
	AlertTelemetryMissing = "QSPTelemetryMissing"
	AlertSourceDown       = "QSPSourceDown"
)

// Status is everything known about an SLO (or one group) after a cycle.
type Status struct {
	// Key identifies the SLO and group: "checkout-availability" or
	// "search-tenant-availability{tenant=\"acme\"}".
	Key      string            `json:"key"`
	SLO      string            `json:"slo"`
	Service  string            `json:"service"`
	Category spec.Category     `json:"category"`
	Group    map[string]string `json:"group,omitempty"`

	Objective float64 `json:"objective"` // ratio, e.g. 0.999
	Window    string  `json:"window"`    // "30d", "calendar month (Europe/Berlin)"
	Budgeting string  `json:"budgeting"`

	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	// Approximate is true when counts come from PromQL evaluated at minute
	// steps rather than from raw counter samples.
	Approximate bool `json:"approximate,omitempty"`

	EvaluatedAt time.Time `json:"evaluatedAt"`
	// DataUntil is the end of the last minute with telemetry.
	DataUntil time.Time `json:"dataUntil,omitzero"`

	// SLI is the good ratio over the SLO window; nil without events.
	SLI    *float64   `json:"sli"`
	Budget slo.Budget `json:"budget"`
	// BudgetTime is the budget as time of full outage, allowed and left.
	BudgetTime   Durations     `json:"budgetTime"`
	PeriodStart  time.Time     `json:"periodStart"` // start of the SLO window used
	PolicyStep   *PolicyStep   `json:"policyStep,omitempty"`
	Windows      []WindowStat  `json:"windows"`
	Alerts       []AlertStatus `json:"alerts"`
	DroppedGroup int           `json:"droppedGroups,omitempty"`
	// LateSamplesDropped counts the SLO's samples that arrived after
	// their minute was folded and beyond the late window: counted in no
	// minute (qsp_samples_late_dropped_total), never in a later one.
	LateSamplesDropped int64 `json:"lateSamplesDropped"`
	// Forecasts project when the budget runs out, by burn over each alert
	// window and by the trend of the last day and week; none without
	// events.
	Forecasts []Forecast `json:"forecasts,omitempty"`
	// Exhaustion is the headline forecast: the sooner of the burn over
	// the page tier's longest window and the day's trend.
	Exhaustion *Forecast `json:"exhaustion,omitempty"`
}

// Durations is a pair of durations written as Prometheus durations.
type Durations struct {
	Allowed   time.Duration `json:"allowed"`
	Remaining time.Duration `json:"remaining"`
}

// PolicyStep is the budget policy step the SLO has reached.
type PolicyStep struct {
	Consumed float64 `json:"consumed"` // ratio
	Action   string  `json:"action"`
	Message  string  `json:"message,omitempty"`
}

// WindowStat is one window of an SLO.
type WindowStat struct {
	Window time.Duration `json:"-"`
	Name   string        `json:"window"`
	// From and To are the window's edges as used: it holds the events of
	// the samples in (From, To]. To is the end of the folded minutes and
	// of the settling ones read provisionally; From is To minus the
	// window, or, when the minutes a window longer than 6h starts in
	// could not be read back, the rollup boundary after it (see rollup).
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Good     float64   `json:"good"`
	Total    float64   `json:"total"`
	SLI      *float64  `json:"sli"`
	BurnRate *float64  `json:"burnRate"`
	// Coverage is the share of the window's minutes that had telemetry.
	Coverage   float64 `json:"coverage"`
	LowTraffic bool    `json:"lowTraffic,omitempty"`
	NoData     bool    `json:"noData,omitempty"`
}

// AlertStatus is the state of one alert of the SLO.
type AlertStatus struct {
	Severity   string                `json:"severity"` // page, ticket, no_data
	Name       string                `json:"name"`
	State      slo.AlertState        `json:"state"`
	Since      time.Time             `json:"since,omitzero"`
	FiredAt    time.Time             `json:"firedAt,omitzero"`
	ResolvedAt time.Time             `json:"resolvedAt,omitzero"`
	Condition  string                `json:"condition,omitempty"` // the window pair that holds, "1h/5m"
	Conditions []slo.ConditionResult `json:"conditions,omitempty"`
	// Exhaustion is the tier's timeToExhaustion condition, when it has one.
	Exhaustion *ExhaustionResult `json:"timeToExhaustion,omitempty"`
}

// Alert returns the alert of a severity, or nil.
func (s *Status) Alert(severity string) *AlertStatus {
	for i := range s.Alerts {
		if s.Alerts[i].Severity == severity {
			return &s.Alerts[i]
		}
	}
	return nil
}

// WindowStat returns the stat of window d, or nil. It also works on a
// status decoded from JSON, where windows are known by name.
func (s *Status) WindowStat(d time.Duration) *WindowStat {
	name := spec.Duration(d).String()
	for i := range s.Windows {
		if s.Windows[i].Window == d || s.Windows[i].Name == name {
			return &s.Windows[i]
		}
	}
	return nil
}

// Transition is an alert changing state: what notifiers, incidents and
// playbooks act on.
type Transition struct {
	Key       string         `json:"key"`
	SLO       string         `json:"slo"`
	Service   string         `json:"service"`
	Severity  string         `json:"severity"`
	Alert     string         `json:"alert"`
	From      slo.AlertState `json:"from"`
	To        slo.AlertState `json:"to"`
	At        time.Time      `json:"at"`
	Condition string         `json:"condition,omitempty"`
	// Status is the SLO's status when the transition happened; nil for the
	// source-down alert.
	Status *Status `json:"status,omitempty"`
}

// MarshalJSON writes durations the way specs do.
func (d Durations) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Allowed   string `json:"allowed"`
		Remaining string `json:"remaining"`
	}{spec.Duration(d.Allowed).String(), durationString(d.Remaining)})
}

func durationString(d time.Duration) string {
	if d < 0 {
		return "-" + spec.Duration(-d).String()
	}
	return spec.Duration(d).String()
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Durations) UnmarshalJSON(b []byte) error {
	var w struct {
		Allowed   string `json:"allowed"`
		Remaining string `json:"remaining"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	parse := func(s string) (time.Duration, error) {
		neg := strings.HasPrefix(s, "-")
		var sd spec.Duration
		if err := sd.UnmarshalText([]byte(strings.TrimPrefix(s, "-"))); err != nil {
			return 0, err
		}
		if neg {
			return -sd.D(), nil
		}
		return sd.D(), nil
	}
	var err error
	if d.Allowed, err = parse(w.Allowed); err != nil {
		return err
	}
	d.Remaining, err = parse(w.Remaining)
	return err
}
