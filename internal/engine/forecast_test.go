package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// exhaustionSLO pages only on its timeToExhaustion condition: the
// burn-rate window asks for a 99× burn, which a 1% error rate never has.
const exhaustionSLO = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-availability}
spec:
  service: shop
  category: quality
  objective: 99
  window: 1d
  alerting:
    page:
      windows: [{long: 1h, short: 5m, factor: 99}]
      timeToExhaustion: {within: 2h, window: 1h}
    ticket: {disabled: true}
  indicator:
    ratio:
      bad: sum(rate(req_total{service="shop",code="500"}[{{.window}}]))
      total: sum(rate(req_total{service="shop"}[{{.window}}]))
`

// TestTimeToExhaustionAlert burns 97% of the budget steadily for more
// than a window: the remaining 3% would be gone in 45 minutes at that
// burn if nothing rolled out (remaining × window / burn), but as much
// rolls out as comes in, so the page must not fire. Then the burn rises
// to 5×: the budget runs out within the hour and the page fires.
func TestTimeToExhaustionAlert(t *testing.T) {
	db := openTSDB(t)
	w := &liveWriter{db: db, values: map[string]float64{}}
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	steady := map[string][2]float64{"a": {9903, 97}} // burn 0.97 of a 99% SLO
	w.write(t, t0.Add(-26*time.Hour), t0, steady)
	clk := &clock{t0.Add(30 * time.Second)}
	set := loadSpecs(t, exhaustionSLO)
	e := prepare(t, Options{Source: db, Store: openStore(t), Specs: set, Now: clk.now, Interval: 15 * time.Second})
	ctx := context.Background()
	now := t0
	advance := func(d time.Duration, perSample map[string][2]float64) {
		for end := now.Add(d); now.Before(end); now = now.Add(15 * time.Second) {
			w.write(t, now, now.Add(15*time.Second), perSample)
			clk.t = now.Add(15*time.Second + 30*time.Second)
			e.cycle(ctx)
		}
	}
	page := func() (*Status, *AlertStatus) {
		st := e.Snapshot().Status("shop-availability")
		if st == nil {
			t.Fatal("no status")
		}
		return st, st.Alert(spec.SeverityPage)
	}

	for range 4 { // 20 minutes of steady state
		advance(5*time.Minute, steady)
		st, a := page()
		if a.State != slo.Inactive {
			t.Fatalf("steady burn 0.97: page %s at %s, exhaustion %+v", a.State, now, a.Exhaustion)
		}
		if a.Exhaustion == nil || a.Exhaustion.Met || a.Exhaustion.Seconds != nil {
			t.Fatalf("steady burn: got condition %+v, want not met, no exhaustion", a.Exhaustion)
		}
		f := st.Forecast(slo.MethodBurn, "1h")
		if f == nil || f.Exhausts || f.Rate < 0.95 || f.Rate > 0.99 {
			t.Fatalf("steady burn: forecast %+v, want burn ~0.97, not exhausting", f)
		}
		if tr := st.Forecast(slo.MethodTrend, "1d"); tr == nil || tr.Exhausts {
			t.Fatalf("steady burn: 1d trend %+v, want flat", tr)
		}
	}

	// 5× from now: after m minutes the 1h burn is about 0.97 + 4.03 m/60
	// and the projection falls under 2h within a few minutes.
	fired := time.Time{}
	start := now
	for now.Before(start.Add(20 * time.Minute)) {
		advance(time.Minute, map[string][2]float64{"a": {9500, 500}})
		if _, a := page(); a.State == slo.Firing {
			fired = now
			break
		}
	}
	st, a := page()
	if fired.IsZero() {
		t.Fatalf("5× burn: page %s after 20 minutes, condition %+v, forecasts %+v", a.State, a.Exhaustion, st.Forecasts)
	}
	if !a.Exhaustion.Met || a.Exhaustion.Seconds == nil || *a.Exhaustion.Seconds > 2*3600 {
		t.Errorf("fired with condition %+v, want met within 2h", a.Exhaustion)
	}
	if !strings.HasPrefix(a.Condition, "timeToExhaustion<2h") {
		t.Errorf("condition %q, want timeToExhaustion<2h", a.Condition)
	}
	if st.Exhaustion == nil || !st.Exhaustion.Exhausts {
		t.Errorf("headline forecast %+v, want exhausting", st.Exhaustion)
	}
	t.Logf("fired %s after the burn rose; time to exhaustion %.0f min", fired.Sub(start), *a.Exhaustion.Seconds/60)
}
