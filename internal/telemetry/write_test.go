package telemetry

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

var promqlParser = parser.NewParser(parser.Options{})

func newWriteHandler(t testing.TB, e *Embedded, now time.Time) *WriteHandler {
	t.Helper()
	h, err := NewWriteHandler(ReceiverOptions{Storage: e, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("new write handler: %v", err)
	}
	return h
}

func TestWriteStoresSamples(t *testing.T) {
	e := openTestDB(t)
	now := time.UnixMilli(1_700_000_000_000)
	h := newWriteHandler(t, e, now)
	base := now.UnixMilli() - 60_000
	// Labels out of order and one with an empty value, which Prometheus
	// treats as absent.
	body := func(off int64) []byte {
		return encodeWrite(t,
			series([]prompb.Sample{{Value: 1, Timestamp: base + off}, {Value: 2, Timestamp: base + off + 15_000}, {Value: 4, Timestamp: base + off + 30_000}},
				"job", "api", "__name__", "http_requests_total", "empty", "", "code", "200"),
			series([]prompb.Sample{{Value: 0.5, Timestamp: base + off}},
				"__name__", "temperature", "room", "kitchen"),
		)
	}
	// Twice: the second request goes through the series cache.
	for i, off := range []int64{0, 45_000} {
		code, resp := postWrite(t, h, body(off))
		if code != http.StatusNoContent {
			t.Fatalf("request %d: status %d (%s), want 204", i, code, resp)
		}
	}
	got := rawSamples(t, e, `{__name__=~"http_requests_total|temperature"}`, ms(base-1), ms(base+75_000))
	want := promql.Matrix{
		{Metric: mustLabels("__name__", "http_requests_total", "code", "200", "job", "api"),
			Floats: []promql.FPoint{{T: base, F: 1}, {T: base + 15_000, F: 2}, {T: base + 30_000, F: 4},
				{T: base + 45_000, F: 1}, {T: base + 60_000, F: 2}, {T: base + 75_000, F: 4}}},
		{Metric: mustLabels("__name__", "temperature", "room", "kitchen"), Floats: []promql.FPoint{{T: base, F: 0.5}, {T: base + 45_000, F: 0.5}}},
	}
	if got.String() != want.String() {
		t.Fatalf("stored:\n%s\nwant:\n%s", got, want)
	}
	// Samples is (start, end]: the first sample is excluded at start=base.
	if got := rawSamples(t, e, `temperature`, ms(base), ms(base+30_000)); len(got) != 0 {
		t.Fatalf("samples at exactly start included: %s", got)
	}
}

func TestWritePartialRequestKeepsValidSamples(t *testing.T) {
	e := openTestDB(t)
	now := time.UnixMilli(1_700_000_000_000)
	h := newWriteHandler(t, e, now)
	ts := now.UnixMilli()
	body := encodeWrite(t,
		series([]prompb.Sample{{Value: 1, Timestamp: ts}}, "__name__", "ok_metric"),
		series([]prompb.Sample{{Value: 1, Timestamp: ts}}, "job", "no-name"),
		series([]prompb.Sample{{Value: math.NaN(), Timestamp: ts}, {Value: 3, Timestamp: ts + 1}}, "__name__", "nan_metric"),
		series([]prompb.Sample{{Value: 1, Timestamp: ts + int64(11*time.Minute/time.Millisecond)}}, "__name__", "future_metric"),
		series([]prompb.Sample{{Value: math.Float64frombits(value.StaleNaN), Timestamp: ts + 2}}, "__name__", "nan_metric"),
	)
	code, resp := postWrite(t, h, body)
	if code != http.StatusBadRequest {
		t.Fatalf("status %d (%s), want 400", code, resp)
	}
	msg := errorMessage(t, resp)
	for _, want := range []string{"3 of 6 samples rejected", "invalid_labels: 1", "non_finite_value: 1", "too_far_in_future: 1",
		`{job="no-name"}: metric name (label __name__) is missing`, "value NaN is not finite"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not contain %q", msg, want)
		}
	}
	if got := rawSamples(t, e, `ok_metric`, ms(ts-1), ms(ts)); len(got) != 1 || got[0].Floats[0].F != 1 {
		t.Errorf("valid series not stored: %s", got)
	}
	// The finite sample of nan_metric is stored; the staleness marker is
	// accepted but not returned as a sample.
	got := rawSamples(t, e, `nan_metric`, ms(ts-1), ms(ts+2))
	if len(got) != 1 || len(got[0].Floats) != 1 || got[0].Floats[0] != (promql.FPoint{T: ts + 1, F: 3}) {
		t.Errorf("nan_metric: got %s, want only 3 @%d", got, ts+1)
	}
	// The staleness marker is in the TSDB: an instant query right after
	// it finds nothing.
	v, err := e.Instant(context.Background(), "nan_metric", ms(ts+3))
	if err != nil || len(v) != 0 {
		t.Errorf("instant after staleness marker: %v, %v; want empty", v, err)
	}
}

