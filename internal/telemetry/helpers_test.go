package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"github.com/prometheus/prometheus/promql"
)

// openTestDB opens an Embedded in a temporary directory, closed when the
// test ends.
func openTestDB(t testing.TB) *Embedded {
	t.Helper()
	e, err := OpenEmbedded(EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("open embedded: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("close embedded: %v", err)
		}
	})
	return e
}

// series builds a prompb.TimeSeries from alternating label names and
// values.
func series(samples []prompb.Sample, nameValues ...string) prompb.TimeSeries {
	ts := prompb.TimeSeries{Samples: samples}
	for i := 0; i+1 < len(nameValues); i += 2 {
		ts.Labels = append(ts.Labels, prompb.Label{Name: nameValues[i], Value: nameValues[i+1]})
	}
	return ts
}

// encodeWrite returns the snappy-compressed protobuf of a WriteRequest.
func encodeWrite(t testing.TB, ts ...prompb.TimeSeries) []byte {
	t.Helper()
	req := &prompb.WriteRequest{Timeseries: ts}
	b, err := req.Marshal()
	if err != nil {
		t.Fatalf("marshal write request: %v", err)
	}
	return snappy.Encode(nil, b)
}

// postWrite sends body to h as a remote_write 1.0 request.
func postWrite(t testing.TB, h http.Handler, body []byte) (int, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/write", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-protobuf")
	req.Header.Set("Content-Encoding", "snappy")
	req.Header.Set("X-Prometheus-Remote-Write-Version", "0.1.0")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// errorMessage returns the "error" field of a JSON error body, or fails.
func errorMessage(t testing.TB, body string) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", body, err)
	}
	return e.Error
}

// rawSamples reads every float sample of the series matching sel.
func rawSamples(t testing.TB, s Source, sel string, start, end time.Time) promql.Matrix {
	t.Helper()
	ms, err := promqlParser.ParseMetricSelector(sel)
	if err != nil {
		t.Fatalf("parse %s: %v", sel, err)
	}
	m, err := s.Samples(context.Background(), ms, start, end)
	if err != nil {
		t.Fatalf("samples %s: %v", sel, err)
	}
	return m
}

func mustLabels(nameValues ...string) labels.Labels { return labels.FromStrings(nameValues...) }

// ms is a time at a whole millisecond, as stored.
func ms(t int64) time.Time { return time.UnixMilli(t) }
