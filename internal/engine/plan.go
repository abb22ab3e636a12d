package engine

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// plan is how the engine evaluates one SLO: where its counts come from,
// which windows it answers and which alert conditions it checks. Plans are
// built from the validated spec once per (re)load.
type plan struct {
	slo       *spec.SLO
	service   *spec.Service
	newFeeder func() feeder // nil for composites
	// hash identifies everything that shapes the rollups; persisted
	// rollups are reused only under the same hash.
	hash        string
	budget      float64 // 1 - objective
	objective   float64
	window      time.Duration // rolling length; 0 for calendar windows
	calendar    string
	loc         *time.Location
	span        int64 // minutes the rollups must reach back
	tiers       map[string][]slo.BurnCondition
	forDur      map[string]time.Duration
	corrections slo.Corrections
	minEvents   float64
	sliceLength slo.Minute // 0 for occurrences
	approximate bool
	composite   []compositeChild
	windows     []reportWindow // every window a status reports
	// alertTiers are the burn-rate alerts, page first.
	alertTiers []alertTier
	// status holds what every status of the SLO starts with.
	status Status
	// extraWindows are windows others read (playbook burn-rate triggers).
	extraWindows []time.Duration
	// exhaustion are the tiers' timeToExhaustion conditions by severity.
	exhaustion map[string]*exhaustionCond
	// forecastWin are the burn windows forecasts project with.
	forecastWin []time.Duration
}

// alertTier is one burn-rate alert of a plan.
type alertTier struct {
	severity string
	index    int // in alertStates
	conds    []slo.BurnCondition
	forDur   time.Duration
	// exhaustion is the tier's timeToExhaustion condition, if any.
	exhaustion *exhaustionCond
}

type compositeChild struct {
	name   string
	weight float64
}

// standardWindows are reported for every SLO besides its alert windows,
// so dashboards can compare SLOs window by window.
var standardWindows = []time.Duration{
	5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour,
}

func compile(s *spec.SLO, set *spec.Set) (*plan, error) {
	p := &plan{
		slo:       s,
		service:   set.Service(s.Spec.Service),
		budget:    s.Spec.Objective.Budget(),
		objective: s.Spec.Objective.Ratio(),
		minEvents: float64(s.Spec.Alerting.MinEvents),
		tiers:     map[string][]slo.BurnCondition{},
		forDur:    map[string]time.Duration{},
	}
	w := s.Spec.Window
	if w.Calendar != "" {
		p.calendar, p.loc = w.Calendar, w.Location()
		p.span = int64(w.Length() / time.Minute)
	} else {
		p.window = w.Rolling.D()
		p.span = int64(p.window / time.Minute)
	}
	for _, sev := range []string{spec.SeverityPage, spec.SeverityTicket} {
		tier := s.Spec.Alerting.Tier(sev)
		if tier == nil {
			continue
		}
		for _, bw := range tier.Windows {
			p.tiers[sev] = append(p.tiers[sev], slo.BurnCondition{Long: bw.Long.D(), Short: bw.Short.D(), Factor: bw.Factor})
			p.span = max(p.span, int64(bw.Long.D()/time.Minute))
		}
		p.forDur[sev] = tier.For.D()
		if c := tier.TimeToExhaustion; c != nil && c.Window > 0 {
			if p.exhaustion == nil {
				p.exhaustion = map[string]*exhaustionCond{}
			}
			p.exhaustion[sev] = &exhaustionCond{within: c.Within.D(), window: c.Window.D()}
			p.extraWindows = append(p.extraWindows, c.Window.D())
		}
	}
	p.span = max(p.span, int64(standardWindows[len(standardWindows)-1]/time.Minute))
	// Playbooks that trigger on a burn rate read it from the SLO's
	// status: report their windows too.
	for _, pb := range set.Playbooks {
		if br := pb.Spec.Trigger.BurnRate; br != nil && pb.Spec.Trigger.SLO == s.Name() && br.Window > 0 {
			p.extraWindows = append(p.extraWindows, br.Window.D())
			p.span = max(p.span, int64(br.Window.D()/time.Minute))
		}
	}
	p.corrections = corrections(s, p.service)
	if s.Spec.Budgeting.IsTimeslices() {
		p.sliceLength = slo.Minute(s.Spec.Budgeting.SliceLength.D() / time.Minute)
	}

	ind := s.Spec.Indicator
	switch {
	case ind.Composite != nil:
		for _, part := range ind.Composite.Objectives {
			p.composite = append(p.composite, compositeChild{part.SLO, part.Weight})
		}
	case ind.Ratio != nil:
		if err := p.ratio(ind.Ratio); err != nil {
			return nil, err
		}
	case ind.Latency != nil:
		if err := p.latency(ind.Latency); err != nil {
			return nil, err
		}
	case ind.Threshold != nil:
		t := *ind.Threshold
		p.newFeeder = func() feeder {
			return newValueSlices(t.Query, valueStep, p.sliceLength, t.Compare, s.Spec.GroupBy)
		}
	case ind.Availability != nil:
		if err := p.availability(ind.Availability.Query); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("SLO %s: no indicator", s.Name())
	}
	if p.newFeeder != nil {
		p.approximate = p.newFeeder().approximate()
	}
	p.windows = p.windowList()
	for i, sev := range severities {
		if conds, ok := p.tiers[sev]; ok {
			p.alertTiers = append(p.alertTiers, alertTier{severity: sev, index: i, conds: conds, forDur: p.forDur[sev], exhaustion: p.exhaustion[sev]})
		}
	}
	p.forecastWin = p.forecastWindows()
	p.status = Status{
		Key: s.Name(), SLO: s.Name(), Service: s.Spec.Service, Category: s.Spec.Category,
		Objective: p.objective, Window: s.Spec.Window.String(), Budgeting: cmp.Or(s.Spec.Budgeting.Method, spec.Occurrences),
		Approximate: p.approximate,
	}
	p.hash = planHash(s, p.service)
	return p, nil
}

