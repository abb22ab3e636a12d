package engine

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// sloRuntime is the live state of one SLO: its feeder and, per group, a
// rollup and alert states. Only the engine's cycle changes it.
type sloRuntime struct {
	// mu guards groups, list and the groups' rollups and partial minutes
	// against the readers outside the cycle (History, Counts, BadSince,
	// DeployImpact: a page view or an incident): the cycle's workers hold
	// it to fold, readers hold it shared. The cycle's own reads need no lock.
	mu     sync.RWMutex
	plan   *plan
	feeder feeder
	// next is the first minute not yet folded, for every group.
	next   slo.Minute
	groups map[string]*groupRuntime
	// list holds the groups too, sorted by key: iterating over a slice is
	// much cheaper than over a map, and a cycle does it several times for
	// every SLO. addGroup and removeGroups keep both.
	list []*groupRuntime
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
	// reqs are the feeder's raw-sample reads, one per selector, reused
	// every cycle.
	reqs []selectorRequest
	// canPeek says the feeder reads the partial minute; known says
	// whether a group exists, for its peek.
	canPeek bool
	known   func(key string) bool
	// published and transitions are the outcome of the last evaluation:
	// the statuses of its groups sorted by key, new each time since the
	// snapshot keeps them, and its alert transitions.
	published   []*Status
	transitions []Transition
	// reviseFrom, when set, is where the next read starts so late samples
	// revise folded minutes (see markRevisions).
	reviseFrom time.Time
	// lateDropped counts samples that came too late to be counted.
	lateDropped int64
	// peekTo is where the groups' partial minutes end, when they were
	// read (zero otherwise): windows end there.
	peekTo edge
	// subMinute says the feeder splits minutes by step (minuteHeads),
	// so windows may end inside a minute.
	subMinute bool
	// trendBuf and memo are scratch space for the forecasts.
	trendBuf []slo.TrendPoint
	memo     *rollOffMemo
}

// edge is a window edge: a minute boundary plus q steps (see
// subSteps).
type edge struct {
	m slo.Minute
	q int
}

func (e edge) time() time.Time { return e.m.Time().Add(time.Duration(e.q) * subMs * time.Millisecond) }
func (e edge) ms() int64       { return minuteMs(e.m) + int64(e.q)*subMs }
func (e edge) after(o edge) bool {
	return e.m > o.m || e.m == o.m && e.q > o.q
}

// edgeOf returns the edge at or before t, on steps when sub, else on
// minutes.
func edgeOf(t time.Time, sub bool) edge {
	e := edge{m: slo.MinuteOf(t)}
	if sub {
		e.q = int(t.Sub(e.m.Time()) / (subMs * time.Millisecond))
	}
	return e
}

// groupRuntime is one group of an SLO (the only one when ungrouped).
type groupRuntime struct {
	key    string // "" when ungrouped
	labels labels.Labels
	roll   *rollup
	// lastSampled is the last minute with a sample; no data after it for
	// staleMinutes means no_data.
	lastSampled slo.Minute
	alerts      alertStates
	status      *Status
	// statusKey and groupMap are what statuses say of the group's labels,
	// worked out once: statuses share the map, and nobody changes it.
	statusKey string
	groupMap  map[string]string
	// partial are the events of the newest, not yet folded minute, up to
	// the partial settle time: windows add them so alerts see an outage
	// before its minute is complete.
	partial partialCounts
	// trend are the hourly samples of the remaining budget for the trend
	// forecasts.
	trend trendRing
}

func newRuntime(p *plan, start slo.Minute) *sloRuntime {
	rt := &sloRuntime{plan: p, next: start, groups: map[string]*groupRuntime{}, dropped: map[string]bool{}}
	if p.newFeeder != nil {
		rt.feeder = p.newFeeder()
		for _, ms := range rt.feeder.selectors() {
			rt.reqs = append(rt.reqs, newSelectorRequest(ms))
		}
		_, rt.canPeek = rt.feeder.(peeker)
		_, rt.subMinute = rt.feeder.(*ratioFeeder)
	}
	rt.known = func(key string) bool { _, ok := rt.groups[key]; return ok }
	if len(p.slo.Spec.GroupBy) == 0 && p.composite == nil {
		// An ungrouped SLO always has its one group, data or not.
		rt.group("", labels.EmptyLabels(), start)
	}
	return rt
}

