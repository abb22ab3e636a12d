package engine

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestReloadKeepsUnchangedRollups(t *testing.T) {
	db := openTSDB(t)
	w := &liveWriter{db: db, values: map[string]float64{}}
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	w.write(t, t0.Add(-2*time.Hour), t0, map[string][2]float64{"a": {100, 1}})
	src := &flakySource{Source: db}
	clk := &clock{t0.Add(30 * time.Second)}
	set := loadSpecs(t, twoSLOs)
	e := newTestEngine(t, src, openStore(t), set, clk)
	ctx := context.Background()
	before := e.runtimes["shop-availability"]
	beforeTotal := e.Snapshot().Status("shop-availability").WindowStat(time.Hour).Total

	// New objective for shop-availability (rollups unchanged), a new
	// indicator for shop-tenants (rebuilt), and the source down so
	// nothing can be read again.
	changed := strings.Replace(twoSLOs, "objective: 99.9", "objective: 99.5", 1)
	changed = strings.Replace(changed, `code="500"}[{{.window}}]))
      total: sum by (tenant)`, `code=~"5.."}[{{.window}}]))
      total: sum by (tenant)`, 1)
	src.setDown(true)
	if err := e.apply(ctx, loadSpecs(t, changed), false); err != nil {
		t.Fatal(err)
	}
	e.evaluateAll(ctx, e.opts.Now(), e.target())
	if e.runtimes["shop-availability"] != before {
		t.Error("an SLO whose indicator did not change got a new runtime")
	}
	st := e.Snapshot().Status("shop-availability")
	if got := st.WindowStat(time.Hour).Total; got != beforeTotal || got == 0 {
		t.Errorf("kept rollup: 1h total %v, want %v", got, beforeTotal)
	}
	if st.Objective != 0.995 {
		t.Errorf("objective after reload: %v, want 0.995", st.Objective)
	}
	// The changed SLO starts over and fills once the source is back.
	if rt := e.runtimes["shop-tenants"]; len(rt.groups) != 0 {
		t.Errorf("changed SLO kept %d groups", len(rt.groups))
	}
	src.setDown(false)
	clk.t = clk.t.Add(15 * time.Second)
	e.cycle(ctx)
	if sts := e.Snapshot().SLO("shop-tenants"); len(sts) != 1 || sts[0].WindowStat(time.Hour).Total == 0 {
		t.Errorf("changed SLO not rebuilt from telemetry: %+v", sts)
	}
}