// wrapSlices makes an event feeder count time slices when the SLO budgets
// by slices.
func (p *plan) wrapSlices(f func() feeder) func() feeder {
	b := p.slo.Spec.Budgeting
	if !b.IsTimeslices() {
		return f
	}
	objective := p.objective
	if !b.SliceObjective.IsZero() {
		objective = b.SliceObjective.Ratio()
	}
	ratio := b.Method == spec.RatioTimeslices
	return func() feeder {
		return &eventSlices{inner: f(), length: p.sliceLength, objective: objective, ratio: ratio, partial: map[string]slo.Counts{}}
	}
}

func (p *plan) ratio(r *spec.RatioIndicator) error {
	by := p.slo.Spec.GroupBy
	if r.ErrorRatio != "" {
		q := spec.ExpandWindow(r.ErrorRatio, time.Minute)
		if _, err := spec.ParseExpr(q); err != nil {
			return fmt.Errorf("SLO %s: %w", p.slo.Name(), err)
		}
		p.newFeeder = p.wrapSlices(func() feeder { return &errorRatioFeeder{query: q, groupBy: by} })
		return nil
	}
	total, totalOK := counterSelector(r.Total)
	num := r.Good
	if num == "" {
		num = r.Bad
	}
	numSel, numOK := counterSelector(num)
	if totalOK && numOK {
		p.newFeeder = p.wrapSlices(func() feeder {
			if r.Good != "" {
				return newRatioFeeder(newCounter(numSel, by), nil, newCounter(total, by))
			}
			return newRatioFeeder(nil, newCounter(numSel, by), newCounter(total, by))
		})
		return nil
	}
	// Any other PromQL: evaluate at minute steps.
	rf := rangeRatioFeeder{groupBy: by}
	for i, q := range []string{r.Good, r.Bad, r.Total} {
		if q == "" {
			continue
		}
		expanded := spec.ExpandWindow(q, time.Minute)
		expr, err := spec.ParseExpr(expanded)
		if err != nil {
			return fmt.Errorf("SLO %s: %w", p.slo.Name(), err)
		}
		rf.perSecond[i] = usesRate(expr)
		switch i {
		case 0:
			rf.good = expanded
		case 1:
			rf.bad = expanded
		case 2:
			rf.total = expanded
		}
	}
	p.newFeeder = p.wrapSlices(func() feeder { f := rf; return &f })
	return nil
}

// counterSelector recognises the common SLI shape
// sum [by (...)] (rate|increase(selector[window])) and returns its
// selector, from which exact per-minute counts can be computed.
func counterSelector(q string) ([]*labels.Matcher, bool) {
	expr, err := spec.ParseExpr(spec.ExpandWindow(q, 5*time.Minute))
	if err != nil {
		return nil, false
	}
	expr = unwrapParens(expr)
	agg, ok := expr.(*parser.AggregateExpr)
	if !ok || agg.Op != parser.SUM || agg.Without || agg.Param != nil {
		return nil, false
	}
	call, ok := unwrapParens(agg.Expr).(*parser.Call)
	if !ok || (call.Func.Name != "rate" && call.Func.Name != "increase") || len(call.Args) != 1 {
		return nil, false
	}
	ms, ok := call.Args[0].(*parser.MatrixSelector)
	if !ok {
		return nil, false
	}
	vs, ok := ms.VectorSelector.(*parser.VectorSelector)
	if !ok || vs.OriginalOffset != 0 || vs.Timestamp != nil || vs.StartOrEnd != 0 {
		return nil, false
	}
	return vs.LabelMatchers, true
}

