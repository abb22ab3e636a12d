package alert

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
)

const labelSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec:
  owner: team
  runbookURL: https://runbooks.example/shop
  labels: {team: payments, slo: overridden-by-qsp}
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
    labels: {tier: "1"}
    annotations: {playbook: restart-shop}
    page:
      labels: {severity: critical, pager: "yes"}
      annotations: {escalation: sre-oncall}
    noData: {severity: page, after: 5m}
  indicator:
    ratio:
      bad: sum(rate(req_total{code="500"}[{{.window}}]))
      total: sum(rate(req_total[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-tenants}
spec:
  service: shop
  category: performance
  objective: 99
  window: 7d
  groupBy: [tenant]
  alerting:
    name: TenantBudgetBurn
    tierLabel: priority
    runbookURL: https://runbooks.example/tenants
  indicator:
    ratio:
      bad: sum by (tenant) (rate(req_total{code="500"}[{{.window}}]))
      total: sum by (tenant) (rate(req_total[{{.window}}]))
`

func loadSpecs(t testing.TB, yaml string) *spec.Set {
	t.Helper()
	set, diags := spec.LoadBytes("test.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("spec: %s", diags.Error())
	}
	return set
}

func ptr[T any](v T) *T { return &v }

// burnStatus is the status of an SLO burning at long/short over the pair.
func burnStatus(key, sloName, service string, cat spec.Category, group map[string]string, sev string, pair slo.BurnCondition, long, short, remaining float64) *engine.Status {
	return &engine.Status{
		Key: key, SLO: sloName, Service: service, Category: cat, Group: group, Objective: 0.999, Window: "30d",
		State: engine.StateFiring, Budget: slo.Budget{Fraction: 0.001, RemainingRatio: remaining},
		Windows: []engine.WindowStat{{Window: pair.Long, Name: spec.Duration(pair.Long).String(), BurnRate: ptr(long)}},
		Alerts: []engine.AlertStatus{{Severity: sev, State: slo.Firing, Conditions: []slo.ConditionResult{
			{Condition: pair, LongBurn: long, ShortBurn: short, Met: true},
		}}},
	}
}

var pageFast = slo.BurnCondition{Long: time.Hour, Short: 5 * time.Minute, Factor: 14.4}

func TestBuild(t *testing.T) {
	set := loadSpecs(t, labelSpecs)
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	ticketPair := slo.BurnCondition{Long: 24 * time.Hour, Short: 2 * time.Hour, Factor: 3}
	cases := []struct {
		name            string
		t               engine.Transition
		window          string
		wantLabels      map[string]string
		wantAnnotations map[string]string // checked for presence and value
		summaryHas      string
		wantURL         string
	}{
		{
			name: "page: tier labels replace the severity value, QSP's labels win over spec labels",
			t: engine.Transition{Key: "shop-availability", SLO: "shop-availability", Service: "shop", Severity: "page", Alert: "SLOErrorBudgetBurn",
				From: slo.Pending, To: slo.Firing, At: at, Condition: "1h/5m",
				Status: burnStatus("shop-availability", "shop-availability", "shop", spec.Quality, nil, "page", pageFast, 16.666666, 200, 0.875)},
			wantLabels: map[string]string{"alertname": "SLOErrorBudgetBurn", "service": "shop", "slo": "shop-availability", "category": "quality",
				"severity": "critical", "window": "1h/5m", "team": "payments", "tier": "1", "pager": "yes"},
			wantAnnotations: map[string]string{"burn_rate": "16.67", "budget_remaining": "87.50%", "runbook_url": "https://runbooks.example/shop",
				"dashboard": "https://qsp.example/slos/shop-availability", "playbook": "restart-shop", "escalation": "sre-oncall"},
			summaryHas: "16.67x",
			wantURL:    "https://qsp.example/slos/shop-availability",
		},
		{
			name: "ticket of a grouped SLO with its own tier label and runbook",
			t: engine.Transition{Key: `shop-tenants{tenant="acme"}`, SLO: "shop-tenants", Service: "shop", Severity: "ticket", Alert: "TenantBudgetBurn",
				From: slo.Pending, To: slo.Firing, At: at, Condition: "1d/2h",
				Status: burnStatus(`shop-tenants{tenant="acme"}`, "shop-tenants", "shop", spec.Performance, map[string]string{"tenant": "acme"}, "ticket", ticketPair, 3.5, 4, -0.25)},
			wantLabels: map[string]string{"alertname": "TenantBudgetBurn", "service": "shop", "slo": "shop-tenants", "category": "performance",
				"priority": "ticket", "window": "1d/2h", "tenant": "acme", "team": "payments"},
			wantAnnotations: map[string]string{"burn_rate": "3.5", "budget_remaining": "-25.00%", "runbook_url": "https://runbooks.example/tenants"},
			summaryHas:      `shop-tenants{tenant="acme"}: ticket alert`,
		},
		{
			name: "resolution keeps the window it fired with",
			t: engine.Transition{Key: "shop-availability", SLO: "shop-availability", Service: "shop", Severity: "page", Alert: "SLOErrorBudgetBurn",
				From: slo.Firing, To: slo.Resolved, At: at,
				Status: burnStatus("shop-availability", "shop-availability", "shop", spec.Quality, nil, "page", pageFast, 2, 0, 0.5)},
			window: "1h/5m",
			wantLabels: map[string]string{"alertname": "SLOErrorBudgetBurn", "service": "shop", "slo": "shop-availability", "category": "quality",
				"severity": "critical", "window": "1h/5m", "team": "payments", "tier": "1", "pager": "yes"},
			wantAnnotations: map[string]string{"burn_rate": "2"},
			summaryHas:      "resolved",
		},
		{
			name: "telemetry missing pages when the spec says so, without a window",
			t: engine.Transition{Key: "shop-availability", SLO: "shop-availability", Service: "shop", Severity: "no_data", Alert: "QSPTelemetryMissing",
				From: slo.Pending, To: slo.Firing, At: at,
				Status: &engine.Status{Key: "shop-availability", SLO: "shop-availability", Service: "shop", Category: spec.Quality, State: engine.StateNoData,
					Reason: "no samples since 2026-11-25T07:50:00Z", DataUntil: at.Add(-10 * time.Minute), Budget: slo.Budget{RemainingRatio: 1}}},
			wantLabels: map[string]string{"alertname": "QSPTelemetryMissing", "service": "shop", "slo": "shop-availability", "category": "quality",
				"severity": "critical", "team": "payments", "tier": "1", "pager": "yes"},
			wantAnnotations: map[string]string{"budget_remaining": "100.00%"},
			summaryHas:      "no telemetry since 2026-11-25T07:50:00Z",
		},
		{
			name:            "source down: one alert that pages",
			t:               engine.Transition{Severity: "no_data", Alert: "QSPSourceDown", From: slo.Pending, To: slo.Firing, At: at, Condition: "connection refused"},
			wantLabels:      map[string]string{"alertname": "QSPSourceDown", "severity": "page"},
			wantAnnotations: map[string]string{"dashboard": "https://qsp.example/"},
			summaryHas:      "unavailable",
			wantURL:         "https://qsp.example/",
		},
		{
			name: "an SLO no longer in the specs still gets the core labels",
			t: engine.Transition{Key: "gone", SLO: "gone", Service: "shop", Severity: "page", Alert: "SLOErrorBudgetBurn", From: slo.Pending, To: slo.Firing, At: at, Condition: "1h/5m",
				Status: burnStatus("gone", "gone", "shop", spec.Security, nil, "page", pageFast, 20, 20, 0.9)},
			wantLabels: map[string]string{"alertname": "SLOErrorBudgetBurn", "service": "shop", "slo": "gone", "category": "security", "severity": "page",
				"window": "1h/5m", "team": "payments"},
			summaryHas: "gone: page alert",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := Build(c.t, set, "https://qsp.example/", c.window)
			if !maps.Equal(a.Labels, c.wantLabels) {
				t.Errorf("labels:\n got %v\nwant %v", a.Labels, c.wantLabels)
			}
			for k, v := range c.wantAnnotations {
				if a.Annotations[k] != v {
					t.Errorf("annotation %s: got %q, want %q", k, a.Annotations[k], v)
				}
			}
			for _, k := range []string{AnnotationSummary, AnnotationDescription, AnnotationDashboard} {
				if a.Annotations[k] == "" {
					t.Errorf("annotation %s missing: %v", k, a.Annotations)
				}
			}
			if !strings.Contains(a.Annotations[AnnotationSummary], c.summaryHas) {
				t.Errorf("summary %q does not contain %q", a.Annotations[AnnotationSummary], c.summaryHas)
			}
			if c.wantURL != "" && a.GeneratorURL != c.wantURL {
				t.Errorf("generatorURL: got %q, want %q", a.GeneratorURL, c.wantURL)
			}
			for k, v := range a.Labels {
				if v == "" {
					t.Errorf("label %s is empty; Alertmanager drops empty labels", k)
				}
			}
		})
	}
}

func TestTier(t *testing.T) {
	set := loadSpecs(t, labelSpecs)
	for _, c := range []struct {
		t    engine.Transition
		want string
	}{
		{engine.Transition{Key: "shop-availability", SLO: "shop-availability", Severity: "page"}, "page"},
		{engine.Transition{Key: "shop-availability", SLO: "shop-availability", Severity: "ticket"}, "ticket"},
		{engine.Transition{Key: "shop-availability", SLO: "shop-availability", Severity: "no_data", Alert: "QSPTelemetryMissing"}, "page"},
		{engine.Transition{Key: `shop-tenants{tenant="a"}`, SLO: "shop-tenants", Severity: "no_data", Alert: "QSPTelemetryMissing"}, "ticket"},
		{engine.Transition{Key: "", Severity: "no_data", Alert: "QSPSourceDown"}, "page"},
		{engine.Transition{Key: "unknown", SLO: "unknown", Severity: "no_data", Alert: "QSPTelemetryMissing"}, "ticket"},
	} {
		if got := Tier(c.t, set); got != c.want {
			t.Errorf("Tier(%s %s): got %s, want %s", c.t.Key, c.t.Severity, got, c.want)
		}
	}
}

// fnvFingerprint is Alertmanager's fingerprint written from its
// definition (prometheus/common model.labelSetToFingerprint): FNV-1a 64
// over the label names sorted, each name and value followed by a 0xff
// separator byte.
func fnvFingerprint(ls map[string]string) string {
	h := fnv.New64a()
	for _, k := range slices.Sorted(maps.Keys(ls)) {
		h.Write([]byte(k))
		h.Write([]byte{0xff})
		h.Write([]byte(ls[k]))
		h.Write([]byte{0xff})
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

func TestFingerprint(t *testing.T) {
	a := map[string]string{"alertname": "SLOErrorBudgetBurn", "service": "shop", "slo": "shop-availability", "severity": "page", "window": "1h/5m"}
	want := fnvFingerprint(a)
	// Map iteration order differs between calls; the fingerprint must not.
	for range 50 {
		b := map[string]string{}
		for _, k := range []string{"window", "slo", "severity", "alertname", "service"} {
			b[k] = a[k]
		}
		if got := Fingerprint(b); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	if len(want) != 16 {
		t.Errorf("fingerprint %q: want 16 hex digits as Alertmanager prints it", want)
	}
	for _, change := range []func(m map[string]string){
		func(m map[string]string) { m["severity"] = "ticket" },
		func(m map[string]string) { m["window"] = "6h/30m" },
		func(m map[string]string) { m["tenant"] = "acme" },
		func(m map[string]string) { delete(m, "window") },
		// Separators matter: "ab"+"c" must differ from "a"+"bc".
		func(m map[string]string) { delete(m, "slo"); m["sl"] = "oshop-availability" },
	} {
		m := maps.Clone(a)
		change(m)
		if Fingerprint(m) == want {
			t.Errorf("labels %v share the fingerprint of %v", m, a)
		}
		if Fingerprint(m) != fnvFingerprint(m) {
			t.Errorf("labels %v: got %s, reference %s", m, Fingerprint(m), fnvFingerprint(m))
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{formatPercent(0.875), "87.50%"},
		{formatPercent(-0.0000001), "0.00%"},
		{formatPercent(1 - 0.9001), "9.99%"},
		{formatPercent(-1.5), "-150.00%"},
		{formatNumber(16.666666), "16.67"},
		{formatNumber(1000), "1000"},
		{formatNumber(-0.001), "0"},
		{formatNumber(0.1 + 0.2), "0.3"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	set := loadSpecs(b, labelSpecs)
	tr := engine.Transition{Key: "shop-availability", SLO: "shop-availability", Service: "shop", Severity: "page", Alert: "SLOErrorBudgetBurn",
		From: slo.Pending, To: slo.Firing, Condition: "1h/5m",
		Status: burnStatus("shop-availability", "shop-availability", "shop", spec.Quality, nil, "page", pageFast, 16.666666, 200, 0.875)}
	b.ReportAllocs()
	for b.Loop() {
		a := Build(tr, set, "https://qsp.example", "")
		_ = Fingerprint(a.Labels)
	}
}
