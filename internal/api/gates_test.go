package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

const gatesAPISpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: checkout}
spec: {owner: payments}
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
kind: Gate
metadata: {name: sec}
spec:
  service: checkout
  description: No critical vulnerabilities.
  security:
    reports: [scan/grype.json]
    maxFindings: {critical: 0}
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary}
spec:
  service: checkout
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    metrics:
      - name: latency
        query: latency_seconds{ {{.selector}} }
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: timed}
spec:
  service: checkout
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    interval: 1h
    runs: 2
    metrics:
      - name: latency
        query: latency_seconds{ {{.selector}} }
`

// grypeCritical is a Grype report (its documented JSON) with one
// critical finding.
const grypeCritical = `{"matches": [{
  "vulnerability": {"id": "CVE-2024-24790", "namespace": "nvd:cpe", "severity": "Critical", "fix": {"versions": ["1.22.4"], "state": "fixed"}},
  "relatedVulnerabilities": [],
  "artifact": {"name": "stdlib", "version": "go1.21.5", "type": "go-module", "locations": [{"path": "/app"}]}
}], "source": {"type": "image", "target": {"userInput": "shop/checkout:1"}}, "descriptor": {"name": "grype", "version": "0.77.0"}}`

// gatesServer serves the API with a real gate runner, policy engine,
// SQLite store and an engine over an empty TSDB.
func gatesServer(t *testing.T) (*httptest.Server, *gate.Runner) {
	t.Helper()
	set, diags := spec.LoadBytes("gates.yaml", []byte(gatesAPISpecs))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	eng, err := engine.New(engine.Options{Source: db, Store: st, Specs: set, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(30 * time.Second); !eng.Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("engine not ready")
		}
	}
	pe, err := policy.New(policy.Options{Policies: set.Policies, Recorder: st})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := gate.New(gate.Options{Specs: set, Engine: eng, Policy: pe, Evaluations: st, FirstSeen: st, Deploys: st, Source: db})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(runner.Close)
	a, err := New(Options{Engine: eng, Store: st, Extra: map[string]any{"gates": runner}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return srv, runner
}

type apiAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (r apiAnswer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r apiAnswer) errorMessage(t *testing.T) string {
	t.Helper()
	var e struct{ Error string }
	r.decode(t, &e)
	if e.Error == "" {
		t.Fatalf("no error message in %s", r.body)
	}
	return e.Error
}

func call(t *testing.T, method, url, contentType string, body []byte) apiAnswer {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
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
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiAnswer{resp.StatusCode, resp.Header, b}
}

func postJSON(t *testing.T, url string, v any) apiAnswer {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return call(t, http.MethodPost, url, "application/json", b)
}

func TestGatesAPI(t *testing.T) {
	srv, runner := gatesServer(t)
	base := srv.URL + "/api/v1"

	t.Run("list gates", func(t *testing.T) {
		r := call(t, http.MethodGet, base+"/gates", "", nil)
		var p struct {
			Items []gateView `json:"items"`
			Total int        `json:"total"`
		}
		r.decode(t, &p)
		if r.status != 200 || p.Total != 3 || p.Items[0].Name != "sec" || p.Items[0].Checks[0] != "security" || p.Items[1].Canary == nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		r = call(t, http.MethodGet, base+"/gates?limit=1&offset=2", "", nil)
		r.decode(t, &p)
		if len(p.Items) != 1 || p.Items[0].Name != "timed" {
			t.Errorf("page: %s", r.body)
		}
	})
	t.Run("get gate", func(t *testing.T) {
		r := call(t, http.MethodGet, base+"/gates/sec", "", nil)
		var g gateView
		r.decode(t, &g)
		if r.status != 200 || g.Security == nil || g.Security.Reports[0] != "scan/grype.json" || g.Security.MaxFindings["critical"] != 0 ||
			g.Description != "No critical vulnerabilities." {
			t.Fatalf("%d %s", r.status, r.body)
		}
		r = call(t, http.MethodGet, base+"/gates/timed", "", nil)
		r.decode(t, &g)
		if g.Canary.Interval != "1h" || g.Canary.Runs != 2 || g.Canary.Lookback != "" || g.Canary.Step != "15s" {
			t.Errorf("timed: %s", r.body)
		}
		r = call(t, http.MethodGet, base+"/gates/nope", "", nil)
		if r.status != 404 || !strings.Contains(r.errorMessage(t), `gate "nope" not found`) {
			t.Errorf("%d %s", r.status, r.body)
		}
	})

	t.Run("canary plan", func(t *testing.T) {
		r := call(t, http.MethodGet, base+"/gates/canary/canary/plan?requestsPerMinute=600&samplesPerMinute=60", "", nil)
		var p gate.CanaryPlan
		r.decode(t, &p)
		if r.status != 200 || p.Gate != "canary" || len(p.Plan.Metrics) != 1 || len(p.Plan.Metrics[0].Checks) == 0 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		for _, c := range p.Plan.Metrics[0].Checks {
			if c.Power.N80 == 0 || float64(c.Minutes80) != float64(c.Power.N80)/60 {
				t.Errorf("check %+v: want the 80%% size over 60 samples a minute", c)
			}
		}
		for _, tc := range []struct {
			query  string
			status int
			msg    string
		}{
			{"", 400, "requestsPerMinute: required"},
			{"?requestsPerMinute=fast", 400, `requestsPerMinute: "fast" is not a number`},
			{"?requestsPerMinute=NaN", 400, "not a number"},
			{"?requestsPerMinute=-3", 422, "requestsPerMinute -3 out of range"},
			{"?requestsPerMinute=10&sigma=9", 422, "sigma 9 out of range"},
		} {
			r := call(t, http.MethodGet, base+"/gates/canary/canary/plan"+tc.query, "", nil)
			if r.status != tc.status || !strings.Contains(r.errorMessage(t), tc.msg) {
				t.Errorf("%q: %d %s, want %d with %q", tc.query, r.status, r.body, tc.status, tc.msg)
			}
		}
		if r := call(t, http.MethodGet, base+"/gates/sec/canary/plan?requestsPerMinute=1", "", nil); r.status != 422 {
			t.Errorf("gate without canary: %d %s", r.status, r.body)
		}
		if r := call(t, http.MethodGet, base+"/gates/nope/canary/plan?requestsPerMinute=1", "", nil); r.status != 404 {
			t.Errorf("unknown gate: %d %s", r.status, r.body)
		}
	})

	var failedID string
	t.Run("post evaluation", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			content any
		}{
			{"report inline", json.RawMessage(grypeCritical)},
			{"report as a string", grypeCritical},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := postJSON(t, base+"/gates/sec/evaluations", map[string]any{
					"change":  map[string]any{"kind": "feature", "version": "1.2.3", "labels": map[string]string{"team": "payments"}, "deploy": true},
					"reports": []map[string]any{{"name": "scan/grype.json", "content": tc.content}},
				})
				var ev gate.Evaluation
				r.decode(t, &ev)
				if r.status != http.StatusCreated || ev.State != gate.StateFail || r.header.Get("Location") != "/api/v1/gates/evaluations/"+ev.ID {
					t.Fatalf("%d %v %s", r.status, r.header, r.body)
				}
				if ev.Security.Counts["critical"] != 1 || ev.Decision == nil || ev.Change.Version != "1.2.3" {
					t.Errorf("evaluation %s", r.body)
				}
				failedID = ev.ID
			})
		}
	})
	t.Run("post without body", func(t *testing.T) {
		// The gate's report is not uploaded and not on the server's disk:
		// the evaluation is an error naming it.
		r := call(t, http.MethodPost, base+"/gates/sec/evaluations", "", nil)
		var ev gate.Evaluation
		r.decode(t, &ev)
		if r.status != http.StatusCreated || ev.State != gate.StateError || !strings.Contains(ev.Summary, "report scan/grype.json") {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("post malformed report", func(t *testing.T) {
		r := postJSON(t, base+"/gates/sec/evaluations", map[string]any{"reports": []map[string]any{{"name": "scan/grype.json", "content": `{"matches": [`}}})
		var ev gate.Evaluation
		r.decode(t, &ev)
		if r.status != http.StatusCreated || ev.State != gate.StateError || !strings.Contains(ev.Summary, "report scan/grype.json: malformed vulnerability report") {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("post samples", func(t *testing.T) {
		samples := `{"metrics": {"latency": {"baseline": [1,2,3,4,5,6,7,8,9,10,11,12], "canary": [1,2,3,4,5,6,7,8,9,10,11,12]}}}`
		r := postJSON(t, base+"/gates/canary/evaluations", map[string]any{"change": map[string]any{"kind": "fix"}, "samples": json.RawMessage(samples)})
		var ev gate.Evaluation
		r.decode(t, &ev)
		if r.status != http.StatusCreated || ev.State != gate.StatePass || ev.Canary.Source != "samples" {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
	t.Run("post timed runs in the background", func(t *testing.T) {
		r := postJSON(t, base+"/gates/timed/evaluations", map[string]any{"change": map[string]any{"kind": "feature"}})
		var ev gate.Evaluation
		r.decode(t, &ev)
		if r.status != http.StatusAccepted || ev.State != gate.StateRunning || r.header.Get("Location") == "" {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var got gate.Evaluation
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			g := call(t, http.MethodGet, srv.URL+r.header.Get("Location"), "", nil)
			g.decode(t, &got)
			if !got.Progress.NextRunAt.IsZero() || time.Now().After(deadline) {
				break
			}
		}
		if got.State != gate.StateRunning || got.Progress.CanaryRuns != 2 || got.Progress.NextRunAt.IsZero() {
			t.Errorf("progress %+v", got.Progress)
		}
	})
	t.Run("post bad input", func(t *testing.T) {
		for _, tc := range []struct {
			name, gate, ctype, body string
			status                  int
			msg                     string
		}{
			{"unknown gate", "nope", "application/json", `{}`, 404, `gate "nope" not found`},
			{"syntax", "sec", "application/json", "{\n  \"change\": {\"kind\": \"fix\",}\n}", 400, "line 2"},
			{"unknown field", "sec", "application/json", `{"chnage": {}}`, 400, `unknown field "chnage"`},
			{"wrong type", "sec", "application/json", `{"runs": "two"}`, 400, "runs"},
			{"trailing data", "sec", "application/json", `{} {}`, 400, "data after the JSON object"},
			{"content type", "sec", "text/plain", `{}`, 415, "want application/json"},
			{"bad kind", "sec", "application/json", `{"change": {"kind": "hotfix"}}`, 422, `change kind "hotfix"`},
			{"mitigation without category", "sec", "application/json", `{"change": {"kind": "mitigation"}}`, 422, "needs the category"},
			{"report without name", "sec", "application/json", `{"reports": [{"content": {}}]}`, 422, "reports[0].name: required"},
			{"report without content", "sec", "application/json", `{"reports": [{"name": "a.json"}]}`, 422, "reports[0] (a.json).content: required"},
			{"report content a number", "sec", "application/json", `{"reports": [{"name": "a.json", "content": 3}]}`, 422, "want the document as JSON"},
			{"reports to a gate without security", "canary", "application/json", `{"reports": [{"name": "a.json", "content": {}}]}`, 422, "no security check"},
			{"samples to a gate without canary", "sec", "application/json", `{"samples": {"metrics": {}}}`, 422, "no canary check"},
			{"runs on a one-shot canary", "canary", "application/json", `{"runs": 3}`, 422, "needs spec.canary.interval"},
			{"impact out of range", "sec", "application/json", `{"change": {"expectedImpact": {"latency": 5000}}}`, 422, "expectedImpact.latency"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := call(t, http.MethodPost, base+"/gates/"+tc.gate+"/evaluations", tc.ctype, []byte(tc.body))
				if r.status != tc.status || !strings.Contains(r.errorMessage(t), tc.msg) {
					t.Errorf("got %d %s, want %d with %q", r.status, r.body, tc.status, tc.msg)
				}
			})
		}
		old := evaluationRequestLimit
		evaluationRequestLimit = 1 << 10
		defer func() { evaluationRequestLimit = old }()
		big := `{"reports": [{"name": "big.json", "content": "` + strings.Repeat("x", 2<<10) + `"}]}`
		r := call(t, http.MethodPost, base+"/gates/sec/evaluations", "application/json", []byte(big))
		if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(r.errorMessage(t), "larger than 1024 bytes") {
			t.Errorf("too large: %d %s", r.status, r.body)
		}
	})
	t.Run("get evaluation", func(t *testing.T) {
		r := call(t, http.MethodGet, base+"/gates/evaluations/"+failedID, "", nil)
		var ev gate.Evaluation
		r.decode(t, &ev)
		if r.status != 200 || ev.ID != failedID || ev.State != gate.StateFail || len(ev.Reasons) == 0 {
			t.Errorf("%d %s", r.status, r.body)
		}
		r = call(t, http.MethodGet, base+"/gates/evaluations/0190f0f0-0000-7000-8000-000000000000", "", nil)
		if r.status != 404 {
			t.Errorf("unknown: %d %s", r.status, r.body)
		}
	})
	t.Run("list evaluations", func(t *testing.T) {
		type list struct {
			Items      []gate.Evaluation `json:"items"`
			Total      int               `json:"total"`
			NextOffset int               `json:"nextOffset"`
		}
		for _, tc := range []struct {
			query string
			total int
			check func(list) bool
		}{
			{"", 6, func(l list) bool { return l.Items[0].Gate == "timed" }},
			{"?gate=sec&verdict=fail", 2, func(l list) bool { return l.Items[0].State == gate.StateFail && l.Items[0].ID == failedID }},
			{"?state=error", 2, func(l list) bool { return l.Items[0].Gate == "sec" }},
			{"?service=checkout&limit=2", 6, func(l list) bool { return len(l.Items) == 2 && l.NextOffset == 2 }},
			{"?gate=canary&verdict=pass", 1, func(l list) bool { return l.Items[0].Change.Kind == "fix" }},
			{"?verdict=running", 1, func(l list) bool { return l.Items[0].Gate == "timed" }},
			{"?from=2000-01-01T00:00:00Z&to=2001-01-01T00:00:00Z", 0, func(l list) bool { return len(l.Items) == 0 }},
		} {
			r := call(t, http.MethodGet, base+"/gates/evaluations"+tc.query, "", nil)
			var l list
			r.decode(t, &l)
			if r.status != 200 || l.Total != tc.total || !tc.check(l) {
				t.Errorf("%s: %d total %d, want %d: %s", tc.query, r.status, l.Total, tc.total, r.body)
			}
		}
		for _, q := range []string{"?verdict=maybe", "?limit=0", "?offset=-1", "?from=yesterday", "?from=2001-01-01T00:00:00Z&to=2000-01-01T00:00:00Z"} {
			if r := call(t, http.MethodGet, base+"/gates/evaluations"+q, "", nil); r.status != 400 {
				t.Errorf("%s: %d %s", q, r.status, r.body)
			}
		}
	})
	t.Run("decisions", func(t *testing.T) {
		r := call(t, http.MethodGet, base+"/decisions?point=gate&result=deny&subject=sec", "", nil)
		var l struct {
			Items []decisionView `json:"items"`
			Total int            `json:"total"`
		}
		r.decode(t, &l)
		if r.status != 200 || l.Total != 2 || l.Items[0].Input != nil || l.Items[0].Result != policy.Deny || len(l.Items[0].Reasons) == 0 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		r = call(t, http.MethodGet, base+"/decisions/"+l.Items[0].ID, "", nil)
		var d decisionView
		r.decode(t, &d)
		var in policy.Input
		if err := json.Unmarshal(d.Input, &in); err != nil || in.Gate != "sec" || in.Checks.Security == nil || in.Checks.Security.Counts["critical"] != 1 {
			t.Errorf("decision %s: %v", r.body, err)
		}
		if r := call(t, http.MethodGet, base+"/decisions/nope", "", nil); r.status != 404 {
			t.Errorf("unknown decision: %d", r.status)
		}
		for _, q := range []string{"?point=deploy", "?result=maybe", "?to=x"} {
			if r := call(t, http.MethodGet, base+"/decisions"+q, "", nil); r.status != 400 {
				t.Errorf("%s: %d %s", q, r.status, r.body)
			}
		}
	})
	t.Run("deploys", func(t *testing.T) {
		r := call(t, http.MethodGet, base+"/deploys?service=checkout", "", nil)
		var l struct {
			Items []store.Deploy `json:"items"`
			Total int            `json:"total"`
		}
		r.decode(t, &l)
		// One marker per evaluation told the change is deployed, with its
		// verdict; the other evaluations were checks (issue 22).
		if r.status != 200 || l.Total != 2 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		verdicts := map[string]int{}
		for _, d := range l.Items {
			verdicts[d.Verdict]++
			if d.Source != store.DeploySourceGate || d.EvaluationID == "" {
				t.Errorf("marker %+v", d)
			}
		}
		if verdicts["fail"] != 2 {
			t.Errorf("verdicts %v", verdicts)
		}
		r = call(t, http.MethodGet, base+"/deploys?service=search", "", nil)
		r.decode(t, &l)
		if l.Total != 0 || l.Items == nil {
			t.Errorf("search: %s", r.body)
		}
	})
	t.Run("policy schema", func(t *testing.T) {
		r := call(t, http.MethodGet, base+"/policy/schema", "", nil)
		var s struct {
			Schema     string                     `json:"$schema"`
			Properties map[string]json.RawMessage `json:"properties"`
		}
		r.decode(t, &s)
		if r.status != 200 || s.Properties["change"] == nil || s.Properties["checks"] == nil {
			t.Errorf("%d %.300s", r.status, r.body)
		}
	})

	// A stopped runner records the background evaluation as an error.
	runner.Close()
	evs, _, err := runner.Evaluations(context.Background(), gate.Filter{Gate: "timed"})
	if err != nil || len(evs) != 1 || evs[0].State != gate.StateError {
		t.Errorf("after close: %+v %v", evs, err)
	}
}

// FuzzEvaluationRequest feeds the POST body decoder arbitrary bytes: it
// never panics, answers only 400, 413 or 422, and what it accepts is a
// request the runner can take (named reports with content).
func FuzzEvaluationRequest(f *testing.F) {
	for _, seed := range []string{
		`{}`,
		``,
		`{"change": {"kind": "feature", "version": "1.4.2", "description": "new checkout", "labels": {"team": "payments"}}}`,
		`{"change": {"kind": "mitigation", "category": "security", "expectedImpact": {"latency": 0.2, "disablesSecurityControls": ["waf"]}}}`,
		`{"reports": [{"name": "trivy.json", "content": {"SchemaVersion": 2, "Results": []}}]}`,
		`{"reports": [{"name": "grype.json", "content": "{\"matches\": []}"}], "runs": 3}`,
		`{"samples": {"metrics": {"latency": {"baseline": [1, 2], "canary": [1, null]}}}}`,
		`{"samples": "{\"metrics\": {}}"}`,
		`{"reports": [{"name": "", "content": {}}]}`,
		`{"reports": [{"name": "a", "content": null}]}`,
		`{"change": {"kind": 3}}`,
		"{\"change\": {\n\"kind\": \"fix\",}}",
		`[]`,
		`{"runs": -1}`,
		`{"change": {"expectedImpact": {"latency": 1e308}}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > 1<<20 {
			t.Skip()
		}
		req, err := decodeEvaluationRequest(bytes.NewReader(body))
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) || (se.status != 400 && se.status != 413 && se.status != 422) || se.msg == "" {
				t.Fatalf("error %v is not a 400, 413 or 422 with a message", err)
			}
			return
		}
		for i, r := range req.Reports {
			if strings.TrimSpace(r.Name) == "" || len(r.Content) == 0 {
				t.Fatalf("accepted report %d without name or content: %+v", i, r)
			}
		}
		if req.Samples != nil && len(req.Samples) == 0 {
			t.Fatal("accepted empty samples")
		}
		if im := req.Change.ExpectedImpact; im != nil && (im.Latency < -1 || im.Latency > 1000 || im.ErrorRate < -1 || im.ErrorRate > 1000) {
			t.Fatalf("accepted impact %+v", im)
		}
	})
}
