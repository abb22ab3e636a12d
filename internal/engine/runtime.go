package engine

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// sloRuntime is the live state of one SLO: its feeder and, per group, a
// rollup and alert states. Only the engine's cycle touches it.
type sloRuntime struct {
	plan   *plan
	feeder feeder
	// next is the first minute not yet folded, for every group.
	next   slo.Minute
	groups map[string]*groupRuntime
	// dropped counts groups refused by the cardinality limit.
	dropped map[string]bool
	// empty is the status of a grouped SLO that has no group yet.
	empty       *Status
	lastErr     error
	sourceDown  bool
	backfilling bool
	// target is the cycle's target minute: state is judged against it
	// even while folding is held back for late data.
	target slo.Minute
}

// groupRuntime is one group of an SLO (the only one when ungrouped).
type groupRuntime struct {
	key    string // "" when ungrouped
	labels labels.Labels
	roll   *rollup
	// lastSampled is the last minute with a sample; no data after it for
	// staleMinutes means no_data.
	lastSampled slo.Minute
	alerts      map[string]slo.Alert // by severity, incl. no_data
	status      *Status
	// partial are the events of the newest, not yet folded minute, up to
	// the partial settle time: windows add them so alerts see an outage
	// before its minute is complete.
	partial partialCounts
}

func newRuntime(p *plan, start slo.Minute) *sloRuntime {
	rt := &sloRuntime{plan: p, next: start, groups: map[string]*groupRuntime{}, dropped: map[string]bool{}}
	if p.newFeeder != nil {
		rt.feeder = p.newFeeder()
	}
	if len(p.slo.Spec.GroupBy) == 0 && p.composite == nil {
		// An ungrouped SLO always has its one group, data or not.
		rt.group("", labels.EmptyLabels(), start)
	}
	return rt
}

// admit enforces the cardinality limit: groups past maxGroups are dropped
// and counted, never tracked.
func (rt *sloRuntime) admit(key string) bool {
	if _, ok := rt.groups[key]; ok {
		return true
	}
	if rt.dropped[key] {
		return false
	}
	if len(rt.groups) >= rt.plan.slo.Spec.MaxGroups {
		rt.dropped[key] = true
		return false
	}
	return true
}

func (rt *sloRuntime) group(key string, ls labels.Labels, start slo.Minute) *groupRuntime {
	g := rt.groups[key]
	if g == nil {
		g = &groupRuntime{key: key, labels: ls, roll: newRollup(start, sizeFor(rt.plan.span)), lastSampled: start - staleMinutes - 1, alerts: map[string]slo.Alert{}}
		rt.groups[key] = g
	}
	return g
}

// fold adds the minutes [from, to) a feeder produced. Groups the feeder did
// not mention get empty minutes without data. Minutes inside a correction
// window count nothing but keep their data flag.
func (rt *sloRuntime) fold(from, to slo.Minute, fed map[string]*groupMinutes) {
	for key, gm := range fed {
		rt.group(key, gm.labels, from)
	}
	excluded := make([]bool, int(to-from))
	if len(rt.plan.corrections) > 0 {
		for i := range excluded {
			excluded[i] = rt.plan.corrections.Excludes(from + slo.Minute(i))
		}
	}
	for key, g := range rt.groups {
		gm := fed[key]
		for i := range int(to - from) {
			m := from + slo.Minute(i)
			if m < g.roll.next {
				continue // a group created mid-range starts later
			}
			var c slo.Counts
			if gm != nil {
				c = gm.counts[i]
				if gm.sampled[i] {
					g.lastSampled = m
				}
			}
			if excluded[i] {
				c = slo.Counts{}
			}
			g.roll.fold(m, c, m-g.lastSampled < staleMinutes)
		}
	}
	rt.next = to
}

// groupExpiry is how long a group without telemetry is kept in no_data
// before it is forgotten.
const groupExpiry = 6 * time.Hour

func (rt *sloRuntime) expireGroups() {
	if len(rt.plan.slo.Spec.GroupBy) == 0 {
		return
	}
	limit := slo.Minute(groupExpiry / time.Minute)
	for key, g := range rt.groups {
		if rt.next-g.lastSampled > limit {
			delete(rt.groups, key)
		}
	}
}

