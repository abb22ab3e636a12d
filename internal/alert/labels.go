package alert

import (
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/spec"
)

// Label and annotation names QSP sets on every alert.
const (
	LabelAlertName = "alertname"
	LabelService   = "service"
	LabelSLO       = "slo"
	LabelCategory  = "category"
	LabelWindow    = "window"

	AnnotationSummary         = "summary"
	AnnotationDescription     = "description"
	AnnotationBudgetRemaining = "budget_remaining"
	AnnotationBurnRate        = "burn_rate"
	AnnotationRunbookURL      = "runbook_url"
	AnnotationDashboard       = "dashboard"
)

// Tier returns the tier of the alert a transition is about: page or
// ticket. Burn-rate alerts have the tier that fired; the telemetry alert
// has its spec's noData.severity (ticket by default); the source-down
// alert always pages, since every SLO is blind while it fires.
func Tier(t engine.Transition, set *spec.Set) string {
	switch {
	case t.Severity == spec.SeverityPage || t.Severity == spec.SeverityTicket:
		return t.Severity
	case t.Alert == engine.AlertSourceDown || t.Key == "":
		return spec.SeverityPage
	}
	if s := lookupSLO(set, t.SLO); s != nil && s.Spec.Alerting.NoData.Severity != "" {
		return s.Spec.Alerting.NoData.Severity
	}
	return spec.SeverityTicket
}

// Build returns the alert a transition is about, as receivers see it.
//
// Labels, later ones winning: the service's labels, the SLO's
// alerting.labels, the tier's labels, the group labels of a grouped SLO,
// then alertname, service, slo, category, window (the burn-rate pair that
// fired, e.g. "1h/5m") and the tier label (alerting.tierLabel, default
// severity) set to page or ticket unless the tier's labels give it another
// value. Annotations: summary, description, budget_remaining, burn_rate
// (of the pair's long window), runbook_url (the SLO's, else the
// service's), dashboard (the SLO's page), then the SLO's and the tier's
// annotations. Annotation values are plain text: no templating.
//
// window is the pair to label and report; "" takes the transition's
// condition. Resolutions pass the pair the alert fired with, so the label
// set, and the fingerprint, stay the same.
func Build(t engine.Transition, set *spec.Set, externalURL, window string) Alert {
	externalURL = strings.TrimSuffix(externalURL, "/")
	if t.Alert == engine.AlertSourceDown || (t.Key == "" && t.Status == nil) {
		return sourceDownAlert(t, externalURL)
	}
	if window == "" {
		window = t.Condition
	}
	s := lookupSLO(set, t.SLO)
	var svc *spec.Service
	if set != nil {
		svc = set.Service(t.Service)
	}
	tier := Tier(t, set)
	labels := map[string]string{}
	annotations := map[string]string{}
	tierLabel := spec.DefaultTierLabel
	tierValue := tier
	var tierSpec *spec.AlertTier
	if svc != nil {
		copyInto(labels, svc.Spec.Labels)
	}
	if s != nil {
		a := s.Spec.Alerting
		copyInto(labels, a.Labels)
		if a.TierLabel != "" {
			tierLabel = a.TierLabel
		}
		if tierSpec = a.Tier(tier); tierSpec != nil {
			copyInto(labels, tierSpec.Labels)
			if v, ok := tierSpec.Labels[tierLabel]; ok {
				tierValue = v
			}
		}
	}
	st := t.Status
	if st != nil {
		copyInto(labels, st.Group)
	}
	labels[LabelAlertName] = t.Alert
	labels[LabelService] = t.Service
	labels[LabelSLO] = t.SLO
	if st != nil && st.Category != "" {
		labels[LabelCategory] = string(st.Category)
	} else if s != nil {
		labels[LabelCategory] = string(s.Spec.Category)
	}
	burn := t.Severity == spec.SeverityPage || t.Severity == spec.SeverityTicket
	if burn && window != "" {
		labels[LabelWindow] = window
	}
	labels[tierLabel] = tierValue
	for k, v := range labels {
		if v == "" {
			delete(labels, k) // Alertmanager treats an empty label as absent
		}
	}

	dashboard := externalURL + "/slos/" + url.PathEscape(t.SLO)
	annotations[AnnotationDashboard] = dashboard
	runbook := ""
	if s != nil {
		runbook = s.Spec.Alerting.RunbookURL
	}
	if runbook == "" && svc != nil {
		runbook = svc.Spec.RunbookURL
	}
	if runbook != "" {
		annotations[AnnotationRunbookURL] = runbook
	}
	name := t.Key
	if name == "" {
		name = t.SLO
	}
	objective := objectiveText(s, st)
	if st != nil {
		annotations[AnnotationBudgetRemaining] = formatPercent(st.Budget.RemainingRatio)
	}
	if burn {
		long, short, ok := pairBurn(st, window)
		if ok {
			annotations[AnnotationBurnRate] = formatNumber(long)
		}
		annotations[AnnotationSummary] = fmt.Sprintf("%s: %s alert, the error budget burns %sx faster than the objective allows over %s",
			name, tier, annotationOr(annotations, AnnotationBurnRate, "?"), orUnknown(window))
		if t.To == "resolved" {
			annotations[AnnotationSummary] = fmt.Sprintf("%s: %s alert resolved, the budget no longer burns fast over %s", name, tier, orUnknown(window))
		}
		d := fmt.Sprintf("Service %s, SLO %s (%s, objective %s over %s).", t.Service, name, labels[LabelCategory], objective, windowText(st))
		if ok {
			lw, sw, _ := strings.Cut(window, "/")
			d += fmt.Sprintf(" Burn rate %s over %s and %s over %s.", formatNumber(long), lw, formatNumber(short), sw)
		}
		if st != nil {
			d += fmt.Sprintf(" %s of the error budget is left.", formatPercent(st.Budget.RemainingRatio))
		}
		annotations[AnnotationDescription] = d
	} else {
		annotations[AnnotationSummary] = fmt.Sprintf("%s: no telemetry", name)
		if st != nil && !st.DataUntil.IsZero() {
			annotations[AnnotationSummary] = fmt.Sprintf("%s: no telemetry since %s", name, st.DataUntil.UTC().Format(time.RFC3339))
		}
		if t.To == "resolved" {
			annotations[AnnotationSummary] = fmt.Sprintf("%s: telemetry is back", name)
		}
		d := fmt.Sprintf("Service %s, SLO %s (objective %s over %s): its indicator has no data, so its budget and burn rates cannot be judged.", t.Service, name, objective, windowText(st))
		if st != nil && st.Reason != "" {
			d += " Reason: " + st.Reason + "."
		}
		annotations[AnnotationDescription] = d
	}
	if s != nil {
		copyInto(annotations, s.Spec.Alerting.Annotations)
		if burn && tierSpec != nil {
			copyInto(annotations, tierSpec.Annotations)
		}
	}
	return Alert{Labels: labels, Annotations: annotations, GeneratorURL: dashboard}
}