// releaseResults lets go of the samples read for the runtime.
func (rt *sloRuntime) releaseResults() {
	for k := range rt.reqs {
		rt.reqs[k].result, rt.reqs[k].err = nil, nil
	}
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
		g = rt.newGroup(key, ls, newRollup(start, sizeFor(rt.plan.span)), start-staleMinutes-1)
		rt.addGroup(g)
	}
	return g
}

// newGroup returns a group of the runtime's SLO; roll is nil for
// composites.
func (rt *sloRuntime) newGroup(key string, ls labels.Labels, roll *rollup, lastSampled slo.Minute) *groupRuntime {
	g := &groupRuntime{key: key, labels: ls, roll: roll, lastSampled: lastSampled, statusKey: statusKey(rt.plan.slo.Name(), ls)}
	if ls.Len() > 0 {
		g.groupMap = ls.Map()
	}
	return g
}

// alertStates are a group's alert states by severity (severities).
type alertStates [3]slo.Alert

// severities are the alerts of a group: burn-rate alerts and telemetry
// loss.
var severities = [3]string{spec.SeverityPage, spec.SeverityTicket, SeverityNoData}

// severityIndex returns the index of severity sev in alertStates.
func severityIndex(sev string) (int, bool) {
	for i, s := range severities {
		if s == sev {
			return i, true
		}
	}
	return 0, false
}

// addGroup adds group g, replacing any group of the same key.
func (rt *sloRuntime) addGroup(g *groupRuntime) {
	rt.groups[g.key] = g
	i, found := slices.BinarySearchFunc(rt.list, g.key, func(x *groupRuntime, key string) int { return strings.Compare(x.key, key) })
	if found {
		rt.list[i] = g
	} else {
		rt.list = slices.Insert(rt.list, i, g)
	}
}

// removeGroups removes the groups for which gone returns true.
func (rt *sloRuntime) removeGroups(gone func(*groupRuntime) bool) {
	rt.list = slices.DeleteFunc(rt.list, func(g *groupRuntime) bool {
		if gone(g) {
			delete(rt.groups, g.key)
			return true
		}
		return false
	})
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
	for _, g := range rt.list {
		gm := fed[g.key]
		for i := range int(to - from) {
			m := from + slo.Minute(i)
			if m < g.roll.next {
				continue // a group created mid-range starts later
			}
			var c slo.Counts
			var h *minuteHeads
			if gm != nil {
				c = gm.counts[i]
				if gm.heads != nil {
					h = &gm.heads[i]
				}
				if gm.sampled[i] {
					g.lastSampled = m
				}
			}
			if excluded[i] || h == nil && rt.subMinute {
				// Nothing counted, or a group the feeder did not
				// mention: no events anywhere in the minute.
				if excluded[i] {
					c = slo.Counts{}
				}
				h = &minuteHeads{}
			}
			g.roll.foldHeads(m, c, m-g.lastSampled < staleMinutes, h)
		}
	}
	rt.next = to
}

// revise applies the corrections late samples made to minutes folded
// before from. Minutes inside a correction window stay empty; a minute
// that had no data and got a sample now has.
func (rt *sloRuntime) revise(from slo.Minute, fed map[string]*groupMinutes) {
	for key, gm := range fed {
		if gm.rev == nil {
			continue
		}
		g := rt.groups[key]
		if g == nil {
			continue // a group that only late samples know starts at from
		}
		revFrom := from - slo.Minute(len(gm.rev))
		for i, c := range gm.rev {
			m := revFrom + slo.Minute(i)
			if m < g.roll.start || m >= g.roll.next {
				continue
			}
			if len(rt.plan.corrections) > 0 && rt.plan.corrections.Excludes(m) {
				continue
			}
			became := false
			if gm.revSampled[i] {
				g.lastSampled = max(g.lastSampled, m)
				became = g.roll.window(m, m+1).data == 0
			}
			if c.Good != 0 || c.Total != 0 || became {
				var dh *minuteHeads
				if gm.revHeads != nil {
					dh = &gm.revHeads[i]
				}
				g.roll.reviseHeads(m, c, became, dh)
			}
		}
	}
}

// groupExpiry is how long a group without telemetry is kept in no_data
// before it is forgotten.
const groupExpiry = 6 * time.Hour

func (rt *sloRuntime) expireGroups() {
	if len(rt.plan.slo.Spec.GroupBy) == 0 {
		return
	}
	limit := slo.Minute(groupExpiry / time.Minute)
	rt.removeGroups(func(g *groupRuntime) bool { return rt.next-g.lastSampled > limit })
}

