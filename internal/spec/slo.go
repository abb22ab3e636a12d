package spec

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// SLO is a service level objective: an indicator, a target and a window.
type SLO struct {
	Header `yaml:",inline"`
	Spec   SLOSpec `yaml:"spec"`
}

// Category says which of Quality, Security and Performance an SLO guards.
type Category string

// The categories.
const (
	Quality     Category = "quality"
	Security    Category = "security"
	Performance Category = "performance"
)

// Categories lists the categories in display order.
var Categories = []Category{Quality, Security, Performance}

// SLOSpec is the body of an SLO.
type SLOSpec struct {
	// Service names the Service the SLO belongs to. Required.
	Service     string   `yaml:"service"`
	Category    Category `yaml:"category"`
	Description string   `yaml:"description,omitempty"`
	// Objective is the target in percent, e.g. 99.9.
	Objective Objective `yaml:"objective"`
	// Window is the compliance period: rolling (30d) or calendar.
	Window    Window    `yaml:"window"`
	Budgeting Budgeting `yaml:"budgeting,omitempty"`
	Indicator Indicator `yaml:"indicator"`
	// GroupBy fans the SLO out into one SLO per combination of these label
	// values (per handler, per tenant).
	GroupBy []string `yaml:"groupBy,omitempty"`
	// MaxGroups caps the fan-out; groups beyond it are dropped and
	// reported. Default 100.
	MaxGroups    int                `yaml:"maxGroups,omitempty"`
	Alerting     Alerting           `yaml:"alerting,omitempty"`
	BudgetPolicy []BudgetPolicyStep `yaml:"budgetPolicy,omitempty"`
	Corrections  []Correction       `yaml:"corrections,omitempty"`
}

// DefaultMaxGroups is the fan-out cap of a grouped SLO.
const DefaultMaxGroups = 100

// Window is the compliance period of an SLO. Exactly one of Rolling and
// Calendar is set. Written as "30d" (rolling) or as
// {calendar: month, timeZone: Europe/Berlin}.
type Window struct {
	Rolling  Duration `yaml:"rolling,omitempty"`
	Calendar string   `yaml:"calendar,omitempty"` // "week" or "month"
	TimeZone string   `yaml:"timeZone,omitempty"` // IANA name, default UTC
}

// Calendar periods.
const (
	CalendarWeek  = "week"
	CalendarMonth = "month"
)

func (w *Window) fromScalar(n *yaml.Node) error { return w.Rolling.UnmarshalYAML(n) }

// MarshalYAML writes a rolling window in its short form.
func (w Window) MarshalYAML() (any, error) {
	if w.Calendar == "" {
		return w.Rolling.String(), nil
	}
	type plain Window
	return plain(w), nil
}

