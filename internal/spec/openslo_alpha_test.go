package spec

import (
	"os"
	"strings"
	"testing"
)

// TestOpenSLOAlpha converts the v1alpha and v2alpha shapes where they
// differ from v1, and names what cannot be converted at its position.
func TestOpenSLOAlpha(t *testing.T) {
	const v1alphaRatio = `apiVersion: openslo/v1alpha
kind: SLO
metadata: {name: avail}
spec:
  service: shop
  budgetingMethod: Occurrences
  objectives:
    - ratioMetrics:
        incremental: true
        good: {source: prometheus, queryType: promql, query: 'sum(rate(req_total{code!~"5.."}[{{.window}}]))'}
        total: {source: prometheus, queryType: promql, query: 'sum(rate(req_total[{{.window}}]))'}
      target: 0.999
  timeWindows:
    - {count: 28, unit: Day}
`
	for _, tc := range []struct {
		name string
		doc  string
		// want are substrings of the imported YAML; errs of the errors.
		want, errs []string
	}{
		{"v1alpha ratio on the objective, rolling window", v1alphaRatio,
			[]string{"name: avail", "window: 4w", "objective: 99.9", `good: sum(rate(req_total{code!~"5.."}[{{.window}}]))`}, nil},
		{"v1alpha calendar month and threshold indicator", `apiVersion: openslo/v1alpha
kind: SLO
metadata: {name: lat}
spec:
  service: shop
  budgetingMethod: Occurrences
  indicator:
    thresholdMetric: {source: prometheus, queryType: promql, query: 'max(lat_seconds)'}
  objectives:
    - {op: lt, value: 2, target: 0.99}
  timeWindows:
    - {count: 1, unit: Month, calendar: {startTime: "2021-05-01 00:00:00", timeZone: UTC}}
`, []string{"calendar: month", "query: max(lat_seconds)", "op: <"}, nil},
		{"v1alpha objectives with different ratioMetrics are separate SLOs", strings.Replace(v1alphaRatio, "      target: 0.999\n",
			"      target: 0.999\n    - ratioMetrics:\n        good: {source: prometheus, query: 'sum(rate(ok_total[{{.window}}]))'}\n        total: {source: prometheus, query: 'sum(rate(all_total[{{.window}}]))'}\n      target: 0.99\n", 1),
			[]string{"name: avail-1", "name: avail-2", "ok_total"}, nil},
		{"v1alpha unknown unit", strings.Replace(v1alphaRatio, "unit: Day", "unit: Fortnight", 1), nil,
			[]string{`:14:25: SLO/avail: spec.timeWindows[0].unit: unit "Fortnight" cannot be converted`}},
		{"v1alpha query type that is not PromQL", strings.Replace(v1alphaRatio, "queryType: promql, query: 'sum(rate(req_total{", "queryType: sql, query: 'sum(rate(req_total{", 1), nil,
			[]string{`:10:47: SLO/avail: spec.objectives[0].ratioMetrics.good.queryType: query type "sql" cannot be converted`}},
		{"v2alpha sli with a dataSourceRef", `apiVersion: openslo.com/v2alpha
kind: DataSource
metadata: {name: prom}
spec: {type: prometheus, connectionDetails: {url: "http://prometheus:9090"}}
---
apiVersion: openslo.com/v2alpha
kind: SLO
metadata: {name: web}
spec:
  service: web
  sli:
    metadata: {name: web-ratio}
    spec:
      ratioMetric:
        counter: true
        good: {dataSourceRef: prom, spec: {query: 'sum(http_requests{code="200"})'}}
        total: {dataSourceRef: prom, spec: {query: 'sum(http_requests)'}}
  timeWindow: [{duration: 7d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{target: 0.995}]
`, []string{"name: web", "window: 1w", `rate(http_requests{code="200"}`}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, diags := importBytes(t, tc.doc)
			var errs []string
			for _, d := range diags {
				if !d.Warning {
					errs = append(errs, d.String())
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %q, want %d like %q", errs, len(tc.errs), tc.errs)
			}
			for i, e := range tc.errs {
				if !strings.Contains(errs[i], e) {
					t.Errorf("error %q, want it to contain %q", errs[i], e)
				}
			}
		})
	}
}

// importBytes imports one OpenSLO document from a temporary file.
func importBytes(t *testing.T, doc string) ([]byte, Diagnostics) {
	t.Helper()
	path := t.TempDir() + "/slo.yaml"
	if err := writeTestFile(path, doc); err != nil {
		t.Fatal(err)
	}
	out, diags, err := Import(FormatOpenSLO, path)
	if err != nil {
		t.Fatal(err)
	}
	return out, diags
}

func writeTestFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