// evalContext carries what one evaluation needs beyond the runtime.
type evalContext struct {
	now        time.Time
	target     slo.Minute // the cycle's target minute
	sourceDown bool
	// children resolves composite children by SLO name.
	children func(name string) *sloRuntime
}

// windowOf returns the counts of the last d of group g, with the events of
// the newest, partial minute.
func windowOf(rt *sloRuntime, g *groupRuntime, d time.Duration) (windowSums, bool) {
	end := rt.windowEnd(g)
	st := g.roll.startOf(end, int64(d/time.Minute))
	w := g.roll.window(st.read, g.roll.next)
	st.apply(&w)
	w.to, w.toQ = end.m, end.q
	w.counts = w.counts.Add(g.partial.counts)
	return w, w.data > 0 || g.partial.sampled
}

// windowEnd is where group g's windows end: its folded minutes and the
// partial minutes read after them. Every window of length d is
// (end-d, end].
func (rt *sloRuntime) windowEnd(g *groupRuntime) edge {
	if rt.peekTo.after(edge{m: g.roll.next}) {
		return rt.peekTo
	}
	return edge{m: g.roll.next}
}

// shortest is how far the partial minutes may reach past the folded
// ones: the shortest window the SLO reports, at most shortestWindow.
func (p *plan) shortest() slo.Minute {
	if len(p.windows) > 0 {
		return min(shortestWindow, max(slo.Minute(p.windows[0].d/time.Minute), 1))
	}
	return shortestWindow
}

// shortestWindow bounds how far the partial minutes reach past the
// folded ones (the shortest window, 5m): a window must start in the
// rollup.
const shortestWindow = 5

// evaluate computes the status of every group and steps its alerts. It
// leaves the statuses to publish and the alert transitions in the runtime.
func (rt *sloRuntime) evaluate(ec evalContext) {
	rt.target = ec.target
	if rt.plan.composite != nil {
		rt.transitions = rt.evaluateComposite(ec)
	} else {
		rt.transitions = rt.evaluateGroups(ec)
	}
	rt.published = rt.statuses()
}

// evaluateGroups computes the status of every group and steps its alerts.
// It returns the alert transitions.
func (rt *sloRuntime) evaluateGroups(ec evalContext) []Transition {
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
	var buf windowBuf
	tb := trendPool.Get().(*[]slo.TrendPoint)
	rt.trendBuf = (*tb)[:0]
	defer func() { *tb = rt.trendBuf[:0]; trendPool.Put(tb); rt.trendBuf, rt.memo = nil, nil }()
	for _, g := range rt.list {
		st := rt.baseStatus(g, ec)
		ws, budget := rt.groupWindows(&buf, g)
		rt.fillWindows(st, &ws)
		rt.setBudget(st, budget.counts.Add(g.partial.counts), edge{budget.from, budget.fromQ}.time(), budget.data == 0 && !g.partial.sampled)
		rt.setState(st, g, ec)
		rt.sampleTrend(g)
		rt.trendBuf = rt.plan.setForecasts(st, rt.groupConsumed(g, st.Budget.Allowed), &g.trend, rt.trendBuf)
		out = append(out, rt.stepAlerts(st, &g.alerts, ec, ws.window)...)
		g.status = st
	}
	return out
}

// windowSet holds the reported windows of one evaluation, each read once:
// the status reports them and the alert conditions ask for the same ones
// again (1h, 5m, 6h, ... appear in both).
type windowSet struct {
	p       *plan
	results []slo.WindowResult // by index in p.windows, with the partial minute
	// sums are the rollup's sums behind results, without the partial
	// minute: the start used and the coverage. Nil for composites.
	sums []windowSums
	// Windows that are not reported are read from g's rollup, or computed
	// by compute for composites.
	g       *groupRuntime
	rt      *sloRuntime
	compute func(time.Duration) slo.WindowResult
}

// window returns the result of window d.
func (ws *windowSet) window(d time.Duration) slo.WindowResult {
	for i := range ws.p.windows {
		if ws.p.windows[i].d == d {
			return ws.results[i]
		}
	}
	if ws.g == nil {
		return ws.compute(d)
	}
	w, ok := windowOf(ws.rt, ws.g, d)
	return slo.WindowResult{Counts: w.counts, NoData: !ok}
}

