package spec

import (
	"strings"
	"testing"
)

func TestTraceCoverageIndicator(t *testing.T) {
	const head = `apiVersion: qsp/v1
kind: Service
metadata: {name: checkout}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: coverage}
spec:
  service: checkout
  category: quality
  objective: 90
  window: 7d
  indicator:
    traceCoverage:
`
	for _, c := range []struct {
		name, body  string
		good, total string
		err         string
	}{
		{"requests from metrics", `      service: checkout
      requests: sum(rate(http_requests_total{job="checkout"}[{{.window}}]))
`, `sum(rate(qsp_traces_sampled_spans_total{service_name="checkout", span_kind="SPAN_KIND_SERVER"}[{{.window}}]))`,
			`sum(rate(http_requests_total{job="checkout"}[{{.window}}]))`, ""},
		{"requests from weighted spans", `      service: checkout
      spanKind: SPAN_KIND_CONSUMER
`, `sum(rate(qsp_traces_sampled_spans_total{service_name="checkout", span_kind="SPAN_KIND_CONSUMER"}[{{.window}}]))`,
			`sum(rate(traces_span_metrics_calls_total{service_name="checkout", span_kind="SPAN_KIND_CONSUMER"}[{{.window}}]))`, ""},
		{"no service", "      requests: sum(rate(x[{{.window}}]))\n", "", "", "spec.indicator.traceCoverage.service"},
		{"bad kind", "      service: checkout\n      spanKind: server\n", "", "", "spec.indicator.traceCoverage.spanKind"},
		{"requests without window", "      service: checkout\n      requests: sum(x)\n", "", "", "spec.indicator.traceCoverage.requests"},
	} {
		t.Run(c.name, func(t *testing.T) {
			set, diags := LoadBytes("slo.yaml", []byte(head+c.body))
			if c.err != "" {
				if !strings.Contains(diags.Error(), c.err) {
					t.Fatalf("diagnostics %q lack %q", diags.Error(), c.err)
				}
				return
			}
			if diags.HasErrors() {
				t.Fatalf("diagnostics: %v", diags)
			}
			r := set.SLO("coverage").Spec.Indicator.Ratio
			if r == nil || r.Good != c.good || r.Total != c.total {
				t.Fatalf("ratio %+v, want good %s total %s", r, c.good, c.total)
			}
		})
	}
}
