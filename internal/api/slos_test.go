package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

// fixedSnapshots serves a snapshot built by the test: the engine's
// snapshot type with statuses as a cycle leaves them.
type fixedSnapshots struct {
	snap atomic.Pointer[engine.Snapshot]
}

func (f *fixedSnapshots) Snapshot() *engine.Snapshot { return f.snap.Load() }

func ptr(f float64) *float64 { return &f }

// syntheticStatuses returns n statuses shaped like the engine's: a 30d
// SLO with the workbook's windows and two alerts with their conditions,
// states and categories cycling, services of five SLOs each.
func syntheticStatuses(n int, at time.Time) []*engine.Status {
	states := []engine.State{engine.StateOK, engine.StateOK, engine.StateOK, engine.StatePending, engine.StateFiring, engine.StateNoData, engine.StateLowTraffic}
	windows := []time.Duration{5 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 72 * time.Hour, 30 * 24 * time.Hour}
	out := make([]*engine.Status, n)
	for i := range out {
		svc := fmt.Sprintf("svc-%04d", i/5)
		st := &engine.Status{
			Key: fmt.Sprintf("%s-slo-%d", svc, i%5), SLO: fmt.Sprintf("%s-slo-%d", svc, i%5), Service: svc,
			Category: spec.Categories[i%3], Objective: 0.999, Window: "30d", Budgeting: "occurrences",
			State: states[i%len(states)], EvaluatedAt: at, DataUntil: at.Add(-time.Minute), SLI: ptr(0.9993),
			Budget:     slo.Budget{Fraction: 0.001, Total: 1e7, Allowed: 1e4, Consumed: 7000, Remaining: 3000, ConsumedRatio: 0.7, RemainingRatio: 0.3 - float64(i%10)/100},
			BudgetTime: engine.Durations{Allowed: 43 * time.Minute, Remaining: 13 * time.Minute}, PeriodStart: at.Add(-30 * 24 * time.Hour),
		}
		if st.State == engine.StateNoData {
			st.Reason = "no samples for 12m"
		}
		for _, w := range windows {
			st.Windows = append(st.Windows, engine.WindowStat{Window: w, Name: spec.Duration(w).String(), From: at.Add(-w), Good: 99930, Total: 100000,
				SLI: ptr(0.9993), BurnRate: ptr(0.7), Coverage: 1})
		}
		for _, sev := range []string{"page", "ticket"} {
			a := engine.AlertStatus{Severity: sev, Name: "SLOErrorBudgetBurn", State: slo.Inactive}
			for _, c := range []slo.BurnCondition{{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4}, {Long: 6 * time.Hour, Short: 30 * time.Minute, Factor: 6}} {
				a.Conditions = append(a.Conditions, slo.ConditionResult{Condition: c, LongBurn: 0.7, ShortBurn: 0.6})
			}
			if st.State == engine.StateFiring && sev == "page" {
				a.State, a.Since, a.FiredAt, a.Condition = slo.Firing, at.Add(-10*time.Minute), at.Add(-8*time.Minute), "1h/5m"
			}
			st.Alerts = append(st.Alerts, a)
		}
		out[i] = st
	}
	slices.SortFunc(out, func(a, b *engine.Status) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func newSLOAPI(t testing.TB, n int) (*API, *fixedSnapshots) {
	t.Helper()
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	f := &fixedSnapshots{}
	f.snap.Store(engine.NewSnapshot(at, syntheticStatuses(n, at), nil))
	a, err := New(Options{Engine: f, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	return a, f
}

func get(t testing.TB, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

// TestListSLOsEncodesLikeJSON: the list written from the cache of encoded
// statuses is byte for byte what encoding/json writes for the page, for
// every filter and page.
func TestListSLOsEncodesLikeJSON(t *testing.T) {
	a, f := newSLOAPI(t, 103)
	snap := f.Snapshot()
	for _, q := range []string{"", "?limit=10", "?limit=10&offset=95", "?offset=200", "?state=firing", "?category=security&limit=5",
		"?service=svc-0003", "?service=svc-0003&state=ok", "?limit=10000"} {
		rec := get(t, a, "/api/v1/slos"+q)
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", q, rec.Code, rec.Body)
		}
		req := httptest.NewRequest(http.MethodGet, "/api/v1/slos"+q, nil)
		service, category, state, _ := sloFilter(req)
		var sel []*engine.Status
		for _, st := range snap.Statuses {
			if (service == "" || st.Service == service) && (category == "" || st.Category == category) && (state == "" || st.State == state) {
				sel = append(sel, st)
			}
		}
		want, err := paginate(sel, req)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_ = json.NewEncoder(&buf).Encode(want)
		if rec.Body.String() != buf.String() {
			t.Errorf("%s: the cached encoding differs from encoding/json:\n got %.300s\nwant %.300s", q, rec.Body, buf.String())
		}
	}
	// A new snapshot is encoded afresh.
	at := snap.At.Add(time.Minute)
	next := engine.NewSnapshot(at, syntheticStatuses(3, at), nil)
	f.snap.Store(next)
	var p struct{ Total int }
	for deadline := time.Now().Add(10 * time.Second); p.Total != 3; time.Sleep(time.Millisecond) {
		if err := json.Unmarshal(get(t, a, "/api/v1/slos").Body.Bytes(), &p); err != nil || (p.Total != 3 && p.Total != 103) {
			t.Fatalf("after a new snapshot: total %d, %v", p.Total, err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the new snapshot was never listed")
		}
	}
}

func TestListSLOsBadInput(t *testing.T) {
	a, _ := newSLOAPI(t, 5)
	for q, want := range map[string]string{
		"?category=speed": `category \"speed\"`,
		"?state=broken":   `state \"broken\"`,
		"?limit=0":        "limit",
		"?limit=10001":    "limit",
		"?offset=-1":      "offset",
		"?limit=x":        "limit",
	} {
		rec := get(t, a, "/api/v1/slos"+q)
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s: %d %s, want 400 mentioning %s", q, rec.Code, rec.Body, want)
		}
	}
	if rec := get(t, a, "/api/v1/nothing"); rec.Code != 404 || !strings.Contains(rec.Body.String(), `"error"`) {
		t.Errorf("unknown API path: %d %s", rec.Code, rec.Body)
	}
}

func TestSummaries(t *testing.T) {
	set, diags := spec.LoadBytes("s.yaml", []byte(`
apiVersion: qsp/v1
kind: Service
metadata: {name: shop, displayName: Shop}
spec:
  owner: team
  tier: 1
  cost: {query: "sum(cost)", currency: EUR}
  journeys: [{name: buy, slos: [a]}]
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: a}
spec:
  service: shop
  category: quality
  objective: 99
  window: 7d
  indicator:
    ratio:
      bad: sum(rate(e[{{.window}}]))
      total: sum(rate(t[{{.window}}]))
---
apiVersion: qsp/v1
kind: Service
metadata: {name: idle}
spec: {owner: nobody}
`))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	st := func(key, svc string, c spec.Category, s engine.State, total, remaining float64) *engine.Status {
		return &engine.Status{Key: key, SLO: key, Service: svc, Category: c, State: s, Budget: slo.Budget{Total: total, RemainingRatio: remaining}}
	}
	snap := engine.NewSnapshot(time.Time{}, []*engine.Status{
		st("a", "shop", spec.Quality, engine.StateOK, 100, 0.9),
		st("b", "shop", spec.Quality, engine.StateFiring, 100, 0.2),
		st("c", "shop", spec.Quality, engine.StateOK, 0, 0),
		st("d", "shop", spec.Security, engine.StateNoData, 0, 0),
		st("e", "shop", spec.Performance, engine.StatePending, 50, -0.5),
		st("f", "ghost", spec.Quality, engine.StateOK, 10, 1),
	}, nil)
	got := Summaries(set, snap)
	if len(got) != 3 || got[0].Name != "shop" || got[1].Name != "idle" || got[2].Name != "ghost" || got[2].Declared {
		t.Fatalf("services: %+v", got)
	}
	shop := got[0]
	if shop.State != engine.StateNoData || shop.SLOs != 5 || !shop.HasCost || shop.DisplayName != "Shop" || len(shop.Journeys) != 1 {
		t.Errorf("shop: %+v", shop)
	}
	q, s, p := shop.Categories[0], shop.Categories[1], shop.Categories[2]
	if q.State != engine.StateFiring || q.SLOs != 3 || q.Firing != 1 || q.BudgetRemaining == nil || *q.BudgetRemaining != 0.2 || q.Tightest != "b" {
		t.Errorf("quality: %+v", q)
	}
	if s.State != engine.StateNoData || s.NoData != 1 || s.BudgetRemaining != nil {
		t.Errorf("security: %+v", s)
	}
	if p.State != engine.StatePending || p.Pending != 1 || *p.BudgetRemaining != -0.5 {
		t.Errorf("performance: %+v", p)
	}
	if idle := got[1]; idle.State != "" || idle.SLOs != 0 || idle.Categories[0].State != "" {
		t.Errorf("idle: %+v", idle)
	}
	for _, tc := range []struct{ a, b, want engine.State }{
		{engine.StateOK, engine.StateFiring, engine.StateFiring},
		{engine.StateFiring, engine.StateNoData, engine.StateNoData},
		{"", engine.StateOK, engine.StateOK},
		{engine.StatePending, engine.StateLowTraffic, engine.StatePending},
		{engine.StateOK, engine.StateUnknown, engine.StateOK},
	} {
		if got := WorseState(tc.a, tc.b); got != tc.want {
			t.Errorf("WorseState(%q, %q) = %q, want %q", tc.a, tc.b, got, tc.want)
		}
	}
}

// BenchmarkListSLOs measures GET /api/v1/slos?limit=10000 over a real
// HTTP connection with 10,000 SLO statuses, through the auth middleware
// with a viewer token; it reports p50 and p99 latencies of the whole
// request (the body read to its end). "steady" serves one snapshot;
// "cycling" publishes a new snapshot before every request, as if an
// engine cycle ended before each, so requests compete with the
// background encoding for the CPU.
//
// "uncached" is the reference: the same list encoded with encoding/json
// on every request, as the handler did before the cache.
func BenchmarkListSLOs(b *testing.B) {
	for _, mode := range []string{"steady", "cycling", "uncached"} {
		b.Run(mode, func(b *testing.B) {
			tok, hash, _ := NewToken()
			auth, err := NewAuth(AuthOptions{Tokens: []Token{{Name: "bench", Role: RoleViewer, SHA256: hash}}, RateLimit: Limit{PerSecond: -1}})
			if err != nil {
				b.Fatal(err)
			}
			at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
			f := &fixedSnapshots{}
			sts := syntheticStatuses(10000, at)
			f.snap.Store(engine.NewSnapshot(at, sts, nil))
			a, err := New(Options{Engine: f, Auth: auth})
			if err != nil {
				b.Fatal(err)
			}
			var h http.Handler = a
			if mode == "uncached" {
				h = auth.Require(RoleViewer, 0, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					p, err := paginate(f.Snapshot().Statuses, r)
					if err != nil {
						b.Error(err)
					}
					writeJSON(w, http.StatusOK, p)
				}))
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/slos?limit=10000", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			client := srv.Client()
			var lat []time.Duration
			var size int64
			b.ReportAllocs()
			for b.Loop() {
				if mode == "cycling" {
					f.snap.Store(engine.NewSnapshot(at, sts, nil))
				}
				start := time.Now()
				resp, err := client.Do(req)
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
			b.ReportMetric(float64(size)/1e6, "MB/response")
		})
	}
}

// BenchmarkEncodeSnapshot is the background work a new snapshot of
// 10,000 SLO statuses costs the list, on all cores.
func BenchmarkEncodeSnapshot(b *testing.B) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	snap := engine.NewSnapshot(at, syntheticStatuses(10000, at), nil)
	b.ReportAllocs()
	for b.Loop() {
		e := &encodedSnapshot{snap: snap}
		e.encode()
	}
}

// FuzzSLOQueries: any query string on the SLO and service routes is
// answered 200, 400 or 404 with JSON, never a panic or a 500.
func FuzzSLOQueries(f *testing.F) {
	a, _ := newSLOAPI(f, 20)
	for _, s := range []string{"/api/v1/slos?limit=5&offset=3", "/api/v1/slos?state=firing&category=quality", "/api/v1/services?tier=2&state=ok",
		"/api/v1/slos?limit=-1", "/api/v1/services?tier=x", "/api/v1/slos/svc-0001-slo-1", "/api/v1/slos?offset=99999999999999999999",
		"/api/v1/services/svc-0002", "/api/v1/slos?service=%00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		if len(target) > 2048 || !strings.HasPrefix(target, "/api/v1/") {
			return
		}
		req, err := http.NewRequest(http.MethodGet, "http://x"+target, nil)
		if err != nil {
			return
		}
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 404, 405:
		case 301, 307, 308:
			// ServeMux cleans paths such as "/api/v1/." by redirecting.
			return
		default:
			t.Fatalf("%s: %d %s", target, rec.Code, rec.Body)
		}
		if rec.Code != 405 && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s: not JSON: %s", target, rec.Body)
		}
	})
}