// Location returns the window's time zone; UTC when unset or unknown.
func (w Window) Location() *time.Location {
	if w.TimeZone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Length returns the rolling length, or the longest period of a calendar
// window (7d for a week, 31d for a month).
func (w Window) Length() time.Duration {
	switch w.Calendar {
	case CalendarWeek:
		return 7 * 24 * time.Hour
	case CalendarMonth:
		return 31 * 24 * time.Hour
	}
	return w.Rolling.D()
}

// String formats the window for people: "30d", "calendar month (Europe/Berlin)".
func (w Window) String() string {
	if w.Calendar == "" {
		return w.Rolling.String()
	}
	tz := w.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	return fmt.Sprintf("calendar %s (%s)", w.Calendar, tz)
}

// Budgeting methods.
const (
	// Occurrences counts events: good events over all events.
	Occurrences = "occurrences"
	// Timeslices counts time slices that met the per-slice condition.
	Timeslices = "timeslices"
	// RatioTimeslices averages the good ratio of every time slice, as
	// OpenSLO's RatioTimeslices does.
	RatioTimeslices = "ratioTimeslices"
)

// Budgeting says what the error budget counts: events (occurrences) or
// time slices that met a per-slice condition. Written as "occurrences" or
// as {method: timeslices, sliceLength: 1m, sliceObjective: 99}.
type Budgeting struct {
	Method string `yaml:"method"`
	// SliceLength is the length of one time slice. Default 1m.
	SliceLength Duration `yaml:"sliceLength,omitempty"`
	// SliceObjective is, for ratio indicators, the ratio a slice must meet
	// to be good. Default: the SLO's objective.
	SliceObjective Objective `yaml:"sliceObjective,omitempty"`
}

func (b *Budgeting) fromScalar(n *yaml.Node) error {
	if n.ShortTag() != "!!str" {
		return fmt.Errorf("expected occurrences or timeslices, got %s", describe(n))
	}
	b.Method = n.Value
	return nil
}

// MarshalYAML writes occurrences in its short form.
func (b Budgeting) MarshalYAML() (any, error) {
	if b.Method == Occurrences && b.SliceLength == 0 && b.SliceObjective.IsZero() {
		return Occurrences, nil
	}
	type plain Budgeting
	return plain(b), nil
}

// IsTimeslices reports whether the budget is made of time slices.
func (b Budgeting) IsTimeslices() bool {
	return b.Method == Timeslices || b.Method == RatioTimeslices
}

// Indicator is the SLI. Exactly one of its fields is set.
type Indicator struct {
	Ratio        *RatioIndicator        `yaml:"ratio,omitempty"`
	Latency      *LatencyIndicator      `yaml:"latency,omitempty"`
	Threshold    *ThresholdIndicator    `yaml:"threshold,omitempty"`
	Availability *AvailabilityIndicator `yaml:"availability,omitempty"`
	Composite    *CompositeIndicator    `yaml:"composite,omitempty"`
	// TraceCoverage is a ready ratio: validation replaces it by the ratio
	// it stands for.
	TraceCoverage *TraceCoverageIndicator `yaml:"traceCoverage,omitempty"`
}

// TraceCoverageIndicator is the share of a service's requests that have a
// trace: the server spans QSP received for it (each counted once, whatever
// its sampling weight; qsp_traces_sampled_spans_total from /v1/traces)
// over its requests. Requests is a PromQL query with the window
// placeholder counting them, e.g. sum(rate(http_requests_total{job="checkout"}[{{.window}}]));
// without one, the weighted server-span count of the span metrics, which
// estimates the requests when the samplers record their probability in
// the tracestate (so the SLI is then the sampling rate itself).
type TraceCoverageIndicator struct {
	Service  string `yaml:"service"`
	Requests string `yaml:"requests,omitempty"`
	// SpanKind of the spans that count as requests (default SPAN_KIND_SERVER).
	SpanKind string `yaml:"spanKind,omitempty"`
}

// Ratio returns the ratio indicator the trace coverage stands for.
func (c TraceCoverageIndicator) Ratio() *RatioIndicator {
	kind := c.SpanKind
	if kind == "" {
		kind = "SPAN_KIND_SERVER"
	}
	sel := fmt.Sprintf(`{service_name=%q, span_kind=%q}`, c.Service, kind)
	total := c.Requests
	if total == "" {
		total = "sum(rate(traces_span_metrics_calls_total" + sel + "[" + WindowPlaceholder + "]))"
	}
	return &RatioIndicator{
		Good:  "sum(rate(qsp_traces_sampled_spans_total" + sel + "[" + WindowPlaceholder + "]))",
		Total: total,
	}
}

// Indicator types, as returned by Type.
const (
	IndicatorRatio        = "ratio"
	IndicatorLatency      = "latency"
	IndicatorThreshold    = "threshold"
	IndicatorAvailability = "availability"
	IndicatorComposite    = "composite"
)

// Type returns the name of the indicator's type, or "" if none is set.
func (i Indicator) Type() string {
	switch {
	case i.Ratio != nil:
		return IndicatorRatio
	case i.Latency != nil:
		return IndicatorLatency
	case i.Threshold != nil:
		return IndicatorThreshold
	case i.Availability != nil:
		return IndicatorAvailability
	case i.Composite != nil:
		return IndicatorComposite
	}
	return ""
}

func (i Indicator) count() int {
	n := 0
	for _, set := range []bool{i.Ratio != nil, i.Latency != nil, i.Threshold != nil, i.Availability != nil, i.Composite != nil, i.TraceCoverage != nil} {
		if set {
			n++
		}
	}
	return n
}

// WindowPlaceholder stands for the range of a ratio query, as Sloth users
// write it: sum(rate(http_requests_total{code=~"5.."}[{{.window}}])).
const WindowPlaceholder = "{{.window}}"

// ExpandWindow replaces the window placeholder (with or without spaces
// inside the braces) by a Prometheus duration.
func ExpandWindow(q string, d time.Duration) string {
	ds := Duration(d).String()
	q = strings.ReplaceAll(q, WindowPlaceholder, ds)
	return strings.ReplaceAll(q, "{{ .window }}", ds)
}

// HasWindowPlaceholder reports whether q contains the window placeholder.
func HasWindowPlaceholder(q string) bool {
	return strings.Contains(q, WindowPlaceholder) || strings.Contains(q, "{{ .window }}")
}

// RatioIndicator counts good (or bad) events against all events. Queries
// are PromQL with the window placeholder, e.g.
// sum(rate(http_requests_total{code!~"5.."}[{{.window}}])).
//
// ErrorRatio instead of good/bad and total is a query that returns the
// error ratio itself (0 = no errors, 1 = all bad), as Sloth's
// sli.raw.error_ratio_query does. QSP cannot count events from a ratio: it
// evaluates the query at every minute (window placeholder set to 1m) and
// counts each minute as one event, bad in proportion to the ratio, so every
// minute weighs the same whatever its traffic. Such SLOs are approximate.
type RatioIndicator struct {
	Good       string `yaml:"good,omitempty"`
	Bad        string `yaml:"bad,omitempty"`
	Total      string `yaml:"total,omitempty"`
	ErrorRatio string `yaml:"errorRatio,omitempty"`
}

// LatencyIndicator judges request latency from a Prometheus histogram:
// either the share of requests at or under Threshold (occurrences), or a
// percentile per time slice (Percentile set, timeslices budgeting).
type LatencyIndicator struct {
	// Histogram is the histogram's base name with optional matchers, e.g.
	// http_request_duration_seconds{service="checkout"}; QSP reads its
	// _bucket and _count series.
	Histogram string   `yaml:"histogram"`
	Threshold Duration `yaml:"threshold"`
	// Percentile, e.g. 99, judges each time slice by the percentile instead
	// of counting requests.
	Percentile float64 `yaml:"percentile,omitempty"`
}

// ThresholdIndicator compares a query's value with a limit in every time
// slice, e.g. CPU saturation < 70% or oldest vulnerability age < 30d.
type ThresholdIndicator struct {
	Query string `yaml:"query"`
	// Op is one of <, <=, >, >=, ==, !=.
	Op    string `yaml:"op"`
	Value Value  `yaml:"value"`
}

// Compare reports whether x meets the indicator's condition.
func (t ThresholdIndicator) Compare(x float64) bool {
	v := t.Value.Float()
	switch t.Op {
	case "<":
		return x < v
	case "<=":
		return x <= v
	case ">":
		return x > v
	case ">=":
		return x >= v
	case "==":
		return x == v
	case "!=":
		return x != v
	}
	return false
}

// ThresholdOps lists the comparison operators of threshold indicators.
var ThresholdOps = []string{"<", "<=", ">", ">=", "==", "!="}

// AvailabilityIndicator is a boolean probe: a sample is good when it is 1,
// like Prometheus' up or probe_success.
type AvailabilityIndicator struct {
	Query string `yaml:"query"`
}

// CompositeIndicator combines other SLOs with weights that add up to 1.
type CompositeIndicator struct {
	Objectives []CompositePart `yaml:"objectives"`
}

// CompositePart is one weighted child of a composite SLO.
type CompositePart struct {
	SLO    string  `yaml:"slo"`
	Weight float64 `yaml:"weight"`
}

// Alerting configures the multi-window multi-burn-rate alerts of an SLO.
type Alerting struct {
	// Name is the alertname of burn-rate alerts. Default SLOErrorBudgetBurn.
	Name string `yaml:"name,omitempty"`
	// Page and Ticket are the two tiers; defaults come from the Google SRE
	// workbook, scaled to the SLO window (see DefaultPage).
	Page   *AlertTier `yaml:"page,omitempty"`
	Ticket *AlertTier `yaml:"ticket,omitempty"`
	// TierLabel is the label carrying the tier ("page" or "ticket"), so
	// Alertmanager can inhibit tickets while a page fires. Default severity.
	TierLabel   string            `yaml:"tierLabel,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
	RunbookURL  string            `yaml:"runbookURL,omitempty"`
	NoData      NoDataPolicy      `yaml:"noData,omitempty"`
	// MinEvents is the number of events below which a window is "low
	// traffic" rather than good or bad. Default 1: a window without events
	// is always low traffic.
	MinEvents int `yaml:"minEvents,omitempty"`
}

// ExhaustionCondition holds when the budget left is projected to run out
// within Within if the burn rate of Window goes on (slo.ExhaustionAtBurn:
// the oldest minutes roll out of a rolling window meanwhile).
type ExhaustionCondition struct {
	// Within is the horizon: 24h pages when the budget would be gone
	// within a day. Required.
	Within Duration `yaml:"within"`
	// Window is the burn-rate window of the projection; default the
	// tier's first long window (1h for page, 24h for ticket on 30d).
	Window Duration `yaml:"window,omitempty"`
}

// AlertTier is one severity: burn-rate window pairs, any of which fires it.
type AlertTier struct {
	Disabled bool         `yaml:"disabled,omitempty"`
	Windows  []BurnWindow `yaml:"windows,omitempty"`
	// For is how long a condition must hold before the alert fires.
	For Duration `yaml:"for,omitempty"`
	// TimeToExhaustion also fires the tier when the error budget is
	// projected to run out soon, beside the burn-rate windows.
	TimeToExhaustion *ExhaustionCondition `yaml:"timeToExhaustion,omitempty"`
	// Labels and Annotations are added to this tier's alerts only; a label
	// named like the tier label replaces its value (severity: critical).
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

// BurnWindow is a multi-window condition: the burn rate over both the long
// and the short window is at least Factor.
type BurnWindow struct {
	Long   Duration `yaml:"long"`
	Short  Duration `yaml:"short"`
	Factor float64  `yaml:"factor"`
}

// NoDataPolicy says what happens when telemetry stops.
type NoDataPolicy struct {
	// After is the grace period before no_data raises QSPTelemetryMissing.
	// Default 10m.
	After Duration `yaml:"after,omitempty"`
	// Alert set to false keeps the no_data state without alerting.
	Alert *bool `yaml:"alert,omitempty"`
	// Severity of the telemetry alert: page or ticket. Default ticket.
	Severity string `yaml:"severity,omitempty"`
}

// Alerts reports whether no_data raises an alert.
func (p NoDataPolicy) Alerts() bool { return p.Alert == nil || *p.Alert }

// Budget policy actions.
const (
	ActionWarn   = "warn"   // gates pass with a warning
	ActionFreeze = "freeze" // gates deny deploys other than fixes and rollbacks
	ActionPage   = "notify" // a notification is sent when the step is reached
)

// BudgetPolicyActions lists the actions a budget policy step may take.
var BudgetPolicyActions = []string{ActionWarn, ActionFreeze, ActionPage}

// BudgetPolicyStep is one step of an error budget policy: when Consumed of
// the budget is spent, Action applies.
type BudgetPolicyStep struct {
	Consumed Percent `yaml:"consumed"`
	Action   string  `yaml:"action"`
	Message  string  `yaml:"message,omitempty"`
}