// windowBuf keeps the windows of a typical SLO on the stack: an
// evaluation would otherwise allocate them for every group every cycle.
type windowBuf struct {
	results [16]slo.WindowResult
	sums    [17]windowSums
	froms   [17]slo.Minute
	starts  [17]windowStart
}

// groupWindows reads every reported window of group g from its rollup, and
// the budget window (in budget).
func (rt *sloRuntime) groupWindows(b *windowBuf, g *groupRuntime) (ws windowSet, budget windowSums) {
	p := rt.plan
	n := len(p.windows)
	results, sums, froms := b.results[:0], b.sums[:0], b.froms[:0]
	end := rt.windowEnd(g)
	starts := b.starts[:0]
	for _, rw := range p.windows {
		st := g.roll.startOf(end, int64(rw.d/time.Minute))
		froms, starts = append(froms, st.read), append(starts, st)
	}
	bst := rt.budgetWindow(g)
	froms, starts = append(froms, bst.read), append(starts, bst)
	sums = sums[:len(froms)]
	g.roll.windowsToNext(froms, sums)
	for i := range sums {
		starts[i].apply(&sums[i])
		sums[i].to, sums[i].toQ = end.m, end.q
	}
	for i := range n {
		results = append(results, slo.WindowResult{Counts: sums[i].counts.Add(g.partial.counts), NoData: sums[i].data == 0 && !g.partial.sampled})
	}
	return windowSet{p: p, results: results, sums: sums[:n], g: g, rt: rt}, sums[n]
}

// computedWindows computes every reported window with f (composites).
func computedWindows(b *windowBuf, p *plan, f func(time.Duration) slo.WindowResult) windowSet {
	results := b.results[:0]
	for _, rw := range p.windows {
		results = append(results, f(rw.d))
	}
	return windowSet{p: p, results: results, compute: f}
}

