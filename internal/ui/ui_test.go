package ui

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

type fixedSnapshots struct {
	snap atomic.Pointer[engine.Snapshot]
}

func (f *fixedSnapshots) Snapshot() *engine.Snapshot { return f.snap.Load() }

// fleet declares n services with three SLOs each (one per category); the
// first service's display name and description try to inject markup.
func fleet(tb testing.TB, n int) *spec.Set {
	tb.Helper()
	var b strings.Builder
	for i := range n {
		name := fmt.Sprintf("svc-%04d", i)
		display, desc := fmt.Sprintf("Service %d", i), "A service."
		if i == 0 {
			display, desc = `<img src=x onerror=alert(1)>`, `"><script>alert(2)</script>`
		}
		fmt.Fprintf(&b, "---\napiVersion: qsp/v1\nkind: Service\nmetadata: {name: %s, displayName: %q}\nspec: {owner: team-%d, tier: %d, description: %q}\n", name, display, i%7, 1+i%4, desc)
		for _, c := range spec.Categories {
			fmt.Fprintf(&b, `---
apiVersion: qsp/v1
kind: SLO
metadata: {name: %s-%s}
spec:
  service: %s
  category: %s
  objective: 99.9
  window: 30d
  indicator:
    ratio:
      bad: sum(rate(errors_total{service="%s"}[{{.window}}]))
      total: sum(rate(requests_total{service="%s"}[{{.window}}]))
`, name, c, name, c, name, name)
		}
	}
	set, diags := spec.LoadBytes("fleet.yaml", []byte(b.String()))
	if diags.HasErrors() {
		tb.Fatal(diags.Error())
	}
	return set
}

// fleetSnapshot gives every SLO of set a status, states cycling.
func fleetSnapshot(set *spec.Set, at time.Time) *engine.Snapshot {
	states := []engine.State{engine.StateOK, engine.StateOK, engine.StateOK, engine.StateOK, engine.StatePending, engine.StateFiring, engine.StateNoData}
	var sts []*engine.Status
	for i, s := range set.SLOs {
		sli, burn := 0.9993, 0.7
		st := &engine.Status{Key: s.Name(), SLO: s.Name(), Service: s.Spec.Service, Category: s.Spec.Category, Objective: 0.999, Window: "30d",
			State: states[i%len(states)], EvaluatedAt: at, SLI: &sli,
			Budget: slo.Budget{Total: 1e6, Allowed: 1000, Consumed: 700, Remaining: 300, ConsumedRatio: 0.7, RemainingRatio: 0.3 - float64(i%5)/10}}
		for _, w := range []time.Duration{5 * time.Minute, time.Hour, 6 * time.Hour, 30 * 24 * time.Hour} {
			st.Windows = append(st.Windows, engine.WindowStat{Window: w, Name: spec.Duration(w).String(), Good: 999, Total: 1000, SLI: &sli, BurnRate: &burn, Coverage: 1})
		}
		a := engine.AlertStatus{Severity: "page", Name: "SLOErrorBudgetBurn", State: slo.Inactive,
			Conditions: []slo.ConditionResult{{Condition: slo.BurnCondition{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4}, LongBurn: 9, ShortBurn: 8}}}
		if st.State == engine.StateFiring {
			a.State, a.Since, a.Condition = slo.Firing, at.Add(-5*time.Minute), "1h/5m"
		}
		st.Alerts = []engine.AlertStatus{a}
		sts = append(sts, st)
	}
	slices.SortFunc(sts, func(a, b *engine.Status) int { return strings.Compare(a.Key, b.Key) })
	return engine.NewSnapshot(at, sts, nil)
}

type testUI struct {
	ui    *UI
	auth  *api.Auth
	store *store.Store
	tok   map[api.Role]string
	at    time.Time
}

