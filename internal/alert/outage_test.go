package alert_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

const tenantSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: payments}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-tenants}
spec:
  service: shop
  category: quality
  objective: 99.9
  window: 30d
  groupBy: [tenant]
  indicator:
    ratio:
      bad: sum by (tenant) (rate(req_total{service="shop",code="500"}[{{.window}}]))
      total: sum by (tenant) (rate(req_total{service="shop"}[{{.window}}]))
`

// alerting is the component under test: dispatcher and incidents, on one
// store, run like the app runs them.
type alerting struct {
	d      *alert.Dispatcher
	inc    *alert.Incidents
	cancel context.CancelFunc
	done   chan error
}

func startAlerting(t testing.TB, s *sim, st *store.Store, notifiers []alert.Notifier) *alerting {
	t.Helper()
	d, err := alert.NewDispatcher(alert.DispatcherOptions{Store: st, Notifiers: notifiers, Specs: func() *spec.Set { return s.set },
		ExternalURL: "http://qsp.example", Backoff: alert.Backoff{Initial: 50 * time.Millisecond, Max: 400 * time.Millisecond}})
	must(t, err)
	inc, err := alert.NewIncidents(alert.IncidentOptions{Store: st, Engine: engineView{s}, Specs: func() *spec.Set { return s.set }, Now: s.clk.Now})
	must(t, err)
	s.handle(d.OnTransitions)
	s.handle(inc.OnTransitions)
	s.onCycle(inc.OnCycle)
	ctx, cancel := context.WithCancel(context.Background())
	a := &alerting{d: d, inc: inc, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- d.Run(ctx) }()
	return a
}

func (a *alerting) stop() {
	a.cancel()
	<-a.done
}

// engineView reads the sim's current engine, which a restart replaces.
type engineView struct{ s *sim }

func (e engineView) BadSince(key string, th float64) (time.Time, bool) {
	return e.s.eng.BadSince(key, th)
}
func (e engineView) Snapshot() *engine.Snapshot { return e.s.eng.Snapshot() }

// TestAlertmanagerOutage stops a real Alertmanager (SIGSTOP: connections
// hang until the per-target timeout) for minutes of simulated alert
// traffic, restarts QSP (engine, store, dispatcher, incidents) in the
// middle, resumes Alertmanager, and stops it again while alerts resolve.
// Every firing and every resolution must reach the receiver behind
// Alertmanager: 0 lost.
func TestAlertmanagerOutage(t *testing.T) {
	hook := newAMHook(t)
	am := startAlertmanager(t, hook.srv.URL)
	start := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	s := newSim(t, tenantSpecs, start)
	// Tenant 0: a 2-minute outage that pages while Alertmanager is up and
	// resolves while it is stopped. Tenants 1-5: 4-minute outages that
	// page while it is stopped, before and after the restart; they
	// resolve ~30 minutes later (the 6h/30m pair), partly during the
	// second stop. Short enough that no ticket fires.
	outages := map[string][2]time.Duration{"t0": {1 * time.Minute, 3 * time.Minute}}
	for i := 1; i <= 5; i++ {
		from := time.Duration(3+i) * time.Minute
		outages[fmt.Sprintf("t%d", i)] = [2]time.Duration{from, from + 4*time.Minute}
	}
	var trs []traffic
	for tenant, o := range outages {
		trs = append(trs, requests(seriesLabels("service", "shop", "tenant", tenant), 10, failing(start.Add(o[0]), start.Add(o[1]))))
	}
	tr := combine(trs...)
	// Three days and more of history, so every ticket window is full:
	// scraped each minute, then every 15s.
	s.sampleEvery = time.Minute
	s.write(start.Add(-3*24*time.Hour-7*time.Hour), start.Add(-time.Hour), tr)
	s.sampleEvery = 15 * time.Second
	s.write(start.Add(-time.Hour), start, tr)
	newNotifier := func() []alert.Notifier {
		n, err := alert.NewAlertmanager(alert.AlertmanagerOptions{URL: am.url(), Timeout: 300 * time.Millisecond})
		must(t, err)
		return []alert.Notifier{n}
	}
	a := startAlerting(t, s, s.st, newNotifier())
	defer func() { a.stop() }()
	s.startEngine()
	ctx := context.Background()
	step := 15 * time.Second
	until := func(at time.Duration) { s.advance(start.Add(at).Sub(s.clk.Now()), step, tr, nil) }
	// The window label is the pair that fired (1h/5m for an outage, or
	// 6h/30m when the engine saw that one first).
	windows := map[string]string{}
	fp := func(tenant string) string {
		window := windows[tenant]
		if window == "" {
			window = "1h/5m"
		}
		return alert.Fingerprint(map[string]string{"alertname": "SLOErrorBudgetBurn", "service": "shop", "slo": "shop-tenants", "category": "quality",
			"severity": "page", "window": window, "tenant": tenant})
	}
	pending := func() []store.Notification {
		ns, err := s.st.Notifications(ctx, store.NotificationFilter{State: store.NotificationPending})
		must(t, err)
		return ns
	}

	// Phase A: Alertmanager up, tenant 0 pages.
	until(4 * time.Minute)
	waitDrained(t, s.st, 10*time.Second)
	externaltest.Eventually(t, 15*time.Second, 20*time.Millisecond, func() bool { return hook.seen("pager", fp("t0"), "firing") }, "t0 page at the receiver")

	// Phase B: Alertmanager stopped for 9 minutes of alert traffic.
	am.proc.Signal(syscall.SIGSTOP)
	until(8*time.Minute + 15*time.Second)
	if len(pending()) == 0 {
		t.Fatal("nothing waits for the stopped Alertmanager")
	}
	// A QSP restart while notifications wait.
	s.restart(a.stop, func(st *store.Store) { a = startAlerting(t, s, st, newNotifier()) })
	until(13 * time.Minute)
	externaltest.Eventually(t, 15*time.Second, 20*time.Millisecond, func() bool {
		ns := pending()
		for _, n := range ns {
			if n.Attempts < 2 {
				return false
			}
		}
		return len(ns) > 0
	}, "every waiting notification tried at least twice")
	waiting := len(pending())
	am.proc.Signal(syscall.SIGCONT)
	waitDrained(t, s.st, 20*time.Second)
	t.Logf("%d notifications waited for the stopped Alertmanager", waiting)

	// Phase C: recovery, with a second stop while pages resolve.
	until(36 * time.Minute)
	am.proc.Signal(syscall.SIGSTOP)
	s.advance(start.Add(42*time.Minute).Sub(s.clk.Now()), time.Minute, tr, nil)
	if n := len(pending()); n == 0 {
		t.Error("no resolution waited for the second stop")
	} else {
		t.Logf("%d resolutions waited for the second stop", n)
	}
	am.proc.Signal(syscall.SIGCONT)
	s.advance(start.Add(50*time.Minute).Sub(s.clk.Now()), time.Minute, tr, nil)
	waitDrained(t, s.st, 20*time.Second)

	// Every page event the engine produced reached the receiver.
	want := map[string]bool{}
	for _, tr := range s.transitions() {
		if tr.Severity == "ticket" && tr.To == slo.Firing {
			t.Errorf("a ticket fired (%s): the scenario expects pages only", tr.Key)
		}
		if tr.Severity != "page" || (tr.To != slo.Firing && tr.To != slo.Resolved) {
			continue
		}
		tenant := tr.Status.Group["tenant"]
		want[tenant+" "+string(tr.To)] = true
		if tr.To == slo.Firing {
			windows[tenant] = tr.Condition
		}
	}
	if len(want) != 12 {
		t.Fatalf("the scenario produced %d page events, want 12 (6 tenants fire and resolve): %v", len(want), keysOf(s.transitions()))
	}
	for ev := range want {
		var tenant, status string
		fmt.Sscan(ev, &tenant, &status)
		externaltest.Eventually(t, 15*time.Second, 20*time.Millisecond, func() bool { return hook.seen("pager", fp(tenant), status) },
			"lost: %s %s never reached the receiver behind Alertmanager", tenant, status)
	}
	ns, err := s.st.Notifications(ctx, store.NotificationFilter{})
	must(t, err)
	retried := 0
	for _, n := range ns {
		if n.State != store.NotificationDelivered {
			t.Errorf("notification %d (%s %s): %s", n.ID, n.Key, n.Status, n.State)
		}
		if n.Attempts > 1 {
			retried++
		}
	}
	if len(ns) != 12 || retried < 5 {
		t.Errorf("got %d notifications, %d retried; want 12, at least 5 retried", len(ns), retried)
	}
	// One incident for the service: opened by t0's page, grown by the
	// others across the restart, closed once the last resolved and the
	// resolve hold (10m) passed.
	s.advance(start.Add(62*time.Minute).Sub(s.clk.Now()), time.Minute, tr, nil)
	incs, err := a.inc.List(ctx, alert.IncidentFilter{Service: "shop", HasService: true})
	must(t, err)
	if len(incs) != 1 || incs[0].State != "closed" || len(incs[0].Alerts) != 6 || incs[0].TimeToRepair == nil {
		t.Errorf("incidents: %+v", incs)
	}
}
