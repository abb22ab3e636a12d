package telemetry

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// BenchmarkWriteHandler measures the remote_write handler in process (no
// network, no Prometheus): one op is one queue-manager-sized request of
// 2,000 series × 1 sample into the embedded TSDB, steady state (the
// series exist). It is the figure the request budget and the decoder
// bounds must not slow down.
//
//	go test -run '^$' -bench 'BenchmarkWriteHandler|BenchmarkOTLPHandler' -count 6 ./internal/telemetry
func BenchmarkWriteHandler(b *testing.B) {
	e := openTestDB(b)
	h, err := NewWriteHandler(ReceiverOptions{Storage: e})
	if err != nil {
		b.Fatal(err)
	}
	ls := benchLabels()[:benchSeriesPerReq]
	base := time.Now().Add(-30 * time.Minute).UnixMilli()
	body := func(n int) []byte {
		req := prompb.WriteRequest{Timeseries: make([]prompb.TimeSeries, len(ls))}
		for i := range ls {
			req.Timeseries[i] = prompb.TimeSeries{Labels: ls[i], Samples: []prompb.Sample{{Value: float64(n + i), Timestamp: base + int64(n)}}}
		}
		raw, err := req.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		return snappy.Encode(nil, raw)
	}
	// Pre-encode enough distinct requests (increasing timestamps).
	const nBodies = 512
	bodies := make([][]byte, nBodies)
	for i := range bodies {
		bodies[i] = body(i)
	}
	post := func(raw []byte) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "snappy")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	post(bodies[0])
	b.ReportAllocs()
	b.SetBytes(int64(len(bodies[1])))
	i := 1
	for b.Loop() {
		if i == nBodies {
			b.StopTimer()
			base += nBodies
			for j := range bodies {
				bodies[j] = body(j)
			}
			i = 0
			b.StartTimer()
		}
		post(bodies[i])
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchSeriesPerReq), "ns/sample")
}

// BenchmarkOTLPHandler measures the OTLP/HTTP metrics handler in process:
// one op is one gzip-compressed protobuf request of 1,000 gauge points
// (100 metrics × 10 attribute sets), as a collector's batch processor
// sends them.
func BenchmarkOTLPHandler(b *testing.B) {
	e := openTestDB(b)
	h, err := NewOTLPHandler(ReceiverOptions{Storage: e})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-30 * time.Minute)
	body := func(n int) []byte {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "checkout")
		rm.Resource().Attributes().PutStr("service.instance.id", "pod-1")
		ms := rm.ScopeMetrics().AppendEmpty().Metrics()
		for m := range 100 {
			g := ms.AppendEmpty()
			g.SetName("app_queue_depth_" + strconv.Itoa(m))
			dps := g.SetEmptyGauge().DataPoints()
			for a := range 10 {
				p := dps.AppendEmpty()
				p.Attributes().PutStr("shard", strconv.Itoa(a))
				p.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Duration(n) * time.Millisecond)))
				p.SetDoubleValue(float64(n + a))
			}
		}
		raw, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(raw)
		_ = zw.Close()
		return buf.Bytes()
	}
	const nBodies = 256
	bodies := make([][]byte, nBodies)
	for i := range bodies {
		bodies[i] = body(i)
	}
	post := func(raw []byte) {
		req := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/x-protobuf")
		req.Header.Set("Content-Encoding", "gzip")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
	post(bodies[0])
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		if i == nBodies {
			b.StopTimer()
			start = start.Add(nBodies * time.Millisecond)
			for j := range bodies {
				bodies[j] = body(j)
			}
			i = 0
			b.StartTimer()
		}
		post(bodies[i])
		i++
	}
}
