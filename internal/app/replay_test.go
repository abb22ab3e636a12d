package app

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/prompb"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
)

// The replay: three days of request counters scraped every 15 s from
// three instances, with uneven traffic and error bursts, a counter reset,
// a 20-minute exporter gap and an instance that appears mid-way with a
// counter already at a million. Every window the API reports must hold
// exactly the increases of the samples in its (from, to], computed here
// from the samples themselves, to the event.

const replayService = `
apiVersion: qsp/v1
kind: Service
metadata: {name: shop}
spec: {owner: team}
`

const replaySLO = `
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: shop-availability}
spec:
  service: shop
  category: quality
  objective: 99.5
  window: 3d
  indicator:
    ratio:
      bad: sum(rate(http_requests_total{code="500"}[{{.window}}]))
      total: sum(rate(http_requests_total[{{.window}}]))
`

// replayBudget is 1 - objective.
const replayBudget = 0.005

type replayPoint struct {
	t   int64   // ms
	v   float64 // the counter's value
	inc float64 // what the sample adds: 0 for a series' first sample
}

type replaySeries struct {
	instance, code string
	points         []replayPoint
}

// replayData generates the counters over (start, end].
func replayData(start, end time.Time) []*replaySeries {
	var out []*replaySeries
	reset := start.Add(31 * time.Hour)
	gap := start.Add(50 * time.Hour)
	newcomer := start.Add(20*time.Hour + 7*time.Minute + 30*time.Second)
	for _, inst := range []string{"i1", "i2", "i3"} {
		ok := &replaySeries{instance: inst, code: "200"}
		bad := &replaySeries{instance: inst, code: "500"}
		var vOK, vBad float64
		if inst == "i3" {
			vOK, vBad = 1e6, 5e3 // restored from a previous life
		}
		k := 0
		for ts := start.Add(15 * time.Second); !ts.After(end); ts = ts.Add(15 * time.Second) {
			k++
			if inst == "i3" && ts.Before(newcomer) {
				continue
			}
			if inst == "i2" && !ts.Before(gap) && ts.Before(gap.Add(20*time.Minute)) {
				continue // the exporter is down: the next sample carries the gap
			}
			// Uneven traffic: a daily swing and per-scrape jitter; errors
			// in bursts and now and then.
			hour := ts.Hour()
			n := float64(5 + (k*7919)%60 + 40*((hour+6)%24)/23)
			if inst == "i2" {
				n = float64(1 + (k*31)%9)
			}
			e := 0.0
			switch {
			case (k/97)%23 == 5:
				e = float64((k * 13) % 7)
			case k%29 == 0:
				e = 1
			}
			if inst == "i1" && !ts.Before(reset) && ts.Before(reset.Add(15*time.Second)) {
				// The process restarts: both counters start again.
				vOK, vBad = 0, 0
			}
			vOK += n
			vBad += e
			ok.points = append(ok.points, replayPoint{t: ts.UnixMilli(), v: vOK})
			bad.points = append(bad.points, replayPoint{t: ts.UnixMilli(), v: vBad})
		}
		out = append(out, ok, bad)
	}
	// What each sample adds: the difference to the one before it, after a
	// reset its value; a series' first sample only starts it.
	for _, s := range out {
		for i := range s.points {
			if i == 0 {
				s.points[i].inc = 0
			} else {
				s.points[i].inc = increaseOf(s.points[i-1].v, s.points[i].v)
			}
		}
	}
	return out
}

func increaseOf(prev, v float64) float64 {
	if v >= prev {
		return v - prev
	}
	return v // a reset: the counter restarted from zero
}

// exact returns the good and total events of the samples in (from, to],
// leaving out the samples in skip.
func exact(ss []*replaySeries, from, to time.Time, skip map[*replayPoint]bool) (good, total float64) {
	f, t := from.UnixMilli(), to.UnixMilli()
	var bad float64
	for _, s := range ss {
		for i := range s.points {
			p := &s.points[i]
			if p.t <= f || p.t > t || skip[p] {
				continue
			}
			total += p.inc
			if s.code == "500" {
				bad += p.inc
			}
		}
	}
	return total - bad, total
}

