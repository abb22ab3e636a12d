package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/report"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/store"
)

// fixture is testdata/month.json: SLOs with a constant rate of events
// and bad spans, and the incidents and deploys of the month.
type fixture struct {
	Now    time.Time `json:"now"`
	Period string    `json:"period"`
	SLOs   []struct {
		Key            string  `json:"key"`
		Service        string  `json:"service"`
		Objective      float64 `json:"objective"`
		TotalPerMinute float64 `json:"totalPerMinute"`
		Bad            []struct {
			From      time.Time `json:"from"`
			To        time.Time `json:"to"`
			PerMinute float64   `json:"perMinute"`
		} `json:"bad"`
	} `json:"slos"`
	Incidents []struct {
		Service  string    `json:"service"`
		Title    string    `json:"title"`
		SLO      string    `json:"slo"`
		FirstBad time.Time `json:"firstBad"`
		Detected time.Time `json:"detected"`
		Resolved time.Time `json:"resolved"`
	} `json:"incidents"`
	Deploys []struct {
		Service string    `json:"service"`
		Version string    `json:"version"`
		At      time.Time `json:"at"`
	} `json:"deploys"`
}

func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// fixtureCounter integrates the fixture's rates over whole minutes, as a
// rollup answers: every minute of [from, to) has totalPerMinute events,
// perMinute of them bad inside a bad span.
type fixtureCounter struct{ f *fixture }

func (c fixtureCounter) Counts(_ context.Context, key string, from, to time.Time) (engine.PeriodCounts, error) {
	for _, s := range c.f.SLOs {
		if s.Key != key {
			continue
		}
		from, to = from.Truncate(time.Minute), to.Truncate(time.Minute)
		mins := to.Sub(from).Minutes()
		total := s.TotalPerMinute * mins
		bad := 0.0
		for _, b := range s.Bad {
			lo, hi := max(b.From.Unix(), from.Unix()), min(b.To.Unix(), to.Unix())
			if hi > lo {
				bad += b.PerMinute * float64(hi-lo) / 60
			}
		}
		return engine.PeriodCounts{Counts: slo.Counts{Good: total - bad, Total: total}, From: from, To: to, DataMinutes: int64(mins)}, nil
	}
	return engine.PeriodCounts{}, engine.ErrUnknownSLO
}

type staticSnapshot struct{ s *engine.Snapshot }

func (s staticSnapshot) Snapshot() *engine.Snapshot { return s.s }

