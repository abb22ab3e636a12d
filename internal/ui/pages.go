package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/playbook"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// sortSummaries puts the services that need attention first: worst
// state, then tier, then name.
func sortSummaries(ss []api.ServiceSummary) {
	slices.SortStableFunc(ss, func(a, b api.ServiceSummary) int {
		return cmp.Or(
			cmp.Compare(api.StateRank(a.State), api.StateRank(b.State)),
			cmp.Compare(tierKey(a.Tier), tierKey(b.Tier)),
			strings.Compare(a.Name, b.Name))
	})
}

func tierKey(t int) int {
	if t == 0 {
		return 99
	}
	return t
}

// execRow is a service on the executive view, formatted in advance: the
// view lists a thousand services, and plain fields render several times
// faster than template functions.
type execRow struct {
	Name, Label, Href, Tier, Owner string
	Declared                       bool
	Cells                          []execCell
	OpenIncidents                  int
	Cost                           string
	CostMuted                      bool
	Glance                         glance
}

// execCell is one category of a service.
type execCell struct {
	Badge  Badge
	Budget string
	SLOs   string
	Empty  bool
}

type execData struct {
	Rows       []execRow
	Categories []spec.Category
	Services   int
	Firing     int
	NoData     int
	Incidents  int
	SourceDown *engine.AlertStatus
	At         time.Time
	IncidentsE string
}

func (u *UI) executive(r *http.Request) (*view, error) {
	snap := u.opts.Engine.Snapshot()
	sums := api.Summaries(u.opts.Specs(), snap)
	sortSummaries(sums)
	d := execData{Categories: spec.Categories, Services: len(sums), SourceDown: snap.SourceDown, At: snap.At}
	open := map[string]int{}
	if u.opts.Incidents != nil {
		incs, err := u.opts.Incidents.List(r.Context(), alert.IncidentFilter{State: "open", Limit: 10000})
		if err != nil {
			u.log.Warn("list incidents", "err", err)
			d.IncidentsE = "Incidents could not be read."
		}
		for _, inc := range incs {
			open[inc.Service]++
			d.Incidents++
		}
	}
	costs := *u.costs.Load()
	bySvc := map[string][]*engine.Status{}
	for _, st := range snap.Statuses {
		bySvc[st.Service] = append(bySvc[st.Service], st)
	}
	now := u.opts.Now()
	d.Rows = make([]execRow, len(sums))
	for i, s := range sums {
		row := execRow{Name: s.Name, Label: cmp.Or(s.DisplayName, s.Name), Href: "/services/" + pathEscape(s.Name), Tier: "–", Owner: s.Owner,
			Declared: s.Declared, OpenIncidents: open[s.Name], Cost: "–", CostMuted: true, Cells: make([]execCell, len(s.Categories))}
		if s.Tier > 0 {
			row.Tier = strconv.Itoa(s.Tier)
		}
		switch c, ok := costs[s.Name]; {
		case ok && c.Err != "":
			row.Cost = c.Err
		case ok:
			row.Cost, row.CostMuted = perRequests(c.Value, c.Currency), false
		case s.HasCost:
			row.Cost = "not queried yet"
		}
		for j, c := range s.Categories {
			d.Firing += c.Firing
			d.NoData += c.NoData
			cell := execCell{Empty: c.SLOs == 0, Badge: badge(c.State), Budget: "no events", SLOs: strconv.Itoa(c.SLOs) + " SLOs"}
			if c.SLOs == 1 {
				cell.SLOs = "1 SLO"
			}
			// Never "OK" over SLOs without data: a cell with one is at
			// best "No data".
			if c.NoData > 0 && (c.State == engine.StateOK || c.State == engine.StateUnknown || c.State == engine.StateLowTraffic) {
				cell.Badge = badge(engine.StateNoData)
			}
			if c.NoData > 0 {
				cell.SLOs += fmt.Sprintf(", %d without data", c.NoData)
			}
			if c.BudgetRemaining != nil {
				cell.Budget = pct(*c.BudgetRemaining)
			}
			row.Cells[j] = cell
		}
		row.Glance = u.serviceGlance(r.Context(), bySvc[s.Name], now)
		d.Rows[i] = row
	}
	return &view{Template: "executive", Title: "Executive view", Nav: "exec", Data: d}, nil
}

// oncallAlert is an alert on the on-call view.
type oncallAlert struct {
	Status *engine.Status
	Alert  engine.AlertStatus
}

// nearMiss is an SLO group whose alert conditions are close to holding.
type nearMiss struct {
	Status   *engine.Status
	Severity string
	// Closest is the condition nearest to firing and how near, as the
	// smaller of its two burn rates over its factor.
	Condition slo.ConditionResult
	Share     float64
}

type oncallData struct {
	Burning []burning
	Firing  []oncallAlert
	Pending []oncallAlert
	Near    []nearMiss
	// NoData groups the SLOs without data by service: a total telemetry
	// loss is one row, not one per SLO.
	NoData     []noDataGroup
	Incidents  []alert.Incident
	Deploys    []store.Deploy
	Approvals  []*playbook.Run
	SourceDown *engine.AlertStatus
	Problems   []string
	At         time.Time
}

// noDataGroup is a service's SLO groups without data.
type noDataGroup struct {
	Service string
	SLOs    []*engine.Status
	// Since is the earliest end of data of the SLOs, zero if none had any.
	Since time.Time
	// Alert is the state of their telemetry alerts: firing if any fires,
	// else pending if any is pending, else "".
	Alert slo.AlertState
	// Reason is the first SLO's reason, shared by a telemetry loss.
	Reason string
}

