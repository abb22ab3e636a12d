// Package report turns what QSP recorded over a period into documents for
// people: the SLO report of a month (attainment per SLO against its
// objective, the budget spent and by which incidents and deploys, time to
// detect and repair, gate verdicts, playbook runs, the SLOs at risk next
// period) and the postmortem draft of an incident. It reads the engine's
// rollups and the store's records, after the rest of the data flow, and
// changes nothing. Markdown and JSON are written here; the HTML document,
// which shares the UI's charts, is rendered by internal/ui, and PDF prints
// that HTML with headless Chromium (pdf.go).
package report

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/store"
)

// Counter answers an SLO group's event counts over a span;
// *engine.Engine implements it. Safe for concurrent use; it returns an
// error wrapping engine.ErrUnknownSLO for a key without counts of its own
// (a composite SLO).
type Counter interface {
	Counts(ctx context.Context, key string, from, to time.Time) (engine.PeriodCounts, error)
}

// Snapshotter gives the SLOs and their current state; *engine.Engine
// implements it. The snapshot is immutable.
type Snapshotter interface {
	Snapshot() *engine.Snapshot
}

// Records are the store's logs a report reads; *store.Store implements
// it. Safe for concurrent use.
type Records interface {
	Incidents(ctx context.Context, f store.IncidentFilter) ([]*store.Incident, error)
	Deploys(ctx context.Context, f store.DeployFilter) ([]store.Deploy, int, error)
	GateEvaluations(ctx context.Context, f store.GateEvaluationFilter) ([]store.GateEvaluation, int, error)
	PlaybookRuns(ctx context.Context, f store.PlaybookRunFilter) ([]store.PlaybookRun, int, error)
}

// Options configure a Builder. Counter, Snapshots and Records are
// required.
type Options struct {
	Counter   Counter
	Snapshots Snapshotter
	Records   Records
	// Location is the time zone of periods; default UTC.
	Location *time.Location
	// DeployImpact is how long after a deploy its budget spend is
	// counted (cut at the service's next deploy); default 1h.
	DeployImpact time.Duration
	// Now is the clock: the current period ends at now; default time.Now.
	Now func() time.Time
}

// Builder builds reports.
type Builder struct {
	opts Options
}

// Limits of a report, so that one request cannot read the whole store.
const (
	// maxRecords bounds incidents, deploys, gate evaluations and playbook
	// runs read for one period; a report says when it was cut.
	maxRecords = 10000
	// maxSLOs bounds the SLO groups of one report.
	maxSLOs = 2000
)

// Errors of Build.
var (
	// ErrBadPeriod is returned for a period that is not a month
	// (YYYY-MM), or one that has not begun.
	ErrBadPeriod = errors.New("bad period")
)

