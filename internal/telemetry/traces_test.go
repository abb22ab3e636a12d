package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func newTracesHandler(t testing.TB, st Storage, sm SpanMetricsOptions, now func() time.Time) *TracesHandler {
	t.Helper()
	h, err := NewTracesHandler(ReceiverOptions{Storage: st, Now: now, SpanMetrics: sm})
	if err != nil {
		t.Fatalf("new traces handler: %v", err)
	}
	return h
}

// postTraces sends td as protobuf or JSON and returns the status, the
// decoded response (for 200) and the body.
func postTraces(t testing.TB, h http.Handler, td ptrace.Traces, asJSON bool) (int, ptraceotlp.ExportResponse, string) {
	t.Helper()
	req := ptraceotlp.NewExportRequestFromTraces(td)
	body, err := req.MarshalProto()
	ct := "application/x-protobuf"
	if asJSON {
		body, err = req.MarshalJSON()
		ct = "application/json"
	}
	if err != nil {
		t.Fatal(err)
	}
	return postTracesBody(t, h, body, ct, "")
}

func postTracesBody(t testing.TB, h http.Handler, body []byte, ct, encoding string) (int, ptraceotlp.ExportResponse, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
	r.Header.Set("Content-Type", ct)
	if encoding != "" {
		r.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	b, _ := io.ReadAll(rec.Body)
	resp := ptraceotlp.NewExportResponse()
	if rec.Code == http.StatusOK {
		var err error
		if ct == "application/json" {
			err = resp.UnmarshalJSON(b)
		} else {
			err = resp.UnmarshalProto(b)
		}
		if err != nil {
			t.Fatalf("decode response: %v", err)
		}
	}
	return rec.Code, resp, string(b)
}

// vectorMap runs q at ts and returns each series' value by its labels.
func vectorMap(t testing.TB, e *Embedded, q string, ts time.Time) map[string]float64 {
	t.Helper()
	v, err := e.Instant(context.Background(), q, ts)
	if err != nil {
		t.Fatalf("query %s: %v", q, err)
	}
	m := map[string]float64{}
	for _, s := range v {
		m[s.Metric.String()] = s.F
	}
	return m
}

func diffMaps(got, want map[string]float64) string {
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		g, gok := got[k]
		w, wok := want[k]
		if gok != wok || math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
			fmt.Fprintf(&b, "%s: got %v (%v), want %v (%v)\n", k, g, gok, w, wok)
		}
	}
	return b.String()
}

