package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/store"
)

// snapshotOf serves a fixed snapshot.
type snapshotOf struct{ s *engine.Snapshot }

func (f snapshotOf) Snapshot() *engine.Snapshot { return f.s }

type incidentsFixture struct {
	api  *API
	keep *alert.Incidents
	disp *alert.Dispatcher
	st   *store.Store
	t0   time.Time
}

func pageTransition(key, service string, to slo.AlertState, at time.Time) engine.Transition {
	from := slo.Pending
	if to == slo.Resolved {
		from = slo.Firing
	}
	st := &engine.Status{Key: key, SLO: key, Service: service, Category: "quality", State: engine.StateFiring,
		Alerts: []engine.AlertStatus{{Severity: "page", Name: "SLOErrorBudgetBurn", State: to, Since: at.Add(-time.Minute), FiredAt: at, Condition: "1h/5m"}}}
	return engine.Transition{Key: key, SLO: key, Service: service, Severity: "page", Alert: "SLOErrorBudgetBurn", From: from, To: to, At: at, Condition: "1h/5m", Status: st}
}

// newIncidentsFixture has two incidents (shop open, search closed) made
// from transitions by the real incident keeper on a real store, and a
// snapshot with the shop page firing and the source down.
func newIncidentsFixture(t *testing.T) *incidentsFixture {
	t.Helper()
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	keep, err := alert.NewIncidents(alert.IncidentOptions{Store: st, Now: func() time.Time { return t0.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	wh, _ := alert.NewWebhook(alert.WebhookOptions{Name: "ops", URL: "http://127.0.0.1:1/hook"})
	disp, err := alert.NewDispatcher(alert.DispatcherOptions{Store: st, Notifiers: []alert.Notifier{wh}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	shop := pageTransition("shop-availability", "shop", slo.Firing, t0)
	search := pageTransition("search-latency", "search", slo.Firing, t0.Add(time.Minute))
	searchResolved := pageTransition("search-latency", "search", slo.Resolved, t0.Add(20*time.Minute))
	for _, ts := range [][]engine.Transition{{shop, search}, {searchResolved}} {
		disp.OnTransitions(ctx, ts)
		keep.OnTransitions(ctx, ts)
	}
	// The keeper's clock is an hour on: search's incident closes, its
	// page resolved for longer than the resolve hold.
	keep.OnCycle(ctx)
	snap := engine.NewSnapshot(t0.Add(30*time.Minute), []*engine.Status{shop.Status, searchResolved.Status},
		&engine.AlertStatus{Severity: "no_data", Name: engine.AlertSourceDown, State: slo.Pending, Since: t0.Add(29 * time.Minute)})
	a, err := New(Options{Engine: snapshotOf{snap}, Store: st, Extra: map[string]any{"incidents": keep, "alerts": disp}})
	if err != nil {
		t.Fatal(err)
	}
	return &incidentsFixture{api: a, keep: keep, disp: disp, st: st, t0: t0}
}

func (f *incidentsFixture) do(t *testing.T, method, path, contentType, body string) (int, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	f.api.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, b
}

func TestIncidentRoutes(t *testing.T) {
	f := newIncidentsFixture(t)
	type list struct {
		Items []alert.Incident `json:"items"`
		Total int              `json:"total"`
	}
	get := func(path string) list {
		t.Helper()
		code, b := f.do(t, "GET", path, "", "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		var l list
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, c := range []struct {
		path     string
		services []string
	}{
		{"/api/v1/incidents", []string{"search", "shop"}},
		{"/api/v1/incidents?state=open", []string{"shop"}},
		{"/api/v1/incidents?state=closed", []string{"search"}},
		{"/api/v1/incidents?service=shop", []string{"shop"}},
		{"/api/v1/incidents?service=", nil},
		{"/api/v1/incidents?limit=1", []string{"search"}},
		{"/api/v1/incidents?limit=1&offset=1", []string{"shop"}},
	} {
		l := get(c.path)
		var got []string
		for _, i := range l.Items {
			got = append(got, i.Service)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.services) {
			t.Errorf("GET %s: got %v, want %v", c.path, got, c.services)
		}
	}
	shopID := get("/api/v1/incidents?state=open").Items[0].ID
	searchID := get("/api/v1/incidents?state=closed").Items[0].ID

	code, b := f.do(t, "GET", fmt.Sprintf("/api/v1/incidents/%d", searchID), "", "")
	var inc alert.Incident
	if code != 200 || json.Unmarshal(b, &inc) != nil || inc.State != "closed" || len(inc.Timeline) < 3 || inc.TimeToRepair == nil {
		t.Errorf("GET incident: %d %s", code, b)
	}

	// Acknowledgement: 200, idempotent, 409 when closed.
	code, b = f.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "application/json", `{"by": "alice", "note": "rolling back"}`)
	if code != 200 || json.Unmarshal(b, &inc) != nil || inc.AckedBy != "alice" || inc.AckNote != "rolling back" {
		t.Fatalf("ack: %d %s", code, b)
	}
	code, b = f.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "application/json; charset=utf-8", `{"by": "bob"}`)
	if code != 200 || json.Unmarshal(b, &inc) != nil || inc.AckedBy != "alice" {
		t.Errorf("second ack: %d %s; want 200 with alice's acknowledgement", code, b)
	}
	code, b = f.do(t, "POST", fmt.Sprintf("/api/v1/incidents/%d/ack", searchID), "application/json", `{"by": "bob"}`)
	if code != http.StatusConflict || !strings.Contains(string(b), "closed") {
		t.Errorf("ack of a closed incident: %d %s; want 409", code, b)
	}

	for _, c := range []struct {
		method, path, ct, body string
		want                   int
		says                   string
	}{
		{"GET", "/api/v1/incidents/999", "", "", 404, "not found"},
		{"GET", "/api/v1/incidents/abc", "", "", 400, "positive integer"},
		{"GET", "/api/v1/incidents/0", "", "", 400, "positive integer"},
		{"GET", "/api/v1/incidents?state=maybe", "", "", 400, "open or closed"},
		{"POST", "/api/v1/incidents/999/ack", "application/json", `{"by":"x"}`, 404, "not found"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "text/plain", `{"by":"x"}`, 415, "application/json"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "", ``, 400, "by"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "", `{"note":"x"}`, 400, "by: required"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "", `{"by":"x","nite":"y"}`, 400, "unknown field"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "", "{\"by\":\n 42}", 400, "line 2"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "", `{"by":"x"} {"by":"y"}`, 400, "after the JSON object"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "", `{"by":"a\u0007b"}`, 400, "control characters"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "", `{"by":"` + strings.Repeat("x", 201) + `"}`, 400, "longer than 200"},
		{"POST", fmt.Sprintf("/api/v1/incidents/%d/ack", shopID), "", `{"by":"x","note":"` + strings.Repeat("x", 70000) + `"}`, 413, "larger than"},
		{"GET", "/api/v1/incidents/stats?window=forever", "", "", 400, "duration"},
		{"GET", "/api/v1/alerts?state=bogus", "", "", 400, "pending, firing or resolved"},
	} {
		code, b := f.do(t, c.method, c.path, c.ct, c.body)
		if code != c.want || !strings.Contains(string(b), c.says) {
			t.Errorf("%s %s %q: got %d %s; want %d saying %q", c.method, c.path, truncateForLog(c.body), code, b, c.want, c.says)
		}
		if code >= 400 {
			var e map[string]string
			if json.Unmarshal(b, &e) != nil || e["error"] == "" {
				t.Errorf("%s %s: error body is not {\"error\": ...}: %s", c.method, c.path, b)
			}
		}
	}

	// Per-service SLIs over the last 30 days of the snapshot.
	code, b = f.do(t, "GET", "/api/v1/incidents/stats", "", "")
	var stats struct {
		Services []alert.ServiceStats `json:"services"`
	}
	if code != 200 || json.Unmarshal(b, &stats) != nil || len(stats.Services) != 2 {
		t.Fatalf("stats: %d %s", code, b)
	}
	if s := stats.Services[0]; s.Service != "search" || s.TimeToRepair.Count != 1 || s.TimeToRepair.Mean != (20*time.Minute).Seconds() {
		t.Errorf("search stats: %+v", s)
	}
	if s := stats.Services[1]; s.Service != "shop" || s.Open != 1 || s.Acknowledged != 1 || s.TimeToDetect.Count != 1 {
		t.Errorf("shop stats: %+v", s)
	}
}

func truncateForLog(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func TestAlertsRoute(t *testing.T) {
	f := newIncidentsFixture(t)
	type view struct {
		Key         string            `json:"key"`
		Severity    string            `json:"severity"`
		Alert       string            `json:"alert"`
		State       string            `json:"state"`
		Fingerprint string            `json:"fingerprint"`
		Labels      map[string]string `json:"labels"`
		Notified    string            `json:"notified"`
		Deliveries  []alert.Delivery  `json:"deliveries"`
	}
	get := func(path string) []view {
		t.Helper()
		code, b := f.do(t, "GET", path, "", "")
		if code != 200 {
			t.Fatalf("GET %s: %d %s", path, code, b)
		}
		var l struct {
			Items []view `json:"items"`
		}
		if err := json.Unmarshal(b, &l); err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	all := get("/api/v1/alerts")
	if len(all) != 3 {
		t.Fatalf("got %d alerts, want 3 (shop firing, source pending, search resolved): %+v", len(all), all)
	}
	// Firing first, then pending, then resolved.
	if all[0].Key != "shop-availability" || all[0].State != "firing" || all[1].Alert != engine.AlertSourceDown || all[2].State != "resolved" {
		t.Errorf("order: %+v", all)
	}
	shop := all[0]
	if shop.Notified != "firing" || shop.Labels["slo"] != "shop-availability" || shop.Fingerprint != alert.Fingerprint(shop.Labels) {
		t.Errorf("shop alert: %+v", shop)
	}
	if len(shop.Deliveries) != 1 || shop.Deliveries[0].Target != "webhook ops" || shop.Deliveries[0].State != "pending" {
		t.Errorf("shop deliveries: %+v", shop.Deliveries)
	}
	if got := get("/api/v1/alerts?state=resolved"); len(got) != 1 || got[0].Key != "search-latency" || got[0].Notified != "resolved" {
		t.Errorf("resolved filter: %+v", got)
	}
	if got := get("/api/v1/alerts?service=shop&severity=page"); len(got) != 1 {
		t.Errorf("service filter: %+v", got)
	}
}

// FuzzAckBody feeds the acknowledgement parser arbitrary bodies and
// content types: it never panics, refuses what it cannot use with a 4xx,
// and what it accepts meets the limits.
func FuzzAckBody(f *testing.F) {
	for _, seed := range []struct{ body, ct string }{
		{`{"by": "alice", "note": "rolling back"}`, "application/json"},
		{`{"by": "bot:pagerduty"}`, ""},
		{`{"by": "  carol  ", "note": ""}`, "application/json; charset=utf-8"},
		{`{"by": null}`, "application/json"},
		{`{"by": "x", "extra": 1}`, "application/json"},
		{`{"by": "a\u0000b"}`, ""},
		{`[1, 2]`, ""},
		{`{"by": "x"}{"by": "y"}`, ""},
		{"{\"by\": \"\xff\xfe\"}", ""},
		{`{"by": "x"}`, "text/plain"},
		{``, ""},
	} {
		f.Add([]byte(seed.body), seed.ct)
	}
	f.Fuzz(func(t *testing.T, body []byte, ct string) {
		if len(body) > maxAckBodyBytes {
			return
		}
		by, note, err := parseAckBody(body, ct)
		if err != nil {
			se, ok := err.(*statusError)
			if !ok || se.status < 400 || se.status > 499 || se.msg == "" {
				t.Fatalf("error %v is not a 4xx with a message", err)
			}
			return
		}
		// An empty by is allowed here: the handler fills in the caller or
		// refuses the request.
		if by != strings.TrimSpace(by) || len([]rune(by)) > maxAckByRunes || strings.ContainsFunc(by, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted by %q", by)
		}
		if len([]rune(note)) > maxAckNoteRunes {
			t.Fatalf("accepted a note of %d runes", len([]rune(note)))
		}
		if by != "" && !bytes.Contains(body, []byte(`"by"`)) && !bytes.Contains(body, []byte(`\u`)) && !bytes.Contains(bytes.ToLower(body), []byte(`"by"`)) {
			t.Fatalf("by %q from a body without a by field: %q", by, body)
		}
	})
}

func TestActingAs(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    *Principal
		by   string
		want string
	}{
		{"open mode takes the body", nil, "alice", "alice"},
		{"anonymous takes the body", &Principal{Name: "anonymous", Via: ViaAnonymous}, "alice", "alice"},
		{"token without by", &Principal{Name: "alice", Role: RoleOperator, Via: ViaToken}, "", "alice"},
		{"token naming itself", &Principal{Name: "alice", Role: RoleOperator, Via: ViaToken}, "alice", "alice"},
		{"token cannot claim another identity", &Principal{Name: "chatops", Role: RoleOperator, Via: ViaToken}, "bob", "bob via chatops"},
		{"session without by", &Principal{Name: "alice", Role: RoleOperator, Via: ViaSession}, "", "alice"},
	} {
		r := httptest.NewRequest("POST", "/api/v1/incidents/1/ack", nil)
		if tc.p != nil {
			r = r.WithContext(WithPrincipal(r.Context(), *tc.p))
		}
		if got := actingAs(r, tc.by); got != tc.want {
			t.Errorf("%s: actingAs(%q) = %q, want %q", tc.name, tc.by, got, tc.want)
		}
	}
}
