package tracelink

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

var t0 = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

// store is a real embedded TSDB holding bad and good requests with
// exemplars, one per minute for an hour.
func store(t *testing.T) *telemetry.Embedded {
	t.Helper()
	e, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	app := e.AppenderV2(t.Context())
	for i := range 60 {
		ts := t0.Add(time.Duration(i) * time.Minute).UnixMilli()
		for _, code := range []string{"200", "500"} {
			ls := labels.FromStrings("__name__", "http_requests_total", "code", code, "service", "pay")
			ex := exemplar.Exemplar{Labels: labels.FromStrings("trace_id", fmt.Sprintf("%s%029d", code, i), "span_id", "00f067aa0ba902b7"), Value: 1, Ts: ts, HasTs: true}
			if _, err := app.Append(0, ls, 0, ts, float64(i), nil, nil, storageOpts(ex)); err != nil {
				t.Fatal(err)
			}
		}
		// Latency: a fast and a slow request.
		for j, v := range []float64{0.05, 2} {
			ls := labels.FromStrings("__name__", "http_request_duration_seconds_bucket", "le", []string{"0.1", "+Inf"}[j], "service", "pay")
			ex := exemplar.Exemplar{Labels: labels.FromStrings("trace_id", fmt.Sprintf("lat%d%027d", j, i)), Value: v, Ts: ts, HasTs: true}
			if _, err := app.Append(0, ls, 0, ts, float64(i), nil, nil, storageOpts(ex)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return e
}

func TestForSLO(t *testing.T) {
	e := store(t)
	set := &spec.Set{}
	add := func(name string, ind spec.Indicator) {
		s := &spec.SLO{Spec: spec.SLOSpec{Indicator: ind}}
		s.Metadata.Name = name
		set.SLOs = append(set.SLOs, s)
	}
	add("bad", spec.Indicator{Ratio: &spec.RatioIndicator{Bad: `sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))`, Total: `sum(rate(http_requests_total[{{.window}}]))`}})
	add("good", spec.Indicator{Ratio: &spec.RatioIndicator{Good: `sum(rate(http_requests_total{code!~"5.."}[{{.window}}]))`, Total: `sum(rate(http_requests_total[{{.window}}]))`}})
	add("ratio", spec.Indicator{Ratio: &spec.RatioIndicator{ErrorRatio: `(sum(rate(http_requests_total{code="500"}[{{.window}}])) / sum(rate(http_requests_total[{{.window}}])))`}})
	add("latency", spec.Indicator{Latency: &spec.LatencyIndicator{Histogram: `http_request_duration_seconds{service="pay"}`, Threshold: spec.Duration(500 * time.Millisecond)}})
	add("threshold", spec.Indicator{Threshold: &spec.ThresholdIndicator{Query: `up`}})
	f, err := New(Options{Source: e, Specs: func() *spec.Set { return set }, URLTemplate: "http://jaeger:16686/trace/{{.TraceID}}", Max: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Minutes 20..59 of the hour: 40 bad events, 4 slices of 10 minutes.
	start, end := t0.Add(20*time.Minute), t0.Add(59*time.Minute+30*time.Second)
	want := func(prefix string, width int, mins ...int) []string {
		var out []string
		for _, m := range mins {
			out = append(out, fmt.Sprintf("%s%0*d", prefix, width, m))
		}
		return out
	}
	for _, tc := range []struct {
		slo  string
		want []string
	}{
		{"bad", want("500", 29, 59, 49, 39, 29)},
		{"good", want("500", 29, 59, 49, 39, 29)},
		{"ratio", want("500", 29, 59, 49, 39, 29)},
		{"latency", want("lat1", 27, 59, 49, 39, 29)},
		{"threshold", nil},
		{"unknown", nil},
	} {
		t.Run(tc.slo, func(t *testing.T) {
			exs, err := f.ForSLO(t.Context(), tc.slo, start, end)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ex := range exs {
				got = append(got, ex.TraceID)
				if ex.URL != "http://jaeger:16686/trace/"+ex.TraceID {
					t.Errorf("url %q", ex.URL)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSpread(t *testing.T) {
	ex := func(id string, min int) Example {
		return Example{TraceID: id, Time: t0.Add(time.Duration(min) * time.Minute)}
	}
	for _, tc := range []struct {
		name string
		in   []Example
		n    int
		want string
	}{
		{"fewer than n", []Example{ex("a", 1), ex("b", 5)}, 3, "b a"},
		{"one per slice, newest of each", []Example{ex("a", 1), ex("b", 2), ex("c", 25), ex("d", 26), ex("e", 50), ex("f", 51)}, 3, "f d b"},
		{"burst in the last slice fills empty slices", []Example{ex("a", 55), ex("b", 56), ex("c", 57), ex("d", 58)}, 3, "d c b"},
		{"duplicate traces once", []Example{ex("a", 1), ex("a", 2), ex("b", 3)}, 5, "b a"},
		{"zero", []Example{ex("a", 1)}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range Spread(tc.in, t0, t0.Add(time.Hour), tc.n) {
				got = append(got, e.TraceID)
			}
			if strings.Join(got, " ") != tc.want {
				t.Errorf("got %q, want %q", strings.Join(got, " "), tc.want)
			}
		})
	}
}

func TestTemplates(t *testing.T) {
	for _, tc := range []struct {
		tmpl, want, err string
	}{
		{"http://jaeger:16686/trace/{{.TraceID}}", "http://jaeger:16686/trace/0af7651916cd43dd8448eb211c80319c", ""},
		{`http://grafana:3000/explore?left={{printf "{\"datasource\":\"tempo\",\"queries\":[{\"query\":\"%s\"}],\"range\":{\"from\":\"%d\",\"to\":\"%d\"}}" .TraceID .StartMillis .EndMillis | urlquery}}`,
			"http://grafana:3000/explore?left=%7B%22datasource%22%3A%22tempo%22%2C%22queries%22%3A%5B%7B%22query%22%3A%220af7651916cd43dd8448eb211c80319c%22%7D%5D%2C%22range%22%3A%7B%22from%22%3A%221765101570000%22%2C%22to%22%3A%221765101630000%22%7D%7D", ""},
		{"http://x/{{.TraceId}}", "", "can't evaluate field TraceId"},
		{"http://x/{{.TraceID", "", "traces.urlTemplate"},
	} {
		f, err := New(Options{Source: stubSource{}, URLTemplate: tc.tmpl})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.tmpl, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got := f.Link(Example{TraceID: "0af7651916cd43dd8448eb211c80319c", Time: time.UnixMilli(1765101600000)})
		if got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}

type stubSource struct{}

func (stubSource) Exemplars(context.Context, string, time.Time, time.Time) ([]exemplar.QueryResult, error) {
	return nil, nil
}
