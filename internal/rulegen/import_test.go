package rulegen_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/rulegen"
	"github.com/qsp-dev/qsp/internal/spec"
)

// TestImportedCorpusRules generates Prometheus rules from every SLO
// imported from the anchors' example files (Sloth, OpenSLO, Pyrra) and
// checks them with Prometheus' rule parser and with promtool.
func TestImportedCorpusRules(t *testing.T) {
	var all []string
	for _, tc := range []struct {
		dir    string
		format spec.Format
	}{{"sloth", spec.FormatSloth}, {"openslo", spec.FormatOpenSLO}, {"pyrra", spec.FormatPyrra}} {
		files, _ := filepath.Glob("../spec/testdata/anchors/" + tc.dir + "/*.yaml")
		if len(files) == 0 {
			t.Fatalf("no anchors corpus for %s", tc.dir)
		}
		for _, f := range files {
			out, _, err := spec.Import(tc.format, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(out) == 0 {
				continue
			}
			set, diags := spec.LoadBytes(f, out)
			if diags.HasErrors() {
				t.Errorf("%s: imported output invalid: %s", f, diags.Error())
				continue
			}
			if len(set.SLOs) == 0 {
				continue
			}
			body := generate(t, set)
			if errs := rulegen.Validate(body); len(errs) > 0 {
				t.Errorf("%s: rules invalid: %v", f, errs)
			}
			path := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(f), ".yaml")+"-"+tc.dir+".rules.yml")
			if err := os.WriteFile(path, body, 0o644); err != nil {
				t.Fatal(err)
			}
			all = append(all, path)
		}
	}
	if len(all) < 30 {
		t.Errorf("only %d rule files from the corpus", len(all))
	}
	promtool := externaltest.LookPath(t, "promtool")
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, all...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("promtool: %d rule files checked", len(all))
}

// TestExamplesRules generates the rules of every example SLO in
// examples/ and checks them with promtool: each SLO is written, none
// skipped.
func TestExamplesRules(t *testing.T) {
	set, diags := spec.Load("../../examples")
	if diags.HasErrors() {
		t.Fatalf("examples: %s", diags.Error())
	}
	if len(set.SLOs) != 19 {
		t.Errorf("examples have %d SLOs, this test expects 19", len(set.SLOs))
	}
	res, err := rulegen.Generate(set, rulegen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Skipped {
		t.Errorf("skipped SLO %s: %s", s.SLO, s.Reason)
	}
	alerting := map[string]int{}
	for _, g := range res.Groups.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerting[r.Labels["slo"]]++
			}
		}
	}
	for _, s := range set.SLOs {
		if alerting[s.Name()] == 0 {
			t.Errorf("SLO %s has no alerting rule", s.Name())
		}
	}
	path := filepath.Join(t.TempDir(), "examples.rules.yml")
	if err := os.WriteFile(path, generate(t, set), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool := externaltest.LookPath(t, "promtool")
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// TestSlicedRulesPromtool runs Prometheus' rule unit tests (promtool test
// rules) on the rules of a threshold SLO judged per 1m slice: good for an
// hour, then bad. The recorded error ratio over 14m is the share of bad
// slices exactly as QSP counts them (4 of the 14 slices ending at 50m …
// 63m are bad at 63m), and the page alert fires once the 14m/1m pair
// holds.
func TestSlicedRulesPromtool(t *testing.T) {
	promtool := externaltest.LookPath(t, "promtool")
	set, diags := spec.LoadBytes("saturation.yaml", []byte(`apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: payments}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: saturation}
spec:
  service: shop
  category: performance
  objective: 99
  window: 7d
  budgeting: timeslices
  indicator:
    threshold: {query: 'max(cpu_usage{job="shop"})', op: "<", value: 70%}
`))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), generate(t, set), 0o644); err != nil {
		t.Fatal(err)
	}
	ratio := func(at string, v string) string {
		return fmt.Sprintf(`      - expr: slo:sli_error:ratio_rate14m{slo="saturation"}
        eval_time: %s
        exp_samples: [{labels: 'slo:sli_error:ratio_rate14m{service="shop", slo="saturation"}', value: %s}]
`, at, v)
	}
	paging := func(at string, n int) string {
		return fmt.Sprintf(`      - expr: count(ALERTS{slo="saturation", severity="page", window="14m/1m", alertstate="firing"}) or vector(0)
        eval_time: %s
        exp_samples: [{labels: '{}', value: %d}]
`, at, n)
	}
	test := `rule_files: [rules.yml]
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'cpu_usage{job="shop"}'
        values: '0.5x239 0.9x120'
    promql_expr_test:
` + ratio("55m", "0") + ratio("63m", "0.2857142857142857") + ratio("80m", "1") + paging("55m", 0) + paging("80m", 1)
	if err := os.WriteFile(filepath.Join(dir, "rules_test.yml"), []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", filepath.Join(dir, "rules_test.yml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}

// BenchmarkGenerateExamples generates and writes the rules of the 19
// example SLOs, as qsp generate prometheus-rules does.
func BenchmarkGenerateExamples(b *testing.B) {
	set, diags := spec.Load("../../examples")
	if diags.HasErrors() {
		b.Fatal(diags.Error())
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := rulegen.Generate(set, rulegen.Options{})
		if err != nil {
			b.Fatal(err)
		}
		var out strings.Builder
		if err := res.Write(&out, rulegen.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
