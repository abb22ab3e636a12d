package alert

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/store"
)

// TestIncidentResolvesAfterHold: an incident resolves once its SLO's
// short windows are back below threshold for the resolve hold, though the
// long-window page still fires; not before the hold, and not while the
// short window still burns or has no data.
func TestIncidentResolvesAfterHold(t *testing.T) {
	ctx := context.Background()
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	clock := t0
	eng := &fakeEngine{bad: map[string]time.Time{"a": t0.Add(-time.Minute)}}
	inc, err := NewIncidents(IncidentOptions{Store: st, Engine: eng, Registerer: prometheus.NewRegistry(),
		Now: func() time.Time { return clock }, ResolveHold: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	page := transition("a", "page", slo.Pending, slo.Firing, t0)
	inc.OnTransitions(ctx, []engine.Transition{page})

	// snap is the engine's snapshot with a's page firing and its 5m window
	// burning at shortBurn (the 1h window always at 20x: still firing).
	snap := func(state engine.State, shortBurn float64, noData bool) {
		s := *page.Status
		s.State = state
		s.Alerts = []engine.AlertStatus{{Severity: "page", Name: "SLOErrorBudgetBurn", State: slo.Firing, FiredAt: t0,
			Conditions: []slo.ConditionResult{{Condition: pageFast, LongBurn: 20, ShortBurn: shortBurn, Met: shortBurn >= pageFast.Factor, NoData: noData}}}}
		eng.snap = engine.NewSnapshot(clock, []*engine.Status{&s}, nil)
	}
	state := func() *store.Incident {
		t.Helper()
		l, err := st.Incidents(ctx, store.IncidentFilter{WithEvents: true, Limit: 10})
		if err != nil || len(l) != 1 {
			t.Fatalf("incidents: %v, %v; want one", l, err)
		}
		return l[0]
	}
	steps := []struct {
		at        time.Duration
		state     engine.State
		shortBurn float64
		noData    bool
		want      string
	}{
		{1 * time.Minute, engine.StateFiring, 20, false, store.IncidentOpen},  // burning
		{5 * time.Minute, engine.StateFiring, 0.5, false, store.IncidentOpen}, // recovered: hold starts
		{10 * time.Minute, engine.StateFiring, 0.5, false, store.IncidentOpen},
		{11 * time.Minute, engine.StateFiring, 16, false, store.IncidentOpen}, // burns again: hold restarts
		{12 * time.Minute, engine.StateFiring, 0.2, false, store.IncidentOpen},
		{18 * time.Minute, engine.StateNoData, 0, true, store.IncidentOpen}, // no data is not recovered
		{19 * time.Minute, engine.StateFiring, 0.2, false, store.IncidentOpen},
		{28 * time.Minute, engine.StateFiring, 0.2, false, store.IncidentOpen}, // 9m of the 10m hold
		{29 * time.Minute, engine.StateFiring, 0.2, false, store.IncidentClosed},
	}
	for _, s := range steps {
		clock = t0.Add(s.at)
		snap(s.state, s.shortBurn, s.noData)
		inc.OnCycle(ctx)
		if got := state(); got.State != s.want {
			t.Fatalf("at +%v (short burn %v, no data %v): state %s, want %s", s.at, s.shortBurn, s.noData, got.State, s.want)
		}
	}
	got := state()
	// Resolved as of the recovery the hold confirmed: the hold does not
	// lengthen the time to repair.
	if !got.ResolvedAt.Equal(t0.Add(19 * time.Minute)) {
		t.Errorf("resolved at %v, want %v", got.ResolvedAt, t0.Add(19*time.Minute))
	}
	last := got.Events[len(got.Events)-1]
	if last.Kind != EventResolved || !last.At.Equal(t0.Add(29*time.Minute)) || !strings.Contains(last.Detail, "shortest alert window since 08:19 UTC") || !strings.Contains(last.Detail, "resolve hold of 10m") {
		t.Errorf("resolution event: %+v; want the reason with the recovery time and the hold", last)
	}
	// The page resolving later opens nothing; the closed incident
	// records it, so its page does not show the alert firing for ever.
	clock = t0.Add(80 * time.Minute)
	inc.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Firing, slo.Resolved, clock)})
	if got := state(); got.State != store.IncidentClosed || !got.ResolvedAt.Equal(t0.Add(19*time.Minute)) ||
		len(got.Alerts) != 1 || got.Alerts[0].State != store.AlertResolved || !got.Alerts[0].ResolvedAt.Equal(clock) {
		t.Errorf("after the page resolved: %+v", got)
	}
}
