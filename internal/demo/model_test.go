package demo

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/qsp-dev/qsp/internal/spec"
)

// stepN runs n live steps from start and returns every emitted sample by
// series, in order.
func stepN(sim *Simulator, start time.Time, n int) map[string][]float64 {
	out := map[string][]float64{}
	for i := range n {
		sim.Step(start.Add(time.Duration(i)*LiveStep), LiveStep, func(_ int, ls labels.Labels, v float64) {
			out[ls.String()] = append(out[ls.String()], v)
		})
	}
	return out
}

// last returns the newest value of every emitted series.
func last(sim *Simulator, t time.Time) map[string]labels.Labels {
	out := map[string]labels.Labels{}
	sim.Step(t, LiveStep, func(_ int, ls labels.Labels, _ float64) { out[ls.String()] = ls })
	return out
}

// values returns the simulator's current value of every series.
func values(sim *Simulator) map[string]float64 {
	sim.mu.Lock()
	defer sim.mu.Unlock()
	out := map[string]float64{}
	for _, se := range sim.order {
		out[se.labels.String()] = se.value
	}
	return out
}

var promParser = parser.NewParser(parser.Options{})

func TestCountersNeverDecrease(t *testing.T) {
	sim := NewSimulator(7)
	start := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	sim.Update(func(e *Effects) { e.Bots, e.Stale, e.SearchSurge = 5, 0.05, 2 })
	for name, vs := range stepN(sim, start, 240) {
		if !isCounter(name) {
			continue
		}
		for i := 1; i < len(vs); i++ {
			if vs[i] < vs[i-1] {
				t.Fatalf("%s went from %v to %v at step %d", name, vs[i-1], vs[i], i)
			}
		}
	}
}

func isCounter(name string) bool {
	metric := name[:strings.IndexByte(name, '{')]
	return strings.HasSuffix(metric, "_total") || strings.HasSuffix(metric, "_bucket") ||
		strings.HasSuffix(metric, "_count") || strings.HasSuffix(metric, "_sum")
}

// TestHistogramsAreConsistent checks what Prometheus assumes of a
// histogram, and that it counts the same requests as the request
// counter: buckets grow with le, +Inf equals _count, and _count equals
// the sum of http_requests_total over codes (and tenants).
func TestHistogramsAreConsistent(t *testing.T) {
	sim := NewSimulator(3)
	start := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	sim.Update(func(e *Effects) {
		e.Canary = &Canary{Version: "v2", Weight: 0.3, Slow: 4}
		e.Bots = 3
		e.SearchSlow = 0.2
	})
	stepN(sim, start, 120)
	vals := values(sim)
	type key struct{ service, handler, track string }
	buckets := map[key][][2]float64{}
	counts := map[key]float64{}
	requests := map[key]float64{}
	for name, v := range vals {
		ls, err := promParser.ParseMetric(name)
		if err != nil {
			t.Fatal(err)
		}
		k := key{ls.Get("service"), ls.Get("handler"), ls.Get("track")}
		switch ls.Get(model.MetricNameLabel) {
		case "http_request_duration_seconds_bucket":
			le, err := strconv.ParseFloat(ls.Get("le"), 64)
			if err != nil {
				t.Fatal(err)
			}
			buckets[k] = append(buckets[k], [2]float64{le, v})
		case "http_request_duration_seconds_count":
			counts[k] = v
		case "http_requests_total":
			requests[k] += v
		}
	}
	if len(counts) < 6 {
		t.Fatalf("only %d histograms", len(counts))
	}
	for k, bs := range buckets {
		slices.SortFunc(bs, func(a, b [2]float64) int { return int(math.Copysign(1, a[0]-b[0])) })
		for i := 1; i < len(bs); i++ {
			if bs[i][1] < bs[i-1][1] {
				t.Errorf("%v: bucket le=%v holds %v, less than le=%v with %v", k, bs[i][0], bs[i][1], bs[i-1][0], bs[i-1][1])
			}
		}
		if inf := bs[len(bs)-1]; !math.IsInf(inf[0], 1) || inf[1] != counts[k] {
			t.Errorf("%v: +Inf bucket %v, _count %v", k, inf, counts[k])
		}
		if requests[k] != counts[k] {
			t.Errorf("%v: %v requests counted, %v observed", k, requests[k], counts[k])
		}
	}
}

