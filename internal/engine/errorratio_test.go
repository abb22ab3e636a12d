package engine

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
)

// TestErrorRatioIndicator checks an SLO whose indicator is an error-ratio
// query (Sloth's raw SLI): each minute is one event, bad in proportion to
// the ratio, so a window's error ratio is the mean of its minutes' ratios.
func TestErrorRatioIndicator(t *testing.T) {
	db := openTSDB(t)
	end := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	start := end.Add(-3 * time.Hour)
	var gauge []sample
	// 0.01 for two hours, then 0.04 for the last hour; 15s scrapes.
	for ts := start; !ts.After(end); ts = ts.Add(15 * time.Second) {
		v := 0.01
		if ts.After(end.Add(-time.Hour)) {
			v = 0.04
		}
		gauge = append(gauge, sample{ts, v})
	}
	appendSeries(t, db, series{labels.FromStrings("__name__", "wifi_error_ratio", "ap", "a"), gauge})
	set := loadSpecs(t, `
apiVersion: qsp/v1
kind: Service
metadata: {name: wifi}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: wifi-satisfaction}
spec:
  service: wifi
  category: quality
  objective: 95
  window: 30d
  indicator:
    ratio:
      errorRatio: avg(avg_over_time(wifi_error_ratio[{{.window}}]))
`)
	clk := &clock{end.Add(30 * time.Second)}
	e := newTestEngine(t, db, openStore(t), set, clk)
	st := e.Snapshot().Status("wifi-satisfaction")
	if st == nil {
		t.Fatal("no status")
	}
	if !st.Approximate {
		t.Error("an error-ratio SLI must be marked approximate")
	}
	for _, tc := range []struct {
		window time.Duration
		total  float64
		ratio  float64
	}{
		{30 * time.Minute, 30, 0.04},
		{time.Hour, 60, 0.04},
		{2 * time.Hour, 120, 0.025},
	} {
		w := st.WindowStat(tc.window)
		if w == nil {
			t.Fatalf("%s: window missing", tc.window)
		}
		if w.Total != tc.total {
			t.Errorf("%s: got %v events (minutes), want %v", tc.window, w.Total, tc.total)
		}
		if got := (w.Total - w.Good) / w.Total; math.Abs(got-tc.ratio) > 1e-9 {
			t.Errorf("%s: error ratio got %v, want %v", tc.window, got, tc.ratio)
		}
		if w.BurnRate == nil || math.Abs(*w.BurnRate-tc.ratio/0.05) > 1e-6 {
			t.Errorf("%s: burn rate got %v, want %v", tc.window, w.BurnRate, tc.ratio/0.05)
		}
	}
}