// TestTracesFromOpenTelemetrySDK sends spans with the real OpenTelemetry
// Go SDK and its OTLP/HTTP exporter (gzip, batches) and checks that the
// derived counts are exactly what was sent, per route and status, with
// and without sampling weights.
func TestTracesFromOpenTelemetrySDK(t *testing.T) {
	e := openTestDB(t)
	h := newTracesHandler(t, e, SpanMetricsOptions{Dimensions: []SpanDimension{{Name: "http.route"}}}, time.Now)
	srv := httptest.NewServer(h)
	defer srv.Close()

	ctx := context.Background()
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(srv.URL+"/v1/traces"),
		otlptracehttp.WithCompression(otlptracehttp.GzipCompression),
		otlptracehttp.WithRetry(otlptracehttp.RetryConfig{Enabled: false}))
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithMaxExportBatchSize(64), sdktrace.WithBatchTimeout(time.Hour)),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("service.instance.id", "pod-1"))))
	tracer := tp.Tracer("qsp-test")

	// A remote parent whose tracestate says the trace was sampled with
	// probability 1/4 (OTEP 235 threshold c): its spans weigh 4 each.
	tsQuarter, err := trace.ParseTraceState("ot=th:c")
	if err != nil {
		t.Fatal(err)
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6},
		TraceFlags: trace.FlagsSampled, TraceState: tsQuarter, Remote: true,
	})
	weighted := trace.ContextWithRemoteSpanContext(ctx, parent)

	type key struct{ route, status string }
	want := map[key]float64{}
	wantSampled := 0.0
	start := time.Now().Add(-time.Second)
	send := func(ctx context.Context, route string, isErr bool, d time.Duration, weight float64) {
		_, span := tracer.Start(ctx, "GET "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.route", route)), trace.WithTimestamp(start))
		status := "STATUS_CODE_UNSET"
		if isErr {
			span.SetStatus(codes.Error, "boom")
			status = "STATUS_CODE_ERROR"
		}
		span.End(trace.WithTimestamp(start.Add(d)))
		want[key{route, status}] += weight
		wantSampled++
	}
	for i := range 300 {
		send(ctx, "/cart", i%10 == 0, time.Duration(i)*time.Millisecond, 1)
		send(ctx, "/pay", i%3 == 0, time.Duration(i%50)*time.Millisecond, 1)
		if i < 50 {
			send(weighted, "/search", i%5 == 0, 20*time.Millisecond, 4)
		}
	}
	if err := tp.ForceFlush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	got := vectorMap(t, e, `sum by (http_route, status_code) (traces_span_metrics_calls_total{job="checkout", instance="pod-1", span_kind="SPAN_KIND_SERVER"})`, time.Now())
	wantM := map[string]float64{}
	for k, v := range want {
		wantM[fmt.Sprintf(`{http_route=%q, status_code=%q}`, k.route, k.status)] = v
	}
	if d := diffMaps(got, wantM); d != "" {
		t.Errorf("calls:\n%s", d)
	}
	// Histogram counts equal calls; the sampled-spans counter counts each
	// span once.
	count := vectorMap(t, e, `sum(traces_span_metrics_duration_milliseconds_count)`, time.Now())
	calls := vectorMap(t, e, `sum(traces_span_metrics_calls_total)`, time.Now())
	if count["{}"] != calls["{}"] || calls["{}"] != 300+300+50*4 {
		t.Errorf("histogram count %v, calls %v, want %d", count, calls, 300+300+50*4)
	}
	sampled := vectorMap(t, e, `sum(`+SampledSpansMetric+`)`, time.Now())
	if sampled["{}"] != wantSampled {
		t.Errorf("sampled spans %v, want %v", sampled, wantSampled)
	}
	// /cart spans take 0..299ms: 11 of them (0..10ms) are at or under 10ms.
	le10 := vectorMap(t, e, `traces_span_metrics_duration_milliseconds_bucket{http_route="/cart", le="10"}`, time.Now())
	total := 0.0
	for _, v := range le10 {
		total += v
	}
	if total != 11 {
		t.Errorf("/cart spans at or under 10ms: %v, want 11", le10)
	}
}

// referenceTraces builds spans of two services covering every kind and
// status, durations on and between the bucket bounds, and sampling
// weights of 1, 2 and 4.
func referenceTraces(now time.Time) ptrace.Traces {
	td := ptrace.NewTraces()
	for si, svc := range []string{"checkout", "search"} {
		rs := td.ResourceSpans().AppendEmpty()
		rs.Resource().Attributes().PutStr("service.name", svc)
		rs.Resource().Attributes().PutStr("service.namespace", "shop")
		rs.Resource().Attributes().PutStr("service.instance.id", fmt.Sprintf("pod-%d", si))
		rs.Resource().Attributes().PutStr("deployment.environment", "prod")
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		durations := []time.Duration{0, time.Millisecond, 2 * time.Millisecond, 2*time.Millisecond + 1, 10 * time.Millisecond, 37 * time.Millisecond,
			999 * time.Millisecond, time.Second, 3 * time.Second, 15 * time.Second, 20 * time.Second}
		states := []string{"", "ot=th:8", "ot=th:c;rv:abcdef01234567", "vendor=x"}
		for i := range 240 {
			s := spans.AppendEmpty()
			s.SetTraceID(pcommon.TraceID{byte(si + 1), byte(i), 1})
			s.SetSpanID(pcommon.SpanID{byte(i), 2})
			s.SetName([]string{"GET /a", "POST /b", "db.query"}[i%3])
			s.SetKind(ptrace.SpanKind(i % 6))
			s.Status().SetCode(ptrace.StatusCode(i % 3))
			s.TraceState().FromRaw(states[i%len(states)])
			if i%4 != 3 {
				s.Attributes().PutStr("http.route", []string{"/a", "/b"}[i%2])
			}
			s.Attributes().PutInt("http.response.status_code", int64([]int{200, 500, 404}[i%3]))
			d := durations[i%len(durations)]
			end := now.Add(-time.Duration(i) * time.Millisecond)
			s.SetStartTimestamp(pcommon.NewTimestampFromTime(end.Add(-d)))
			s.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
		}
	}
	return td
}

