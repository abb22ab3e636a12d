package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), store.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// transition is a burn-rate transition of SLO key of service shop.
func transition(key, sev string, from, to slo.AlertState, at time.Time) engine.Transition {
	cond := "1h/5m"
	pair := pageFast
	if sev == spec.SeverityTicket {
		cond, pair = "1d/2h", slo.BurnCondition{Long: 24 * time.Hour, Short: 2 * time.Hour, Factor: 3}
	}
	if to != slo.Firing {
		cond = ""
	}
	return engine.Transition{Key: key, SLO: key, Service: "shop", Severity: sev, Alert: "SLOErrorBudgetBurn", From: from, To: to, At: at, Condition: cond,
		Status: burnStatus(key, key, "shop", spec.Quality, nil, sev, pair, 20, 30, 0.9)}
}

// runDispatcher starts d.Run and returns a stop function that waits for it.
func runDispatcher(t testing.TB, d *Dispatcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("dispatcher did not stop within 10s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func fastBackoff() Backoff {
	return Backoff{Initial: 10 * time.Millisecond, Max: 80 * time.Millisecond, Multiplier: 2, Jitter: 0.5}
}

func receivedMessages(t testing.TB, rec *recorder) []Message {
	t.Helper()
	var out []Message
	for _, r := range rec.got() {
		var m Message
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Fatalf("body: %v", err)
		}
		out = append(out, m)
	}
	return out
}

func TestDispatcherDeliversInOrderAfterOutage(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	rec.set(http.StatusServiceUnavailable, 0)
	// The receiver answers at once; the timeout only has to outlast a
	// loaded CI machine, where an attempt timed out after the receiver
	// took the message would deliver it twice (allowed, but not the
	// order this test checks).
	wh, err := NewWebhook(WebhookOptions{Name: "ops", URL: srv.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	d, err := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{wh}, ExternalURL: "http://qsp", Backoff: fastBackoff(),
		Registerer: reg, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	stop := runDispatcher(t, d)
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	// Three alerts fire and one resolves while the receiver answers 503.
	d.OnTransitions(ctx, []engine.Transition{
		transition("a", "page", slo.Pending, slo.Firing, t0),
		transition("b", "page", slo.Pending, slo.Firing, t0),
	})
	d.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Firing, slo.Resolved, t0.Add(time.Minute))})
	d.OnTransitions(ctx, []engine.Transition{transition("c", "ticket", slo.Pending, slo.Firing, t0.Add(2*time.Minute))})
	externaltest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() bool {
		ns, _ := st.Notifications(ctx, store.NotificationFilter{State: store.NotificationPending})
		for _, n := range ns {
			if n.Attempts < 2 {
				return false
			}
		}
		return len(ns) == 4
	}, "every notification retried at least twice while the receiver is down")
	rec.set(http.StatusOK, 0)
	// Wait for the dispatcher's record, not the receiver's: the receiver
	// has a message before the dispatcher has read the answer and marked
	// it delivered, and a stop in between cancels that attempt (the row
	// stays pending, at least once), which is not what is tested here.
	externaltest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		ns, _ := st.Notifications(ctx, store.NotificationFilter{State: store.NotificationDelivered})
		return len(ns) == 4
	}, "4 notifications marked delivered after the receiver returned")
	stop()
	if n := len(rec.got()); n != 4 {
		t.Errorf("receiver got %d messages, want 4", n)
	}

	var got []string
	for _, m := range receivedMessages(t, rec) {
		got = append(got, m.Transition.Key+" "+m.Status)
	}
	if want := "[a firing b firing a resolved c firing]"; strings.Join(got, " ") != strings.Trim(want, "[]") {
		t.Errorf("delivery order: got %v, want %s", got, want)
	}
	ns, err := st.Notifications(ctx, store.NotificationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.State != store.NotificationDelivered || n.Attempts < 3 || n.LastError != "" {
			t.Errorf("row %d: state %s after %d attempts (%q), want delivered after at least 3", n.ID, n.State, n.Attempts, n.LastError)
		}
	}
	if v := testutil.ToFloat64(d.m.results.WithLabelValues("webhook ops", "delivered")); v != 4 {
		t.Errorf("delivered counter: got %v, want 4", v)
	}
	if v := testutil.ToFloat64(d.m.results.WithLabelValues("webhook ops", "retry")); v < 8 {
		t.Errorf("retry counter: got %v, want at least 8 (4 rows, 2 attempts)", v)
	}
	// One warning when the receiver went down, one info when it came back.
	if n := strings.Count(logs.String(), "level=WARN msg=\"receiver unavailable"); n != 1 {
		t.Errorf("got %d warnings about the receiver, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "receiver is back") {
		t.Error("no log line when the receiver came back")
	}
}

