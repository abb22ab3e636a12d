package alert_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// downSource is the embedded TSDB answering like an unreachable
// Prometheus while down is set.
type downSource struct {
	engine.Source
	down atomic.Bool
}

func (d *downSource) Range(ctx context.Context, q string, s, e time.Time, step time.Duration) (promql.Matrix, error) {
	if d.down.Load() {
		return nil, fmt.Errorf("connection refused: %w", telemetry.ErrUnavailable)
	}
	return d.Source.Range(ctx, q, s, e, step)
}

func (d *downSource) Samples(ctx context.Context, ms []*labels.Matcher, s, e time.Time) (promql.Matrix, error) {
	if d.down.Load() {
		return nil, fmt.Errorf("connection refused: %w", telemetry.ErrUnavailable)
	}
	return d.Source.Samples(ctx, ms, s, e)
}

const lossSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: payments}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-a}
spec:
  service: shop
  category: quality
  objective: 99.9
  window: 30d
  alerting: {noData: {after: 3m}}
  indicator:
    ratio:
      bad: sum(rate(req_total{slo="a",code="500"}[{{.window}}]))
      total: sum(rate(req_total{slo="a"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-b}
spec:
  service: shop
  category: security
  objective: 99.9
  window: 30d
  alerting: {noData: {after: 3m}}
  indicator:
    ratio:
      bad: sum(rate(req_total{slo="b",code="500"}[{{.window}}]))
      total: sum(rate(req_total{slo="b"}[{{.window}}]))
`

// TestTelemetryLoss: a source that is down raises one QSPSourceDown page
// (and one incident, of the telemetry source), not one alert per SLO;
// an SLO whose telemetry stops raises QSPTelemetryMissing after its
// grace period, as a ticket by default, which opens no incident.
func TestTelemetryLoss(t *testing.T) {
	start := time.Date(2026, 11, 25, 8, 0, 5, 0, time.UTC)
	s := newSim(t, lossSpecs, start)
	src := &downSource{Source: s.db}
	s.source = src
	var bStops time.Time
	healthy := func(time.Time, time.Duration) float64 { return 0 }
	tr := combine(
		requests(seriesLabels("slo", "a"), 10, healthy),
		func(ts time.Time, dt time.Duration) []increment {
			if !bStops.IsZero() && ts.After(bStops) {
				return nil // shop-b's exporter is gone
			}
			return requests(seriesLabels("slo", "b"), 10, healthy)(ts, dt)
		})
	s.write(start.Add(-7*time.Hour), start, tr)
	sink := newWebhookSink(t, "", s.clk)
	wh, err := alert.NewWebhook(alert.WebhookOptions{Name: "ops", URL: sink.srv.URL})
	must(t, err)
	a := startAlerting(t, s, s.st, []alert.Notifier{wh})
	defer a.stop()
	s.startEngine()

	src.down.Store(true)
	s.advance(3*time.Minute, 15*time.Second, tr, nil)
	src.down.Store(false)
	s.advance(2*time.Minute, 15*time.Second, tr, nil)
	waitDrained(t, s.st, 10*time.Second)
	var got []string
	for _, r := range sink.messages() {
		got = append(got, r.msg.Labels["alertname"]+" "+r.msg.Status)
	}
	if want := "[QSPSourceDown firing QSPSourceDown resolved]"; fmt.Sprint(got) != want {
		t.Fatalf("while the source was down: got %v, want %s", got, want)
	}
	if r := sink.messages()[0]; r.msg.Labels["severity"] != "page" || r.msg.Labels["slo"] != "" {
		t.Errorf("source-down labels: %v", r.msg.Labels)
	}
	// Closed once the source has been back for the resolve hold (10m).
	s.advance(11*time.Minute, 15*time.Second, tr, nil)
	incs, err := a.inc.List(context.Background(), alert.IncidentFilter{})
	must(t, err)
	if len(incs) != 1 || incs[0].Service != "" || incs[0].State != "closed" || incs[0].TimeToDetect < 60 {
		t.Fatalf("source-down incident: %+v", incs)
	}

	// shop-b's telemetry stops: no_data after 5 minutes, the alert after
	// the 3m grace.
	bStops = s.clk.Now()
	s.advance(10*time.Minute, 15*time.Second, tr, nil)
	waitDrained(t, s.st, 10*time.Second)
	r, ok := sink.first("shop-b", engine.SeverityNoData, alert.StatusFiring)
	if !ok {
		t.Fatalf("no QSPTelemetryMissing for shop-b; got %d messages", len(sink.messages()))
	}
	if r.msg.Labels["alertname"] != engine.AlertTelemetryMissing || r.msg.Labels["severity"] != spec.SeverityTicket || r.msg.Labels["slo"] != "shop-b" {
		t.Errorf("telemetry alert labels: %v", r.msg.Labels)
	}
	if lag := r.at.Sub(bStops); lag < 8*time.Minute || lag > 10*time.Minute {
		t.Errorf("telemetry alert %s after the data stopped; want 5m to no_data + 3m grace, within a cycle or two", lag)
	}
	if _, ok := sink.first("shop-a", engine.SeverityNoData, alert.StatusFiring); ok {
		t.Error("shop-a, still reporting, raised a telemetry alert")
	}
	if incs, _ := a.inc.List(context.Background(), alert.IncidentFilter{State: "open"}); len(incs) != 0 {
		t.Errorf("a ticket-severity telemetry alert opened an incident: %+v", incs)
	}
}