// evalContext carries what one evaluation needs beyond the runtime.
type evalContext struct {
	now        time.Time
	sourceDown bool
	// children resolves composite children by SLO name.
	children func(name string) *sloRuntime
}

// windowOf returns the counts of the last d of group g, with the events of
// the newest, partial minute.
func windowOf(g *groupRuntime, d time.Duration) (windowSums, bool) {
	w := g.roll.last(int64(d / time.Minute))
	w.counts = w.counts.Add(g.partial.counts)
	return w, w.data > 0 || g.partial.sampled
}

// evaluate computes the status of every group and steps its alerts. It
// returns the alert transitions.
func (rt *sloRuntime) evaluate(ec evalContext) []Transition {
	p := rt.plan
	if p.composite != nil {
		return rt.evaluateComposite(ec)
	}
	var out []Transition
	rt.empty = nil
	if len(rt.groups) == 0 {
		st := rt.baseStatus(nil, ec)
		st.Budget = slo.ComputeBudget(slo.Counts{}, rt.plan.budget)
		st.State, st.Reason = StateNoData, "no series match the indicator's queries, so there is no group yet"
		if ec.sourceDown || rt.sourceDown || rt.lastErr != nil {
			st.Reason = "telemetry source unavailable"
		}
		rt.empty = st
	}
	for _, g := range rt.groups {
		st := rt.baseStatus(g, ec)
		windowFn := func(d time.Duration) slo.WindowResult {
			w, ok := windowOf(g, d)
			return slo.WindowResult{Counts: w.counts, NoData: !ok}
		}
		rt.fillWindows(st, windowFn, g)
		rt.fillBudget(st, g)
		rt.setState(st, g, ec)
		out = append(out, rt.stepAlerts(st, g.alerts, ec, windowFn)...)
		g.status = st
	}
	return out
}

func (rt *sloRuntime) baseStatus(g *groupRuntime, ec evalContext) *Status {
	p := rt.plan
	s := p.slo
	ls := labels.EmptyLabels()
	if g != nil {
		ls = g.labels
	}
	st := &Status{
		Key: statusKey(s.Name(), ls), SLO: s.Name(), Service: s.Spec.Service, Category: s.Spec.Category,
		Objective: p.objective, Window: s.Spec.Window.String(), Budgeting: s.Spec.Budgeting.Method,
		Approximate: p.approximate, EvaluatedAt: ec.now, DroppedGroup: len(rt.dropped),
	}
	if s.Spec.Budgeting.Method == "" {
		st.Budgeting = spec.Occurrences
	}
	if g != nil && g.labels.Len() > 0 {
		st.Group = g.labels.Map()
	}
	if g != nil && g.lastSampled >= g.roll.start {
		st.DataUntil = (g.lastSampled + 1).Time()
	}
	return st
}

// statusKey names an SLO group: the SLO name and its group labels.
func statusKey(name string, ls labels.Labels) string {
	if ls.Len() == 0 {
		return name
	}
	return name + ls.String()
}

// reportWindow is a window every status reports, with its name.
type reportWindow struct {
	d    time.Duration
	name string
}

// windowList returns every window the SLO reports: the standard ones and
// each alert window, sorted.
func (p *plan) windowList() []reportWindow {
	ws := append(slices.Clone(standardWindows), p.extraWindows...)
	for _, conds := range p.tiers {
		for _, c := range conds {
			ws = append(ws, c.Long, c.Short)
		}
	}
	slices.Sort(ws)
	ws = slices.Compact(ws)
	out := make([]reportWindow, len(ws))
	for i, d := range ws {
		out[i] = reportWindow{d, spec.Duration(d).String()}
	}
	return out
}