// groupNoData groups the SLO groups without data of a snapshot by
// service, in the order of the snapshot.
func groupNoData(sts []*engine.Status) []noDataGroup {
	var out []noDataGroup
	at := map[string]int{}
	for _, st := range sts {
		if st.State != engine.StateNoData {
			continue
		}
		k, ok := at[st.Service]
		if !ok {
			k = len(out)
			at[st.Service] = k
			out = append(out, noDataGroup{Service: st.Service, Reason: st.Reason})
		}
		g := &out[k]
		g.SLOs = append(g.SLOs, st)
		if !st.DataUntil.IsZero() && (g.Since.IsZero() || st.DataUntil.Before(g.Since)) {
			g.Since = st.DataUntil
		}
		if a := st.Alert(engine.SeverityNoData); a != nil && (a.State == slo.Firing || (a.State == slo.Pending && g.Alert != slo.Firing)) {
			g.Alert = a.State
		}
	}
	return out
}

// nearShare is how close to its factor a condition must burn to be shown
// as close to firing.
const nearShare = 0.5

func (u *UI) oncall(r *http.Request) (*view, error) {
	snap := u.opts.Engine.Snapshot()
	d := oncallData{SourceDown: snap.SourceDown, At: snap.At}
	d.NoData = groupNoData(snap.Statuses)
	for _, st := range snap.Statuses {
		var best *nearMiss
		for _, a := range st.Alerts {
			if a.Severity == engine.SeverityNoData && st.State == engine.StateNoData {
				continue // in its service's no-data row
			}
			switch a.State {
			case slo.Firing:
				d.Firing = append(d.Firing, oncallAlert{st, a})
				continue
			case slo.Pending:
				d.Pending = append(d.Pending, oncallAlert{st, a})
				continue
			}
			for _, c := range a.Conditions {
				if c.Met || c.Condition.Factor <= 0 {
					continue
				}
				share := min(c.LongBurn, c.ShortBurn) / c.Condition.Factor
				if share >= nearShare && (best == nil || share > best.Share) {
					best = &nearMiss{Status: st, Severity: a.Severity, Condition: c, Share: share}
				}
			}
		}
		if best != nil && !hasActive(st) {
			d.Near = append(d.Near, *best)
		}
	}
	slices.SortFunc(d.Near, func(a, b nearMiss) int { return cmp.Compare(b.Share, a.Share) })
	ctx := r.Context()
	now := u.opts.Now()
	if u.opts.Incidents != nil {
		incs, err := u.opts.Incidents.List(ctx, alert.IncidentFilter{State: "open", Limit: 200})
		if err != nil {
			d.Problems = append(d.Problems, "Incidents could not be read.")
			u.log.Warn("list incidents", "err", err)
		}
		d.Incidents = incs
	}
	if u.opts.Records != nil {
		deps, _, err := u.opts.Records.Deploys(ctx, store.DeployFilter{From: now.Add(-24 * time.Hour), Limit: 50})
		if err != nil {
			d.Problems = append(d.Problems, "Deploys could not be read.")
			u.log.Warn("list deploys", "err", err)
		}
		d.Deploys = deps
	}
	d.Burning = burningNow(snap, d.Deploys)
	if u.opts.Playbooks != nil {
		runs, _, err := u.opts.Playbooks.Runs(ctx, playbook.RunFilter{State: playbook.StatePending, Limit: 50})
		if err != nil {
			d.Problems = append(d.Problems, "Playbook runs could not be read.")
			u.log.Warn("list playbook runs", "err", err)
		}
		d.Approvals = runs
	}
	return &view{Template: "oncall", Title: "On call", Nav: "oncall", Data: d}, nil
}

// hasActive reports whether any alert of st is pending or firing.
func hasActive(st *engine.Status) bool {
	for _, a := range st.Alerts {
		if a.State == slo.Firing || a.State == slo.Pending {
			return true
		}
	}
	return false
}

type sloListData struct {
	Items                    []*engine.Status
	Service, Category, State string
	Services                 []string
	Categories               []spec.Category
	States                   []engine.State
	Total, Offset, Limit     int
	Prev, Next               int
	HasPrev, HasNext         bool
}

const sloPage = 200

func (u *UI) sloList(r *http.Request) (*view, error) {
	q := r.URL.Query()
	d := sloListData{Service: q.Get("service"), Category: q.Get("category"), State: q.Get("state"), Limit: sloPage,
		Categories: spec.Categories, States: []engine.State{engine.StateFiring, engine.StatePending, engine.StateNoData, engine.StateLowTraffic, engine.StateOK, engine.StateUnknown}}
	if d.Category != "" && !slices.Contains(spec.Categories, spec.Category(d.Category)) {
		return nil, badRequestf("There is no category %q: quality, security or performance.", d.Category)
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, badRequestf("The offset must be a non-negative integer.")
		}
		d.Offset = n
	}
	for _, s := range u.opts.Specs().Services {
		d.Services = append(d.Services, s.Name())
	}
	var sel []*engine.Status
	for _, st := range u.opts.Engine.Snapshot().Statuses {
		if (d.Service != "" && st.Service != d.Service) || (d.Category != "" && string(st.Category) != d.Category) || (d.State != "" && string(st.State) != d.State) {
			continue
		}
		sel = append(sel, st)
	}
	d.Total = len(sel)
	if d.Offset < len(sel) {
		d.Items = sel[d.Offset:min(len(sel), d.Offset+d.Limit)]
	}
	d.HasPrev, d.Prev = d.Offset > 0, max(0, d.Offset-d.Limit)
	d.HasNext, d.Next = d.Offset+d.Limit < d.Total, d.Offset+d.Limit
	return &view{Template: "slos", Title: "SLOs", Nav: "slos", Data: d}, nil
}

