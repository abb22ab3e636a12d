package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// Result is what happened in one run of a scenario and what QSP did
// about it. Times are simulated.
type Result struct {
	Scenario string      `json:"scenario"`
	Title    string      `json:"title"`
	Expect   Expectation `json:"-"`
	Started  time.Time   `json:"started"`
	// FaultEnded is when the fault stopped; EndedBy says what stopped it.
	FaultEnded time.Time `json:"faultEnded"`
	EndedBy    string    `json:"endedBy"`

	// Detected is set when the expected alert fired, at DetectedAt.
	Detected   bool          `json:"detected"`
	DetectedAt time.Time     `json:"detectedAt,omitzero"`
	TTD        time.Duration `json:"ttd"`
	SLO        string        `json:"slo"`
	Severity   string        `json:"severity"`
	// Alerts are every alert that fired during the scenario, "slo
	// severity" (the expected one included).
	Alerts []string `json:"alerts"`
	// Incidents are the incidents that hold the expected alert; Opened
	// every incident opened during the scenario, of any service (one
	// trouble, one incident).
	Incidents []int64 `json:"incidents"`
	Opened    []int64 `json:"opened"`
	// Gate is the gate evaluation the scenario ran, if any.
	Gate *GateResult `json:"gate,omitempty"`
	// Playbooks are the runs of the playbooks of the scenario's service.
	Playbooks []PlaybookResult `json:"playbooks"`
	// Calls are the platform API calls the playbooks made.
	Calls []Call `json:"calls"`
	// Restarts counts worker restarts during the scenario.
	Restarts int `json:"restarts"`
	// NoDataChecks counts snapshots taken while telemetry was lost;
	// NotNoData lists SLOs seen in another state then (must be none).
	NoDataChecks int      `json:"noDataChecks,omitempty"`
	NotNoData    []string `json:"notNoData,omitempty"`

	// Problems are the expectations QSP did not meet; Missing says which
	// expectations were not checked and why (a component the app does
	// not have, a run the demo interrupted).
	Problems []string `json:"problems"`
	Missing  []string `json:"missing,omitempty"`
	// Interrupted is set when the demo stopped during the scenario.
	Interrupted bool `json:"interrupted,omitempty"`

	// key is the SLO group of the expected alert, once detected.
	key string
}

// OK reports whether QSP met every expectation checked.
func (r *Result) OK() bool { return len(r.Problems) == 0 }

// GateResult is a gate evaluation run by a scenario.
type GateResult struct {
	Name    string    `json:"name"`
	At      time.Time `json:"at"`
	State   string    `json:"state"`
	Canary  string    `json:"canary"`
	Summary string    `json:"summary"`
	Err     string    `json:"error,omitempty"`
}

// PlaybookResult is one playbook run.
type PlaybookResult struct {
	Playbook string    `json:"playbook"`
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Created  time.Time `json:"created"`
	Acted    time.Time `json:"acted,omitzero"`
}

// scenarioRunner runs scenarios against a running app.
type scenarioRunner struct {
	sim      *Simulator
	clock    *Clock
	store    *store.Store
	engine   *engine.Engine
	specs    func() *spec.Set
	api      *api.Client
	platform *platform
	logger   *slog.Logger
	out      io.Writer
	quiet    time.Duration
	// playbooks reports whether the app runs playbooks; when it does not,
	// playbook expectations are reported as missing instead of checked.
	playbooks bool
	// approve approves a playbook run waiting for approval, as the
	// on-call would; nil when the app has no approval API.
	approve func(ctx context.Context, run PlaybookResult) error
	// url is the dashboard's; during is Options.During.
	url    string
	during func(ctx context.Context, m Moment)
}

// onCallNotices is how long a pending approval waits for the simulated
// on-call when nothing paged them: they approve at once when paged.
const onCallNotices = 10 * time.Minute