func (rt *sloRuntime) fillWindows(st *Status, window func(time.Duration) slo.WindowResult, g *groupRuntime) {
	p := rt.plan
	st.Windows = make([]WindowStat, 0, len(p.windows))
	// One backing array for every window's SLI and burn-rate pointers.
	vals := make([]float64, 0, 2*len(p.windows))
	for _, rw := range p.windows {
		d := rw.d
		wr := window(d)
		ws := WindowStat{Window: d, Name: rw.name, Good: wr.Counts.Good, Total: wr.Counts.Total, NoData: wr.NoData}
		if g != nil {
			w := g.roll.last(int64(d / time.Minute))
			ws.From = w.from.Time()
			if mins := int64(w.to - w.from); mins > 0 {
				ws.Coverage = float64(w.data) / float64(mins)
			}
		} else if !wr.NoData {
			ws.Coverage = 1
		}
		if r, ok := wr.Counts.Ratio(); ok && !wr.NoData {
			b, _ := slo.BurnRate(wr.Counts, p.budget)
			vals = append(vals, r, b)
			ws.SLI, ws.BurnRate = &vals[len(vals)-2], &vals[len(vals)-1]
		}
		ws.LowTraffic = !wr.NoData && wr.Counts.Total < max(p.minEvents, 1)
		st.Windows = append(st.Windows, ws)
	}
}

// budgetWindow returns the SLO window ending at the group's next minute:
// the rolling window, or the calendar period so far.
func (rt *sloRuntime) budgetWindow(g *groupRuntime) (from, to slo.Minute) {
	p := rt.plan
	to = g.roll.next
	if p.calendar != "" {
		start, _ := slo.CalendarPeriod(to.Time(), p.calendar, p.loc)
		return slo.CeilMinute(start), to
	}
	return to - slo.Minute(p.window/time.Minute), to
}

func (rt *sloRuntime) fillBudget(st *Status, g *groupRuntime) {
	from, to := rt.budgetWindow(g)
	w := g.roll.window(from, to)
	rt.setBudget(st, w.counts.Add(g.partial.counts), w.from.Time(), w.data == 0 && !g.partial.sampled)
}

func (rt *sloRuntime) setBudget(st *Status, c slo.Counts, from time.Time, noData bool) {
	p := rt.plan
	st.PeriodStart = from
	st.Budget = slo.ComputeBudget(c, p.budget)
	if r, ok := c.Ratio(); ok && !noData {
		st.SLI = &r
	}
	length := p.window
	if p.calendar != "" {
		start, end := slo.CalendarPeriod(st.EvaluatedAt, p.calendar, p.loc)
		length = end.Sub(start)
	}
	allowed, remaining := slo.TimeBudget(st.Budget, length)
	st.BudgetTime = Durations{allowed, remaining}
	st.PolicyStep = nil
	for _, step := range p.slo.Spec.BudgetPolicy {
		if st.Budget.ConsumedRatio >= step.Consumed.Ratio()-1e-12 {
			st.PolicyStep = &PolicyStep{Consumed: step.Consumed.Ratio(), Action: step.Action, Message: step.Message}
		}
	}
}

// setState decides the SLO's state and why.
func (rt *sloRuntime) setState(st *Status, g *groupRuntime, ec evalContext) {
	latest := max(g.roll.next, rt.target) - 1
	lastSampled := g.lastSampled
	if g.partial.sampled {
		lastSampled = latest
	}
	switch {
	case ec.sourceDown || rt.sourceDown:
		st.State = StateNoData
		st.Reason = "telemetry source unavailable"
		if rt.lastErr != nil {
			st.Reason += ": " + rt.lastErr.Error()
		}
	case rt.lastErr != nil:
		st.State = StateNoData
		st.Reason = "query failed: " + rt.lastErr.Error()
	case latest-lastSampled >= staleMinutes:
		st.State = StateNoData
		if g.lastSampled < g.roll.start {
			st.Reason = "no series match the indicator's queries"
			if rt.plan.slo.Spec.Indicator.Latency != nil && rt.plan.slo.Spec.Indicator.Latency.Percentile == 0 {
				st.Reason += fmt.Sprintf(" (is %s a bucket boundary of the histogram?)", rt.plan.slo.Spec.Indicator.Latency.Threshold)
			}
		} else {
			st.Reason = fmt.Sprintf("no samples since %s", (g.lastSampled + 1).Time().Format(time.RFC3339))
		}
	default:
		st.State = StateOK
	}
}

