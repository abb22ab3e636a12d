// Package soak holds the bounded load test behind `make soak`: QSP on
// loopback under sustained remote_write ingestion, SLO evaluation with
// alerts firing and resolving, and API traffic, for a configurable time.
// It reports throughput, latency percentiles, memory and goroutines over
// time, and any sample or notification lost. It is not part of make test.
package soak

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gogo/protobuf/proto"
	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"

	"github.com/qsp-dev/qsp/internal/app"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

var (
	duration = flag.Duration("soak.duration", 0, "how long to soak (make soak sets 10m); 0 runs a 20s smoke test of 20 SLOs")
	services = flag.Int("soak.slos", 200, "SLOs (one service each)")
	replicas = flag.Int("soak.instances", 50, "instances per service: series per SLO and code")
	report   = flag.String("soak.report", "", "write the report (markdown) to this file")
)

// latencies collects durations safely.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) pct(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)]
}

func (l *latencies) n() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.d) }

func soakSpecs(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: qsp/v1
kind: Service
metadata: {name: svc-%d}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: svc-%d-availability}
spec:
  service: svc-%d
  category: quality
  objective: 99
  window: 1d
  indicator:
    ratio:
      bad: sum(rate(soak_requests_total{service="svc-%d",code="500"}[{{.window}}]))
      total: sum(rate(soak_requests_total{service="svc-%d"}[{{.window}}]))