type sloDetailData struct {
	// Traces are example traces of the SLO's bad events in the last hour.
	Traces    []tracelink.Example
	SLO       *spec.SLO
	Indicator string
	Groups    []*engine.Status
	Status    *engine.Status
	Grouped   bool
	SLIChart  *LineChart
	Budget    *LineChart
	// Errors is the error ratio per step over the chosen range (6h by
	// default), with the alert thresholds, firing spans, deploys and
	// incidents: the chart that shows the incident one is in.
	Errors      *LineChart
	ErrorsRange string
	// Zoom are the time picker's plain links: earlier, later, zoom in
	// and out.
	Zoom      []zoomLink
	Composite []string
	Burn      *BarChart
	Deploys   []store.Deploy
	// Impacts are the budget this SLO group spent after each of the
	// newest deploys, against the same span before.
	Impacts   []deployImpactRow
	Incidents []alert.Incident
	Decisions []*policy.Decision
	Gates     []string
	Playbooks []string
	Problems  []string
	From, To  time.Time
	// Range is the chosen range ("" for the SLO window), Window the
	// window's name; Cropped says the range starts at the telemetry.
	Range, Window string
	Cropped       bool
}

// zoomLink is a link of the time picker.
type zoomLink struct {
	Text string
	Href string
}

// sloRanges are the ranges of the time picker, shortest first.
var sloRanges = []string{"1h", "3h", "6h", "12h", "1d", "3d", "7d", "30d"}

func rangeDur(r string) time.Duration {
	var sd spec.Duration
	if err := sd.UnmarshalText([]byte(r)); err != nil {
		return 0
	}
	return sd.D()
}

// historyPoints is about how many points an SLO chart has.
const historyPoints = 240

func (u *UI) sloDetail(r *http.Request) (*view, error) {
	name := r.PathValue("name")
	snap := u.opts.Engine.Snapshot()
	groups := snap.SLO(name) // in key order
	set := u.opts.Specs()
	s := set.SLO(name)
	if len(groups) == 0 && s == nil {
		return nil, notFoundf("There is no SLO %q.", name)
	}
	d := sloDetailData{SLO: s, Groups: groups, Grouped: len(groups) > 1}
	if s != nil {
		d.Indicator = s.Spec.Indicator.Type()
		for _, g := range set.Gates {
			if g.Spec.Budget != nil && (slices.Contains(g.Spec.Budget.SLOs, name) || (len(g.Spec.Budget.SLOs) == 0 && g.Spec.Service == s.Spec.Service)) {
				d.Gates = append(d.Gates, g.Name())
			}
		}
		for _, p := range set.Playbooks {
			if p.Spec.Trigger.SLO == name {
				d.Playbooks = append(d.Playbooks, p.Name())
			}
		}
	}
	// The group shown: the one asked for, else the worst.
	key := r.URL.Query().Get("group")
	for _, g := range groups {
		if (key != "" && g.Key == key) || (key == "" && (d.Status == nil || api.StateRank(g.State) < api.StateRank(d.Status.State))) {
			d.Status = g
		}
	}
	if key != "" && d.Status == nil {
		return nil, notFoundf("SLO %q has no group %q.", name, key)
	}
	if d.Status == nil {
		return &view{Template: "slo", Title: name, Nav: "slos", Data: d}, nil
	}
	st := d.Status
	window := 30 * 24 * time.Hour
	if s != nil && s.Spec.Window.Length() > 0 {
		window = s.Spec.Window.Length()
	}
	d.To = snap.At
	if d.To.IsZero() {
		d.To = u.opts.Now()
	}
	// The charts show the SLO window, or a shorter range the user picks;
	// the window starts where the telemetry does when it is younger.
	d.Range = r.URL.Query().Get("range")
	span := window
	switch {
	case d.Range == "":
	case slices.Contains(sloRanges, d.Range):
		span = min(window, rangeDur(d.Range))
	default:
		return nil, badRequestf("There is no range %q: %s.", d.Range, strings.Join(sloRanges, ", "))
	}
	// end pans the range back in time: a Unix time in seconds, within
	// the window before now.
	now := d.To
	if v := r.URL.Query().Get("end"); v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		end := time.Unix(sec, 0).UTC()
		if err != nil || end.After(now) || end.Before(now.Add(-window)) {
			return nil, badRequestf("The end %q must be a Unix time in seconds within the SLO window before now.", v)
		}
		d.To = end
	}
	d.Window = spec.Duration(window).String()
	if s != nil {
		d.Window = s.Spec.Window.String()
	}
	d.From = d.To.Add(-span)
	// A calendar window charts its current period, not a rolling
	// window's length back.
	if d.Range == "" && s != nil && s.Spec.Window.Calendar != "" && !st.PeriodStart.IsZero() && st.PeriodStart.Before(d.To) {
		d.From = st.PeriodStart
		span = d.To.Sub(d.From)
	}
	d.ErrorsRange = cmp.Or(d.Range, "6h")
	errSpan := min(window, rangeDur(d.ErrorsRange))
	d.Zoom = zoomLinks(st, d.ErrorsRange, d.To, now, window)
	ctx := r.Context()
	d.Burn = burnChart(st)
	if u.opts.Records != nil {
		deps, _, err := u.opts.Records.Deploys(ctx, store.DeployFilter{Service: st.Service, From: d.From, To: d.To, Limit: 200})
		if err != nil {
			d.Problems = append(d.Problems, "Deploys could not be read.")
			u.log.Warn("list deploys", "err", err)
		}
		d.Deploys = deps
		d.Impacts = u.impactRows(st.Key, deps)
		decs, _, err := u.opts.Records.Decisions(ctx, store.DecisionFilter{Service: st.Service, Limit: 10})
		if err != nil {
			d.Problems = append(d.Problems, "Decisions could not be read.")
			u.log.Warn("list decisions", "err", err)
		}
		d.Decisions = decs
	}
	if u.opts.Incidents != nil {
		incs, err := u.opts.Incidents.List(ctx, alert.IncidentFilter{Service: st.Service, HasService: true, Limit: 500})
		if err != nil {
			d.Problems = append(d.Problems, "Incidents could not be read.")
			u.log.Warn("list incidents", "err", err)
		}
		for _, inc := range incs {
			if (inc.State == "open" || inc.ResolvedAt.After(d.From)) && incidentHasSLO(inc, name) {
				d.Incidents = append(d.Incidents, inc)
			}
		}
	}
	if s != nil && s.Spec.Indicator.Composite != nil {
		// A composite SLO keeps no rollup of its own: its history is its
		// parts'.
		for _, p := range s.Spec.Indicator.Composite.Objectives {
			d.Composite = append(d.Composite, p.SLO)
		}
	} else if u.opts.History != nil {
		efrom := d.To.Add(-errSpan)
		if epts, err := u.history(ctx, st.Key, &efrom, d.To, false); err == nil {
			d.Errors = errorChart(st, epts, efrom, d.To, d.Deploys, d.Incidents, name, d.ErrorsRange)
		}
		pts, err := u.history(ctx, st.Key, &d.From, d.To, d.Range == "" && (s == nil || s.Spec.Window.Calendar == ""))
		if err != nil {
			d.Problems = append(d.Problems, "The history could not be read: "+err.Error())
		} else {
			// The newest point is the status itself: the history's steps
			// end at the last whole step.
			pts = append(pts, engine.HistoryPoint{At: d.To, SLI: st.SLI, BudgetRemaining: budgetRemaining(st)})
			d.Cropped = !d.From.Equal(d.To.Add(-span))
			d.SLIChart, d.Budget = historyCharts(st, pts, d.From, d.To, d.Deploys, d.Incidents)
		}
	}
	if u.opts.Traces != nil {
		now := u.opts.Now()
		if exs, err := u.opts.Traces.ForSLO(ctx, name, now.Add(-time.Hour), now); err != nil {
			d.Problems = append(d.Problems, "Example traces could not be read: "+err.Error())
		} else {
			d.Traces = exs
		}
	}
	return &view{Template: "slo", Title: name, Nav: "slos", Data: d}, nil
}

