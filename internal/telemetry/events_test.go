package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func postEvents(t testing.TB, h http.Handler, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/api/v1/events", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

type deploySink struct {
	mu      sync.Mutex
	deploys []Deploy
	fail    error
}

func (s *deploySink) sink(_ context.Context, d Deploy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.deploys = append(s.deploys, d)
	return nil
}

func TestEventsCountsAndDeploys(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	open := func() (*Embedded, *EventsHandler, *deploySink) {
		e, err := OpenEmbedded(EmbeddedOptions{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		ds := &deploySink{}
		h, err := NewEventsHandler(ReceiverOptions{Storage: e, DeploySink: ds.sink, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return e, h, ds
	}
	e, h, ds := open()
	code, body := postEvents(t, h, `{"events": [
		{"type": "counts", "service": "checkout", "sli": "requests", "good": 120, "bad": 3, "time": "2025-03-01T11:58:00Z", "labels": {"region": "eu"}},
		{"type": "deploy", "service": "checkout", "version": "v1.4.2", "description": "canary", "labels": {"env": "prod"}},
		{"type": "counts", "service": "checkout", "sli": "requests", "good": 80, "time": "2025-03-01T11:59:00Z", "labels": {"region": "eu"}}
	]}`)
	if code != http.StatusOK || !strings.Contains(body, `"accepted":3`) {
		t.Fatalf("status %d: %s", code, body)
	}
	if len(ds.deploys) != 1 || ds.deploys[0].Version != "v1.4.2" || !ds.deploys[0].Time.Equal(now) || ds.deploys[0].Labels["env"] != "prod" {
		t.Errorf("deploys: %+v", ds.deploys)
	}
	// Restart: the totals continue from what the TSDB holds.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e, h, _ = open()
	defer e.Close()
	code, body = postEvents(t, h, `{"events": [{"type": "counts", "service": "checkout", "sli": "requests", "good": 10, "bad": 1, "labels": {"region": "eu"}}]}`)
	if code != http.StatusOK {
		t.Fatalf("after restart: status %d: %s", code, body)
	}
	got := rawSamples(t, e, EventsMetric, now.Add(-time.Hour), now)
	want := `{__name__="qsp_events_total", outcome="bad", region="eu", service="checkout", sli="requests"} =>
0 @[1740830279999]
3 @[1740830280000]
3 @[1740830340000]
4 @[1740830400000]
{__name__="qsp_events_total", outcome="good", region="eu", service="checkout", sli="requests"} =>
0 @[1740830279999]
120 @[1740830280000]
200 @[1740830340000]
210 @[1740830400000]`
	if got.String() != want {
		t.Errorf("stored:\n%s\nwant:\n%s", got, want)
	}
}

func TestEventsLateAndFailures(t *testing.T) {
	e := openTestDB(t)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ds := &deploySink{}
	h, err := NewEventsHandler(ReceiverOptions{Storage: e, DeploySink: ds.sink, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := postEvents(t, h, `{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 5}]}`); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	// A slightly late event is counted just after the newest count.
	if code, body := postEvents(t, h, `{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 2, "time": "2025-03-01T11:59:00Z"}]}`); code != 200 {
		t.Fatalf("late event: %d %s", code, body)
	}
	// A very late one is refused, and nothing of its request is stored.
	code, body := postEvents(t, h, `{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 1, "time": "2025-03-01T11:00:00Z"}]}`)
	if code != http.StatusBadRequest || !strings.Contains(errorMessage(t, body), "events[0].time") {
		t.Errorf("very late event: %d %s", code, body)
	}
	// A failing deploy sink fails the request before counts are stored.
	ds.fail = errors.New("store down")
	code, body = postEvents(t, h, `{"events": [{"type": "counts", "service": "s", "sli": "x", "good": 100}, {"type": "deploy", "service": "s", "version": "2"}]}`)
	if code != http.StatusServiceUnavailable {
		t.Errorf("failing sink: %d %s", code, body)
	}
	got := rawSamples(t, e, `qsp_events_total{outcome="good"}`, now.Add(-time.Hour), now.Add(time.Hour))
	if len(got) != 1 || got[0].String() != "{__name__=\"qsp_events_total\", outcome=\"good\", service=\"s\", sli=\"x\"} =>\n0 @[1740830399999]\n5 @[1740830400000]\n7 @[1740830400001]" {
		t.Errorf("stored: %s", got)
	}
}
