package telemetry

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

var otlpNow = time.UnixMilli(1_700_000_000_000)

func newOTLPHandler(t testing.TB, e *Embedded, tr OTLPTranslation) *OTLPHandler {
	t.Helper()
	h, err := NewOTLPHandler(ReceiverOptions{Storage: e, Now: func() time.Time { return otlpNow }, OTLP: tr})
	if err != nil {
		t.Fatalf("new otlp handler: %v", err)
	}
	return h
}

// otlpResource starts a request with one resource: the checkout service
// of the shop namespace, on host h1.
func otlpResource() (pmetric.Metrics, pmetric.MetricSlice) {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	attrs := rm.Resource().Attributes()
	attrs.PutStr("service.name", "checkout")
	attrs.PutStr("service.namespace", "shop")
	attrs.PutStr("service.instance.id", "pod-1")
	attrs.PutStr("host.name", "h1")
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName("qsp-test")
	return md, sm.Metrics()
}

func ts(offset time.Duration) pcommon.Timestamp {
	return pcommon.NewTimestampFromTime(otlpNow.Add(offset))
}

// postOTLP sends md as protobuf or JSON and returns the status and the
// decoded response (for 200) or body.
func postOTLP(t testing.TB, h http.Handler, md pmetric.Metrics, asJSON bool) (int, pmetricotlp.ExportResponse, string) {
	t.Helper()
	req := pmetricotlp.NewExportRequestFromMetrics(md)
	var (
		body []byte
		err  error
		ct   = "application/x-protobuf"
	)
	if asJSON {
		body, err = req.MarshalJSON()
		ct = "application/json"
	} else {
		body, err = req.MarshalProto()
	}
	if err != nil {
		t.Fatal(err)
	}
	return postOTLPBody(t, h, body, ct, "")
}

