package gate

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"

	"github.com/qsp-dev/qsp/internal/tracelink"
)

// TestCanaryExampleTraces: a failed canary metric lists, in the verdict,
// example traces from the canary side's exemplars of the analysed window
// (the slow canary requests), not the baseline's.
func TestCanaryExampleTraces(t *testing.T) {
	f := canaryFixture(t)
	// Exemplars on the samples of the one-shot window, both tracks.
	app := f.db.AppenderV2(t.Context())
	for _, track := range []string{"baseline", "canary"} {
		ls := labels.FromStrings("__name__", "lat_seconds", "case", "bad", "track", track)
		for i := range 4 {
			ts := testNow.Add(time.Duration(12+2*i) * time.Minute)
			v := 0.15
			if track == "baseline" {
				v = 0.1
			}
			ex := exemplar.Exemplar{Labels: labels.FromStrings("trace_id", fmt.Sprintf("%s-%d", track, i)), Value: v, Ts: ts.UnixMilli(), HasTs: true}
			if _, err := app.(storage.ExemplarAppenderV2).AppendExemplars(0, ls, []exemplar.Exemplar{ex}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	finder, err := tracelink.New(tracelink.Options{Source: f.db, URLTemplate: "http://jaeger/trace/{{.TraceID}}", Max: 3})
	if err != nil {
		t.Fatal(err)
	}
	f.runner.opts.Traces = finder
	f.clock.set(testNow.Add(20 * time.Minute))
	ev := f.evaluate("canary-oneshot", Request{})
	mustState(t, ev, StateFail)
	got := ev.Canary.ExampleTraces["latency"]
	var ids []string
	for _, ex := range got {
		ids = append(ids, ex.TraceID)
	}
	if fmt.Sprint(ids) != "[canary-3 canary-2 canary-0]" || got[0].URL != "http://jaeger/trace/canary-3" {
		t.Errorf("example traces %v (%+v), want canary ones spread over the window (one per third), newest first", ids, got)
	}
}
