package engine

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

const paritySpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: availability}
spec:
  service: shop
  category: quality
  objective: 99.5
  window: 1d
  indicator:
    ratio:
      bad: sum(rate(req_total{code="500"}[{{.window}}]))
      total: sum(rate(req_total[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: per-code-approx}
spec:
  service: shop
  category: quality
  objective: 99.5
  window: 1d
  indicator:
    ratio:
      bad: sum(rate(req_total{code="500"}[{{.window}}])) or vector(0)
      total: sum(rate(req_total[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: queue}
spec:
  service: shop
  category: performance
  objective: 99
  window: 1d
  budgeting: {method: timeslices, sliceLength: 5m}
  indicator:
    threshold:
      query: max(queue_depth)
      op: "<"
      value: 1000
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: fast}
spec:
  service: shop
  category: performance
  objective: 99
  window: 1d
  indicator:
    latency:
      histogram: latency_seconds
      threshold: 300ms
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: probe}
spec:
  service: shop
  category: quality
  objective: 99
  window: 1d
  indicator:
    availability:
      query: probe_success
`

// TestEmbeddedAndRemoteAgree evaluates the same SLOs over the same samples
// twice: from the embedded TSDB, and from a real Prometheus (Debian's)
// through its HTTP API. The numbers must be the same.
func TestEmbeddedAndRemoteAgree(t *testing.T) {
	promBin := externaltest.LookPath(t, "prometheus")
	promtool := externaltest.LookPath(t, "promtool")
	end := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	start := end.Add(-26 * time.Hour)

	// One data set, written to OpenMetrics for Prometheus and appended to
	// the embedded TSDB.
	type point struct {
		ls labels.Labels
		t  time.Time
		v  float64
	}
	families := map[string][]point{}
	var order []string
	add := func(ls labels.Labels, ts time.Time, v float64) {
		name := ls.Get("__name__")
		if _, ok := families[name]; !ok {
			order = append(order, name)
		}
		families[name] = append(families[name], point{ls, ts, v})
	}
	ok200 := labels.FromStrings("__name__", "req_total", "code", "200")
	err500 := labels.FromStrings("__name__", "req_total", "code", "500")
	le := labels.FromStrings("__name__", "latency_seconds_bucket", "le", "0.3")
	inf := labels.FromStrings("__name__", "latency_seconds_bucket", "le", "+Inf")
	cnt := labels.FromStrings("__name__", "latency_seconds_count")
	queue := labels.FromStrings("__name__", "queue_depth")
	probe := labels.FromStrings("__name__", "probe_success")
	var vOK, vErr, vLe, vInf float64
	i := 0
	for ts := start; ts.Before(end); ts = ts.Add(30 * time.Second) {
		i++
		if i%1000 >= 990 {
			continue // a scrape gap
		}
		reset := i%1500 == 0
		nOK, nErr := float64(50+i%23), float64((i/100)%4)
		if reset {
			vOK, vErr, vLe, vInf = 0, 0, 0, 0
		}
		vOK += nOK
		vErr += nErr
		vLe += nOK
		vInf += nOK + nErr
		add(ok200, ts, vOK)
		add(err500, ts, vErr)
		add(le, ts, vLe)
		add(inf, ts, vInf)
		add(cnt, ts, vInf)
		depth := float64(100 + i%700)
		if i%331 == 0 {
			depth = 2000
		}
		add(queue, ts, depth)
		p := 1.0
		if i%97 == 0 {
			p = 0
		}
		add(probe, ts, p)
	}

	dir := t.TempDir()
	var sb strings.Builder
	for _, name := range order {
		fmt.Fprintf(&sb, "# TYPE %s unknown\n", name)
		for _, p := range families[name] {
			fmt.Fprintf(&sb, "%s %s %d.%03d\n", omSeries(p.ls), formatOM(p.v), p.t.Unix(), p.t.Nanosecond()/1e6)
		}
	}
	sb.WriteString("# EOF\n")
	omFile := filepath.Join(dir, "data.om")
	if err := os.WriteFile(omFile, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promData := filepath.Join(dir, "prom")
	if out, err := exec.Command(promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", omFile, promData).CombinedOutput(); err != nil {
		t.Fatalf("promtool create-blocks-from: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := externaltest.FreeAddr(t)
	proc := externaltest.Start(t, promBin, "--config.file="+cfg, "--storage.tsdb.path="+promData,
		"--storage.tsdb.retention.time=3650d", "--web.listen-address="+addr)
	externaltest.WaitHTTP(t, proc, "http://"+addr+"/-/ready", 60*time.Second)

	db := openTSDB(t)
	app := db.DB().Appender(context.Background())
	for _, name := range order {
		for _, p := range families[name] {
			if _, err := app.Append(0, p.ls, p.t.UnixMilli(), p.v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	remote, err := telemetry.NewRemote(telemetry.RemoteOptions{URL: "http://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	set := loadSpecs(t, paritySpecs)
	clk := &clock{end.Add(30 * time.Second)}
	embeddedEngine := newTestEngine(t, db, openStore(t), set, clk)
	remoteEngine := newTestEngine(t, remote, openStore(t), loadSpecs(t, paritySpecs), clk)

	a, b := embeddedEngine.Snapshot(), remoteEngine.Snapshot()
	if len(a.Statuses) != len(b.Statuses) || len(a.Statuses) != 5 {
		t.Fatalf("statuses: embedded %d, remote %d, want 5", len(a.Statuses), len(b.Statuses))
	}
	for i, sa := range a.Statuses {
		sb := b.Statuses[i]
		if sa.Key != sb.Key || sa.State != sb.State {
			t.Errorf("%s: embedded %s %s, remote %s %s (%s)", sa.Key, sa.Key, sa.State, sb.Key, sb.State, sb.Reason)
			continue
		}
		if sa.Budget.Total == 0 {
			t.Errorf("%s: no events: the comparison would prove nothing", sa.Key)
		}
		if sa.Approximate {
			// rate() at minute steps depends on the PromQL version:
			// Prometheus 3 (embedded) excludes a sample at the left edge of
			// a range, 2.42 includes it. Approximate SLOs agree closely,
			// not exactly.
			if math.Abs(sa.Budget.ConsumedRatio-sb.Budget.ConsumedRatio) > 0.005*sa.Budget.ConsumedRatio {
				t.Errorf("%s (approximate): embedded %v, remote %v differ by more than 0.5%%", sa.Key, sa.Budget.ConsumedRatio, sb.Budget.ConsumedRatio)
			}
			continue
		}
		if !closeTo(sa.Budget.Total, sb.Budget.Total) || !closeTo(sa.Budget.Consumed, sb.Budget.Consumed) || !closeTo(sa.Budget.ConsumedRatio, sb.Budget.ConsumedRatio) {
			t.Errorf("%s budget: embedded %+v, remote %+v", sa.Key, sa.Budget, sb.Budget)
		}
		for j, wa := range sa.Windows {
			wb := sb.Windows[j]
			if !closeTo(wa.Good, wb.Good) || !closeTo(wa.Total, wb.Total) || wa.NoData != wb.NoData {
				t.Errorf("%s %s: embedded %v/%v, remote %v/%v", sa.Key, wa.Name, wa.Good, wa.Total, wb.Good, wb.Total)
			}
		}
		t.Logf("%s: %v events, budget consumed %.6f (embedded) %.6f (remote)", sa.Key, sa.Budget.Total, sa.Budget.ConsumedRatio, sb.Budget.ConsumedRatio)
	}
}

func closeTo(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

func formatOM(v float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.6f", v), "0"), ".")
}

// omSeries writes a series the OpenMetrics way: name{label="value",...}.
func omSeries(ls labels.Labels) string {
	var parts []string
	ls.Range(func(l labels.Label) {
		if l.Name != "__name__" {
			parts = append(parts, fmt.Sprintf("%s=%q", l.Name, l.Value))
		}
	})
	if len(parts) == 0 {
		return ls.Get("__name__")
	}
	return ls.Get("__name__") + "{" + strings.Join(parts, ",") + "}"
}
