package alert_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// amHook is the webhook receiver behind Alertmanager: it records every
// notification Alertmanager sends, per receiver.
type amHook struct {
	mu  sync.Mutex
	got []amNotification
	srv *httptest.Server
}

type amNotification struct {
	Receiver string    `json:"receiver"`
	Status   string    `json:"status"`
	Alerts   []amAlert `json:"alerts"`
}

type amAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

func newAMHook(t testing.TB) *amHook {
	h := &amHook{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n amNotification
		if err := json.Unmarshal(b, &n); err != nil {
			t.Errorf("alertmanager webhook body: %v", err)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, n)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// seen reports whether a notification of receiver (any if "") carried
// the alert with this fingerprint in this status.
func (h *amHook) seen(receiver, fingerprint, status string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range h.got {
		if receiver != "" && n.Receiver != receiver {
			continue
		}
		for _, a := range n.Alerts {
			if a.Fingerprint == fingerprint && a.Status == status {
				return true
			}
		}
	}
	return false
}

// alertmanager is a real Alertmanager process.
type alertmanager struct {
	t       testing.TB
	bin     string
	addr    string
	config  string
	storage string
	proc    *externaltest.Process
}

// exampleConfig is docs/alertmanager-example.yml with the receivers'
// URLs pointed at hook and the timings shortened for a test.
func exampleConfig(t testing.TB, hook string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "alertmanager-example.yml"))
	must(t, err)
	var cfg map[string]any
	must(t, yaml.Unmarshal(b, &cfg))
	route := cfg["route"].(map[string]any)
	route["group_wait"], route["group_interval"], route["repeat_interval"] = "1s", "1s", "1h"
	for _, r := range cfg["receivers"].([]any) {
		rcv := r.(map[string]any)
		for _, w := range rcv["webhook_configs"].([]any) {
			w.(map[string]any)["url"] = hook + "/" + rcv["name"].(string)
		}
	}
	if len(cfg["inhibit_rules"].([]any)) == 0 {
		t.Fatal("the example config lost its inhibition rule")
	}
	out, err := yaml.Marshal(cfg)
	must(t, err)
	p := filepath.Join(t.TempDir(), "alertmanager.yml")
	must(t, os.WriteFile(p, out, 0o600))
	return p
}

func startAlertmanager(t testing.TB, hook string) *alertmanager {
	t.Helper()
	am := &alertmanager{t: t, bin: externaltest.LookPath(t, "prometheus-alertmanager", "alertmanager"), addr: externaltest.FreeAddr(t),
		config: exampleConfig(t, hook), storage: t.TempDir()}
	am.start()
	return am
}

func (am *alertmanager) start() {
	am.t.Helper()
	am.proc = externaltest.Start(am.t, am.bin, "--config.file="+am.config, "--storage.path="+am.storage,
		"--web.listen-address="+am.addr, "--cluster.listen-address=", "--log.level=debug")
	externaltest.WaitHTTP(am.t, am.proc, am.url()+"/-/ready", 20*time.Second)
}

func (am *alertmanager) url() string { return "http://" + am.addr }

// gettableAlert is an alert of Alertmanager's GET /api/v2/alerts.
type gettableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
	Status       struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
}

// alerts returns Alertmanager's current (not resolved) alerts.
func (am *alertmanager) alerts() []gettableAlert {
	am.t.Helper()
	resp, err := http.Get(am.url() + "/api/v2/alerts")
	if err != nil {
		am.t.Fatalf("alertmanager API: %v", err)
	}
	defer resp.Body.Close()
	var out []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		am.t.Fatalf("alertmanager API: %v", err)
	}
	return out
}

func (am *alertmanager) find(match map[string]string) *gettableAlert {
	for _, a := range am.alerts() {
		ok := true
		for k, v := range match {
			if a.Labels[k] != v {
				ok = false
			}
		}
		if ok {
			return &a
		}
	}
	return nil
}

const amSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: payments, runbookURL: "https://runbooks.example/shop"}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-availability}
spec:
  service: shop
  category: quality
  objective: 99.9
  window: 30d
  alerting:
    # A ticket that fires within minutes, so the test sees the
    # inhibition rule of the example config at work.
    ticket:
      windows: [{long: 2h, short: 10m, factor: 3}]
  indicator:
    ratio:
      bad: sum(rate(req_total{service="shop",code="500"}[{{.window}}]))
      total: sum(rate(req_total{service="shop"}[{{.window}}]))
