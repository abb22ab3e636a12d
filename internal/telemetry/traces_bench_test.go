package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

// benchDimensions are the 10 dimensions of the benchmarks, on top of the
// connector's service.name, span.name, span.kind and status.code.
var benchDimensions = []SpanDimension{
	{Name: "http.route"}, {Name: "http.request.method"}, {Name: "http.response.status_code"},
	{Name: "server.address"}, {Name: "network.protocol.version"}, {Name: "url.scheme"},
	{Name: "rpc.system"}, {Name: "deployment.environment"}, {Name: "cloud.region"}, {Name: "k8s.namespace.name"},
}

// benchTraces is a batch of n spans from 4 services, as an SDK or a
// collector sends them: 7 span attributes and 3 resource attributes used
// as dimensions, about 200 label sets in all.
func benchTraces(n int, now time.Time) ptrace.Traces {
	td := ptrace.NewTraces()
	const services = 4
	for svc := range services {
		rs := td.ResourceSpans().AppendEmpty()
		ra := rs.Resource().Attributes()
		ra.PutStr("service.name", "svc-"+strconv.Itoa(svc))
		ra.PutStr("service.instance.id", "pod-"+strconv.Itoa(svc))
		ra.PutStr("deployment.environment", "prod")
		ra.PutStr("cloud.region", "eu-west-1")
		ra.PutStr("k8s.namespace.name", "shop")
		spans := rs.ScopeSpans().AppendEmpty().Spans()
		for i := range n / services {
			s := spans.AppendEmpty()
			s.SetTraceID(pcommon.TraceID{byte(i), byte(i >> 8), byte(svc), 1})
			s.SetSpanID(pcommon.SpanID{byte(i), byte(i >> 8), 2})
			route := "/api/v1/item/" + strconv.Itoa(i%10)
			s.SetName("GET " + route)
			s.SetKind(ptrace.SpanKindServer)
			code := 200
			if i%50 == 0 {
				code = 500
				s.Status().SetCode(ptrace.StatusCodeError)
			}
			a := s.Attributes()
			a.PutStr("http.route", route)
			a.PutStr("http.request.method", []string{"GET", "POST"}[i%2])
			a.PutInt("http.response.status_code", int64(code))
			a.PutStr("server.address", "svc-"+strconv.Itoa(svc)+".shop.svc")
			a.PutStr("network.protocol.version", "1.1")
			a.PutStr("url.scheme", "https")
			a.PutStr("rpc.system", "none")
			a.PutStr("user_agent.original", "Mozilla/5.0")
			if i%4 == 0 {
				s.TraceState().FromRaw("ot=th:c")
			}
			d := time.Duration(i%1000) * time.Millisecond
			s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-d)))
			s.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
		}
	}
	return td
}

const benchBatch = 1024

// BenchmarkTracesConsume measures spans counted into the span metrics and
// appended to the embedded TSDB (one commit per batch of 1,024 spans, as
// a collector sends them), from decoded spans, as the connector's
// ConsumeTraces; the "connector" case runs the spanmetrics connector on
// the same spans with the same dimensions in the same run.
func BenchmarkTracesConsume(b *testing.B) {
	now := time.Now()
	td := benchTraces(benchBatch, now)
	b.Run("qsp", func(b *testing.B) {
		e := openTestDB(b)
		h := newTracesHandler(b, e, SpanMetricsOptions{Dimensions: benchDimensions}, time.Now)
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := h.consume(ctx, td); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "spans/s")
		b.ReportMetric(float64(len(h.agg.series)), "series")
	})
	b.Run("connector", func(b *testing.B) {
		body, err := ptraceotlp.NewExportRequestFromTraces(td).MarshalProto()
		if err != nil {
			b.Fatal(err)
		}
		var dims []string
		for _, d := range benchDimensions {
			dims = append(dims, d.Name)
		}
		// The connector runs in its own process for 3s; b.N does not
		// apply, its figures are reported as metrics.
		out := string(runSpanMetricsRef(b, body, "-bench", "3s", "-dims", strings.Join(dims, ",")))
		for b.Loop() {
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var name string
			var v float64
			if _, err := fmt.Sscanf(line, "%s %g", &name, &v); err != nil {
				b.Fatalf("connector output %q: %v", line, err)
			}
			switch name {
			case "spans_per_sec":
				b.ReportMetric(v, "spans/s")
			case "ns_per_span":
				b.ReportMetric(v, "ns/span")
			}
		}
	})
}

// BenchmarkTracesHTTP measures whole OTLP/HTTP requests (protobuf,
// pre-scan, decode, span metrics, TSDB commit), from 2 goroutines.
func BenchmarkTracesHTTP(b *testing.B) {
	now := time.Now()
	body, err := ptraceotlp.NewExportRequestFromTraces(benchTraces(benchBatch, now)).MarshalProto()
	if err != nil {
		b.Fatal(err)
	}
	e := openTestDB(b)
	h := newTracesHandler(b, e, SpanMetricsOptions{Dimensions: benchDimensions}, time.Now)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, "/v1/traces", bytes.NewReader(body))
			r.Header.Set("Content-Type", "application/x-protobuf")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "spans/s")
}

// BenchmarkSpanSeriesMemory measures the heap one active span-metric
// label set holds (its calls counter and 16-bucket histogram: 20 TSDB
// series), the aggregator's state and the TSDB head's together.
func BenchmarkSpanSeriesMemory(b *testing.B) {
	const sets = 5000
	now := time.Now()
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "checkout")
	spans := rs.ScopeSpans().AppendEmpty().Spans()
	for i := range sets {
		s := spans.AppendEmpty()
		s.SetTraceID(pcommon.TraceID{1})
		s.SetSpanID(pcommon.SpanID{1})
		s.SetName("op")
		for _, d := range benchDimensions {
			s.Attributes().PutStr(d.Name, d.Name+"-"+strconv.Itoa(i%7))
		}
		s.Attributes().PutStr("http.route", "/r/"+strconv.Itoa(i))
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-time.Millisecond)))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(now))
	}
	for _, withTSDB := range []bool{true, false} {
		b.Run(map[bool]string{true: "tsdb", false: "aggregator"}[withTSDB], func(b *testing.B) {
			benchSeriesMemory(b, td, sets, withTSDB)
		})
	}
}

func benchSeriesMemory(b *testing.B, td ptrace.Traces, sets int, withTSDB bool) {
	b.ReportAllocs()
	var perSet float64
	for b.Loop() {
		b.StopTimer()
		var st Storage = discardStorage{}
		if withTSDB {
			st = openTestDB(b)
		}
		h := newTracesHandler(b, st, SpanMetricsOptions{Dimensions: benchDimensions, MaxSeriesPerService: sets}, time.Now)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		b.StartTimer()
		if _, err := h.consume(context.Background(), td); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		if n := len(h.agg.series); n != sets {
			b.Fatalf("%d label sets, want %d", n, sets)
		}
		perSet = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(sets)
		runtime.KeepAlive(h)
		runtime.KeepAlive(st)
		b.StartTimer()
	}
	b.ReportMetric(perSet, "heap-B/labelset")
}

// discardStorage takes appends and keeps nothing: the aggregator's own
// memory, without the TSDB's.
type discardStorage struct{ Storage }

func (discardStorage) AppenderV2(context.Context) storage.AppenderV2 { return discardAppender{} }

type discardAppender struct{ storage.AppenderV2 }

func (discardAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AOptions) (storage.SeriesRef, error) {
	return 0, nil
}
func (discardAppender) Commit() error   { return nil }
func (discardAppender) Rollback() error { return nil }
