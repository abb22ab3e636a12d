package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
)

const spanSLOSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-availability}
spec:
  service: shop
  category: quality
  objective: 99
  window: 1d
  indicator:
    ratio:
      bad: sum(rate(traces_span_metrics_calls_total{service_name="checkout", span_kind="SPAN_KIND_SERVER", status_code="STATUS_CODE_ERROR"}[{{.window}}]))
      total: sum(rate(traces_span_metrics_calls_total{service_name="checkout", span_kind="SPAN_KIND_SERVER"}[{{.window}}]))
`

// TestSpanSLOFires sends spans with the OpenTelemetry SDK to a running
// QSP: an SLO written over the spanmetrics connector's series counts
// exactly the spans sent, and fires when most of them fail.
func TestSpanSLOFires(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "specs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "specs", "shop.yaml"), []byte(spanSLOSpecs), 0o644); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Truncate(time.Minute).Add(-10 * time.Minute)
	// The clock only moves forward (the first minute's spans come at
	// t0+10s): the engine does not expect it to go back.
	clk := &fakeClock{t: t0.Add(5 * time.Second)}
	_, url, stop := startApp(t, dir, clk.now)
	defer stop()

	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(url+"/v1/traces"),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Hour)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"))))
	defer tp.Shutdown(ctx)
	tracer := tp.Tracer("qsp-test")

	// Five minutes of 40 requests, 30 of them failing; client spans are
	// not requests of the SLO.
	failing := map[string]bool{}
	for m := range 5 {
		from := t0.Add(time.Duration(m) * time.Minute)
		clk.set(from.Add(10 * time.Second))
		for i := range 40 {
			_, span := tracer.Start(ctx, "POST /pay", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(from.Add(time.Second)))
			if i%4 != 0 {
				span.SetStatus(codes.Error, "card declined")
				failing[span.SpanContext().TraceID().String()] = true
			}
			span.End(trace.WithTimestamp(from.Add(time.Second + time.Duration(i)*time.Millisecond)))
		}
		_, client := tracer.Start(ctx, "GET bank", trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(from))
		client.SetStatus(codes.Error, "timeout")
		client.End(trace.WithTimestamp(from.Add(time.Second)))
		if err := tp.ForceFlush(ctx); err != nil {
			t.Fatalf("minute %d: flush: %v", m, err)
		}
		clk.set(from.Add(time.Minute + 30*time.Second))
	}
	externaltest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		w := sloStatus(t, url).WindowStat(5 * time.Minute)
		return w != nil && w.Total == 200
	}, "the 5 minutes of spans never reached the 5m window")
	st := sloStatus(t, url)
	if w := st.WindowStat(5 * time.Minute); w.Total != 200 || w.Good != 50 {
		t.Errorf("5m window: %+v, want 200 requests, 50 good", w)
	}
	if st.State != engine.StateFiring {
		t.Errorf("state: %s (%s), want firing", st.State, st.Reason)
	}

	// The incident of the page lists example traces, newest first, and
	// every one is a failing span that was sent: error spans leave their
	// trace IDs as exemplars of the bad series.
	var incs struct {
		Items []struct {
			ID int64 `json:"id"`
		} `json:"items"`
	}
	externaltest.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		getJSON(t, url+"/api/v1/incidents", &incs)
		return len(incs.Items) > 0
	}, "no incident opened")
	var inc struct {
		ExampleTraces []struct {
			TraceID string    `json:"traceID"`
			Time    time.Time `json:"time"`
		} `json:"exampleTraces"`
	}
	getJSON(t, fmt.Sprintf("%s/api/v1/incidents/%d", url, incs.Items[0].ID), &inc)
	if len(inc.ExampleTraces) == 0 {
		t.Fatal("the incident lists no example traces")
	}
	t.Logf("incident %d lists %d example traces", incs.Items[0].ID, len(inc.ExampleTraces))
	for i, ex := range inc.ExampleTraces {
		if !failing[ex.TraceID] {
			t.Errorf("example trace %s is not a failing span sent", ex.TraceID)
		}
		if i > 0 && ex.Time.After(inc.ExampleTraces[i-1].Time) {
			t.Errorf("example traces not newest first: %v after %v", ex.Time, inc.ExampleTraces[i-1].Time)
		}
	}
}
