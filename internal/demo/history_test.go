package demo

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

func TestBlockSize(t *testing.T) {
	cases := []struct{ max, want time.Duration }{
		{time.Hour, 2 * time.Hour}, // never below Prometheus' head block
		{2 * time.Hour, 2 * time.Hour},
		{17 * time.Hour, 6 * time.Hour},
		{84 * time.Hour, 54 * time.Hour}, // 10% of the default 35d retention
		{31 * day, 486 * time.Hour},
	}
	for _, c := range cases {
		if got := BlockSize(c.max); got != c.want {
			t.Errorf("BlockSize(%s) = %s, want %s", c.max, got, c.want)
		}
	}
}

// TestWriteHistory writes three days, opens them as the app would, and
// checks the blocks' alignment, the samples' count and resolution, and
// the past incident of that period (the auth retry storm, 2d5h before
// the end, 30 minutes of 429s).
func TestWriteHistory(t *testing.T) {
	dir := t.TempDir()
	end := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	from := end.Add(-3 * day)
	sim := NewSimulator(1)
	size := BlockSize(84 * time.Hour)
	var last HistoryProgress
	n, err := WriteHistory(context.Background(), sim, dir, from, end, size, func(p HistoryProgress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if !last.Finished || last.Done != last.Total || last.Samples != n {
		t.Errorf("last progress %+v, %d samples written", last, n)
	}
	if e := sim.Effects(); e != (Effects{}) {
		t.Errorf("effects after the history: %+v, want none", e)
	}
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: dir, Retention: 35 * day})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	blocks := db.DB().Blocks()
	if len(blocks) < 2 {
		t.Fatalf("%d blocks for 3 days of %s blocks", len(blocks), size)
	}
	bs := size.Milliseconds()
	for _, b := range blocks {
		m := b.Meta()
		if m.MinTime/bs != (m.MaxTime-1)/bs {
			t.Errorf("block [%d, %d) crosses a %s boundary", m.MinTime, m.MaxTime, size)
		}
	}
	ctx := context.Background()
	m, err := db.Samples(ctx, []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, model.MetricNameLabel, "probe_success")}, from.Add(-time.Millisecond), end)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].Floats) != 3*24*60 {
		t.Fatalf("probe_success: %d series, want 1 with one sample a minute (%d)", len(m), 3*24*60)
	}
	if got := m[0].Floats[len(m[0].Floats)-1].T; got != end.Add(-HistoryStep).UnixMilli() {
		t.Errorf("last sample at %s, want a step before the end", time.UnixMilli(got).UTC())
	}
	storm := end.Add(-(2*day + 5*time.Hour))
	throttled := func(from, to time.Time) float64 {
		v, err := db.Instant(ctx, `sum(increase(http_requests_total{service="auth",code="429"}[`+to.Sub(from).String()+`]))`, to)
		if err != nil {
			t.Fatal(err)
		}
		if len(v) == 0 {
			return 0
		}
		return v[0].F
	}
	if got := throttled(storm.Add(-time.Hour), storm.Add(-HistoryStep)); got != 0 {
		t.Errorf("%v auth requests throttled in the hour before the retry storm", got)
	}
	if got := throttled(storm, storm.Add(30*time.Minute)); got < 100 {
		t.Errorf("only %v auth requests throttled during the retry storm", got)
	}
}

func TestWriteHistoryBadInput(t *testing.T) {
	sim := NewSimulator(1)
	end := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	if n, err := WriteHistory(context.Background(), sim, t.TempDir(), end, end, 2*time.Hour, nil); n != 0 || err != nil {
		t.Errorf("empty range: %d, %v", n, err)
	}
	if _, err := WriteHistory(context.Background(), sim, t.TempDir(), end.Add(-time.Hour), end, time.Minute, nil); err == nil {
		t.Error("a one-minute block size was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := WriteHistory(ctx, sim, t.TempDir(), end.Add(-day), end, 2*time.Hour, nil); err == nil {
		t.Error("a cancelled write returned no error")
	}
}

// historyBenchDays is the history BenchmarkHistory writes; the demo
// writes 30.
var historyBenchDays time.Duration = 7

// BenchmarkHistory compares the two ways to put a day of simulated
// history into a fresh embedded TSDB: as blocks written before the TSDB
// opens (what the demo does), and as the reference, through QSP's own
// remote_write receiver over loopback in one-hour batches, in time order
// (what a Prometheus replaying its WAL would do). Both write the same
// samples; the figure to read is samples/s. The remote_write variant
// includes closing the TSDB, which compacts the head it filled.
func BenchmarkHistory(b *testing.B) {
	end := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	from := end.Add(-historyBenchDays * day)
	b.Run("blocks", func(b *testing.B) {
		b.ReportAllocs()
		var n int64
		for b.Loop() {
			got, err := WriteHistory(context.Background(), NewSimulator(1), b.TempDir(), from, end, BlockSize(84*time.Hour), nil)
			if err != nil {
				b.Fatal(err)
			}
			n += got
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
	})
	b.Run("remote_write", func(b *testing.B) {
		b.ReportAllocs()
		var n int64
		for b.Loop() {
			db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: b.TempDir(), Retention: 35 * day})
			if err != nil {
				b.Fatal(err)
			}
			h, err := telemetry.NewWriteHandler(telemetry.ReceiverOptions{Storage: db, Now: func() time.Time { return end }})
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(h)
			clock := NewClock(end, 1, nil)
			st := newStreamer(NewSimulator(1), clock, srv.URL, from, slog.New(slog.DiscardHandler))
			// One request per hour of samples at history resolution.
			for t := from; t.Before(end); t = t.Add(time.Hour) {
				if err := st.sendRange(context.Background(), t, t.Add(time.Hour), HistoryStep); err != nil {
					b.Fatal(err)
				}
			}
			n += st.sent.Load()
			if st.dropped.Load() > 0 {
				b.Fatalf("%d samples rejected", st.dropped.Load())
			}
			srv.Close()
			db.Close()
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
	})
}

// TestSeedHistoryTitles checks that the past incidents are titled in
// words as live ones are, naming the deploy before the trouble, not as
// alerts ("checkout: checkout-availability page").
func TestSeedHistoryTitles(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	set, diags := spec.Load(filepath.Join("..", "..", "examples"))
	if diags.HasErrors() {
		t.Fatalf("examples: %v", diags)
	}
	end := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	n, err := seedHistory(ctx, st, set, end, 30*day)
	if err != nil {
		t.Fatal(err)
	}
	incs, err := st.Incidents(ctx, store.IncidentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 4 || len(incs) != n {
		t.Fatalf("%d incidents seeded, %d stored, want 4", n, len(incs))
	}
	got := map[string]bool{}
	for _, inc := range incs {
		got[inc.Title] = true
	}
	// The first bad minutes: end minus ago, in UTC.
	for _, want := range []string{
		"Checkout availability burning its error budget since 09:00 UTC, after deploy v2.12.0",
		"Search latency burning its error budget since 06:00 UTC, after deploy v7.3.1",
		"Auth availability burning its error budget since 07:00 UTC",
		"Auth worker memory burning its error budget since 03:00 UTC, after deploy v5.8.0",
	} {
		if !got[want] {
			t.Errorf("no past incident titled %q; titles: %v", want, got)
		}
	}
}