func newTestUI(tb testing.TB, n int) *testUI {
	tb.Helper()
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	set := fleet(tb, n)
	f := &fixedSnapshots{}
	f.snap.Store(fleetSnapshot(set, at))
	tu := &testUI{tok: map[api.Role]string{}, at: at}
	var tokens []api.Token
	for _, r := range api.Roles {
		tok, hash, _ := api.NewToken()
		tu.tok[r] = tok
		tokens = append(tokens, api.Token{Name: "t-" + string(r), Role: r, SHA256: hash})
	}
	var err error
	tu.auth, err = api.NewAuth(api.AuthOptions{Tokens: tokens, RateLimit: api.Limit{PerSecond: -1}, Now: func() time.Time { return at }})
	if err != nil {
		tb.Fatal(err)
	}
	tu.store, err = store.Open(context.Background(), store.Options{Path: filepath.Join(tb.TempDir(), "qsp.db")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tu.store.Close() })
	ctx := context.Background()
	if err := tu.store.RecordDeploy(ctx, store.Deploy{At: at.Add(-time.Hour), Service: "svc-0001", Version: "v2<b>", Source: store.DeploySourceEvents}); err != nil {
		tb.Fatal(err)
	}
	if err := tu.store.RecordDecision(ctx, &policy.Decision{ID: "0193a3f0-0000-7000-8000-000000000001", Time: at.Add(-time.Minute), Point: policy.PointGate,
		Subject: "svc-0001-deploy", Service: "svc-0001", Result: policy.Deny,
		Reasons: []policy.Reason{{Policy: "error-budget", Level: "deny", Message: "budget exhausted <i>"}}, Policies: []string{"error-budget"}, Input: []byte(`{}`)}); err != nil {
		tb.Fatal(err)
	}
	tu.ui, err = New(Options{Engine: f, Specs: func() *spec.Set { return set }, Auth: tu.auth, Records: tu.store, Now: func() time.Time { return at }})
	if err != nil {
		tb.Fatal(err)
	}
	return tu
}

func (tu *testUI) get(tb testing.TB, path string, role api.Role) (*http.Response, string) {
	tb.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if tok := tu.tok[role]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	rec := httptest.NewRecorder()
	tu.ui.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Result(), string(b)
}

// inlineCode finds what a strict CSP would block: inline scripts, event
// handler attributes, style attributes and elements.
var inlineCode = regexp.MustCompile(`(?i)<script|<[a-z][^>]*\s(on[a-z]+|style)\s*=|<style|href="javascript:`)

func TestPages(t *testing.T) {
	tu := newTestUI(t, 12)
	for _, tc := range []struct {
		path   string
		status int
		want   []string
	}{
		{"/", 200, []string{"Executive view", "svc-0005", "12</strong> services", "Quality", "Security", "Performance", "▲</span> Firing", "?</span> No data"}},
		{"/oncall", 200, []string{"Firing (", "Close to firing", "No data (", "svc-0001-quality", "Deploys in the last 24 hours (1)", "v2&lt;b&gt;"}},
		{"/slos", 200, []string{"36 SLO groups", "svc-0011-performance"}},
		{"/slos?state=firing&category=security", 200, []string{"SLO groups"}},
		{"/slos?offset=30", 200, []string{"showing 31 to 36", "Previous"}},
		{"/slos/svc-0002-quality", 200, []string{"SLO svc-0002-quality", "Burn rate per window", "svc-0002"}},
		{"/services/svc-0001", 200, []string{"Service 1", "team-1", "By category", "v2&lt;b&gt;"}},
		{"/decisions", 200, []string{"budget exhausted &lt;i&gt;", "error-budget", "✗</span> Deny"}},
		{"/decisions?result=deny&point=gate", 200, []string{"1 decisions"}},
		{"/incidents", 200, []string{"Incidents are not configured"}},
		{"/gates", 200, []string{"Gate evaluations are not available"}},
		{"/playbooks", 200, []string{"Playbooks are not configured"}},
		{"/login", 200, []string{"Sign in with an API token", `type="password"`}},
		{"/static/style.css", 200, []string{"--ok: #009E73"}},
		{"/slos/nope", 404, []string{"Not found (404)", "There is no SLO"}},
		{"/services/nope", 404, []string{"There is no service"}},
		{"/slos?category=speed", 400, []string{"There is no category"}},
		{"/decisions?point=x", 400, []string{"There is no decision point"}},
		{"/incidents/abc", 400, []string{"positive integer"}},
		{"/no/such/page", 404, []string{"There is no page at /no/such/page"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := tu.get(t, tc.path, api.RoleViewer)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d:\n%s", resp.StatusCode, tc.status, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q", w)
				}
			}
			if strings.HasSuffix(tc.path, ".css") {
				return
			}
			if m := inlineCode.FindString(body); m != "" {
				t.Errorf("inline code a strict CSP blocks: %q", m)
			}
			if strings.Contains(body, "<img src=x") || strings.Contains(body, "<script>alert") {
				t.Error("markup from the specs is not escaped")
			}
			refresh := strings.Contains(body, `http-equiv="refresh"`)
			if wantRefresh := tc.status == 200 && tc.path != "/login"; refresh != wantRefresh {
				t.Errorf("auto-refresh %v, want %v", refresh, wantRefresh)
			}
		})
	}
}

