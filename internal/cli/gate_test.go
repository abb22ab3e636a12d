package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/gate"
)

const gateCLISpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: checkout}
spec: {owner: payments}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: checkout-availability}
spec:
  service: checkout
  category: quality
  objective: 99
  window: 7d
  indicator:
    ratio:
      bad: sum(rate(http_errors_total{service="checkout"}[{{.window}}]))
      total: sum(rate(http_requests_total{service="checkout"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: sec}
spec:
  service: checkout
  security:
    reports: [grype.json]
    maxFindings: {critical: 0}
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary}
spec:
  service: checkout
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    metrics:
      - name: latency
        query: cli_latency_seconds{ {{.selector}} }
        critical: true
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: timed}
spec:
  service: checkout
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    interval: 2s
    runs: 1
    step: 100ms
    metrics:
      - name: latency
        query: cli_latency_seconds{ {{.selector}} }
`

// cliGrype is a Grype report (its documented JSON) with one critical
// finding.
const cliGrype = `{"matches": [{
  "vulnerability": {"id": "CVE-2024-24790", "namespace": "nvd:cpe", "severity": "Critical", "fix": {"versions": ["1.22.4"], "state": "fixed"}},
  "relatedVulnerabilities": [],
  "artifact": {"name": "stdlib", "version": "go1.21.5", "type": "go-module", "locations": [{"path": "/app"}]}
}], "source": {"type": "image", "target": {"userInput": "shop/checkout:1"}}, "descriptor": {"name": "grype", "version": "0.77.0"}}`

// gateServer runs qsp serve in-process on a free loopback port, with the
// specs written to dir, and returns its URL.
func gateServer(t *testing.T, dir string) (string, *app.App) {
	t.Helper()
	specs := filepath.Join(dir, "specs.yaml")
	if err := os.WriteFile(specs, []byte(gateCLISpecs), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &app.Config{Listen: ln.Addr().String(), Auth: app.AuthConfig{InsecureAnonymousAdmin: true}, DataDir: filepath.Join(dir, "data"), Specs: []string{specs}}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, app.Options{Config: cfg, Listener: ln})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("app: %v", err)
		}
	})
	url := "http://" + ln.Addr().String()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready: %v", err)
		}
	}
	return url, a
}

func runGateCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func latencySamples(factor float64) string { return latencySamplesN(1000, factor) }

// latencySamplesN is latencySamples with n samples per side; the critical
// latency of the canary gate needs 868 for its tail-share check's power.
func latencySamplesN(n int, factor float64) string {
	var b, c []string
	for i := range n {
		v := 0.1 + 0.02*float64(i)/float64(n)
		b = append(b, fmt.Sprint(v))
		c = append(c, fmt.Sprint(v*factor))
	}
	return fmt.Sprintf(`{"metrics": {"latency": {"baseline": [%s], "canary": [%s]}}}`, strings.Join(b, ","), strings.Join(c, ","))
}

// TestGateCommand runs qsp gate in-process against a running server: exit
// 0 on a pass, 1 on a fail, 2 when the gate could not be evaluated, with
// the verdict and every reason on stdout and JSON and JUnit reports.
func TestGateCommand(t *testing.T) {
	dir := t.TempDir()
	url, a := gateServer(t, dir)
	// The gate's spec.security.reports are relative to CI's working
	// directory: qsp gate uploads them from there.
	work := t.TempDir()
	t.Chdir(work)
	writeFile(t, work, "grype.json", cliGrype)
	equal := writeFile(t, work, "equal.json", latencySamples(1))
	slower := writeFile(t, work, "slower.json", latencySamples(1.5))
	few := writeFile(t, work, "few.json", latencySamplesN(20, 1))
	onlyOther := writeFile(t, work, "other.json", `{"metrics": {"other": {"baseline": [1], "canary": [1]}}}`)
	bad := writeFile(t, work, "bad.json", `{"SchemaVersion": 2, "Results": [`)
	jsonOut, junitOut := filepath.Join(work, "out.json"), filepath.Join(work, "out.xml")

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
		state  gate.State // of the JSON report; "" when none is written
	}{
		{"pass", []string{"gate", "canary", "--url", url, "--samples", equal, "--kind", "fix", "--version", "1.0.1"}, 0,
			[]string{"gate canary: PASS", "service checkout, change fix 1.0.1", "info", "canary latency:"}, nil, gate.StatePass},
		{"canary fails", []string{"gate", "canary", "--url", url, "--samples", slower}, 1,
			[]string{"gate canary: FAIL", "fail", "canary latency:"}, nil, gate.StateFail},
		{"policy denies", []string{"gate", "sec", "--url", url, "--version", "2.0", "--label", "team=payments"}, 1,
			[]string{"gate sec: FAIL", "deny", "vulnerabilities: 1 critical finding, at most 0 allowed: CVE-2024-24790 (stdlib)", "policy decision"}, nil, gate.StateFail},
		{"malformed report", []string{"gate", "sec", "--url", url, "--report", bad}, 2,
			[]string{"gate sec: ERROR", "error", "report " + bad + ": malformed vulnerability report"}, []string{"qsp: gate sec: error (evaluation "}, gate.StateError},
		{"inconclusive", []string{"gate", "canary", "--url", url, "--samples", onlyOther}, 2,
			[]string{"gate canary: INCONCLUSIVE", "inconclusive"}, []string{"qsp: gate canary: inconclusive"}, gate.StateInconclusive},
		{"too few samples for a critical metric", []string{"gate", "canary", "--url", url, "--samples", few}, 2,
			[]string{"gate canary: INCONCLUSIVE", "samples per side: the tail-share check reaches 80% power"}, []string{"qsp: gate canary: inconclusive"},
			gate.StateInconclusive},
		{"plan without traffic", []string{"gate", "canary", "--url", url, "--plan"}, 2, nil, []string{"--plan needs --traffic"}, ""},
		{"plan of a gate without canary", []string{"gate", "sec", "--url", url, "--plan", "--traffic", "60"}, 2, nil,
			[]string{"422 Unprocessable Entity", "no canary check"}, ""},
		{"unknown gate", []string{"gate", "nope", "--url", url}, 2, nil, []string{`404 Not Found: gate "nope" not found`}, ""},
		{"server down", []string{"gate", "sec", "--url", "http://127.0.0.1:1"}, 2, nil, []string{"qsp: GET /api/v1/gates/sec:", "connection refused"}, ""},
		{"bad kind", []string{"gate", "sec", "--url", url, "--kind", "hotfix"}, 2, nil, []string{`--kind "hotfix": want one of feature, fix`}, ""},
		{"bad label", []string{"gate", "sec", "--url", url, "--label", "nolabel"}, 2, nil, []string{`--label "nolabel": want key=value`}, ""},
		{"missing report", []string{"gate", "sec", "--url", url, "--report", "nope.json"}, 2, nil, []string{"--report: open nope.json"}, ""},
		{"no name", []string{"gate", "--url", url}, 2, nil, []string{"accepts 1 arg"}, ""},
		{"specs without source", []string{"gate", "sec", "--specs", filepath.Join(dir, "specs.yaml")}, 2, nil, []string{"needs --source-url"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(jsonOut)
			os.Remove(junitOut)
			args := append(tc.args, "--json", jsonOut, "--junit", junitOut)
			code, stdout, stderr := runGateCLI(args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			for _, s := range tc.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout has no %q:\n%s", s, stdout)
				}
			}
			for _, s := range tc.stderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr has no %q:\n%s", s, stderr)
				}
			}
			checkGateReports(t, jsonOut, junitOut, tc.state)
		})
	}

	// --plan evaluates nothing: it prints and writes the power plan.
	planOut := filepath.Join(work, "plan.json")
	code, stdout, stderr := runGateCLI("gate", "canary", "--url", url, "--plan", "--traffic", "600", "--json", planOut)
	for _, s := range []string{"gate canary: canary plan at 600 requests and 4 samples per minute per side", "latency (critical)",
		"tail-share", "run the analysis for at least", "NOT enough"} {
		if code != 0 || !strings.Contains(stdout, s) {
			t.Errorf("plan: exit %d, stdout has no %q:\n%s\nstderr:\n%s", code, s, stdout, stderr)
		}
	}
	var cp gate.CanaryPlan
	if data, err := os.ReadFile(planOut); err != nil || json.Unmarshal(data, &cp) != nil || cp.Gate != "canary" || len(cp.Plan.Metrics) != 1 {
		t.Errorf("plan JSON: %v %+v", err, cp)
	}

	// A timed canary runs on the server: qsp gate polls it and prints
	// its progress. Its data: the same latency on both tracks, written
	// ahead for the window the evaluation will wait for.
	now := time.Now()
	app := a.Embedded().DB().Appender(context.Background())
	for _, track := range []string{"baseline", "canary"} {
		ls := labels.FromStrings("__name__", "cli_latency_seconds", "track", track)
		for i := -20; i < 300; i++ {
			ts := now.Add(time.Duration(i) * 100 * time.Millisecond)
			if _, err := app.Append(0, ls, ts.UnixMilli(), 0.1+0.001*float64(i%7)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr = runGateCLI("gate", "timed", "--url", url, "--poll", "100ms", "--json", jsonOut)
	if code != 0 || !strings.Contains(stdout, "gate timed: PASS") || !strings.Contains(stderr, "canary run 0 of 1 done, next run at") {
		t.Fatalf("timed: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checkGateReports(t, jsonOut, "", gate.StatePass)

	// A timeout while the server still runs the evaluation is exit 2.
	code, _, stderr = runGateCLI("gate", "timed", "--url", url, "--poll", "50ms", "--timeout", "300ms")
	if code != 2 || !strings.Contains(stderr, "no verdict after 300ms") {
		t.Errorf("timeout: exit %d: %s", code, stderr)
	}

	// Deploy markers: the events API's and those of evaluations told the
	// change is deployed (--deploy); the runs above were checks, not
	// deploys (issue 22).
	if code, stdout, stderr := runGateCLI("gate", "timed", "--url", url, "--poll", "100ms", "--deploy", "--version", "9.9.8"); code != 0 {
		t.Fatalf("--deploy: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	body := `{"events": [{"type": "deploy", "service": "checkout", "version": "9.9.9", "description": "from CD"}]}`
	resp, err := http.Post(url+"/api/v1/events", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("events: %s", resp.Status)
	}
	resp, err = http.Get(url + "/api/v1/deploys?service=checkout&limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	var deploys struct {
		Items []struct {
			Version, Source, Verdict, Gate string
		} `json:"items"`
	}
	err = json.NewDecoder(resp.Body).Decode(&deploys)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string]int{}
	for _, d := range deploys.Items {
		sources[d.Source]++
	}
	if sources["events"] != 1 || sources["gate"] != 1 || deploys.Items[0].Version != "9.9.9" || deploys.Items[1].Version != "9.9.8" {
		t.Errorf("deploys %+v", deploys.Items)
	}
}

// checkGateReports reads back the JSON and JUnit reports of one run.
func checkGateReports(t *testing.T, jsonPath, junitPath string, state gate.State) {
	t.Helper()
	data, err := os.ReadFile(jsonPath)
	if state == "" {
		if err == nil {
			t.Errorf("a JSON report was written without an evaluation: %s", data)
		}
		return
	}
	if err != nil {
		t.Fatalf("no JSON report: %v", err)
	}
	var ev gate.Evaluation
	if err := json.Unmarshal(data, &ev); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if ev.State != state || ev.ID == "" || len(ev.Reasons) == 0 {
		t.Errorf("JSON report state %s (want %s): %.300s", ev.State, state, data)
	}
	if junitPath == "" {
		return
	}
	x, err := os.ReadFile(junitPath)
	if err != nil {
		t.Fatalf("no JUnit report: %v", err)
	}
	var doc struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Failures int    `xml:"failures,attr"`
			Errors   int    `xml:"errors,attr"`
			Cases    []struct {
				Name string `xml:"name,attr"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(x, &doc); err != nil {
		t.Fatalf("JUnit report: %v\n%s", err, x)
	}
	if len(doc.Suites) != 1 || doc.Suites[0].Name != "gate/"+ev.Gate || len(doc.Suites[0].Cases) == 0 {
		t.Fatalf("JUnit %s", x)
	}
	s := doc.Suites[0]
	switch state {
	case gate.StatePass:
		if s.Failures+s.Errors != 0 {
			t.Errorf("passing gate with failures: %s", x)
		}
	case gate.StateFail:
		if s.Failures == 0 {
			t.Errorf("failing gate without failures: %s", x)
		}
	default:
		if s.Errors == 0 {
			t.Errorf("%s gate without errors: %s", state, x)
		}
	}
}

// TestGateCommandLocal runs qsp gate in-process (--specs, --source-url)
// against the Prometheus-compatible query API of a running server, and
// refuses policies that do not load, naming them.
func TestGateCommandLocal(t *testing.T) {
	dir := t.TempDir()
	url, _ := gateServer(t, dir)
	work := t.TempDir()
	t.Chdir(work)
	writeFile(t, work, "grype.json", cliGrype)
	specs := filepath.Join(dir, "specs.yaml")
	source := url + "/prometheus"

	code, stdout, stderr := runGateCLI("gate", "sec", "--specs", specs, "--source-url", source, "--data-dir", filepath.Join(work, "local"))
	if code != 1 || !strings.Contains(stdout, "gate sec: FAIL") || !strings.Contains(stdout, "1 critical finding, at most 0 allowed") {
		t.Fatalf("local: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "local", "qsp.db")); err != nil {
		t.Errorf("no database in --data-dir: %v", err)
	}
	code, stdout, _ = runGateCLI("gate", "canary", "--specs", specs, "--source-url", source, "--samples", writeFile(t, work, "s.json", latencySamples(1)))
	if code != 0 || !strings.Contains(stdout, "gate canary: PASS") {
		t.Errorf("local canary: exit %d\n%s", code, stdout)
	}

	for _, tc := range []struct {
		name, policy string
		msgs         []string
	}{
		{"syntax error", "    deny contains msg if {\n      input.change.kind ==\n    }\n", []string{"specs are invalid", "Policy/broken"}},
		{"type error", "    deny contains msg if {\n      input.chnage.kind == \"feature\"\n      msg := \"no\"\n    }\n", []string{`policies: policy "broken"`, "rego_type_error"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := gateCLISpecs + "---\napiVersion: qsp/v1\nkind: Policy\nmetadata: {name: broken}\nspec:\n  rego: |\n    package team.broken\n" + tc.policy
			p := writeFile(t, work, "bad-specs.yaml", bad)
			code, _, stderr := runGateCLI("gate", "sec", "--specs", p, "--source-url", source)
			if code != 2 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(stderr, m) {
					t.Errorf("stderr has no %q:\n%s", m, stderr)
				}
			}
		})
	}
}

// TestGateReload: a reload whose policies do not compile is refused and
// the server keeps deciding on the policies it had; a good reload applies.
func TestGateReload(t *testing.T) {
	dir := t.TempDir()
	url, _ := gateServer(t, dir)
	work := t.TempDir()
	t.Chdir(work)
	writeFile(t, work, "grype.json", cliGrype)
	reload := func(want int) string {
		t.Helper()
		resp, err := http.Post(url+"/-/reload", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("reload: %s %s, want %d", resp.Status, b, want)
		}
		return string(b)
	}
	bad := gateCLISpecs + "---\napiVersion: qsp/v1\nkind: Policy\nmetadata: {name: misspelt}\nspec:\n  rego: |\n    package team.misspelt\n    deny contains msg if {\n      input.chnage.kind == \"feature\"\n      msg := \"no\"\n    }\n"
	writeFile(t, dir, "specs.yaml", bad)
	if body := reload(http.StatusUnprocessableEntity); !strings.Contains(body, `policy "misspelt"`) {
		t.Errorf("refused reload does not name the policy: %s", body)
	}
	// The previous policies still decide.
	if code, stdout, _ := runGateCLI("gate", "sec", "--url", url); code != 1 {
		t.Fatalf("after a refused reload: exit %d\n%s", code, stdout)
	}
	writeFile(t, dir, "specs.yaml", gateCLISpecs)
	reload(http.StatusOK)
	if code, stdout, _ := runGateCLI("gate", "sec", "--url", url); code != 1 {
		t.Fatalf("after a good reload: exit %d\n%s", code, stdout)
	}
}

// TestGatePlanLocal plans from the specs, without a server or a source.
func TestGatePlanLocal(t *testing.T) {
	dir := t.TempDir()
	specs := writeFile(t, dir, "specs.yaml", gateCLISpecs)
	code, stdout, stderr := runGateCLI("gate", "timed", "--specs", specs, "--plan", "--traffic", "6000", "--samples-per-minute", "6000")
	// The timed gate's interval is 2s: far too short at any traffic.
	for _, s := range []string{"gate timed: canary plan at 6000 requests and 6000 samples per minute per side", "shift", "spread",
		"tail-share", "interval is 2s: NOT enough"} {
		if code != 0 || !strings.Contains(stdout, s) {
			t.Errorf("exit %d, stdout has no %q:\n%s\nstderr:\n%s", code, s, stdout, stderr)
		}
	}
	code, _, stderr = runGateCLI("gate", "nope", "--specs", specs, "--plan", "--traffic", "1")
	if code != 2 || !strings.Contains(stderr, `gate "nope": not in the specs`) {
		t.Errorf("unknown gate: exit %d: %s", code, stderr)
	}
	code, _, stderr = runGateCLI("gate", "timed", "--specs", specs, "--plan", "--traffic", "1", "--sigma", "9")
	if code != 2 || !strings.Contains(stderr, "sigma 9 out of range") {
		t.Errorf("bad sigma: exit %d: %s", code, stderr)
	}
}
