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

// TestGrafanaQueriesOnRealPrometheus scrapes a running QSP (the examples,
// with an outage firing alerts) with a real Prometheus and runs every
// query of every generated dashboard against it: each must succeed, and
// the queries of the SLOs and their budgets must return data.
func TestGrafanaQueriesOnRealPrometheus(t *testing.T) {
	promBin := externaltest.LookPath(t, "prometheus")
	env := uitest.Start(t, uitest.Options{})
	env.OpenIncident(t)
	target := strings.TrimPrefix(env.URL, "http://")
	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n- job_name: qsp\n  static_configs: [{targets: [%q]}]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := externaltest.FreeAddr(t)
	p := externaltest.Start(t, promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr)
	base := "http://" + addr
	externaltest.WaitHTTP(t, p, base+"/-/ready", 60*time.Second)
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
	externaltest.Eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
		n, err := queryProm(`qsp_slo_state{state="firing"} == 1`)
		return err == nil && n > 0
	}, "Prometheus never scraped a firing SLO from QSP")
	// Two more scrapes, so rate() windows have two samples.
	time.Sleep(2500 * time.Millisecond)

	for name, raw := range generateGrafana(t) {
		for _, e := range panelExprs(t, raw) {
			q := substitute(e)
			n, err := queryProm(q)
			switch {
			case err != nil:
				t.Errorf("%s: %q: %v", name, q, err)
			case n == 0 && (strings.Contains(e, "qsp_slo_error_budget") || strings.Contains(e, "qsp_slo_objective") || strings.Contains(e, "count(")):
				t.Errorf("%s: %q returned nothing", name, q)
			}
		}
	}
}
