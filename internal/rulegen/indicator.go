package rulegen

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/spec"
)

// Names of the per-step series slice-judged SLIs record.
const (
	// ValueGoodRecord is 1 when the SLI met its condition at one
	// evaluation step and 0 when it did not (for ratioTimeslices: the
	// slice's good ratio). A step without data records nothing.
	ValueGoodRecord = "slo:sli_value_good"
)

// valueStep is how often QSP evaluates threshold and probe queries
// within a slice (engine.valueStep): Prometheus' default evaluation
// interval, so a spike that lasts one 15s scrape is seen.
const valueStep = 15 * time.Second

// maxCompositeDepth bounds nested composites, as the engine does.
const maxCompositeDepth = 16

// errorRatio is the PromQL of an SLO's error ratio over one window.
type errorRatio struct {
	expr   func(w time.Duration) string
	events func(w time.Duration) (string, bool) // event count over w
	// groups are recorded before the window ratios: the per-step series
	// slice-judged SLIs are computed from.
	groups []rulefmt.RuleGroup
	// notes are caveats of the translation.
	notes []string
}

// indicator returns how to compute an SLO's error ratio, or why it
// cannot be done in Prometheus.
func indicator(s *spec.SLO, set *spec.Set, depth int) (*errorRatio, string) {
	sp := s.Spec
	ind := sp.Indicator
	by := ""
	if len(sp.GroupBy) > 0 {
		by = " by (" + strings.Join(sp.GroupBy, ", ") + ")"
	}
	slice := cmp.Or(sp.Budgeting.SliceLength.D(), time.Minute)
	switch {
	case ind.Composite != nil:
		return composite(s, set, depth)
	case ind.Threshold != nil:
		t := ind.Threshold
		cond := fmt.Sprintf("%s bool %s", t.Op, formatFloat(t.Value.Float()))
		return sliced(s, valueStep, slice, fmt.Sprintf("min%s (\n  ((%s) >= -Inf) %s\n)", by, t.Query, cond)), ""
	case ind.Latency != nil && ind.Latency.Percentile != 0:
		l := ind.Latency
		name, rest, reason := histogram(l.Histogram)
		if reason != "" {
			return nil, reason
		}
		grouping := strings.Join(append([]string{"le"}, sp.GroupBy...), ", ")
		q := fmt.Sprintf("histogram_quantile(%s, sum by (%s) (rate(%s[%s])))",
			strconv.FormatFloat(l.Percentile/100, 'f', -1, 64), grouping, selector(name+"_bucket", rest), spec.Duration(slice))
		// Judged once per slice at its end, over the slice's rate.
		return sliced(s, slice, slice, fmt.Sprintf("(\n  (%s) >= -Inf\n) <= bool %s", q, formatFloat(l.Threshold.D().Seconds()))), ""
	case ind.Availability != nil:
		q := ind.Availability.Query
		if sp.Budgeting.IsTimeslices() {
			return sliced(s, valueStep, slice, fmt.Sprintf("min%s (\n  ((%s) >= -Inf) >= bool 1\n)", by, q)), ""
		}
		if _, err := spec.ParseSelector(q); err != nil {
			// Any other PromQL: evaluated once a minute, each value one
			// event, as QSP does.
			return sliced(s, time.Minute, time.Minute, fmt.Sprintf("min%s (\n  ((%s) >= -Inf) >= bool 1\n)", by, q)), ""
		}
		// A plain selector: every probe sample is an event.
		return &errorRatio{
			expr: func(w time.Duration) string {
				ws := spec.Duration(w).String()
				return fmt.Sprintf("1 - (\n  sum%s (sum_over_time(%s[%s]))\n  /\n  sum%s (count_over_time(%s[%s]))\n)", by, q, ws, by, q, ws)
			},
			events: func(w time.Duration) (string, bool) {
				return fmt.Sprintf("sum%s (count_over_time(%s[%s]))", by, q, spec.Duration(w)), true
			},
			notes: []string{fmt.Sprintf("%s: each probe sample counts by its value (1 good, 0 bad); QSP counts a sample of 1 or more as good, so probes that report other values differ", s.Name())},
		}, ""
	}
	occ, reason := occurrences(s)
	if reason != "" {
		return nil, reason
	}
	if !sp.Budgeting.IsTimeslices() {
		return occ, ""
	}
	// Event counts judged per slice: the slice is good when its ratio
	// meets the slice objective (timeslices) or counts its ratio
	// (ratioTimeslices).
	good := fmt.Sprintf("(\n  1 - (%s)\n) >= -Inf", occ.expr(slice))
	if sp.Budgeting.Method == spec.Timeslices {
		objective := sp.Objective.Ratio()
		if !sp.Budgeting.SliceObjective.IsZero() {
			objective = sp.Budgeting.SliceObjective.Ratio()
		}
		good = fmt.Sprintf("(\n  %s\n) >= bool %s", good, strconv.FormatFloat(objective, 'g', -1, 64))
	}
	er := sliced(s, slice, slice, good)
	er.notes = append(er.notes, occ.notes...)
	return er, ""
}

