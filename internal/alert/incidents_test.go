package alert

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// fakeEngine answers BadSince from a table and holds a snapshot.
type fakeEngine struct {
	bad  map[string]time.Time
	snap *engine.Snapshot
}

func (f *fakeEngine) BadSince(key string, threshold float64) (time.Time, bool) {
	if threshold != 1 {
		return time.Time{}, false
	}
	t, ok := f.bad[key]
	return t, ok
}

func (f *fakeEngine) Snapshot() *engine.Snapshot {
	if f.snap == nil {
		return &engine.Snapshot{}
	}
	return f.snap
}

func histogram(t *testing.T, reg *prometheus.Registry, name, service string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelOf(m, "service") == service {
				return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
			}
		}
	}
	return 0, 0
}

func labelOf(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestIncidentLifecycle(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "qsp.db")
	st := openStore(t, path)
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	eng := &fakeEngine{bad: map[string]time.Time{"a": t0.Add(-90 * time.Second), "other": t0.Add(-3 * time.Minute)}}
	reg := prometheus.NewRegistry()
	clock := t0
	newKeeper := func(st *store.Store, reg prometheus.Registerer) *Incidents {
		i, err := NewIncidents(IncidentOptions{Store: st, Engine: eng, Registerer: reg, Now: func() time.Time { return clock }, ExternalURL: "http://qsp"})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	inc := newKeeper(st, reg)

	// A ticket alone opens nothing.
	ticketB := transition("b", "ticket", slo.Pending, slo.Firing, t0.Add(-time.Minute))
	inc.OnTransitions(ctx, []engine.Transition{ticketB})
	if l := listIncidents(t, inc, IncidentFilter{}); len(l) != 0 {
		t.Fatalf("a ticket opened an incident: %+v", l)
	}
	// The engine's snapshot has it firing when the page comes.
	ticketB.Status.Alerts[0].FiredAt = ticketB.At
	eng.snap = engine.NewSnapshot(time.Time{}, []*engine.Status{ticketB.Status}, nil)
	// The page of a opens one; the page of another service opens its own.
	other := transition("other", "page", slo.Pending, slo.Firing, t0)
	other.Service = "search"
	inc.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, t0), other})
	open := listIncidents(t, inc, IncidentFilter{Service: "shop", HasService: true, State: "open"})
	if len(open) != 1 {
		t.Fatalf("open shop incidents: got %d, want 1", len(open))
	}
	id := open[0].ID
	if got := open[0].TimeToDetect; got != 90 {
		t.Errorf("time to detect: got %vs, want 90s (first bad minute from the engine)", got)
	}
	// Further alerts of shop join it: a ticket, and a page of another SLO.
	inc.OnTransitions(ctx, []engine.Transition{
		transition("c", "ticket", slo.Pending, slo.Firing, t0.Add(2*time.Minute)),
		transition("d", "page", slo.Pending, slo.Firing, t0.Add(3*time.Minute)),
	})
	if l := listIncidents(t, inc, IncidentFilter{Service: "shop", HasService: true}); len(l) != 1 || len(l[0].Alerts) != 4 || l[0].FiringAlerts != 4 {
		t.Fatalf("shop incidents after more alerts: got %+v", l)
	}

	// Acknowledged via the API: idempotent, by the first acknowledger.
	clock = t0.Add(4 * time.Minute)
	got, err := inc.Ack(ctx, id, "alice", "rolling back")
	if err != nil || got.AckedBy != "alice" || got.TimeToAcknowledge == nil || *got.TimeToAcknowledge != 240 {
		t.Fatalf("ack: got %+v, %v", got, err)
	}
	clock = t0.Add(5 * time.Minute)
	got, err = inc.Ack(ctx, id, "bob", "")
	if err != nil || got.AckedBy != "alice" || !got.AckedAt.Equal(t0.Add(4*time.Minute)) {
		t.Fatalf("second ack: got %+v, %v; want alice's acknowledgement unchanged", got, err)
	}
	if _, err := inc.Ack(ctx, 9999, "x", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("ack unknown: got %v, want ErrNotFound", err)
	}

	// A restart in the middle: the incident lives in the store.
	st.Close()
	st = openStore(t, path)
	defer st.Close()
	reg = prometheus.NewRegistry()
	inc = newKeeper(st, reg)

	// Resolutions: the incident stays open while any of its alerts fires.
	inc.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Firing, slo.Resolved, t0.Add(20*time.Minute))})
	inc.OnTransitions(ctx, []engine.Transition{transition("d", "page", slo.Firing, slo.Resolved, t0.Add(25*time.Minute))})
	if g, _ := inc.Get(ctx, id); g.State != "open" || g.FiringAlerts != 2 {
		t.Fatalf("with the tickets still firing: state %s, %d firing", g.State, g.FiringAlerts)
	}
	// The ticket of b joined when the incident opened: it fired first.
	inc.OnTransitions(ctx, []engine.Transition{transition("b", "ticket", slo.Firing, slo.Resolved, t0.Add(26*time.Minute))})
	inc.OnTransitions(ctx, []engine.Transition{transition("c", "ticket", slo.Firing, slo.Resolved, t0.Add(40*time.Minute))})
	// Every alert resolved: closed once none fired again for the resolve
	// hold (10m), as resolved when the last alert did.
	for _, at := range []time.Duration{40 * time.Minute, 49 * time.Minute} {
		clock = t0.Add(at)
		inc.OnCycle(ctx)
		if g, _ := inc.Get(ctx, id); g.State != "open" {
			t.Fatalf("at %s, within the resolve hold after the last alert resolved: state %s", at, g.State)
		}
	}
	clock = t0.Add(50 * time.Minute)
	inc.OnCycle(ctx)
	g, err := inc.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if g.State != "closed" || !g.ResolvedAt.Equal(t0.Add(40*time.Minute)) || g.TimeToRepair == nil || *g.TimeToRepair != (40*time.Minute+90*time.Second).Seconds() {
		t.Fatalf("closed incident: got state %s, resolved %s, repair %v", g.State, g.ResolvedAt, g.TimeToRepair)
	}
	var kinds []string
	for _, e := range g.Timeline {
		kinds = append(kinds, e.Kind)
	}
	want := "first_bad alert_fired detected alert_fired alert_fired acknowledged alert_resolved alert_resolved alert_resolved alert_resolved resolved"
	if strings.Join(kinds, " ") != want {
		t.Errorf("timeline:\n got %s\nwant %s", strings.Join(kinds, " "), want)
	}
	if g.Timeline[5].By != "alice" || g.Timeline[5].Detail != "rolling back" {
		t.Errorf("acknowledgement event: got %+v", g.Timeline[5])
	}
	if _, err := inc.Ack(ctx, id, "carol", ""); !errors.Is(err, ErrClosed) {
		t.Errorf("ack of a closed incident: got %v, want ErrClosed", err)
	}
	if n, sum := histogram(t, reg, "qsp_incident_time_to_repair_seconds", "shop"); n != 1 || sum != (41*time.Minute+30*time.Second).Seconds() {
		t.Errorf("repair histogram: got %d observations, sum %v", n, sum)
	}

	// A new page of shop after the reopen window (1h after the close)
	// opens a new incident.
	eng.bad["a"] = t0.Add(2*time.Hour - 90*time.Second)
	inc.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, t0.Add(2*time.Hour))})
	if l := listIncidents(t, inc, IncidentFilter{Service: "shop", HasService: true}); len(l) != 2 || l[0].State != "open" || l[1].State != "closed" {
		t.Errorf("after a new page: got %+v", l)
	}
	if n, sum := histogram(t, reg, "qsp_incident_time_to_detect_seconds", "shop"); n != 1 || sum != 90 {
		t.Errorf("detect histogram (since the restart): got %d observations, sum %v; want 1, 90", n, sum)
	}
}