`

// TestAlertmanager injects an outage into real telemetry and checks that
// two real Alertmanagers (an HA pair: each gets every alert) hold the
// page with QSP's labels, that the example config's inhibition rule
// silences the ticket while the page fires, and that recovery resolves
// both, in Alertmanager's API and at the receivers behind it.
func TestAlertmanager(t *testing.T) {
	hook := newAMHook(t)
	ams := []*alertmanager{startAlertmanager(t, hook.srv.URL), startAlertmanager(t, hook.srv.URL)}
	// Simulated time runs in the past, so that every time QSP sends is
	// in Alertmanager's past too: resolutions are resolved at once.
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	s := newSim(t, amSpecs, start)
	outageFrom, outageTo := start.Add(time.Minute), start.Add(3*time.Minute)
	tr := requests(seriesLabels("service", "shop"), 10, failing(outageFrom, outageTo))
	s.write(start.Add(-7*time.Hour), start, tr)
	var notifiers []alert.Notifier
	for _, am := range ams {
		n, err := alert.NewAlertmanager(alert.AlertmanagerOptions{URL: am.url(), Timeout: 2 * time.Second})
		must(t, err)
		notifiers = append(notifiers, n)
	}
	d, err := alert.NewDispatcher(alert.DispatcherOptions{Store: s.st, Notifiers: notifiers, Specs: func() *spec.Set { return s.set }, ExternalURL: "http://qsp.example"})
	must(t, err)
	s.handle(d.OnTransitions)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	s.startEngine()

	pageLabels := map[string]string{"alertname": "SLOErrorBudgetBurn", "service": "shop", "slo": "shop-availability", "category": "quality", "severity": "page", "window": "1h/5m"}
	ticketLabels := map[string]string{"alertname": "SLOErrorBudgetBurn", "service": "shop", "slo": "shop-availability", "category": "quality", "severity": "ticket", "window": "2h/10m"}
	pageFP, ticketFP := alert.Fingerprint(pageLabels), alert.Fingerprint(ticketLabels)
	paged := func() bool {
		for _, tr := range s.transitions() {
			if tr.Severity == "page" && tr.To == slo.Firing {
				return true
			}
		}
		return false
	}
	for !paged() {
		if s.clk.Now().After(outageTo.Add(5 * time.Minute)) {
			t.Fatalf("no page: %v", keysOf(s.transitions()))
		}
		s.advance(15*time.Second, 15*time.Second, tr, nil)
	}
	waitDrained(t, s.st, 10*time.Second)

	for i, am := range ams {
		page := am.find(map[string]string{"severity": "page"})
		if page == nil {
			t.Fatalf("alertmanager %d has no page: %+v", i, am.alerts())
		}
		for k, v := range pageLabels {
			if page.Labels[k] != v {
				t.Errorf("alertmanager %d: page label %s=%q, want %q", i, k, page.Labels[k], v)
			}
		}
		if page.Fingerprint != pageFP {
			t.Errorf("alertmanager %d: fingerprint %s, QSP computed %s", i, page.Fingerprint, pageFP)
		}
		if page.Status.State != "active" || page.GeneratorURL != "http://qsp.example/slos/shop-availability" {
			t.Errorf("alertmanager %d: page state %s, generatorURL %s", i, page.Status.State, page.GeneratorURL)
		}
		for _, k := range []string{"summary", "description", "budget_remaining", "burn_rate", "runbook_url", "dashboard"} {
			if page.Annotations[k] == "" {
				t.Errorf("alertmanager %d: page annotation %s missing: %v", i, k, page.Annotations)
			}
		}
		if !page.EndsAt.After(time.Now().Add(3 * time.Minute)) {
			t.Errorf("alertmanager %d: a firing page ends at %s, want 4 resend intervals ahead", i, page.EndsAt)
		}
		ticket := am.find(map[string]string{"severity": "ticket"})
		if ticket == nil || ticket.Fingerprint != ticketFP {
			t.Fatalf("alertmanager %d: ticket missing or with other labels: %+v", i, ticket)
		}
		if ticket.Status.State != "suppressed" || len(ticket.Status.InhibitedBy) != 1 || ticket.Status.InhibitedBy[0] != pageFP {
			t.Errorf("alertmanager %d: ticket %s inhibited by %v; want suppressed by the page %s", i, ticket.Status.State, ticket.Status.InhibitedBy, pageFP)
		}
	}
	externaltest.Eventually(t, 15*time.Second, 50*time.Millisecond, func() bool { return hook.seen("pager", pageFP, "firing") },
		"the pager receiver behind Alertmanager was not notified of the page")

	// Recovery: the page resolves once the outage leaves the 5m window.
	resolved := func(sev string) bool {
		for _, tr := range s.transitions() {
			if tr.Severity == sev && tr.To == slo.Resolved {
				return true
			}
		}
		return false
	}
	for !resolved("page") {
		if s.clk.Now().After(outageTo.Add(15 * time.Minute)) {
			t.Fatalf("the page did not resolve: %v", keysOf(s.transitions()))
		}
		s.advance(15*time.Second, 15*time.Second, tr, nil)
	}
	waitDrained(t, s.st, 10*time.Second)
	for i, am := range ams {
		externaltest.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool { return am.find(map[string]string{"severity": "page"}) == nil },
			"alertmanager %d still lists the resolved page", i)
		// Without the page, the ticket is no longer inhibited.
		if tk := am.find(map[string]string{"severity": "ticket"}); tk == nil || tk.Status.State != "active" {
			t.Errorf("alertmanager %d: ticket after the page resolved: %+v", i, tk)
		}
	}
	externaltest.Eventually(t, 15*time.Second, 50*time.Millisecond, func() bool { return hook.seen("pager", pageFP, "resolved") },
		"the pager receiver was not told the page resolved")

	for !resolved("ticket") {
		if s.clk.Now().After(outageTo.Add(30 * time.Minute)) {
			t.Fatalf("the ticket did not resolve: %v", keysOf(s.transitions()))
		}
		s.advance(time.Minute, 15*time.Second, tr, nil)
	}
	waitDrained(t, s.st, 10*time.Second)
	for i, am := range ams {
		externaltest.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool { return len(am.alerts()) == 0 },
			"alertmanager %d still has alerts after recovery", i)
	}
	externaltest.Eventually(t, 15*time.Second, 50*time.Millisecond, func() bool { return hook.seen("tickets", ticketFP, "resolved") },
		"the tickets receiver was not told the ticket resolved")
	ns, err := s.st.Notifications(context.Background(), store.NotificationFilter{})
	must(t, err)
	// Page and ticket, each firing and resolved, to two Alertmanagers.
	if len(ns) != 8 {
		t.Errorf("got %d notifications, want 8", len(ns))
	}
	for _, n := range ns {
		if n.State != store.NotificationDelivered {
			t.Errorf("notification %d to %s: %s (%s)", n.ID, n.Target, n.State, n.LastError)
		}
	}
}
