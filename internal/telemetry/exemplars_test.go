package telemetry

import (
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// appendWithExemplar stores one sample carrying one exemplar.
func appendWithExemplar(t testing.TB, e *Embedded, ls labels.Labels, ts int64, v float64, ex exemplar.Exemplar) error {
	t.Helper()
	app := e.AppenderV2(t.Context())
	_, err := app.Append(0, ls, 0, ts, v, nil, nil, storage.AOptions{Exemplars: []exemplar.Exemplar{ex}})
	if cerr := app.Commit(); cerr != nil {
		t.Fatal(cerr)
	}
	return err
}

func newExemplarServer(t *testing.T, limits QueryLimits) *httptest.Server {
	t.Helper()
	e := openTestDB(t)
	a := mustLabels("__name__", "http_requests_total", "code", "500", "job", "api")
	b := mustLabels("__name__", "http_requests_total", "code", "200", "job", "api")
	for i, tr := range []string{"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7aaaaaaaaaaaaaaaa", "0af7651916cd43dd8448eb211c80319c"} {
		ts := int64(1_700_000_000_000 + i*15_500)
		if err := appendWithExemplar(t, e, a, ts, float64(i+1), exemplar.Exemplar{Labels: labels.FromStrings("trace_id", tr), Value: 1, Ts: ts, HasTs: true}); err != nil {
			t.Fatal(err)
		}
	}
	if err := appendWithExemplar(t, e, b, 1_700_000_000_000, 7, exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "11111111111111111111111111111111", "span_id", "2222222222222222"), Value: 0.25, Ts: 1_700_000_000_000, HasTs: true}); err != nil {
		t.Fatal(err)
	}
	qa, err := NewQueryAPI(QueryAPIOptions{Embedded: e, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(qa)
	t.Cleanup(srv.Close)
	return srv
}

// TestQueryExemplars checks query_exemplars answers byte for byte as
// Prometheus 3 does for the same stored exemplars.
func TestQueryExemplars(t *testing.T) {
	srv := newExemplarServer(t, QueryLimits{})
	srvLimited := newExemplarServer(t, QueryLimits{MaxExemplars: 2})
	cases := []struct {
		name   string
		srv    *httptest.Server
		params url.Values
		code   int
		body   string
	}{
		{
			name:   "one series",
			params: url.Values{"query": {`rate(http_requests_total{code="500"}[5m])`}, "start": {"1699999999"}, "end": {"1700000100"}},
			code:   200,
			body:   `{"status":"success","data":[{"seriesLabels":{"__name__":"http_requests_total","code":"500","job":"api"},"exemplars":[{"labels":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"},"value":"1","timestamp":1700000000},{"labels":{"trace_id":"00f067aa0ba902b7aaaaaaaaaaaaaaaa"},"value":"1","timestamp":1700000015.5},{"labels":{"trace_id":"0af7651916cd43dd8448eb211c80319c"},"value":"1","timestamp":1700000031}]}]}`,
		},
		{
			name:   "time range cuts",
			params: url.Values{"query": {`http_requests_total`}, "start": {"1700000010"}, "end": {"1700000020"}},
			code:   200,
			body:   `{"status":"success","data":[{"seriesLabels":{"__name__":"http_requests_total","code":"500","job":"api"},"exemplars":[{"labels":{"trace_id":"00f067aa0ba902b7aaaaaaaaaaaaaaaa"},"value":"1","timestamp":1700000015.5}]}]}`,
		},
		{
			name:   "two series sorted by labels, open range",
			params: url.Values{"query": {`http_requests_total{job="api"} / on() group_left http_requests_total{code="200"}`}},
			code:   200,
			body:   `{"status":"success","data":[{"seriesLabels":{"__name__":"http_requests_total","code":"200","job":"api"},"exemplars":[{"labels":{"span_id":"2222222222222222","trace_id":"11111111111111111111111111111111"},"value":"0.25","timestamp":1700000000}]},{"seriesLabels":{"__name__":"http_requests_total","code":"500","job":"api"},"exemplars":[{"labels":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"},"value":"1","timestamp":1700000000},{"labels":{"trace_id":"00f067aa0ba902b7aaaaaaaaaaaaaaaa"},"value":"1","timestamp":1700000015.5},{"labels":{"trace_id":"0af7651916cd43dd8448eb211c80319c"},"value":"1","timestamp":1700000031}]}]}`,
		},
		{
			name:   "no match",
			params: url.Values{"query": {`nothing_here`}},
			code:   200,
			body:   `{"status":"success","data":[]}`,
		},
		{
			name:   "no selector",
			params: url.Values{"query": {`1+1`}},
			code:   200,
			body:   `{"status":"success"}`,
		},
		{
			name:   "bad query",
			params: url.Values{"query": {`rate(`}},
			code:   400,
			body:   `"errorType":"bad_data"`,
		},
		{
			name:   "end before start",
			params: url.Values{"query": {`up`}, "start": {"20"}, "end": {"10"}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"end timestamp must not be before start timestamp"}`,
		},
		{
			name:   "bad start",
			params: url.Values{"query": {`up`}, "start": {"yesterday"}},
			code:   400,
			body:   `invalid parameter \"start\"`,
		},
		{
			name:   "too long",
			params: url.Values{"query": {strings.Repeat("a", DefaultQueryMaxLength+1)}},
			code:   400,
			body:   `query.maxLength`,
		},
		{
			name:   "result bounded, newest kept",
			srv:    srvLimited,
			params: url.Values{"query": {`http_requests_total`}},
			code:   200,
			body:   `{"status":"success","warnings":["query exceeds a limit: 2 older exemplars left out, more than query.maxExemplars (2); narrow the time range or the selector"],"data":[{"seriesLabels":{"__name__":"http_requests_total","code":"500","job":"api"},"exemplars":[{"labels":{"trace_id":"00f067aa0ba902b7aaaaaaaaaaaaaaaa"},"value":"1","timestamp":1700000015.5},{"labels":{"trace_id":"0af7651916cd43dd8448eb211c80319c"},"value":"1","timestamp":1700000031}]}]}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := srv
			if tc.srv != nil {
				s = tc.srv
			}
			code, body := get(t, s.URL+"/prometheus/api/v1/query_exemplars?"+tc.params.Encode())
			if code != tc.code {
				t.Errorf("status %d, want %d (body %s)", code, tc.code, body)
			}
			if strings.HasPrefix(tc.body, "{") {
				if body != tc.body {
					t.Errorf("body\n%s\nwant\n%s", body, tc.body)
				}
			} else if !strings.Contains(body, tc.body) {
				t.Errorf("body %s does not contain %s", body, tc.body)
			}
		})
	}
}

// TestExemplarStorageBounded checks the ring keeps MaxExemplars and that
// a negative MaxExemplars turns storage off without failing appends.
func TestExemplarStorageBounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		max  int64
		want int
	}{
		{"ring of 3", 3, 3},
		{"off", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := OpenEmbedded(EmbeddedOptions{Dir: t.TempDir(), MaxExemplars: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			ls := mustLabels("__name__", "m")
			for i := range 10 {
				ts := int64(1000 * (i + 1))
				if err := appendWithExemplar(t, e, ls, ts, float64(i), exemplar.Exemplar{Labels: labels.FromStrings("trace_id", "a"), Value: float64(i), Ts: ts, HasTs: true}); err != nil {
					t.Fatal(err)
				}
			}
			res, err := e.Exemplars(t.Context(), "m", time.UnixMilli(0), time.UnixMilli(1<<40))
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for _, r := range res {
				got += len(r.Exemplars)
			}
			if got != tc.want {
				t.Errorf("got %d exemplars, want %d", got, tc.want)
			}
		})
	}
}

// TestExemplarLabelLength: the label set of an exemplar may hold 128
// runes of names and values together, as OpenMetrics and Prometheus say;
// one more is refused with Prometheus' error, and the sample is stored.
func TestExemplarLabelLength(t *testing.T) {
	e := openTestDB(t)
	ls := mustLabels("__name__", "m")
	ok := labels.FromStrings("trace_id", strings.Repeat("é", 128-len("trace_id")))
	if err := appendWithExemplar(t, e, ls, 1000, 1, exemplar.Exemplar{Labels: ok, Value: 1, Ts: 1000, HasTs: true}); err != nil {
		t.Fatalf("128 runes: %v", err)
	}
	long := labels.FromStrings("trace_id", strings.Repeat("é", 129-len("trace_id")))
	err := appendWithExemplar(t, e, ls, 2000, 2, exemplar.Exemplar{Labels: long, Value: 1, Ts: 2000, HasTs: true})
	if err == nil || !strings.Contains(err.Error(), "exceeds maximum of 128 UTF-8 characters") {
		t.Fatalf("129 runes: got %v, want the label length error", err)
	}
	if m := rawSamples(t, e, "m", ms(0), ms(3000)); len(m) != 1 || len(m[0].Floats) != 2 {
		t.Errorf("samples %v, want both stored", m)
	}
}

// TestRemoteWriteExemplars: exemplars on remote_write 1.0 are stored and
// queryable; bad ones are refused with a 400 naming the series and why,
// while the samples and the good exemplars of the request are stored.
func TestRemoteWriteExemplars(t *testing.T) {
	long := strings.Repeat("x", 129-len("trace_id"))
	cases := []struct {
		name      string
		exemplars []prompb.Exemplar
		code      int
		msg       string
		want      int // exemplars queryable afterwards
	}{
		{"stored", []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "4bf92f3577b34da6a3ce929d0e0e4736"}}, Value: 1, Timestamp: 1_700_000_000_500}}, 204, "", 1},
		{"exactly 128 runes", []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: strings.Repeat("é", 120)}}, Value: 1, Timestamp: 1_700_000_000_500}}, 204, "", 1},
		{"129 runes", []prompb.Exemplar{
			{Labels: []prompb.Label{{Name: "trace_id", Value: "ok"}}, Value: 1, Timestamp: 1_700_000_000_400},
			{Labels: []prompb.Label{{Name: "trace_id", Value: long}}, Value: 1, Timestamp: 1_700_000_000_500},
		}, 400, `1 of 2 exemplars rejected, the samples and the other exemplars were stored: series {__name__=\"m\"} exemplar @1700000000500: label length for exemplar exceeds maximum of 128 UTF-8 characters`, 1},
		{"129 runes over two labels", []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: strings.Repeat("a", 64)}, {Name: "span_id", Value: strings.Repeat("b", 50)}}, Value: 1, Timestamp: 1_700_000_000_500}}, 400, "exceeds maximum of 128", 0},
		{"empty label name", []prompb.Exemplar{{Labels: []prompb.Label{{Name: "", Value: "x"}}, Value: 1, Timestamp: 1_700_000_000_500}}, 400, "label name is empty", 0},
		{"invalid UTF-8", []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "\xff"}}, Value: 1, Timestamp: 1_700_000_000_500}}, 400, "not valid UTF-8", 0},
		{"duplicate name", []prompb.Exemplar{{Labels: []prompb.Label{{Name: "a", Value: "1"}, {Name: "a", Value: "2"}}, Value: 1, Timestamp: 1_700_000_000_500}}, 400, `label name \"a\" is not unique`, 0},
		{"future", []prompb.Exemplar{{Labels: []prompb.Label{{Name: "trace_id", Value: "x"}}, Value: 1, Timestamp: 1_800_000_000_000}}, 400, "in the future", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := openTestDB(t)
			h, err := NewWriteHandler(ReceiverOptions{Storage: e, Now: func() time.Time { return time.UnixMilli(1_700_000_060_000) }})
			if err != nil {
				t.Fatal(err)
			}
			ts := series([]prompb.Sample{{Value: 1, Timestamp: 1_700_000_000_000}, {Value: 2, Timestamp: 1_700_000_001_000}}, "__name__", "m")
			ts.Exemplars = tc.exemplars
			code, body := postWrite(t, h, encodeWrite(t, ts))
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if tc.msg != "" && !strings.Contains(body, tc.msg) {
				t.Errorf("body %s does not contain %s", body, tc.msg)
			}
			if m := rawSamples(t, e, "m", ms(0), ms(1_800_000_000_000)); len(m) != 1 || len(m[0].Floats) != 2 {
				t.Errorf("samples %v, want both stored", m)
			}
			res, err := e.Exemplars(t.Context(), "m", ms(0), ms(1<<42))
			if err != nil {
				t.Fatal(err)
			}
			got := 0
			for _, r := range res {
				got += len(r.Exemplars)
			}
			if got != tc.want {
				t.Errorf("%d exemplars stored, want %d: %v", got, tc.want, res)
			}
		})
	}
}