// loadExamples loads the embedded examples as the demo writes them.
func loadExamples(t *testing.T) *spec.Set {
	t.Helper()
	dir := t.TempDir()
	specs, _, err := writeSpecs(dir, "http://"+DefaultPlatformAddr, "token")
	if err != nil {
		t.Fatal(err)
	}
	set, diags := spec.Load(specs)
	if diags.HasErrors() {
		t.Fatalf("examples: %v", diags)
	}
	return set
}

// TestSimulatorFeedsEverySLO parses every selector of every example SLO,
// service cost query and gate canary metric, and checks that the
// simulator emits a series it matches: a renamed label or metric in
// examples/ would leave an SLO without data in the demo.
func TestSimulatorFeedsEverySLO(t *testing.T) {
	set := loadExamples(t)
	sim := NewSimulator(5)
	start := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	sim.Update(func(e *Effects) { e.Canary = &Canary{Version: "v2", Weight: 0.3, Slow: 2} })
	stepN(sim, start, 8)
	emitted := last(sim, start.Add(8*LiveStep))
	var queries []string
	for _, s := range set.SLOs {
		ind := s.Spec.Indicator
		switch {
		case ind.Ratio != nil:
			queries = append(queries, ind.Ratio.Good, ind.Ratio.Bad, ind.Ratio.Total)
		case ind.Threshold != nil:
			queries = append(queries, ind.Threshold.Query)
		case ind.Latency != nil:
			h, err := promParser.ParseMetricSelector(ind.Latency.Histogram)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range h {
				if m.Name == model.MetricNameLabel {
					for _, suffix := range []string{"_bucket", "_count"} {
						queries = append(queries, strings.Replace(ind.Latency.Histogram, m.Value, m.Value+suffix, 1))
					}
				}
			}
			// Every threshold must be a bucket boundary, or the SLO has
			// no data (and percentiles would be interpolated).
			if th := ind.Latency.Threshold.D().Seconds(); !slices.Contains(latencyBuckets, th) {
				t.Errorf("SLO %s: threshold %vs is not a bucket boundary of %v", s.Name(), th, latencyBuckets)
			}
		case ind.Availability != nil:
			queries = append(queries, ind.Availability.Query)
		}
	}
	for _, svc := range set.Services {
		if svc.Spec.Cost != nil {
			queries = append(queries, svc.Spec.Cost.Query)
		}
	}
	for _, g := range set.Gates {
		if c := g.Spec.Canary; c != nil {
			for _, m := range c.Metrics {
				queries = append(queries, m.Query, m.Errors, m.Total)
			}
		}
	}
	checked := 0
	for _, q := range queries {
		if q == "" {
			continue
		}
		q = strings.ReplaceAll(q, "{{.window}}", "5m")
		q = strings.ReplaceAll(q, spec.SelectorPlaceholder, `track="canary"`)
		expr, err := promParser.ParseExpr(q)
		if err != nil {
			t.Fatalf("parse %s: %v", q, err)
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			vs, ok := n.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			checked++
			for _, ls := range emitted {
				if matchesAll(vs.LabelMatchers, ls) {
					return nil
				}
			}
			t.Errorf("no simulated series matches %s (in %s)", vs, q)
			return nil
		})
	}
	if checked < 30 {
		t.Errorf("only %d selectors checked", checked)
	}
}