// sliced is the error ratio of an SLI judged per time slice: the
// condition is recorded every step, a slice is good when every step in
// it was (min_over_time), and the error ratio over a window is the share
// of bad slices. The subquery's steps are aligned to multiples of the
// slice length, as QSP's slices are.
func sliced(s *spec.SLO, step, slice time.Duration, cond string) *errorRatio {
	name := s.Name()
	by := ""
	if len(s.Spec.GroupBy) > 0 {
		by = " by (" + strings.Join(s.Spec.GroupBy, ", ") + ")"
	}
	sl := spec.Duration(slice).String()
	// Both ranges are a millisecond short of their length: Prometheus 2
	// closes ranges at both ends, Prometheus 3 only at the end, and a
	// range of exactly the slice would take the previous slice's last
	// step (and a window one slice too many) in Prometheus 2. One
	// millisecond short, both hold exactly the steps of the slice and
	// exactly the window's slices.
	short := func(d time.Duration) string { return model.Duration(d - time.Millisecond).String() }
	slices := func(w time.Duration) string {
		return fmt.Sprintf("min_over_time(%s{%s=%q}[%s])[%s:%s]", ValueGoodRecord, alert.LabelSLO, name, short(slice), short(w), sl)
	}
	return &errorRatio{
		expr: func(w time.Duration) string {
			return fmt.Sprintf("1 - avg_over_time(\n  %s\n)", slices(w))
		},
		events: func(w time.Duration) (string, bool) {
			return fmt.Sprintf("sum%s (count_over_time(\n  %s\n))", by, slices(w)), true
		},
		groups: []rulefmt.RuleGroup{{
			Name:     "qsp-slo-" + name + "-steps",
			Interval: model.Duration(step),
			Rules: []rulefmt.Rule{{
				Record: ValueGoodRecord,
				Expr:   cond,
				Labels: map[string]string{alert.LabelSLO: name, alert.LabelService: s.Spec.Service},
			}},
		}},
	}
}

// composite is the weighted mean of the children's error ratios, each
// normalised to the composite's budget by its own (slo.CompositeErrorRatio):
//
//	e = min(budget * sum(w_i * e_i / budget_i) / sum(w_i), 1)
//
// The children's own recording rules are written for them; a composite
// over grouped children would mix groups and is skipped.
func composite(s *spec.SLO, set *spec.Set, depth int) (*errorRatio, string) {
	if depth >= maxCompositeDepth {
		return nil, fmt.Sprintf("composite indicator: nested deeper than %d", maxCompositeDepth)
	}
	type part struct {
		er     *errorRatio
		weight float64
		budget float64
	}
	var parts []part
	var total float64
	for _, c := range s.Spec.Indicator.Composite.Objectives {
		child := set.SLO(c.SLO)
		if child == nil {
			return nil, fmt.Sprintf("composite indicator: child SLO %s does not exist", c.SLO)
		}
		if len(child.Spec.GroupBy) > 0 {
			return nil, fmt.Sprintf("composite indicator: child SLO %s is grouped by %s, and a composite of groups has no single error ratio", c.SLO, strings.Join(child.Spec.GroupBy, ", "))
		}
		b := child.Spec.Objective.Budget()
		if b <= 0 {
			return nil, fmt.Sprintf("composite indicator: child SLO %s has objective 100%%, no budget to normalise by", c.SLO)
		}
		er, reason := indicator(child, set, depth+1)
		if reason != "" {
			return nil, fmt.Sprintf("composite indicator: child SLO %s: %s", c.SLO, reason)
		}
		parts = append(parts, part{er: er, weight: c.Weight, budget: b})
		total += c.Weight
	}
	if len(parts) == 0 || total <= 0 {
		return nil, "composite indicator: no weighted children"
	}
	budget := s.Spec.Objective.Budget()
	var groups []rulefmt.RuleGroup
	for _, p := range parts {
		// A child's per-step series are needed even when the child
		// writes no rules of its own (both tiers disabled); Generate
		// writes each group once.
		groups = append(groups, p.er.groups...)
	}
	return &errorRatio{
		groups: groups,
		expr: func(w time.Duration) string {
			terms := make([]string, len(parts))
			for i, p := range parts {
				// sum() drops the child's slo and service labels so the
				// terms match; each child is one series.
				terms[i] = fmt.Sprintf("%s * sum(\n    %s\n  ) / %s", formatFloat(p.weight),
					strings.ReplaceAll(p.er.expr(w), "\n", "\n    "), strconv.FormatFloat(p.budget, 'g', -1, 64))
			}
			return fmt.Sprintf("clamp_max(\n  %s * (\n  %s\n  ) / %s,\n  1\n)", strconv.FormatFloat(budget, 'g', -1, 64),
				strings.Join(terms, "\n  +\n  "), formatFloat(total))
		},
		events: func(time.Duration) (string, bool) { return "", false },
	}, ""
}