func TestPagesNeedARole(t *testing.T) {
	tu := newTestUI(t, 2)
	resp, body := tu.get(t, "/", api.RoleNone)
	if resp.StatusCode != 401 || !strings.Contains(body, "Sign in required") || !strings.Contains(body, `name="token"`) {
		t.Errorf("anonymous: %d\n%s", resp.StatusCode, body)
	}
	resp, body = tu.get(t, "/", api.RoleIngest)
	if resp.StatusCode != 403 || !strings.Contains(body, "Forbidden (403)") || !strings.Contains(body, "role ingest") {
		t.Errorf("ingest token: %d\n%s", resp.StatusCode, body)
	}
	// A viewer posting an operator form sees who they are and what it
	// needs.
	req := httptest.NewRequest(http.MethodPost, "/incidents/1/ack", strings.NewReader("note=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+tu.tok[api.RoleViewer])
	rec := httptest.NewRecorder()
	tu.ui.ServeHTTP(rec, req)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "You are signed in as t-viewer with the role viewer; acknowledging an incident needs the role operator") {
		t.Errorf("viewer ack: %d\n%s", rec.Code, rec.Body)
	}
}

func TestLoginRedirectsOnlyLocally(t *testing.T) {
	for in, want := range map[string]string{
		"/slos?x=1":            "/slos?x=1",
		"//evil.example":       "/",
		"https://evil.example": "/",
		"/\\evil.example":      "/",
		"":                     "/",
		"/a\r\nSet-Cookie:x":   "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{pct(0.999), "99.9%"}, {pct(1), "100%"}, {pct(0.99951), "99.951%"}, {pct(-0.25), "-25%"},
		{dur(90 * time.Minute), "1h 30m"}, {dur(49 * time.Hour), "2d 1h"}, {dur(-3 * time.Minute), "-3m"}, {dur(42 * time.Second), "42s"},
		{num(14.4), "14.40"}, {num(0.004), "0.004"}, {burn(nil), "no data"}, {money(0.00042, "USD"), "0.00042 USD"},
		{badge("firing").Text, "Firing"}, {badge("weird_state").Text, "weird state"},
		// Numbers for people (issue 22): no e-notation, whole counts,
		// durations in their largest units, p-values in words.
		{num(1.5e-14), "< 0.0001"}, {countInt(561927.98), "561,928"}, {countInt(1944), "1,944"}, {countInt(-0.2), "0"}, {countInt(999), "999"},
		{span(1008 * time.Minute), "16h48m"}, {span(84 * time.Minute), "1h24m"}, {span(30 * 24 * time.Hour), "30d"}, {span(5 * time.Minute), "5m"},
		{condName(slo.BurnCondition{Long: 1008 * time.Minute, Short: 84 * time.Minute}), "16h48m/1h24m"},
		{evidence(1.5e-14), "strong evidence (p < 0.001)"}, {evidence(0.03), "some evidence (p = 0.030)"}, {evidence(0.4), "no evidence of a difference (p = 0.40)"},
		{change(0, 3), "from none (baseline 0)"}, {change(2, 3), "+50%"}, {change(2, 1), "-50%"}, {change(0, 0), "no change"},
		{effect(0.62), "large (0.62)"}, {effect(-0.1), "negligible (-0.10)"},
		{measure(0.123456), "0.1235"}, {measure(1234.5678), "1235"}, {measure(2.5e-9), "< 0.0001"}, {measure(0), "0"},
		{humanize("shift +3.0%, Mann-Whitney p=1.5e-14 (alpha 0.013), change +inf%, ratio 0.1234567890123"), "shift +3.0%, Mann-Whitney strong evidence (p < 0.001) (alpha 0.013), change from none (baseline 0), ratio 0.1235"},
		{stepBadge("stop", "succeeded").Text, "Done"}, {stepBadge("stop", "failed").Text, "Stop"}, {stepBadge("pass", "succeeded").Text, "Pass"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	h := redactHeaders(map[string]string{"Authorization": "Bearer abc", "X-Api-Key": "k", "Content-Type": "application/json", "X-Token": "[secret T]"})
	if h["Authorization"] != "[redacted]" || h["X-Api-Key"] != "[redacted]" || h["Content-Type"] != "application/json" || h["X-Token"] != "[secret T]" {
		t.Errorf("redacted: %v", h)
	}
}

// BenchmarkExecutive renders the executive view of 1,000 services (3,000
// SLOs) through the auth middleware with a viewer token, and reports p50
// and p99 of the whole request. The reference is the same data as JSON
// from the API's services list (GET /api/v1/services).
func BenchmarkExecutive(b *testing.B) {
	tu := newTestUI(b, 1000)
	apiH, err := api.New(api.Options{Engine: tu.ui.opts.Engine, Specs: tu.ui.opts.Specs, Auth: tu.auth})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		h    http.Handler
		path string
	}{{"page", tu.ui, "/"}, {"reference-json", apiH, "/api/v1/services?limit=10000"}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+tu.tok[api.RoleViewer])
			var lat []time.Duration
			var size int64
			b.ReportAllocs()
			for b.Loop() {
				start := time.Now()
				resp, err := srv.Client().Do(req)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				lat = append(lat, time.Since(start))
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				size = n
			}
			slices.Sort(lat)
			q := func(p float64) float64 {
				return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
			}
			b.ReportMetric(q(0.5), "p50-ms")
			b.ReportMetric(q(0.99), "p99-ms")
			b.ReportMetric(float64(size)/1e3, "kB/response")
		})
	}
}

