// Package rulegen writes Prometheus recording and alerting rules from SLO
// specs, for users who want their own Prometheus to alert on the same
// burn rates QSP evaluates. It sits beside the engine in the data flow:
// spec → rulegen → a rule file that `promtool check rules` accepts and a
// Prometheus loads.
//
// For every SLO it writes, Sloth/Pyrra style, one recording rule
// slo:sli_error:ratio_rate<window> per window its alert pairs use and one
// alerting rule per tier (page, ticket) whose labels and annotations are
// those of QSP's own alerts. Event-counted SLIs (ratios, latency
// thresholds, probe samples) record a ratio of summed counts over the
// window (never an average of shorter ratios). Slice-judged SLIs
// (thresholds, latency percentiles, timeslices budgeting) record their
// condition every evaluation step (slo:sli_value_good) in a group of its
// own, and the window's error ratio is the share of bad slices. Composite
// SLOs combine their children's error ratios with weights as the engine
// does. An SLO that still cannot be written (objective 100%, both tiers
// disabled, a composite over grouped children) is listed at the top of
// the file with the reason.
package rulegen

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// Options configure Generate.
type Options struct {
	// ExternalURL is QSP's address, for the dashboard annotation and
	// generatorURL-like links. Optional.
	ExternalURL string
	// Source names where the specs came from, for the file's header.
	Source string
}

// Skipped is an SLO no rules were written for, and why.
type Skipped struct {
	SLO    string
	Reason string
}

// Result is a generated rule file.
type Result struct {
	Groups  rulefmt.RuleGroups
	Skipped []Skipped
	// Notes are caveats about SLOs that were written, e.g. maintenance
	// windows Prometheus cannot apply.
	Notes []string
}

// Names of what the rules record.
const (
	// ErrorRatioRecord is the recorded error ratio; the window is appended
	// (slo:sli_error:ratio_rate5m).
	ErrorRatioRecord = "slo:sli_error:ratio_rate"
)

// Generate builds the rules of every SLO of set it can express.
func Generate(set *spec.Set, opts Options) (*Result, error) {
	if set == nil {
		return nil, fmt.Errorf("rulegen: no specs")
	}
	res := &Result{Groups: rulefmt.RuleGroups{Groups: []rulefmt.RuleGroup{}}}
	written := map[string]bool{}
	for _, s := range set.SLOs {
		groups, notes, reason, err := forSLO(s, set, opts)
		if err != nil {
			return nil, fmt.Errorf("rulegen: SLO %s: %w", s.Name(), err)
		}
		if reason != "" {
			res.Skipped = append(res.Skipped, Skipped{SLO: s.Name(), Reason: reason})
			continue
		}
		for _, g := range groups {
			// A composite brings its children's per-step groups along.
			if !written[g.Name] {
				written[g.Name] = true
				res.Groups.Groups = append(res.Groups.Groups, g)
			}
		}
		res.Notes = append(res.Notes, notes...)
	}
	return res, nil
}

func selector(name string, matchers []string) string {
	if len(matchers) == 0 {
		return name
	}
	return name + "{" + strings.Join(matchers, ", ") + "}"
}

// increaseOf turns a total query's rate() calls into increase(), giving
// the number of events in the window; false when it has other
// per-second functions.
func increaseOf(q string) (string, bool) {
	expr, err := spec.ParseExpr(q)
	if err != nil {
		return "", false
	}
	ok := true
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		c, isCall := n.(*parser.Call)
		if !isCall {
			return nil
		}
		switch c.Func.Name {
		case "rate":
			c.Func = parser.Functions["increase"]
		case "irate", "deriv":
			ok = false
		}
		return nil
	})
	if !ok {
		return "", false
	}
	return expr.String(), true
}