// builder builds a report Builder over the fixture: its SLOs in the
// snapshot, its incidents and deploys in a real SQLite store.
func builder(t testing.TB, f *fixture) (*report.Builder, *store.Store) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var statuses []*engine.Status
	for _, s := range f.SLOs {
		statuses = append(statuses, &engine.Status{Key: s.Key, SLO: s.Key, Service: s.Service, Objective: s.Objective,
			Budget: slo.Budget{Total: 1000, Allowed: 1000 * (1 - s.Objective), RemainingRatio: 0.9}})
	}
	// The first SLO's budget is projected to run out in 36h: at risk
	// next period though 90% of it is left.
	if len(statuses) > 0 {
		statuses[0].Exhaustion = &engine.Forecast{Method: slo.MethodBurn, Window: "6h", Rate: 20, Exhausts: true,
			Seconds: (36 * time.Hour).Seconds(), At: f.Now.Add(36 * time.Hour)}
	}
	for _, inc := range f.Incidents {
		_, err := st.CreateIncident(ctx, store.Incident{Service: inc.Service, Title: inc.Title, Severity: "page", State: store.IncidentClosed,
			OpenedAt: inc.Detected, FirstBadAt: inc.FirstBad, DetectedAt: inc.Detected, ResolvedAt: inc.Resolved, UpdatedAt: inc.Resolved,
			Alerts: []store.IncidentAlert{{Key: inc.SLO, SLO: inc.SLO, Severity: "page", Name: "SLOBurnRatePage", Fingerprint: inc.SLO,
				State: store.AlertResolved, FiredAt: inc.Detected, ResolvedAt: inc.Resolved}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range f.Deploys {
		if err := st.RecordDeploy(ctx, store.Deploy{Service: d.Service, Version: d.Version, At: d.At, Source: store.DeploySourceEvents}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := report.NewBuilder(report.Options{Counter: fixtureCounter{f}, Snapshots: staticSnapshot{engine.NewSnapshot(f.Now, statuses, nil)},
		Records: st, Now: func() time.Time { return f.Now }})
	if err != nil {
		t.Fatal(err)
	}
	return b, st
}

type wantSLO struct {
	Good, Total, Attainment                      float64
	Met                                          bool
	BudgetAllowed, BudgetSpent, BudgetSpentRatio float64
	ByIncident, ByDeploy                         []float64
}

type want struct {
	Met, Missed      int
	SLOs             map[string]wantSLO
	Incidents        int
	TimeToDetectMean float64
	TimeToRepairMean float64
	Deploys          int
}

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }

// TestFixtureMonth checks a month's report against figures computed by
// hand (testdata/month.want.json).
func TestFixtureMonth(t *testing.T) {
	var f fixture
	readJSON(t, "month.json", &f)
	var w want
	readJSON(t, "month.want.json", &w)
	b, _ := builder(t, &f)
	r, err := b.Build(context.Background(), report.Request{Period: f.Period})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.SLOs) > 0 {
		key := f.SLOs[0].Key
		if len(r.AtRisk) != 1 || r.AtRisk[0].Key != key || r.AtRisk[0].Exhaustion == nil || r.AtRisk[0].Exhaustion.Method != slo.MethodBurn ||
			!strings.Contains(r.AtRisk[0].Reason, "projected to run out in 36h0m0s, at "+f.Now.Add(36*time.Hour).UTC().Format(time.RFC3339)+" (burn over 6h)") {
			t.Errorf("at risk: %+v, want only %s, projected by burn over 6h", r.AtRisk, key)
		}
		var md strings.Builder
		if err := r.Markdown(&md); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(md.String(), "**"+key+"**") || !strings.Contains(md.String(), "(burn over 6h)") {
			t.Errorf("markdown at risk lacks %s and its forecast:\n%s", key, md.String())
		}
	}
	if r.Met != w.Met || r.Missed != w.Missed {
		t.Errorf("met/missed %d/%d, want %d/%d", r.Met, r.Missed, w.Met, w.Missed)
	}
	if len(r.SLOs) != len(w.SLOs) {
		t.Fatalf("%d SLOs, want %d", len(r.SLOs), len(w.SLOs))
	}
	for _, s := range r.SLOs {
		ws, ok := w.SLOs[s.Key]
		if !ok {
			t.Errorf("unexpected SLO %s", s.Key)
			continue
		}
		if s.Attainment == nil {
			t.Errorf("%s: no attainment", s.Key)
			continue
		}
		for _, c := range []struct {
			name      string
			got, want float64
		}{
			{"good", s.Good, ws.Good}, {"total", s.Total, ws.Total}, {"attainment", *s.Attainment, ws.Attainment},
			{"budget allowed", s.BudgetAllowed, ws.BudgetAllowed}, {"budget spent", s.BudgetSpent, ws.BudgetSpent},
			{"budget spent ratio", s.BudgetSpentRatio, ws.BudgetSpentRatio}, {"coverage", s.Coverage, 1},
		} {
			if !near(c.got, c.want) {
				t.Errorf("%s %s: got %.12g, want %.12g", s.Key, c.name, c.got, c.want)
			}
		}
		if s.Met != ws.Met {
			t.Errorf("%s met: got %v, want %v", s.Key, s.Met, ws.Met)
		}
		checkSpends(t, s.Key+" by incident", s.ByIncident, ws.ByIncident)
		checkSpends(t, s.Key+" by deploy", s.ByDeploy, ws.ByDeploy)
		if len(s.Daily) != 30 {
			t.Errorf("%s: %d days, want 30", s.Key, len(s.Daily))
		}
	}
	if len(r.Incidents) != w.Incidents || len(r.Deploys) != w.Deploys {
		t.Errorf("%d incidents and %d deploys, want %d and %d", len(r.Incidents), len(r.Deploys), w.Incidents, w.Deploys)
	}
	if !near(r.TimeToDetect.Mean, w.TimeToDetectMean) || !near(r.TimeToRepair.Mean, w.TimeToRepairMean) {
		t.Errorf("MTTD %v MTTR %v, want %v and %v", r.TimeToDetect.Mean, r.TimeToRepair.Mean, w.TimeToDetectMean, w.TimeToRepairMean)
	}

	var md bytes.Buffer
	if err := r.Markdown(&md); err != nil {
		t.Fatal(err)
	}
	// What a reader of the Markdown sees: rounded figures, the verdicts.
	for _, s := range []string{"2 of 3 SLOs met", "| checkout-availability | checkout | 99.9 % | 99.97 % | yes | 27.78 % | 1,200 | 4,320 |",
		"| auth-availability | auth | 99.95 % | 99.86 % | **no** | 277.78 % | 600 | 216 |", "deploy checkout v2.13.0", "mean 6m, median 6m, max 9m"} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md.String())
		}
	}
}

