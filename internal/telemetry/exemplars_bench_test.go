package telemetry

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
)

// BenchmarkWriteHandlerExemplars is BenchmarkWriteHandler's request
// (2,000 series × 1 sample) with an exemplar (trace_id, span_id) on
// every tenth series, against the same request without: the cost of
// keeping exemplars on the ingest path.
//
//	go test -run '^$' -bench BenchmarkWriteHandlerExemplars -count 6 ./internal/telemetry
func BenchmarkWriteHandlerExemplars(b *testing.B) {
	for _, every := range []int{0, 10} {
		b.Run(fmt.Sprintf("exemplarEvery=%d", every), func(b *testing.B) {
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
					ts := base + int64(n)
					req.Timeseries[i] = prompb.TimeSeries{Labels: ls[i], Samples: []prompb.Sample{{Value: float64(n + i), Timestamp: ts}}}
					if every > 0 && i%every == 0 {
						req.Timeseries[i].Exemplars = []prompb.Exemplar{{Labels: []prompb.Label{
							{Name: "span_id", Value: fmt.Sprintf("%016x", n*7919+i)},
							{Name: "trace_id", Value: fmt.Sprintf("%032x", n*104729+i)},
						}, Value: 1, Timestamp: ts}}
					}
				}
				raw, err := req.Marshal()
				if err != nil {
					b.Fatal(err)
				}
				return snappy.Encode(nil, raw)
			}
			const nBodies = 256
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
		})
	}
}

// BenchmarkExemplarLookup measures one exemplar look-up of a selector
// matching 10 of 1,000 series in a full default ring (100,000
// exemplars): what a page or an alert costs in embedded mode.
//
//	go test -run '^$' -bench BenchmarkExemplarLookup -count 6 ./internal/telemetry
func BenchmarkExemplarLookup(b *testing.B) {
	e := openTestDB(b)
	t0 := int64(1_700_000_000_000)
	app := e.AppenderV2(b.Context())
	for n := range 100 {
		for s := range 1000 {
			ts := t0 + int64(n)*1000
			ls := labels.FromStrings("__name__", "http_requests_total", "code", fmt.Sprint(200+s%100), "pod", fmt.Sprint(s))
			ex := exemplar.Exemplar{Labels: labels.FromStrings("trace_id", fmt.Sprintf("%032x", n*1000+s)), Value: 1, Ts: ts, HasTs: true}
			if _, err := app.Append(0, ls, 0, ts, float64(n), nil, nil, storage.AOptions{Exemplars: []exemplar.Exemplar{ex}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		res, err := e.Exemplars(b.Context(), `sum(rate(http_requests_total{code="250"}[5m]))`, time.UnixMilli(t0), time.UnixMilli(t0+100_000))
		if err != nil || len(res) != 10 || len(res[0].Exemplars) != 100 {
			b.Fatalf("%d series %v", len(res), err)
		}
	}
}
