package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// TestApp runs the whole of qsp serve (app.New on 127.0.0.1:0, the
// alerting component wired by app/alerting.go) on a test clock: an outage
// reaches a signed webhook, the API shows the alert with its delivery and
// the incident, an operator acknowledges it, recovery closes it, and
// /metrics exports time to detect and to repair.
func TestApp(t *testing.T) {
	clk := &simClock{t: time.Date(2026, 11, 25, 8, 0, 5, 0, time.UTC)}
	sink := newWebhookSink(t, "app-secret", clk)
	set, diags := spec.LoadBytes("app.yaml", []byte(amSpecs))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	cfg := &app.Config{
		Auth:        app.AuthConfig{InsecureAnonymousAdmin: true},
		ExternalURL: "http://qsp.test",
		DataDir:     t.TempDir(),
		Evaluation:  app.EvaluationConfig{Interval: spec.Duration(3 * time.Millisecond)},
		Alerting: app.AlertingConfig{Webhooks: []app.WebhookConfig{
			{Name: "ops", URL: sink.srv.URL + "/hook", SecretFile: writeSecret(t, "app-secret")},
		}},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, app.Options{Config: cfg, Specs: set, Listener: l, Now: clk.Now})
	must(t, err)
	// The app's engine and TSDB, driven like the other simulations.
	s := &sim{t: t, db: a.Embedded(), clk: clk, set: set, eng: a.Engine(), counters: map[string]float64{}, sampleEvery: 15 * time.Second}
	start := clk.Now()
	outageFrom, outageTo := start.Add(time.Minute), start.Add(3*time.Minute)
	tr := requests(seriesLabels("service", "shop"), 10, failing(outageFrom, outageTo))
	s.write(start.Add(-7*time.Hour), start, tr)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	base := "http://" + a.Addr()
	externaltest.WaitHTTP(t, nil, base+"/readyz", 30*time.Second)
	s.settle()

	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(base + path)
		must(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", path, resp.Status, b)
		}
		must(t, json.Unmarshal(b, v))
	}
	for {
		if _, ok := sink.first("shop-availability", "page", alert.StatusFiring); ok {
			break
		}
		if clk.Now().After(outageTo.Add(5 * time.Minute)) {
			t.Fatal("no page at the webhook")
		}
		s.advance(15*time.Second, 15*time.Second, tr, nil)
	}
	r, _ := sink.first("shop-availability", "page", alert.StatusFiring)
	if r.msg.Labels["window"] != "1h/5m" || r.msg.GeneratorURL != "http://qsp.test/slos/shop-availability" || r.msg.Summary == nil {
		t.Errorf("webhook message: %+v", r.msg)
	}

	var alerts struct {
		Items []struct {
			Key        string           `json:"key"`
			Severity   string           `json:"severity"`
			State      string           `json:"state"`
			Notified   string           `json:"notified"`
			Deliveries []alert.Delivery `json:"deliveries"`
		} `json:"items"`
	}
	externaltest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		getJSON("/api/v1/alerts?severity=page", &alerts)
		return len(alerts.Items) == 1 && len(alerts.Items[0].Deliveries) == 1 && alerts.Items[0].Deliveries[0].State == "delivered"
	}, "the page with a delivered notification in /api/v1/alerts: %+v", alerts)

	var incs struct {
		Items []alert.Incident `json:"items"`
	}
	getJSON("/api/v1/incidents?state=open", &incs)
	if len(incs.Items) != 1 || incs.Items[0].Service != "shop" {
		t.Fatalf("open incidents: %+v", incs.Items)
	}
	id := incs.Items[0].ID
	resp, err := http.Post(fmt.Sprintf("%s/api/v1/incidents/%d/ack", base, id), "application/json", strings.NewReader(`{"by": "alice", "note": "on it"}`))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ack: %s", resp.Status)
	}

	// Recovery: the page resolves once the outage leaves the 5m window.
	for {
		if _, ok := sink.first("shop-availability", "page", alert.StatusResolved); ok {
			break
		}
		if clk.Now().After(outageTo.Add(15 * time.Minute)) {
			t.Fatal("no resolution at the webhook")
		}
		s.advance(15*time.Second, 15*time.Second, tr, nil)
	}
	// The ticket (2h/10m) resolves later and keeps the incident open.
	s.advance(12*time.Minute, time.Minute, tr, nil)
	var inc alert.Incident
	externaltest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		getJSON(fmt.Sprintf("/api/v1/incidents/%d", id), &inc)
		return inc.State == "closed"
	}, "incident %d not closed: %+v", id, inc)
	if inc.AckedBy != "alice" || inc.TimeToRepair == nil || inc.TimeToDetect <= 0 || len(inc.Alerts) != 2 {
		t.Errorf("closed incident: %+v", inc)
	}
	for _, a := range inc.Alerts {
		if a.State != string(slo.Resolved) {
			t.Errorf("alert %s %s still %s", a.Key, a.Severity, a.State)
		}
	}

	resp, err = http.Get(base + "/metrics")
	must(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`qsp_incident_time_to_detect_seconds_count{service="shop"} 1`,
		`qsp_incident_time_to_repair_seconds_count{service="shop"} 1`,
		`qsp_alert_notifications_total{result="delivered",target="webhook ops"} 4`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