func forSLO(s *spec.SLO, set *spec.Set, opts Options) (groups []rulefmt.RuleGroup, notes []string, skip string, err error) {
	er, reason := indicator(s, set, 0)
	if reason != "" {
		return nil, nil, reason, nil
	}
	sp := s.Spec
	budget := sp.Objective.Budget()
	if budget <= 0 {
		return nil, nil, "objective 100%: no error budget to burn", nil
	}
	type tier struct {
		name  string
		tier  *spec.AlertTier
		conds []slo.BurnCondition
	}
	var tiers []tier
	var windows []time.Duration
	for _, name := range []string{spec.SeverityPage, spec.SeverityTicket} {
		t := sp.Alerting.Tier(name)
		if t == nil || len(t.Windows) == 0 {
			continue
		}
		tr := tier{name: name, tier: t}
		for _, bw := range t.Windows {
			c := slo.BurnCondition{Long: bw.Long.D(), Short: bw.Short.D(), Factor: bw.Factor}
			tr.conds = append(tr.conds, c)
			windows = append(windows, c.Long, c.Short)
		}
		tiers = append(tiers, tr)
	}
	if len(tiers) == 0 {
		return nil, nil, "alerting: both tiers are disabled", nil
	}
	slices.Sort(windows)
	windows = slices.Compact(windows)

	seriesLabels := map[string]string{alert.LabelSLO: s.Name(), alert.LabelService: sp.Service}
	var recording []rulefmt.Rule
	for _, w := range windows {
		recording = append(recording, rulefmt.Rule{
			Record: ErrorRatioRecord + spec.Duration(w).String(),
			Expr:   er.expr(w),
			Labels: seriesLabels,
		})
	}
	name := s.Name()
	// The per-step series of slice-judged SLIs come first: the window
	// ratios read them.
	groups = append(groups, er.groups...)
	main := len(groups)
	groups = append(groups, rulefmt.RuleGroup{Name: "qsp-slo-" + name, Rules: recording})
	notes = append(notes, er.notes...)
	if sp.Indicator.Ratio != nil && sp.Indicator.Ratio.ErrorRatio != "" && spec.HasWindowPlaceholder(sp.Indicator.Ratio.ErrorRatio) {
		notes = append(notes, fmt.Sprintf("%s: the error-ratio query is recorded over each window, as Sloth does; QSP itself averages it minute by minute, so their burn rates may differ when traffic is uneven", name))
	}
	notes = append(notes, reservedNotes(s, set)...)

	groupMatch := "on(" + strings.Join(sp.GroupBy, ", ") + ")"
	minEvents := float64(sp.Alerting.MinEvents)
	budgetText := strconv.FormatFloat(budget, 'g', -1, 64)
	sel := func(w time.Duration) string {
		return fmt.Sprintf("%s%s{%s=%q}", ErrorRatioRecord, spec.Duration(w), alert.LabelSLO, name)
	}
	var alerting []rulefmt.Rule
	for _, tr := range tiers {
		var pairs []string
		for _, c := range tr.conds {
			factor := strconv.FormatFloat(c.Factor, 'g', -1, 64)
			// The value of the pair is the long window's burn rate: the
			// comparison keeps its left side and "and" keeps the left
			// operand, so $value is what QSP reports as burn_rate.
			cond := fmt.Sprintf("(%s / %s >= %s)\n    and\n    (%s / %s >= %s)", sel(c.Long), budgetText, factor, sel(c.Short), budgetText, factor)
			if minEvents > 1 {
				le, lok := er.events(c.Long)
				se, sok := er.events(c.Short)
				if lok && sok {
					// QSP does not judge a window with fewer events than
					// alerting.minEvents (low traffic).
					cond += fmt.Sprintf("\n    and %s\n    (%s >= %s)\n    and %s\n    (%s >= %s)", groupMatch, le, formatFloat(minEvents), groupMatch, se, formatFloat(minEvents))
				} else {
					notes = append(notes, fmt.Sprintf("%s: alerting.minEvents (%v) is not applied: the total query has no rate() to count events with", name, minEvents))
				}
			}
			pairs = append(pairs, fmt.Sprintf("label_replace(\n    %s,\n    %q, %q, \"\", \"\"\n  )", cond, alert.LabelWindow, c.String()))
		}
		// "or ignoring(window)" keeps the first pair that holds, in spec
		// order, as QSP's window label does.
		expr := "  " + strings.Join(pairs, "\nor ignoring("+alert.LabelWindow+")\n  ")
		labels, annotations := alertMeta(s, set, tr.name, opts)
		annotations[alert.AnnotationBurnRate] = `{{ $value | printf "%.2f" }}`
		annotations[alert.AnnotationSummary] = fmt.Sprintf(`%s: %s alert, the error budget burns {{ $value | printf "%%.2f" }}x faster than the objective allows over {{ $labels.%s }}`,
			keyTemplate(name, sp.GroupBy), tr.name, alert.LabelWindow)
		if q := budgetQuery(s, budgetText); q != "" {
			annotations[alert.AnnotationBudgetRemaining] = q
		} else {
			delete(annotations, alert.AnnotationBudgetRemaining)
		}
		copyTierAnnotations(annotations, s, tr.tier)
		alerting = append(alerting, rulefmt.Rule{
			Alert:       sp.Alerting.Name,
			Expr:        expr,
			For:         model.Duration(tr.tier.For.D()),
			Labels:      labels,
			Annotations: annotations,
		})
	}
	groups[main].Rules = append(groups[main].Rules, alerting...)
	if q := budgetRecord(s, er); q != nil {
		// The SLO window is long: evaluated every 5 minutes, in a group of
		// its own, it feeds the budget_remaining annotation only.
		groups = append(groups, rulefmt.RuleGroup{Name: "qsp-slo-" + name + "-budget", Interval: model.Duration(5 * time.Minute), Rules: []rulefmt.Rule{*q}})
	}
	if len(sp.Corrections) > 0 || (set.Service(sp.Service) != nil && len(set.Service(sp.Service).Spec.Corrections) > 0) {
		notes = append(notes, fmt.Sprintf("%s: maintenance windows (corrections) are not applied by these rules; QSP excludes them", name))
	}
	return groups, notes, "", nil
}