// history reads a group's history over [*from, to] in about
// historyPoints steps. With crop, a range that starts long before the
// first telemetry starts shortly before it instead, so a young SLO's
// chart is not a line squeezed against its right edge.
func (u *UI) history(ctx context.Context, key string, from *time.Time, to time.Time, crop bool) ([]engine.HistoryPoint, error) {
	step := func(d time.Duration) time.Duration {
		return max(time.Minute, (d / historyPoints).Truncate(time.Minute))
	}
	pts, err := u.opts.History.History(ctx, key, *from, to, step(to.Sub(*from)))
	if err != nil || !crop {
		return pts, err
	}
	span := to.Sub(*from)
	for _, p := range pts {
		if p.SLI == nil {
			continue
		}
		if p.At.Sub(*from) < span/4 {
			return pts, nil
		}
		// One step before the first data, so the start is visible.
		start := p.At.Add(-step(span)).Truncate(time.Minute)
		if s := to.Sub(start); s > 0 {
			start = to.Add(-s - s/10).Truncate(time.Minute)
		}
		pts, err := u.opts.History.History(ctx, key, start, to, step(to.Sub(start)))
		if err != nil {
			return nil, err
		}
		// The finer steps find the first data more precisely.
		for i, p := range pts {
			if p.SLI != nil {
				pts = pts[i:]
				start = p.At.Add(-to.Sub(p.At) / 20).Truncate(time.Minute)
				break
			}
		}
		*from = start
		return pts, nil
	}
	return pts, nil
}

func budgetRemaining(st *engine.Status) *float64 {
	if st.Budget.Total <= 0 {
		return nil
	}
	v := st.Budget.RemainingRatio
	return &v
}

func incidentHasSLO(inc alert.Incident, name string) bool {
	for _, a := range inc.Alerts {
		if a.SLO == name {
			return true
		}
	}
	return false
}