// stepAlerts runs each alert's state machine and returns transitions.
func (rt *sloRuntime) stepAlerts(st *Status, alerts map[string]slo.Alert, ec evalContext, window func(time.Duration) slo.WindowResult) []Transition {
	p := rt.plan
	var out []Transition
	st.Alerts = make([]AlertStatus, 0, len(p.tiers)+1)
	noData := st.State == StateNoData
	lowTraffic := true
	anyTier := false
	for _, sev := range []string{spec.SeverityPage, spec.SeverityTicket} {
		conds, ok := p.tiers[sev]
		if !ok {
			continue
		}
		anyTier = true
		active, results := slo.EvaluateConditions(conds, p.budget, p.minEvents, window)
		for _, r := range results {
			if !r.LowTraffic {
				lowTraffic = false
			}
		}
		as := AlertStatus{Severity: sev, Name: p.slo.Spec.Alerting.Name, Conditions: results}
		for _, r := range results {
			if r.Met {
				as.Condition = r.Condition.String()
				break
			}
		}
		if noData {
			// Without telemetry a burn-rate alert neither fires nor
			// resolves: resolving would report health nobody can see. The
			// telemetry alert says what is wrong.
			a := alerts[sev]
			as.State, as.Since, as.FiredAt, as.ResolvedAt = cmpState(a.State), a.ActiveSince, a.FiredAt, a.ResolvedAt
		} else {
			out = append(out, rt.step(st, alerts, &as, ec.now, active, p.forDur[sev])...)
		}
		st.Alerts = append(st.Alerts, as)
	}
	// Telemetry loss raises its own alert after the grace period, unless
	// the whole source is down: then the engine raises one alert for all.
	nd := p.slo.Spec.Alerting.NoData
	as := AlertStatus{Severity: SeverityNoData, Name: AlertTelemetryMissing}
	ndActive := noData && nd.Alerts() && !ec.sourceDown && !rt.sourceDown && !rt.backfilling
	out = append(out, rt.step(st, alerts, &as, ec.now, ndActive, nd.After.D())...)
	st.Alerts = append(st.Alerts, as)

	if !noData {
		switch {
		case st.hasAlert(slo.Firing):
			st.State = StateFiring
		case st.hasAlert(slo.Pending):
			st.State = StatePending
		case anyTier && lowTraffic:
			st.State = StateLowTraffic
			st.Reason = fmt.Sprintf("fewer than %v events in the alert windows", max(p.minEvents, 1))
		}
	}
	return out
}

func cmpState(s slo.AlertState) slo.AlertState {
	if s == "" {
		return slo.Inactive
	}
	return s
}

func (st *Status) hasAlert(s slo.AlertState) bool {
	for _, a := range st.Alerts {
		if a.Severity != SeverityNoData && a.State == s {
			return true
		}
	}
	return false
}

func (rt *sloRuntime) step(st *Status, alerts map[string]slo.Alert, as *AlertStatus, now time.Time, active bool, forDur time.Duration) []Transition {
	prev := alerts[as.Severity]
	next, changed := prev.Step(now, active, forDur)
	alerts[as.Severity] = next
	as.State, as.Since, as.FiredAt, as.ResolvedAt = next.State, next.ActiveSince, next.FiredAt, next.ResolvedAt
	if !changed || rt.backfilling {
		return nil
	}
	from := prev.State
	if from == "" {
		from = slo.Inactive
	}
	return []Transition{{
		Key: st.Key, SLO: st.SLO, Service: st.Service, Severity: as.Severity, Alert: as.Name,
		From: from, To: next.State, At: now, Condition: as.Condition, Status: st,
	}}
}

// aggregate returns the counts of window d over all groups of an SLO, for
// composites: children are judged as a whole.
func (rt *sloRuntime) aggregate(d time.Duration) slo.WindowResult {
	var c slo.Counts
	data := false
	for _, g := range rt.groups {
		w, ok := windowOf(g, d)
		c = c.Add(w.counts)
		data = data || ok
	}
	return slo.WindowResult{Counts: c, NoData: !data}
}

