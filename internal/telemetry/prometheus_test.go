package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// realPrometheus is the fixture of TestRealPrometheus: a target whose
// metrics advance on a schedule, a real Prometheus scraping it every second
// and remote_writing to QSP, and QSP's Embedded store behind its receiver
// and query API.
type realPrometheus struct {
	promURL  string // Prometheus' own API
	qspURL   string // QSP's query API base (without /api/v1)
	embedded *Embedded
	remote   *Remote
	first    time.Time // first scrape
	end      time.Time // both stores hold the same samples up to here
	start    time.Time // the comparison range starts here
}

// TestRealPrometheus runs Prometheus 2.42 (the Debian package) against QSP
// in both directions: as a remote_write client of QSP's receiver, and as
// the remote backend of QSP's Remote source.
func TestRealPrometheus(t *testing.T) {
	f := startRealPrometheus(t)
	t.Run("RemoteWriteQueryRangeMatchesPrometheus", func(t *testing.T) { testRemoteWriteMatches(t, f) })
	t.Run("RemoteSourceMatchesEmbedded", func(t *testing.T) { testRemoteSourceMatches(t, f) })
	t.Run("Promtool", func(t *testing.T) { testPromtool(t, f) })
}

func startRealPrometheus(t *testing.T) *realPrometheus {
	t.Helper()

	// The target: counters by code, a classic histogram and a gauge,
	// advancing every 100ms.
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_test_requests_total", Help: "Requests."}, []string{"code"})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "qsp_test_request_duration_seconds", Help: "Latency.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1}})
	temp := prometheus.NewGauge(prometheus.GaugeOpts{Name: "qsp_test_temperature_celsius", Help: "Temperature."})
	reg.MustRegister(reqs, lat, temp)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			reqs.WithLabelValues("200").Add(3)
			if i%3 == 0 {
				reqs.WithLabelValues("500").Inc()
			}
			lat.Observe(float64(i%10) / 10)
			temp.Set(20 + float64(i%7)/2)
		}
	})
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(func() { target.Close(); cancel(); wg.Wait() })

	// QSP: the receiver and the query API over one Embedded.
	e := openTestDB(t)
	wh, err := NewWriteHandler(ReceiverOptions{Storage: e})
	if err != nil {
		t.Fatal(err)
	}
	qa, err := NewQueryAPI(QueryAPIOptions{Embedded: e})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", wh)
	mux.Handle("/prometheus/", qa)
	qsp := httptest.NewServer(mux)
	t.Cleanup(qsp.Close)

	// Prometheus: scrape every second, remote_write with a 1s deadline.
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: target
    static_configs:
      - targets: [%q]
remote_write:
  - url: %s/api/v1/write
    queue_config:
      batch_send_deadline: 500ms
      min_backoff: 50ms
      max_backoff: 500ms