// zoomLinks are the time picker's links around a range ending at end.
func zoomLinks(st *engine.Status, rng string, end, now time.Time, window time.Duration) []zoomLink {
	i := slices.Index(sloRanges, rng)
	d := rangeDur(rng)
	href := func(r string, e time.Time) string {
		base := "/slos/" + pathEscape(st.SLO)
		endv := ""
		if e.Before(now.Add(-time.Minute)) {
			endv = strconv.FormatInt(e.Unix(), 10)
		}
		return base + string(query("group", st.Key, "range", r, "end", endv))
	}
	var out []zoomLink
	if end.Add(-d).After(now.Add(-window)) {
		out = append(out, zoomLink{"◀ earlier", href(rng, end.Add(-d/2))})
	}
	if end.Before(now) {
		out = append(out, zoomLink{"later ▶", href(rng, minTime(now, end.Add(d/2)))})
		out = append(out, zoomLink{"now", href(rng, now)})
	}
	if i > 0 {
		out = append(out, zoomLink{"zoom in (" + sloRanges[i-1] + ")", href(sloRanges[i-1], end)})
	}
	if i >= 0 && i+1 < len(sloRanges) && rangeDur(sloRanges[i+1]) <= window {
		out = append(out, zoomLink{"zoom out (" + sloRanges[i+1] + ")", href(sloRanges[i+1], end)})
	}
	return out
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// markersOf are the deploy flags of a chart: "D v2.14.0".
func markersOf(deps []store.Deploy) []Marker {
	var markers []Marker
	for _, dp := range deps {
		label := "Deploy of " + dp.Service
		if dp.Version != "" {
			label += " " + dp.Version
		}
		flag := "D"
		if dp.Version != "" {
			flag = "D " + dp.Version
		}
		markers = append(markers, Marker{At: dp.At, Label: label + " at " + ts(dp.At), Flag: flag})
	}
	return markers
}

// errorChart draws the error ratio per step with the alert thresholds
// (factor × error budget), the spans the SLO's alerts fired, deploys and
// incidents.
func errorChart(st *engine.Status, pts []engine.HistoryPoint, from, to time.Time, deps []store.Deploy, incs []alert.Incident, slo, rng string) *LineChart {
	er := make([]Sample, len(pts))
	for i, p := range pts {
		er[i] = Sample{At: p.At, V: p.ErrorRatio}
	}
	zero := 0.0
	budget := 1 - st.Objective
	var ths []Threshold
	seen := map[float64]bool{}
	for _, a := range st.Alerts {
		for _, c := range a.Conditions {
			f := c.Condition.Factor
			if f <= 0 || seen[f] || budget <= 0 {
				continue
			}
			seen[f] = true
			ths = append(ths, Threshold{V: min(1, f*budget), Label: fmt.Sprintf("%s %s× = %s", a.Severity, measure(f), pctN(f*budget, 2))})
		}
	}
	var spans, firing []Span
	for _, inc := range incs {
		spans = append(spans, Span{From: inc.FirstBadAt, To: inc.ResolvedAt, Label: fmt.Sprintf("Incident %d: %s", inc.ID, inc.Title)})
		for _, a := range inc.Alerts {
			if a.SLO == slo && !a.FiredAt.IsZero() {
				firing = append(firing, Span{From: a.FiredAt, To: a.ResolvedAt, Label: fmt.Sprintf("%s fired %s", a.Alert, ts(a.FiredAt))})
			}
		}
	}
	key := strings.NewReplacer("{", "-", "}", "", "\"", "", "=", "-", ",", "-").Replace(st.Key)
	step := max(time.Minute, (to.Sub(from) / historyPoints).Truncate(time.Minute))
	c := &LineChart{ID: "errors-" + key, Title: fmt.Sprintf("Error rate of %s over the last %s, per %s", st.Key, rng, span(step)), From: from, To: to,
		Samples: er, Ref: &zero, Format: func(v float64) string { return pctN(v, 2) }, Thresholds: ths, Markers: markersOf(deps), Spans: spans, Firing: firing}
	if s, ok := c.Latest(); ok {
		var names []string
		for _, t := range ths {
			names = append(names, t.Label)
		}
		c.Desc = fmt.Sprintf("The error rate is %s at %s; alert thresholds: %s; %d deploys and %d incidents in the range.", pctN(*s.V, 2), ts(s.At), orNone(names), len(c.Markers), len(spans))
	}
	return c
}

// historyCharts draws the SLI and the budget burn-down of a group.
func historyCharts(st *engine.Status, pts []engine.HistoryPoint, from, to time.Time, deps []store.Deploy, incs []alert.Incident) (*LineChart, *LineChart) {
	sli := make([]Sample, len(pts))
	bud := make([]Sample, len(pts))
	for i, p := range pts {
		sli[i] = Sample{At: p.At, V: p.SLI}
		bud[i] = Sample{At: p.At, V: p.BudgetRemaining}
	}
	markers := markersOf(deps)
	var spans []Span
	for _, inc := range incs {
		spans = append(spans, Span{From: inc.FirstBadAt, To: inc.ResolvedAt, Label: fmt.Sprintf("Incident %d: %s", inc.ID, inc.Title)})
	}
	obj := st.Objective
	zero, one := 0.0, 1.0
	key := strings.NewReplacer("{", "-", "}", "", "\"", "", "=", "-", ",", "-").Replace(st.Key)
	sliC := &LineChart{ID: "sli-" + key, Title: fmt.Sprintf("SLI of %s over the SLO window", st.Key), From: from, To: to, Samples: sli,
		Ref: &obj, RefLabel: "objective " + pct(obj), Format: func(v float64) string { return pctN(v, 3) }, Markers: markers, Spans: spans, Cap: &one}
	budC := &LineChart{ID: "budget-" + key, Title: fmt.Sprintf("Error budget remaining of %s", st.Key), From: from, To: to, Samples: bud,
		Ref: &zero, RefLabel: "budget exhausted", Format: func(v float64) string { return pctN(v, 1) }, Markers: markers, Spans: spans, Cap: &one}
	if s, ok := sliC.Latest(); ok {
		sliC.Desc = fmt.Sprintf("The SLI is %s at %s against an objective of %s; %d deploys and %d incidents in the range.", pct(*s.V), ts(s.At), pct(obj), len(markers), len(spans))
	}
	if s, ok := budC.Latest(); ok {
		budC.Desc = fmt.Sprintf("%s of the error budget remains at %s.", pctN(*s.V, 1), ts(s.At))
	}
	projectBudget(budC, st)
	return sliC, budC
}

// burnChart draws the burn rate of every window, marking those over the
// page alert's factor.
func burnChart(st *engine.Status) *BarChart {
	factor := map[string]float64{}
	for _, a := range st.Alerts {
		for _, c := range a.Conditions {
			for _, w := range []time.Duration{c.Condition.Long, c.Condition.Short} {
				name := spec.Duration(w).String()
				if f, ok := factor[name]; !ok || c.Condition.Factor < f {
					factor[name] = c.Condition.Factor
				}
			}
		}
	}
	key := strings.NewReplacer("{", "-", "}", "", "\"", "", "=", "-", ",", "-").Replace(st.Key)
	c := &BarChart{ID: "burn-" + key, Title: fmt.Sprintf("Burn rate per window of %s", st.Key), Ref: 1, RefLabel: "1× spends the budget exactly over the SLO window",
		Format: func(v float64) string { return measure(v) + "×" }}
	var hot []string
	for _, w := range st.Windows {
		label := w.Name
		if w.Window > 0 {
			label = span(w.Window)
		}
		b := Bar{Label: label, V: w.BurnRate}
		if f, ok := factor[w.Name]; ok && w.BurnRate != nil && *w.BurnRate >= f {
			b.Alert = true
			hot = append(hot, w.Name)
		}
		c.Bars = append(c.Bars, b)
	}
	c.Desc = fmt.Sprintf("%d windows; over an alert threshold: %s.", len(c.Bars), orNone(hot))
	return c
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

type serviceData struct {
	Summary   api.ServiceSummary
	Spec      *spec.Service
	SLOs      []*engine.Status
	Deploys   []store.Deploy
	Incidents []alert.Incident
	Gates     []*spec.Gate
	Playbooks []*spec.Playbook
	Cost      *cost
	Problems  []string
}

func (u *UI) service(r *http.Request) (*view, error) {
	name := r.PathValue("name")
	set := u.opts.Specs()
	sum, sts, ok := api.Summary(set, u.opts.Engine.Snapshot(), name)
	if !ok {
		return nil, notFoundf("There is no service %q.", name)
	}
	d := serviceData{Summary: sum, Spec: set.Service(name), SLOs: sts}
	if c, ok := (*u.costs.Load())[name]; ok {
		d.Cost = &c
	}
	for _, g := range set.Gates {
		if g.Spec.Service == name {
			d.Gates = append(d.Gates, g)
		}
	}
	for _, p := range set.Playbooks {
		if p.Spec.Service == name {
			d.Playbooks = append(d.Playbooks, p)
		}
	}
	ctx := r.Context()
	if u.opts.Records != nil {
		deps, _, err := u.opts.Records.Deploys(ctx, store.DeployFilter{Service: name, Limit: 20})
		if err != nil {
			d.Problems = append(d.Problems, "Deploys could not be read.")
		}
		d.Deploys = deps
	}
	if u.opts.Incidents != nil {
		incs, err := u.opts.Incidents.List(ctx, alert.IncidentFilter{Service: name, HasService: true, Limit: 20})
		if err != nil {
			d.Problems = append(d.Problems, "Incidents could not be read.")
		}
		d.Incidents = incs
	}
	return &view{Template: "service", Title: cmp.Or(sum.DisplayName, name), Nav: "exec", Data: d}, nil
}

type incidentsData struct {
	Items    []alert.Incident
	State    string
	Service  string
	Disabled bool
}

func (u *UI) incidents(r *http.Request) (*view, error) {
	q := r.URL.Query()
	d := incidentsData{State: q.Get("state"), Service: q.Get("service")}
	switch d.State {
	case "", "open", "closed":
	default:
		return nil, badRequestf("There is no incident state %q: open or closed.", d.State)
	}
	if u.opts.Incidents == nil {
		d.Disabled = true
		return &view{Template: "incidents", Title: "Incidents", Nav: "incidents", Data: d}, nil
	}
	f := alert.IncidentFilter{State: d.State, Limit: 500}
	if d.Service != "" {
		f.Service, f.HasService = d.Service, true
	}
	incs, err := u.opts.Incidents.List(r.Context(), f)
	if err != nil {
		return nil, err
	}
	d.Items = incs
	return &view{Template: "incidents", Title: "Incidents", Nav: "incidents", Data: d}, nil
}

type incidentData struct {
	// Traces are example traces of the incident's bad events.
	Traces   []tracelink.Example
	Incident alert.Incident
	CanAck   bool
	Role     string
	// Events are the incident's timeline merged with the service's
	// deploys, gate verdicts and playbook runs around it; Strip draws them.
	Events []TimelineEvent
	Strip  *Timeline
	// Impact is the service's last deploy before the incident's first
	// bad minute and the budget each SLO spent after it against before.
	Impact   []deployImpactRow
	Problems []string
}

func (u *UI) incident(r *http.Request) (*view, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return nil, badRequestf("The incident number must be a positive integer.")
	}
	if u.opts.Incidents == nil {
		return nil, notFoundf("Incidents are not configured on this server.")
	}
	inc, err := u.opts.Incidents.Get(r.Context(), id)
	if err != nil {
		return nil, err
	}
	p, _ := api.PrincipalFrom(r.Context())
	d := incidentData{Incident: inc, CanAck: inc.State == "open" && inc.AckedAt.IsZero(), Role: roleLabel(p.Role)}
	d.Events, d.Problems = u.incidentEvents(r.Context(), inc)
	from, to := inc.FirstBadAt.Add(-time.Hour), inc.ResolvedAt
	if to.IsZero() {
		to = u.opts.Now()
	}
	to = to.Add(10 * time.Minute)
	d.Strip = &Timeline{ID: fmt.Sprintf("incident-%d", inc.ID), Title: fmt.Sprintf("Timeline of incident %d", inc.ID), From: from, To: to, Events: d.Events,
		Span: Span{From: inc.FirstBadAt, To: inc.ResolvedAt, Label: inc.Title}}
	d.Traces = api.IncidentTraces(r.Context(), u.opts.Traces, inc, u.opts.Now())
	if !inc.FirstBadAt.IsZero() {
		// A deploy within the first bad minute counts: minutes are the
		// engine's grain, and such a deploy is the likeliest cause.
		rep, err := u.lastDeployBefore(r.Context(), inc.Service, inc.FirstBadAt.Add(time.Minute))
		if err != nil {
			d.Problems = append(d.Problems, "The deploy before the incident could not be read.")
			u.log.Warn("deploy before incident", "incident", inc.ID, "err", err)
		}
		d.Impact = reportRows(rep)
	}
	return &view{Template: "incident", Title: fmt.Sprintf("Incident %d", id), Nav: "incidents", Data: d, Form: d.CanAck}, nil
}

// incidentEvents merges an incident's own timeline with the deploys,
// gate evaluations and playbook runs of its service from an hour before
// the first bad minute to its resolution.
func (u *UI) incidentEvents(ctx context.Context, inc alert.Incident) ([]TimelineEvent, []string) {
	var out []TimelineEvent
	var problems []string
	for _, e := range inc.Timeline {
		text := strings.ReplaceAll(e.Kind, "_", " ")
		if e.Key != "" {
			text += " " + e.Key
		}
		if e.By != "" {
			text += " by " + e.By
		}
		if e.Detail != "" {
			text += ": " + e.Detail
		}
		out = append(out, TimelineEvent{At: e.At, Kind: "alert", Short: incidentShort(e.Kind), Text: text})
	}
	if inc.Service == "" {
		return out, problems
	}
	from, to := inc.FirstBadAt.Add(-time.Hour), inc.ResolvedAt
	if to.IsZero() {
		to = u.opts.Now()
	}
	if u.opts.Records != nil {
		deps, _, err := u.opts.Records.Deploys(ctx, store.DeployFilter{Service: inc.Service, From: from, To: to, Limit: 50})
		if err != nil {
			problems = append(problems, "Deploys could not be read.")
		}
		for _, dp := range deps {
			out = append(out, TimelineEvent{At: dp.At, Kind: "deploy", Short: cmp.Or("D "+dp.Version, "D"), Text: strings.TrimSpace("deploy " + dp.Version + " " + dp.Description)})
		}
	}
	if u.opts.Gates != nil {
		evs, _, err := u.opts.Gates.Evaluations(ctx, gate.Filter{Service: inc.Service, From: from, To: to, Limit: 50})
		if err != nil {
			problems = append(problems, "Gate evaluations could not be read.")
		}
		for _, ev := range evs {
			out = append(out, TimelineEvent{At: ev.CreatedAt, Kind: "gate", Short: "G " + string(ev.State), Text: gateText(ev), Href: "/gates/evaluations/" + pathEscape(ev.ID)})
		}
	}
	if u.opts.Playbooks != nil {
		runs, _, err := u.opts.Playbooks.Runs(ctx, playbook.RunFilter{Service: inc.Service, From: from, To: to, Limit: 50})
		if err != nil {
			problems = append(problems, "Playbook runs could not be read.")
		}
		for _, run := range runs {
			out = append(out, TimelineEvent{At: run.CreatedAt, Kind: "playbook", Short: "P " + string(run.State), Text: fmt.Sprintf("playbook %s: %s", run.Playbook, badge(run.State).Text), Href: "/playbooks/runs/" + pathEscape(run.ID)})
		}
	}
	slices.SortStableFunc(out, func(a, b TimelineEvent) int { return a.At.Compare(b.At) })
	return out, problems
}

// gateText is a gate verdict in one line, without "gate gate" when the
// summary already names the gate.
func gateText(ev *gate.Evaluation) string {
	head := "gate " + ev.Gate + ": " + badge(ev.State).Text
	sum := strings.TrimPrefix(strings.TrimPrefix(humanize(ev.Summary), "gate "), ev.Gate)
	sum = strings.TrimLeft(sum, " :")
	if sum == "" {
		return head
	}
	return head + " — " + sum
}

func incidentShort(kind string) string {
	switch kind {
	case alert.EventFirstBad:
		return "first bad"
	case alert.EventDetected:
		return "paged"
	case alert.EventAlertFired:
		return "fired"
	case alert.EventAlertResolved:
		return "cleared"
	case alert.EventAcknowledged:
		return "ack"
	case alert.EventResolved:
		return "resolved"
	}
	return kind
}

type gatesData struct {
	Gates       []*spec.Gate
	Evaluations []*gate.Evaluation
	Total       int
	Gate        string
	Disabled    bool
}

func (u *UI) gates(r *http.Request) (*view, error) {
	d := gatesData{Gate: r.URL.Query().Get("gate")}
	if u.opts.Gates == nil {
		d.Disabled = true
		d.Gates = u.opts.Specs().Gates
		return &view{Template: "gates", Title: "Gates", Nav: "gates", Data: d}, nil
	}
	d.Gates = u.opts.Gates.Gates()
	evs, total, err := u.opts.Gates.Evaluations(r.Context(), gate.Filter{Gate: d.Gate, Limit: 100})
	if err != nil {
		return nil, err
	}
	d.Evaluations, d.Total = evs, total
	return &view{Template: "gates", Title: "Gates", Nav: "gates", Data: d}, nil
}

type evaluationData struct {
	Evaluation *gate.Evaluation
	Details    []detailRow
	// Impact is the service's last deploy before the evaluation and the
	// budget each SLO spent after it: the figures the budget check cited
	// when it ran one, else measured now.
	Impact   []deployImpactRow
	Problems []string
}

// detailRow is one number behind a verdict: "canary › latency ›
// pValue" and its value for people.
type detailRow struct {
	Name, Value string
}

// maxDetailRows bounds the table of a verdict's numbers.
const maxDetailRows = 400

// flatten appends the leaves of a JSON tree as rows named by their path,
// numbers written for people: p-values in words, effects in words, and
// no 16-digit floats.
func flatten(path string, v any, out *[]detailRow) {
	if len(*out) >= maxDetailRows {
		return
	}
	join := func(k string) string {
		if path == "" {
			return k
		}
		return path + " › " + k
	}
	switch v := v.(type) {
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(v)) {
			flatten(join(k), v[k], out)
		}
	case []any:
		for i, e := range v {
			// A list of named things is named by its items' names.
			name := strconv.Itoa(i + 1)
			if m, ok := e.(map[string]any); ok {
				for _, k := range []string{"name", "metric", "slo", "key"} {
					if s, ok := m[k].(string); ok && s != "" {
						name = s
						break
					}
				}
			}
			flatten(join(name), e, out)
		}
	case float64:
		key := strings.ToLower(path[strings.LastIndex(path, " ")+1:])
		val := measure(v)
		switch {
		case key == "pvalue" || key == "p":
			val = evidence(v)
		case strings.Contains(key, "effect") || strings.Contains(key, "delta"):
			val = effect(v)
		case v == math.Trunc(v) && math.Abs(v) < 1e15:
			val = countInt(v)
		}
		*out = append(*out, detailRow{path, val})
	case nil:
		*out = append(*out, detailRow{path, "–"})
	default:
		*out = append(*out, detailRow{path, fmt.Sprint(v)})
	}
}