func unwrapParens(e parser.Expr) parser.Expr {
	for {
		p, ok := e.(*parser.ParenExpr)
		if !ok {
			return e
		}
		e = p.Expr
	}
}

func usesRate(e parser.Expr) bool {
	found := false
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if c, ok := n.(*parser.Call); ok && (c.Func.Name == "rate" || c.Func.Name == "irate") {
			found = true
		}
		return nil
	})
	return found
}

func (p *plan) latency(l *spec.LatencyIndicator) error {
	ms, err := spec.ParseSelector(l.Histogram)
	if err != nil {
		return fmt.Errorf("SLO %s: histogram: %w", p.slo.Name(), err)
	}
	var name string
	var rest []*labels.Matcher
	for _, m := range ms {
		if m.Name == model.MetricNameLabel {
			name = m.Value
			continue
		}
		rest = append(rest, m)
	}
	threshold := l.Threshold.D().Seconds()
	by := p.slo.Spec.GroupBy
	if l.Percentile != 0 {
		// histogram_quantile over each slice, judged at the slice's end.
		grouping := append([]string{"le"}, by...)
		q := fmt.Sprintf("histogram_quantile(%s, sum by (%s) (rate(%s[%s])))",
			strconv.FormatFloat(l.Percentile/100, 'f', -1, 64), strings.Join(grouping, ", "),
			selectorString(name+"_bucket", rest), spec.Duration(time.Duration(p.sliceLength)*time.Minute))
		length := p.sliceLength
		p.newFeeder = func() feeder {
			return newValueSlices(q, time.Duration(length)*time.Minute, length, func(v float64) bool { return v <= threshold }, by)
		}
		return nil
	}
	le, err := labels.NewMatcher(labels.MatchRegexp, "le", spec.LeRegexp(threshold))
	if err != nil {
		return err
	}
	bucket := append(withName(name+"_bucket", rest), le)
	count := withName(name+"_count", rest)
	p.newFeeder = p.wrapSlices(func() feeder {
		return newRatioFeeder(newCounter(bucket, by), nil, newCounter(count, by))
	})
	return nil
}

func withName(name string, ms []*labels.Matcher) []*labels.Matcher {
	out := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, name)}
	return append(out, ms...)
}

func selectorString(name string, ms []*labels.Matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

func (p *plan) availability(q string) error {
	by := p.slo.Spec.GroupBy
	cond := func(v float64) bool { return v >= 1 }
	if p.sliceLength > 0 {
		length := p.sliceLength
		p.newFeeder = func() feeder { return newValueSlices(q, valueStep, length, cond, by) }
		return nil
	}
	// A plain selector counts every probe sample; anything else is
	// evaluated once a minute, each value one event.
	if ms, err := spec.ParseSelector(q); err == nil {
		p.newFeeder = func() feeder { return &sampleFeeder{matchers: ms, groupBy: by} }
		return nil
	}
	length := slo.Minute(1)
	p.newFeeder = func() feeder { return newValueSlices(q, time.Minute, length, cond, by) }
	return nil
}

// corrections gathers the SLO's and its service's maintenance windows.
func corrections(s *spec.SLO, svc *spec.Service) slo.Corrections {
	var cs []spec.Correction
	if svc != nil {
		cs = append(cs, svc.Spec.Corrections...)
	}
	cs = append(cs, s.Spec.Corrections...)
	out := make(slo.Corrections, 0, len(cs))
	for _, c := range cs {
		out = append(out, slo.Correction{Start: c.Start, Length: c.Length(), Every: c.Every.D(), Until: c.Until})
	}
	return out
}

// planHash covers what the rollups depend on: the indicator, budgeting,
// grouping, window and corrections. Alerting, objectives and labels can
// change without rebuilding history.
func planHash(s *spec.SLO, svc *spec.Service) string {
	var svcCorrections []spec.Correction
	if svc != nil {
		svcCorrections = svc.Spec.Corrections
	}
	objective := ""
	if s.Spec.Budgeting.Method == spec.Timeslices {
		objective = s.Spec.Objective.Percent() // slices are judged against it
	}
	// YAML, not JSON: the spec's value types marshal themselves to YAML.
	b, _ := yaml.Marshal(struct {
		Indicator   spec.Indicator       `yaml:"i"`
		Budgeting   spec.Budgeting       `yaml:"b"`
		GroupBy     []string             `yaml:"g"`
		Window      spec.Window          `yaml:"w"`
		Objective   string               `yaml:"o"`
		Corrections [2][]spec.Correction `yaml:"c"`
		Version     int                  `yaml:"v"`
	}{s.Spec.Indicator, s.Spec.Budgeting, s.Spec.GroupBy, s.Spec.Window, objective, [2][]spec.Correction{svcCorrections, s.Spec.Corrections}, rollupVersion})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
