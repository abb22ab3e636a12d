package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/playbook"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

const playbookAPISpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: checkout}
spec: {owner: payments}
---
apiVersion: qsp/v1
kind: Service
metadata: {name: search}
spec: {owner: search}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: checkout-availability}
spec:
  service: checkout
  category: quality
  objective: 99
  window: 7d
  indicator:
    ratio:
      bad: sum(rate(http_errors_total{service="checkout"}[{{.window}}]))
      total: sum(rate(http_requests_total{service="checkout"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: checkout-rollback}
spec:
  service: checkout
  trigger: {slo: checkout-availability, on: [firing], severity: page}
  actions:
    - name: rollback
      webhook: {url: RECEIVER/api/rollback}
  guards: {kind: rollback, approval: true, cooldown: 30m}
---
apiVersion: qsp/v1
kind: Playbook
metadata: {name: search-nightly}
spec:
  service: search
  trigger: {schedule: "@daily"}
  actions:
    - name: tell
      notify: {message: nightly}
  guards: {cooldown: 1h}
`

// fixedSnapshot is an engine that always reports the same snapshot.
type fixedSnapshot struct {
	p atomic.Pointer[engine.Snapshot]
}

func (f *fixedSnapshot) Snapshot() *engine.Snapshot { return f.p.Load() }

// playbookEnv is the API over a running playbook runner with one run
// pending approval.
type playbookEnv struct {
	srv     *httptest.Server
	runner  *playbook.Runner
	pending string
	calls   *atomic.Int32
}

func newPlaybookEnv(t *testing.T, killSwitch bool) *playbookEnv {
	t.Helper()
	var calls atomic.Int32
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	t.Cleanup(recv.Close)
	set, diags := spec.LoadBytes("pb.yaml", []byte(strings.ReplaceAll(playbookAPISpecs, "RECEIVER", recv.URL)))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	pe, err := policy.New(policy.Options{Recorder: st})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	// The page fired a cycle before the snapshot: the runner leaves a
	// change of the snapshot's own cycle to its transition.
	status := &engine.Status{Key: "checkout-availability", SLO: "checkout-availability", Service: "checkout", Category: spec.Quality,
		State: engine.StateFiring, Alerts: []engine.AlertStatus{{Severity: "page", Name: "SLOErrorBudgetBurn", State: slo.Firing, FiredAt: now.Add(-15 * time.Second)}}}
	snap := &fixedSnapshot{}
	snap.p.Store(engine.NewSnapshot(now, []*engine.Status{status}, nil))
	r, err := playbook.New(playbook.Options{Specs: set, Engine: snap, Store: st, Policy: pe, Allowlist: []string{recv.URL + "/api/"},
		KillSwitch: killSwitch, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	a, err := New(Options{Engine: snap, Store: st, Extra: map[string]any{"playbooks": r}})
	if err != nil {
		t.Fatal(err)
	}
	env := &playbookEnv{srv: httptest.NewServer(a), runner: r, calls: &calls}
	t.Cleanup(env.srv.Close)
	for i := 0; i < 500; i++ {
		runs, _, err := r.Runs(ctx, playbook.RunFilter{Playbook: "checkout-rollback"})
		if err != nil {
			t.Fatal(err)
		}
		want := playbook.StatePending
		if killSwitch {
			want = playbook.StateSuppressed
		}
		if len(runs) == 1 && runs[0].State == want {
			env.pending = runs[0].ID
			return env
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no run of checkout-rollback recorded")
	return nil
}

func (e *playbookEnv) do(t *testing.T, method, path, contentType, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestPlaybookRoutes(t *testing.T) {
	e := newPlaybookEnv(t, false)
	const js = "application/json"
	cases := []struct {
		name, method, path, ct, body string
		status                       int
		contains                     string
	}{
		{"list", "GET", "/api/v1/playbooks", "", "", 200, `"name":"checkout-rollback"`},
		{"list by service", "GET", "/api/v1/playbooks?service=search", "", "", 200, `"total":1`},
		{"list bad limit", "GET", "/api/v1/playbooks?limit=0", "", "", 400, "limit"},
		{"runs", "GET", "/api/v1/playbooks/runs?playbook=checkout-rollback", "", "", 200, `"state":"pending"`},
		{"runs by state", "GET", "/api/v1/playbooks/runs?state=succeeded", "", "", 200, `"total":0`},
		{"runs bad state", "GET", "/api/v1/playbooks/runs?state=done", "", "", 400, `state \"done\": want one of new, pending`},
		{"runs bad time", "GET", "/api/v1/playbooks/runs?from=yesterday", "", "", 400, "from"},
		{"run", "GET", "/api/v1/playbooks/runs/" + e.pending, "", "", 200, `"approval":{"deadline"`},
		{"run missing", "GET", "/api/v1/playbooks/runs/nope", "", "", 404, "playbook run not found"},
		{"approve without by", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", js, `{"note":"x"}`, 400, "by: required"},
		{"approve wrong type", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", "text/plain", `by=alice`, 415, "want application/json"},
		{"approve unknown field", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", js, `{"by":"alice","approver":"x"}`, 400, `unknown field \"approver\"`},
		{"approve bad JSON", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", js, "{\n\"by\": alice}", 400, "line 2, column 8"},
		{"approve trailing data", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", js, `{"by":"alice"} {}`, 400, "unexpected data"},
		{"approve too large", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", js, `{"by":"` + strings.Repeat("a", 70<<10) + `"}`, 413, "larger than"},
		{"approve control chars", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", js, `{"by":"al\u0007ice"}`, 400, "control characters"},
		{"approve missing run", "POST", "/api/v1/playbooks/runs/nope/approve", js, `{"by":"alice"}`, 404, "not found"},
		{"approve", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", js, `{"by":"alice","note":"go"}`, 200, `"decision":"approved","by":"alice","note":"go"`},
		{"approve twice", "POST", "/api/v1/playbooks/runs/" + e.pending + "/approve", js, `{"by":"bob"}`, 409, "is not pending approval"},
		{"reject after approval", "POST", "/api/v1/playbooks/runs/" + e.pending + "/reject", js, `{"by":"bob"}`, 409, "is not pending approval"},
	}
	type testCase = struct {
		name, method, path, ct, body string
		status                       int
		contains                     string
	}
	check := func(cases []testCase) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				status, body := e.do(t, c.method, c.path, c.ct, c.body)
				if status != c.status || !strings.Contains(string(body), c.contains) {
					t.Fatalf("%s %s: got %d %s, want %d containing %q", c.method, c.path, status, body, c.status, c.contains)
				}
				if status >= 400 {
					var er struct{ Error string }
					if json.Unmarshal(body, &er) != nil || er.Error == "" {
						t.Fatalf("error body is not {\"error\": ...}: %s", body)
					}
				}
			})
		}
	}
	check(cases)
	// The approved run executes; the audit log shows it.
	for i := 0; i < 500; i++ {
		if e.calls.Load() > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 500; i++ {
		_, body := e.do(t, "GET", "/api/v1/playbooks/runs/"+e.pending, "", "")
		var run playbook.Run
		if err := json.Unmarshal(body, &run); err != nil {
			t.Fatal(err)
		}
		if run.State == playbook.StateSucceeded {
			if e.calls.Load() != 1 || run.Approval.By != "alice" {
				t.Fatalf("receiver calls %d, approver %q", e.calls.Load(), run.Approval.By)
			}
			check([]testCase{
				{"kill switch", "GET", "/api/v1/playbooks/killswitch", "", "", 200, `"on":false`},
				{"kill switch without on", "PUT", "/api/v1/playbooks/killswitch", js, `{"by":"alice"}`, 400, "on: required"},
				{"kill switch empty", "PUT", "/api/v1/playbooks/killswitch", js, ``, 400, "want a JSON object"},
				{"kill switch on", "PUT", "/api/v1/playbooks/killswitch", js, `{"on":true,"by":"alice","note":"incident 42"}`, 200, `"on":true,"forced":false,"by":"alice","note":"incident 42"`},
				{"kill switch read back", "GET", "/api/v1/playbooks/killswitch", "", "", 200, `"on":true`},
			})
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the approved run did not succeed")
}

func TestPlaybookKillSwitchForced(t *testing.T) {
	e := newPlaybookEnv(t, true)
	status, body := e.do(t, "PUT", "/api/v1/playbooks/killswitch", "application/json", `{"on":false,"by":"alice"}`)
	if status != http.StatusConflict || !strings.Contains(string(body), "server config") {
		t.Fatalf("got %d %s, want 409", status, body)
	}
	status, body = e.do(t, "GET", "/api/v1/playbooks/runs/"+e.pending, "", "")
	if status != 200 || !strings.Contains(string(body), `"state":"suppressed"`) || !strings.Contains(string(body), "kill switch is on (set in the server config)") {
		t.Fatalf("got %d %s", status, body)
	}
}

func TestPlaybookRoutesDocumented(t *testing.T) {
	e := newPlaybookEnv(t, false)
	a, err := New(Options{Engine: &fixedSnapshot{}, Extra: map[string]any{"playbooks": e.runner}})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Document(a.Routes())
	if err != nil {
		t.Fatal(err)
	}
	paths := doc["paths"].(map[string]any)
	for _, p := range []string{"/api/v1/playbooks", "/api/v1/playbooks/runs", "/api/v1/playbooks/runs/{id}", "/api/v1/playbooks/runs/{id}/approve", "/api/v1/playbooks/killswitch"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("%s is not in the OpenAPI document", p)
		}
	}
	for _, rt := range a.Routes() {
		if strings.Contains(rt.Pattern, "/playbooks") && !rt.Ruled {
			t.Errorf("%s has no role", rt.Pattern)
		}
	}
	if r, _ := RuleOf("PUT /api/v1/playbooks/killswitch"); r.Role != RoleAdmin {
		t.Errorf("the kill switch needs %s, want admin", r.Role)
	}
	if r, _ := RuleOf("POST /api/v1/playbooks/runs/{id}/approve"); r.Role != RoleOperator {
		t.Errorf("approval needs %s, want operator", r.Role)
	}
}

// FuzzPlaybookBodies decodes arbitrary approval and kill-switch bodies:
// a clear 4xx error or a valid request, never a panic; an accepted
// request names who acts within the limits.
func FuzzPlaybookBodies(f *testing.F) {
	for _, s := range []string{`{"by":"alice","note":"go"}`, `{"on":true,"by":"bob"}`, `{}`, ``, `{"by":"\u0000"}`, `{"by":"a"} x`, `[1,2]`, `{"on":"yes"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if len(body) > maxPlaybookBodyBytes {
			return
		}
		r := httptest.NewRequest("POST", "/api/v1/playbooks/runs/x/approve", nil)
		var d decisionRequest
		if err := decodeStrict([]byte(body), "application/json", &d, true); err == nil {
			if by, _, err := actorAndNote(r, d.By, d.Note); err == nil && (by == "" || len([]rune(by)) > maxByRunes) {
				t.Fatalf("accepted by %q", by)
			}
		} else if _, ok := err.(*statusError); !ok {
			t.Fatalf("error %v is not a status error", err)
		}
		var k killSwitchRequest
		if err := decodeStrict([]byte(body), "application/json", &k, false); err != nil {
			if _, ok := err.(*statusError); !ok {
				t.Fatalf("error %v is not a status error", err)
			}
		}
	})
}
