package telemetry

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

const fuzzMaxInput = 1 << 20

// FuzzRemoteWriteDecode checks the hand-written WriteRequest decoder
// against the generated gogo code: it never panics, and whenever both
// accept an input they agree on every label and sample.
func FuzzRemoteWriteDecode(f *testing.F) {
	at := int64(1_700_000_000_000)
	for _, req := range []prompb.WriteRequest{
		{Timeseries: []prompb.TimeSeries{
			series([]prompb.Sample{{Value: 1, Timestamp: at}, {Value: 2, Timestamp: at + 15_000}}, "__name__", "up", "job", "api", "instance", "10.0.0.1:8080"),
			series([]prompb.Sample{{Value: math.NaN(), Timestamp: at}}, "__name__", "x", "le", "+Inf"),
		}},
		{Timeseries: []prompb.TimeSeries{series(nil, "job", "")}},
		{Metadata: []prompb.MetricMetadata{{MetricFamilyName: "up", Type: prompb.MetricMetadata_GAUGE, Help: "up"}}},
		{Timeseries: []prompb.TimeSeries{{
			Labels:     []prompb.Label{{Name: "__name__", Value: "h"}},
			Histograms: []prompb.Histogram{{Count: &prompb.Histogram_CountInt{CountInt: 3}, Sum: 1.5, Timestamp: at}},
			Exemplars:  []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "abc"}}, Value: 1, Timestamp: at}},
		}}},
	} {
		b, err := req.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x0a, 0x02, 0x0a, 0x00})
	f.Add([]byte{})
	// The decoder bombs: one series of empty histogram fields, one of
	// empty labels, one histogram of empty spans.
	f.Add(histogramBomb(4096))
	f.Add(emptyFieldSeries(fieldTimeSeriesLabels, 4096))
	f.Add(spanBomb(4096))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		// Bounded decoding: under small limits and a small budget the
		// decoder holds no more than the budget, whatever the input.
		budget, _ := NewBudget(1<<20, nil)
		res := budget.Reserve("fuzz")
		var bounded writeRequest
		errBounded := bounded.decode(data, decodeLimits{series: 100, labelsPerSeries: 16, samples: 1000, buckets: 1000}, &res)
		if len(bounded.series) > 100 || len(bounded.samples)+len(bounded.histograms)+len(bounded.exemplars) > 1000 || (bounded.buckets > 1000 && errBounded == nil) {
			t.Fatalf("limits passed: %d series, %d samples, %d histograms, %d exemplars, %d buckets",
				len(bounded.series), len(bounded.samples), len(bounded.histograms), len(bounded.exemplars), bounded.buckets)
		}
		if bounded.size() > res.Held() {
			t.Fatalf("decoder holds %d bytes, took %d from the budget", bounded.size(), res.Held())
		}
		res.Release()
		if budget.InUse() != 0 {
			t.Fatalf("budget in use after release: %d", budget.InUse())
		}

		var got writeRequest
		errGot := got.decode(data, decodeLimits{}, nil)
		var want prompb.WriteRequest
		errWant := want.Unmarshal(data)
		if errGot != nil || errWant != nil {
			return
		}
		if len(got.series) != len(want.Timeseries) {
			t.Fatalf("%d series, gogo %d", len(got.series), len(want.Timeseries))
		}
		sb := labels.NewScratchBuilder(8)
		for i, ws := range want.Timeseries {
			s := &got.series[i]
			gl := got.labels[s.labels.start:s.labels.end]
			if len(gl) != len(ws.Labels) {
				t.Fatalf("series %d: %d labels, gogo %d", i, len(gl), len(ws.Labels))
			}
			for j, l := range ws.Labels {
				if string(gl[j].name) != l.Name || string(gl[j].value) != l.Value {
					t.Fatalf("series %d label %d: %q=%q, gogo %q=%q", i, j, gl[j].name, gl[j].value, l.Name, l.Value)
				}
			}
			gs := got.samples[s.samples.start:s.samples.end]
			if len(gs) != len(ws.Samples) {
				t.Fatalf("series %d: %d samples, gogo %d", i, len(gs), len(ws.Samples))
			}
			for j, smp := range ws.Samples {
				if gs[j].Timestamp != smp.Timestamp || math.Float64bits(gs[j].Value) != math.Float64bits(smp.Value) {
					t.Fatalf("series %d sample %d: %v, gogo %v", i, j, gs[j], smp)
				}
			}
			if n := s.histograms.end - s.histograms.start; n != len(ws.Histograms) {
				t.Fatalf("series %d: %d histograms, gogo %d", i, n, len(ws.Histograms))
			}
			gex := got.exemplars[s.exemplars.start:s.exemplars.end]
			if len(gex) != len(ws.Exemplars) {
				t.Fatalf("series %d: %d exemplars, gogo %d", i, len(gex), len(ws.Exemplars))
			}
			for j, we := range ws.Exemplars {
				ge := gex[j]
				el := got.exLabels[ge.labels.start:ge.labels.end]
				if ge.ts != we.Timestamp || math.Float64bits(ge.value) != math.Float64bits(we.Value) || len(el) != len(we.Labels) {
					t.Fatalf("series %d exemplar %d: %+v, gogo %+v", i, j, ge, we)
				}
				for k, l := range we.Labels {
					if string(el[k].name) != l.Name || string(el[k].value) != l.Value {
						t.Fatalf("series %d exemplar %d label %d: %q=%q, gogo %q=%q", i, j, k, el[k].name, el[k].value, l.Name, l.Value)
					}
				}
				_, _ = buildExemplar(&got, ge, &sb, Limits{}.withDefaults())
			}
			// Validation must not panic on anything the decoder accepts.
			_, _ = buildLabels(&got, s, &sb, Limits{}.withDefaults())
			_ = formatWireLabels(&got, s)
		}
	})
}

