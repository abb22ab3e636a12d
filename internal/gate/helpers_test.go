package gate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"go.uber.org/goleak"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of HTTP clients.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

// fakeClock is a settable clock safe for concurrent use; sleeping on it
// advances it at once.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.set(t)
	return c
}

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.add(d)
	return nil
}

// point is one sample of a synthetic series.
type point struct {
	t time.Time
	v float64
}

// series is a synthetic series.
type series struct {
	labels labels.Labels
	points []point
}

// fixture is a gate runner over real components: an embedded TSDB with
// synthetic telemetry, the SLO engine evaluated over it, a SQLite store
// and the policy engine.
type fixture struct {
	t      testing.TB
	clock  *fakeClock
	db     *telemetry.Embedded
	store  *store.Store
	set    *spec.Set
	eng    *engine.Engine
	policy *policy.Engine
	runner *Runner
	files  map[string][]byte // what Options.ReadFile reads
}

type fixtureOptions struct {
	specs  string
	now    time.Time
	series []series
	// noEngineRun leaves the engine unstarted (never ready).
	noEngineRun bool
	// source overrides the canary's Querier (default the TSDB).
	source Querier
	// storePath reuses a database file (restarts).
	storePath string
	// engineSource overrides the engine's source (default the TSDB).
	engineSource engine.Source
	// lastDeploy is Options.LastDeploy.
	lastDeploy LastDeployFunc
}

func newFixture(t testing.TB, o fixtureOptions) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: newFakeClock(o.now), files: map[string][]byte{}}
	set, diags := spec.LoadBytes("gates.yaml", []byte(o.specs))
	if diags.HasErrors() {
		t.Fatalf("specs: %s", diags.Error())
	}
	f.set = set
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: t.TempDir(), Retention: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f.db = db
	if len(o.series) > 0 {
		app := db.DB().Appender(context.Background())
		for _, s := range o.series {
			var ref storage.SeriesRef
			for _, p := range s.points {
				if ref, err = app.Append(ref, s.labels, p.t.UnixMilli(), p.v); err != nil {
					t.Fatalf("append %s: %v", s.labels, err)
				}
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	path := o.storePath
	if path == "" {
		path = filepath.Join(t.TempDir(), "qsp.db")
	}
	st, err := store.Open(context.Background(), store.Options{Path: path, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f.store = st
	var engSrc engine.Source = db
	if o.engineSource != nil {
		engSrc = o.engineSource
	}
	f.eng, err = engine.New(engine.Options{Source: engSrc, Store: st, Specs: set, Now: f.clock.now, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !o.noEngineRun {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.eng.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
		})
		deadline := time.Now().Add(30 * time.Second)
		for !f.eng.Ready() {
			select {
			case err := <-done:
				t.Fatalf("engine stopped: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("engine not ready after 30s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	f.policy, err = policy.New(policy.Options{Policies: set.Policies, Recorder: st, Now: f.clock.now})
	if err != nil {
		t.Fatalf("policies: %v", err)
	}
	var src Querier = db
	if o.source != nil {
		src = o.source
	}
	f.runner, err = New(Options{
		Specs: set, Engine: f.eng, Policy: f.policy, Evaluations: st, FirstSeen: st, Deploys: st, Source: src,
		Now: f.clock.now, Sleep: f.clock.sleep, Exclusive: true, LastDeploy: o.lastDeploy,
		ReadFile: func(name string) ([]byte, error) {
			if b, ok := f.files[name]; ok {
				return b, nil
			}
			return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.runner.Close)
	return f
}

// evaluate runs gate name to its verdict.
func (f *fixture) evaluate(name string, req Request) *Evaluation {
	f.t.Helper()
	ev, err := f.runner.Evaluate(context.Background(), name, req)
	if err != nil {
		f.t.Fatalf("evaluate %s: %v", name, err)
	}
	return ev
}

// testdata reads a file of testdata/.
func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hasReason reports whether ev has a reason of level whose message
// contains every part.
func hasReason(ev *Evaluation, level string, parts ...string) bool {
	for _, r := range ev.Reasons {
		if r.Level != level {
			continue
		}
		all := true
		for _, p := range parts {
			if !strings.Contains(r.Message, p) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func reasonsText(ev *Evaluation) string {
	var b strings.Builder
	for _, r := range ev.Reasons {
		b.WriteString("\n  " + r.Check + " " + r.String())
	}
	return b.String()
}

// mustState fails the test unless ev ended in state want.
func mustState(t *testing.T, ev *Evaluation, want State) {
	t.Helper()
	if ev.State != want {
		t.Fatalf("state %s, want %s; summary %q; reasons:%s", ev.State, want, ev.Summary, reasonsText(ev))
	}
}

// counter builds the samples of a counter increasing by inc every step
// from start to end.
func counter(lbls labels.Labels, start, end time.Time, step time.Duration, inc float64) series {
	s := series{labels: lbls}
	v := 0.0
	for ts := start; !ts.After(end); ts = ts.Add(step) {
		s.points = append(s.points, point{ts, v})
		v += inc
	}
	return s
}

// baseSpecs is a service with one SLO whose budget policy freezes at
// 100% consumed, and a healthy second service.
const baseSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: checkout}
spec: {owner: payments, tier: 1, labels: {team: payments}}
---
apiVersion: qsp/v1
kind: Service
metadata: {name: search}
spec: {owner: discovery}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: checkout-availability}
spec:
  service: checkout
  category: quality
  objective: 99
  window: 7d
  indicator:
    ratio:
      bad: sum(rate(http_errors_total{service="checkout"}[{{.window}}]))
      total: sum(rate(http_requests_total{service="checkout"}[{{.window}}]))
  budgetPolicy:
    - consumed: 50%
      action: warn
    - consumed: 100%
      action: freeze
      message: Budget exhausted; only fixes and rollbacks may ship.
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: search-availability}
spec:
  service: search
  category: quality
  objective: 99
  window: 7d
  indicator:
    ratio:
      bad: sum(rate(http_errors_total{service="search"}[{{.window}}]))
      total: sum(rate(http_requests_total{service="search"}[{{.window}}]))
`

// testNow is the fixtures' time: the end of their telemetry.
var testNow = time.Date(2026, 3, 6, 10, 0, 0, 0, time.UTC)

// budgetSeries are two hours of traffic: checkout fails 5% of requests
// (five times its 1% budget), search none.
func budgetSeries() []series { return traffic(5) }

// healthySeries are two hours of traffic without errors.
func healthySeries() []series { return traffic(0) }

// traffic is two hours of 100 requests per 30s for checkout and search;
// checkout fails checkoutErrors of them.
func traffic(checkoutErrors float64) []series {
	start, end := testNow.Add(-2*time.Hour), testNow
	return []series{
		counter(labels.FromStrings("__name__", "http_requests_total", "service", "checkout"), start, end, 30*time.Second, 100),
		counter(labels.FromStrings("__name__", "http_errors_total", "service", "checkout"), start, end, 30*time.Second, checkoutErrors),
		counter(labels.FromStrings("__name__", "http_requests_total", "service", "search"), start, end, 30*time.Second, 100),
		counter(labels.FromStrings("__name__", "http_errors_total", "service", "search"), start, end, 30*time.Second, 0),
	}
}