// TestSpanMetricsMatchConnector runs the OpenTelemetry Collector's
// spanmetrics connector on the same spans as the traces receiver, stores
// its output through the OTLP metrics receiver (Prometheus' own
// translator), and checks that both give the same series and values:
// names, labels, buckets, counts and sums.
func TestSpanMetricsMatchConnector(t *testing.T) {
	defaultRoute := "none"
	dims := []SpanDimension{{Name: "http.route", Default: &defaultRoute}, {Name: "http.response.status_code"}, {Name: "deployment.environment"}}
	for _, unit := range []string{"ms", "s"} {
		t.Run(unit, func(t *testing.T) {
			now := time.Now()
			td := referenceTraces(now)

			// The connector, in its own process (see testdata/spanmetricsref).
			var dimArgs []string
			for _, d := range dims {
				if d.Default != nil {
					dimArgs = append(dimArgs, d.Name+"="+*d.Default)
				} else {
					dimArgs = append(dimArgs, d.Name)
				}
			}
			tb, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
			if err != nil {
				t.Fatal(err)
			}
			out := runSpanMetricsRef(t, tb, "-dims", strings.Join(dimArgs, ","), "-unit", unit)
			mreq := pmetricotlp.NewExportRequest()
			if err := mreq.UnmarshalProto(out); err != nil {
				t.Fatalf("decode connector output: %v", err)
			}
			ref := mreq.Metrics()

			refDB := openTestDB(t)
			oh, err := NewOTLPHandler(ReceiverOptions{Storage: refDB})
			if err != nil {
				t.Fatal(err)
			}
			code, resp, body := postOTLP(t, oh, ref, false)
			if code != http.StatusOK || resp.PartialSuccess().RejectedDataPoints() != 0 {
				t.Fatalf("store connector output: %d %s", code, body)
			}

			e := openTestDB(t)
			h := newTracesHandler(t, e, SpanMetricsOptions{Dimensions: dims, Unit: unit}, time.Now)
			code, tresp, body := postTraces(t, h, td, false)
			if code != http.StatusOK || tresp.PartialSuccess().RejectedSpans() != 0 {
				t.Fatalf("traces: %d %s %s", code, tresp.PartialSuccess().ErrorMessage(), body)
			}

			q := `{__name__=~"traces_span_metrics_.+"}`
			at := time.Now().Add(5 * time.Second)
			want := vectorMap(t, refDB, q, at)
			got := vectorMap(t, e, q, at)
			if len(want) < 100 {
				t.Fatalf("connector output has only %d series", len(want))
			}
			if d := diffMaps(got, want); d != "" {
				t.Errorf("span metrics differ from the connector's (%d series):\n%s", len(want), d)
			}
		})
	}
}

var spanMetricsRef struct {
	once sync.Once
	bin  string
	err  error
}

// runSpanMetricsRef runs the spanmetrics connector (built once from
// testdata/spanmetricsref) with args on the traces request in stdin and
// returns its output.
func runSpanMetricsRef(t testing.TB, stdin []byte, args ...string) []byte {
	t.Helper()
	spanMetricsRef.once.Do(func() {
		dir, err := os.MkdirTemp("", "spanmetricsref")
		if err != nil {
			spanMetricsRef.err = err
			return
		}
		spanMetricsRef.bin = filepath.Join(dir, "spanmetricsref")
		cmd := exec.Command("go", "build", "-o", spanMetricsRef.bin, ".")
		cmd.Dir = filepath.Join("testdata", "spanmetricsref")
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			spanMetricsRef.err = fmt.Errorf("build the spanmetrics connector reference: %v\n%s", err, out)
		}
	})
	if spanMetricsRef.err != nil {
		t.Fatal(spanMetricsRef.err)
	}
	cmd := exec.Command(spanMetricsRef.bin, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("spanmetrics connector: %v: %s", err, stderr.String())
	}
	return out
}

