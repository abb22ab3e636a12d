package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// TestIncidentTracesFromRemotePrometheus: in remote mode the example
// traces of an incident come from the backend's query_exemplars. A real
// Prometheus with exemplar storage scrapes a target whose failed requests
// carry trace IDs; the incident API then lists trace IDs that really are
// failed requests, linked through the URL template.
func TestIncidentTracesFromRemotePrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pay_requests_total", Help: "Requests."}, []string{"code"})
	reg.MustRegister(reqs)
	var (
		mu     sync.Mutex
		failed = map[string]bool{}
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
			ok := fmt.Sprintf("%032x", 0x1000000+i)
			reqs.WithLabelValues("200").(prometheus.ExemplarAdder).AddWithExemplar(1, prometheus.Labels{"trace_id": ok})
			if i%2 == 0 {
				bad := fmt.Sprintf("%032x", 0x5000000+i)
				mu.Lock()
				failed[bad] = true
				mu.Unlock()
				reqs.WithLabelValues("500").(prometheus.ExemplarAdder).AddWithExemplar(1, prometheus.Labels{"trace_id": bad})
			}
		}
	})
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
	t.Cleanup(func() { target.Close(); cancel(); wg.Wait() })

	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: pay\n    static_configs:\n      - targets: [%q]\n", strings.TrimPrefix(target.URL, "http://"))
	prom := externaltest.StartPrometheus(t, cfg, "--enable-feature=exemplar-storage")
	remote, err := telemetry.NewRemote(telemetry.RemoteOptions{URL: prom.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = remote.Close() })

	set := &spec.Set{}
	s := &spec.SLO{Spec: spec.SLOSpec{Service: "pay", Indicator: spec.Indicator{Ratio: &spec.RatioIndicator{
		Good: `sum(rate(pay_requests_total{code!~"5.."}[{{.window}}]))`, Total: `sum(rate(pay_requests_total[{{.window}}]))`}}}}
	s.Metadata.Name = "pay-availability"
	set.SLOs = append(set.SLOs, s)
	finder, err := tracelink.New(tracelink.Options{Source: remote, Specs: func() *spec.Set { return set }, URLTemplate: "http://jaeger:16686/trace/{{.TraceID}}"})
	if err != nil {
		t.Fatal(err)
	}

	// An incident opened now by the real incident keeper.
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t0 := time.Now().UTC()
	keep, err := alert.NewIncidents(alert.IncidentOptions{Store: st, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	keep.OnTransitions(t.Context(), []engine.Transition{pageTransition("pay-availability", "pay", slo.Firing, t0)})
	a, err := New(Options{Engine: snapshotOf{engine.NewSnapshot(t0, nil, nil)}, Specs: func() *spec.Set { return set }, Store: st,
		Extra: map[string]any{"incidents": keep, "traces": finder}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)

	var got incidentWithTraces
	externaltest.Eventually(t, 30*time.Second, 500*time.Millisecond, func() bool {
		resp, err := http.Get(srv.URL + "/api/v1/incidents/1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got = incidentWithTraces{}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
			t.Fatalf("incident: %d %v", resp.StatusCode, err)
		}
		return len(got.ExampleTraces) >= 3
	}, "the incident never listed 3 example traces")
	mu.Lock()
	defer mu.Unlock()
	for i, ex := range got.ExampleTraces {
		if !failed[ex.TraceID] {
			t.Errorf("trace %s is not a failed request", ex.TraceID)
		}
		if ex.URL != "http://jaeger:16686/trace/"+ex.TraceID || !strings.Contains(ex.Series, `code="500"`) {
			t.Errorf("example %+v", ex)
		}
		if i > 0 && ex.Time.After(got.ExampleTraces[i-1].Time) {
			t.Errorf("examples not newest first: %v", got.ExampleTraces)
		}
	}
}