func checkSpends(t *testing.T, what string, got []report.Spend, want []float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d entries %+v, want %v", what, len(got), got, want)
		return
	}
	for i := range got {
		if !near(got[i].Bad, want[i]) {
			t.Errorf("%s[%d] (%s): got %v bad, want %v", what, i, got[i].Ref, got[i].Bad, want[i])
		}
	}
}

func TestServiceAndPeriods(t *testing.T) {
	var f fixture
	readJSON(t, "month.json", &f)
	b, _ := builder(t, &f)
	ctx := context.Background()
	r, err := b.Build(ctx, report.Request{Period: "2026-11", Service: "auth"})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.SLOs) != 1 || r.SLOs[0].Key != "auth-availability" || len(r.Incidents) != 1 || len(r.Deploys) != 0 {
		t.Errorf("auth only: %d SLOs, %d incidents, %d deploys", len(r.SLOs), len(r.Incidents), len(r.Deploys))
	}
	r, err = b.Build(ctx, report.Request{Period: "2026-12"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Partial || !r.To.Equal(f.Now) {
		t.Errorf("the running month: partial %v to %s, want partial to %s", r.Partial, r.To, f.Now)
	}
	for _, p := range []string{"", "2026", "2026-13", "26-11", "2026-11-01", "1999-12", "2027-01", "2026-11\n", strings.Repeat("9", 100)} {
		if _, err := b.Build(ctx, report.Request{Period: p}); !errors.Is(err, report.ErrBadPeriod) {
			t.Errorf("period %q: got %v, want ErrBadPeriod", p, err)
		}
	}
}

func TestPercent(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{
		{0.999, "99.9 %"}, {0.99979452, "99.98 %"}, {0.99999, "99.99 %"}, {1, "100 %"}, {0, "0 %"}, {2.7777777, "277.78 %"}, {math.NaN(), "–"},
	} {
		if got := report.Percent(c.in); got != c.want {
			t.Errorf("Percent(%v) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		in   float64
		want string
	}{{0, "0"}, {999, "999"}, {1200, "1,200"}, {4320, "4,320"}, {21600, "21.6k"}, {4318800, "4.3M"}} {
		if got := report.Count(c.in); got != c.want {
			t.Errorf("Count(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSeconds(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{{0, "0s"}, {45, "45s"}, {180, "3m"}, {270, "4m30s"}, {1800, "30m"}, {3600, "1h"}, {4500, "1h15m"}, {7200, "2h"}, {90000, "1d1h"}, {-60, "-1m"}} {
		if got := report.Seconds(c.in); got != c.want {
			t.Errorf("Seconds(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzParsePeriod(f *testing.F) {
	for _, s := range []string{"2026-11", "2026-1", "", "x", "2026-11-01", "0000-00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 64 {
			return
		}
		from, to, err := report.ParsePeriod(s, time.UTC)
		if err != nil {
			if !errors.Is(err, report.ErrBadPeriod) {
				t.Fatalf("%q: %v is not ErrBadPeriod", s, err)
			}
			return
		}
		if !to.After(from) || to.Sub(from) > 31*24*time.Hour {
			t.Fatalf("%q: [%s, %s) is not a month", s, from, to)
		}
	})
}

// BenchmarkBuildMonth builds the fixture month's report (3 SLOs, 30
// daily points each, incidents and deploys from a real SQLite store).
func BenchmarkBuildMonth(b *testing.B) {
	var f fixture
	readJSON(b, "month.json", &f)
	bl, _ := builder(b, &f)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bl.Build(ctx, report.Request{Period: f.Period}); err != nil {
			b.Fatal(err)
		}
	}
}
