package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
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
	Burning    []burning
	Firing     []oncallAlert
	Pending    []oncallAlert
	Near       []nearMiss
	NoData     []*engine.Status
	Incidents  []alert.Incident
	Deploys    []store.Deploy
	Approvals  []*playbook.Run
	SourceDown *engine.AlertStatus
	Problems   []string
	At         time.Time
}

// nearShare is how close to its factor a condition must burn to be shown
// as close to firing.
const nearShare = 0.5

func (u *UI) oncall(r *http.Request) (*view, error) {
	snap := u.opts.Engine.Snapshot()
	d := oncallData{SourceDown: snap.SourceDown, At: snap.At}
	for _, st := range snap.Statuses {
		if st.State == engine.StateNoData {
			d.NoData = append(d.NoData, st)
		}
		var best *nearMiss
		for _, a := range st.Alerts {
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
	SLO       *spec.SLO
	Indicator string
	Groups    []*engine.Status
	Status    *engine.Status
	Grouped   bool
	SLIChart  *LineChart
	Budget    *LineChart
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
	switch d.Range {
	case "":
	case "7d", "1d", "6h", "1h":
		var sd spec.Duration
		_ = sd.UnmarshalText([]byte(d.Range))
		span = min(window, sd.D())
	default:
		return nil, badRequestf("There is no range %q: 7d, 1d, 6h or 1h.", d.Range)
	}
	d.Window = spec.Duration(window).String()
	if s != nil {
		d.Window = s.Spec.Window.String()
	}
	d.From = d.To.Add(-span)
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
	if u.opts.History != nil {
		pts, err := u.history(ctx, st.Key, &d.From, d.To, d.Range == "")
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

// historyCharts draws the SLI and the budget burn-down of a group.
func historyCharts(st *engine.Status, pts []engine.HistoryPoint, from, to time.Time, deps []store.Deploy, incs []alert.Incident) (*LineChart, *LineChart) {
	sli := make([]Sample, len(pts))
	bud := make([]Sample, len(pts))
	for i, p := range pts {
		sli[i] = Sample{At: p.At, V: p.SLI}
		bud[i] = Sample{At: p.At, V: p.BudgetRemaining}
	}
	var markers []Marker
	for _, dp := range deps {
		label := "Deploy of " + dp.Service
		if dp.Version != "" {
			label += " " + dp.Version
		}
		markers = append(markers, Marker{At: dp.At, Label: label + " at " + ts(dp.At)})
	}
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
		Format: func(v float64) string { return num(v) + "×" }}
	var hot []string
	for _, w := range st.Windows {
		b := Bar{Label: w.Name, V: w.BurnRate}
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
	Incident alert.Incident
	CanAck   bool
	Role     string
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
	return &view{Template: "incident", Title: fmt.Sprintf("Incident %d", id), Nav: "incidents", Data: d, Form: d.CanAck}, nil
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
	Details    string
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
	if ev.Security != nil {
		details["security"] = ev.Security
	}
	if ev.Canary != nil {
		details["canary"] = ev.Canary
	}
	if len(details) > 0 {
		b, _ := json.MarshalIndent(details, "", "  ")
		d.Details = string(b)
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
