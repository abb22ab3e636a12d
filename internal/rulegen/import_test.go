package rulegen_test

import (
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
