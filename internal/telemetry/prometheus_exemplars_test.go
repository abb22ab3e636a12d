package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/model/exemplar"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// TestRealPrometheusExemplars runs the Debian Prometheus with exemplar
// storage scraping a target that exposes OpenMetrics exemplars, and
// remote_writing them (send_exemplars) to QSP: QSP's query_exemplars then
// holds the trace IDs the target attached, and so does the Remote
// source's look-up against that Prometheus (remote mode).
func TestRealPrometheusExemplars(t *testing.T) {
	// The target: every 100ms one failed request with a trace ID on the
	// counter and on the latency histogram.
	reg := prometheus.NewRegistry()
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_ex_errors_total", Help: "Failed requests."}, []string{"route"})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "qsp_ex_duration_seconds", Help: "Latency.", Buckets: []float64{0.1, 1}})
	reg.MustRegister(errs, lat)
	var (
		mu     sync.Mutex
		traces = map[string]bool{}
	)
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
			tr := fmt.Sprintf("%032x", 0xabc000+i)
			mu.Lock()
			traces[tr] = true
			mu.Unlock()
			errs.WithLabelValues("/pay").(prometheus.ExemplarAdder).AddWithExemplar(1, prometheus.Labels{"trace_id": tr})
			lat.(prometheus.ExemplarObserver).ObserveWithExemplar(2.5, prometheus.Labels{"trace_id": tr})
		}
	})
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	t.Cleanup(func() { target.Close(); cancel(); wg.Wait() })

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

	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: target
    static_configs:
      - targets: [%q]
remote_write:
  - url: %s/api/v1/write
    send_exemplars: true
    queue_config:
      batch_send_deadline: 500ms
      min_backoff: 50ms
      max_backoff: 500ms
`, strings.TrimPrefix(target.URL, "http://"), qsp.URL)
	// Prometheus 2.42 needs the feature flag both to keep exemplars it
	// scrapes (OpenMetrics) and to forward them on remote_write.
	promURL := externaltest.StartPrometheus(t, cfg, "--enable-feature=exemplar-storage").URL
	remote, err := NewRemote(RemoteOptions{URL: promURL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = remote.Close() })

	// valid reports whether every exemplar of res carries a trace ID the
	// target really attached, and how many there are.
	valid := func(res []exemplar.QueryResult, metric string) (int, error) {
		n := 0
		mu.Lock()
		defer mu.Unlock()
		for _, r := range res {
			if got := r.SeriesLabels.Get("__name__"); !strings.HasPrefix(got, metric) {
				return 0, fmt.Errorf("series %s, want %s", r.SeriesLabels, metric)
			}
			for _, ex := range r.Exemplars {
				if !traces[ex.Labels.Get("trace_id")] {
					return 0, fmt.Errorf("exemplar %s on %s: trace ID was never sent", ex.Labels, r.SeriesLabels)
				}
				n++
			}
		}
		return n, nil
	}
	for _, src := range []struct {
		name string
		s    ExemplarSource
	}{{"QSP after remote_write", e}, {"remote Prometheus", remote}} {
		for _, metric := range []string{"qsp_ex_errors_total", `qsp_ex_duration_seconds_bucket{le="+Inf"}`} {
			externaltest.Eventually(t, 30*time.Second, 250*time.Millisecond, func() bool {
				res, err := src.s.Exemplars(t.Context(), metric, time.Now().Add(-time.Minute), time.Now())
				if err != nil {
					t.Logf("%s: %v", src.name, err)
					return false
				}
				n, err := valid(res, strings.SplitN(metric, "{", 2)[0])
				if err != nil {
					t.Fatal(err)
				}
				return n >= 3
			}, "%s: exemplars of %s never arrived", src.name, metric)
		}
	}
	// And the HTTP API a Grafana data source calls.
	code, body := get(t, qsp.URL+"/prometheus/api/v1/query_exemplars?query=qsp_ex_errors_total")
	if code != 200 || !strings.Contains(body, `"trace_id":"`) || !strings.Contains(body, `"route":"/pay"`) {
		t.Errorf("query_exemplars: %d %s", code, body)
	}
}
