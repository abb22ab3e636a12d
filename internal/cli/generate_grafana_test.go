package cli

//lint:file-ignore SA1019 The classic dashboard JSON (dashboard, not dashboardv2) is what Grafana 9 to 12 import and provision from files; v2 needs Grafana 12's v2 dashboard API.

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/rulegen"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/ui/uitest"
)

var updateGrafana = flag.Bool("update-grafana", false, "rewrite testdata/grafana")

// generateGrafana runs qsp generate grafana over examples/ into a
// temporary folder and returns the files it wrote.
func generateGrafana(t *testing.T) map[string][]byte {
	t.Helper()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := Run([]string{"generate", "grafana", "--specs", filepath.Join(uitest.Root(), "examples"), "-o", dir}, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	files := map[string][]byte{}
	for _, line := range strings.Fields(stdout.String()) {
		b, err := os.ReadFile(line)
		if err != nil {
			t.Fatal(err)
		}
		files[filepath.Base(line)] = b
	}
	return files
}

// panelExprs returns the PromQL of every panel target of a dashboard's
// JSON, rows included.
func panelExprs(t *testing.T, raw []byte) []string {
	t.Helper()
	var d struct {
		Panels []struct {
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	return out
}

// substitute replaces the dashboard variables as Grafana would for "All".
func substitute(expr string) string {
	return strings.NewReplacer("$__rate_interval", "1m", "$category", ".*", "$service", ".*").Replace(expr)
}

func TestGenerateGrafanaGolden(t *testing.T) {
	files := generateGrafana(t)
	want := []string{"qsp-overview.json", "qsp-service-auth.json", "qsp-service-checkout.json", "qsp-service-search.json"}
	var got []string
	for f := range files {
		got = append(got, f)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	for name, raw := range files {
		t.Run(name, func(t *testing.T) {
			// The SDK reads its own output back, strictly.
			var d dashboard.Dashboard
			if err := json.Unmarshal(raw, &d); err != nil {
				t.Fatalf("not a dashboard: %v", err)
			}
			if d.Uid == nil || len(*d.Uid) > 40 || d.Title == nil || !strings.HasPrefix(*d.Title, "QSP · ") {
				t.Errorf("uid %v title %v", d.Uid, d.Title)
			}
			if d.Templating.List == nil || !slices.ContainsFunc(d.Templating.List, func(v dashboard.VariableModel) bool {
				return v.Name == "datasource" && v.Query != nil && v.Query.String != nil && *v.Query.String == "prometheus"
			}) {
				t.Error("no Prometheus data source variable")
			}
			exprs := panelExprs(t, raw)
			if len(exprs) < 4 {
				t.Errorf("only %d queries", len(exprs))
			}
			for _, e := range exprs {
				if _, err := parser.NewParser(parser.Options{}).ParseExpr(substitute(e)); err != nil {
					t.Errorf("query %q does not parse: %v", e, err)
				}
			}
			golden := filepath.Join("testdata", "grafana", name)
			if *updateGrafana {
				uitest.Write(t, golden, raw)
			}
			wantRaw, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/cli -run TestGenerateGrafana -update-grafana)", err)
			}
			if !bytes.Equal(raw, wantRaw) {
				t.Errorf("%s differs from its golden file; review and rerun with -update-grafana", name)
			}
		})
	}
	// Markup in a service's description stays text.
	if s := markdownEscape("a *b* [c](d) <e>"); strings.ContainsAny(strings.NewReplacer(`\*`, "", `\[`, "", `\]`, "").Replace(s), "*[]<>") {
		t.Errorf("markdownEscape: %q", s)
	}
}

func TestGenerateGrafanaBadSpecs(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: qsp/v1\nkind: SLO\nmetadata: {name: x}\nspec: {objective: 200}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"generate", "grafana", "--specs", bad, "-o", dir}, nil, &stdout, &stderr); code != exitFailed {
		t.Errorf("exit %d, want 1: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "bad.yaml:") {
		t.Errorf("no file:line in %q", stderr.String())
	}
}

// TestGrafanaQueriesOnRealPrometheus loads the rules of the examples
// into a real Prometheus and runs every query of every generated
// dashboard against it: each must parse and evaluate there, over the
// recorded series the dashboards read.
func TestGrafanaQueriesOnRealPrometheus(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yml")
	var stdout, stderr bytes.Buffer
	if code := Run([]string{"generate", "prometheus-rules", "--specs", filepath.Join(uitest.Root(), "examples"), "-o", rules}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("generate prometheus-rules: exit %d: %s", code, stderr.String())
	}
	cfg := fmt.Sprintf("global: {evaluation_interval: 1s}\nrule_files: [%q]\n", rules)
	base := externaltest.StartPrometheus(t, cfg).URL
	queryProm := func(q string) (int, error) {
		resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var r struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(b, &r); err != nil {
			return 0, fmt.Errorf("%s: %s", resp.Status, b)
		}
		if r.Status != "success" {
			return 0, fmt.Errorf("%s", r.Error)
		}
		return len(r.Data.Result), nil
	}
	// The rules loaded: their groups evaluate (a count over no data is
	// still an answer).
	externaltest.Eventually(t, 30*time.Second, 200*time.Millisecond, func() bool {
		n, err := queryProm(`count(ALERTS) or vector(0)`)
		return err == nil && n == 1
	}, "Prometheus never answered")
	var queries int
	for name, raw := range generateGrafana(t) {
		for _, e := range panelExprs(t, raw) {
			q := substitute(e)
			queries++
			if _, err := queryProm(q); err != nil {
				t.Errorf("%s: %q: %v", name, q, err)
			}
		}
	}
	if queries < 100 {
		t.Errorf("only %d queries in the dashboards", queries)
	}
}

// TestGrafanaRoundTrip loads each generated service dashboard into the
// foundation SDK's dashboard type and back, and checks that every SLO of
// the service has its SLI panel over the SLI's own series and a burn-rate
// panel over the recorded error ratios, not over QSP's /metrics.
func TestGrafanaRoundTrip(t *testing.T) {
	set, diags := spec.Load(filepath.Join(uitest.Root(), "examples"))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	files := generateGrafana(t)
	var sliPanels int
	for _, svc := range set.Services {
		name := "qsp-service-" + svc.Name() + ".json"
		raw, ok := files[name]
		if !ok {
			t.Fatalf("no %s", name)
		}
		var d dashboard.Dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var d2 dashboard.Dashboard
		if err := json.Unmarshal(again, &d2); err != nil {
			t.Fatalf("%s: the SDK does not read its own output: %v", name, err)
		}
		third, _ := json.Marshal(d2)
		if !bytes.Equal(again, third) {
			t.Errorf("%s: the round trip is not stable", name)
		}
		targets := map[string][]string{} // panel title -> exprs
		for _, p := range d2.Panels {
			if p.Panel == nil || p.Panel.Title == nil {
				continue
			}
			for _, tg := range p.Panel.Targets {
				b, _ := json.Marshal(tg)
				var q struct {
					Expr string `json:"expr"`
				}
				_ = json.Unmarshal(b, &q)
				targets[*p.Panel.Title] = append(targets[*p.Panel.Title], q.Expr)
			}
		}
		for _, s := range set.SLOsOf(svc.Name()) {
			sli := targets[s.Name()+": SLI over 5m"]
			want, reason := rulegen.ErrorRatioExpr(set, s, 5*time.Minute)
			if reason != "" {
				t.Errorf("SLO %s: no SLI PromQL: %s", s.Name(), reason)
				continue
			}
			if len(sli) != 1 || !strings.Contains(sli[0], want) {
				t.Errorf("%s: SLI panel of %s queries %q; want 1 - (%s)", name, s.Name(), sli, want)
			}
			sliPanels++
			burn := targets[s.Name()+": burn rate"]
			if len(burn) == 0 {
				t.Errorf("%s: no burn-rate queries for %s", name, s.Name())
			}
			for _, e := range append(sli, burn...) {
				if strings.Contains(e, "qsp_") {
					t.Errorf("%s: %s reads QSP's own /metrics: %s", name, s.Name(), e)
				}
			}
		}
	}
	if sliPanels != len(set.SLOs) {
		t.Errorf("%d SLI panels for %d SLOs", sliPanels, len(set.SLOs))
	}
}