func TestSpanWeight(t *testing.T) {
	for _, c := range []struct {
		state string
		attrs map[string]any
		want  float64
	}{
		{"", nil, 1},
		{"vendor=x", nil, 1},
		{"ot=th:0", nil, 1},
		{"ot=th:8", nil, 2},
		{"ot=th:c", nil, 4},
		{"ot=th:e", nil, 8},
		{"ot=th:e6666666666666", nil, 10},
		{"x=1,ot=th:8;rv:abcdefabcdefab", nil, 2},
		{"ot=th:zz", nil, 1},   // invalid threshold
		{"ot=th:8,,=", nil, 1}, // invalid tracestate
		// OTEP 168/170 probability sampling: 2^n, th wins over p.
		{"ot=p:0", nil, 1},
		{"ot=p:3", nil, 8},
		{"x=1,ot=p:10;r:5", nil, 1024},
		{"ot=th:8;p:3", nil, 2},
		{"ot=p:63", nil, 1}, // probability zero: none
		{"ot=p:x", nil, 1},
		// Attributes when the tracestate gives none, in key order.
		{"", map[string]any{"sampling.adjusted_count": int64(5)}, 5},
		{"", map[string]any{"SampleRate": 20.0}, 20},
		{"", map[string]any{"sample_rate": "4"}, 4},
		{"", map[string]any{"SampleRate": int64(3), "sampling.adjusted_count": int64(7)}, 7},
		{"", map[string]any{"SampleRate": 0.5}, 1}, // below 1
		{"", map[string]any{"SampleRate": "lots"}, 1},
		{"", map[string]any{"SampleRate": true, "sample_rate": int64(6)}, 6},
		{"ot=p:2", map[string]any{"SampleRate": int64(100)}, 4}, // tracestate wins
		{"vendor=x", map[string]any{"SampleRate": int64(100)}, 100},
	} {
		span := ptrace.NewSpan()
		span.TraceState().FromRaw(c.state)
		if err := span.Attributes().FromRaw(c.attrs); err != nil {
			t.Fatal(err)
		}
		var wc weightCache
		if got := wc.spanWeight(span); math.Abs(got-c.want) > 1e-6 {
			t.Errorf("%q %v: got weight %v, want %v", c.state, c.attrs, got, c.want)
		}
		if got := wc.spanWeight(span); math.Abs(got-c.want) > 1e-6 { // cached
			t.Errorf("%q %v again: got weight %v, want %v", c.state, c.attrs, got, c.want)
		}
	}
}

// TestTracesPartialSuccess sends good spans with bad ones; the bad ones
// are refused with a reason, the good ones are counted.
func TestTracesPartialSuccess(t *testing.T) {
	now := time.Now()
	for _, asJSON := range []bool{false, true} {
		t.Run(map[bool]string{false: "protobuf", true: "json"}[asJSON], func(t *testing.T) {
			e := openTestDB(t)
			h := newTracesHandler(t, e, SpanMetricsOptions{MaxSeriesPerService: 2}, func() time.Time { return now })
			td := ptrace.NewTraces()
			good := pcommon.TraceID{1}
			noSvc := td.ResourceSpans().AppendEmpty()
			s := noSvc.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
			s.SetTraceID(good)
			s.SetSpanID(pcommon.SpanID{8})
			rs := td.ResourceSpans().AppendEmpty()
			rs.Resource().Attributes().PutStr("service.name", "checkout")
			spans := rs.ScopeSpans().AppendEmpty().Spans()
			add := func(name string, trace pcommon.TraceID, span pcommon.SpanID, end time.Time) {
				s := spans.AppendEmpty()
				s.SetName(name)
				s.SetTraceID(trace)
				s.SetSpanID(span)
				s.SetStartTimestamp(pcommon.NewTimestampFromTime(end.Add(-time.Millisecond)))
				s.SetEndTimestamp(pcommon.NewTimestampFromTime(end))
			}
			add("ok", good, pcommon.SpanID{1}, now)
			add("ok", good, pcommon.SpanID{2}, now.Add(-time.Minute))
			add("no trace id", pcommon.TraceID{}, pcommon.SpanID{3}, now)
			add("no span id", good, pcommon.SpanID{}, now)
			add("future", good, pcommon.SpanID{4}, now.Add(time.Hour))
			add("ancient", good, pcommon.SpanID{5}, now.Add(-48*time.Hour))
			add("second series", good, pcommon.SpanID{6}, now)
			add("third series", good, pcommon.SpanID{7}, now)

			code, resp, body := postTraces(t, h, td, asJSON)
			if code != http.StatusOK {
				t.Fatalf("status %d: %s", code, body)
			}
			ps := resp.PartialSuccess()
			msg := ps.ErrorMessage()
			if ps.RejectedSpans() != 6 {
				t.Errorf("rejected %d spans, want 6: %s", ps.RejectedSpans(), msg)
			}
			for _, want := range []string{"6 of 9 spans rejected", "trace_id is empty", "span_id is empty", "in the future", "in the past",
				"no service.name"} {
				if !strings.Contains(msg, want) {
					t.Errorf("partial success message lacks %q: %s", want, msg)
				}
			}
			got := vectorMap(t, e, `sum by (span_name) (traces_span_metrics_calls_total)`, now)
			want := map[string]float64{`{span_name="ok"}`: 2, `{span_name="second series"}`: 1}
			if d := diffMaps(got, want); d != "" {
				t.Errorf("counted:\n%s", d)
			}
		})
	}
}