func TestWriteOutOfOrderAndDuplicates(t *testing.T) {
	e := openTestDB(t)
	now := time.UnixMilli(1_700_000_000_000)
	h := newWriteHandler(t, e, now)
	ts := now.UnixMilli()
	send := func(v float64, at int64) (int, string) {
		return postWrite(t, h, encodeWrite(t, series([]prompb.Sample{{Value: v, Timestamp: at}}, "__name__", "m")))
	}
	if code, resp := send(1, ts); code != http.StatusNoContent {
		t.Fatalf("first: %d %s", code, resp)
	}
	cases := []struct {
		name   string
		v      float64
		at     int64
		status int
		reason string
	}{
		{"exact duplicate is accepted", 1, ts, http.StatusNoContent, ""},
		{"same timestamp other value", 2, ts, http.StatusBadRequest, "duplicate_timestamp: 1"},
		{"out of order", 3, ts - 1000, http.StatusBadRequest, "out_of_order: 1"},
		{"in order", 4, ts + 1000, http.StatusNoContent, ""},
	}
	for _, c := range cases {
		code, resp := send(c.v, c.at)
		if code != c.status {
			t.Errorf("%s: status %d (%s), want %d", c.name, code, resp, c.status)
			continue
		}
		if c.reason != "" && !strings.Contains(errorMessage(t, resp), c.reason) {
			t.Errorf("%s: message %q lacks %q", c.name, resp, c.reason)
		}
	}
	got := rawSamples(t, e, "m", ms(ts-10_000), ms(ts+10_000))
	want := "{__name__=\"m\"} =>\n1 @[1700000000000]\n4 @[1700000001000]"
	if got.String() != want {
		t.Errorf("stored %q, want %q", got.String(), want)
	}
}

// TestWriteAfterHeadGC checks that cached series refs stay correct after
// the TSDB drops series from its head: the stale ref must resolve by
// labels, not write to the wrong series.
func TestWriteAfterHeadGC(t *testing.T) {
	e := openTestDB(t)
	now := time.UnixMilli(1_700_000_000_000)
	h := newWriteHandler(t, e, now)
	ts := now.UnixMilli() - 3*3600_000
	write := func(at int64, v float64) {
		t.Helper()
		body := encodeWrite(t,
			series([]prompb.Sample{{Value: v, Timestamp: at}}, "__name__", "a"),
			series([]prompb.Sample{{Value: -v, Timestamp: at}}, "__name__", "b"))
		if code, resp := postWrite(t, h, body); code != http.StatusNoContent {
			t.Fatalf("write @%d: %d %s", at, code, resp)
		}
	}
	write(ts, 1)
	write(ts+1000, 2)
	// Persist the head into a block and truncate it: both series leave
	// the head, so their cached refs are stale.
	head := e.DB().Head()
	if err := e.DB().CompactHead(tsdb.NewRangeHead(head, head.MinTime(), head.MaxTime())); err != nil {
		t.Fatalf("compact head: %v", err)
	}
	if n := head.NumSeries(); n != 0 {
		t.Fatalf("head still has %d series after compaction", n)
	}
	write(ts+2000, 3)
	got := rawSamples(t, e, `{__name__=~"a|b"}`, ms(ts-1), ms(ts+2000))
	want := "{__name__=\"a\"} =>\n1 @[1699989200000]\n2 @[1699989201000]\n3 @[1699989202000]\n" +
		"{__name__=\"b\"} =>\n-1 @[1699989200000]\n-2 @[1699989201000]\n-3 @[1699989202000]"
	if got.String() != want {
		t.Errorf("after head GC:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteNativeHistogram(t *testing.T) {
	e := openTestDB(t)
	now := time.UnixMilli(1_700_000_000_000)
	h := newWriteHandler(t, e, now)
	ts := now.UnixMilli()
	hist := &histogram.Histogram{
		Schema: 0, Count: 5, Sum: 12.5, ZeroThreshold: 0.001, ZeroCount: 1,
		PositiveSpans:   []histogram.Span{{Offset: 0, Length: 2}},
		PositiveBuckets: []int64{2, 0},
	}
	body := encodeWrite(t, prompb.TimeSeries{
		Labels:     []prompb.Label{{Name: "__name__", Value: "latency_seconds"}},
		Histograms: []prompb.Histogram{prompb.FromIntHistogram(ts, hist)},
	})
	if code, resp := postWrite(t, h, body); code != http.StatusNoContent {
		t.Fatalf("status %d %s", code, resp)
	}
	v, err := e.Instant(context.Background(), "histogram_count(latency_seconds)", ms(ts))
	if err != nil || len(v) != 1 || v[0].F != 5 {
		t.Fatalf("histogram_count = %v, %v; want 5", v, err)
	}
	// Samples returns float samples only.
	if got := rawSamples(t, e, "latency_seconds", ms(ts-1), ms(ts)); len(got) != 0 {
		t.Errorf("Samples returned histogram samples: %s", got)
	}
}

// TestStorageFaultIsRetryable closes the store under the receivers: a
// storage fault must be a 5xx, which senders retry, never a 4xx, which
// they drop.
func TestStorageFaultIsRetryable(t *testing.T) {
	e, err := OpenEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	wh := newWriteHandler(t, e, now)
	oh, err := NewOTLPHandler(ReceiverOptions{Storage: e, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	eh, err := NewEventsHandler(ReceiverOptions{Storage: e})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	code, body := postWrite(t, wh, encodeWrite(t, series([]prompb.Sample{{Value: 1, Timestamp: now.UnixMilli()}}, "__name__", "m")))
	if code != http.StatusInternalServerError || !strings.Contains(errorMessage(t, body), "commit") {
		t.Errorf("remote_write: %d %s, want 500", code, body)
	}
	md, mets := otlpResource()
	g := mets.AppendEmpty()
	g.SetName("g")
	g.SetEmptyGauge().DataPoints().AppendEmpty().SetTimestamp(pcommon.NewTimestampFromTime(now))
	if code, _, body := postOTLP(t, oh, md, false); code != http.StatusServiceUnavailable {
		t.Errorf("otlp: %d %s, want 503", code, body)
	}
	if code, body := postEvents(t, eh, `{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 1}]}`); code != http.StatusServiceUnavailable {
		t.Errorf("events: %d %s, want 503", code, body)
	}
}