func (rt *sloRuntime) baseStatus(g *groupRuntime, ec evalContext) *Status {
	st := new(Status)
	*st = rt.plan.status
	st.EvaluatedAt, st.DroppedGroup = ec.now, len(rt.dropped)
	st.LateSamplesDropped = rt.lateDropped
	if g != nil && g.labels.Len() > 0 {
		st.Key, st.Group = g.statusKey, g.groupMap
	}
	if g != nil && g.roll != nil && g.lastSampled >= g.roll.start {
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

func (rt *sloRuntime) fillWindows(st *Status, ws *windowSet) {
	p := rt.plan
	st.Windows = make([]WindowStat, 0, len(p.windows))
	// One backing array for every window's SLI and burn-rate pointers.
	vals := make([]float64, 0, 2*len(p.windows))
	for i, rw := range p.windows {
		d := rw.d
		wr := ws.results[i]
		w := WindowStat{Window: d, Name: rw.name, Good: wr.Counts.Good, Total: wr.Counts.Total, NoData: wr.NoData}
		if ws.sums != nil {
			rs := ws.sums[i]
			w.From, w.To = edge{rs.from, rs.fromQ}.time(), edge{rs.to, rs.toQ}.time()
			if mins := int64(rs.to - rs.from); mins > 0 {
				w.Coverage = float64(rs.data) / float64(mins)
			}
		} else if !wr.NoData {
			w.Coverage = 1
		}
		if r, ok := wr.Counts.Ratio(); ok && !wr.NoData {
			b, _ := slo.BurnRate(wr.Counts, p.budget)
			vals = append(vals, r, b)
			w.SLI, w.BurnRate = &vals[len(vals)-2], &vals[len(vals)-1]
		}
		w.LowTraffic = !wr.NoData && wr.Counts.Total < max(p.minEvents, 1)
		st.Windows = append(st.Windows, w)
	}
}

// budgetWindow returns the SLO window ending at the group's next minute:
// the rolling window, or the calendar period so far.
func (rt *sloRuntime) budgetWindow(g *groupRuntime) windowStart {
	s, q := rt.budgetStart(g)
	return g.roll.startAt(s, q)
}

// budgetStart returns where the budget window of group g starts, exactly:
// the rolling window's start edge, or the calendar period's start.
func (rt *sloRuntime) budgetStart(g *groupRuntime) (slo.Minute, int) {
	p := rt.plan
	to := rt.windowEnd(g)
	if p.calendar != "" {
		start, _ := slo.CalendarPeriod(to.time(), p.calendar, p.loc)
		return slo.CeilMinute(start), 0
	}
	return to.m - slo.Minute(p.window/time.Minute), to.q
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
func (rt *sloRuntime) stepAlerts(st *Status, alerts *alertStates, ec evalContext, window func(time.Duration) slo.WindowResult) []Transition {
	p := rt.plan
	var out []Transition
	st.Alerts = make([]AlertStatus, 0, len(p.alertTiers)+1)
	noData := st.State == StateNoData
	lowTraffic := true
	for _, tier := range p.alertTiers {
		active, results := slo.EvaluateConditions(tier.conds, p.budget, p.minEvents, window)
		for _, r := range results {
			if !r.LowTraffic {
				lowTraffic = false
			}
		}
		as := AlertStatus{Severity: tier.severity, Name: p.slo.Spec.Alerting.Name, Conditions: results}
		for _, r := range results {
			if r.Met {
				as.Condition = r.Condition.String()
				break
			}
		}
		if tier.exhaustion != nil {
			r := p.evaluateExhaustion(st, tier.exhaustion, window)
			as.Exhaustion = &r
			lowTraffic = lowTraffic && r.LowTraffic
			if r.Met {
				active = true
				if as.Condition == "" {
					as.Condition = "timeToExhaustion<" + r.Within
				}
			}
		}
		if noData {
			// Without telemetry a burn-rate alert neither fires nor
			// resolves: resolving would report health nobody can see. The
			// telemetry alert says what is wrong.
			a := alerts[tier.index]
			as.State, as.Since, as.FiredAt, as.ResolvedAt = cmpState(a.State), a.ActiveSince, a.FiredAt, a.ResolvedAt
		} else {
			out = append(out, rt.step(st, &alerts[tier.index], &as, ec.now, active, tier.forDur)...)
		}
		st.Alerts = append(st.Alerts, as)
	}
	// Telemetry loss raises its own alert after the grace period, unless
	// the whole source is down: then the engine raises one alert for all.
	nd := p.slo.Spec.Alerting.NoData
	as := AlertStatus{Severity: SeverityNoData, Name: AlertTelemetryMissing}
	ndActive := noData && nd.Alerts() && !ec.sourceDown && !rt.sourceDown && !rt.backfilling
	out = append(out, rt.step(st, &alerts[noDataIndex], &as, ec.now, ndActive, nd.After.D())...)
	st.Alerts = append(st.Alerts, as)

	if !noData {
		switch {
		case st.hasAlert(slo.Firing):
			st.State = StateFiring
		case st.hasAlert(slo.Pending):
			st.State = StatePending
		case len(p.alertTiers) > 0 && lowTraffic:
			st.State = StateLowTraffic
			st.Reason = fmt.Sprintf("fewer than %v events in the alert windows", max(p.minEvents, 1))
		}
	}
	return out
}

// noDataIndex is the telemetry-missing alert's index in alertStates.
const noDataIndex = 2

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

// step runs one alert's state machine on its state a.
func (rt *sloRuntime) step(st *Status, a *slo.Alert, as *AlertStatus, now time.Time, active bool, forDur time.Duration) []Transition {
	prev := *a
	next, changed := prev.Step(now, active, forDur)
	*a = next
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
	for _, g := range rt.list {
		w, ok := windowOf(rt, g, d)
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
	var buf windowBuf
	ws := computedWindows(&buf, p, func(d time.Duration) slo.WindowResult { return rt.compositeWindow(ec, d, 0) })
	window := ws.window
	rt.fillWindows(st, &ws)
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
		rt.mu.Lock()
		rt.addGroup(rt.newGroup("", labels.EmptyLabels(), nil, 0))
		rt.mu.Unlock()
	}
	g := rt.groups[""]
	if st.SLI != nil {
		remaining := st.Budget.RemainingRatio
		g.trend.advance(slo.MinuteOf(ec.now).Hour(), func(int64) float64 { return remaining })
	}
	p.setForecasts(st, func(d time.Duration) float64 {
		e, _ := rt.compositeWindow(ec, d, 0).Counts.ErrorRatio()
		return e / p.budget * float64(d) / float64(fullLength)
	}, &g.trend, nil)
	out := rt.stepAlerts(st, &g.alerts, ec, window)
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

// statuses returns the statuses of every group, sorted by key, in a new
// slice: snapshots keep it.
func (rt *sloRuntime) statuses() []*Status {
	if rt.empty != nil {
		return []*Status{rt.empty}
	}
	out := make([]*Status, 0, len(rt.list))
	for _, g := range rt.list {
		if g.status != nil {
			out = append(out, g.status)
		}
	}
	return out
}
