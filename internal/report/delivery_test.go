package report_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/report"
	"github.com/qsp-dev/qsp/internal/store"
)

// TestDelivery enqueues the fixture month's report once it is due and
// checks that the real alerting dispatcher delivers it to a webhook, once.
func TestDelivery(t *testing.T) {
	var f fixture
	readJSON(t, "month.json", &f)
	b, st := builder(t, &f)
	got := make(chan report.Payload, 4)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p report.Payload
		body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("webhook: %v", err)
		}
		if r.Header.Get(alert.EventHeader) != "report" {
			t.Errorf("event header %q, want report", r.Header.Get(alert.EventHeader))
		}
		got <- p
	}))
	defer hook.Close()
	wh, err := alert.NewWebhook(alert.WebhookOptions{Name: "reports", URL: hook.URL})
	if err != nil {
		t.Fatal(err)
	}
	disp, err := alert.NewDispatcher(alert.DispatcherOptions{Store: st, Notifiers: []alert.Notifier{wh}, Now: func() time.Time { return f.Now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- disp.Run(ctx) }()
	defer func() { cancel(); <-done }()

	d, err := report.NewDelivery(report.DeliveryOptions{Builder: b, Outbox: st, Targets: []string{wh.Name()}, Wake: disp.Wake})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"2026-11", ""} {
		period, err := d.Tick(ctx)
		if err != nil || period != want {
			t.Fatalf("tick %d: %q %v, want %q (the second finds it enqueued)", i, period, err, want)
		}
	}
	select {
	case p := <-got:
		if p.Version != report.PayloadVersion || p.Report == nil || p.Report.Period != "2026-11" || p.Report.Missed != 1 || p.Markdown == "" {
			t.Errorf("payload %+v", p)
		}
	case <-time.After(30 * time.Second):
		ns, _ := st.Notifications(ctx, store.NotificationFilter{})
		for _, n := range ns {
			t.Logf("notification %s %s %s attempts %d: %s", n.Target, n.DedupeKey, n.State, n.Attempts, n.LastError)
		}
		t.Fatal("the report was not delivered within 30s")
	}
	select {
	case p := <-got:
		t.Errorf("delivered twice: %s", p.ID)
	case <-time.After(500 * time.Millisecond):
	}
}