func TestDispatcherDedupe(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	wh, _ := NewWebhook(WebhookOptions{Name: "ops", URL: srv.URL})
	path := filepath.Join(t.TempDir(), "qsp.db")
	st := openStore(t, path)
	d, err := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{wh}, Backoff: fastBackoff()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	fire := transition("a", "page", slo.Pending, slo.Firing, t0)
	d.OnTransitions(ctx, []engine.Transition{fire, fire})
	d.OnTransitions(ctx, []engine.Transition{fire})
	// Resolving something nobody was told fires is not notified.
	d.OnTransitions(ctx, []engine.Transition{transition("zzz", "page", slo.Firing, slo.Resolved, t0)})
	// Pending and inactive transitions notify nobody.
	d.OnTransitions(ctx, []engine.Transition{transition("b", "page", slo.Inactive, slo.Pending, t0), transition("b", "page", slo.Pending, slo.Inactive, t0)})
	count := func() int {
		ns, err := st.Notifications(ctx, store.NotificationFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(ns)
	}
	if n := count(); n != 1 {
		t.Fatalf("got %d notifications, want 1", n)
	}
	if v := testutil.ToFloat64(d.m.deduped); v != 3 {
		t.Errorf("deduplicated: got %v, want 3", v)
	}
	// After a restart, the same firing transition (replayed because the
	// engine's write failed) is still a duplicate: the store knows.
	st.Close()
	st = openStore(t, path)
	defer st.Close()
	d2, _ := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{wh}})
	d2.OnTransitions(ctx, []engine.Transition{fire})
	if n := count(); n != 1 {
		t.Fatalf("after restart: got %d notifications, want 1", n)
	}
	// The resolution carries the labels the alert fired with, and the
	// fingerprint.
	d2.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Firing, slo.Resolved, t0.Add(10*time.Minute))})
	ns, _ := st.Notifications(ctx, store.NotificationFilter{WithPayload: true})
	if len(ns) != 2 || ns[0].Fingerprint != ns[1].Fingerprint || ns[1].Status != StatusResolved {
		t.Fatalf("after resolution: got %+v", ns)
	}
	var m Message
	if err := json.Unmarshal(ns[1].Payload, &m); err != nil {
		t.Fatal(err)
	}
	if m.Labels[LabelWindow] != "1h/5m" || !m.EndsAt.Equal(t0.Add(10*time.Minute)) || !m.StartsAt.Equal(t0) || Fingerprint(m.Labels) != ns[0].Fingerprint {
		t.Errorf("resolution message: labels %v, %s .. %s", m.Labels, m.StartsAt, m.EndsAt)
	}
	// A re-fire after resolution is a new event.
	d2.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, t0.Add(20*time.Minute))})
	if n := count(); n != 3 {
		t.Errorf("re-fire: got %d notifications, want 3", n)
	}
}

