package gate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/qsp-dev/qsp/internal/gate/canary"
	"github.com/qsp-dev/qsp/internal/policy"
)

func TestWindowQuery(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: `sum(increase(errors_total{track="canary"}[1m]))`, want: `sum(increase(errors_total{track="canary"}[10m]))`},
		{in: `sum(increase(a[1m])) + sum(increase(b{x="y"}[5m] offset 1m))`, want: `sum(increase(a[10m])) + sum(increase(b{x="y"}[10m] offset 1m))`},
		{in: `sum by (code) (increase(http_requests_total{code=~"5.."}[30s]))`, want: `sum by (code) (increase(http_requests_total{code=~"5.."}[10m]))`},
		{in: `sum(errors_gauge)`, want: `sum(errors_gauge)`},
		{in: `sum(rate(errors_total[1m]))`, err: "rate() gives per-second rates, not counts: count errors and total with increase()"},
		{in: `irate(errors_total[1m])`, err: "irate() gives per-second rates"},
		{in: `sum(increase(errors_total[1m]`, err: "unclosed left parenthesis"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := windowQuery(tc.in, 10*time.Minute)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got %q, %v; want error %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestMatchers(t *testing.T) {
	got := matchers(map[string]string{"zone": `eu "west"`, "track": "canary"})
	if want := `track="canary",zone="eu \"west\""`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got := substitute(`x{job="a",{{.selector}}}`, `track="b"`); got != `x{job="a",track="b"}` {
		t.Fatalf("substitute: %s", got)
	}
}

const canaryGates = `
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary-good}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    interval: 10m
    runs: 3
    metrics:
      - name: latency
        query: lat_seconds{case="good",{{.selector}}}
        allowedIncrease: 10%
      - name: errors
        errors: sum(increase(err_total{case="good",{{.selector}}}[1m]))
        total: sum(increase(req_total{case="good",{{.selector}}}[1m]))
        critical: true
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary-bad}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    interval: 10m
    runs: 3
    metrics:
      - name: latency
        query: lat_seconds{case="bad",{{.selector}}}
        allowedIncrease: 10%
        critical: true
      - name: errors
        errors: sum(increase(err_total{case="bad",{{.selector}}}[1m]))
        total: sum(increase(req_total{case="bad",{{.selector}}}[1m]))
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary-oneshot}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    lookback: 10m
    metrics:
      - name: latency
        query: lat_seconds{case="bad",{{.selector}}}
        allowedIncrease: 10%
        critical: true
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary-frozen}
spec:
  service: checkout
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    interval: 10m
    runs: 3
    metrics:
      - name: latency
        query: lat_seconds{case="good",{{.selector}}}
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary-badquery}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    metrics:
      - name: latency
        query: label_replace(lat_seconds{case="good",{{.selector}}}, "x", "$1", "case", "(")
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary-rate}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    metrics:
      - name: errors
        errors: sum(rate(err_total{case="good",{{.selector}}}[1m]))
        total: sum(rate(req_total{case="good",{{.selector}}}[1m]))
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: checkout-budget-and-security-canary}
spec:
  service: checkout
  budget: {}
  security:
    reports: [reports/trivy.json]
    maxFindings: {critical: 1}
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    metrics:
      - name: latency
        query: lat_seconds{case="good",{{.selector}}}
        allowedIncrease: 10%
      - name: errors
        errors: sum(increase(err_total{case="good",{{.selector}}}[1m]))
        total: sum(increase(req_total{case="good",{{.selector}}}[1m]))
---
apiVersion: qsp/v1
kind: Gate
metadata: {name: canary-four}
spec:
  service: search
  canary:
    baseline: {track: baseline}
    canary: {track: canary}
    metrics:
      - {name: m1, query: 'm1{ {{.selector}} }'}
      - {name: m2, query: 'm2{ {{.selector}} }'}
      - {name: m3, query: 'm3{ {{.selector}} }'}
      - {name: m4, query: 'm4{ {{.selector}} }'}
`

// canarySeries are 40 minutes of canary telemetry from 10 minutes before
// testNow, a sample every 15s: latency around 100ms with a repeating
// jitter, the same for both tracks of case good; in case bad the canary
// turns 50% slower 10 minutes after testNow (its second run). Both cases
// serve 100 requests per 15s with 1 error, on both tracks.
func canarySeries() []series {
	start, end := testNow.Add(-10*time.Minute), testNow.Add(30*time.Minute)
	var out []series
	for _, c := range []string{"good", "bad"} {
		for _, track := range []string{"baseline", "canary"} {
			lat := series{labels: labels.FromStrings("__name__", "lat_seconds", "case", c, "track", track)}
			i := 0
			for ts := start; !ts.After(end); ts = ts.Add(15 * time.Second) {
				v := 0.100 + 0.002*float64((i*7919)%11-5)
				if c == "bad" && track == "canary" && !ts.Before(testNow.Add(10*time.Minute)) {
					v *= 1.5
				}
				lat.points = append(lat.points, point{ts, v})
				i++
			}
			out = append(out, lat,
				counter(labels.FromStrings("__name__", "req_total", "case", c, "track", track), start, end, 15*time.Second, 100),
				counter(labels.FromStrings("__name__", "err_total", "case", c, "track", track), start, end, 15*time.Second, 1))
		}
	}
	return out
}

func canaryFixture(t *testing.T) *fixture {
	return newFixture(t, fixtureOptions{specs: baseSpecs + canaryGates, now: testNow, series: append(budgetSeries(), canarySeries()...)})
}

// TestCanaryPromQL analyses canaries on PromQL over the TSDB, run by run
// on a fake clock: a canary like its baseline passes all three runs; one
// that slows down by 50% in its second run fails there, and fail-fast
// stops the analysis.
func TestCanaryPromQL(t *testing.T) {
	f := canaryFixture(t)
	background, err := f.runner.Background("canary-good", Request{})
	if err != nil || !background {
		t.Fatalf("a timed canary runs in the background: %v %v", background, err)
	}

	ev := f.evaluate("canary-good", Request{Change: Change{Kind: policy.ChangeFeature, Version: "3.0.0"}})
	mustState(t, ev, StatePass)
	c := ev.Canary
	if c.Source != "promql" || c.Done != 3 || c.Planned != 3 || len(c.Windows) != 3 || c.Stopped {
		t.Fatalf("canary %+v", c.RunsResult)
	}
	for i, w := range c.Windows {
		if !w.Start.Equal(testNow.Add(time.Duration(i)*10*time.Minute)) || w.End.Sub(w.Start) != 10*time.Minute {
			t.Errorf("window %d: %+v", i, w)
		}
	}
	m := c.Runs[0].Metrics[0]
	// 10 minutes at the default 15s step, both ends included.
	if m.Name != "latency" || m.Baseline.N != 41 || m.Canary.N != 41 || m.Status != canary.StatusPass {
		t.Errorf("latency run 1: %+v", m)
	}
	e := c.Runs[0].Metrics[1]
	// 100 requests and 1 error per 15s: 4000 and 40 in 10 minutes.
	if e.Kind != "counts" || float64(e.Baseline.Total) != 4000 || float64(e.Canary.Errors) != 40 {
		t.Errorf("errors run 1: %+v", e)
	}
	if ev.Progress.CanaryDone != 3 || ev.Progress.CanaryRuns != 3 || ev.Progress.Stage != stageDone {
		t.Errorf("progress %+v", ev.Progress)
	}
	// The evaluation waited for its windows: the clock moved 30 minutes.
	if got := ev.FinishedAt.Sub(ev.CreatedAt); got != 30*time.Minute {
		t.Errorf("finished %s after it started, want 30m", got)
	}
	if ev.Precheck == nil || ev.Precheck.Result == policy.Deny || ev.Decision == nil || ev.Decision.ID == ev.Precheck.ID {
		t.Errorf("precheck %+v decision %+v", ev.Precheck, ev.Decision)
	}

	f.clock.set(testNow)
	ev = f.evaluate("canary-bad", Request{})
	mustState(t, ev, StateFail)
	c = ev.Canary
	// The first interval, before the regression, passes every check, but
	// its critical latency has 41 samples, fewer than its checks need
	// for 80% power: inconclusive, not a pass.
	if c.Done != 2 || !c.Stopped || c.Verdict != canary.VerdictFail || c.Runs[0].Verdict != canary.VerdictInconclusive {
		t.Fatalf("canary %+v", c.RunsResult)
	}
	lat := c.Runs[1].Metrics[0]
	if lat.Status != canary.StatusFail || lat.Shift == nil || lat.Shift.Relative < 0.4 || lat.Shift.Relative > 0.6 {
		t.Errorf("latency run 2: %+v shift %+v", lat, lat.Shift)
	}
	if !hasReason(ev, LevelFail, "interval 2 of 3 failed") || !hasReason(ev, LevelFail) {
		t.Errorf("reasons:%s", reasonsText(ev))
	}
	// The policies saw the canary's verdict.
	d, err := f.store.Decision(context.Background(), ev.Decision.ID)
	if err != nil {
		t.Fatal(err)
	}
	var in policy.Input
	if err := json.Unmarshal(d.Input, &in); err != nil {
		t.Fatal(err)
	}
	if got := in.Checks.Canary; got == nil || got.Verdict != "fail" || len(got.FailedMetrics) != 1 || got.FailedMetrics[0] != "latency" {
		t.Errorf("policy canary facts %+v", got)
	}

	// The runs override: one run only, before the slowdown starts in the
	// second interval; its critical latency has too few samples for a
	// pass.
	f.clock.set(testNow)
	ev = f.evaluate("canary-bad", Request{Runs: 1})
	mustState(t, ev, StateInconclusive)
	if !hasReason(ev, LevelWarn, "samples per side") {
		t.Errorf("no reason with the samples needed:%s", reasonsText(ev))
	}
	if ev.Canary.Done != 1 {
		t.Errorf("runs override: %d runs", ev.Canary.Done)
	}

	// One-shot: the lookback before the request. At testNow+20m it covers
	// the slow canary.
	f.clock.set(testNow.Add(20 * time.Minute))
	ev = f.evaluate("canary-oneshot", Request{})
	mustState(t, ev, StateFail)
	if w := ev.Canary.Windows[0]; !w.End.Equal(testNow.Add(20*time.Minute)) || w.End.Sub(w.Start) != 10*time.Minute {
		t.Errorf("one-shot window %+v", w)
	}
	if bg, _ := f.runner.Background("canary-oneshot", Request{}); bg {
		t.Error("a one-shot canary does not need the background")
	}
}

// TestCanaryPrecheck: a frozen budget fails a timed canary gate at once,
// before any interval is waited for.
func TestCanaryPrecheck(t *testing.T) {
	f := canaryFixture(t)
	ev := f.evaluate("canary-frozen", Request{Change: Change{Kind: policy.ChangeFeature}})
	mustState(t, ev, StateFail)
	if ev.Canary != nil || !ev.FinishedAt.Equal(ev.CreatedAt) {
		t.Errorf("the canary ran: %+v, finished after %s", ev.Canary, ev.FinishedAt.Sub(ev.CreatedAt))
	}
	if ev.Precheck == nil || ev.Decision == nil || ev.Decision.ID != ev.Precheck.ID || ev.Decision.Result != policy.Deny {
		t.Errorf("precheck %+v decision %+v", ev.Precheck, ev.Decision)
	}
	if !hasReason(ev, LevelDeny, "may not deploy") || !hasReason(ev, LevelInfo, "canary analysis skipped") {
		t.Errorf("reasons:%s", reasonsText(ev))
	}
	// A rollback is let through the freeze: the canary runs.
	f.clock.set(testNow)
	ev = f.evaluate("canary-frozen", Request{Change: Change{Kind: policy.ChangeRollback}})
	mustState(t, ev, StatePass)
	if ev.Canary == nil || ev.Canary.Done != 3 {
		t.Errorf("canary %+v", ev.Canary)
	}
}

// TestCanaryErrors: queries that fail, count queries with rate() and a
// missing source are errors (exit 2), never a pass.
func TestCanaryErrors(t *testing.T) {
	f := canaryFixture(t)
	for _, tc := range []struct {
		gate  string
		parts []string
	}{
		{"canary-badquery", []string{"canary metric latency: query label_replace(", "invalid regular expression"}},
		{"canary-rate", []string{"canary metric errors: errors query", "rate() gives per-second rates"}},
	} {
		t.Run(tc.gate, func(t *testing.T) {
			ev := f.evaluate(tc.gate, Request{})
			mustState(t, ev, StateError)
			if !hasReason(ev, LevelError, tc.parts...) {
				t.Errorf("reasons:%s", reasonsText(ev))
			}
		})
	}
	t.Run("no source", func(t *testing.T) {
		f.runner.opts.Source = nil
		defer func() { f.runner.opts.Source = f.db }()
		ev := f.evaluate("canary-oneshot", Request{})
		mustState(t, ev, StateError)
		if !hasReason(ev, LevelError, "no telemetry source") {
			t.Errorf("reasons:%s", reasonsText(ev))
		}
	})
}

// samplesDoc builds a JSON samples document: baseline latencies 100 to
// 119ms, the canary's scaled by factor, and equal error counts.
func samplesDoc(factor float64) []byte {
	var b, c []float64
	for i := range 20 {
		v := 0.100 + 0.001*float64(i)
		b = append(b, v)
		c = append(c, v*factor)
	}
	doc := map[string]any{"metrics": map[string]any{
		"latency": map[string]any{"baseline": b, "canary": c},
		"errors":  map[string]any{"baseline": map[string]float64{"errors": 100, "total": 10000}, "canary": map[string]float64{"errors": 100, "total": 10000}},
	}}
	data, _ := json.Marshal(doc)
	return data
}

// TestCanarySamples judges canaries on JSON samples.
func TestCanarySamples(t *testing.T) {
	f := canaryFixture(t)
	four := func(fail int) []byte {
		metrics := map[string]any{}
		for i := 1; i <= 4; i++ {
			var b, c []float64
			for j := range 20 {
				v := float64(100 + j)
				b = append(b, v)
				if i <= fail {
					v *= 2
				}
				c = append(c, v)
			}
			metrics[fmt.Sprintf("m%d", i)] = map[string]any{"baseline": b, "canary": c}
		}
		data, _ := json.Marshal(map[string]any{"metrics": metrics})
		return data
	}
	for _, tc := range []struct {
		name    string
		gate    string
		samples []byte
		want    State
		level   string
		parts   []string
	}{
		{"equal", "canary-good", samplesDoc(1), StatePass, LevelInfo, []string{"PASS"}},
		{"slower", "canary-good", samplesDoc(1.5), StateFail, LevelFail, []string{"FAIL"}},
		// One of four equal-weight metrics fails: a score of 75, the
		// marginal threshold, below pass (95).
		{"marginal", "canary-four", four(1), StateInconclusive, LevelInconclusive, []string{"marginal canary, not a pass", "MARGINAL"}},
		{"two of four", "canary-four", four(2), StateFail, LevelFail, []string{"FAIL"}},
		// A critical metric that passes on fewer samples than its checks
		// need for 80% power is no pass.
		{"too few samples for a critical metric", "canary-oneshot", samplesDoc(1), StateInconclusive, LevelInconclusive,
			[]string{"INCONCLUSIVE"}},
		{"no data for a critical metric", "canary-good", []byte(`{"metrics": {"errors": {"baseline": {"errors": 1, "total": 100}, "canary": {"errors": 1, "total": 100}}}}`),
			StateInconclusive, LevelInconclusive, []string{"INCONCLUSIVE"}},
		{"malformed", "canary-good", []byte("{\"metrics\": {\n \"latency\": {\"baseline\": [1, 2,], \"canary\": [1]}}}"), StateError, LevelError,
			[]string{"canary samples", "line 2"}},
		{"unknown field", "canary-good", []byte(`{"metrics": {}, "extra": 1}`), StateError, LevelError, []string{"canary samples", "unknown field"}},
		{"errors above total", "canary-good", []byte(`{"metrics": {"errors": {"baseline": {"errors": 5, "total": 1}, "canary": {"errors": 1, "total": 10}}}}`),
			StateError, LevelError, []string{"canary samples", `metric "errors"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := f.evaluate(tc.gate, Request{Samples: tc.samples})
			mustState(t, ev, tc.want)
			if !hasReason(ev, tc.level, tc.parts...) {
				t.Errorf("no %s reason with %q:%s", tc.level, tc.parts, reasonsText(ev))
			}
			if tc.want != StateError && (ev.Canary.Source != "samples" || ev.Canary.Done != 1) {
				t.Errorf("canary %+v", ev.Canary)
			}
		})
	}
	if bg, _ := f.runner.Background("canary-good", Request{Samples: samplesDoc(1)}); bg {
		t.Error("samples are judged at once, not in the background")
	}
}

// TestBackgroundEvaluation: Start returns at once with a running
// evaluation whose progress polls see; Wait returns the verdict; a
// stopped runner records the interruption.
func TestBackgroundEvaluation(t *testing.T) {
	f := canaryFixture(t)
	// A sleep that blocks until released, so the test sees the running
	// state.
	release := make(chan struct{})
	f.runner.opts.Sleep = func(ctx context.Context, d time.Duration) error {
		select {
		case <-release:
			f.clock.add(d)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ctx := context.Background()
	ev, err := f.runner.Start(ctx, "canary-good", Request{Change: Change{Kind: policy.ChangeFix, Version: "9"}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.State != StateRunning || ev.ID == "" {
		t.Fatalf("started %+v", ev)
	}
	got := waitForCanaryWait(t, f.runner, ev.ID)
	if got.State != StateRunning || got.Progress.CanaryRuns != 3 || !got.Progress.NextRunAt.Equal(testNow.Add(10*time.Minute)) ||
		!strings.HasPrefix(got.Summary, "RUNNING") {
		t.Errorf("progress %+v summary %q", got.Progress, got.Summary)
	}
	// Lists show it running, from the store.
	list, total, err := f.runner.Evaluations(ctx, Filter{Gate: "canary-good", State: StateRunning})
	if err != nil || total != 1 || list[0].ID != ev.ID {
		t.Fatalf("list %v %d %v", list, total, err)
	}
	close(release)
	done, err := f.runner.Wait(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustState(t, done, StatePass)
	stored, err := f.store.GateEvaluation(ctx, ev.ID)
	if err != nil || stored.State != string(StatePass) || stored.DecisionID != done.Decision.ID {
		t.Fatalf("stored %+v %v", stored, err)
	}

	// A runner that stops mid-wait records the evaluation as an error.
	f.runner.opts.Sleep = func(ctx context.Context, _ time.Duration) error { <-ctx.Done(); return ctx.Err() }
	ev, err = f.runner.Start(ctx, "canary-good", Request{})
	if err != nil {
		t.Fatal(err)
	}
	waitForCanaryWait(t, f.runner, ev.ID)
	f.runner.Close()
	got, err = f.runner.Evaluation(ctx, ev.ID)
	if err != nil {
		t.Fatal(err)
	}
	mustState(t, got, StateError)
	if !hasReason(got, LevelError, "waiting for the canary interval", "context canceled") {
		t.Errorf("reasons:%s", reasonsText(got))
	}
	if _, err := f.runner.Start(ctx, "canary-good", Request{}); err == nil {
		t.Error("a closed runner started an evaluation")
	}
	if _, err := f.runner.Evaluation(ctx, "0190f0f0-0000-7000-8000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown evaluation: %v", err)
	}
}

// waitForCanaryWait polls evaluation id until it waits for a canary
// interval.
func waitForCanaryWait(t *testing.T, r *Runner, id string) *Evaluation {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := r.Evaluation(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if got.Progress.Stage == stageCanary && !got.Progress.NextRunAt.IsZero() {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("progress never reached the canary wait: %+v", got.Progress)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// FuzzWindowQuery feeds the count-query rewrite arbitrary PromQL: it
// never panics, and what it returns parses again with every range
// selector at the window's length.
func FuzzWindowQuery(f *testing.F) {
	for _, seed := range []string{
		`sum(increase(http_requests_total{service="checkout",code=~"5..",track="canary"}[1m]))`,
		`sum by (code) (increase(errors_total[30s] offset 1m))`,
		`sum(increase(a[1m])) / sum(increase(b[5m]))`,
		`sum(rate(x[1m]))`,
		`max_over_time(sum(increase(x[1m]))[10m:1m])`,
		`sum(x)`,
		`increase(x[1m] @ 1700000000)`,
		`label_replace(increase(x[2m]), "a", "$1", "b", "(.*)")`,
		`{`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		if len(query) > 4096 {
			t.Skip()
		}
		const d = 7 * time.Minute
		got, err := windowQuery(query, d)
		if err != nil {
			return
		}
		expr, err := promqlParser.ParseExpr(got)
		if err != nil {
			t.Fatalf("rewrite of %q does not parse: %q: %v", query, got, err)
		}
		parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
			if ms, ok := n.(*parser.MatrixSelector); ok && ms.Range != d {
				t.Fatalf("rewrite of %q keeps range %s: %q", query, ms.Range, got)
			}
			return nil
		})
	})
}