func postOTLPBody(t testing.TB, h http.Handler, body []byte, ct, encoding string) (int, pmetricotlp.ExportResponse, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
	r.Header.Set("Content-Type", ct)
	if encoding != "" {
		r.Header.Set("Content-Encoding", encoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	resp := pmetricotlp.NewExportResponse()
	b, _ := io.ReadAll(rec.Body)
	if rec.Code == http.StatusOK {
		var err error
		if rec.Header().Get("Content-Type") != ct {
			t.Errorf("response Content-Type %q, want %q", rec.Header().Get("Content-Type"), ct)
		}
		if ct == "application/json" {
			err = resp.UnmarshalJSON(b)
		} else {
			err = resp.UnmarshalProto(b)
		}
		if err != nil {
			t.Fatalf("decode response: %v (%q)", err, b)
		}
	}
	return rec.Code, resp, string(b)
}

func TestOTLPGaugeAndResourceAttributes(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		name := map[bool]string{false: "protobuf", true: "json"}[asJSON]
		t.Run(name, func(t *testing.T) {
			e := openTestDB(t)
			h := newOTLPHandler(t, e, OTLPTranslation{PromoteResourceAttributes: []string{"host.name"}})
			md, mets := otlpResource()
			m := mets.AppendEmpty()
			m.SetName("memory.usage")
			m.SetUnit("By")
			p := m.SetEmptyGauge().DataPoints().AppendEmpty()
			p.SetTimestamp(ts(-time.Second))
			p.SetDoubleValue(1024.5)
			p.Attributes().PutStr("area", "heap")
			code, resp, body := postOTLP(t, h, md, asJSON)
			if code != http.StatusOK || resp.PartialSuccess().RejectedDataPoints() != 0 {
				t.Fatalf("status %d, partial %v: %s", code, resp.PartialSuccess().ErrorMessage(), body)
			}
			at := otlpNow.Add(-time.Second).UnixMilli()
			got := rawSamples(t, e, `memory_usage_bytes`, ms(at-1), ms(at))
			want := `{__name__="memory_usage_bytes", area="heap", host_name="h1", instance="pod-1", job="shop/checkout"} =>` + "\n1024.5 @[1699999999000]"
			if got.String() != want {
				t.Errorf("gauge:\n%s\nwant:\n%s", got, want)
			}
			// Identifying attributes become job and instance; the others
			// go to target_info.
			info := rawSamples(t, e, `target_info`, ms(at-1), ms(at))
			if len(info) != 1 || info[0].Metric.String() != `{__name__="target_info", host_name="h1", instance="pod-1", job="shop/checkout"}` {
				t.Errorf("target_info: %s", info)
			}
		})
	}
}

func TestOTLPSumsAndDeltaToCumulative(t *testing.T) {
	e := openTestDB(t)
	h := newOTLPHandler(t, e, OTLPTranslation{})
	send := func(temporality pmetric.AggregationTemporality, name string, points ...[2]float64) pmetricotlp.ExportResponse {
		t.Helper()
		md, mets := otlpResource()
		m := mets.AppendEmpty()
		m.SetName(name)
		m.SetUnit("{request}")
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(temporality)
		for _, pt := range points {
			p := s.DataPoints().AppendEmpty()
			p.SetStartTimestamp(ts(-time.Hour))
			p.SetTimestamp(ts(time.Duration(pt[0]) * time.Second))
			p.SetIntValue(int64(pt[1]))
			p.Attributes().PutStr("code", "200")
		}
		code, resp, body := postOTLP(t, h, md, false)
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		return resp
	}
	send(pmetric.AggregationTemporalityCumulative, "http.requests", [2]float64{-30, 7}, [2]float64{-15, 9})
	// Deltas 5, 3 | 2 across two requests become 5, 8, 10.
	send(pmetric.AggregationTemporalityDelta, "rpc.calls", [2]float64{-30, 5}, [2]float64{-20, 3})
	send(pmetric.AggregationTemporalityDelta, "rpc.calls", [2]float64{-10, 2})
	// A delta point older than the last one is rejected, not added.
	resp := send(pmetric.AggregationTemporalityDelta, "rpc.calls", [2]float64{-25, 100})
	if ps := resp.PartialSuccess(); ps.RejectedDataPoints() != 1 || !strings.Contains(ps.ErrorMessage(), "not after the previous one") {
		t.Errorf("out-of-order delta: partial success %d %q", ps.RejectedDataPoints(), ps.ErrorMessage())
	}
	got := rawSamples(t, e, `{__name__=~"http_requests_total|rpc_calls_total"}`, otlpNow.Add(-time.Minute), otlpNow)
	want := promql.Matrix{
		{Metric: mustLabels("__name__", "http_requests_total", "code", "200", "instance", "pod-1", "job", "shop/checkout"),
			Floats: []promql.FPoint{{T: otlpNow.UnixMilli() - 30_000, F: 7}, {T: otlpNow.UnixMilli() - 15_000, F: 9}}},
		{Metric: mustLabels("__name__", "rpc_calls_total", "code", "200", "instance", "pod-1", "job", "shop/checkout"),
			Floats: []promql.FPoint{{T: otlpNow.UnixMilli() - 30_000, F: 5}, {T: otlpNow.UnixMilli() - 20_000, F: 8}, {T: otlpNow.UnixMilli() - 10_000, F: 10}}},
	}
	if got.String() != want.String() {
		t.Errorf("sums:\n%s\nwant:\n%s", got, want)
	}
}

func TestOTLPHistograms(t *testing.T) {
	e := openTestDB(t)
	h := newOTLPHandler(t, e, OTLPTranslation{})
	send := func(name string, temporality pmetric.AggregationTemporality, at time.Duration, counts []uint64, sum float64) {
		t.Helper()
		md, mets := otlpResource()
		m := mets.AppendEmpty()
		m.SetName(name)
		m.SetUnit("s")
		hist := m.SetEmptyHistogram()
		hist.SetAggregationTemporality(temporality)
		p := hist.DataPoints().AppendEmpty()
		p.SetStartTimestamp(ts(-time.Hour))
		p.SetTimestamp(ts(at))
		p.ExplicitBounds().FromRaw([]float64{0.1, 0.5, 1})
		p.BucketCounts().FromRaw(counts)
		var n uint64
		for _, c := range counts {
			n += c
		}
		p.SetCount(n)
		p.SetSum(sum)
		if code, _, body := postOTLP(t, h, md, true); code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
	}
	send("latency", pmetric.AggregationTemporalityCumulative, -10*time.Second, []uint64{4, 3, 2, 1}, 5.5)
	send("rpc.latency", pmetric.AggregationTemporalityDelta, -20*time.Second, []uint64{1, 1, 0, 0}, 0.4)
	send("rpc.latency", pmetric.AggregationTemporalityDelta, -10*time.Second, []uint64{2, 0, 1, 1}, 3.1)
	at := ms(otlpNow.Add(-10 * time.Second).UnixMilli())
	for _, c := range []struct {
		query string
		want  string
	}{
		// Explicit buckets become cumulative _bucket series with +Inf.
		{`latency_seconds_bucket`, `0.1:4 0.5:7 1:9 +Inf:10`},
		{`latency_seconds_sum`, `5.5`},
		{`latency_seconds_count`, `10`},
		// Deltas {1,1,0,0}+{2,0,1,1} = {3,1,1,1}: cumulative 3, 4, 5, 6.
		{`rpc_latency_seconds_bucket`, `0.1:3 0.5:4 1:5 +Inf:6`},
		{`rpc_latency_seconds_sum`, `3.5`},
		{`rpc_latency_seconds_count`, `6`},
	} {
		v, err := e.Instant(context.Background(), c.query, at)
		if err != nil {
			t.Fatal(err)
		}
		var parts []string
		sortByLe(v)
		for _, s := range v {
			if le := s.Metric.Get("le"); le != "" {
				parts = append(parts, le+":"+formatValue(s.F))
			} else {
				parts = append(parts, formatValue(s.F))
			}
		}
		if got := strings.Join(parts, " "); got != c.want {
			t.Errorf("%s = %s, want %s", c.query, got, c.want)
		}
	}
}

// sortByLe orders histogram bucket samples by their upper bound.
func sortByLe(v promql.Vector) {
	le := func(s promql.Sample) float64 {
		f, err := strconv.ParseFloat(s.Metric.Get("le"), 64)
		if err != nil {
			return math.Inf(-1)
		}
		return f
	}
	slices.SortFunc(v, func(a, b promql.Sample) int { return cmp.Compare(le(a), le(b)) })
}

func formatValue(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func TestOTLPPartialSuccess(t *testing.T) {
	for _, asJSON := range []bool{false, true} {
		e := openTestDB(t)
		h := newOTLPHandler(t, e, OTLPTranslation{})
		md, mets := otlpResource()
		g := mets.AppendEmpty()
		g.SetName("queue.depth")
		// Four points, two of them not finite, then one in the far future.
		dps := g.SetEmptyGauge().DataPoints()
		for i, v := range []float64{3, math.NaN(), math.Inf(1), 4} {
			p := dps.AppendEmpty()
			p.SetTimestamp(ts(time.Duration(i-10) * time.Second))
			p.SetDoubleValue(v)
		}
		future := dps.AppendEmpty()
		future.SetTimestamp(ts(time.Hour))
		future.SetDoubleValue(1)
		// A sum without temporality is dropped whole.
		bad := mets.AppendEmpty()
		bad.SetName("broken")
		bad.SetEmptySum().DataPoints().AppendEmpty().SetTimestamp(ts(-time.Second))

		code, resp, body := postOTLP(t, h, md, asJSON)
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		ps := resp.PartialSuccess()
		if ps.RejectedDataPoints() != 4 {
			t.Errorf("rejected %d data points, want 4 (NaN, +Inf, future, no temporality): %s", ps.RejectedDataPoints(), ps.ErrorMessage())
		}
		for _, want := range []string{"4 of 6 data points rejected", "value NaN is not finite", "value +Inf is not finite", "in the future", "aggregation temporality"} {
			if !strings.Contains(ps.ErrorMessage(), want) {
				t.Errorf("message %q lacks %q", ps.ErrorMessage(), want)
			}
		}
		got := rawSamples(t, e, `queue_depth`, otlpNow.Add(-time.Minute), otlpNow.Add(2*time.Hour))
		if got.String() != "{__name__=\"queue_depth\", instance=\"pod-1\", job=\"shop/checkout\"} =>\n3 @[1699999990000]\n4 @[1699999993000]" {
			t.Errorf("stored %s", got)
		}
	}
}

func TestOTLPGzip(t *testing.T) {
	e := openTestDB(t)
	h := newOTLPHandler(t, e, OTLPTranslation{})
	md, mets := otlpResource()
	m := mets.AppendEmpty()
	m.SetName("up")
	p := m.SetEmptyGauge().DataPoints().AppendEmpty()
	p.SetTimestamp(ts(0))
	p.SetIntValue(1)
	raw, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(raw)
	_ = zw.Close()
	if code, _, body := postOTLPBody(t, h, buf.Bytes(), "application/x-protobuf", "gzip"); code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if got := rawSamples(t, e, `up`, otlpNow.Add(-time.Second), otlpNow); len(got) != 1 {
		t.Errorf("gzip request not stored: %s", got)
	}
}