func TestTracesBadRequests(t *testing.T) {
	e := openTestDB(t)
	h, err := NewTracesHandler(ReceiverOptions{Storage: e, Limits: Limits{MaxBodyBytes: 1 << 10, MaxSeriesPerRequest: 5}})
	if err != nil {
		t.Fatal(err)
	}
	manySpans := func() []byte {
		td := ptrace.NewTraces()
		spans := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
		for range 6 {
			spans.AppendEmpty()
		}
		b, _ := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		return b
	}()
	for _, c := range []struct {
		name, ct, enc string
		body          []byte
		status        int
		msg           string
	}{
		{"malformed protobuf", "application/x-protobuf", "", []byte{0x0a, 0xff, 0x01}, 400, "malformed OTLP protobuf"},
		{"malformed JSON", "application/json", "", []byte(`{"resourceSpans": [`), 400, "malformed OTLP JSON"},
		{"trace id of 3 bytes", "application/x-protobuf", "", []byte{0x0a, 0x09, 0x12, 0x07, 0x12, 0x05, 0x0a, 0x03, 1, 2, 3}, 400, "malformed OTLP protobuf"},
		{"trace id not hex", "application/json", "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`), 400, "malformed OTLP JSON"},
		{"oversized body", "application/x-protobuf", "", make([]byte, 2<<10), 413, "exceeds the limit"},
		{"too many spans", "application/x-protobuf", "", manySpans, 413, "more than 5 spans"},
		{"bad gzip", "application/x-protobuf", "gzip", []byte("not gzip"), 400, "malformed gzip"},
		{"unsupported encoding", "application/x-protobuf", "br", []byte{}, 415, "Content-Encoding"},
		{"unsupported type", "text/plain", "", []byte("x"), 415, "Content-Type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := postTracesBody(t, h, c.body, c.ct, c.enc)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, body)
			}
			if msg := errorMessage(t, body); !strings.Contains(msg, c.msg) {
				t.Errorf("error %q lacks %q", msg, c.msg)
			}
		})
	}
}

