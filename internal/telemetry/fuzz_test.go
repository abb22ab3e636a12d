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
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		var got writeRequest
		errGot := got.decode(data, 0)
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
		counts, deploys, err := parseEvents(body, now, lim)
		if err != nil {
			if statusOf(err) < 400 || statusOf(err) >= 500 {
				t.Fatalf("error %v has status %d", err, statusOf(err))
			}
			return
		}
		for _, c := range counts {
			if c.goodN < 0 || c.badN < 0 || c.good.Get("service") == "" || c.good.Get("outcome") != "good" || c.bad.Get("outcome") != "bad" {
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