`, strings.TrimPrefix(target.URL, "http://"), qsp.URL)
	promURL := externaltest.StartPrometheus(t, cfg).URL

	remote, err := NewRemote(RemoteOptions{URL: promURL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = remote.Close() })
	f := &realPrometheus{promURL: promURL, qspURL: qsp.URL + "/prometheus", embedded: e, remote: remote}

	// Wait for the first scrape, then for 20s of data.
	sel := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "target")}
	externaltest.Eventually(t, 20*time.Second, 200*time.Millisecond, func() bool {
		m, err := remote.Samples(context.Background(), sel, time.Now().Add(-time.Minute), time.Now())
		if err != nil || len(m) == 0 {
			return false
		}
		f.first = time.UnixMilli(m[0].Floats[0].T)
		return true
	}, "Prometheus has no samples of the target")
	time.Sleep(time.Until(f.first.Add(20 * time.Second)))

	// Remote write lags: compare up to a moment both stores have reached.
	// Steps fall half-way between scrapes, so no sample sits exactly on a
	// range boundary (where Prometheus 2 and 3 differ: [a,b] versus (a,b]).
	f.end = f.first.Add(18*time.Second + 500*time.Millisecond)
	f.start = f.first.Add(11*time.Second + 500*time.Millisecond)
	var last string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		want, err := remote.Samples(context.Background(), sel, f.first.Add(-time.Second), f.end)
		if err != nil {
			t.Fatalf("samples from Prometheus: %v", err)
		}
		got, err := e.Samples(context.Background(), sel, f.first.Add(-time.Second), f.end)
		if err != nil {
			t.Fatalf("samples from QSP: %v", err)
		}
		if got.String() == want.String() {
			break
		}
		last = fmt.Sprintf("QSP:\n%s\nPrometheus:\n%s", got, want)
		if time.Now().After(deadline) {
			t.Fatalf("QSP never caught up with Prometheus:\n%s", last)
		}
	}
	return f
}

// apiMatrix runs a query_range against base and returns the result sorted
// by labels.
func apiMatrix(t *testing.T, base, query string, start, end time.Time, step time.Duration) model.Matrix {
	t.Helper()
	v := url.Values{"query": {query}, "start": {formatTime(start)}, "end": {formatTime(end)}, "step": {step.String()}}
	resp, err := http.Get(base + "/api/v1/query_range?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     model.Matrix `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("%s query_range %s: decode: %v", base, query, err)
	}
	if r.Status != "success" || r.Data.ResultType != "matrix" {
		t.Fatalf("%s query_range %s: status %s, type %s, error %s", base, query, r.Status, r.Data.ResultType, r.Error)
	}
	sort.Slice(r.Data.Result, func(i, j int) bool { return r.Data.Result[i].Metric.Before(r.Data.Result[j].Metric) })
	return r.Data.Result
}

func testRemoteWriteMatches(t *testing.T, f *realPrometheus) {
	queries := []struct {
		query string
		exact bool
	}{
		{`qsp_test_requests_total`, true},
		{`qsp_test_temperature_celsius`, true},
		{`rate(qsp_test_requests_total[10s])`, false},
		{`sum by (code) (rate(qsp_test_requests_total[10s]))`, false},
		{`sum(increase(qsp_test_requests_total{code="500"}[5s])) / sum(increase(qsp_test_requests_total[5s]))`, false},
		{`histogram_quantile(0.9, sum by (le) (rate(qsp_test_request_duration_seconds_bucket[10s])))`, false},
		{`avg_over_time(qsp_test_temperature_celsius[5s])`, false},
	}
	for _, q := range queries {
		want := apiMatrix(t, f.promURL, q.query, f.start, f.end, time.Second)
		got := apiMatrix(t, f.qspURL, q.query, f.start, f.end, time.Second)
		if len(want) == 0 {
			t.Errorf("%s: Prometheus returned no series", q.query)
			continue
		}
		if err := compareMatrices(got, want, q.exact); err != nil {
			t.Errorf("%s: %v", q.query, err)
			continue
		}
		n := 0
		for _, s := range want {
			n += len(s.Values)
		}
		t.Logf("%-100s %d series, %d points: equal", q.query, len(want), n)
	}
}

// compareMatrices checks that got has the series, timestamps and values of
// want: exactly, or within a relative 1e-9.
func compareMatrices(got, want model.Matrix, exact bool) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d series, want %d:\n%v\nwant:\n%v", len(got), len(want), got, want)
	}
	for i := range want {
		if !got[i].Metric.Equal(want[i].Metric) {
			return fmt.Errorf("series %d: got %s, want %s", i, got[i].Metric, want[i].Metric)
		}
		if len(got[i].Values) != len(want[i].Values) {
			return fmt.Errorf("%s: got %d points, want %d:\n%v\nwant:\n%v", want[i].Metric, len(got[i].Values), len(want[i].Values), got[i].Values, want[i].Values)
		}
		for j, w := range want[i].Values {
			g := got[i].Values[j]
			if g.Timestamp != w.Timestamp || !floatEqual(float64(g.Value), float64(w.Value), exact) {
				return fmt.Errorf("%s point %d: got %v, want %v", want[i].Metric, j, g, w)
			}
		}
	}
	return nil
}

