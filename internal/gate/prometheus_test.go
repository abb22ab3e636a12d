package gate

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

const prometheusGates = `
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: slow-canary}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    lookback: 10s
    step: 500ms
    metrics:
      - name: latency
        query: canary_latency_seconds{case="slow",{{.selector}}}
        allowedIncrease: 10%
        critical: true
      - name: errors
        errors: sum(increase(canary_errors_total{case="slow",{{.selector}}}[1m]))
        total: sum(increase(canary_requests_total{case="slow",{{.selector}}}[1m]))
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: equal-canary}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    lookback: 10s
    step: 500ms
    metrics:
      - name: latency
        query: canary_latency_seconds{case="equal",{{.selector}}}
        allowedIncrease: 10%
      - name: errors
        errors: sum(increase(canary_errors_total{case="equal",{{.selector}}}[1m]))
        total: sum(increase(canary_requests_total{case="equal",{{.selector}}}[1m]))
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: failing-query}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    lookback: 10s
    step: 500ms
    metrics:
      - name: latency
        query: label_replace(canary_latency_seconds{case="equal",{{.selector}}}, "x", "$1", "case", "(")
`

// canaryTarget serves the metrics Prometheus scrapes: per scrape, a
// latency gauge around 100ms with a repeating jitter, the same for both
// tracks of case equal and 50% higher for the canary of case slow, and
// counters of 100 requests and 1 error per scrape on every track.
type canaryTarget struct{ scrapes atomic.Int64 }

func (c *canaryTarget) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	n := c.scrapes.Add(1)
	base := 0.100 + 0.002*float64((n*7919)%11-5)
	var b strings.Builder
	b.WriteString("# TYPE canary_latency_seconds gauge\n")
	for _, cs := range []string{"equal", "slow"} {
		for _, track := range []string{"baseline", "canary"} {
			v := base
			if cs == "slow" && track == "canary" {
				v *= 1.5
			}
			fmt.Fprintf(&b, "canary_latency_seconds{case=%q,track=%q} %g\n", cs, track, v)
		}
	}
	for _, m := range []struct {
		name string
		per  int64
	}{{"canary_requests_total", 100}, {"canary_errors_total", 1}} {
		fmt.Fprintf(&b, "# TYPE %s counter\n", m.name)
		for _, cs := range []string{"equal", "slow"} {
			for _, track := range []string{"baseline", "canary"} {
				fmt.Fprintf(&b, "%s{case=%q,track=%q} %d\n", m.name, cs, track, m.per*n)
			}
		}
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	_, _ = w.Write([]byte(b.String()))
}

// TestRealPrometheus runs canary gates against Prometheus 2.42 (the
// Debian package) scraping, twice a second, a target whose baseline and canary series the
// test controls: a canary 50% slower fails, an equal one passes, a query
// Prometheus rejects and an unreachable Prometheus are errors.
func TestRealPrometheus(t *testing.T) {
	target := httptest.NewServer(&canaryTarget{})
	t.Cleanup(target.Close)
	cfg := fmt.Sprintf("global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: canary\n    static_configs:\n      - targets: [%q]\n",
		strings.TrimPrefix(target.URL, "http://"))
	promURL := externaltest.StartPrometheus(t, cfg).URL
	remote, err := telemetry.NewRemote(telemetry.RemoteOptions{URL: promURL, Timeout: 10 * time.Second, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = remote.Close() })

	f := newFixture(t, fixtureOptions{specs: baseSpecs + prometheusGates, now: testNow, series: healthySeries(), source: remote})
	// The canary queries run on Prometheus' clock; the engine's budgets
	// stay those of the fixture's telemetry.
	f.runner.opts.Now = time.Now

	// 10s of lookback at a 500ms step: wait until Prometheus holds 25
	// scrapes.
	externaltest.Eventually(t, 60*time.Second, 250*time.Millisecond, func() bool {
		v, err := remote.Instant(context.Background(), `count_over_time(canary_latency_seconds{case="slow",track="canary"}[1m])`, time.Now())
		return err == nil && len(v) == 1 && v[0].F >= 25
	}, "Prometheus has not scraped the canary target 25 times")

	t.Run("slow canary fails", func(t *testing.T) {
		ev := f.evaluate("slow-canary", Request{})
		mustState(t, ev, StateFail)
		run := ev.Canary.Runs[0]
		lat, errs := run.Metrics[0], run.Metrics[1]
		if lat.Status != canary.StatusFail || lat.Baseline.N < 15 || lat.Canary.N < 15 {
			t.Errorf("latency %+v", lat)
		}
		if rel := float64(lat.Shift.Relative); rel < 0.4 || rel > 0.6 {
			t.Errorf("latency shift %+v, want about +50%%", lat.Shift)
		}
		// 10s of 100 requests and 1 error a scrape, two scrapes a second,
		// on each side.
		if errs.Status != canary.StatusPass || errs.Baseline.Total < 1500 || errs.Baseline.Total > 2500 || errs.Canary.Errors < 15 {
			t.Errorf("errors %+v", errs)
		}
		if !hasReason(ev, LevelFail, "FAIL") {
			t.Errorf("reasons:%s", reasonsText(ev))
		}
	})
	t.Run("equal canary passes", func(t *testing.T) {
		ev := f.evaluate("equal-canary", Request{})
		mustState(t, ev, StatePass)
		if ev.Canary.Verdict != canary.VerdictPass || ev.Canary.Runs[0].Metrics[0].Baseline.N < 15 {
			t.Errorf("canary %+v", ev.Canary.RunsResult)
		}
	})
	t.Run("query Prometheus rejects", func(t *testing.T) {
		ev := f.evaluate("failing-query", Request{})
		mustState(t, ev, StateError)
		if !hasReason(ev, LevelError, "canary metric latency: query label_replace(", "invalid regular expression") {
			t.Errorf("reasons:%s", reasonsText(ev))
		}
	})
	t.Run("unreachable Prometheus", func(t *testing.T) {
		down, err := telemetry.NewRemote(telemetry.RemoteOptions{URL: "http://" + externaltest.FreeAddr(t), MaxRetries: -1, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		f.runner.opts.Source = down
		defer func() { f.runner.opts.Source = remote }()
		ev := f.evaluate("equal-canary", Request{})
		mustState(t, ev, StateError)
		if !hasReason(ev, LevelError, "canary metric latency", telemetry.ErrUnavailable.Error()) {
			t.Errorf("reasons:%s", reasonsText(ev))
		}
	})
}
