package telemetry

import (
	"bytes"
	"crypto/rand"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// TestBadInput sends every kind of bad request to the receivers of one
// running server: each gets a clear 4xx naming the problem, the server
// keeps serving, and what was stored before is intact.
func TestBadInput(t *testing.T) {
	e := openTestDB(t)
	now := time.Now()
	opts := ReceiverOptions{
		Storage: e,
		Now:     func() time.Time { return now },
		Limits: Limits{
			MaxBodyBytes:         64 << 10,
			MaxDecompressedBytes: 256 << 10,
			MaxSeriesPerRequest:  100,
			MaxLabelsPerSeries:   10,
			MaxLabelValueLength:  1024,
		},
	}
	wh, err := NewWriteHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	oh, err := NewOTLPHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	eh, err := NewEventsHandler(opts) // no deploy sink
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", wh)
	mux.Handle("/v1/metrics", oh)
	mux.Handle("/api/v1/events", eh)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// A series stored before the bad requests.
	at := now.Add(-time.Minute).UnixMilli()
	known := series([]prompb.Sample{{Value: 42, Timestamp: at}}, "__name__", "known_series", "job", "x")
	send(t, srv.URL+"/api/v1/write", "application/x-protobuf", "snappy", encodeWrite(t, known), http.StatusNoContent, "")

	ok := []prompb.Sample{{Value: 1, Timestamp: at}}
	random := make([]byte, 100<<10)
	_, _ = rand.Read(random)
	manySeries := make([]prompb.TimeSeries, 101)
	for i := range manySeries {
		manySeries[i] = series(ok, "__name__", "m", "i", strings.Repeat("x", i+1))
	}
	manyLabels := []string{"__name__", "m"}
	for i := range 10 {
		manyLabels = append(manyLabels, "l"+string(rune('a'+i)), "v")
	}
	validOTLP := func() []byte {
		md, mets := otlpResource()
		m := mets.AppendEmpty()
		m.SetName("g")
		m.SetEmptyGauge().DataPoints().AppendEmpty().SetTimestamp(ts(0))
		b, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		return b
	}()

	const (
		rw   = "/api/v1/write"
		otlp = "/v1/metrics"
		ev   = "/api/v1/events"
		pb   = "application/x-protobuf"
		js   = "application/json"
	)
	cases := []struct {
		name, path, ct, enc string
		body                []byte
		status              int
		want                string
	}{
		{"rw malformed snappy", rw, pb, "snappy", []byte("definitely not snappy"), 400, "malformed snappy"},
		{"rw malformed protobuf", rw, pb, "snappy", snappy.Encode(nil, []byte{0x0a, 0xff, 0xff, 0xff, 0x0f, 0x01}), 400, "malformed protobuf"},
		{"rw truncated protobuf", rw, pb, "snappy", snappy.Encode(nil, mustMarshal(t, known)[:20]), 400, "malformed protobuf"},
		{"rw wrong content type", rw, "text/plain", "snappy", encodeWrite(t, known), 415, "Content-Type"},
		{"rw remote write 2.0", rw, pb + ";proto=io.prometheus.write.v2.Request", "snappy", encodeWrite(t, known), 415, "io.prometheus.write.v2.Request"},
		{"rw wrong encoding", rw, pb, "gzip", encodeWrite(t, known), 415, "Content-Encoding"},
		{"rw oversize body", rw, pb, "snappy", random, 413, "exceeds the limit of 65536 bytes"},
		{"rw oversize decompressed", rw, pb, "snappy", snappy.Encode(nil, make([]byte, 300<<10)), 413, "decompressed body of 307200 bytes"},
		{"rw too many series", rw, pb, "snappy", encodeWrite(t, manySeries...), 413, "more than 100 series"},
		{"rw label value too long", rw, pb, "snappy", encodeWrite(t, series(ok, "__name__", "m", "big", strings.Repeat("v", 1025))), 400, `value of label "big" is 1025 bytes long`},
		{"rw too many labels", rw, pb, "snappy", encodeWrite(t, series(ok, manyLabels...)), 400, "11 labels exceed the limit of 10"},
		{"rw NaN", rw, pb, "snappy", encodeWrite(t, series([]prompb.Sample{{Value: math.NaN(), Timestamp: at}}, "__name__", "m")), 400, "value NaN is not finite"},
		{"rw +Inf", rw, pb, "snappy", encodeWrite(t, series([]prompb.Sample{{Value: math.Inf(1), Timestamp: at}}, "__name__", "m")), 400, "value +Inf is not finite"},
		{"rw empty label name", rw, pb, "snappy", encodeWrite(t, series(ok, "__name__", "m", "", "v")), 400, "label name is empty"},
		{"rw invalid UTF-8 label name", rw, pb, "snappy", encodeWrite(t, series(ok, "__name__", "m", "bad\xff", "v")), 400, `label name "bad\xff" is not valid UTF-8`},
		{"rw duplicate label name", rw, pb, "snappy", encodeWrite(t, series(ok, "__name__", "m", "a", "1", "a", "2")), 400, `label name "a" appears more than once`},
		{"rw missing metric name", rw, pb, "snappy", encodeWrite(t, series(ok, "job", "x")), 400, "metric name (label __name__) is missing"},
		{"rw far-future timestamp", rw, pb, "snappy", encodeWrite(t, series([]prompb.Sample{{Value: 1, Timestamp: now.Add(time.Hour).UnixMilli()}}, "__name__", "m")), 400, "more than 10m0s in the future"},
		{"rw GET", rw, "", "", nil, 405, "use POST"},
		{"otlp malformed protobuf", otlp, pb, "", []byte{0x0a, 0x05, 0xff, 0xff}, 400, "malformed OTLP protobuf"},
		{"otlp malformed JSON", otlp, js, "", []byte(`{"resourceMetrics": [{"scopeMetrics": 7}]`), 400, "malformed OTLP JSON"},
		{"otlp wrong content type", otlp, "text/plain", "", validOTLP, 415, "Content-Type"},
		{"otlp wrong encoding", otlp, pb, "br", validOTLP, 415, "Content-Encoding"},
		{"otlp bad gzip", otlp, pb, "gzip", []byte("not gzip"), 400, "malformed gzip"},
		{"otlp oversize", otlp, pb, "", random, 413, "exceeds the limit"},
		{"events malformed JSON", ev, js, "", []byte(`{"events": [`), 400, "malformed JSON"},
		{"events wrong content type", ev, "text/plain", "", []byte(`{"events": []}`), 415, "Content-Type"},
		{"events missing list", ev, js, "", []byte(`{}`), 400, "events: required"},
		{"events unknown field", ev, js, "", []byte(`{"events": [{"type": "counts", "service": "s", "sli": "x", "goood": 1}]}`), 400, `events[0]: unknown field "goood"`},
		{"events bad fields", ev, js, "", []byte(`{"events": [
			{"type": "counts", "service": "s", "sli": "x", "good": 1},
			{"type": "counts", "sli": "x", "good": 1},
			{"type": "counts", "service": "s", "sli": "x", "good": "many"},
			{"type": "counts", "service": "s", "sli": "x", "good": -1, "bad": 2},
			{"type": "counts", "service": "s", "sli": "x", "good": 1, "time": "yesterday"},
			{"type": "counts", "service": "s", "sli": "x", "good": 1, "labels": {"outcome": "x", "__x": "y"}},
			{"type": "alert", "service": "s"}
		]}`), 400, strings.Join([]string{
			"events[1].service: required",
			"events[2].good: must be a number, not a string",
			"events[3].good: must not be negative",
			`events[4].time: "yesterday" is not an RFC 3339 time`,
			`events[5].labels: label name "__x" is reserved; events[5].labels: label name "outcome" is reserved`,
			`events[6].type: "alert" is not an event type, want counts or deploy`,
		}, "; ")},
		{"events deploy without sink", ev, js, "", []byte(`{"events": [{"type": "deploy", "service": "s", "version": "1"}]}`), 422, "no deploy sink"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			send(t, srv.URL+c.path, c.ct, c.enc, c.body, c.status, c.want)
		})
	}

	// Nothing stored before was lost, and the server still takes valid
	// requests on every endpoint.
	got := rawSamples(t, e, "known_series", ms(at-1), ms(at))
	if got.String() != "{__name__=\"known_series\", job=\"x\"} =>\n42 @["+formatInt(at)+"]" {
		t.Errorf("known series after bad input: %s", got)
	}
	send(t, srv.URL+rw, pb, "snappy", encodeWrite(t, series([]prompb.Sample{{Value: 43, Timestamp: at + 1000}}, "__name__", "known_series", "job", "x")), 204, "")
	send(t, srv.URL+otlp, pb, "", validOTLP, 200, "")
	send(t, srv.URL+ev, js, "", []byte(`{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 1}]}`), 200, "")
	if got := rawSamples(t, e, "known_series", ms(at-1), ms(at+1000)); len(got) != 1 || len(got[0].Floats) != 2 {
		t.Errorf("known series after a new write: %s", got)
	}
}

// send posts body and checks the status and, for errors, that the JSON
// error contains want.
func send(t *testing.T, url, ct, enc string, body []byte, status int, want string) {
	t.Helper()
	method := http.MethodPost
	if body == nil {
		method = http.MethodGet
	}
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if enc != "" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	if status >= 400 {
		msg := errorMessage(t, string(b))
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
		t.Logf("%d %s", status, msg)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("error Content-Type %q, want application/json", ct)
		}
	}
}

func mustMarshal(t *testing.T, ts ...prompb.TimeSeries) []byte {
	t.Helper()
	b, err := (&prompb.WriteRequest{Timeseries: ts}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func formatInt(v int64) string { return formatValue(float64(v)) }
