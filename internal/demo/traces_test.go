package demo

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/telemetry"
)

// TestStreamerExemplars: the demo's failed requests reach QSP's real
// receiver with trace IDs, so its incidents show example traces; good
// requests carry none.
func TestStreamerExemplars(t *testing.T) {
	start := time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: filepath.Join(t.TempDir(), "tsdb"), Retention: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	wh, err := telemetry.NewWriteHandler(telemetry.ReceiverOptions{Storage: db, Now: func() time.Time { return start.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/api/v1/write", wh)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	sim := NewSimulator(1)
	sim.Update(func(e *Effects) { e.CheckoutErrors = 0.2 })
	wall := start
	var mu sync.Mutex
	clock := NewClock(start, 60, func() time.Time { mu.Lock(); defer mu.Unlock(); return wall })
	clock.Start()
	st := newStreamer(sim, clock, srv.URL, start, slog.New(slog.DiscardHandler))
	mu.Lock()
	wall = wall.Add(5 * time.Second) // five simulated minutes
	mu.Unlock()
	if err := st.flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.dropped.Load() > 0 {
		t.Fatalf("%d samples dropped", st.dropped.Load())
	}
	res, err := db.Exemplars(t.Context(), `http_requests_total{service="checkout"}`, start, start.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, r := range res {
		if !strings.HasPrefix(r.SeriesLabels.Get("code"), "5") {
			t.Errorf("exemplars on a good series %s", r.SeriesLabels)
		}
		for _, ex := range r.Exemplars {
			if len(ex.Labels.Get("trace_id")) != 32 || len(ex.Labels.Get("span_id")) != 16 {
				t.Errorf("exemplar labels %s", ex.Labels)
			}
			bad++
		}
	}
	if bad < 5 {
		t.Errorf("%d exemplars on checkout's 5xx over 5 minutes, want one per step that failed", bad)
	}
}