// TestOTLPExemplars: exemplars on OTLP sums and histograms are stored
// with Prometheus' trace_id and span_id labels, and queryable from the
// counter and from the bucket they fell into.
func TestOTLPExemplars(t *testing.T) {
	e := openTestDB(t)
	h := newOTLPHandler(t, e, OTLPTranslation{})
	md, metrics := otlpResource()
	traceA := pcommon.TraceID([16]byte{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36})
	span := pcommon.SpanID([8]byte{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7})

	sum := metrics.AppendEmpty()
	sum.SetName("http.server.errors")
	sum.SetEmptySum().SetIsMonotonic(true)
	sum.Sum().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	dp := sum.Sum().DataPoints().AppendEmpty()
	dp.SetStartTimestamp(ts(-time.Minute))
	dp.SetTimestamp(ts(-time.Second))
	dp.SetIntValue(3)
	ex := dp.Exemplars().AppendEmpty()
	ex.SetTimestamp(ts(-2 * time.Second))
	ex.SetIntValue(1)
	ex.SetTraceID(traceA)
	ex.SetSpanID(span)

	hist := metrics.AppendEmpty()
	hist.SetName("http.server.duration")
	hist.SetUnit("s")
	hist.SetEmptyHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	hp := hist.Histogram().DataPoints().AppendEmpty()
	hp.SetStartTimestamp(ts(-time.Minute))
	hp.SetTimestamp(ts(-time.Second))
	hp.SetCount(2)
	hp.SetSum(2.6)
	hp.ExplicitBounds().FromRaw([]float64{0.1, 1})
	hp.BucketCounts().FromRaw([]uint64{1, 0, 1})
	hex := hp.Exemplars().AppendEmpty()
	hex.SetTimestamp(ts(-3 * time.Second))
	hex.SetDoubleValue(2.5)
	hex.SetTraceID(traceA)
	hex.SetSpanID(span)

	code, resp, body := postOTLP(t, h, md, false)
	if code != 200 || resp.PartialSuccess().ErrorMessage() != "" {
		t.Fatalf("status %d %q %s", code, resp.PartialSuccess().ErrorMessage(), body)
	}
	for _, tc := range []struct{ query, series, value string }{
		{`http_server_errors_total`, `http_server_errors_total`, "1"},
		{`http_server_duration_seconds_bucket`, `http_server_duration_seconds_bucket`, "2.5"},
	} {
		res, err := e.Exemplars(t.Context(), tc.query, otlpNow.Add(-time.Hour), otlpNow)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range res {
			for _, x := range r.Exemplars {
				got = append(got, r.SeriesLabels.Get("__name__")+" "+x.Labels.String()+" "+strconv.FormatFloat(x.Value, 'f', -1, 64))
			}
		}
		want := tc.series + ` {span_id="00f067aa0ba902b7", trace_id="4bf92f3577b34da6a3ce929d0e0e4736"} ` + tc.value
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: got %q, want [%s]", tc.query, got, want)
		}
	}
}
