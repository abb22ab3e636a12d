package demo

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// fakeReceiver is a remote_write endpoint that fails the first requests
// with the given statuses, then stores what it gets.
type fakeReceiver struct {
	mu       sync.Mutex
	failures []int
	requests int
	samples  map[string][]prompb.Sample
}

func (f *fakeReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if r.Header.Get("Content-Encoding") != "snappy" || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad headers", http.StatusUnsupportedMediaType)
		return
	}
	if len(f.failures) > 0 {
		code := f.failures[0]
		f.failures = f.failures[1:]
		http.Error(w, "try again", code)
		return
	}
	body, _ := io.ReadAll(r.Body)
	raw, err := snappy.Decode(nil, body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req prompb.WriteRequest
	if err := req.Unmarshal(raw); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, ts := range req.Timeseries {
		key := ""
		for _, l := range ts.Labels {
			key += l.Name + "=" + l.Value + ","
		}
		f.samples[key] = append(f.samples[key], ts.Samples...)
	}
	w.WriteHeader(http.StatusNoContent)
}

func TestStreamerRetriesAndDrops(t *testing.T) {
	start := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name      string
		failures  []int
		down      bool
		wantSent  bool
		wantDrop  bool
		wantTries int
	}{
		{name: "stored at once", wantSent: true, wantTries: 1},
		{name: "retried on 5xx and 429", failures: []int{503, 500, 429}, wantSent: true, wantTries: 4},
		{name: "dropped on 400", failures: []int{400}, wantDrop: true, wantTries: 1},
		{name: "lost while the collector is down", down: true, wantDrop: true, wantTries: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &fakeReceiver{failures: c.failures, samples: map[string][]prompb.Sample{}}
			srv := httptest.NewServer(rec)
			defer srv.Close()
			sim := NewSimulator(1)
			sim.Update(func(e *Effects) { e.CollectorDown = c.down })
			wall := start
			var mu sync.Mutex
			clock := NewClock(start, 60, func() time.Time { mu.Lock(); defer mu.Unlock(); return wall })
			clock.Start()
			st := newStreamer(sim, clock, srv.URL, start, slog.New(slog.DiscardHandler))
			mu.Lock()
			wall = wall.Add(time.Second) // one simulated minute: 5 steps at 0, 15, 30, 45, 60s
			mu.Unlock()
			if err := st.flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if rec.requests != c.wantTries {
				t.Errorf("%d requests, want %d", rec.requests, c.wantTries)
			}
			if got := st.sent.Load() > 0; got != c.wantSent {
				t.Errorf("sent %d samples", st.sent.Load())
			}
			if got := st.dropped.Load() > 0; got != c.wantDrop {
				t.Errorf("dropped %d samples", st.dropped.Load())
			}
			if !c.wantSent {
				return
			}
			if int64(len(rec.samples)) == 0 {
				t.Fatal("no series received")
			}
			var total int64
			for key, ss := range rec.samples {
				if len(ss) != 5 {
					t.Errorf("%s: %d samples, want 5", key, len(ss))
				}
				for i := 1; i < len(ss); i++ {
					if ss[i].Timestamp-ss[i-1].Timestamp != LiveStep.Milliseconds() {
						t.Errorf("%s: samples %d and %d are %dms apart", key, i-1, i, ss[i].Timestamp-ss[i-1].Timestamp)
					}
				}
				total += int64(len(ss))
			}
			if total != st.sent.Load() {
				t.Errorf("received %d samples, the streamer counted %d", total, st.sent.Load())
			}
			if got := st.next; !got.Equal(start.Add(5 * LiveStep)) {
				t.Errorf("next step %s, want %s", got, start.Add(5*LiveStep))
			}
		})
	}
}

func TestStreamerStopsRetryingWhenCancelled(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	start := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	clock := NewClock(start, 1, nil)
	st := newStreamer(NewSimulator(1), clock, srv.URL, start, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- st.flush(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("flush: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("flush kept retrying after its context ended")
	}
	if st.sent.Load() != 0 {
		t.Errorf("%d samples counted as sent to a server that refused all", st.sent.Load())
	}
}

func TestClock(t *testing.T) {
	start := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	wall := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewClock(start, 60, func() time.Time { return wall })
	wall = wall.Add(time.Hour)
	if got := c.Now(); !got.Equal(start) {
		t.Errorf("a stopped clock moved to %s", got)
	}
	c.Start()
	wall = wall.Add(90 * time.Second)
	if got, want := c.Now(), start.Add(90*time.Minute); !got.Equal(want) {
		t.Errorf("after 90s at 60x: %s, want %s", got, want)
	}
	c.Start() // a no-op when running
	if got, want := c.Now(), start.Add(90*time.Minute); !got.Equal(want) {
		t.Errorf("a second Start moved the clock to %s", got)
	}
	c.Pause()
	wall = wall.Add(time.Hour)
	if got, want := c.Now(), start.Add(90*time.Minute); !got.Equal(want) {
		t.Errorf("a paused clock moved to %s, want %s", got, want)
	}
	c.Start()
	wall = wall.Add(time.Second)
	if got, want := c.Now(), start.Add(91*time.Minute); !got.Equal(want) {
		t.Errorf("1s after the restart: %s, want %s", got, want)
	}
	if got := c.Real(time.Hour); got != time.Minute {
		t.Errorf("Real(1h) at 60x = %s", got)
	}
	if got := NewClock(start, 0, nil).Speed(); got != 1 {
		t.Errorf("speed 0 became %v, want 1", got)
	}
}

func TestClockSleepUntil(t *testing.T) {
	c := NewClock(time.Now(), 1000, nil)
	c.Start()
	target := c.Now().Add(time.Minute) // 60ms of wall time
	if err := c.SleepUntil(context.Background(), target); err != nil {
		t.Fatal(err)
	}
	if c.Now().Before(target) {
		t.Errorf("woke at %s, before %s", c.Now(), target)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.SleepUntil(ctx, c.Now().Add(day)); err == nil {
		t.Error("a cancelled sleep returned nil")
	}
}