// FuzzOTLPDecode sends arbitrary bodies, as protobuf and as JSON, through
// the whole OTLP handler into a real TSDB: every answer is 200 or a 4xx,
// never a panic or a 5xx.
func FuzzOTLPDecode(f *testing.F) {
	md, mets := otlpResource()
	g := mets.AppendEmpty()
	g.SetName("memory.usage")
	g.SetUnit("By")
	p := g.SetEmptyGauge().DataPoints().AppendEmpty()
	p.SetTimestamp(ts(0))
	p.SetDoubleValue(1)
	s := mets.AppendEmpty()
	s.SetName("rpc.calls")
	sum := s.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	sp := sum.DataPoints().AppendEmpty()
	sp.SetTimestamp(ts(0))
	sp.SetIntValue(3)
	h := mets.AppendEmpty()
	h.SetName("latency")
	hist := h.SetEmptyHistogram()
	hist.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	hp := hist.DataPoints().AppendEmpty()
	hp.SetTimestamp(ts(0))
	hp.ExplicitBounds().FromRaw([]float64{0.1, 1})
	hp.BucketCounts().FromRaw([]uint64{1, 2, 3})
	hp.SetCount(6)
	req := pmetricotlp.NewExportRequestFromMetrics(md)
	pb, _ := req.MarshalProto()
	js, _ := req.MarshalJSON()
	f.Add(pb, false)
	f.Add(js, true)
	f.Add([]byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","sum":{"aggregationTemporality":1,"dataPoints":[{"asInt":"5","timeUnixNano":"1"}]}}]}]}]}`), true)
	f.Add([]byte{0x0a, 0x00}, false)
	f.Add(otlpPointBomb(4096), false)
	f.Add([]byte(`{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":{"dataPoints":[{},{},{},{}]}}]}]}]}`), true)

	e, err := OpenEmbedded(EmbeddedOptions{Dir: f.TempDir()})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	handler, err := NewOTLPHandler(ReceiverOptions{Storage: e, Now: func() time.Time { return otlpNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte, asJSON bool) {
		if len(body) > fuzzMaxInput {
			return
		}
		ct := "application/x-protobuf"
		if asJSON {
			ct = "application/json"
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/metrics", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if !asJSON {
			// The pre-scan counts the data points pdata decodes.
			scan, err := scanOTLPProto(body, Limits{}.withDefaults())
			req := pmetricotlp.NewExportRequest()
			if err == nil && req.UnmarshalProto(body) == nil && req.Metrics().DataPointCount() != scan.points {
				t.Fatalf("pre-scan counted %d data points, pdata decoded %d", scan.points, req.Metrics().DataPointCount())
			}
		}
	})
}

// FuzzEvents checks the events parser: no panics, and what it accepts is
// valid.
func FuzzEvents(f *testing.F) {
	for _, s := range []string{
		`{"events": [{"type": "counts", "service": "checkout", "sli": "requests", "good": 120, "bad": 3, "time": "2025-03-01T11:58:00Z", "labels": {"region": "eu"}}]}`,
		`{"events": [{"type": "deploy", "service": "checkout", "version": "v1.4.2", "description": "canary"}]}`,
		`{"events": [{"type": "counts", "service": "s", "sli": "x", "good": -1}]}`,
		`{"events": []}`,
		`{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 1.7e308, "bad": 1e309, "time": "1969-12-31T23:59:59Z"}]}`,
		`{}`,
		`[`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	lim := Limits{}.withDefaults()
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) > fuzzMaxInput {
			return
		}
		counts, deploys, err := parseEvents(body, now, now.Add(-24*time.Hour).UnixMilli(), lim)
		if err != nil {
			if statusOf(err) < 400 || statusOf(err) >= 500 {
				t.Fatalf("error %v has status %d", err, statusOf(err))
			}
			return
		}
		for _, c := range counts {
			if c.goodN < 0 || c.badN < 0 || math.IsInf(c.goodN, 0) || math.IsInf(c.badN, 0) || c.t < now.Add(-24*time.Hour).UnixMilli() || c.good.Get("service") == "" || c.good.Get("outcome") != "good" || c.bad.Get("outcome") != "bad" {
				t.Fatalf("accepted invalid counts event %+v", c)
			}
			if c.t > now.Add(maxAheadTime).UnixMilli() {
				t.Fatalf("accepted a future event at %d", c.t)
			}
		}
		for _, d := range deploys {
			if d.Service == "" || d.Version == "" {
				t.Fatalf("accepted invalid deploy %+v", d)
			}
		}
	})
}

// FuzzDecodeExemplars: the decoder of a remote backend's query_exemplars
// answer never panics, and what it accepts has finite-second timestamps.
func FuzzDecodeExemplars(f *testing.F) {
	f.Add([]byte(`[{"seriesLabels":{"__name__":"m"},"exemplars":[{"labels":{"trace_id":"a"},"value":"1","timestamp":1700000000.5}]}]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[{"seriesLabels":{},"exemplars":[{"labels":{},"value":"NaN","timestamp":1e300}]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		res, err := decodeExemplars(data)
		if err != nil {
			return
		}
		for _, r := range res {
			for _, ex := range r.Exemplars {
				if ex.Ts > 9_200_000_000_000_000_000 || ex.Ts < -9_200_000_000_000_000_000 {
					t.Fatalf("timestamp %d", ex.Ts)
				}
			}
		}
	})
}