func matchesAll(ms []*labels.Matcher, ls labels.Labels) bool {
	for _, m := range ms {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

// ratio sums the values of the series matching sel at the simulator's
// current state.
func sumOf(t *testing.T, vals map[string]float64, sel string) float64 {
	t.Helper()
	ms, err := promParser.ParseMetricSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	var s float64
	for name, v := range vals {
		ls, _ := promParser.ParseMetric(name)
		if matchesAll(ms, ls) {
			s += v
		}
	}
	return s
}

// TestEffects checks that each fault changes the telemetry the way its
// scenario's SLO will see it, and that its remedy takes it back.
func TestEffects(t *testing.T) {
	start := time.Date(2026, 3, 3, 12, 0, 0, 0, time.UTC)
	ratio := func(sim *Simulator, bad, total string, steps int) float64 {
		before := values(sim)
		stepN(sim, start, steps)
		after := values(sim)
		b := sumOf(t, after, bad) - sumOf(t, before, bad)
		n := sumOf(t, after, total) - sumOf(t, before, total)
		return b / n
	}
	cases := []struct {
		name        string
		effect      func(e *Effects)
		bad, total  string
		healthyMax  float64 // the ratio without the fault stays below
		faultyMin   float64 // and with it rises above
		remedy      func(sim *Simulator)
		remediedMax float64
	}{
		{
			name:   "bots fail sign-ins",
			effect: func(e *Effects) { e.Bots = 12 },
			bad:    `auth_login_attempts_total{result="failure"}`, total: `auth_login_attempts_total`,
			healthyMax: 0.03, faultyMin: 0.7,
			remedy:      func(s *Simulator) { s.Update(func(e *Effects) { e.BotsThrottled = true }) },
			remediedMax: 0.2,
		},
		{
			name:   "bots are blocked by the WAF",
			effect: func(e *Effects) { e.Bots = 12 },
			bad:    `waf_requests_total{action="block"}`, total: `waf_requests_total`,
			healthyMax: 0.01, faultyMin: 0.25,
		},
		{
			name:   "stale cache",
			effect: func(e *Effects) { e.Stale = 0.06 },
			bad:    `search_cache_responses_total{freshness="stale"}`, total: `search_cache_responses_total`,
			healthyMax: 0.001, faultyMin: 0.04,
		},
		{
			name: "capped autoscaler sheds load",
			effect: func(e *Effects) {
				e.SearchSurge, e.SearchCap = 3, 10
			},
			bad: `http_requests_total{service="search",code="429"}`, total: `http_requests_total{service="search"}`,
			healthyMax: 0.001, faultyMin: 0.2,
			remedy:      func(s *Simulator) { s.Update(func(e *Effects) { e.SearchCap = 0 }) },
			remediedMax: 0.01,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sim := NewSimulator(11)
			stepN(sim, start, 40) // the autoscaler settles
			if r := ratio(sim, c.bad, c.total, 40); r > c.healthyMax {
				t.Errorf("healthy ratio %v, want at most %v", r, c.healthyMax)
			}
			sim.Update(c.effect)
			stepN(sim, start, 20) // the autoscaler reacts
			if r := ratio(sim, c.bad, c.total, 40); r < c.faultyMin {
				t.Errorf("ratio under the fault %v, want at least %v", r, c.faultyMin)
			}
			if c.remedy != nil {
				c.remedy(sim)
				stepN(sim, start, 40)
				if r := ratio(sim, c.bad, c.total, 40); r > c.remediedMax {
					t.Errorf("ratio after the remedy %v, want at most %v", r, c.remediedMax)
				}
			}
		})
	}
	t.Run("slow canary breaks the latency SLO", func(t *testing.T) {
		sim := NewSimulator(13)
		fast := func() float64 {
			return ratio(sim, `http_request_duration_seconds_bucket{service="checkout",le="0.3"}`, `http_request_duration_seconds_count{service="checkout"}`, 40)
		}
		if r := fast(); r < 0.99 {
			t.Errorf("healthy: %v of requests within 300ms, want 99%%", r)
		}
		sim.Update(func(e *Effects) { e.Canary = &Canary{Version: "v2", Weight: 0.6, Slow: 10} })
		if r := fast(); r > 0.6 {
			t.Errorf("slow canary: %v of requests within 300ms, want at most 60%%", r)
		}
	})
	t.Run("memory leak restarts workers", func(t *testing.T) {
		sim := NewSimulator(17)
		stepN(sim, start, 4*60) // an hour: no restart when healthy
		if n := sim.Restarts(); n != 0 {
			t.Fatalf("%d restarts without a leak", n)
		}
		sim.Update(func(e *Effects) { e.Leak = 25 << 20 })
		stepN(sim, start, 4*50)
		if n := sim.Restarts(); n < 1 {
			t.Errorf("no restart after 50 minutes of leaking")
		}
		sim.RestartWorkers()
		if got := sim.memory; got != workerMemoryBase {
			t.Errorf("memory after a restart %v, want %v", got, workerMemoryBase)
		}
	})
	t.Run("collector down changes no telemetry", func(t *testing.T) {
		a, b := NewSimulator(19), NewSimulator(19)
		b.Update(func(e *Effects) { e.CollectorDown = true })
		va, vb := stepN(a, start, 10), stepN(b, start, 10)
		if len(va) != len(vb) {
			t.Errorf("%d series with the collector up, %d down", len(va), len(vb))
		}
	})
}

func TestShape(t *testing.T) {
	monday := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		at      time.Time
		weekend float64
		want    float64
	}{
		{monday.Add(4 * time.Hour), 1, 0.3},
		{monday.Add(16 * time.Hour), 1, 1},
		{monday.Add(10 * time.Hour), 1, 0.65},
		{monday.Add(5*day + 16*time.Hour), 0.7, 0.7}, // Saturday
		{monday.Add(6*day + 4*time.Hour), 1.15, 0.345},
	}
	for _, c := range cases {
		if got := shape(c.at, c.weekend); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("shape(%s, %v) = %v, want %v", c.at.Format(time.RFC1123), c.weekend, got, c.want)
		}
	}
}