// TestTracesExemplars checks that error and slow spans leave their trace
// and span IDs as exemplars of their samples, in a TSDB with exemplar
// storage on.
func TestTracesExemplars(t *testing.T) {
	opts := tsdb.DefaultOptions()
	opts.EnableExemplarStorage = true
	opts.MaxExemplars = 1000
	db, err := tsdb.Open(t.TempDir(), nil, nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	h := newTracesHandler(t, db, SpanMetricsOptions{SlowSpan: 500 * time.Millisecond}, func() time.Time { return now })
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	add := func(trace byte, d time.Duration, code ptrace.StatusCode) {
		s := spans.AppendEmpty()
		s.SetName("GET /")
		s.SetTraceID(pcommon.TraceID{trace})
		s.SetSpanID(pcommon.SpanID{trace})
		s.Status().SetCode(code)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-d)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	}
	add(1, time.Millisecond, ptrace.StatusCodeOk)      // fast, ok: none
	add(2, 3*time.Millisecond, ptrace.StatusCodeError) // error: calls and bucket le=4
	add(3, 700*time.Millisecond, ptrace.StatusCodeOk)  // slow: bucket le=800
	add(4, 2*time.Millisecond, ptrace.StatusCodeUnset) // fast: none
	if code, resp, body := postTraces(t, h, td, false); code != 200 || resp.PartialSuccess().RejectedSpans() != 0 {
		t.Fatalf("%d %s", code, body)
	}
	eq, err := db.ExemplarQuerier(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res, err := eq.Select(0, math.MaxInt64, []*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, "__name__", "traces_span_metrics_.+")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res {
		for _, ex := range r.Exemplars {
			got = append(got, fmt.Sprintf("%s le=%s status=%s %s", r.SeriesLabels.Get("__name__"), r.SeriesLabels.Get("le"), r.SeriesLabels.Get("status_code"), ex.Labels))
		}
	}
	sort.Strings(got)
	want := []string{
		`traces_span_metrics_calls_total le= status=STATUS_CODE_ERROR {span_id="0200000000000000", trace_id="02000000000000000000000000000000"}`,
		`traces_span_metrics_duration_milliseconds_bucket le=4 status=STATUS_CODE_ERROR {span_id="0200000000000000", trace_id="02000000000000000000000000000000"}`,
		`traces_span_metrics_duration_milliseconds_bucket le=800 status=STATUS_CODE_OK {span_id="0300000000000000", trace_id="03000000000000000000000000000000"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("exemplars:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTracesSeriesRestoredAfterFault checks that a failed commit leaves
// the running totals as they were, so the sender's retry is not counted
// twice.
func TestTracesRetryAfterFaultCountsOnce(t *testing.T) {
	e := openTestDB(t)
	fs := &faultyStorage{Storage: e}
	now := time.Now()
	h := newTracesHandler(t, fs, SpanMetricsOptions{}, func() time.Time { return now })
	td := referenceTraces(now)
	fs.fail = true
	if code, _, body := postTraces(t, h, td, false); code != http.StatusServiceUnavailable {
		t.Fatalf("with a failing storage: %d %s, want 503", code, body)
	}
	fs.fail = false
	if code, _, body := postTraces(t, h, td, false); code != http.StatusOK {
		t.Fatalf("retry: %d %s", code, body)
	}
	// Weights 1, 2, 4 and 1 in turn: 480 spans count 960.
	got := vectorMap(t, e, `sum(traces_span_metrics_duration_milliseconds_count)`, now.Add(time.Second))
	sampled := vectorMap(t, e, `sum(`+SampledSpansMetric+`)`, now.Add(time.Second))
	if got["{}"] != 960 || sampled["{}"] != 480 {
		t.Errorf("after one failed and one good request: %v counts, %v sampled spans, want 960 and 480", got, sampled)
	}
}

type faultyStorage struct {
	Storage
	fail bool
}

func (f *faultyStorage) AppenderV2(ctx context.Context) storage.AppenderV2 {
	app := f.Storage.AppenderV2(ctx)
	if f.fail {
		return failingCommit{app}
	}
	return app
}

// failingCommit is an appender whose commit fails, as on a full disk.
type failingCommit struct{ storage.AppenderV2 }

func (f failingCommit) Commit() error {
	_ = f.AppenderV2.Rollback()
	return errors.New("disk full")
}

// TestTracesConcurrentRequests posts from several goroutines at once: no
// span is lost or counted twice.
func TestTracesConcurrentRequests(t *testing.T) {
	e := openTestDB(t)
	now := time.Now()
	h := newTracesHandler(t, e, SpanMetricsOptions{}, func() time.Time { return now })
	pb, err := ptraceotlp.NewExportRequestFromTraces(referenceTraces(now)).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	const workers, requests = 4, 5
	errs := make(chan string, workers*requests)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range requests {
				if code, _, body := postTracesBody(t, h, pb, "application/x-protobuf", ""); code != http.StatusOK {
					errs <- body
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// Each request is 480 spans weighing 960.
	at := now.Add(time.Minute)
	got := vectorMap(t, e, `sum(traces_span_metrics_calls_total)`, at)
	sampled := vectorMap(t, e, `sum(`+SampledSpansMetric+`)`, at)
	if got["{}"] != workers*requests*960 || sampled["{}"] != workers*requests*480 {
		t.Errorf("calls %v, sampled %v, want %d and %d", got, sampled, workers*requests*960, workers*requests*480)
	}
}