func (u *UI) evaluation(r *http.Request) (*view, error) {
	if u.opts.Gates == nil {
		return nil, notFoundf("Gates are not configured on this server.")
	}
	ev, err := u.opts.Gates.Evaluation(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	d := evaluationData{Evaluation: ev}
	details := map[string]any{}
	if ev.Budget != nil {
		details["budget"] = ev.Budget
	}
	if ev.Budget != nil && ev.Budget.LastDeploy != nil {
		d.Impact = reportRows(ev.Budget.LastDeploy)
	} else {
		rep, err := u.lastDeployBefore(r.Context(), ev.Service, ev.CreatedAt)
		if err != nil {
			d.Problems = append(d.Problems, "The service's last deploy could not be read.")
			u.log.Warn("last deploy before evaluation", "evaluation", ev.ID, "err", err)
		}
		d.Impact = reportRows(rep)
	}
	if ev.Security != nil {
		details["security"] = ev.Security
	}
	if ev.Canary != nil {
		details["canary"] = ev.Canary
	}
	if len(details) > 0 {
		// The numbers as a table for people: a JSON round trip gives one
		// generic tree of every result, flattened to named rows.
		raw, _ := json.Marshal(details)
		var tree any
		_ = json.Unmarshal(raw, &tree)
		flatten("", tree, &d.Details)
	}
	return &view{Template: "evaluation", Title: "Gate evaluation " + ev.ID, Nav: "gates", Data: d}, nil
}

type decisionsData struct {
	Items                           []*policy.Decision
	Total                           int
	Point, Result, Service, Subject string
	Disabled                        bool
}

func (u *UI) decisions(r *http.Request) (*view, error) {
	q := r.URL.Query()
	d := decisionsData{Point: q.Get("point"), Result: q.Get("result"), Service: q.Get("service"), Subject: q.Get("subject")}
	if d.Point != "" && d.Point != policy.PointGate && d.Point != policy.PointPlaybook {
		return nil, badRequestf("There is no decision point %q: gate or playbook.", d.Point)
	}
	if d.Result != "" && !slices.Contains([]policy.Result{policy.Allow, policy.Warn, policy.Deny}, policy.Result(d.Result)) {
		return nil, badRequestf("There is no result %q: allow, warn or deny.", d.Result)
	}
	if u.opts.Records == nil {
		d.Disabled = true
		return &view{Template: "decisions", Title: "Decisions", Nav: "decisions", Data: d}, nil
	}
	ds, total, err := u.opts.Records.Decisions(r.Context(), store.DecisionFilter{Point: d.Point, Result: d.Result, Service: d.Service, Subject: d.Subject, Limit: 200})
	if err != nil {
		return nil, err
	}
	d.Items, d.Total = ds, total
	return &view{Template: "decisions", Title: "Decisions", Nav: "decisions", Data: d}, nil
}

type playbooksData struct {
	Playbooks  []playbook.Info
	Specs      []*spec.Playbook
	Runs       []*playbook.Run
	Total      int
	Pending    []*playbook.Run
	KillSwitch playbook.KillSwitch
	Disabled   bool
	Playbook   string
	State      string
}

func (u *UI) playbooks(r *http.Request) (*view, error) {
	q := r.URL.Query()
	d := playbooksData{Specs: u.opts.Specs().Playbooks, Playbook: q.Get("playbook"), State: q.Get("state")}
	if d.State != "" && !slices.Contains(playbook.States, playbook.State(d.State)) {
		return nil, badRequestf("There is no run state %q.", d.State)
	}
	if u.opts.Playbooks == nil {
		d.Disabled = true
		return &view{Template: "playbooks", Title: "Playbooks", Nav: "playbooks", Data: d}, nil
	}
	ctx := r.Context()
	infos, err := u.opts.Playbooks.Playbooks(ctx)
	if err != nil {
		return nil, err
	}
	d.Playbooks = infos
	runs, total, err := u.opts.Playbooks.Runs(ctx, playbook.RunFilter{Playbook: d.Playbook, State: playbook.State(d.State), Limit: 100})
	if err != nil {
		return nil, err
	}
	d.Runs, d.Total = runs, total
	if d.Pending, _, err = u.opts.Playbooks.Runs(ctx, playbook.RunFilter{State: playbook.StatePending, Limit: 50}); err != nil {
		return nil, err
	}
	if d.KillSwitch, err = u.opts.Playbooks.KillSwitch(ctx); err != nil {
		return nil, err
	}
	return &view{Template: "playbooks", Title: "Playbooks", Nav: "playbooks", Data: d, Form: len(d.Pending) > 0}, nil
}

type runData struct {
	Run       *playbook.Run
	CanDecide bool
	Role      string
}

func (u *UI) run(r *http.Request) (*view, error) {
	if u.opts.Playbooks == nil {
		return nil, notFoundf("Playbooks are not configured on this server.")
	}
	run, err := u.opts.Playbooks.RunByID(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	p, _ := api.PrincipalFrom(r.Context())
	d := runData{Run: run, CanDecide: run.State == playbook.StatePending, Role: roleLabel(p.Role)}
	return &view{Template: "run", Title: "Playbook run " + run.ID, Nav: "playbooks", Data: d, Form: d.CanDecide}, nil
}

// ensure the interfaces match the components they stand for.
var (
	_ Incidents = (*alert.Incidents)(nil)
	_ Gates     = (*gate.Runner)(nil)
	_ Records   = (*store.Store)(nil)
	_ Playbooks = (*playbook.Runner)(nil)
)