// alertMeta returns the labels and annotations QSP's own alert of this
// SLO and tier carries, minus what Prometheus adds from the series
// (group labels, window) and alertname.
func alertMeta(s *spec.SLO, set *spec.Set, tier string, opts Options) (map[string]string, map[string]string) {
	st := &engine.Status{Key: s.Name(), SLO: s.Name(), Service: s.Spec.Service, Category: s.Spec.Category}
	a := alert.Build(engine.Transition{Key: s.Name(), SLO: s.Name(), Service: s.Spec.Service, Severity: tier, Alert: s.Spec.Alerting.Name,
		From: slo.Pending, To: slo.Firing, Status: st}, set, opts.ExternalURL, "")
	delete(a.Labels, alert.LabelAlertName)
	delete(a.Labels, alert.LabelWindow)
	for _, g := range s.Spec.GroupBy {
		if g != alert.LabelService && g != alert.LabelSLO && g != alert.LabelCategory {
			delete(a.Labels, g) // comes from the series, per group
		}
	}
	annotations := map[string]string{}
	for _, k := range []string{alert.AnnotationRunbookURL, alert.AnnotationDashboard, alert.AnnotationBudgetRemaining} {
		if v, ok := a.Annotations[k]; ok {
			annotations[k] = v
		}
	}
	if opts.ExternalURL == "" {
		delete(annotations, alert.AnnotationDashboard) // a link needs QSP's address
	}
	annotations[alert.AnnotationDescription] = fmt.Sprintf("Service %s, SLO %s (%s, objective %s over %s). Burn rate {{ $value | printf \"%%.2f\" }} over the long window of {{ $labels.%s }}.",
		s.Spec.Service, keyTemplate(s.Name(), s.Spec.GroupBy), s.Spec.Category, s.Spec.Objective.String(), s.Spec.Window.String(), alert.LabelWindow)
	return a.Labels, annotations
}

func copyTierAnnotations(dst map[string]string, s *spec.SLO, t *spec.AlertTier) {
	for k, v := range s.Spec.Alerting.Annotations {
		dst[k] = v
	}
	for k, v := range t.Annotations {
		dst[k] = v
	}
}

// keyTemplate names the SLO group in annotations as QSP's key does:
// name{tenant="a"}.
func keyTemplate(name string, groupBy []string) string {
	if len(groupBy) == 0 {
		return name
	}
	parts := make([]string, len(groupBy))
	for i, g := range groupBy {
		parts[i] = fmt.Sprintf(`%s="{{ $labels.%s }}"`, g, g)
	}
	return name + "{" + strings.Join(parts, ", ") + "}"
}

