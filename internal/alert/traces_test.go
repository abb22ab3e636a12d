package alert

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

type fakeTraces struct {
	start, end time.Time
	err        error
}

func (f *fakeTraces) ForSLO(_ context.Context, _ string, start, end time.Time) ([]tracelink.Example, error) {
	f.start, f.end = start, end
	if f.err != nil {
		return nil, f.err
	}
	return []tracelink.Example{
		{TraceID: "b1", URL: "http://jaeger/trace/b1", Time: end},
		{TraceID: "a0", URL: "http://jaeger/trace/a0", Time: start.Add(time.Minute)},
	}, nil
}

// TestDispatcherExampleTraces: a firing burn-rate alert carries example
// traces of its long window in its annotations; a failed look-up sends
// the alert without them.
func TestDispatcherExampleTraces(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		err      error
		examples string
		url      string
	}{
		{"found", nil, "http://jaeger/trace/b1 http://jaeger/trace/a0", "http://jaeger/trace/b1"},
		{"backend down", errors.New("connection refused"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, filepath.Join(t.TempDir(), "qsp.db"))
			defer st.Close()
			ft := &fakeTraces{err: tc.err}
			d, err := NewDispatcher(DispatcherOptions{Store: st, Notifiers: []Notifier{mustWebhook(t)}, Traces: ft})
			if err != nil {
				t.Fatal(err)
			}
			d.OnTransitions(t.Context(), []engine.Transition{transition("a", "page", slo.Pending, slo.Firing, t0)})
			ns, err := st.Notifications(t.Context(), store.NotificationFilter{WithPayload: true})
			if err != nil || len(ns) != 1 {
				t.Fatalf("notifications %v %v", ns, err)
			}
			var m Message
			if err := json.Unmarshal(ns[0].Payload, &m); err != nil {
				t.Fatal(err)
			}
			if got := m.Annotations[AnnotationExampleTraces]; got != tc.examples {
				t.Errorf("example_traces %q, want %q", got, tc.examples)
			}
			if got := m.Annotations[AnnotationTraceURL]; got != tc.url {
				t.Errorf("trace_url %q, want %q", got, tc.url)
			}
			if !ft.start.Equal(t0.Add(-time.Hour)) || !ft.end.Equal(t0) {
				t.Errorf("looked up %s..%s, want the 1h long window before %s", ft.start, ft.end, t0)
			}
		})
	}
}

func mustWebhook(t *testing.T) Notifier {
	t.Helper()
	wh, err := NewWebhook(WebhookOptions{Name: "ops", URL: "http://127.0.0.1:1/never"})
	if err != nil {
		t.Fatal(err)
	}
	return wh
}