func TestDispatcherSurvivesRestart(t *testing.T) {
	// The receiver's port is closed while alerts fire: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	path := filepath.Join(t.TempDir(), "qsp.db")
	newDispatcher := func(st *store.Store) *Dispatcher {
		wh, err := NewWebhook(WebhookOptions{Name: "ops", URL: "http://" + addr + "/hook", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		am, err := NewAlertmanager(AlertmanagerOptions{URL: "http://" + addr, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		d, err := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{wh, am}, Backoff: fastBackoff(), ResendInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	ctx := context.Background()
	st := openStore(t, path)
	d := newDispatcher(st)
	stop := runDispatcher(t, d)
	t0 := time.Now().Add(-time.Hour).Truncate(time.Second)
	var ts []engine.Transition
	for i := range 10 {
		ts = append(ts, transition(string(rune('a'+i)), "page", slo.Pending, slo.Firing, t0.Add(time.Duration(i)*time.Second)))
	}
	d.OnTransitions(ctx, ts[:5])
	time.Sleep(100 * time.Millisecond) // some failed attempts
	stop()
	st.Close()

	// Restarted: more alerts fire, then the receiver comes up.
	st = openStore(t, path)
	defer st.Close()
	d = newDispatcher(st)
	d.OnTransitions(ctx, ts[5:])
	rec := &recorder{}
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s was taken meanwhile: %v", addr, err)
	}
	srv := &http.Server{Handler: rec}
	go srv.Serve(l)
	defer srv.Close()
	runDispatcher(t, d)
	// 10 webhook messages (one each) and Alertmanager posts holding 10 alerts.
	externaltest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		ns, _ := st.Notifications(ctx, store.NotificationFilter{State: store.NotificationDelivered})
		return len(ns) == 20
	}, "all 20 notifications delivered after the restart")
	seen := map[string]int{}
	for _, r := range rec.got() {
		if r.path == "/hook" {
			var m Message
			_ = json.Unmarshal(r.body, &m)
			seen[m.Transition.Key]++
			continue
		}
		var as []postableAlert
		if err := json.Unmarshal(r.body, &as); err != nil {
			t.Fatalf("alertmanager body: %v", err)
		}
		for _, a := range as {
			seen["am "+a.Labels["slo"]]++
		}
	}
	for _, tr := range ts {
		if seen[tr.Key] < 1 || seen["am "+tr.Key] < 1 {
			t.Errorf("alert %s: webhook got it %d times, alertmanager %d times; want at least once each", tr.Key, seen[tr.Key], seen["am "+tr.Key])
		}
	}
}

// refuser is an Alertmanager that refuses alerts labelled bad="1" with
// 400, as Alertmanager does with an invalid alert, refusing the whole list.
type refuser struct{ recorder }

func (r *refuser) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var b bytes.Buffer
	b.ReadFrom(req.Body)
	if strings.Contains(b.String(), `"bad":"1"`) {
		http.Error(w, `{"code":400,"message":"invalid alert"}`, http.StatusBadRequest)
		return
	}
	req.Body = http.NoBody
	r.mu.Lock()
	r.reqs = append(r.reqs, recorded{req.URL.Path, req.Header.Clone(), b.Bytes()})
	r.mu.Unlock()
}

func TestDispatcherIsolatesRefusedNotification(t *testing.T) {
	rec := &refuser{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	am, _ := NewAlertmanager(AlertmanagerOptions{URL: srv.URL})
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	set := loadSpecs(t, `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: b}
spec:
  service: shop
  category: quality
  objective: 99.9
  window: 30d
  alerting: {labels: {bad: "1"}}
  indicator: {ratio: {bad: 'sum(rate(x[{{.window}}]))', total: 'sum(rate(y[{{.window}}]))'}}
`)
	d, _ := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{am}, Specs: func() *spec.Set { return set }, Backoff: fastBackoff(), ResendInterval: time.Hour})
	t0 := time.Now().Add(-time.Minute)
	ctx := context.Background()
	// a and c are fine; b is refused. They are enqueued before Run, so
	// they go out as one list first.
	d.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, t0), transition("b", "page", slo.Pending, slo.Firing, t0), transition("c", "page", slo.Pending, slo.Firing, t0)})
	runDispatcher(t, d)
	externaltest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() bool {
		ns, _ := st.Notifications(ctx, store.NotificationFilter{State: store.NotificationPending})
		return len(ns) == 0
	}, "every notification settled")
	ns, _ := st.Notifications(ctx, store.NotificationFilter{})
	states := map[string]string{}
	for _, n := range ns {
		states[n.Key] = n.State
	}
	if states["a"] != store.NotificationDelivered || states["b"] != store.NotificationFailed || states["c"] != store.NotificationDelivered {
		t.Errorf("states: got %v, want a and c delivered, b failed", states)
	}
	if v := testutil.ToFloat64(d.m.results.WithLabelValues(am.Name(), "failed")); v != 1 {
		t.Errorf("failed counter: got %v, want 1", v)
	}
}

func TestDispatcherExpiry(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	wh, _ := NewWebhook(WebhookOptions{Name: "gone", URL: "http://" + externaltest.FreeAddr(t), Timeout: 100 * time.Millisecond})
	d, _ := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{wh}, Backoff: fastBackoff(), Expiry: 150 * time.Millisecond, SweepInterval: 20 * time.Millisecond})
	ctx := context.Background()
	d.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, time.Now())})
	runDispatcher(t, d)
	externaltest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() bool {
		ns, _ := st.Notifications(ctx, store.NotificationFilter{State: store.NotificationExpired})
		return len(ns) == 1
	}, "the notification expires")
	if v := testutil.ToFloat64(d.m.results.WithLabelValues("webhook gone", "expired")); v != 1 {
		t.Errorf("expired counter: got %v, want 1", v)
	}
}

