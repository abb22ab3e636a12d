package rulegen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/cli"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/rulegen"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// specs covers every indicator rulegen writes rules for, with spec
// labels, a tier label override, grouping and minEvents, and the kinds it
// skips.
const specs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: payments, runbookURL: "https://runbooks.example/shop", labels: {team: payments}}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: fast-outage}
spec:
  service: shop
  category: quality
  objective: 99.9
  window: 30d
  alerting:
    labels: {tier: "1"}
    page: {labels: {severity: critical}}
  indicator:
    ratio:
      bad: sum(rate(req_total{slo="fast",code="500"}[{{.window}}]))
      total: sum(rate(req_total{slo="fast"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: slow-burn}
spec:
  service: shop
  category: quality
  objective: 99.9
  window: 30d
  indicator:
    ratio:
      good: sum(rate(req_total{slo="slow",code="200"}[{{.window}}]))
      total: sum(rate(req_total{slo="slow"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: healthy}
spec:
  service: shop
  category: security
  objective: 99.9
  window: 30d
  indicator:
    ratio:
      bad: sum(rate(req_total{slo="healthy",code="500"}[{{.window}}]))
      total: sum(rate(req_total{slo="healthy"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: tenants}
spec:
  service: shop
  category: quality
  objective: 99.9
  window: 30d
  groupBy: [tenant]
  alerting:
    minEvents: 10
  indicator:
    ratio:
      bad: sum by (tenant) (rate(req_total{slo="tenants",code="500"}[{{.window}}]))
      total: sum by (tenant) (rate(req_total{slo="tenants"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: latency}
spec:
  service: shop
  category: performance
  objective: 99.9
  window: 30d
  alerting:
    tierLabel: priority
  indicator:
    latency: {histogram: 'lat_seconds{slo="latency"}', threshold: 300ms}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: probes}
spec:
  service: shop
  category: quality
  objective: 99
  window: 7d
  indicator:
    availability: {query: 'probe_success{job="shop"}'}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: p99}
spec:
  service: shop
  category: performance
  objective: 99
  window: 7d
  budgeting: {method: timeslices, sliceLength: 5m}
  indicator:
    latency: {histogram: 'lat_seconds{slo="latency"}', threshold: 300ms, percentile: 99}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: combined}
spec:
  service: shop
  category: quality
  objective: 99
  window: 30d
  indicator:
    composite:
      objectives: [{slo: fast-outage, weight: 0.5}, {slo: healthy, weight: 0.5}]
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
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: per-tenant-journey}
spec:
  service: shop
  category: quality
  objective: 99
  window: 30d
  indicator:
    composite:
      objectives: [{slo: tenants, weight: 1}]
`

func loadSpecs(t testing.TB, y string) *spec.Set {
	t.Helper()
	set, diags := spec.LoadBytes("specs.yaml", []byte(y))
	if diags.HasErrors() {
		t.Fatalf("spec: %s", diags.Error())
	}
	return set
}

func generate(t testing.TB, set *spec.Set) []byte {
	t.Helper()
	res, err := rulegen.Generate(set, rulegen.Options{ExternalURL: "http://qsp.example"})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := res.Write(&b, rulegen.Options{Source: "specs.yaml"}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestGenerate(t *testing.T) {
	set := loadSpecs(t, specs)
	res, err := rulegen.Generate(set, rulegen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	skipped := map[string]string{}
	for _, s := range res.Skipped {
		skipped[s.SLO] = s.Reason
	}
	// Every kind is written; a composite over grouped children is the one
	// SLO here that cannot be.
	if want := "child SLO tenants is grouped by tenant"; len(skipped) != 1 || !strings.Contains(skipped["per-tenant-journey"], want) {
		t.Errorf("skipped %v, want per-tenant-journey only, for %q", skipped, want)
	}
	groups := map[string]rulefmt.RuleGroup{}
	for _, g := range res.Groups.Groups {
		groups[g.Name] = g
	}
	for _, tc := range []struct {
		group    string
		interval time.Duration // 0: the global evaluation interval
		expr     string        // in the group's first rule
	}{
		{"qsp-slo-p99-steps", 5 * time.Minute, `histogram_quantile(0.99, sum by (le) (rate(lat_seconds_bucket{slo="latency"}[5m])))`},
		{"qsp-slo-p99", 0, `min_over_time(slo:sli_value_good{slo="p99"}[4m59s999ms])[59s999ms:5m]`},
		{"qsp-slo-saturation-steps", 15 * time.Second, `((max(cpu_usage{job="shop"})) >= -Inf) < bool 0.7`},
		{"qsp-slo-saturation", 0, `min_over_time(slo:sli_value_good{slo="saturation"}[59s999ms])[59s999ms:1m]`},
		{"qsp-slo-probes", 0, `sum (sum_over_time(probe_success{job="shop"}[1m]))`},
		{"qsp-slo-combined", 0, `0.5 * sum(`},
	} {
		g, ok := groups[tc.group]
		if !ok {
			t.Errorf("no group %s", tc.group)
			continue
		}
		if time.Duration(g.Interval) != tc.interval || !strings.Contains(g.Rules[0].Expr, tc.expr) {
			t.Errorf("group %s: interval %v, first rule %s; want interval %v and %s", tc.group, time.Duration(g.Interval), g.Rules[0].Expr, tc.interval, tc.expr)
		}
	}
	// fast-outage: one record per window of its alert pairs (5m, 30m, 1h,
	// 2h, 6h, 1d, 3d), page and ticket alerts, and the 30d budget record
	// in a slower group.
	var records []string
	var alerts int
	for _, g := range res.Groups.Groups {
		if !strings.HasPrefix(g.Name, "qsp-slo-fast-outage") {
			continue
		}
		for _, r := range g.Rules {
			if r.Record != "" {
				records = append(records, r.Record)
			} else {
				alerts++
				if r.Labels["severity"] != "critical" && r.Labels["severity"] != "ticket" {
					t.Errorf("alert labels %v", r.Labels)
				}
			}
		}
	}
	want := []string{"5m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"}
	for i := range want {
		want[i] = rulegen.ErrorRatioRecord + want[i]
	}
	if !slices.Equal(records, want) || alerts != 2 {
		t.Errorf("fast-outage: records %v and %d alerts; want %v and 2", records, alerts, want)
	}

	out := generate(t, set)
	if errs := rulegen.Validate(out); len(errs) > 0 {
		t.Fatalf("invalid: %v", errs)
	}
	golden := filepath.Join("testdata", "rules.golden.yml")
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantOut, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(out, wantOut) {
		t.Errorf("output differs from %s (run go test -update after checking the change)", golden)
	}
	if errs := rulegen.Validate([]byte("groups:\n- name: x\n  rules:\n  - record: a:b\n    expr: sum(\n")); len(errs) == 0 {
		t.Error("Validate accepts a broken expression")
	}
}

// TestPromtoolCheckRules runs Prometheus' own checker (2.42) on the file.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := externaltest.LookPath(t, "promtool")
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, generate(t, loadSpecs(t, specs)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	// 5 SLOs: fast-outage, slow-burn, healthy and latency have 7 windows,
	// tenants too; each 7 records + 2 alerts + 1 budget record (50); the
	// 30d composite as many (10); probes, p99 and saturation (7d) 7 records
	// + 2 alerts + 1 budget record, the last two + 1 step record (32).
	if !strings.Contains(string(out), "SUCCESS: 92 rules found") {
		t.Errorf("promtool: %s", out)
	}
}

func TestCommand(t *testing.T) {
	promtool := externaltest.LookPath(t, "promtool")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "slos.yaml"), []byte(specs), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "rules.yml")
	var stdout, stderr bytes.Buffer
	if code := cli.Run([]string{"generate", "prometheus-rules", "--specs", dir, "-o", out}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "skipped SLO per-tenant-journey: composite indicator") {
		t.Errorf("stderr does not list skipped SLOs: %s", stderr.String())
	}
	if b, err := exec.Command(promtool, "check", "rules", out).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, b)
	}
	stdout.Reset()
	if code := cli.Run([]string{"generate", "prometheus-rules", "--specs", dir}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "groups:") {
		t.Errorf("to stdout: exit %d, %q", code, stdout.String()[:min(100, stdout.Len())])
	}
	// Without --specs the configured specs are read, relative to the
	// configuration file; without either, nothing is guessed.
	cfg := filepath.Join(t.TempDir(), "qsp.yaml")
	must(t, os.WriteFile(cfg, []byte("specs: ["+filepath.Join(dir, "slos.yaml")+"]\n"), 0o644))
	stdout.Reset()
	if code := cli.Run([]string{"generate", "prometheus-rules", "--config", cfg}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "qsp-slo-fast-outage") {
		t.Errorf("--config: exit %d, %q", code, stdout.String()[:min(100, stdout.Len())])
	}
	stderr.Reset()
	if code := cli.Run([]string{"generate", "prometheus-rules"}, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "no specs: pass --config FILE") {
		t.Errorf("no specs: exit %d, %s; want 2 naming --config and --specs", code, stderr.String())
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("apiVersion: qsp/v1\nkind: SLO\nmetadata: {name: x}\nspec: {objective: 120}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := cli.Run([]string{"generate", "prometheus-rules", "--specs", dir}, nil, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "bad.yaml:") {
		t.Errorf("invalid specs: exit %d, %s; want 1 with file:line", code, stderr.String())
	}
}

// point is one sample of a series.
type point struct {
	t time.Time
	v float64
}

type series struct {
	labels labels.Labels
	points []point
}

// scenario writes the same telemetry for Prometheus and QSP: four days
// (every minute, then every 15s for the last six hours) at 10 requests a
// second per series, with
//   - fast-outage: every request fails for the last 10 minutes;
//   - slow-burn: 0.2% fail for the last 40 hours (burn rate 2);
//   - healthy: nothing fails;
//   - tenants: tenant a fails completely for the last 10 minutes, b not;
//   - latency: every request takes 0.5s (over the 300ms threshold) for
//     the last 10 minutes, 50ms before;
//   - probes: the probe fails for the last 10 minutes;
//   - combined: follows fast-outage.
func scenario(end time.Time) []series {
	start := end.Add(-4 * 24 * time.Hour)
	var times []time.Time
	for ts := start; !ts.After(end); {
		times = append(times, ts)
		if end.Sub(ts) > 6*time.Hour {
			ts = ts.Add(time.Minute)
		} else {
			ts = ts.Add(15 * time.Second)
		}
	}
	counter := func(ls labels.Labels, inc func(ts time.Time, dt time.Duration) float64) series {
		s := series{labels: ls}
		v := 0.0
		for i, ts := range times {
			if i > 0 {
				v += inc(ts, ts.Sub(times[i-1]))
			}
			s.points = append(s.points, point{ts, v})
		}
		return s
	}
	// share of (ts-dt, ts] after from
	after := func(from time.Time) func(ts time.Time, dt time.Duration) float64 {
		return func(ts time.Time, dt time.Duration) float64 {
			lo := ts.Add(-dt)
			if lo.Before(from) {
				lo = from
			}
			if !ts.After(lo) {
				return 0
			}
			return float64(ts.Sub(lo)) / float64(dt)
		}
	}
	req := func(kv ...string) labels.Labels {
		return labels.FromStrings(append([]string{"__name__", "req_total"}, kv...)...)
	}
	ratio := func(slo string, failing func(ts time.Time, dt time.Duration) float64, extra ...string) []series {
		return []series{
			counter(req(append([]string{"slo", slo, "code", "200"}, extra...)...), func(ts time.Time, dt time.Duration) float64 { return 10 * dt.Seconds() * (1 - failing(ts, dt)) }),
			counter(req(append([]string{"slo", slo, "code", "500"}, extra...)...), func(ts time.Time, dt time.Duration) float64 { return 10 * dt.Seconds() * failing(ts, dt) }),
		}
	}
	never := func(time.Time, time.Duration) float64 { return 0 }
	outage := after(end.Add(-10 * time.Minute))
	slowFrom := after(end.Add(-40 * time.Hour))
	var out []series
	out = append(out, ratio("fast", outage)...)
	out = append(out, ratio("slow", func(ts time.Time, dt time.Duration) float64 { return 0.002 * slowFrom(ts, dt) })...)
	out = append(out, ratio("healthy", never)...)
	out = append(out, ratio("tenants", outage, "tenant", "a")...)
	out = append(out, ratio("tenants", never, "tenant", "b")...)
	for _, le := range []string{"0.1", "0.3", "1", "+Inf"} {
		fast := le != "1" && le != "+Inf" // buckets the slow requests miss
		out = append(out, counter(labels.FromStrings("__name__", "lat_seconds_bucket", "slo", "latency", "le", le), func(ts time.Time, dt time.Duration) float64 {
			if fast {
				return 10 * dt.Seconds() * (1 - outage(ts, dt))
			}
			return 10 * dt.Seconds()
		}))
	}
	out = append(out, counter(labels.FromStrings("__name__", "lat_seconds_count", "slo", "latency"), func(ts time.Time, dt time.Duration) float64 { return 10 * dt.Seconds() }))
	probe := series{labels: labels.FromStrings("__name__", "probe_success", "job", "shop")}
	for _, ts := range times {
		v := 1.0
		if ts.After(end.Add(-10 * time.Minute)) {
			v = 0
		}
		probe.points = append(probe.points, point{ts, v})
	}
	return append(out, probe)
}

// TestPrometheusFiresSameAlerts loads the generated rules into a real
// Prometheus (2.42) over telemetry backfilled with promtool, runs QSP's
// engine over the same samples, and compares the firing alerts: names,
// severities and every label.
func TestPrometheusFiresSameAlerts(t *testing.T) {
	promBin := externaltest.LookPath(t, "prometheus")
	promtool := externaltest.LookPath(t, "promtool")
	set := loadSpecs(t, specs)
	dir := t.TempDir()
	end := time.Now().Truncate(15 * time.Second)
	data := scenario(end)

	// Prometheus: blocks from OpenMetrics text, then the rules.
	var om bytes.Buffer
	for _, s := range data {
		for _, p := range s.points {
			fmt.Fprintf(&om, "%s %g %d\n", openMetricsName(s.labels), p.v, p.t.Unix())
		}
	}
	om.WriteString("# EOF\n")
	must(t, os.WriteFile(filepath.Join(dir, "data.om"), om.Bytes(), 0o644))
	tsdbDir := filepath.Join(dir, "prometheus")
	if out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", filepath.Join(dir, "data.om"), tsdbDir).CombinedOutput(); err != nil {
		t.Fatalf("promtool tsdb create-blocks-from openmetrics: %v\n%s", err, out)
	}
	must(t, os.WriteFile(filepath.Join(dir, "rules.yml"), generate(t, set), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte("global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n"), 0o644))
	addr := externaltest.FreeAddr(t)
	prom := externaltest.Start(t, promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+tsdbDir,
		"--storage.tsdb.retention.time=30d", "--web.listen-address="+addr)
	externaltest.WaitHTTP(t, prom, "http://"+addr+"/-/ready", 30*time.Second)

	// QSP: the engine over an embedded TSDB with the same samples, at the
	// end of the data.
	want := qspFiring(t, set, data, end)
	if len(want) != 11 {
		t.Fatalf("QSP fires %d alerts, the scenario expects 11 (page and ticket of fast-outage, tenants{a}, latency, probes and combined; ticket of slow-burn):\n%s", len(want), strings.Join(want, "\n"))
	}
	var got []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		got = prometheusFiring(t, addr)
		if slices.Equal(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Prometheus fires:\n%s\nQSP fires:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	t.Logf("both fire:\n%s", strings.Join(want, "\n"))
}

// qspFiring runs the engine over data and returns its firing page and
// ticket alerts as label sets, the way QSP sends them.
func qspFiring(t *testing.T, set *spec.Set, data []series, end time.Time) []string {
	t.Helper()
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: t.TempDir(), Retention: 90 * 24 * time.Hour})
	must(t, err)
	defer db.Close()
	app := db.DB().Appender(context.Background())
	for _, s := range data {
		for _, p := range s.points {
			if _, err := app.Append(0, s.labels, p.t.UnixMilli(), p.v); err != nil {
				t.Fatal(err)
			}
		}
	}
	must(t, app.Commit())
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	must(t, err)
	defer st.Close()
	// The clock is a settle (30s) after the data ends: every whole minute
	// is folded.
	now := end.Add(30 * time.Second)
	e, err := engine.New(engine.Options{Source: db, Store: st, Specs: set, Now: func() time.Time { return now }, Interval: time.Hour})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(60 * time.Second)
	for !e.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("backfill did not finish")
		}
		time.Sleep(5 * time.Millisecond)
	}
	res, err := rulegen.Generate(set, rulegen.Options{})
	must(t, err)
	skipped := map[string]bool{}
	for _, s := range res.Skipped {
		skipped[s.SLO] = true
	}
	// Slice-judged SLOs read the step series their rules record, which a
	// Prometheus started over backfilled data has no history of.
	for _, s := range set.SLOs {
		if s.Spec.Budgeting.IsTimeslices() {
			skipped[s.Name()] = true
		}
	}
	var out []string
	for _, st := range e.Snapshot().Statuses {
		if skipped[st.SLO] {
			continue // no rules for it
		}
		for _, as := range st.Alerts {
			if as.State != slo.Firing || as.Severity == engine.SeverityNoData {
				continue
			}
			a := alert.Build(engine.Transition{Key: st.Key, SLO: st.SLO, Service: st.Service, Severity: as.Severity, Alert: as.Name,
				From: slo.Pending, To: slo.Firing, At: now, Condition: as.Condition, Status: st}, set, "http://qsp.example", "")
			out = append(out, labelString(a.Labels))
		}
	}
	sort.Strings(out)
	return out
}

func prometheusFiring(t *testing.T, addr string) []string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Alerts []struct {
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
				State       string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	must(t, json.NewDecoder(resp.Body).Decode(&body))
	var out []string
	for _, a := range body.Data.Alerts {
		if a.State != "firing" {
			continue
		}
		out = append(out, labelString(a.Labels))
		// The annotation templates expand without errors, with numbers.
		for k, v := range a.Annotations {
			if strings.Contains(v, "error expanding") || strings.Contains(v, "<no value>") {
				t.Errorf("alert %v: annotation %s = %q", a.Labels, k, v)
			}
		}
		if _, err := strconv.ParseFloat(a.Annotations["burn_rate"], 64); err != nil {
			t.Errorf("alert %v: burn_rate %q is not a number", a.Labels, a.Annotations["burn_rate"])
		}
		if !strings.Contains(a.Annotations["summary"], a.Labels["window"]) || a.Annotations["runbook_url"] != "https://runbooks.example/shop" {
			t.Errorf("alert %v: annotations %v", a.Labels, a.Annotations)
		}
	}
	sort.Strings(out)
	return out
}

func labelString(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " ")
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// openMetricsName writes a series as name{label="value",...}.
func openMetricsName(ls labels.Labels) string {
	var parts []string
	ls.Range(func(l labels.Label) {
		if l.Name != model.MetricNameLabel {
			parts = append(parts, fmt.Sprintf("%s=%q", l.Name, l.Value))
		}
	})
	return ls.Get(model.MetricNameLabel) + "{" + strings.Join(parts, ",") + "}"
}