// toWrite returns the samples of ss in (from, to] as remote_write series,
// without those for which hold returns true.
func toWrite(ss []*replaySeries, from, to time.Time, hold func(*replaySeries, replayPoint) bool) []prompb.TimeSeries {
	var out []prompb.TimeSeries
	f, t := from.UnixMilli(), to.UnixMilli()
	for _, s := range ss {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: s.code}, {Name: "instance", Value: s.instance}}}
		for _, p := range s.points {
			if p.t > f && p.t <= t && (hold == nil || !hold(s, p)) {
				ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: p.t, Value: p.v})
			}
		}
		if len(ts.Samples) > 0 {
			out = append(out, ts)
		}
	}
	return out
}

// pushLive writes the samples of (from, to] as they would arrive live:
// ten minutes at a time (the receivers take samples at most 10m ahead of
// the clock), each with the clock 30s into it, so the engine folds
// nothing the write has not reached: a remote_write commit is not atomic
// across series.
func pushLive(t *testing.T, ra *replayApp, clk *fakeClock, ss []*replaySeries, from, to time.Time, hold func(*replaySeries, replayPoint) bool) {
	t.Helper()
	for p := from; p.Before(to); p = p.Add(10 * time.Minute) {
		clk.set(p.Add(30 * time.Second))
		remoteWrite(t, ra.url, toWrite(ss, p, earliest(p.Add(10*time.Minute), to), hold))
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// replayApp runs the app on dir with a fast evaluation interval.
type replayApp struct {
	app  *App
	url  string
	stop context.CancelFunc
	done chan error
}

func startReplayApp(t *testing.T, dir string, clk *fakeClock) *replayApp {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{DataDir: filepath.Join(dir, "data"), Specs: []string{filepath.Join(dir, "specs")}, Listen: l.Addr().String(),
		Evaluation: EvaluationConfig{Interval: 10 * 1e6}, Auth: AuthConfig{InsecureAnonymousAdmin: true}}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, Options{Config: cfg, Listener: l, Now: clk.now})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ra := &replayApp{app: a, url: "http://" + l.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	externaltest.WaitHTTP(t, nil, ra.url+"/readyz", 30*time.Second)
	return ra
}

func (ra *replayApp) close(t *testing.T) {
	t.Helper()
	ra.stop()
	select {
	case err := <-ra.done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("app did not stop within 30s")
	}
}

// evaluatedAt sets the clock to at and waits for an evaluation at that
// time, twice over: the second one began after the first was seen, so it
// read everything written before the call.
func (ra *replayApp) evaluatedAt(t *testing.T, clk *fakeClock, at time.Time) *engine.Status {
	t.Helper()
	var st *engine.Status
	for _, tt := range []time.Time{at.Add(-time.Millisecond), at} {
		clk.set(tt)
		externaltest.Eventually(t, 20*time.Second, 2*time.Millisecond, func() bool {
			st = sloStatus(t, ra.url)
			return st.EvaluatedAt.Equal(tt)
		}, "no evaluation at "+tt.String())
	}
	return st
}

// checkWindows compares every window of st, and its budget, with the
// exact sums over the samples written (those up to written), and its
// edges with the declared lengths. Windows end on the half minute
// the engine's partial settle (10s) before the evaluation.
func checkWindows(t *testing.T, when string, st *engine.Status, ss []*replaySeries, written time.Time, skip map[*replayPoint]bool) {
	t.Helper()
	if len(st.Windows) == 0 {
		t.Fatalf("%s: no windows (%s: %s)", when, st.State, st.Reason)
	}
	// The partial minutes reach at most the shortest window (at most
	// 5m) past the folded ones (the settle is 30s).
	shortest, err := model.ParseDuration(st.Windows[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	end := earliest(st.EvaluatedAt.Add(-10*time.Second).Truncate(30*time.Second),
		st.EvaluatedAt.Add(-30*time.Second).Truncate(time.Minute).Add(min(time.Duration(shortest), 5*time.Minute)))
	for _, w := range st.Windows {
		if !w.To.Equal(end) {
			t.Errorf("%s: %s window ends at %s, want %s", when, w.Name, w.To, end)
		}
		d, err := model.ParseDuration(w.Name)
		if err != nil {
			t.Fatalf("%s: window %q: %v", when, w.Name, err)
		}
		// Every window is exactly as long as declared: beyond 6h the
		// minutes of the bucket it starts in are read back.
		if got := w.To.Sub(w.From); got != time.Duration(d) {
			t.Errorf("%s: %s window is (%s, %s], %s long", when, w.Name, w.From, w.To, got)
		}
		good, total := exact(ss, w.From, earliest(w.To, written), skip)
		if w.Good != good || w.Total != total {
			t.Errorf("%s: %s window (%s, %s]: got good %v total %v, want good %v total %v", when, w.Name, w.From.Format(time.TimeOnly), w.To.Format(time.TimeOnly), w.Good, w.Total, good, total)
			continue
		}
		if total == 0 {
			continue
		}
		want := (total - good) / total / replayBudget
		if w.BurnRate == nil || math.Abs(*w.BurnRate-want) > 1e-9 {
			t.Errorf("%s: %s burn rate: got %v, want %v", when, w.Name, w.BurnRate, want)
		}
	}
	if got := end.Sub(st.PeriodStart); got != 72*time.Hour {
		t.Errorf("%s: the budget window starts at %s, %s before its end", when, st.PeriodStart, got)
	}
	good, total := exact(ss, st.PeriodStart, earliest(end, written), skip)
	if st.Budget.Total != total || st.Budget.Consumed != total-good {
		t.Errorf("%s: budget over (%s, %s]: got %v events %v bad, want %v and %v", when, st.PeriodStart, end, st.Budget.Total, st.Budget.Consumed, total, total-good)
	}
}

func writeReplaySpecs(t *testing.T, dir string, withSLO bool) {
	t.Helper()
	specs := filepath.Join(dir, "specs")
	if err := os.MkdirAll(specs, 0o755); err != nil {
		t.Fatal(err)
	}
	body := replayService
	if withSLO {
		body += replaySLO
	}
	if err := os.WriteFile(filepath.Join(specs, "shop.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

var (
	replayEnd   = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	replayStart = replayEnd.Add(-72 * time.Hour)
)

// TestReplayBeforeTheSLO ingests the three days over remote_write first,
// then adds the SLO: the backfill counts every window exactly.
func TestReplayBeforeTheSLO(t *testing.T) {
	dir := t.TempDir()
	ss := replayData(replayStart, replayEnd)
	writeReplaySpecs(t, dir, false)
	clk := &fakeClock{t: replayEnd.Add(45 * time.Second)}
	ra := startReplayApp(t, dir, clk)
	defer ra.close(t)
	// A fresh TSDB takes any history in order, a day per request.
	for day := range 3 {
		from := replayStart.Add(time.Duration(day) * 24 * time.Hour)
		remoteWrite(t, ra.url, toWrite(ss, from, from.Add(24*time.Hour), nil))
	}
	writeReplaySpecs(t, dir, true)
	resp, err := http.Post(ra.url+"/-/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %s", resp.Status)
	}
	st := ra.evaluatedAt(t, clk, replayEnd.Add(50*time.Second))
	checkWindows(t, "after the backfill", st, ss, replayEnd, nil)
}

// TestReplayLive ingests the three days hour by hour while the SLO
// exists, as a live remote_write would, and checks the windows as the
// minutes settle and after; with late samples inside the out-of-order
// window; and with a restart in the middle.
func TestReplayLive(t *testing.T) {
	for _, tc := range []struct {
		name    string
		late    bool
		restart int // hour after which the app restarts; 0: never
	}{
		{name: "in order"},
		{name: "late and out of order", late: true},
		{name: "restart", restart: 40},
		{name: "restart before late samples", late: true, restart: 38},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ss := replayData(replayStart, replayEnd)
			writeReplaySpecs(t, dir, true)
			clk := &fakeClock{t: replayStart.Add(45 * time.Second)}
			ra := startReplayApp(t, dir, clk)
			defer func() { ra.close(t) }()
			for h := range 72 {
				from := replayStart.Add(time.Duration(h) * time.Hour)
				to := from.Add(time.Hour)
				// Late hours hold back part of two series until their
				// minutes are folded: i1's 200 counter loses a stretch in
				// the middle (written after newer samples: out of order
				// for the TSDB), i2's 500 counter its last minutes (in
				// order, but late).
				lateHour := tc.late && h%7 == 3
				held := func(s *replaySeries, p replayPoint) bool {
					if !lateHour {
						return false
					}
					switch {
					case s.instance == "i1" && s.code == "200":
						return p.t >= to.Add(-8*time.Minute).UnixMilli() && p.t < to.Add(-3*time.Minute).UnixMilli()
					case s.instance == "i2" && s.code == "500":
						return p.t > to.Add(-4*time.Minute).UnixMilli()
					}
					return false
				}
				pushLive(t, ra, clk, ss, from, to, held)
				if h%12 == 5 && !lateHour {
					// While the last minute settles: folded up to a minute
					// before the end, the last one read provisionally.
					st := ra.evaluatedAt(t, clk, to.Add(25*time.Second))
					checkWindows(t, fmt.Sprintf("hour %d, settling", h), st, ss, to, nil)
				}
				st := ra.evaluatedAt(t, clk, to.Add(45*time.Second))
				restart := tc.restart != 0 && h == tc.restart
				if restart && lateHour {
					// The late samples arrive after a restart: the
					// restarted engine revises the minutes its
					// predecessor folded.
					ra.close(t)
					ra = startReplayApp(t, dir, clk)
					ra.evaluatedAt(t, clk, to.Add(47*time.Second))
				}
				if lateHour {
					remoteWrite(t, ra.url, toWrite(ss, from, to, func(s *replaySeries, p replayPoint) bool { return !held(s, p) }))
					st = ra.evaluatedAt(t, clk, to.Add(50*time.Second))
				}
				if h%6 == 5 || lateHour || h == 71 {
					checkWindows(t, fmt.Sprintf("hour %d", h), st, ss, to, nil)
				}
				if t.Failed() {
					t.FailNow()
				}
				if restart && !lateHour {
					ra.close(t)
					ra = startReplayApp(t, dir, clk)
					st = ra.evaluatedAt(t, clk, to.Add(55*time.Second))
					checkWindows(t, "after the restart", st, ss, to, nil)
				}
			}
			if n := lateDropped(t, ra.url); n != 0 {
				t.Errorf("qsp_samples_late_dropped_total: %v, want 0: every late sample was inside the window", n)
			}
		})
	}
}

// TestLateBeyondTheWindow: samples that arrive later than the late window
// are counted in no minute and reported, never folded into a newer one.
func TestLateBeyondTheWindow(t *testing.T) {
	dir := t.TempDir()
	end := replayStart.Add(3 * time.Hour)
	ss := replayData(replayStart, end)
	writeReplaySpecs(t, dir, true)
	clk := &fakeClock{t: replayStart.Add(45 * time.Second)}
	ra := startReplayApp(t, dir, clk)
	defer ra.close(t)
	// i2's 500 counter goes silent for its last 20 minutes (a partition),
	// then the backlog arrives, in order, 15 minutes after the end.
	silent := end.Add(-20 * time.Minute).UnixMilli()
	skip := map[*replayPoint]bool{}
	var backlog *replaySeries
	for _, s := range ss {
		if s.instance == "i2" && s.code == "500" {
			backlog = s
		}
	}
	pushLive(t, ra, clk, ss, replayStart, end, func(s *replaySeries, p replayPoint) bool { return s == backlog && p.t > silent })
	ra.evaluatedAt(t, clk, end.Add(45*time.Second))
	later := end.Add(15 * time.Minute)
	pushLive(t, ra, clk, ss, end, later, func(s *replaySeries, p replayPoint) bool { return s == backlog })
	ra.evaluatedAt(t, clk, later.Add(45*time.Second))
	remoteWrite(t, ra.url, toWrite([]*replaySeries{backlog}, time.UnixMilli(silent), later, nil))
	st := ra.evaluatedAt(t, clk, later.Add(50*time.Second))
	// The samples before the revision horizon (the late window, 10m, plus
	// 2 minutes) are dropped; the rest revise their minutes.
	horizon := later.Add(-12 * time.Minute).UnixMilli()
	dropped := 0
	for i := range backlog.points {
		p := &backlog.points[i]
		if p.t > silent && p.t <= horizon {
			skip[p] = true
			dropped++
		}
	}
	checkWindows(t, "after the backlog", st, ss, later, skip)
	// Each dropped sample counts once, though the bad and the total
	// query both select i2's 500 counter, and the other series' samples
	// the read back found again count nothing.
	if st.LateSamplesDropped != int64(dropped) {
		t.Errorf("status: %d late samples dropped, want %d", st.LateSamplesDropped, dropped)
	}
	if n := lateDropped(t, ra.url); n != float64(st.LateSamplesDropped) {
		t.Errorf("qsp_samples_late_dropped_total: %v, status says %d", n, st.LateSamplesDropped)
	}
}

// TestNewSeriesAddsOnlyIncreases: a series first seen mid-window, at a
// counter value of a million, adds only what it counts after that.
func TestNewSeriesAddsOnlyIncreases(t *testing.T) {
	dir := t.TempDir()
	t0 := replayStart.Add(2 * time.Hour)
	writeReplaySpecs(t, dir, true)
	clk := &fakeClock{t: t0.Add(45 * time.Second)}
	ra := startReplayApp(t, dir, clk)
	defer ra.close(t)
	mk := func(inst, code string, from, to time.Time, start, per float64) prompb.TimeSeries {
		ts := prompb.TimeSeries{Labels: []prompb.Label{{Name: "__name__", Value: "http_requests_total"}, {Name: "code", Value: code}, {Name: "instance", Value: inst}}}
		v := start
		for t := from.Add(15 * time.Second); !t.After(to); t = t.Add(15 * time.Second) {
			ts.Samples = append(ts.Samples, prompb.Sample{Timestamp: t.UnixMilli(), Value: v})
			v += per
		}
		return ts
	}
	// Ten minutes of one instance: 10 per scrape, all good.
	remoteWrite(t, ra.url, []prompb.TimeSeries{mk("i1", "200", t0.Add(-10*time.Minute), t0, 0, 10)})
	st := ra.evaluatedAt(t, clk, t0.Add(45*time.Second))
	// The first sample of i1 only starts it: 39 increases of 10 in 10m.
	if w := st.WindowStat(30 * time.Minute); w.Total != 390 || w.Good != 390 {
		t.Fatalf("30m before the newcomer: %v good of %v, want 390 of 390", w.Good, w.Total)
	}
	// A second instance appears with its counters at a million and ten
	// thousand (bad): its first samples add nothing, its increases count.
	t1 := t0.Add(5 * time.Minute)
	remoteWrite(t, ra.url, []prompb.TimeSeries{
		mk("i1", "200", t0, t1, 400, 10),
		mk("i2", "200", t0.Add(2*time.Minute), t1, 1e6, 3),
		mk("i2", "500", t0.Add(2*time.Minute), t1, 1e4, 1),
	})
	st = ra.evaluatedAt(t, clk, t1.Add(45*time.Second))
	// i1: 20 more increases of 10; i2: 11 increases of 3 good and 11 of
	// 1 bad over its 12 samples.
	w := st.WindowStat(30 * time.Minute)
	if w.Total != 390+200+33+11 || w.Total-w.Good != 11 {
		t.Errorf("30m with the newcomer: %v good of %v, want %v of %v", w.Good, w.Total, 390+200+33, 390+200+33+11)
	}
	// The 5m window is (t1-4m30s, t1+30s]: the clock is t1+45s, less
	// the 10s partial settle, down to a half minute. It holds 18
	// of i1's increases and every one of i2's.
	if w := st.WindowStat(5 * time.Minute); w.Total != 180+33+11 || w.Total-w.Good != 11 {
		t.Errorf("5m with the newcomer: %v good of %v, want %v of %v", w.Good, w.Total, 180+33, 180+33+11)
	}
}

var lateDroppedLine = regexp.MustCompile(`(?m)^qsp_samples_late_dropped_total\{slo="shop-availability"\} (\S+)$`)

// lateDropped reads the SLO's qsp_samples_late_dropped_total from
// /metrics; 0 when it has not been counted yet.
func lateDropped(t *testing.T, url string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := lateDroppedLine.FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