func floatEqual(a, b float64, exact bool) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if exact || a == b {
		return a == b
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

func testRemoteSourceMatches(t *testing.T, f *realPrometheus) {
	ctx := context.Background()
	var sources = []struct {
		name string
		src  Source
	}{{"embedded", f.embedded}, {"remote", f.remote}}
	results := map[string][]string{}
	for _, s := range sources {
		var out []string
		add := func(what string, v any, err error) {
			if err != nil {
				t.Fatalf("%s %s: %v", s.name, what, err)
			}
			out = append(out, fmt.Sprintf("%s: %v", what, v))
		}
		for _, q := range []string{`sum by (code) (rate(qsp_test_requests_total[10s]))`, `qsp_test_requests_total`, `scalar(sum(qsp_test_temperature_celsius))`} {
			v, err := s.src.Instant(ctx, q, f.end)
			slices.SortFunc(v, func(a, b promql.Sample) int { return labels.Compare(a.Metric, b.Metric) })
			add("instant "+q, v, err)
			m, err := s.src.Range(ctx, q, f.start, f.end, time.Second)
			add("range "+q, m, err)
			if len(v) == 0 || len(m) == 0 || len(m[0].Floats) != 8 {
				t.Errorf("%s %s: instant %v, range %v; want results, 8 steps", s.name, q, v, m)
			}
		}
		sel := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, "qsp_test_requests_total")}
		m, err := s.src.Samples(ctx, sel, f.start, f.end)
		add("samples", m, err)
		if err == nil && (len(m) != 2 || len(m[0].Floats) < 5) {
			t.Errorf("%s samples: want 2 series with at least 5 samples each, got %s", s.name, m)
		}
		ls, err := s.src.Series(ctx, []string{`{job="target", __name__=~"qsp_test_.*"}`}, f.start, f.end)
		add("series", ls, err)
		names, err := s.src.LabelNames(ctx, f.start, f.end)
		add("label names", names, err)
		values, err := s.src.LabelValues(ctx, "code", f.start, f.end)
		add("label values", values, err)
		results[s.name] = out
	}
	want, got := results["remote"], results["embedded"]
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("embedded and remote differ:\nembedded %s\nremote   %s", got[i], want[i])
		}
	}
	// A bad query is the query's fault, not the backend's.
	if _, err := f.remote.Instant(ctx, "sum(", f.end); err == nil || isUnavailable(err) {
		t.Errorf("bad query: err %v, want a non-ErrUnavailable error", err)
	}
}

func isUnavailable(err error) bool {
	return errors.Is(err, ErrUnavailable)
}

// testPromtool runs promtool's instant and range queries against QSP and
// against Prometheus: the same output means promtool (and so Prometheus'
// Go client, which Grafana's backend mirrors) works against QSP.
func testPromtool(t *testing.T, f *realPrometheus) {
	bin := externaltest.LookPath(t, "promtool")
	run := func(args ...string) []string {
		t.Helper()
		out, err := exec.Command(bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("promtool %v: %v\n%s", args, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		slices.Sort(lines)
		return lines
	}
	ts := formatTime(f.end)
	for _, c := range [][]string{
		{"query", "instant", "--time=" + ts, "%s", `sum by (code) (qsp_test_requests_total)`},
		{"query", "range", "--start=" + formatTime(f.start), "--end=" + ts, "--step=1s", "%s", `rate(qsp_test_requests_total{code="200"}[10s])`},
		{"query", "series", "--match=qsp_test_requests_total", "%s"},
		{"query", "labels", "%s", "code"},
	} {
		withURL := func(u string) []string {
			args := slices.Clone(c)
			for i, a := range args {
				if a == "%s" {
					args[i] = u
				}
			}
			return args
		}
		want := run(withURL(f.promURL)...)
		got := run(withURL(f.qspURL)...)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("promtool %v:\nQSP:\n%s\nPrometheus:\n%s", c[:2], strings.Join(got, "\n"), strings.Join(want, "\n"))
		} else if len(want) == 0 || want[0] == "" {
			t.Errorf("promtool %v: empty output", c[:2])
		}
	}
}
