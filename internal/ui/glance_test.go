package ui

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
)

func TestNumbersForPeople(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{perRequests(7.98e-05, "USD"), "$0.08 per 1k requests"},
		{perRequests(0.25, "EUR"), "€0.25 per request"},
		{perRequests(3e-9, "USD"), "$3.00 per 1B requests"},
		{perRequests(4.2e-7, "CHF"), "0.42 CHF per 1M requests"},
		{perRequests(0, "USD"), "$0.00 per request"},
		{peoplePct(0.999794), "99.98 %"},
		{peoplePct(0.99999), "> 99.99 %"},
		{peoplePct(1), "100 %"},
		{peoplePct(0.5), "50 %"},
		{peoplePct(-0.123), "-12.3 %"},
		{humanDuration(42 * time.Minute), "42 min"},
		{humanDuration(3*time.Hour + 18*time.Minute), "3 h 20 min"},
		{humanDuration(52 * time.Hour), "2 d 4 h"},
		{humanDuration(10 * time.Second), "under a minute"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestSparkline(t *testing.T) {
	days := []float64{0.9999, 0.9995, math.NaN(), 0.98, 1}
	s := string(sparkline(days, 0.999))
	_, pts, _ := strings.Cut(s, `points="`)
	pts, _, _ = strings.Cut(pts, `"`)
	// Four days with data, the gap left out; the lowest day lowest.
	if n := len(strings.Fields(pts)); n != 4 || !strings.Contains(s, "lowest day 98 %, objective 99.9 %") || !strings.Contains(pts, "89.0,18.7") {
		t.Errorf("got %s", s)
	}
	if s := string(sparkline([]float64{math.NaN()}, 0.999)); !strings.Contains(s, "no data") {
		t.Errorf("no data: got %s", s)
	}
}

func TestProjectBudget(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	sli := 0.999
	st := &engine.Status{EvaluatedAt: now, SLI: &sli, Budget: slo.Budget{RemainingRatio: 0.4},
		Exhaustion: &engine.Forecast{Method: "burn", Window: "6h", Exhausts: true, Seconds: 4 * 3600}}
	c := &LineChart{ID: "b", From: now.Add(-24 * time.Hour), To: now}
	projectBudget(c, st)
	if len(c.Projection) != 2 || !c.To.Equal(now.Add(4*time.Hour)) || *c.Projection[1].V != 0 || *c.Projection[0].V != 0.4 {
		t.Fatalf("got to %s, projection %+v", c.To, c.Projection)
	}
	if svg := string(c.SVG()); !strings.Contains(svg, `class="projection"`) || !strings.Contains(svg, "projected: runs out in 4 h (burn over 6h)") {
		t.Errorf("the SVG lacks the projection: %s", svg)
	}
	// A far exhaustion widens the axis by at most half the range.
	st.Exhaustion.Seconds = 100 * 3600
	c = &LineChart{ID: "b", From: now.Add(-24 * time.Hour), To: now}
	projectBudget(c, st)
	if !c.To.Equal(now.Add(12*time.Hour)) || math.Abs(*c.Projection[1].V-0.4*(1-12.0/100)) > 1e-12 {
		t.Errorf("far: got to %s, end %v", c.To, *c.Projection[1].V)
	}
	// Nothing to project: no line.
	st.Exhaustion.Exhausts = false
	c = &LineChart{ID: "b", From: now.Add(-24 * time.Hour), To: now}
	if projectBudget(c, st); c.Projection != nil || !c.To.Equal(now) {
		t.Errorf("not exhausting: got %+v", c.Projection)
	}
}