`, i, i, i, i, i)
	}
	return b.String()
}

func TestSoak(t *testing.T) {
	// Without -soak.duration (make test) a short run with a small load
	// checks that the harness itself still works and loses nothing.
	soakFor, n, instances := *duration, *services, *replicas
	if soakFor == 0 {
		soakFor, n, instances = 20*time.Second, min(n, 20), min(instances, 10)
	}
	dir := t.TempDir()
	specFile := filepath.Join(dir, "slos.yaml")
	if err := os.WriteFile(specFile, []byte(soakSpecs(n)), 0o644); err != nil {
		t.Fatal(err)
	}
	set, diags := spec.Load(specFile)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}

	// Notifications go to a webhook receiver that counts them.
	var notifications atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		notifications.Add(1)
	}))
	defer hook.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &app.Config{
		Auth:   app.AuthConfig{InsecureAnonymousAdmin: true},
		Listen: l.Addr().String(), DataDir: filepath.Join(dir, "data"), Specs: []string{specFile},
		Evaluation: app.EvaluationConfig{Interval: spec.Duration(5 * time.Second), Settle: spec.Duration(5 * time.Second)},
		Alerting:   app.AlertingConfig{Webhooks: []app.WebhookConfig{{Name: "soak", URL: hook.URL}}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, app.Options{Config: cfg, Specs: set, Listener: l})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	url := "http://" + l.Addr().String()
	externaltest.WaitHTTP(t, nil, url+"/readyz", time.Minute)

	// Writers: per SLO, a pair of counters (200, 500) on every instance,
	// a sample every second per series, sent in requests of 2,000 series
	// like Prometheus' queue manager; every 3 minutes a third of the
	// services fail for one minute, so alerts fire and resolve.
	var sent, acked, failed atomic.Int64
	var writeLat, apiLat latencies
	values := make([][2]float64, n)
	start := time.Now()
	deadline := start.Add(soakFor)
	type sampleAt struct {
		service int
		code    int
		t       int64
		v       float64
	}
	var ackedMu sync.Mutex
	ackedSamples := map[string]int{}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for now := range tick.C {
			if now.After(deadline) {
				return
			}
			failing := int(now.Sub(start)/time.Minute)%3 == 2
			var series []prompb.TimeSeries
			var batch []sampleAt
			flush := func() {
				if len(series) == 0 {
					return
				}
				body, _ := proto.Marshal(&prompb.WriteRequest{Timeseries: series})
				enc := snappy.Encode(nil, body)
				t0 := time.Now()
				req, _ := http.NewRequest(http.MethodPost, url+"/api/v1/write", bytes.NewReader(enc))
				req.Header.Set("Content-Type", "application/x-protobuf")
				req.Header.Set("Content-Encoding", "snappy")
				resp, err := http.DefaultClient.Do(req)
				writeLat.add(time.Since(t0))
				sent.Add(int64(len(batch)))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err == nil && resp.StatusCode/100 == 2 {
					acked.Add(int64(len(batch)))
					ackedMu.Lock()
					for _, s := range batch {
						ackedSamples[fmt.Sprintf("%d/%d", s.service, s.code)]++
					}
					ackedMu.Unlock()
				} else {
					failed.Add(int64(len(batch)))
				}
				series, batch = series[:0], batch[:0]
			}
			for i := range n {
				bad := 0.0
				if failing && i%3 == 0 {
					bad = 20
				}
				values[i][0] += 100 - bad
				values[i][1] += bad
				for inst := range instances {
					for c, code := range []string{"200", "500"} {
						series = append(series, prompb.TimeSeries{
							Labels: []prompb.Label{{Name: "__name__", Value: "soak_requests_total"}, {Name: "code", Value: code},
								{Name: "instance", Value: fmt.Sprintf("i-%d", inst)}, {Name: "service", Value: fmt.Sprintf("svc-%d", i)}},
							Samples: []prompb.Sample{{Timestamp: now.UnixMilli(), Value: values[i][c]}},
						})
						batch = append(batch, sampleAt{i, c, now.UnixMilli(), values[i][c]})
					}
					if len(series) >= 2000 {
						flush()
					}
				}
			}
			flush()
		}
	}()
	// API readers: the SLO list, 10 requests a second.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for now := range tick.C {
			if now.After(deadline) {
				return
			}
			t0 := time.Now()
			resp, err := http.Get(url + "/api/v1/slos?limit=10000")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			apiLat.add(time.Since(t0))
		}
	}()
	// Resources over time.
	type sample struct {
		at         time.Duration
		heap, sys  uint64
		goroutines int
	}
	var resources []sample
	wg.Add(1)
	go func() {
		defer wg.Done()
		every := max(soakFor/10, 5*time.Second)
		tick := time.NewTicker(every)
		defer tick.Stop()
		record := func() {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			resources = append(resources, sample{time.Since(start).Round(time.Second), ms.HeapAlloc, ms.Sys, runtime.NumGoroutine()})
		}
		record()
		for now := range tick.C {
			record()
			if now.After(deadline) {
				return
			}
		}
	}()
	wg.Wait()
	elapsed := time.Since(start)

	// Let the last cycles run, then count.
	time.Sleep(15 * time.Second)
	lost := 0
	for i := range n {
		for c, code := range []string{"200", "500"} {
			m, err := a.Embedded().Samples(context.Background(), []*labels.Matcher{
				labels.MustNewMatcher(labels.MatchEqual, "__name__", "soak_requests_total"),
				labels.MustNewMatcher(labels.MatchEqual, "service", fmt.Sprintf("svc-%d", i)),
				labels.MustNewMatcher(labels.MatchEqual, "code", code),
			}, start.Add(-time.Minute), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			stored := 0
			for _, s := range m {
				stored += len(s.Floats)
			}
			if want := ackedSamples[fmt.Sprintf("%d/%d", i, c)]; stored < want {
				lost += want - stored
			}
		}
	}
	// Every alert transition the engine recorded reached the webhook
	// (at least once: resends may add more).
	transitions := countTransitions(t, a)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("app: %v", err)
	}
	delivered := notifications.Load()

	var b strings.Builder
	fmt.Fprintf(&b, "## Soak: %s, %d SLOs\n\n", elapsed.Round(time.Second), n)
	fmt.Fprintf(&b, "| measure | value |\n| --- | --- |\n")
	fmt.Fprintf(&b, "| samples sent / acknowledged / refused | %d / %d / %d |\n", sent.Load(), acked.Load(), failed.Load())
	fmt.Fprintf(&b, "| ingestion rate | %.0f samples/s in %.1f requests/s |\n", float64(acked.Load())/elapsed.Seconds(), float64(writeLat.n())/elapsed.Seconds())
	fmt.Fprintf(&b, "| remote_write latency p50 / p99 | %s / %s |\n", writeLat.pct(0.5).Round(time.Microsecond), writeLat.pct(0.99).Round(time.Microsecond))
	fmt.Fprintf(&b, "| API GET /api/v1/slos | %.1f requests/s, p50 %s, p99 %s |\n", float64(apiLat.n())/elapsed.Seconds(), apiLat.pct(0.5).Round(time.Microsecond), apiLat.pct(0.99).Round(time.Microsecond))
	fmt.Fprintf(&b, "| acknowledged samples lost | %d |\n", lost)
	fmt.Fprintf(&b, "| alert transitions recorded / webhook deliveries | %d / %d |\n", transitions, delivered)
	fmt.Fprintf(&b, "\n| at | Go heap | Go sys | goroutines |\n| --- | --- | --- | --- |\n")
	for _, r := range resources {
		fmt.Fprintf(&b, "| %s | %.1f MiB | %.1f MiB | %d |\n", r.at, float64(r.heap)/(1<<20), float64(r.sys)/(1<<20), r.goroutines)
	}
	t.Log("\n" + b.String())
	if *report != "" {
		if err := os.WriteFile(*report, []byte(b.String()), 0o644); err != nil {
			t.Error(err)
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged samples lost", lost)
	}
	if transitions > 0 && delivered < int64(transitions) {
		t.Errorf("%d alert transitions but only %d webhook deliveries", transitions, delivered)
	}
	// Goroutines must not grow with time.
	if len(resources) > 2 && resources[len(resources)-1].goroutines > 2*resources[1].goroutines+50 {
		t.Errorf("goroutines grew from %d to %d", resources[1].goroutines, resources[len(resources)-1].goroutines)
	}
}

// countTransitions counts the transitions that notify receivers: an
// alert firing, or a firing alert resolving.
func countTransitions(t *testing.T, a *app.App) int {
	t.Helper()
	ts, err := a.Store().Transitions(context.Background(), store.TransitionFilter{Limit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tr := range ts {
		if tr.To == "firing" || (tr.To == "resolved" && tr.From == "firing") {
			n++
		}
	}
	return n
}