// run injects sc, watches what QSP does until the fault ends and the
// quiet period after it is over (or ctx ends), and judges it.
func (r *scenarioRunner) run(ctx context.Context, sc Scenario) *Result {
	start := r.clock.Now()
	res := &Result{Scenario: sc.Name, Title: sc.Title, Expect: sc.Expect, Started: start, SLO: sc.Expect.SLO, Severity: sc.Expect.Severity}
	restarts := r.sim.Restarts()
	sc.Start(r.sim)
	fmt.Fprintf(r.out, "scenario %s started at %s: %s\n", sc.Name, start.Format("Jan 2 15:04"), sc.Title)
	r.logger.Info("scenario started", "scenario", sc.Name)
	steps := slices.Clone(sc.Steps)
	approved := map[string]bool{}
	pendingSince := map[string]time.Time{}
	tick := time.NewTicker(max(r.clock.Real(15*time.Second), 20*time.Millisecond))
	defer tick.Stop()
	var ended time.Time
	looked := false // Options.During was called
	for ctx.Err() == nil {
		now := r.clock.Now()
		for len(steps) > 0 && !now.Before(start.Add(steps[0].At)) {
			r.step(ctx, steps[0], res)
			steps = steps[1:]
		}
		if ended.IsZero() {
			switch {
			case sc.Remedy != "" && r.remedied(sc.Remedy, start):
				ended, res.EndedBy = now, "remediation ("+sc.Remedy+")"
			case !now.Before(start.Add(sc.Length)):
				ended, res.EndedBy = now, "the team's fix"
			}
			if !ended.IsZero() {
				r.sim.Update(sc.End)
				res.FaultEnded = ended
				r.logger.Info("scenario fault ended", "scenario", sc.Name, "by", res.EndedBy)
			}
		}
		if !res.Detected {
			r.detect(ctx, res)
		}
		if r.during != nil && !looked && res.Detected && ended.IsZero() {
			looked = r.look(ctx, sc, res, now)
		}
		if sc.Expect.NoData && ended.IsZero() && !now.Before(start.Add(sc.Expect.NoDataAfter)) {
			r.checkNoData(res)
		}
		if r.approve != nil && sc.Expect.Playbook != "" {
			for _, run := range r.runs(ctx, sc.Expect.Playbook, start) {
				if run.State != store.PlaybookRunPending || approved[run.ID] {
					continue
				}
				if _, ok := pendingSince[run.ID]; !ok {
					pendingSince[run.ID] = now
				}
				// A person approves: once the page has reached them, or
				// when they notice the request on the dashboard.
				if res.Detected || !now.Before(pendingSince[run.ID].Add(onCallNotices)) {
					approved[run.ID] = true
					if err := r.approve(ctx, run); err != nil {
						r.logger.Warn("approve playbook run", "run", run.ID, "err", err)
					}
				}
			}
		}
		if !ended.IsZero() && !now.Before(ended.Add(r.quiet)) {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	if ended.IsZero() {
		// Stopped early (Ctrl-C): take the fault back all the same.
		r.sim.Update(sc.End)
		res.FaultEnded, res.EndedBy = r.clock.Now(), "the demo stopping"
		res.Interrupted = true
	}
	// The store is read with a fresh context: ctx may be done.
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.finish(fctx, sc, res, restarts)
	return res
}

// lookAfter is how long after the expected alert a scenario without an
// open incident holding it is looked at all the same.
const lookAfter = 2 * time.Minute

// look calls Options.During, with the clock standing still, once an open
// incident holds the expected alert or lookAfter passed since it fired;
// it reports whether it did.
func (r *scenarioRunner) look(ctx context.Context, sc Scenario, res *Result, now time.Time) bool {
	m := Moment{URL: r.url, Scenario: sc, Started: res.Started, DetectedAt: res.DetectedAt}
	if s := r.specs().SLO(sc.Expect.SLO); s != nil {
		m.Service = s.Spec.Service
	}
	incs, err := r.store.OpenIncidentsWithAlert(ctx, res.key, res.Severity)
	if err != nil {
		r.logger.Warn("read incidents", "err", err)
	}
	for _, inc := range incs {
		m.Incidents = append(m.Incidents, inc.ID)
	}
	if len(m.Incidents) == 0 && now.Before(res.DetectedAt.Add(lookAfter)) {
		return false
	}
	r.clock.Pause()
	defer r.clock.Start()
	m.At = r.clock.Now()
	r.during(ctx, m)
	return true
}

// remedied reports whether the platform API received a successful call
// to path since start.
func (r *scenarioRunner) remedied(path string, since time.Time) bool {
	for _, c := range r.platform.Calls(since) {
		if c.Path == path && c.Status/100 == 2 {
			return true
		}
	}
	return false
}

// detect looks for the expected alert's first firing since the start.
func (r *scenarioRunner) detect(ctx context.Context, res *Result) {
	ts, err := r.store.Transitions(ctx, store.TransitionFilter{SLO: res.Expect.SLO, From: res.Started, Limit: 1000})
	if err != nil {
		r.logger.Warn("read transitions", "err", err)
		return
	}
	for i := len(ts) - 1; i >= 0; i-- { // oldest first
		t := ts[i]
		if t.Severity == res.Expect.Severity && t.To == "firing" {
			res.Detected, res.DetectedAt, res.TTD, res.key = true, t.At, t.At.Sub(res.Started), t.Key
			fmt.Fprintf(r.out, "scenario %s detected at %s: %s %s fired after %s\n", res.Scenario,
				t.At.Format("15:04"), t.SLO, t.Severity, formatDuration(res.TTD))
			return
		}
	}
}

// checkNoData records every SLO the engine reports in a state other than
// no_data while telemetry is lost.
func (r *scenarioRunner) checkNoData(res *Result) {
	snap := r.engine.Snapshot()
	if snap == nil || len(snap.Statuses) == 0 {
		return
	}
	res.NoDataChecks++
	for _, st := range snap.Statuses {
		if st.State != engine.StateNoData {
			entry := fmt.Sprintf("%s=%s at %s", st.Key, st.State, snap.At.Format("15:04"))
			if !slices.ContainsFunc(res.NotNoData, func(s string) bool { return strings.HasPrefix(s, st.Key+"=") }) {
				res.NotNoData = append(res.NotNoData, entry)
			}
		}
	}
}

// step runs a timed step of a scenario.
func (r *scenarioRunner) step(ctx context.Context, s Step, res *Result) {
	now := r.clock.Now()
	switch s.Kind {
	case StepDeploy:
		ev := map[string]any{"events": []map[string]any{{
			"type": "deploy", "service": s.Service, "version": s.Version, "time": now.UTC().Format(time.RFC3339Nano),
			"description": "rollout of " + s.Version + " (canary step)",
		}}}
		if err := r.api.Do(ctx, http.MethodPost, "/api/v1/events", ev, nil); err != nil {
			r.logger.Warn("post deploy marker", "err", err)
		}
		fmt.Fprintf(r.out, "  deploy marker: %s %s\n", s.Service, s.Version)
	case StepGate:
		g := &GateResult{Name: s.Gate, At: now}
		res.Gate = g
		ev, err := r.runGate(ctx, s)
		if err != nil {
			g.Err = err.Error()
			r.logger.Warn("run gate", "gate", s.Gate, "err", err)
			fmt.Fprintf(r.out, "  gate %s: error: %v\n", s.Gate, err)
			return
		}
		g.State, g.Summary = string(ev.State), ev.Summary
		if ev.Canary != nil {
			g.Canary = string(ev.Canary.Verdict)
		}
		fmt.Fprintf(r.out, "  gate %s: %s (canary %s)\n", s.Gate, g.State, g.Canary)
	}
}

// runGate evaluates a gate as a CI job would: the change, the image's
// vulnerability report, and the canary judged on the last 10 minutes of
// the canary and baseline tracks.
func (r *scenarioRunner) runGate(ctx context.Context, s Step) (*gate.Evaluation, error) {
	body := map[string]any{
		"change": map[string]any{"kind": "feature", "version": s.Version, "description": "promote " + s.Service + " " + s.Version},
		"reports": []map[string]any{{
			"name":    "trivy-" + s.Service + ".json",
			"content": json.RawMessage(trivyReport(s.Service, s.Version, r.clock.Now())),
		}},
	}
	var ev gate.Evaluation
	if err := r.api.Do(ctx, http.MethodPost, "/api/v1/gates/"+s.Gate+"/evaluations", body, &ev); err != nil {
		return nil, err
	}
	// A gate that waits for canary intervals answers at once; poll it.
	for !ev.State.Done() {
		if err := r.clock.SleepUntil(ctx, r.clock.Now().Add(30*time.Second)); err != nil {
			return nil, err
		}
		if err := r.api.Do(ctx, http.MethodGet, "/api/v1/gates/evaluations/"+ev.ID, nil, &ev); err != nil {
			return nil, err
		}
	}
	return &ev, nil
}

// trivyReport is the image scan a CI job uploads with the gate run: one
// fixable high finding, within the gate's limits.
func trivyReport(service, version string, now time.Time) []byte {
	image := "registry.example.com/shop/" + service + ":" + version
	doc := map[string]any{
		"SchemaVersion": 2, "CreatedAt": now.UTC().Format(time.RFC3339), "ArtifactName": image, "ArtifactType": "container_image",
		"Results": []map[string]any{{
			"Target": image + " (debian 12.8)", "Class": "os-pkgs", "Type": "debian",
			"Vulnerabilities": []map[string]any{{
				"VulnerabilityID": "CVE-2024-45490", "PkgName": "libexpat1", "InstalledVersion": "2.5.0-1",
				"FixedVersion": "2.5.0-1+deb12u1", "Status": "fixed", "Severity": "HIGH",
				"Title": "libexpat: negative length for XML_ParseBuffer",
			}},
		}},
	}
	b, _ := json.Marshal(doc)
	return b
}

// runs returns the runs of a playbook created since since.
func (r *scenarioRunner) runs(ctx context.Context, playbook string, since time.Time) []PlaybookResult {
	rs, _, err := r.store.PlaybookRuns(ctx, store.PlaybookRunFilter{Playbook: playbook, From: since})
	if err != nil {
		r.logger.Warn("read playbook runs", "err", err)
		return nil
	}
	out := make([]PlaybookResult, 0, len(rs))
	for i := len(rs) - 1; i >= 0; i-- {
		p := rs[i]
		out = append(out, PlaybookResult{Playbook: p.Playbook, ID: p.ID, State: p.State, Created: p.CreatedAt, Acted: p.ActedAt})
	}
	return out
}

// finish gathers what QSP did during the scenario and judges it.
func (r *scenarioRunner) finish(ctx context.Context, sc Scenario, res *Result, restarts int) {
	if !res.Detected {
		r.detect(ctx, res)
	}
	res.Restarts = r.sim.Restarts() - restarts
	ex := sc.Expect
	var service string
	if s := r.specs().SLO(ex.SLO); s != nil {
		service = s.Spec.Service
	}
	// Every alert that fired during the scenario, oldest first.
	ts, err := r.store.Transitions(ctx, store.TransitionFilter{From: res.Started, Limit: 10000})
	if err != nil {
		res.Problems = append(res.Problems, "read transitions: "+err.Error())
	}
	for i := len(ts) - 1; i >= 0; i-- {
		t := ts[i]
		if t.To != "firing" {
			continue
		}
		name := t.Key
		if name == "" {
			name = t.Alert
		}
		if a := name + " " + t.Severity; !slices.Contains(res.Alerts, a) {
			res.Alerts = append(res.Alerts, a)
		}
	}
	if service != "" {
		incs, err := r.store.Incidents(ctx, store.IncidentFilter{Service: service, OpenedFrom: res.Started.Add(-24 * time.Hour), WithAlerts: true})
		if err != nil {
			res.Problems = append(res.Problems, "read incidents: "+err.Error())
		}
		for _, inc := range incs {
			for _, a := range inc.Alerts {
				if a.SLO == ex.SLO && !a.FiredAt.Before(res.Started) && !slices.Contains(res.Incidents, inc.ID) {
					res.Incidents = append(res.Incidents, inc.ID)
				}
			}
		}
	}
	opened, err := r.store.Incidents(ctx, store.IncidentFilter{OpenedFrom: res.Started, OpenedTo: r.clock.Now().Add(time.Second), Limit: 100})
	if err != nil {
		res.Problems = append(res.Problems, "read incidents: "+err.Error())
	}
	for i := len(opened) - 1; i >= 0; i-- { // oldest first
		res.Opened = append(res.Opened, opened[i].ID)
	}
	if service != "" {
		for _, pb := range r.specs().Playbooks {
			if pb.Spec.Service == service {
				res.Playbooks = append(res.Playbooks, r.runs(ctx, pb.Name(), res.Started)...)
			}
		}
	}
	res.Calls = r.platform.Calls(res.Started)

	// Judge, unless the demo stopped before the scenario could play out.
	if res.Interrupted {
		res.Missing = append(res.Missing, fmt.Sprintf("interrupted after %s: expectations not judged", formatDuration(res.FaultEnded.Sub(res.Started))))
		return
	}
	problem := func(format string, args ...any) { res.Problems = append(res.Problems, fmt.Sprintf(format, args...)) }
	switch {
	case !res.Detected:
		problem("%s %s did not fire", ex.SLO, ex.Severity)
	case res.TTD > ex.Within:
		problem("%s %s fired after %s, later than %s", ex.SLO, ex.Severity, formatDuration(res.TTD), formatDuration(ex.Within))
	}
	if ex.Incident && len(res.Incidents) == 0 {
		problem("no incident holds the %s alert", ex.SLO)
	}
	if ex.Gate != "" {
		switch g := res.Gate; {
		case g == nil:
			problem("gate %s did not run", ex.Gate)
		case g.Err != "":
			problem("gate %s: %s", ex.Gate, g.Err)
		case g.State != string(gate.StateFail) || g.Canary != "fail":
			problem("gate %s: %s with canary %q, want fail with a failed canary", ex.Gate, g.State, g.Canary)
		}
	}
	if ex.Playbook != "" {
		if !r.playbooks {
			res.Missing = append(res.Missing, "playbooks: the app runs no playbooks yet, so "+ex.Playbook+" could not act")
		} else {
			n := 0
			for _, p := range res.Playbooks {
				if p.Playbook == ex.Playbook {
					n++
				}
			}
			if n == 0 {
				problem("playbook %s did not run", ex.Playbook)
			}
			calls := 0
			for _, c := range res.Calls {
				if c.Path == ex.Call && c.Status/100 == 2 {
					calls++
				}
			}
			if ex.Call != "" && calls != 1 {
				problem("playbook %s called %s %d times, want once", ex.Playbook, ex.Call, calls)
			}
		}
	}
	if ex.NoData {
		if res.NoDataChecks == 0 {
			problem("no snapshot taken while telemetry was lost")
		}
		if len(res.NotNoData) > 0 {
			problem("while telemetry was lost, SLOs were not no_data: %s", strings.Join(res.NotNoData, ", "))
		}
	}
	if ex.Restarts && res.Restarts == 0 {
		problem("the workers never restarted")
	}
}

// formatDuration prints a simulated duration as "12m30s" or "1h05m".
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute && d%time.Minute == 0:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d >= time.Minute:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return d.String()
}