// compositeWindow computes a composite's error ratio over d from its
// children, recursively for nested composites.
func (rt *sloRuntime) compositeWindow(ec evalContext, d time.Duration, depth int) slo.WindowResult {
	if depth > 16 {
		return slo.WindowResult{NoData: true}
	}
	parts := make([]slo.Part, 0, len(rt.plan.composite))
	for _, c := range rt.plan.composite {
		child := ec.children(c.name)
		if child == nil {
			return slo.WindowResult{NoData: true}
		}
		var wr slo.WindowResult
		if child.plan.composite != nil {
			wr = child.compositeWindow(ec, d, depth+1)
		} else {
			wr = child.aggregate(d)
		}
		e, ok := wr.Counts.ErrorRatio()
		if !ok && !wr.NoData {
			e, ok = 0, true // data but no events: nothing went wrong
		}
		parts = append(parts, slo.Part{Weight: c.weight, ErrorRatio: e, Budget: child.plan.budget, NoData: wr.NoData || !ok})
	}
	e, ok := slo.CompositeErrorRatio(parts, rt.plan.budget)
	if !ok {
		return slo.WindowResult{NoData: true}
	}
	// A composite has no events of its own: its window is one unit whose
	// good share is 1 - e.
	return slo.WindowResult{Counts: slo.Counts{Good: 1 - e, Total: 1}}
}

func (rt *sloRuntime) evaluateComposite(ec evalContext) []Transition {
	p := rt.plan
	st := rt.baseStatus(nil, ec)
	window := func(d time.Duration) slo.WindowResult { return rt.compositeWindow(ec, d, 0) }
	rt.fillWindows(st, window, nil)
	for i := range st.Windows {
		st.Windows[i].Good, st.Windows[i].Total = 0, 0
		st.Windows[i].LowTraffic = false
	}
	// The SLO window.
	var length time.Duration
	if p.calendar != "" {
		start, _ := slo.CalendarPeriod(ec.now, p.calendar, p.loc)
		length = ec.now.Sub(start).Truncate(time.Minute)
		st.PeriodStart = start
	} else {
		length = p.window
		st.PeriodStart = ec.now.Add(-length)
	}
	wr := window(length)
	st.Budget = slo.Budget{Fraction: p.budget, RemainingRatio: 1}
	if !wr.NoData {
		e, _ := wr.Counts.ErrorRatio()
		st.Budget.ConsumedRatio = e / p.budget
		st.Budget.RemainingRatio = 1 - st.Budget.ConsumedRatio
		sli := 1 - e
		st.SLI = &sli
	}
	fullLength := length
	if p.calendar != "" {
		s, e := slo.CalendarPeriod(ec.now, p.calendar, p.loc)
		fullLength = e.Sub(s)
	}
	allowed, remaining := slo.TimeBudget(st.Budget, fullLength)
	st.BudgetTime = Durations{allowed, remaining}
	for _, step := range p.slo.Spec.BudgetPolicy {
		if st.Budget.ConsumedRatio >= step.Consumed.Ratio()-1e-12 {
			st.PolicyStep = &PolicyStep{Consumed: step.Consumed.Ratio(), Action: step.Action, Message: step.Message}
		}
	}
	st.State = StateOK
	if short := window(5 * time.Minute); short.NoData {
		st.State = StateNoData
		st.Reason = "a child SLO has no data: " + strings.Join(rt.childrenWithoutData(ec), ", ")
	}
	if rt.groups[""] == nil {
		rt.groups[""] = &groupRuntime{alerts: map[string]slo.Alert{}}
	}
	g := rt.groups[""]
	out := rt.stepAlerts(st, g.alerts, ec, window)
	g.status = st
	return out
}

func (rt *sloRuntime) childrenWithoutData(ec evalContext) []string {
	var names []string
	for _, c := range rt.plan.composite {
		child := ec.children(c.name)
		if child == nil || child.aggregate(5*time.Minute).NoData {
			names = append(names, c.name)
		}
	}
	return names
}

// statuses returns the statuses of every group, sorted by key.
func (rt *sloRuntime) statuses() []*Status {
	if rt.empty != nil {
		return []*Status{rt.empty}
	}
	if len(rt.groups) == 1 {
		for _, g := range rt.groups {
			if g.status != nil {
				return []*Status{g.status}
			}
		}
		return nil
	}
	out := make([]*Status, 0, len(rt.groups))
	for _, k := range slices.Sorted(maps.Keys(rt.groups)) {
		if st := rt.groups[k].status; st != nil {
			out = append(out, st)
		}
	}
	return out
}
