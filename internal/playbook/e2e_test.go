package playbook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/playbook"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

const e2eSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: payments}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-latency}
spec:
  service: shop
  category: performance
  objective: 99.9
  window: 30d
  alerting:
    ticket: {disabled: true}
  indicator:
    latency:
      histogram: http_request_duration_seconds{service="shop"}
      threshold: 300ms
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: shop-rollback}
spec:
  service: shop
  description: Roll the shop back when latency pages.
  trigger: {slo: shop-latency, on: [firing], severity: page}
  actions:
    - name: rollback
      webhook:
        url: RECEIVER/api/v1/rollouts/{{ .Service }}/rollback
        headers:
          Authorization: 'Bearer {{ secret "ROLLOUTS_TOKEN" }}'
        body: '{"incident": {{ .Incident }}, "reason": {{ json .Reason }}}'
    - name: tell
      notify:
        message: 'Rolled back {{ .Service }} for incident {{ .Incident }}: {{ .Reason }}'
  guards:
    kind: rollback
    cooldown: 30m
    maxRuns: {count: 3, per: 24h}
`

// clock is the settable clock of the simulation.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// rollouts stands in for a rollback API (Argo Rollouts): a rollback ends
// the slow release, and a repeated Idempotency-Key is answered without
// rolling back again.
type rollouts struct {
	mu         sync.Mutex
	calls      []*http.Request
	bodies     []string
	rolledBack time.Time
	clk        *clock
}

func (r *rollouts) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, req)
	r.bodies = append(r.bodies, string(b))
	if r.rolledBack.IsZero() {
		r.rolledBack = r.clk.Now()
	}
	w.Write([]byte(`{"status":"rolled back"}`))
}

func (r *rollouts) state() (int, time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls), r.rolledBack
}

// hook is the alerting webhook receiver: it gets the page from the
// alerting component and the playbook's notification.
type hook struct {
	mu   sync.Mutex
	msgs []alert.Message
	ids  []string
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m alert.Message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	h.msgs = append(h.msgs, m)
	h.ids = append(h.ids, r.Header.Get(alert.DeliveryHeader))
	h.mu.Unlock()
}

// named returns the messages of alerts named name and their delivery IDs.
func (h *hook) named(name string) ([]alert.Message, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ms []alert.Message
	var ids []string
	for i, m := range h.msgs {
		if m.Labels["alertname"] == name {
			ms, ids = append(ms, m), append(ids, h.ids[i])
		}
	}
	return ms, ids
}

// shopTraffic writes the shop's latency histogram: 20 requests a second,
// none slower than 300ms except from slowFrom until the rollback, when
// half are.
type shopTraffic struct {
	db       *telemetry.Embedded
	counts   map[string]float64
	last     time.Time
	slowFrom time.Time
	rollouts *rollouts
}

var (
	fastBucket = labels.FromStrings("__name__", "http_request_duration_seconds_bucket", "service", "shop", "le", "0.3")
	allBucket  = labels.FromStrings("__name__", "http_request_duration_seconds_bucket", "service", "shop", "le", "+Inf")
	countSerie = labels.FromStrings("__name__", "http_request_duration_seconds_count", "service", "shop")
)

func (s *shopTraffic) write(t *testing.T, to time.Time) {
	t.Helper()
	app := s.db.DB().Appender(context.Background())
	_, rolledBack := s.rollouts.state()
	for ts := s.last.Add(15 * time.Second); !ts.After(to); ts = ts.Add(15 * time.Second) {
		n := 20 * 15.0
		slow := 0.0
		if !s.slowFrom.IsZero() && !ts.Before(s.slowFrom) && (rolledBack.IsZero() || ts.Before(rolledBack)) {
			slow = 0.5
		}
		for _, x := range []struct {
			l labels.Labels
			v float64
		}{{fastBucket, n * (1 - slow)}, {allBucket, n}, {countSerie, n}} {
			s.counts[x.l.String()] += x.v
			if _, err := app.Append(0, x.l, ts.UnixMilli(), s.counts[x.l.String()]); err != nil {
				t.Fatal(err)
			}
		}
		s.last = ts
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestEndToEnd runs qsp serve in-process (embedded TSDB, engine,
// alerting and incidents, policies, playbooks, API) on a test clock. A
// latency incident is injected; the page fires, an incident opens, the
// rollback playbook calls the stand-in rollback API once; the rollback
// ends the slowness, the page resolves, the incident closes, and the
// audit log shows the whole chain.
func TestEndToEnd(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 5, 0, time.UTC)}
	ro := &rollouts{clk: clk}
	recv := httptest.NewServer(ro)
	defer recv.Close()
	hk := &hook{}
	hookSrv := httptest.NewServer(hk)
	defer hookSrv.Close()
	secrets := t.TempDir()
	const token = "e2e-rollouts-token"
	if err := os.WriteFile(filepath.Join(secrets, "ROLLOUTS_TOKEN"), []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	set, diags := spec.LoadBytes("e2e.yaml", []byte(strings.ReplaceAll(e2eSpecs, "RECEIVER", recv.URL)))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	cfg := &app.Config{
		Auth:        app.AuthConfig{InsecureAnonymousAdmin: true},
		ExternalURL: "http://qsp.test",
		DataDir:     t.TempDir(),
		Evaluation:  app.EvaluationConfig{Interval: spec.Duration(3 * time.Millisecond)},
		Playbooks:   app.PlaybookConfig{Allowlist: []string{recv.URL + "/api/v1/rollouts/"}, SecretsDir: secrets},
		Alerting:    app.AlertingConfig{Webhooks: []app.WebhookConfig{{Name: "ops", URL: hookSrv.URL}}},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, app.Options{Config: cfg, Specs: set, Listener: l, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	start := clk.Now()
	tr := &shopTraffic{db: a.Embedded(), counts: map[string]float64{}, last: start.Add(-7 * time.Hour).Truncate(15 * time.Second), rollouts: ro}
	tr.write(t, start)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	base := "http://" + a.Addr()
	externaltest.WaitHTTP(t, nil, base+"/readyz", 60*time.Second)
	eng := a.Engine()
	// step moves the clock by 15s, writing the telemetry first, and waits
	// until the engine has evaluated there (and handed out transitions).
	step := func() {
		t.Helper()
		next := clk.Now().Add(15 * time.Second)
		tr.write(t, next)
		clk.set(next)
		settle(t, eng, next)
	}
	getJSON := func(path string, v any) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", path, resp.Status, b)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatal(err)
		}
	}

	tr.slowFrom = start.Add(time.Minute)
	for page := false; !page; {
		if clk.Now().After(start.Add(20 * time.Minute)) {
			t.Fatal("no page within 20 minutes of slowness")
		}
		step()
		for _, st := range eng.Snapshot().SLO("shop-latency") {
			if as := st.Alert("page"); as != nil && as.State == "firing" {
				page = true
			}
		}
	}
	firedAt := clk.Now()
	// The playbook runs on the transition: the rollback API is called
	// without the clock moving.
	externaltest.Eventually(t, 15*time.Second, 5*time.Millisecond, func() bool { n, _ := ro.state(); return n == 1 },
		"the rollback API was not called after the page fired at %s", firedAt)

	var incs struct {
		Items []alert.Incident `json:"items"`
	}
	getJSON("/api/v1/incidents?state=open", &incs)
	if len(incs.Items) != 1 || incs.Items[0].Service != "shop" {
		t.Fatalf("open incidents: %+v", incs.Items)
	}
	incident := incs.Items[0].ID

	// Recovery: the rollback ends the slowness, the page resolves, the
	// incident closes.
	for closed := false; !closed; {
		if clk.Now().After(firedAt.Add(30 * time.Minute)) {
			t.Fatal("the incident did not close within 30 minutes of the rollback")
		}
		step()
		var inc alert.Incident
		getJSON(fmt.Sprintf("/api/v1/incidents/%d", incident), &inc)
		closed = inc.State == "closed"
	}
	for range 8 { // two more minutes: nothing runs again
		step()
	}

	n, rolledBack := ro.state()
	if n != 1 {
		t.Fatalf("rollback API calls: got %d, want exactly 1", n)
	}
	ro.mu.Lock()
	call, body := ro.calls[0], ro.bodies[0]
	ro.mu.Unlock()
	if call.URL.Path != "/api/v1/rollouts/shop/rollback" || call.Header.Get("Authorization") != "Bearer "+token || call.Header.Get("Idempotency-Key") == "" {
		t.Fatalf("the rollback call: %s %s %v", call.Method, call.URL, call.Header)
	}
	if !strings.Contains(body, fmt.Sprintf(`"incident": %d`, incident)) || !strings.Contains(body, "page alert SLOErrorBudgetBurn firing since") {
		t.Fatalf("the rollback body: %s", body)
	}

	var runs struct {
		Items []playbook.Run `json:"items"`
		Total int            `json:"total"`
	}
	getJSON("/api/v1/playbooks/runs?playbook=shop-rollback", &runs)
	if runs.Total != 1 {
		t.Fatalf("runs: %+v", runs)
	}
	run := runs.Items[0]
	if run.State != playbook.StateSucceeded || run.Trigger.Event != "firing" || run.Trigger.Severity != "page" || run.Trigger.Incident != incident ||
		!run.Trigger.At.Equal(firedAt) || !run.ActedAt.Equal(firedAt) {
		t.Fatalf("run: %s %+v acted at %s, fired at %s", run.State, run.Trigger, run.ActedAt, firedAt)
	}
	s := run.Steps[0]
	if s.Status != 200 || s.Attempts != 1 || s.Request.Headers["Authorization"] != "Bearer [secret ROLLOUTS_TOKEN]" || s.IdempotencyKey != call.Header.Get("Idempotency-Key") {
		t.Fatalf("step: %+v", s)
	}
	var stages []string
	for _, e := range run.Events {
		stages = append(stages, e.Stage+":"+e.Outcome)
	}
	want := "[trigger:info dedupe:pass kill-switch:pass config:pass in-flight:pass cooldown:pass run-limit:pass policy:pass approval:pass queue:pass " +
		"kill-switch:pass config:pass act:pass execute:pass execute:pass record:stop]"
	if fmt.Sprint(stages) != want {
		t.Fatalf("the run's chain:\ngot  %v\nwant %s", stages, want)
	}
	if len(run.Decisions) != 2 || run.Decisions[0].Result != "allow" || run.Decisions[1].Result != "allow" {
		t.Fatalf("decisions: %+v", run.Decisions)
	}
	var decision struct {
		Subject string          `json:"subject"`
		Point   string          `json:"point"`
		Input   json.RawMessage `json:"input"`
	}
	getJSON("/api/v1/decisions/"+run.Decisions[0].ID, &decision)
	if decision.Subject != "shop-rollback" || decision.Point != "playbook" || !strings.Contains(string(decision.Input), `"kind":"rollback"`) {
		t.Fatalf("decision in the log: %+v", decision)
	}
	// The notify action reached the alerting webhook once, as an alert
	// of its own next to the page.
	notes, ids := hk.named("QSPPlaybookNotification")
	pages, _ := hk.named("SLOErrorBudgetBurn")
	want = fmt.Sprintf("Rolled back shop for incident %d: SLO shop-latency: page alert SLOErrorBudgetBurn firing since", incident)
	if len(notes) != 1 || !strings.HasPrefix(notes[0].Annotations["description"], want) || notes[0].Labels["playbook"] != "shop-rollback" ||
		ids[0] != run.Steps[1].IdempotencyKey || len(pages) == 0 {
		t.Fatalf("notifications: %+v (delivery IDs %v), pages %d", notes, ids, len(pages))
	}
	var inc alert.Incident
	getJSON(fmt.Sprintf("/api/v1/incidents/%d", incident), &inc)
	if inc.State != "closed" || inc.ResolvedAt.Before(rolledBack) {
		t.Fatalf("incident: %+v (rolled back at %s)", inc, rolledBack)
	}
	t.Logf("page at %s, rollback at %s, incident %d closed at %s", firedAt.Sub(start), rolledBack.Sub(start), incident, inc.ResolvedAt.Sub(start))
}

// settle waits until the engine has evaluated three times at now: the
// transitions of the first are handed out before the third starts.
func settle(t *testing.T, eng *engine.Engine, now time.Time) {
	t.Helper()
	var last *engine.Snapshot
	seen := 0
	deadline := time.Now().Add(30 * time.Second)
	for seen < 3 {
		snap := eng.Snapshot()
		if snap != last && snap.At.Equal(now) {
			seen++
		}
		last = snap
		if time.Now().After(deadline) {
			t.Fatalf("the engine did not evaluate at %s within 30s", now)
		}
		time.Sleep(time.Millisecond)
	}
}
