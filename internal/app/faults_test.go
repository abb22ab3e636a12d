package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/prompb"
	"go.uber.org/goleak"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// TestCorruptDatabaseIsRefused corrupts a page of the SQLite database: QSP
// detects it at start and refuses to run on it, saying what to do, rather
// than evaluate on silently wrong state.
func TestCorruptDatabaseIsRefused(t *testing.T) {
	dir := t.TempDir()
	clk := &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC)}
	_, _, stop := startApp(t, dir, clk.now)
	stop()
	path := filepath.Join(dir, "data", "qsp.db")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 3*4096 {
		t.Fatalf("database of %d bytes is too small to corrupt a page", len(b))
	}
	// Overwrite the second page (the first table's b-tree) with noise.
	for i := 4096; i < 2*4096; i++ {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &Config{DataDir: filepath.Join(dir, "data"), Specs: []string{filepath.Join(dir, "specs")}, Listen: "127.0.0.1:0",
		Auth: AuthConfig{InsecureAnonymousAdmin: true}}
	_, err = New(context.Background(), Options{Config: cfg, Now: clk.now})
	if err == nil {
		t.Fatal("QSP started on a corrupt database")
	}
	if !strings.Contains(err.Error(), "qsp.db") || !strings.Contains(err.Error(), "backup") {
		t.Errorf("the error does not say which file or what to do: %v", err)
	}
	t.Logf("refused: %v", err)
}

// TestCorruptWALIsRepaired corrupts the tail of the TSDB's write-ahead log:
// the TSDB detects it on open, drops the torn records and keeps what came
// before, and QSP starts.
func TestCorruptWALIsRepaired(t *testing.T) {
	dir := t.TempDir()
	tsdbDir := filepath.Join(dir, "data", "tsdb")
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: tsdbDir})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ls := labels.FromStrings("__name__", "req_total", "code", "200")
	for batch := range 20 {
		app := db.DB().Appender(context.Background())
		from := t0.Add(time.Duration(batch) * time.Minute)
		for _, s := range series("200", from, from.Add(time.Minute), 1, float64(batch*4)).Samples {
			if _, err := app.Append(0, ls, s.Timestamp, s.Value); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	segs, _ := filepath.Glob(filepath.Join(tsdbDir, "wal", "0*"))
	if len(segs) == 0 {
		t.Fatal("no WAL segment")
	}
	seg := segs[len(segs)-1]
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Tear the records in the middle of what was written (the end of the
	// segment is zero padding).
	end := len(b)
	for end > 0 && b[end-1] == 0 {
		end--
	}
	for i := end / 2; i < end/2+64; i++ {
		b[i] ^= 0x5a
	}
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: tsdbDir})
	if err != nil {
		t.Fatalf("the TSDB did not repair its WAL: %v", err)
	}
	defer db.Close()
	m, err := db.Samples(context.Background(), []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "__name__", "req_total")}, t0.Add(-time.Minute), t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || len(m[0].Floats) < 4 || len(m[0].Floats) >= 80 {
		n := 0
		if len(m) == 1 {
			n = len(m[0].Floats)
		}
		t.Fatalf("after repair: %d samples, want the records before the tear (some, not all 80)", n)
	}
	// Every sample that survived is one that was written, in order.
	var last int64
	for _, p := range m[0].Floats {
		if p.T <= last || p.F <= 0 {
			t.Fatalf("repaired data is wrong: %v", m[0].Floats)
		}
		last = p.T
	}
	t.Logf("WAL repaired: %d of 80 samples kept", len(m[0].Floats))
}