func sourceDownAlert(t engine.Transition, externalURL string) Alert {
	d := "The telemetry source does not answer, so no SLO can be evaluated; every SLO reports no_data until it returns."
	if t.Condition != "" {
		d += " Last error: " + t.Condition
	}
	summary := "The telemetry source is unavailable"
	if t.To == "resolved" {
		summary = "The telemetry source is available again"
	}
	return Alert{
		Labels: map[string]string{LabelAlertName: engine.AlertSourceDown, spec.DefaultTierLabel: spec.SeverityPage},
		Annotations: map[string]string{
			AnnotationSummary: summary, AnnotationDescription: d, AnnotationDashboard: externalURL + "/",
		},
		GeneratorURL: externalURL + "/",
	}
}

func lookupSLO(set *spec.Set, name string) *spec.SLO {
	if set == nil || name == "" {
		return nil
	}
	return set.SLO(name)
}

// pairBurn returns the burn rates of the long and short windows of a pair
// named like "1h/5m".
func pairBurn(st *engine.Status, window string) (long, short float64, ok bool) {
	if st == nil || window == "" {
		return 0, 0, false
	}
	for _, a := range st.Alerts {
		for _, c := range a.Conditions {
			if c.Condition.String() == window && !c.NoData && !c.LowTraffic {
				return c.LongBurn, c.ShortBurn, true
			}
		}
	}
	// Not evaluated (low traffic, no data): fall back to the window stats.
	lw, sw, found := strings.Cut(window, "/")
	if !found {
		return 0, 0, false
	}
	var lb, sb *float64
	for _, w := range st.Windows {
		switch w.Name {
		case lw:
			lb = w.BurnRate
		case sw:
			sb = w.BurnRate
		}
	}
	if lb == nil || sb == nil {
		return 0, 0, false
	}
	return *lb, *sb, true
}

func objectiveText(s *spec.SLO, st *engine.Status) string {
	if s != nil && !s.Spec.Objective.IsZero() {
		return s.Spec.Objective.String()
	}
	if st != nil {
		return strconv.FormatFloat(math.Round(st.Objective*1e8)/1e6, 'f', -1, 64) + "%"
	}
	return "?"
}

func windowText(st *engine.Status) string {
	if st == nil || st.Window == "" {
		return "its window"
	}
	return st.Window
}

// formatPercent writes a ratio as a percentage with two decimals, never
// "-0.00%".
func formatPercent(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "n/a"
	}
	v := math.Round(r*10000) / 100
	if v == 0 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "%"
}

// formatNumber writes a burn rate with at most two decimals.
func formatNumber(x float64) string {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return "n/a"
	}
	v := math.Round(x*100) / 100
	if v == 0 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func copyInto(dst, src map[string]string) {
	for k, v := range src {
		dst[k] = v
	}
}

func annotationOr(m map[string]string, k, def string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return def
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown window"
	}
	return s
}