func TestAlertmanagerResend(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	resend := 40 * time.Millisecond
	am, _ := NewAlertmanager(AlertmanagerOptions{URL: srv.URL, ResendInterval: resend})
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	d, _ := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{am}, ResendInterval: resend, Backoff: fastBackoff()})
	ctx := context.Background()
	t0 := time.Now().Add(-time.Minute)
	d.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, t0), transition("b", "ticket", slo.Pending, slo.Firing, t0)})
	stop := runDispatcher(t, d)
	externaltest.Eventually(t, 5*time.Second, 5*time.Millisecond, func() bool { return len(rec.got()) >= 4 }, "resends")
	resolution := time.Now().Truncate(time.Millisecond)
	d.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Firing, slo.Resolved, resolution)})
	time.Sleep(5 * resend)
	stop()
	posts := rec.got()
	resolvedAt := -1
	for i, p := range posts {
		var as []postableAlert
		if err := json.Unmarshal(p.body, &as); err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.EndsAt.Equal(resolution) {
				if a.Labels["slo"] != "a" {
					t.Errorf("post %d: %s sent as resolved", i, a.Labels["slo"])
				}
				resolvedAt = i
				continue
			}
			// A firing alert is valid for 4 resend intervals from the send.
			if a.EndsAt.Sub(a.StartsAt) < 4*resend {
				t.Errorf("post %d: endsAt %s too early for startsAt %s", i, a.EndsAt, a.StartsAt)
			}
			if resolvedAt >= 0 && a.Labels["slo"] == "a" {
				t.Errorf("post %d: a re-sent as firing after its resolution", i)
			}
		}
	}
	if resolvedAt < 1 {
		t.Errorf("resolution at post %d of %d; want after at least one resend", resolvedAt, len(posts))
	}
	if v := testutil.ToFloat64(d.m.resends.WithLabelValues(am.Name(), "success")); v < 2 {
		t.Errorf("resends: got %v, want at least 2", v)
	}
}

func BenchmarkOnTransitions(b *testing.B) {
	st := openStore(b, filepath.Join(b.TempDir(), "qsp.db"))
	defer st.Close()
	am, _ := NewAlertmanager(AlertmanagerOptions{URL: "http://127.0.0.1:1"})
	wh, _ := NewWebhook(WebhookOptions{Name: "w", URL: "http://127.0.0.1:1"})
	d, _ := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{am, wh}})
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		at := t0.Add(time.Duration(i) * time.Minute)
		d.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, at)})
		d.OnTransitions(ctx, []engine.Transition{transition("a", "page", slo.Firing, slo.Resolved, at.Add(time.Second))})
		i++
	}
}

// BenchmarkRecordTransitionsReference is the engine's own write of the
// same two transitions (transition rows and alert states, one
// transaction): the reference the outbox write is compared with.
func BenchmarkRecordTransitionsReference(b *testing.B) {
	st := openStore(b, filepath.Join(b.TempDir(), "qsp.db"))
	defer st.Close()
	ctx := context.Background()
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		at := t0.Add(time.Duration(i) * time.Minute)
		for _, tr := range []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, at), transition("a", "page", slo.Firing, slo.Resolved, at.Add(time.Second))} {
			status, _ := json.Marshal(tr.Status)
			if err := st.RecordTransitions(ctx, []store.Transition{{At: tr.At, Key: tr.Key, SLO: tr.SLO, Service: tr.Service, Severity: tr.Severity,
				Alert: tr.Alert, From: string(tr.From), To: string(tr.To), Condition: tr.Condition, Status: status}},
				[]store.AlertState{{Key: tr.Key, Severity: tr.Severity, State: string(tr.To)}}); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
}

// An SLO removed from the specs while its alert fires is resolved by the
// dispatcher: the engine no longer evaluates it, and Alertmanager would
// otherwise get it re-sent as firing forever.
func TestDispatcherResolvesRemovedSLOs(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
	defer st.Close()
	wh, _ := NewWebhook(WebhookOptions{Name: "ops", URL: "http://127.0.0.1:1"})
	set := loadSpecs(t, labelSpecs) // declares shop-availability, not "gone"
	d, _ := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{wh}, Specs: func() *spec.Set { return set }})
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour)
	d.OnTransitions(ctx, []engine.Transition{transition("gone", "page", slo.Pending, slo.Firing, t0), transition("shop-availability", "page", slo.Pending, slo.Firing, t0)})
	d.sweep(ctx)
	d.sweep(ctx) // once only
	ns, err := st.Notifications(ctx, store.NotificationFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range ns {
		got = append(got, n.Key+" "+n.Status)
	}
	if want := "[gone firing shop-availability firing gone resolved]"; fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
	firing, _ := st.NotifiedAlerts(ctx, store.NotifiedAlertFilter{State: store.AlertFiring})
	if len(firing) != 1 || firing[0].Key != "shop-availability" {
		t.Errorf("still firing: %+v", firing)
	}
}
