package telemetry

import (
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/prompb"
	"go.opentelemetry.io/collector/pdata/pcommon"
)

// TestEventsNonFiniteTotals: the events API lets no count or running
// total reach ±Inf (issue 15), and what was stored before stays.
func TestEventsNonFiniteTotals(t *testing.T) {
	e := openTestDB(t)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	h, err := NewEventsHandler(ReceiverOptions{Storage: e, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	big := `{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 1.7e308}]}`
	if code, body := postEvents(t, h, big); code != http.StatusOK {
		t.Fatalf("first count: %d %s", code, body)
	}
	cases := []struct {
		name, body string
		status     int
		want       string
	}{
		{"total would overflow", big, http.StatusUnprocessableEntity, "would reach +Inf"},
		{"count out of float range", `{"events": [{"type": "counts", "service": "s", "sli": "y", "bad": 1e309}]}`, http.StatusBadRequest, "events[0]"},
		{"1969", `{"events": [{"type": "counts", "service": "s", "sli": "y", "good": 1, "time": "1969-12-31T23:59:59Z"}]}`, http.StatusBadRequest, "events[0].time: 1969-12-31T23:59:59Z is older than the retention"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := postEvents(t, h, c.body)
			if code != c.status {
				t.Fatalf("status %d, want %d: %s", code, c.status, body)
			}
			if msg := errorMessage(t, body); !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not contain %q", msg, c.want)
			}
		})
	}
	got := rawSamples(t, e, `qsp_events_total{outcome="good"}`, now.Add(-time.Hour), now.Add(time.Hour))
	if len(got) != 1 || len(got[0].Floats) != 2 || got[0].Floats[1].F != 1.7e308 {
		t.Errorf("stored: %s", got)
	}
}

// TestSampleLowerBound: remote_write refuses samples older than the
// retention per sample, naming the first, and stores the rest; a 1969
// timestamp never gets in.
func TestSampleLowerBound(t *testing.T) {
	e, err := OpenEmbedded(EmbeddedOptions{Dir: t.TempDir(), Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	now := time.Now()
	h, err := NewWriteHandler(ReceiverOptions{Storage: e, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	at := now.Add(-time.Minute).UnixMilli()
	body := encodeWrite(t,
		series([]prompb.Sample{{Value: 1, Timestamp: -1000}}, "__name__", "old", "when", "1969"),
		series([]prompb.Sample{{Value: 2, Timestamp: now.Add(-25 * time.Hour).UnixMilli()}}, "__name__", "old", "when", "yesterday"),
		series([]prompb.Sample{{Value: 3, Timestamp: at}}, "__name__", "fresh"),
	)
	code, resp := postWrite(t, h, body)
	if code != http.StatusBadRequest {
		t.Fatalf("status %d: %s", code, resp)
	}
	msg := errorMessage(t, resp)
	for _, want := range []string{"2 of 3 samples rejected (too_old: 2)", `series {__name__="old", when="1969"} sample @-1000: timestamp 1969-12-31T23:59:59Z is older than the retention of 1d`} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if got := rawSamples(t, e, `old`, time.UnixMilli(math.MinInt64/2), now); len(got) != 0 {
		t.Errorf("old samples stored: %s", got)
	}
	if got := rawSamples(t, e, `fresh`, ms(at-1), ms(at)); len(got) != 1 {
		t.Errorf("fresh sample not stored: %s", got)
	}
	if got := sampleTime(math.MaxInt64); got != "9223372036854775807ms since the epoch" {
		t.Errorf("sampleTime(MaxInt64) = %q", got)
	}
}

// TestOTLPTimestampMessage: a timestamp past what int64 nanoseconds hold
// prints as a number, not an overflowed date.
func TestOTLPTimestampMessage(t *testing.T) {
	e := openTestDB(t)
	h := newOTLPHandler(t, e, OTLPTranslation{})
	md, mets := otlpResource()
	g := mets.AppendEmpty()
	g.SetName("g")
	p := g.SetEmptyGauge().DataPoints().AppendEmpty()
	p.SetTimestamp(pcommon.Timestamp(math.MaxUint64))
	p.SetDoubleValue(1)
	code, resp, body := postOTLP(t, h, md, false)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	msg := resp.PartialSuccess().ErrorMessage()
	if !strings.Contains(msg, "@18446744073709551615ns since the epoch: timestamp is more than 10m0s in the future") {
		t.Errorf("message %q", msg)
	}
}