func TestIncidentsFromTelemetryAlerts(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	set := loadSpecs(t, labelSpecs) // shop-availability pages on no data
	eng := &fakeEngine{snap: &engine.Snapshot{SourceDown: &engine.AlertStatus{Severity: "no_data", Name: engine.AlertSourceDown, State: slo.Firing, Since: t0.Add(-2 * time.Minute)}}}
	inc, _ := NewIncidents(IncidentOptions{Store: st, Engine: eng, Specs: func() *spec.Set { return set }})

	noData := engine.Transition{Key: "shop-availability", SLO: "shop-availability", Service: "shop", Severity: "no_data", Alert: engine.AlertTelemetryMissing,
		From: slo.Pending, To: slo.Firing, At: t0, Status: &engine.Status{Key: "shop-availability", SLO: "shop-availability", Service: "shop", State: engine.StateNoData,
			DataUntil: t0.Add(-7 * time.Minute), Alerts: []engine.AlertStatus{{Severity: "no_data", Since: t0.Add(-2 * time.Minute)}}}}
	tenantNoData := engine.Transition{Key: `shop-tenants{tenant="a"}`, SLO: "shop-tenants", Service: "search", Severity: "no_data", Alert: engine.AlertTelemetryMissing,
		From: slo.Pending, To: slo.Firing, At: t0}
	sourceDown := engine.Transition{Severity: "no_data", Alert: engine.AlertSourceDown, From: slo.Pending, To: slo.Firing, At: t0, Condition: "connection refused"}
	inc.OnTransitions(ctx, []engine.Transition{noData, tenantNoData, sourceDown})

	l, err := inc.List(ctx, IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 {
		t.Fatalf("got %d incidents, want 2 (page-severity no_data, source down); the ticket-severity no_data opens none: %+v", len(l), l)
	}
	byService := map[string]Incident{}
	for _, i := range l {
		byService[i.Service] = i
	}
	if i := byService["shop"]; i.TimeToDetect != 420 {
		t.Errorf("no_data incident: time to detect %vs, want 420 (from the end of the last minute with data)", i.TimeToDetect)
	}
	if i, ok := byService[""]; !ok || i.TimeToDetect != 120 || !strings.Contains(i.Title, "Telemetry source down since") {
		t.Errorf("source-down incident: %+v", i)
	}
}

func TestStats(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	// Incidents of shop with known detection and repair times (minutes).
	ttd := []float64{1, 2, 3, 10}
	ttr := []float64{20, 30, 60, 0} // the last one is still open
	for i := range ttd {
		first := t0.Add(time.Duration(i) * 24 * time.Hour)
		det := first.Add(time.Duration(ttd[i] * float64(time.Minute)))
		inc := store.Incident{Service: "shop", Title: "x", Severity: "page", OpenedAt: det, FirstBadAt: first, DetectedAt: det, UpdatedAt: det}
		if i == 0 {
			inc.AckedAt, inc.AckedBy = det.Add(5*time.Minute), "alice"
		}
		id, err := st.CreateIncident(ctx, inc)
		if err != nil {
			t.Fatal(err)
		}
		if ttr[i] > 0 {
			res := first.Add(time.Duration(ttr[i] * float64(time.Minute)))
			if err := st.UpdateIncident(ctx, store.IncidentUpdate{ID: id, Close: true, ResolvedAt: res, UpdatedAt: res}); err != nil {
				t.Fatal(err)
			}
		}
	}
	k, _ := NewIncidents(IncidentOptions{Store: st})
	stats, err := k.Stats(ctx, t0, t0.Add(30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 {
		t.Fatalf("got %d services", len(stats))
	}
	s := stats[0]
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if s.Incidents != 4 || s.Open != 1 || s.Acknowledged != 1 {
		t.Errorf("counts: %+v", s)
	}
	// Detection: 60, 120, 180, 600 s: mean 240, median 150, p90 (nearest
	// rank 4 of 4) 600.
	if d := s.TimeToDetect; d.Count != 4 || !near(d.Mean, 240) || !near(d.Median, 150) || !near(d.P90, 600) || !near(d.Max, 600) {
		t.Errorf("time to detect: %+v", d)
	}
	// Repair of the closed ones: 1200, 1800, 3600 s.
	if d := s.TimeToRepair; d.Count != 3 || !near(d.Mean, 2200) || !near(d.Median, 1800) || !near(d.Max, 3600) {
		t.Errorf("time to repair: %+v", d)
	}
	if d := s.TimeToAcknowledge; d.Count != 1 || !near(d.Mean, 300) {
		t.Errorf("time to acknowledge: %+v", d)
	}
	if stats, _ := k.Stats(ctx, t0.Add(60*24*time.Hour), t0.Add(90*24*time.Hour)); len(stats) != 0 {
		t.Errorf("an empty period has stats: %+v", stats)
	}
}

// TestIncidentsByCause (issue 22): one incident per service and trouble.
// A performance page of a service that starts long after its open
// security incident does not join it, a second performance page does,
// and the
// title is in words with the deploy that came before the trouble.
func TestIncidentsByCause(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	t0 := time.Date(2026, 11, 25, 3, 21, 0, 0, time.UTC)
	eng := &fakeEngine{bad: map[string]time.Time{}}
	inc, err := NewIncidents(IncidentOptions{Store: st, Engine: eng})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RecordDeploy(ctx, store.Deploy{At: t0.Add(-10 * time.Minute), Service: "shop", Version: "v2.14.0", Source: "events"}); err != nil {
		t.Fatal(err)
	}
	page := func(key string, cat spec.Category, at time.Time) engine.Transition {
		tr := transition(key, "page", slo.Pending, slo.Firing, at)
		tr.Status.Category = cat
		tr.Status.Alerts[0].Since = at
		return tr
	}
	inc.OnTransitions(ctx, []engine.Transition{page("shop-waf-blocks", spec.Security, t0)})
	// The leak shows 40 minutes later: another trouble. Within the same
	// minutes, as in an outage, it would be one.
	if err := st.RecordDeploy(ctx, store.Deploy{At: t0.Add(30 * time.Minute), Service: "shop", Version: "v2.14.1", Source: "events"}); err != nil {
		t.Fatal(err)
	}
	inc.OnTransitions(ctx, []engine.Transition{page("shop-latency-p99", spec.Performance, t0.Add(40*time.Minute))})
	inc.OnTransitions(ctx, []engine.Transition{page("shop-memory", spec.Performance, t0.Add(42*time.Minute))})
	l, err := inc.List(ctx, IncidentFilter{Service: "shop", HasService: true, State: "open"})
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 2 {
		t.Fatalf("got %d open incidents, want 2 (security, performance): %+v", len(l), l)
	}
	titles := map[string]int{}
	for _, i := range l {
		titles[i.Title] = len(i.Alerts)
	}
	for title, alerts := range map[string]int{
		"Shop waf blocks burning its error budget since 03:21 UTC, after deploy v2.14.0":  1,
		"Shop latency p99 burning its error budget since 04:01 UTC, after deploy v2.14.1": 2,
	} {
		if got, ok := titles[title]; !ok || got != alerts {
			t.Errorf("incident %q: got %d alerts (present %v), want %d; titles %v", title, got, ok, alerts, titles)
		}
	}
}

// TestIncidentReopensAndSupersedes: a page of an SLO group that comes
// back within the reopen window after its incident closed reopens it (a
// leaking worker killed, restarted and leaking again is one trouble);
// a page of another SLO of the same cause after the incident's SLOs
// recovered is a trouble of its own: the old incident closes, a new one
// opens, and an alert still firing for the old one does not join it.
func TestIncidentReopensAndSupersedes(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	clock := t0
	eng := &fakeEngine{bad: map[string]time.Time{"mem": t0.Add(-2 * time.Minute)}}
	inc, err := NewIncidents(IncidentOptions{Store: st, Engine: eng, Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	get := func(id int64) Incident {
		t.Helper()
		g, err := inc.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	inc.OnTransitions(ctx, []engine.Transition{transition("mem", "page", slo.Pending, slo.Firing, t0)})
	first := listIncidents(t, inc, IncidentFilter{})[0].ID
	inc.OnTransitions(ctx, []engine.Transition{transition("mem", "page", slo.Firing, slo.Resolved, t0.Add(10*time.Minute))})
	clock = t0.Add(20 * time.Minute)
	inc.OnCycle(ctx)
	if g := get(first); g.State != "closed" || !g.ResolvedAt.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("after the hold: state %s, resolved %s; want closed, resolved when the page did", g.State, g.ResolvedAt)
	}

	// The leak again, 35 minutes after it resolved: the same incident.
	eng.bad["mem"] = t0.Add(43 * time.Minute)
	inc.OnTransitions(ctx, []engine.Transition{transition("mem", "page", slo.Pending, slo.Firing, t0.Add(45*time.Minute))})
	l := listIncidents(t, inc, IncidentFilter{})
	if len(l) != 1 || l[0].ID != first || l[0].State != "open" || l[0].FiringAlerts != 1 || !l[0].ResolvedAt.IsZero() {
		t.Fatalf("after the page came back: %+v; want incident %d reopened with its page firing", l, first)
	}
	g, err := st.Incident(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	if last := g.Events[len(g.Events)-1]; last.Kind != EventReopened || !strings.Contains(last.Detail, "fired again 35m after the incident resolved") {
		t.Errorf("last event: %+v, want the reopening", last)
	}

	// Its long-window ticket fires too; the page resolves and the SLO
	// recovers on its short window: the incident recovers.
	ticket := transition("mem", "ticket", slo.Pending, slo.Firing, t0.Add(46*time.Minute))
	inc.OnTransitions(ctx, []engine.Transition{ticket, transition("mem", "page", slo.Firing, slo.Resolved, t0.Add(50*time.Minute))})
	recovered := burnStatus("mem", "mem", "shop", spec.Quality, nil, "ticket", slo.BurnCondition{Long: 24 * time.Hour, Short: 2 * time.Hour, Factor: 3}, 4, 0.5, 0.5)
	recovered.State, recovered.Alerts[0].FiredAt = engine.StateOK, ticket.At
	eng.snap = engine.NewSnapshot(t0.Add(52*time.Minute), []*engine.Status{recovered}, nil)
	clock = t0.Add(52 * time.Minute)
	inc.OnCycle(ctx)

	// Another SLO of the service, same cause, begins to burn after that:
	// a trouble of its own.
	eng.bad["fresh"] = t0.Add(55 * time.Minute)
	inc.OnTransitions(ctx, []engine.Transition{transition("fresh", "page", slo.Pending, slo.Firing, t0.Add(58*time.Minute))})
	l = listIncidents(t, inc, IncidentFilter{})
	if len(l) != 2 || l[1].ID != first || l[1].State != "closed" || l[0].State != "open" {
		t.Fatalf("after another SLO paged: %+v; want the first closed and a new one open", l)
	}
	if !l[1].ResolvedAt.Equal(t0.Add(52 * time.Minute)) {
		t.Errorf("the superseded incident resolved at %s, want 08:52, when its SLOs were seen recovered", l[1].ResolvedAt)
	}
	for _, a := range l[0].Alerts {
		if a.Key != "fresh" {
			t.Errorf("the new incident holds %s %s, still firing for the old one", a.Key, a.Severity)
		}
	}

	// The old incident's ticket resolves after its close: its page shows
	// it resolved, not firing for ever.
	inc.OnTransitions(ctx, []engine.Transition{transition("mem", "ticket", slo.Firing, slo.Resolved, t0.Add(90*time.Minute))})
	if g := get(first); g.FiringAlerts != 0 {
		t.Errorf("closed incident after its ticket resolved: %d alerts firing: %+v", g.FiringAlerts, g.Alerts)
	}
}

// listIncidents lists the incidents matching f, failing the test on error.
func listIncidents(t *testing.T, inc *Incidents, f IncidentFilter) []Incident {
	t.Helper()
	l, err := inc.List(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