// NewBuilder checks the options.
func NewBuilder(opts Options) (*Builder, error) {
	switch {
	case opts.Counter == nil:
		return nil, errors.New("report: no counter")
	case opts.Snapshots == nil:
		return nil, errors.New("report: no snapshots")
	case opts.Records == nil:
		return nil, errors.New("report: no records")
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.DeployImpact <= 0 {
		opts.DeployImpact = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Builder{opts: opts}, nil
}

// Request selects a report.
type Request struct {
	// Period is a month, "2026-11".
	Period string
	// Service limits the report to one service; "" is all.
	Service string
}

// Report is the SLO report of one period.
type Report struct {
	Period      string    `json:"period"`
	Service     string    `json:"service,omitempty"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	GeneratedAt time.Time `json:"generatedAt"`
	// Partial is set while the period is still running: To is now.
	Partial bool        `json:"partial,omitempty"`
	SLOs    []SLOReport `json:"slos"`
	// Met and Missed count the SLOs with events that met and missed
	// their objective.
	Met    int `json:"met"`
	Missed int `json:"missed"`

	Incidents []Incident `json:"incidents"`
	// TimeToDetect and TimeToRepair summarise the incidents opened in
	// the period (repair: closed ones only), in seconds.
	TimeToDetect Durations `json:"timeToDetectSeconds"`
	TimeToRepair Durations `json:"timeToRepairSeconds"`
	Deploys      []Deploy  `json:"deploys"`
	Gates        Gates     `json:"gates"`
	Playbooks    Playbooks `json:"playbooks"`
	AtRisk       []Risk    `json:"atRisk"`
	// Notes say what the report could not cover.
	Notes []string `json:"notes,omitempty"`
}

// SLOReport is one SLO group's period.
type SLOReport struct {
	Key       string  `json:"key"`
	SLO       string  `json:"slo"`
	Service   string  `json:"service"`
	Objective float64 `json:"objective"`
	Good      float64 `json:"good"`
	Total     float64 `json:"total"`
	// Attainment is good/total over the period; nil without events.
	Attainment *float64 `json:"attainment"`
	Met        bool     `json:"met"`
	// BudgetAllowed and BudgetSpent are bad events: allowed is
	// total × (1 − objective); BudgetSpentRatio is spent / allowed (above
	// 1 when the budget was overspent).
	BudgetAllowed    float64 `json:"budgetAllowed"`
	BudgetSpent      float64 `json:"budgetSpent"`
	BudgetSpentRatio float64 `json:"budgetSpentRatio"`
	// Coverage is the share of the period the rollup still holds and
	// that had telemetry.
	Coverage float64 `json:"coverage"`
	// ByIncident and ByDeploy attribute the bad events to the incidents
	// of the SLO's alerts and to the spans after the service's deploys.
	ByIncident []Spend `json:"byIncident"`
	ByDeploy   []Spend `json:"byDeploy"`
	// Daily is the attainment of each day, for the chart.
	Daily []Day `json:"daily"`
}

// Spend is budget spent during an incident or after a deploy.
type Spend struct {
	// Ref is "incident 12" or "deploy checkout v2.14.0".
	Ref  string    `json:"ref"`
	ID   int64     `json:"id"`
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	Bad  float64   `json:"bad"`
	// Share is Bad as a share of the period's allowed budget.
	Share float64 `json:"share"`
}

// Day is one day's attainment; nil without events.
type Day struct {
	Day        time.Time `json:"day"`
	Attainment *float64  `json:"attainment"`
}

// Incident is an incident opened in the period.
type Incident struct {
	ID           int64     `json:"id"`
	Service      string    `json:"service"`
	Title        string    `json:"title"`
	Severity     string    `json:"severity"`
	State        string    `json:"state"`
	FirstBadAt   time.Time `json:"firstBadAt"`
	DetectedAt   time.Time `json:"detectedAt"`
	ResolvedAt   time.Time `json:"resolvedAt,omitzero"`
	TimeToDetect float64   `json:"timeToDetectSeconds"`
	TimeToRepair *float64  `json:"timeToRepairSeconds,omitempty"`
	SLOs         []string  `json:"slos"`
}

// Deploy is a deploy marker of the period.
type Deploy struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Service string    `json:"service"`
	Version string    `json:"version,omitempty"`
	Verdict string    `json:"verdict,omitempty"`
}

// Durations summarise durations in seconds.
type Durations struct {
	Count  int     `json:"count"`
	Mean   float64 `json:"mean"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// Gates are the gate evaluations of the period.
type Gates struct {
	// ByState counts evaluations by state (passed, failed, ...).
	ByState     map[string]int `json:"byState"`
	Evaluations []Gate         `json:"evaluations"`
}

// Gate is one gate evaluation.
type Gate struct {
	ID      string    `json:"id"`
	Gate    string    `json:"gate"`
	Service string    `json:"service"`
	Version string    `json:"version,omitempty"`
	State   string    `json:"state"`
	At      time.Time `json:"at"`
}

// Playbooks are the playbook runs of the period.
type Playbooks struct {
	ByState map[string]int `json:"byState"`
	Runs    []Run          `json:"runs"`
}

// Run is one playbook run.
type Run struct {
	ID       string    `json:"id"`
	Playbook string    `json:"playbook"`
	Service  string    `json:"service"`
	State    string    `json:"state"`
	At       time.Time `json:"at"`
}

// Risk is an SLO at risk next period, from its state now.
type Risk struct {
	Key             string  `json:"key"`
	Service         string  `json:"service"`
	BudgetRemaining float64 `json:"budgetRemaining"`
	// BurnRate is the burn over the longest alert window with events.
	BurnRate *float64 `json:"burnRate,omitempty"`
	Window   string   `json:"window,omitempty"`
	// Exhaustion is the engine's headline forecast when it projects the
	// budget to run out (engine.Forecast: method, window, when).
	Exhaustion *engine.Forecast `json:"exhaustion,omitempty"`
	Reason     string           `json:"reason"`
}

// ParsePeriod returns the month a period names, [from, to), in loc.
func ParsePeriod(period string, loc *time.Location) (from, to time.Time, err error) {
	if len(period) > 7 {
		return time.Time{}, time.Time{}, fmt.Errorf("period %.20q: %w: want a month, YYYY-MM", period, ErrBadPeriod)
	}
	t, err := time.ParseInLocation("2006-01", period, loc)
	if err != nil || t.Year() < 2000 {
		return time.Time{}, time.Time{}, fmt.Errorf("period %q: %w: want a month, YYYY-MM (2000 or later)", period, ErrBadPeriod)
	}
	return t, t.AddDate(0, 1, 0), nil
}

// Build computes the report req asks for.
func (b *Builder) Build(ctx context.Context, req Request) (*Report, error) {
	from, to, err := ParsePeriod(req.Period, b.opts.Location)
	if err != nil {
		return nil, err
	}
	now := b.opts.Now()
	if !from.Before(now) {
		return nil, fmt.Errorf("period %s: %w: it has not begun (now %s)", req.Period, ErrBadPeriod, now.In(b.opts.Location).Format("2006-01-02"))
	}
	r := &Report{Period: req.Period, Service: req.Service, From: from, To: to, GeneratedAt: now}
	if now.Before(to) {
		r.To, r.Partial = now, true
	}
	incs, err := b.opts.Records.Incidents(ctx, store.IncidentFilter{Service: req.Service, HasService: req.Service != "",
		OpenedFrom: from, OpenedTo: r.To, WithAlerts: true, Limit: maxRecords})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if len(incs) == maxRecords {
		r.Notes = append(r.Notes, fmt.Sprintf("only the newest %d incidents are included", maxRecords))
	}
	deps, n, err := b.opts.Records.Deploys(ctx, store.DeployFilter{Service: req.Service, From: from, To: r.To, Limit: maxRecords})
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if n > len(deps) {
		r.Notes = append(r.Notes, fmt.Sprintf("only the newest %d of %d deploys are included", len(deps), n))
	}
	if err := b.slos(ctx, r, incs, deps); err != nil {
		return nil, err
	}
	b.incidents(r, incs)
	for _, d := range slices.Backward(deps) {
		r.Deploys = append(r.Deploys, Deploy{ID: d.ID, At: d.At, Service: d.Service, Version: d.Version, Verdict: d.Verdict})
	}
	if r.Deploys == nil {
		r.Deploys = []Deploy{}
	}
	if err := b.gates(ctx, r); err != nil {
		return nil, err
	}
	if err := b.playbooks(ctx, r); err != nil {
		return nil, err
	}
	b.atRisk(r)
	return r, nil
}

// slos computes every SLO group's attainment, budget and attribution.
func (b *Builder) slos(ctx context.Context, r *Report, incs []*store.Incident, deps []store.Deploy) error {
	r.SLOs = []SLOReport{}
	snap := b.opts.Snapshots.Snapshot()
	if snap == nil {
		return nil
	}
	period := r.To.Sub(r.From)
	for _, st := range snap.Statuses {
		if r.Service != "" && st.Service != r.Service {
			continue
		}
		if len(r.SLOs) == maxSLOs {
			r.Notes = append(r.Notes, fmt.Sprintf("only the first %d SLO groups are included", maxSLOs))
			break
		}
		pc, err := b.opts.Counter.Counts(ctx, st.Key, r.From, r.To)
		if errors.Is(err, engine.ErrUnknownSLO) {
			// Composite SLOs have no counts of their own; their parts
			// are in the report.
			continue
		}
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		s := SLOReport{Key: st.Key, SLO: st.SLO, Service: st.Service, Objective: st.Objective,
			Good: pc.Counts.Good, Total: pc.Counts.Total, ByIncident: []Spend{}, ByDeploy: []Spend{}}
		if period > 0 {
			s.Coverage = float64(pc.DataMinutes) * float64(time.Minute) / float64(period)
		}
		if a, ok := pc.Counts.Ratio(); ok {
			s.Attainment = &a
			// Within a float tolerance: 0.999 of 1000 events is met.
			s.Met = a >= st.Objective-1e-12
			if s.Met {
				r.Met++
			} else {
				r.Missed++
			}
		}
		bud := slo.ComputeBudget(pc.Counts, 1-st.Objective)
		s.BudgetAllowed, s.BudgetSpent = bud.Allowed, bud.Consumed
		if !math.IsInf(bud.ConsumedRatio, 0) {
			s.BudgetSpentRatio = bud.ConsumedRatio
		}
		if err := b.attribute(ctx, r, &s, incs, deps); err != nil {
			return err
		}
		if err := b.daily(ctx, r, &s); err != nil {
			return err
		}
		r.SLOs = append(r.SLOs, s)
	}
	return nil
}

// bad returns the bad events of key over [from, to) cut to the report's
// period.
func (b *Builder) bad(ctx context.Context, r *Report, key string, from, to time.Time) (float64, time.Time, time.Time, error) {
	from, to = maxTime(from, r.From), minTime(to, r.To)
	if !from.Before(to) {
		return 0, from, to, nil
	}
	pc, err := b.opts.Counter.Counts(ctx, key, from, to)
	if err != nil {
		return 0, from, to, fmt.Errorf("report: %w", err)
	}
	return pc.Counts.Bad(), from, to, nil
}

// attribute splits the SLO's bad events among the incidents that held
// one of its alerts (first bad minute to resolution) and the deploys of
// its service (DeployImpact after each, cut at the next deploy).
func (b *Builder) attribute(ctx context.Context, r *Report, s *SLOReport, incs []*store.Incident, deps []store.Deploy) error {
	share := func(bad float64) float64 {
		if s.BudgetAllowed > 0 {
			return bad / s.BudgetAllowed
		}
		return 0
	}
	for _, inc := range slices.Backward(incs) {
		if !slices.ContainsFunc(inc.Alerts, func(a store.IncidentAlert) bool { return a.Key == s.Key || a.SLO == s.SLO && a.Key == "" }) {
			continue
		}
		end := inc.ResolvedAt
		if end.IsZero() {
			end = r.To
		}
		bad, f, t, err := b.bad(ctx, r, s.Key, inc.FirstBadAt, end)
		if err != nil {
			return err
		}
		s.ByIncident = append(s.ByIncident, Spend{Ref: fmt.Sprintf("incident %d: %s", inc.ID, inc.Title), ID: inc.ID, From: f, To: t, Bad: bad, Share: share(bad)})
	}
	// deps are newest first: the next deploy of a service is the one
	// seen before it.
	next := map[string]time.Time{}
	var spends []Spend
	for _, d := range deps {
		if d.Service != s.Service {
			continue
		}
		end := d.At.Add(b.opts.DeployImpact)
		if n, ok := next[d.Service]; ok && n.Before(end) {
			end = n
		}
		next[d.Service] = d.At
		bad, f, t, err := b.bad(ctx, r, s.Key, d.At, end)
		if err != nil {
			return err
		}
		ref := strings.TrimSpace("deploy " + d.Service + " " + d.Version)
		spends = append(spends, Spend{Ref: ref, ID: d.ID, From: f, To: t, Bad: bad, Share: share(bad)})
	}
	slices.Reverse(spends)
	s.ByDeploy = append(s.ByDeploy, spends...)
	return nil
}

// daily fills the attainment of each day of the period.
func (b *Builder) daily(ctx context.Context, r *Report, s *SLOReport) error {
	s.Daily = []Day{}
	for d := r.From; d.Before(r.To); d = d.AddDate(0, 0, 1) {
		end := minTime(d.AddDate(0, 0, 1), r.To)
		pc, err := b.opts.Counter.Counts(ctx, s.Key, d, end)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		day := Day{Day: d}
		if a, ok := pc.Counts.Ratio(); ok {
			day.Attainment = &a
		}
		s.Daily = append(s.Daily, day)
	}
	return nil
}

func (b *Builder) incidents(r *Report, incs []*store.Incident) {
	r.Incidents = []Incident{}
	var ttd, ttr []float64
	for _, inc := range slices.Backward(incs) {
		ri := Incident{ID: inc.ID, Service: inc.Service, Title: inc.Title, Severity: inc.Severity, State: inc.State,
			FirstBadAt: inc.FirstBadAt, DetectedAt: inc.DetectedAt, ResolvedAt: inc.ResolvedAt,
			TimeToDetect: inc.DetectedAt.Sub(inc.FirstBadAt).Seconds(), SLOs: []string{}}
		ttd = append(ttd, ri.TimeToDetect)
		if inc.State == store.IncidentClosed && !inc.ResolvedAt.IsZero() {
			v := inc.ResolvedAt.Sub(inc.FirstBadAt).Seconds()
			ri.TimeToRepair = &v
			ttr = append(ttr, v)
		}
		for _, a := range inc.Alerts {
			if a.SLO != "" && !slices.Contains(ri.SLOs, a.SLO) {
				ri.SLOs = append(ri.SLOs, a.SLO)
			}
		}
		r.Incidents = append(r.Incidents, ri)
	}
	r.TimeToDetect, r.TimeToRepair = summarize(ttd), summarize(ttr)
}

func (b *Builder) gates(ctx context.Context, r *Report) error {
	evs, n, err := b.opts.Records.GateEvaluations(ctx, store.GateEvaluationFilter{Service: r.Service, From: r.From, To: r.To, Limit: maxRecords})
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if n > len(evs) {
		r.Notes = append(r.Notes, fmt.Sprintf("only the newest %d of %d gate evaluations are included", len(evs), n))
	}
	r.Gates = Gates{ByState: map[string]int{}, Evaluations: []Gate{}}
	for _, e := range slices.Backward(evs) {
		r.Gates.ByState[e.State]++
		r.Gates.Evaluations = append(r.Gates.Evaluations, Gate{ID: e.ID, Gate: e.Gate, Service: e.Service, Version: e.Version, State: e.State, At: e.CreatedAt})
	}
	return nil
}

func (b *Builder) playbooks(ctx context.Context, r *Report) error {
	runs, n, err := b.opts.Records.PlaybookRuns(ctx, store.PlaybookRunFilter{Service: r.Service, From: r.From, To: r.To, Limit: maxRecords})
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if n > len(runs) {
		r.Notes = append(r.Notes, fmt.Sprintf("only the newest %d of %d playbook runs are included", len(runs), n))
	}
	r.Playbooks = Playbooks{ByState: map[string]int{}, Runs: []Run{}}
	for _, p := range slices.Backward(runs) {
		r.Playbooks.ByState[p.State]++
		r.Playbooks.Runs = append(r.Playbooks.Runs, Run{ID: p.ID, Playbook: p.Playbook, Service: p.Service, State: p.State, At: p.CreatedAt})
	}
	return nil
}

// Thresholds of an SLO at risk next period.
const (
	// riskRemaining: less than a quarter of the budget is left now.
	riskRemaining = 0.25
	// riskBurn: the budget burns faster than it is granted over the
	// longest alert window, so it runs out before the window ends.
	riskBurn = 1.0
)

// atRisk lists the SLOs whose budget is low or burning faster than the
// window grants it, or whose budget the engine projects to run out
// (Status.Exhaustion: the method and when), from the current snapshot,
// most at risk first.
func (b *Builder) atRisk(r *Report) {
	r.AtRisk = []Risk{}
	snap := b.opts.Snapshots.Snapshot()
	if snap == nil {
		return
	}
	for _, st := range snap.Statuses {
		if r.Service != "" && st.Service != r.Service {
			continue
		}
		risk := Risk{Key: st.Key, Service: st.Service, BudgetRemaining: st.Budget.RemainingRatio}
		// The longest window with events: the trend a month ahead is
		// best read from the slowest burn QSP measures.
		for _, w := range slices.Backward(st.Windows) {
			if w.BurnRate != nil {
				risk.BurnRate, risk.Window = w.BurnRate, w.Name
				break
			}
		}
		var why []string
		if st.Budget.Total > 0 && risk.BudgetRemaining < riskRemaining {
			why = append(why, fmt.Sprintf("%s of the budget left", Percent(max(risk.BudgetRemaining, 0))))
		}
		if risk.BurnRate != nil && *risk.BurnRate > riskBurn {
			why = append(why, fmt.Sprintf("burning %.1f× the sustainable rate over %s", *risk.BurnRate, risk.Window))
		}
		if f := st.Exhaustion; f != nil && f.Exhausts {
			fc := *f
			risk.Exhaustion = &fc
			if d, _ := f.In(); d <= 0 {
				why = append(why, fmt.Sprintf("budget spent (%s)", f.Name()))
			} else {
				why = append(why, fmt.Sprintf("projected to run out in %s, at %s (%s)", d.Round(time.Minute), f.At.UTC().Format(time.RFC3339), f.Name()))
			}
		}
		if len(why) == 0 {
			continue
		}
		risk.Reason = strings.Join(why, "; ")
		r.AtRisk = append(r.AtRisk, risk)
	}
	sort.SliceStable(r.AtRisk, func(i, j int) bool { return r.AtRisk[i].BudgetRemaining < r.AtRisk[j].BudgetRemaining })
}

func summarize(xs []float64) Durations {
	if len(xs) == 0 {
		return Durations{}
	}
	s := slices.Sorted(slices.Values(xs))
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Durations{Count: len(s), Mean: sum / float64(len(s)), Median: median, Max: s[len(s)-1]}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
