package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/externaltest"
)

// TestTracesRemoteWriteToPrometheus is remote mode: span metrics are
// remote-written to a real Prometheus (with exemplar storage), where the
// SLI queries read exactly the spans sent and the exemplars name failing
// traces.
func TestTracesRemoteWriteToPrometheus(t *testing.T) {
	prom := externaltest.StartPrometheus(t, "global:\n  scrape_interval: 1h\nscrape_configs: []\n",
		"--web.enable-remote-write-receiver", "--enable-feature=exemplar-storage")
	base := prom.URL

	remote, err := NewRemote(RemoteOptions{URL: base})
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Close()
	w, err := remote.Writer("")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	h := newTracesHandler(t, w, SpanMetricsOptions{}, time.Now)
	td := referenceTraces(now)
	if code, resp, body := postTraces(t, h, td, false); code != http.StatusOK || resp.PartialSuccess().RejectedSpans() != 0 {
		t.Fatalf("traces: %d %s", code, body)
	}
	// Weights 1, 2, 4 and 1 in turn: 480 spans count 960.
	ctx := context.Background()
	at := time.Now().Add(time.Second)
	for q, want := range map[string]float64{
		`sum(traces_span_metrics_calls_total)`:                                                       960,
		`sum(traces_span_metrics_duration_milliseconds_count)`:                                       960,
		`sum(` + SampledSpansMetric + `)`:                                                            480,
		`sum(traces_span_metrics_calls_total{job="shop/checkout", status_code="STATUS_CODE_ERROR"})`: 160,
	} {
		v, err := remote.Instant(ctx, q, at)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if len(v) != 1 || v[0].F != want {
			t.Errorf("%s = %v, want %v", q, v, want)
		}
	}

	// Exemplars of the error series name error spans of referenceTraces
	// (status code i%3 == 2).
	resp, err := http.Get(base + "/api/v1/query_exemplars?" + url.Values{
		"query": {`traces_span_metrics_calls_total{status_code="STATUS_CODE_ERROR"}`},
		"start": {formatTime(now.Add(-time.Hour))}, "end": {formatTime(now.Add(time.Hour))},
	}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ex struct {
		Data []struct {
			Exemplars []struct {
				Labels map[string]string `json:"labels"`
			} `json:"exemplars"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ex); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range ex.Data {
		for _, e := range s.Exemplars {
			n++
			// Trace IDs are {service+1, i, 1, 0...}: i%3 == 2 for errors.
			tid := e.Labels["trace_id"]
			if len(tid) != 32 || tid[4:] != "01"+strings.Repeat("0", 26) {
				t.Errorf("exemplar trace_id %q is not one of the test's", tid)
				continue
			}
			var i int
			if _, err := fmt.Sscanf(tid[2:4], "%x", &i); err != nil || i%3 != 2 {
				t.Errorf("exemplar trace %s is not an error span (i=%d)", tid, i)
			}
		}
	}
	if n == 0 {
		t.Error("no exemplars on the error series")
	}
}