// budgetRecord records the error ratio over the whole rolling SLO window;
// calendar windows have no fixed length and get none.
func budgetRecord(s *spec.SLO, er *errorRatio) *rulefmt.Rule {
	w := s.Spec.Window
	if w.Calendar != "" || w.Rolling <= 0 {
		return nil
	}
	return &rulefmt.Rule{
		Record: ErrorRatioRecord + w.Rolling.String(),
		Expr:   er.expr(w.Rolling.D()),
		Labels: map[string]string{alert.LabelSLO: s.Name(), alert.LabelService: s.Spec.Service},
	}
}

// budgetQuery is the budget_remaining annotation: a template that reads
// the SLO window's recorded error ratio for the alert's group.
func budgetQuery(s *spec.SLO, budget string) string {
	w := s.Spec.Window
	if w.Calendar != "" || w.Rolling <= 0 {
		return ""
	}
	matchers := []string{fmt.Sprintf(`%s=%q`, alert.LabelSLO, s.Name())}
	args := ""
	for _, g := range s.Spec.GroupBy {
		matchers = append(matchers, g+`=%q`)
		args += " $labels." + g
	}
	q := fmt.Sprintf("100 * (1 - %s%s{%s} / %s)", ErrorRatioRecord, w.Rolling, strings.Join(matchers, ","), budget)
	return fmt.Sprintf(`{{ with printf %q%s | query }}{{ with first . }}{{ value . | printf "%%.2f" }}%%{{ end }}{{ end }}`, q, args)
}

func formatFloat(f float64) string {
	if f == math.Trunc(f) {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Write writes the rule file: a header comment naming the source, the
// skipped SLOs and the caveats, then the rule groups. The output is
// checked with Prometheus' own rule file parser first.
func (r *Result) Write(w io.Writer, opts Options) error {
	body, err := yamlOf(r.Groups)
	if err != nil {
		return err
	}
	if errs := Validate(body); len(errs) > 0 {
		return fmt.Errorf("rulegen: generated rules are invalid (a bug): %w", errs[0])
	}
	var b bytes.Buffer
	b.WriteString("# Prometheus rules generated by `qsp generate prometheus-rules`. Do not edit:\n")
	b.WriteString("# regenerate from the SLO specs instead.\n")
	if opts.Source != "" {
		fmt.Fprintf(&b, "# Source: %s\n", opts.Source)
	}
	b.WriteString("#\n# Alerts carry the labels of QSP's own alerts (alertname, service, slo,\n")
	b.WriteString("# category, severity or the SLO's tier label, window = the first burn-rate\n")
	b.WriteString("# pair that holds, group labels, spec labels). QSP keeps the window an alert\n")
	b.WriteString("# fired with until it resolves; these rules relabel it if another pair takes over.\n")
	if len(r.Skipped) > 0 {
		b.WriteString("#\n# Skipped SLOs:\n")
		for _, s := range r.Skipped {
			fmt.Fprintf(&b, "#   %s: %s\n", s.SLO, s.Reason)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("#\n# Notes:\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "#   %s\n", n)
		}
	}
	b.Write(body)
	_, err = w.Write(b.Bytes())
	return err
}

func yamlOf(groups rulefmt.RuleGroups) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(groups); err != nil {
		return nil, fmt.Errorf("rulegen: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rulegen: encode: %w", err)
	}
	return b.Bytes(), nil
}

// Validate parses a rule file the way Prometheus does and returns every
// problem.
func Validate(content []byte) []error {
	_, errs := rulefmt.Parse(content, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	return errs
}

// reservedNotes names the spec labels the rules' alerts carry with QSP's
// value instead of the one written, so nothing is overwritten silently.
func reservedNotes(s *spec.SLO, set *spec.Set) []string {
	var notes []string
	check := func(where string, m map[string]string) {
		for _, k := range spec.ReservedAlertLabels {
			if v, ok := m[k]; ok {
				notes = append(notes, fmt.Sprintf("%s: label %s=%q of %s is replaced by QSP's own %s label", s.Name(), k, v, where, k))
			}
		}
	}
	if svc := set.Service(s.Spec.Service); svc != nil {
		check("the service", svc.Spec.Labels)
	}
	a := s.Spec.Alerting
	check("alerting.labels", a.Labels)
	for _, t := range []struct {
		name string
		tier *spec.AlertTier
	}{{"page", a.Page}, {"ticket", a.Ticket}} {
		if t.tier != nil {
			check("alerting."+t.name+".labels", t.tier.Labels)
		}
	}
	return notes
}