// FuzzPageQueries: any path and query string is a page, a 400 or a 404,
// never a 500 or a panic, and never echoes markup unescaped.
func FuzzPageQueries(f *testing.F) {
	tu := newTestUI(f, 3)
	for _, s := range []string{"/slos?state=firing&offset=2", "/slos/svc-0001-quality?group=x&range=6h", "/slos/svc-0001-quality?range=9y",
		"/decisions?result=deny&point=gate&service=<b>", "/incidents?state=weird", "/services/svc-0002", "/slos?category=%3Cscript%3E",
		"/playbooks?state=pending", "/gates?gate=x", "/login?next=//evil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if len(target) > 2048 || !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "/static/") {
			return
		}
		req, err := http.NewRequest(http.MethodGet, "http://x"+target, nil)
		if err != nil {
			return
		}
		req.Header.Set("Authorization", "Bearer "+tu.tok[api.RoleViewer])
		rec := httptest.NewRecorder()
		tu.ui.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 404, 405:
		case 301, 307, 308:
			// ServeMux cleans paths such as "/api/v1/." by redirecting.
			return
		default:
			t.Fatalf("%s: %d", target, rec.Code)
		}
		if strings.Contains(rec.Body.String(), "<script") {
			t.Fatalf("%s: a script tag in the page", target)
		}
	})
}