func TestSamplingIsUnbiased(t *testing.T) {
	sim := NewSimulator(23)
	for _, c := range []struct{ n, p float64 }{{10, 0.5}, {80, 0.1}, {1000, 0.02}, {1e5, 0.3}} {
		var sum float64
		const trials = 4000
		for range trials {
			k := sim.binomial(c.n, c.p)
			if k < 0 || k > c.n || k != math.Trunc(k) {
				t.Fatalf("binomial(%v, %v) = %v", c.n, c.p, k)
			}
			sum += k
		}
		mean, want := sum/trials, c.n*c.p
		// Five standard errors of the mean.
		if tol := 5 * math.Sqrt(c.n*c.p*(1-c.p)/trials); math.Abs(mean-want) > tol {
			t.Errorf("binomial(%v, %v): mean %v, want %v ± %v", c.n, c.p, mean, want, tol)
		}
	}
	for _, lambda := range []float64{0.5, 7, 40, 900} {
		var sum float64
		const trials = 4000
		for range trials {
			sum += sim.poisson(lambda)
		}
		if mean, tol := sum/trials, 5*math.Sqrt(lambda/trials); math.Abs(mean-lambda) > tol {
			t.Errorf("poisson(%v): mean %v", lambda, mean)
		}
	}
}

// The data directory written for the specs is what the app loads.
func TestWriteSpecsPointsPlaybooksAtThePlatform(t *testing.T) {
	dir := t.TempDir()
	specs, secrets, err := writeSpecs(dir, "http://127.0.0.1:4242", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(specs, "playbooks.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), DefaultPlatformAddr) || !strings.Contains(string(b), "http://127.0.0.1:4242"+PathRollback) {
		t.Errorf("playbooks.yaml not rewritten:\n%s", b)
	}
	if tok, err := os.ReadFile(filepath.Join(secrets, "ROLLOUTS_TOKEN")); err != nil || string(tok) != "s3cret" {
		t.Errorf("secret: %q, %v", tok, err)
	}
	if _, err := os.Stat(filepath.Join(specs, "policies", "change-freeze.rego")); err != nil {
		t.Errorf("policy file: %v", err)
	}
}