// TestHangingRemoteSource points QSP at a Prometheus API that accepts
// connections and never answers: cycles end at their timeout, the SLOs are
// no_data with the reason, one source-down alert fires, and no goroutine
// is left behind.
func TestHangingRemoteSource(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)

	remote, err := telemetry.NewRemote(telemetry.RemoteOptions{URL: hang.URL, Timeout: 200 * time.Millisecond, MaxRetries: 1, MinBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	set, diags := spec.LoadBytes("shop.yaml", []byte(appSpecs))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	st, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "qsp.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 30, 0, time.UTC)}
	e, err := engine.New(engine.Options{Source: remote, Store: st, Specs: set, Now: clk.now, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	start := time.Now()
	if err := e.Prepare(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		clk.set(clk.now().Add(time.Minute))
		e.Cycle(ctx)
	}
	elapsed := time.Since(start)
	cancel()
	if elapsed > 20*time.Second {
		t.Errorf("four cycles against a hanging source took %s", elapsed)
	}
	snap := e.Snapshot()
	s := snap.Status("shop-availability")
	if s == nil || s.State != engine.StateNoData || !strings.Contains(s.Reason, "unavailable") {
		t.Fatalf("against a hanging source: %+v", s)
	}
	if snap.SourceDown == nil || snap.SourceDown.State != "firing" {
		t.Errorf("source-down alert: %+v", snap.SourceDown)
	}
	t.Logf("%s: %s (4 cycles in %s)", s.State, s.Reason, elapsed.Round(time.Millisecond))
}

// TestClockJumps moves the clock two hours forward and back while data
// flows: nothing panics, no alert fires on the jump, and once time catches
// up no event is lost.
func TestClockJumps(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0.Add(30 * time.Second)}
	a, url, stop := startApp(t, dir, clk.now)
	defer stop()
	okV := 0.0
	write := func(from time.Time, minutes int) {
		remoteWrite(t, url, []prompb.TimeSeries{series("200", from, from.Add(time.Duration(minutes)*time.Minute), 100, okV), series("500", from, from.Add(time.Duration(minutes)*time.Minute), 0, 0)})
		okV += float64(minutes) * 400
	}
	transitionsBefore := countTransitions(t, a)
	write(t0, 5)
	clk.set(t0.Add(5*time.Minute + 30*time.Second))
	waitCycle(t, a, clk.now())
	// Forward two hours (an NTP correction, a VM resumed).
	clk.set(t0.Add(2*time.Hour + 5*time.Minute + 30*time.Second))
	waitCycle(t, a, clk.now())
	// And back.
	clk.set(t0.Add(6*time.Minute + 30*time.Second))
	write(t0.Add(5*time.Minute), 1)
	waitCycle(t, a, clk.now())
	for _, s := range a.Engine().Snapshot().Statuses {
		if s.State == engine.StateFiring {
			t.Errorf("%s fires after clock jumps", s.Key)
		}
	}
	if n := countTransitions(t, a) - transitionsBefore; n > 2 {
		t.Errorf("%d transitions from clock jumps alone", n)
	}
	// Time catches up past the jump: the minutes folded while the clock
	// was ahead were folded empty, and the samples written for them
	// since are late beyond the late window. They are counted as dropped,
	// never folded into the minute where data resumes (which would put
	// two hours of events into one minute). The series' first sample
	// only starts it.
	for m := 6; m < 126; m += 5 {
		clk.set(t0.Add(time.Duration(m+5)*time.Minute + 30*time.Second))
		write(t0.Add(time.Duration(m)*time.Minute), 5)
	}
	clk.set(t0.Add(2*time.Hour + 7*time.Minute + 30*time.Second))
	write(t0.Add(2*time.Hour+6*time.Minute), 1)
	waitCycle(t, a, clk.now())
	s := a.Engine().Snapshot().Status("shop-availability")
	if s.Budget.Total > okV-100 || s.LateSamplesDropped == 0 {
		t.Errorf("after the clock caught up: %v events (of %v written), %d late samples dropped: want fewer events and the rest dropped", s.Budget.Total, okV-100, s.LateSamplesDropped)
	}
	if w := s.WindowStat(5 * time.Minute); w == nil || w.Total != 19*100 {
		t.Errorf("5m window after the clock caught up: %+v, want the 19 increases of (end-5m, end]", w)
	}
}

func countTransitions(t *testing.T, a *App) int {
	ts, err := a.Store().Transitions(context.Background(), store.TransitionFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return len(ts)
}

// waitCycle waits until the engine has evaluated at clock time now.
func waitCycle(t *testing.T, a *App, now time.Time) {
	t.Helper()
	externaltest.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		return !a.Engine().Snapshot().At.Before(now)
	}, "no cycle at %s", now)
}