// histogram splits a histogram selector into its base name and the
// other matchers.
func histogram(sel string) (name string, rest []string, reason string) {
	ms, err := spec.ParseSelector(sel)
	if err != nil {
		return "", nil, "latency histogram: " + err.Error()
	}
	for _, m := range ms {
		if m.Name == model.MetricNameLabel {
			name = m.Value
			continue
		}
		rest = append(rest, m.String())
	}
	return name, rest, ""
}

// occurrences is the error ratio of an SLI counted in events: ratios of
// counters and latency thresholds over a histogram.
func occurrences(s *spec.SLO) (*errorRatio, string) {
	sp := s.Spec
	ind := sp.Indicator
	switch {
	case ind.Ratio != nil && ind.Ratio.ErrorRatio != "":
		q := ind.Ratio.ErrorRatio
		return &errorRatio{
			expr: func(w time.Duration) string {
				if spec.HasWindowPlaceholder(q) {
					// As Sloth records a raw SLI: the query over the window.
					return spec.ExpandWindow(q, w)
				}
				// A ratio without a range: its average over the window at
				// the minute steps QSP evaluates it at.
				return fmt.Sprintf("avg_over_time((%s)[%s:1m])", q, spec.Duration(w))
			},
			events: func(time.Duration) (string, bool) { return "", false },
		}, ""
	case ind.Ratio != nil:
		r := ind.Ratio
		return &errorRatio{
			expr: func(w time.Duration) string {
				total := spec.ExpandWindow(r.Total, w)
				if r.Bad != "" {
					return fmt.Sprintf("(%s)\n/\n(%s)", spec.ExpandWindow(r.Bad, w), total)
				}
				return fmt.Sprintf("1 - (\n  (%s)\n  /\n  (%s)\n)", spec.ExpandWindow(r.Good, w), total)
			},
			events: func(w time.Duration) (string, bool) { return increaseOf(spec.ExpandWindow(r.Total, w)) },
		}, ""
	case ind.Latency != nil:
		l := ind.Latency
		name, rest, reason := histogram(l.Histogram)
		if reason != "" {
			return nil, reason
		}
		by := ""
		if len(sp.GroupBy) > 0 {
			by = " by (" + strings.Join(sp.GroupBy, ", ") + ")"
		}
		le := fmt.Sprintf("le=~%q", spec.LeRegexp(l.Threshold.D().Seconds()))
		bucket := selector(name+"_bucket", append(slices.Clone(rest), le))
		count := selector(name+"_count", rest)
		return &errorRatio{
			expr: func(w time.Duration) string {
				ws := spec.Duration(w).String()
				return fmt.Sprintf("1 - (\n  sum%s (rate(%s[%s]))\n  /\n  sum%s (rate(%s[%s]))\n)", by, bucket, ws, by, count, ws)
			},
			events: func(w time.Duration) (string, bool) {
				return fmt.Sprintf("sum%s (increase(%s[%s]))", by, count, spec.Duration(w)), true
			},
		}, ""
	}
	return nil, "no indicator"
}

// ErrorRatioExpr returns the PromQL of an SLO's error ratio over w as the
// generated rules compute it, or the reason there is none. Slice-judged
// SLIs read the step series the rules record (ValueGoodRecord); the
// others are plain PromQL over the SLI's own series.
func ErrorRatioExpr(set *spec.Set, s *spec.SLO, w time.Duration) (string, string) {
	er, reason := indicator(s, set, 0)
	if reason != "" {
		return "", reason
	}
	return er.expr(w), ""
}

// RecordName is the recorded error ratio of one window:
// slo:sli_error:ratio_rate5m.
func RecordName(w time.Duration) string { return ErrorRatioRecord + spec.Duration(w).String() }
