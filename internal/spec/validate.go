package spec

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// promqlParser parses every query of a spec; it is safe for concurrent use.
var promqlParser = parser.NewParser(parser.Options{})

// ParseExpr parses a PromQL expression the way spec validation does.
func ParseExpr(q string) (parser.Expr, error) { return promqlParser.ParseExpr(q) }

// ParseSelector parses a metric selector such as
// http_requests_total{code=~"5.."} into its matchers.
func ParseSelector(s string) ([]*labels.Matcher, error) {
	return promqlParser.ParseMetricSelector(s)
}

// nameRE is what object names may look like: they end up in label values,
// URLs and file names.
var nameRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,126}[a-zA-Z0-9])?$`)

// validator checks a whole set, applies defaults and collects diagnostics.
type validator struct {
	set   *Set
	diags *Diagnostics
}

func (v *validator) report(o Object, warning bool, path, format string, args ...any) {
	w := o.Where()
	if w.decodeFailed(path) {
		return
	}
	line, col := w.At(path)
	v.diags.add(Diagnostic{
		File: w.File, Line: line, Column: col,
		Object:  o.GetKind() + "/" + o.Meta().Name,
		Field:   path,
		Message: fmt.Sprintf(format, args...),
		Warning: warning,
	})
}

func (v *validator) errorf(o Object, path, format string, args ...any) {
	v.report(o, false, path, format, args...)
}

func (v *validator) warnf(o Object, path, format string, args ...any) {
	v.report(o, true, path, format, args...)
}

func (v *validator) validate() {
	v.checkHeaders()
	for _, s := range v.set.Services {
		v.service(s)
	}
	for _, s := range v.set.SLOs {
		v.slo(s)
	}
	v.compositeCycles()
	for _, p := range v.set.Policies {
		v.policy(p)
	}
	for _, g := range v.set.Gates {
		v.gate(g)
	}
	for _, p := range v.set.Playbooks {
		v.playbook(p)
	}
}

// checkHeaders checks apiVersion, kind and metadata of every object, and
// that names are unique per kind.
func (v *validator) checkHeaders() {
	seen := map[string]Object{}
	for _, o := range v.set.Objects() {
		name := o.Meta().Name
		switch {
		case name == "":
			v.errorf(o, "metadata.name", "required")
			continue
		case !nameRE.MatchString(name):
			v.errorf(o, "metadata.name", "%q is not a valid name: use letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 128 characters", name)
		}
		for k := range o.Meta().Labels {
			if !model.LegacyValidation.IsValidLabelName(k) {
				v.errorf(o, "metadata.labels."+k, "%q is not a valid label name", k)
			}
		}
		key := o.GetKind() + "/" + name
		if first, ok := seen[key]; ok {
			w := first.Where()
			v.errorf(o, "metadata.name", "duplicate name: %s is already declared at %s:%d:%d", key, w.File, w.Line, w.Column)
			continue
		}
		seen[key] = o
	}
}

func (v *validator) service(s *Service) {
	sp := &s.Spec
	if strings.TrimSpace(sp.Owner) == "" {
		v.errorf(s, "spec.owner", "required: name the team accountable for the service")
	}
	if sp.Tier < 0 || sp.Tier > 4 {
		v.errorf(s, "spec.tier", "must be between 1 (most critical) and 4, got %d", sp.Tier)
	}
	v.labelMap(s, "spec.labels", sp.Labels)
	v.reservedLabels(s, "spec.labels", sp.Labels)
	for i, j := range sp.Journeys {
		p := fmt.Sprintf("spec.journeys[%d]", i)
		if j.Name == "" {
			v.errorf(s, p+".name", "required")
		}
		for k, name := range j.SLOs {
			slo := v.set.SLO(name)
			switch {
			case slo == nil:
				v.errorf(s, fmt.Sprintf("%s.slos[%d]", p, k), "SLO %q is not declared", name)
			case slo.Spec.Service != s.Name():
				v.warnf(s, fmt.Sprintf("%s.slos[%d]", p, k), "SLO %q belongs to service %q", name, slo.Spec.Service)
			}
		}
	}
	if sp.RunbookURL != "" {
		v.absURL(s, "spec.runbookURL", sp.RunbookURL)
	}
	if sp.Cost != nil {
		v.promql(s, "spec.cost.query", sp.Cost.Query)
	}
	v.corrections(s, "spec.corrections", sp.Corrections)
}

func (v *validator) slo(s *SLO) {
	sp := &s.Spec
	switch {
	case sp.Service == "":
		v.errorf(s, "spec.service", "required")
	case v.set.Service(sp.Service) == nil:
		v.errorf(s, "spec.service", "service %q is not declared", sp.Service)
	}
	if !slices.Contains(Categories, sp.Category) {
		v.errorf(s, "spec.category", "must be one of quality, security, performance, got %q", sp.Category)
	}
	if sp.Objective.IsZero() {
		v.errorf(s, "spec.objective", "required: the target in percent, e.g. 99.9")
	}
	v.window(s)
	v.indicator(s)
	v.budgeting(s)
	v.groupBy(s)
	v.alerting(s)
	v.budgetPolicy(s)
	v.corrections(s, "spec.corrections", sp.Corrections)
}

// windowValid reports whether the SLO's window is one QSP can evaluate.
func (v *validator) windowValid(s *SLO) bool {
	w := s.Spec.Window
	if w.Calendar != "" {
		if w.Rolling != 0 || (w.Calendar != CalendarWeek && w.Calendar != CalendarMonth) {
			return false
		}
		_, err := time.LoadLocation(w.TimeZone)
		return err == nil
	}
	d := w.Rolling.D()
	return d >= time.Hour && d <= 90*24*time.Hour && d%time.Minute == 0
}

func (v *validator) window(s *SLO) {
	w := &s.Spec.Window
	switch {
	case w.Rolling == 0 && w.Calendar == "":
		v.errorf(s, "spec.window", "required: a rolling duration such as 30d, or {calendar: month}")
	case w.Rolling != 0 && w.Calendar != "":
		v.errorf(s, "spec.window", "set either rolling or calendar, not both")
	case w.Calendar != "":
		if w.Calendar != CalendarWeek && w.Calendar != CalendarMonth {
			v.errorf(s, "spec.window.calendar", "must be week or month, got %q", w.Calendar)
		}
		if w.TimeZone != "" {
			if _, err := time.LoadLocation(w.TimeZone); err != nil {
				v.errorf(s, "spec.window.timeZone", "unknown time zone %q", w.TimeZone)
			}
		}
	default:
		if w.TimeZone != "" {
			v.errorf(s, "spec.window.timeZone", "only calendar windows have a time zone")
		}
		d := w.Rolling.D()
		switch {
		case d%time.Minute != 0:
			v.errorf(s, "spec.window", "must be a whole number of minutes, got %s", w.Rolling)
		case d < time.Hour:
			v.errorf(s, "spec.window", "must be at least 1h, got %s", w.Rolling)
		case d > 90*24*time.Hour:
			v.errorf(s, "spec.window", "must be at most 90d, got %s", w.Rolling)
		}
	}
}

func (v *validator) indicator(s *SLO) {
	ind := &s.Spec.Indicator
	switch ind.count() {
	case 0:
		v.errorf(s, "spec.indicator", "required: one of ratio, latency, threshold, availability, composite, traceCoverage")
		return
	case 1:
	default:
		v.errorf(s, "spec.indicator", "set exactly one of ratio, latency, threshold, availability, composite, traceCoverage")
		return
	}
	if tc := ind.TraceCoverage; tc != nil {
		bad := false
		if tc.Service == "" {
			v.errorf(s, "spec.indicator.traceCoverage.service", "required: the service.name of the spans")
			bad = true
		}
		if tc.SpanKind != "" && !slices.Contains([]string{"SPAN_KIND_SERVER", "SPAN_KIND_CONSUMER", "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_INTERNAL", "SPAN_KIND_UNSPECIFIED"}, tc.SpanKind) {
			v.errorf(s, "spec.indicator.traceCoverage.spanKind", "must be a span kind such as SPAN_KIND_SERVER, got %q", tc.SpanKind)
			bad = true
		}
		if tc.Requests != "" {
			v.windowedQuery(s, "spec.indicator.traceCoverage.requests", tc.Requests)
		}
		if bad {
			return
		}
		// The engine, rules and dashboards see the ratio it stands for.
		ind.Ratio, ind.TraceCoverage = tc.Ratio(), nil
	}
	switch {
	case ind.Ratio != nil:
		r := ind.Ratio
		if r.ErrorRatio != "" {
			if r.Good != "" || r.Bad != "" || r.Total != "" {
				v.errorf(s, "spec.indicator.ratio.errorRatio", "set errorRatio alone, or good or bad with total")
			}
			q := r.ErrorRatio
			if HasWindowPlaceholder(q) {
				q = ExpandWindow(q, time.Minute)
			}
			v.promql(s, "spec.indicator.ratio.errorRatio", q)
			break
		}
		switch {
		case r.Good == "" && r.Bad == "":
			v.errorf(s, "spec.indicator.ratio", "set good or bad")
		case r.Good != "" && r.Bad != "":
			v.errorf(s, "spec.indicator.ratio", "set good or bad, not both")
		}
		if r.Total == "" {
			v.errorf(s, "spec.indicator.ratio.total", "required")
		}
		for _, q := range []struct{ path, q string }{{"good", r.Good}, {"bad", r.Bad}, {"total", r.Total}} {
			if q.q != "" {
				v.windowedQuery(s, "spec.indicator.ratio."+q.path, q.q)
			}
		}
	case ind.Latency != nil:
		l := ind.Latency
		if l.Histogram == "" {
			v.errorf(s, "spec.indicator.latency.histogram", "required: the histogram's name, e.g. http_request_duration_seconds{service=\"checkout\"}")
		} else if ms, err := ParseSelector(l.Histogram); err != nil {
			v.errorf(s, "spec.indicator.latency.histogram", "not a metric selector: %v", err)
		} else if metricName(ms) == "" {
			v.errorf(s, "spec.indicator.latency.histogram", "must name the histogram metric, e.g. http_request_duration_seconds{...}")
		} else if strings.HasSuffix(metricName(ms), "_bucket") || strings.HasSuffix(metricName(ms), "_count") {
			v.errorf(s, "spec.indicator.latency.histogram", "give the histogram's base name without _bucket or _count")
		}
		if l.Threshold <= 0 {
			v.errorf(s, "spec.indicator.latency.threshold", "required: a positive duration such as 300ms")
		}
		if l.Percentile != 0 && (l.Percentile <= 0 || l.Percentile >= 100) {
			v.errorf(s, "spec.indicator.latency.percentile", "must be above 0 and below 100, got %v", l.Percentile)
		}
	case ind.Threshold != nil:
		t := ind.Threshold
		if t.Query == "" {
			v.errorf(s, "spec.indicator.threshold.query", "required")
		} else {
			v.promql(s, "spec.indicator.threshold.query", t.Query)
		}
		if !slices.Contains(ThresholdOps, t.Op) {
			v.errorf(s, "spec.indicator.threshold.op", "must be one of %s, got %q", strings.Join(ThresholdOps, " "), t.Op)
		}
		if t.Value.String() == "" {
			v.errorf(s, "spec.indicator.threshold.value", "required")
		}
	case ind.Availability != nil:
		if ind.Availability.Query == "" {
			v.errorf(s, "spec.indicator.availability.query", "required, e.g. up{job=\"checkout\"}")
		} else {
			v.promql(s, "spec.indicator.availability.query", ind.Availability.Query)
		}
	case ind.Composite != nil:
		v.composite(s)
	}
}

func metricName(ms []*labels.Matcher) string {
	for _, m := range ms {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// windowedQuery checks a ratio query: it must use the window placeholder
// and parse once the placeholder is replaced.
func (v *validator) windowedQuery(o Object, path, q string) {
	if !HasWindowPlaceholder(q) {
		v.errorf(o, path, "query has no %s placeholder: write the range as [%s], e.g. sum(rate(http_requests_total[%s]))", WindowPlaceholder, WindowPlaceholder, WindowPlaceholder)
		return
	}
	v.promql(o, path, ExpandWindow(q, 5*time.Minute))
}

func (v *validator) promql(o Object, path, q string) {
	if _, err := ParseExpr(q); err != nil {
		v.errorf(o, path, "invalid PromQL: %s", promqlError(err))
	}
}

// promqlError shortens a parser error to its first message.
func promqlError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "parse error: "); i >= 0 {
		pos := strings.TrimSuffix(strings.TrimSpace(msg[:i]), ":")
		return msg[i+len("parse error: "):] + " (at " + pos + ")"
	}
	return msg
}

func (v *validator) composite(s *SLO) {
	c := s.Spec.Indicator.Composite
	if len(c.Objectives) == 0 {
		v.errorf(s, "spec.indicator.composite.objectives", "required: at least one weighted SLO")
		return
	}
	sum := 0.0
	seen := map[string]bool{}
	for i, part := range c.Objectives {
		p := fmt.Sprintf("spec.indicator.composite.objectives[%d]", i)
		switch {
		case part.SLO == "":
			v.errorf(s, p+".slo", "required")
		case part.SLO == s.Name():
			v.errorf(s, p+".slo", "a composite SLO cannot contain itself")
		case v.set.SLO(part.SLO) == nil:
			v.errorf(s, p+".slo", "SLO %q is not declared", part.SLO)
		case seen[part.SLO]:
			v.errorf(s, p+".slo", "SLO %q is listed twice", part.SLO)
		}
		seen[part.SLO] = true
		if part.Weight <= 0 || math.IsNaN(part.Weight) {
			v.errorf(s, p+".weight", "must be positive, got %v", part.Weight)
		}
		sum += part.Weight
	}
	if math.Abs(sum-1) > 1e-9 {
		v.errorf(s, "spec.indicator.composite.objectives", "weights add up to %s, want 1", formatFloat(sum))
	}
	if len(s.Spec.GroupBy) > 0 {
		v.errorf(s, "spec.groupBy", "a composite SLO cannot be grouped")
	}
}

// compositeCycles reports composite SLOs that contain themselves through
// other composites.
func (v *validator) compositeCycles() {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var visit func(s *SLO, path []string) bool
	visit = func(s *SLO, path []string) bool {
		switch state[s.Name()] {
		case visiting:
			return true
		case done:
			return false
		}
		state[s.Name()] = visiting
		defer func() { state[s.Name()] = done }()
		if c := s.Spec.Indicator.Composite; c != nil {
			for i, part := range c.Objectives {
				child := v.set.SLO(part.SLO)
				if child == nil || child == s {
					continue
				}
				if visit(child, append(path, child.Name())) {
					if state[child.Name()] == visiting {
						v.errorf(s, fmt.Sprintf("spec.indicator.composite.objectives[%d].slo", i), "cycle: %s", strings.Join(append(path, child.Name()), " -> "))
					}
					return true
				}
			}
		}
		return false
	}
	for _, s := range v.set.SLOs {
		if state[s.Name()] == unvisited && s.Spec.Indicator.Composite != nil {
			visit(s, []string{s.Name()})
		}
	}
}

func (v *validator) budgeting(s *SLO) {
	b := &s.Spec.Budgeting
	ind := s.Spec.Indicator
	if b.Method == "" {
		// Per-slice indicators default to timeslices, event counts to
		// occurrences.
		b.Method = Occurrences
		if ind.Threshold != nil || (ind.Latency != nil && ind.Latency.Percentile != 0) {
			b.Method = Timeslices
		}
	}
	switch b.Method {
	case Occurrences:
		if b.SliceLength != 0 {
			v.errorf(s, "spec.budgeting.sliceLength", "only timeslices budgeting has a slice length")
		}
		if !b.SliceObjective.IsZero() {
			v.errorf(s, "spec.budgeting.sliceObjective", "only timeslices budgeting has a slice objective")
		}
		switch {
		case ind.Threshold != nil:
			v.errorf(s, "spec.budgeting", "a threshold indicator is judged per time slice: use timeslices budgeting")
		case ind.Latency != nil && ind.Latency.Percentile != 0:
			v.errorf(s, "spec.budgeting", "a latency percentile is judged per time slice: use timeslices budgeting")
		}
	case Timeslices, RatioTimeslices:
		if b.Method == RatioTimeslices && ind.Ratio == nil && (ind.Latency == nil || ind.Latency.Percentile != 0) {
			v.errorf(s, "spec.budgeting.method", "ratioTimeslices averages per-slice ratios: it needs a ratio or latency threshold indicator")
		}
		if b.SliceLength == 0 {
			b.SliceLength = Duration(time.Minute)
		}
		d := b.SliceLength.D()
		switch {
		case d%time.Minute != 0 || d < time.Minute:
			v.errorf(s, "spec.budgeting.sliceLength", "must be a whole number of minutes, got %s", b.SliceLength)
		case (24*time.Hour)%d != 0:
			v.errorf(s, "spec.budgeting.sliceLength", "must divide a day evenly (1m, 2m, 5m, 10m, 15m, 30m, 1h, ...), got %s", b.SliceLength)
		case d > time.Hour:
			v.errorf(s, "spec.budgeting.sliceLength", "must be at most 1h, got %s", b.SliceLength)
		}
		if !b.SliceObjective.IsZero() && (ind.Ratio == nil || b.Method != Timeslices) {
			v.errorf(s, "spec.budgeting.sliceObjective", "only ratio indicators with timeslices budgeting have a slice objective")
		}
		if ind.Composite != nil {
			v.errorf(s, "spec.budgeting", "a composite SLO takes its budgeting from its children")
		}
	default:
		v.errorf(s, "spec.budgeting.method", "must be occurrences, timeslices or ratioTimeslices, got %q", b.Method)
	}
}

func (v *validator) groupBy(s *SLO) {
	seen := map[string]bool{}
	for i, l := range s.Spec.GroupBy {
		p := fmt.Sprintf("spec.groupBy[%d]", i)
		switch {
		case !model.LegacyValidation.IsValidLabelName(l) || strings.HasPrefix(l, "__"):
			v.errorf(s, p, "%q is not a valid label name", l)
		case seen[l]:
			v.errorf(s, p, "label %q is listed twice", l)
		}
		seen[l] = true
	}
	switch {
	case s.Spec.MaxGroups == 0:
		s.Spec.MaxGroups = DefaultMaxGroups
	case s.Spec.MaxGroups < 0 || s.Spec.MaxGroups > 10000:
		v.errorf(s, "spec.maxGroups", "must be between 1 and 10000, got %d", s.Spec.MaxGroups)
	}
	if len(s.Spec.GroupBy) == 0 && s.Spec.MaxGroups != DefaultMaxGroups {
		v.warnf(s, "spec.maxGroups", "has no effect without groupBy")
	}
}

func (v *validator) alerting(s *SLO) {
	a := &s.Spec.Alerting
	length := s.Spec.Window.Length()
	if !v.windowValid(s) {
		// Alert windows are checked against the SLO window; with no valid
		// window that would only repeat the window's error.
		length = 0
	}
	if s.Spec.Window.Calendar == CalendarMonth {
		length = workbookWindow // alert windows of a month follow the workbook
	}
	page, ticket := DefaultAlertWindows(length)
	for _, t := range []struct {
		name     string
		tier     **AlertTier
		defaults []BurnWindow
	}{{SeverityPage, &a.Page, page}, {SeverityTicket, &a.Ticket, ticket}} {
		if *t.tier == nil {
			*t.tier = &AlertTier{}
		}
		tier := *t.tier
		p := "spec.alerting." + t.name
		if tier.Disabled {
			continue
		}
		if len(tier.Windows) == 0 {
			tier.Windows = t.defaults
		}
		v.labelMap(s, p+".labels", tier.Labels)
		v.reservedLabels(s, p+".labels", tier.Labels)
		if length == 0 {
			continue
		}
		if tier.For < 0 {
			v.errorf(s, p+".for", "must not be negative")
		}
		v.exhaustion(s, p+".timeToExhaustion", tier, length)
		for i, w := range tier.Windows {
			wp := fmt.Sprintf("%s.windows[%d]", p, i)
			v.alertWindow(s, wp+".long", w.Long, length)
			v.alertWindow(s, wp+".short", w.Short, length)
			if w.Short >= w.Long && w.Long > 0 {
				v.errorf(s, wp+".short", "must be shorter than the long window %s, got %s", w.Long, w.Short)
			}
			switch {
			case w.Factor <= 0 || math.IsNaN(w.Factor):
				v.errorf(s, wp+".factor", "must be positive, got %v", w.Factor)
			case !s.Spec.Objective.IsZero() && w.Factor > 1/s.Spec.Objective.Budget()+1e-9:
				// The burn rate is the error rate over the budget, so it can
				// never exceed 1/budget, reached when every event is bad.
				v.warnf(s, wp+".factor", "this window can never fire: the highest possible burn rate of a %s objective is %s (all events bad), below the factor %s; the objective is below 1 - 1/factor = %s%%",
					s.Spec.Objective, formatFloat(1/s.Spec.Objective.Budget()), formatFloat(w.Factor), formatFloat(100*(1-1/w.Factor)))
			}
		}
	}
	if a.Name == "" {
		a.Name = DefaultAlertName
	} else if !model.LabelValue(a.Name).IsValid() || strings.ContainsAny(a.Name, " \t\n") {
		v.errorf(s, "spec.alerting.name", "%q is not a valid alert name", a.Name)
	}
	if a.TierLabel == "" {
		a.TierLabel = DefaultTierLabel
	} else if !model.LegacyValidation.IsValidLabelName(a.TierLabel) {
		v.errorf(s, "spec.alerting.tierLabel", "%q is not a valid label name", a.TierLabel)
	}
	v.labelMap(s, "spec.alerting.labels", a.Labels)
	v.reservedLabels(s, "spec.alerting.labels", a.Labels)
	if a.RunbookURL != "" {
		v.absURL(s, "spec.alerting.runbookURL", a.RunbookURL)
	}
	if a.NoData.After == 0 {
		a.NoData.After = Duration(DefaultNoDataAfter)
	} else if a.NoData.After < Duration(time.Minute) {
		v.errorf(s, "spec.alerting.noData.after", "must be at least 1m, got %s", a.NoData.After)
	}
	switch a.NoData.Severity {
	case "":
		a.NoData.Severity = SeverityTicket
	case SeverityPage, SeverityTicket:
	default:
		v.errorf(s, "spec.alerting.noData.severity", "must be page or ticket, got %q", a.NoData.Severity)
	}
	switch {
	case a.MinEvents == 0:
		a.MinEvents = DefaultMinEvents
	case a.MinEvents < 0:
		v.errorf(s, "spec.alerting.minEvents", "must not be negative, got %d", a.MinEvents)
	}
}

// exhaustion checks a tier's timeToExhaustion condition and defaults its
// window to the tier's first long window.
func (v *validator) exhaustion(s *SLO, path string, tier *AlertTier, length time.Duration) {
	c := tier.TimeToExhaustion
	if c == nil {
		return
	}
	switch {
	case c.Within <= 0:
		v.errorf(s, path+".within", "required: a positive duration such as 24h, got %s", c.Within)
	case c.Within.D() > length:
		v.errorf(s, path+".within", "must not be longer than the SLO window %s, got %s", s.Spec.Window, c.Within)
	}
	if c.Window == 0 && len(tier.Windows) > 0 {
		c.Window = tier.Windows[0].Long
	}
	v.alertWindow(s, path+".window", c.Window, length)
}

func (v *validator) alertWindow(s *SLO, path string, d Duration, length time.Duration) {
	switch {
	case d <= 0:
		v.errorf(s, path, "required: a duration such as 1h")
	case d.D()%time.Minute != 0:
		v.errorf(s, path, "must be a whole number of minutes, got %s", d)
	case d.D() > length:
		v.errorf(s, path, "must not be longer than the SLO window %s, got %s", s.Spec.Window, d)
	}
}

func (v *validator) budgetPolicy(s *SLO) {
	prev := -1.0
	for i, step := range s.Spec.BudgetPolicy {
		p := fmt.Sprintf("spec.budgetPolicy[%d]", i)
		if step.Consumed.IsZero() {
			v.errorf(s, p+".consumed", "required: the share of the budget spent, e.g. 50%%")
		} else if step.Consumed.Ratio() <= prev {
			v.errorf(s, p+".consumed", "steps must be in increasing order of consumed budget")
		}
		prev = step.Consumed.Ratio()
		if !slices.Contains(BudgetPolicyActions, step.Action) {
			v.errorf(s, p+".action", "must be one of %s, got %q", strings.Join(BudgetPolicyActions, ", "), step.Action)
		}
	}
}

func (v *validator) corrections(o Object, path string, cs []Correction) {
	names := map[string]bool{}
	for i, c := range cs {
		p := fmt.Sprintf("%s[%d]", path, i)
		if c.Name == "" {
			v.errorf(o, p+".name", "required")
		} else if names[c.Name] {
			v.errorf(o, p+".name", "duplicate correction %q", c.Name)
		}
		names[c.Name] = true
		if c.Start.IsZero() {
			v.errorf(o, p+".start", "required")
			continue
		}
		switch {
		case c.End.IsZero() && c.Duration == 0:
			v.errorf(o, p, "set end or duration")
		case !c.End.IsZero() && c.Duration != 0:
			v.errorf(o, p, "set end or duration, not both")
		case c.Length() <= 0:
			v.errorf(o, p+".end", "must be after start")
		}
		if c.Every != 0 && c.Every.D() < c.Length() {
			v.errorf(o, p+".every", "a repeating window must not overlap itself: every %s is shorter than its length %s", c.Every, Duration(c.Length()))
		}
		if !c.Until.IsZero() && c.Every == 0 {
			v.errorf(o, p+".until", "only repeating windows (every) have an end")
		}
	}
}

// BuiltinPolicies are the names of QSP's built-in policies; user policies
// may not take them.
var BuiltinPolicies = []string{"error-budget", "trade-off", "vulnerabilities"}

func (v *validator) policy(p *Policy) {
	sp := &p.Spec
	if slices.Contains(BuiltinPolicies, p.Name()) {
		v.errorf(p, "metadata.name", "%q is the name of a built-in policy; choose another", p.Name())
	}
	switch {
	case sp.Rego == "" && sp.Path == "":
		v.errorf(p, "spec", "set rego (inline) or path (a .rego file)")
		return
	case sp.Rego != "" && sp.Path != "":
		v.errorf(p, "spec", "set rego or path, not both")
		return
	}
	for i, a := range sp.AppliesTo {
		if a != PointGate && a != PointPlaybook {
			v.errorf(p, fmt.Sprintf("spec.appliesTo[%d]", i), "must be gate or playbook, got %q", a)
		}
	}
	if len(sp.AppliesTo) == 0 {
		sp.AppliesTo = []string{PointGate, PointPlaybook}
	}
	src, file, lineOffset := sp.Rego, p.Where().File, 0
	if sp.Path != "" {
		file = sp.Path
		if !filepath.IsAbs(file) {
			file = filepath.Join(filepath.Dir(p.Where().File), file)
		}
		data, err := readFile(file)
		if err != nil {
			v.errorf(p, "spec.path", "read policy: %v", err)
			return
		}
		src = string(data)
	} else if line, _ := p.Where().At("spec.rego"); line > 0 {
		// A block scalar's text starts on the line after "rego: |".
		lineOffset = line
	}
	sp.Source = src
	if _, err := ast.ParseModuleWithOpts(file, src, ast.ParserOptions{RegoVersion: ast.RegoV1}); err != nil {
		for _, e := range regoErrors(err) {
			if e.line > 0 {
				v.diags.add(Diagnostic{File: file, Line: e.line + lineOffset, Column: e.col, Object: "Policy/" + p.Name(), Field: "spec.rego", Message: "invalid Rego: " + e.msg})
			} else {
				v.errorf(p, "spec.rego", "invalid Rego: %s", e.msg)
			}
		}
		return
	}
	if len(strings.TrimSpace(src)) == 0 {
		v.errorf(p, "spec.rego", "empty module")
	}
}

type regoError struct {
	line, col int
	msg       string
}

func regoErrors(err error) []regoError {
	if errs, ok := err.(ast.Errors); ok {
		out := make([]regoError, 0, len(errs))
		for _, e := range errs {
			re := regoError{msg: e.Message}
			if e.Location != nil {
				re.line, re.col = e.Location.Row, e.Location.Col
			}
			out = append(out, re)
		}
		return out
	}
	return []regoError{{msg: err.Error()}}
}

func (v *validator) gate(g *Gate) {
	sp := &g.Spec
	v.serviceRef(g, "spec.service", sp.Service)
	if sp.Budget == nil && sp.Security == nil && sp.Canary == nil {
		v.errorf(g, "spec", "set at least one check: budget, security or canary")
	}
	if b := sp.Budget; b != nil {
		for i, name := range b.SLOs {
			p := fmt.Sprintf("spec.budget.slos[%d]", i)
			slo := v.set.SLO(name)
			switch {
			case slo == nil:
				v.errorf(g, p, "SLO %q is not declared", name)
			case slo.Spec.Service != sp.Service:
				v.errorf(g, p, "SLO %q belongs to service %q, not %q", name, slo.Spec.Service, sp.Service)
			}
		}
		if b.MinRemaining.Ratio() > 1 {
			v.errorf(g, "spec.budget.minRemaining", "must be at most 100%%")
		}
		if b.MaxBurnRate < 0 {
			v.errorf(g, "spec.budget.maxBurnRate", "must not be negative")
		}
	}
	if sc := sp.Security; sc != nil {
		for sev, n := range sc.MaxFindings {
			if !slices.Contains(Severities, sev) {
				v.errorf(g, "spec.security.maxFindings."+sev, "unknown severity %q; want one of %s", sev, strings.Join(Severities, ", "))
			}
			if n < 0 {
				v.errorf(g, "spec.security.maxFindings."+sev, "must not be negative")
			}
		}
		if sc.AgeSeverity != "" && !slices.Contains(Severities, sc.AgeSeverity) {
			v.errorf(g, "spec.security.ageSeverity", "unknown severity %q; want one of %s", sc.AgeSeverity, strings.Join(Severities, ", "))
		}
		if sc.MaxAge < 0 {
			v.errorf(g, "spec.security.maxAge", "must not be negative")
		}
		if sc.MaxAge > 0 && sc.AgeSeverity == "" {
			sc.AgeSeverity = "high"
		}
	}
	if c := sp.Canary; c != nil {
		v.canary(g, c)
	}
	v.policyRefs(g, "spec.policies", sp.Policies, PointGate)
}

func (v *validator) canary(g *Gate, c *CanaryCheck) {
	if len(c.Baseline) == 0 {
		v.errorf(g, "spec.canary.baseline", "required: label matchers of the baseline, e.g. {track: baseline}")
	}
	if len(c.Canary) == 0 {
		v.errorf(g, "spec.canary.canary", "required: label matchers of the canary, e.g. {track: canary}")
	}
	for _, side := range []struct {
		name string
		m    map[string]string
	}{{"baseline", c.Baseline}, {"canary", c.Canary}} {
		for k := range side.m {
			if !model.LegacyValidation.IsValidLabelName(k) {
				v.errorf(g, "spec.canary."+side.name+"."+k, "%q is not a valid label name", k)
			}
		}
	}
	if c.Runs < 0 {
		v.errorf(g, "spec.canary.runs", "must not be negative")
	}
	if c.Runs > 1 && c.Interval == 0 {
		v.errorf(g, "spec.canary.interval", "required when runs is more than 1")
	}
	if c.Pass == 0 {
		c.Pass = 95
	}
	if c.Marginal == 0 {
		c.Marginal = 75
	}
	if c.Pass < 0 || c.Pass > 100 {
		v.errorf(g, "spec.canary.pass", "must be between 0 and 100")
	}
	if c.Marginal < 0 || c.Marginal > c.Pass {
		v.errorf(g, "spec.canary.marginal", "must be between 0 and pass (%v)", c.Pass)
	}
	if c.Alpha == 0 {
		c.Alpha = 0.05
	} else if c.Alpha < 0 || c.Alpha > 0.5 {
		v.errorf(g, "spec.canary.alpha", "must be above 0 and at most 0.5, got %v", c.Alpha)
	}
	for k, w := range c.Groups {
		if w < 0 {
			v.errorf(g, "spec.canary.groups."+k, "weight must not be negative")
		}
	}
	if len(c.Metrics) == 0 {
		v.errorf(g, "spec.canary.metrics", "required: at least one metric")
	}
	names := map[string]bool{}
	for i, m := range c.Metrics {
		p := fmt.Sprintf("spec.canary.metrics[%d]", i)
		if m.Name == "" {
			v.errorf(g, p+".name", "required")
		} else if names[m.Name] {
			v.errorf(g, p+".name", "duplicate metric %q", m.Name)
		}
		names[m.Name] = true
		switch {
		case m.Query == "" && m.Errors == "" && m.Total == "":
			v.errorf(g, p, "set query (a sampled metric) or errors and total (a count metric)")
		case m.Query != "" && (m.Errors != "" || m.Total != ""):
			v.errorf(g, p, "set query or errors/total, not both")
		case m.Query == "" && (m.Errors == "" || m.Total == ""):
			v.errorf(g, p, "a count metric needs both errors and total")
		}
		for _, q := range []struct{ f, q string }{{"query", m.Query}, {"errors", m.Errors}, {"total", m.Total}} {
			if q.q == "" {
				continue
			}
			if !strings.Contains(q.q, SelectorPlaceholder) {
				v.errorf(g, p+"."+q.f, "query has no %s placeholder for the baseline and canary matchers", SelectorPlaceholder)
				continue
			}
			v.promql(g, p+"."+q.f, strings.ReplaceAll(q.q, SelectorPlaceholder, `track="x"`))
		}
		switch m.Direction {
		case "":
			c.Metrics[i].Direction = DirectionIncrease
		case DirectionIncrease, DirectionDecrease, DirectionEither:
		default:
			v.errorf(g, p+".direction", "must be increase, decrease or either, got %q", m.Direction)
		}
		if m.NaN != "" && m.NaN != "remove" && m.NaN != "zero" {
			v.errorf(g, p+".nan", "must be remove or zero, got %q", m.NaN)
		}
		if m.Outliers != "" && m.Outliers != "keep" && m.Outliers != "remove" {
			v.errorf(g, p+".outliers", "must be keep or remove, got %q", m.Outliers)
		}
		if m.Tail != 0 && m.Tail != -1 && (m.Tail <= 50 || m.Tail >= 100) {
			v.errorf(g, p+".tail", "must be a percentile above 50 and below 100, or -1 to disable, got %v", m.Tail)
		}
		if m.MinSamples < 0 {
			v.errorf(g, p+".minSamples", "must not be negative")
		}
		if d := m.Detect; d != nil {
			if d.Shift.Ratio() >= 10 || (m.Direction == DirectionDecrease && d.Shift.Ratio() >= 1) {
				v.errorf(g, p+".detect.shift", "must be below 1000%% (100%% for a decrease), got %s", d.Shift)
			}
			if d.Spread != 0 && !(d.Spread > 1 && d.Spread < 100) {
				v.errorf(g, p+".detect.spread", "must be a variance ratio above 1 and below 100, got %v", d.Spread)
			}
			if d.Tail.Ratio() >= 1 || d.Rate.Ratio() >= 1 {
				v.errorf(g, p+".detect", "tail and rate must be below 100%%, got %s and %s", d.Tail, d.Rate)
			}
		}
		if m.Group != "" && len(c.Groups) > 0 {
			if _, ok := c.Groups[m.Group]; !ok {
				v.errorf(g, p+".group", "group %q has no weight in spec.canary.groups", m.Group)
			}
		}
	}
}

func (v *validator) playbook(pb *Playbook) {
	sp := &pb.Spec
	v.serviceRef(pb, "spec.service", sp.Service)
	v.trigger(pb)
	if len(sp.Actions) == 0 {
		v.errorf(pb, "spec.actions", "required: at least one action")
	}
	names := map[string]bool{}
	for i, a := range sp.Actions {
		p := fmt.Sprintf("spec.actions[%d]", i)
		if a.Name == "" {
			v.errorf(pb, p+".name", "required")
		} else if names[a.Name] {
			v.errorf(pb, p+".name", "duplicate action %q", a.Name)
		}
		names[a.Name] = true
		n := 0
		for _, set := range []bool{a.Webhook != nil, a.Notify != nil, a.Exec != nil} {
			if set {
				n++
			}
		}
		if n != 1 {
			v.errorf(pb, p, "set exactly one of webhook, notify, exec")
			continue
		}
		if a.Retries != nil && (*a.Retries < 0 || *a.Retries > 20) {
			v.errorf(pb, p+".retries", "must be between 0 and 20")
		}
		switch {
		case a.Webhook != nil:
			v.webhook(pb, p+".webhook", a.Webhook)
		case a.Notify != nil:
			if a.Notify.Message == "" {
				v.errorf(pb, p+".notify.message", "required")
			}
			v.template(pb, p+".notify.message", a.Notify.Message)
		case a.Exec != nil:
			if len(a.Exec.Command) == 0 || a.Exec.Command[0] == "" {
				v.errorf(pb, p+".exec.command", "required: the program and its arguments")
			}
			if a.Exec.Timeout < 0 {
				v.errorf(pb, p+".exec.timeout", "must not be negative")
			}
		}
	}
	g := &sp.Guards
	if g.Cooldown < 0 {
		v.errorf(pb, "spec.guards.cooldown", "must not be negative")
	}
	if g.MaxRuns != nil {
		if g.MaxRuns.Count < 1 {
			v.errorf(pb, "spec.guards.maxRuns.count", "must be at least 1")
		}
		if g.MaxRuns.Per <= 0 {
			v.errorf(pb, "spec.guards.maxRuns.per", "required: the window, e.g. 24h")
		}
	}
	if g.ApprovalTimeout < 0 {
		v.errorf(pb, "spec.guards.approvalTimeout", "must not be negative")
	}
	if g.ApprovalTimeout == 0 {
		g.ApprovalTimeout = Duration(time.Hour)
	}
	switch g.Kind {
	case "":
		g.Kind = "other"
	case "rollback", "scale", "throttle", "feature-flag", "mitigation", "other":
	default:
		v.errorf(pb, "spec.guards.kind", "must be one of rollback, scale, throttle, feature-flag, mitigation, other; got %q", g.Kind)
	}
	if g.Cooldown == 0 && g.MaxRuns == nil && !g.Approval && !g.DryRun {
		v.warnf(pb, "spec.guards", "no cooldown, run limit or approval: nothing keeps this playbook from acting every evaluation cycle")
	}
	v.policyRefs(pb, "spec.guards.policies", g.Policies, PointPlaybook)
}

func (v *validator) trigger(pb *Playbook) {
	t := &pb.Spec.Trigger
	kinds := 0
	if t.SLO != "" {
		kinds++
	}
	if t.Gate != "" {
		kinds++
	}
	if t.Schedule != "" {
		kinds++
	}
	if kinds != 1 {
		v.errorf(pb, "spec.trigger", "set exactly one of slo (with on or burnRate), gate, schedule")
		return
	}
	switch {
	case t.SLO != "":
		slo := v.set.SLO(t.SLO)
		switch {
		case slo == nil:
			v.errorf(pb, "spec.trigger.slo", "SLO %q is not declared", t.SLO)
		case slo.Spec.Service != pb.Spec.Service:
			v.warnf(pb, "spec.trigger.slo", "SLO %q belongs to service %q, not %q", t.SLO, slo.Spec.Service, pb.Spec.Service)
		}
		if (len(t.On) == 0) == (t.BurnRate == nil) {
			v.errorf(pb, "spec.trigger", "an SLO trigger needs either on (firing, resolved, no_data) or burnRate")
		}
		for i, on := range t.On {
			if on != OnFiring && on != OnResolved && on != OnNoData {
				v.errorf(pb, fmt.Sprintf("spec.trigger.on[%d]", i), "must be firing, resolved or no_data, got %q", on)
			}
		}
		if t.Severity != "" && t.Severity != SeverityPage && t.Severity != SeverityTicket {
			v.errorf(pb, "spec.trigger.severity", "must be page or ticket, got %q", t.Severity)
		}
		if br := t.BurnRate; br != nil {
			switch {
			case br.Window <= 0:
				v.errorf(pb, "spec.trigger.burnRate.window", "required: a window such as 5m")
			case br.Window.D()%time.Minute != 0:
				v.errorf(pb, "spec.trigger.burnRate.window", "must be a whole number of minutes")
			case slo != nil && br.Window.D() > slo.Spec.Window.Length():
				v.errorf(pb, "spec.trigger.burnRate.window", "must not be longer than the SLO window %s", slo.Spec.Window)
			}
			if br.Above <= 0 {
				v.errorf(pb, "spec.trigger.burnRate.above", "must be positive")
			}
			if br.Below == 0 {
				br.Below = br.Above / 2
			} else if br.Below < 0 || br.Below >= br.Above {
				v.errorf(pb, "spec.trigger.burnRate.below", "the clear level must be below the trigger level %v (hysteresis), got %v", br.Above, br.Below)
			}
			if br.For < 0 {
				v.errorf(pb, "spec.trigger.burnRate.for", "must not be negative")
			}
		}
	case t.Gate != "":
		if v.set.Gate(t.Gate) == nil {
			v.errorf(pb, "spec.trigger.gate", "gate %q is not declared", t.Gate)
		}
	case t.Schedule != "":
		if _, err := ParseSchedule(t.Schedule); err != nil {
			v.errorf(pb, "spec.trigger.schedule", "%v", err)
		}
	}
}

func (v *validator) webhook(pb *Playbook, p string, w *WebhookAction) {
	switch strings.ToUpper(w.Method) {
	case "":
		w.Method = "POST"
	case "GET", "POST", "PUT", "PATCH", "DELETE":
		w.Method = strings.ToUpper(w.Method)
	default:
		v.errorf(pb, p+".method", "must be GET, POST, PUT, PATCH or DELETE, got %q", w.Method)
	}
	if w.URL == "" {
		v.errorf(pb, p+".url", "required")
	} else if v.template(pb, p+".url", w.URL) && !strings.Contains(w.URL, "{{") {
		v.absURL(pb, p+".url", w.URL)
	}
	for k, h := range w.Headers {
		v.template(pb, p+".headers."+k, h)
		lk := strings.ToLower(k)
		if (lk == "authorization" || strings.Contains(lk, "token") || strings.Contains(lk, "key") || strings.Contains(lk, "secret")) && !strings.Contains(h, "secret") {
			v.warnf(pb, p+".headers."+k, "looks like a credential written in the spec: reference it as {{ secret \"NAME\" }} and set QSP_SECRET_NAME in the server's environment")
		}
	}
	v.template(pb, p+".body", w.Body)
	if w.Timeout < 0 {
		v.errorf(pb, p+".timeout", "must not be negative")
	}
	if w.Timeout == 0 {
		w.Timeout = Duration(10 * time.Second)
	}
}

// TemplateFuncs are the functions playbook templates may call; the
// playbook runner provides the real secret function.
var TemplateFuncs = template.FuncMap{
	"secret": func(string) (string, error) { return "", nil },
	"json":   func(any) (string, error) { return "", nil },
	"upper":  strings.ToUpper,
	"lower":  strings.ToLower,
}

func (v *validator) template(o Object, path, text string) bool {
	if _, err := template.New(path).Funcs(TemplateFuncs).Option("missingkey=error").Parse(text); err != nil {
		v.errorf(o, path, "invalid template: %s", strings.TrimPrefix(err.Error(), "template: "))
		return false
	}
	return true
}

func (v *validator) absURL(o Object, path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errorf(o, path, "%q is not an absolute http(s) URL", raw)
	}
}

func (v *validator) serviceRef(o Object, path, name string) {
	switch {
	case name == "":
		v.errorf(o, path, "required")
	case v.set.Service(name) == nil:
		v.errorf(o, path, "service %q is not declared", name)
	}
}

func (v *validator) policyRefs(o Object, path string, names []string, point string) {
	for i, name := range names {
		p := v.set.Policy(name)
		switch {
		case p == nil:
			v.errorf(o, fmt.Sprintf("%s[%d]", path, i), "policy %q is not declared", name)
		case len(p.Spec.AppliesTo) > 0 && !slices.Contains(p.Spec.AppliesTo, point):
			v.errorf(o, fmt.Sprintf("%s[%d]", path, i), "policy %q does not apply to %ss (appliesTo: %s)", name, point, strings.Join(p.Spec.AppliesTo, ", "))
		}
	}
}

func (v *validator) labelMap(o Object, path string, m map[string]string) {
	for k := range m {
		if !model.LegacyValidation.IsValidLabelName(k) || strings.HasPrefix(k, "__") {
			v.errorf(o, path+"."+k, "%q is not a valid label name", k)
		}
	}
}

// ReservedAlertLabels are the labels QSP sets on every SLO alert (and on
// the alerts of generated Prometheus rules) from the SLO itself; a spec
// label of the same name is replaced by QSP's value.
var ReservedAlertLabels = []string{"alertname", "category", "service", "slo", "window"}

// reservedLabels warns about labels QSP overwrites in its alerts: the
// spec is legal, but the value written there never reaches Alertmanager.
func (v *validator) reservedLabels(o Object, path string, m map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if slices.Contains(ReservedAlertLabels, k) {
			v.warnf(o, path+"."+k, "label %q is set by QSP on every alert (to the SLO's %s); the value %q is replaced in alerts and generated rules: rename the label", k, reservedMeaning[k], m[k])
		}
	}
}

var reservedMeaning = map[string]string{
	"alertname": "alerting.name", "category": "category", "service": "service name", "slo": "name", "window": "burn-rate window",
}
