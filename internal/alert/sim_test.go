package alert_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// simClock is the settable clock of a simulation.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *simClock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// sim runs a real engine over a real embedded TSDB and a real store with
// a test clock: telemetry is written up to the clock time, then the clock
// moves, then the test waits until the engine has evaluated at that time
// and handed out the transitions. The engine's own ticker runs every few
// milliseconds of real time; each step of the clock is one "interval".
type sim struct {
	t         testing.TB
	db        *telemetry.Embedded
	source    engine.Source // default db
	storePath string
	st        *store.Store
	clk       *simClock
	set       *spec.Set
	eng       *engine.Engine
	cancel    context.CancelFunc
	done      chan error
	// handlers receive the engine's transitions, in order.
	mu       sync.Mutex
	handlers []func(context.Context, []engine.Transition)
	// cycles run after every cycle, as the app's do: the incidents'
	// resolve hold.
	cycles []func(context.Context)
	log    []engine.Transition

	counters map[string]float64
	// sampleEvery is the scrape interval of written telemetry.
	sampleEvery time.Duration
	lastSample  time.Time
}

func newSim(t testing.TB, specYAML string, start time.Time) *sim {
	t.Helper()
	set, diags := spec.LoadBytes("sim.yaml", []byte(specYAML))
	if diags.HasErrors() {
		t.Fatalf("spec: %s", diags.Error())
	}
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: t.TempDir(), Retention: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := &sim{t: t, db: db, storePath: filepath.Join(t.TempDir(), "qsp.db"), clk: &simClock{t: start}, set: set,
		counters: map[string]float64{}, sampleEvery: 15 * time.Second}
	s.openStore()
	t.Cleanup(func() {
		s.stopEngine()
		if s.st != nil {
			s.st.Close()
		}
	})
	return s
}

func (s *sim) openStore() {
	st, err := store.Open(context.Background(), store.Options{Path: s.storePath})
	if err != nil {
		s.t.Fatal(err)
	}
	s.st = st
}

// startEngine starts an engine on the current store and waits for its
// backfill.
func (s *sim) startEngine() {
	s.t.Helper()
	src := s.source
	if src == nil {
		src = s.db
	}
	e, err := engine.New(engine.Options{Source: src, Store: s.st, Specs: s.set, Now: s.clk.Now, Interval: 3 * time.Millisecond,
		Publish: func(ctx context.Context, _ []*engine.Status) {
			s.mu.Lock()
			cs := s.cycles
			s.mu.Unlock()
			for _, c := range cs {
				c(ctx)
			}
		},
		OnTransitions: func(ctx context.Context, ts []engine.Transition) {
			s.mu.Lock()
			hs := s.handlers
			s.log = append(s.log, ts...)
			s.mu.Unlock()
			for _, h := range hs {
				h(ctx, ts)
			}
		}})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.eng, s.cancel, s.done = e, cancel, make(chan error, 1)
	go func() { s.done <- e.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for !e.Ready() {
		if time.Now().After(deadline) {
			s.t.Fatal("engine backfill did not finish within 60s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	s.settle()
}

// stopEngine stops the engine, which persists its rollups.
func (s *sim) stopEngine() {
	if s.cancel == nil {
		return
	}
	s.cancel()
	if err := <-s.done; err != nil {
		s.t.Errorf("engine: %v", err)
	}
	s.cancel = nil
}

// restart is a QSP restart: the engine stops (persisting its rollups),
// stop stops the caller's components, the store closes and reopens, start
// builds the components again on it, and a new engine restores its state.
func (s *sim) restart(stop func(), start func(st *store.Store)) {
	s.t.Helper()
	s.stopEngine()
	s.mu.Lock()
	s.handlers, s.cycles = nil, nil
	s.mu.Unlock()
	stop()
	if err := s.st.Close(); err != nil {
		s.t.Fatal(err)
	}
	s.openStore()
	start(s.st)
	s.startEngine()
}

func (s *sim) handle(h func(context.Context, []engine.Transition)) {
	s.mu.Lock()
	s.handlers = append(s.handlers, h)
	s.mu.Unlock()
}

// onCycle adds a handler run after every cycle.
func (s *sim) onCycle(h func(context.Context)) {
	s.mu.Lock()
	s.cycles = append(s.cycles, h)
	s.mu.Unlock()
}

// transitions returns the transitions seen so far.
func (s *sim) transitions() []engine.Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]engine.Transition(nil), s.log...)
}

// settle waits until the engine has run three whole cycles at the current
// clock: the second starts after the clock was read by the first, the
// third after the second's transitions were handed out.
func (s *sim) settle() {
	s.t.Helper()
	now := s.clk.Now()
	var last *engine.Snapshot
	seen := 0
	deadline := time.Now().Add(30 * time.Second)
	for seen < 3 {
		snap := s.eng.Snapshot()
		if snap != last && snap.At.Equal(now) {
			seen++
		}
		last = snap
		if time.Now().After(deadline) {
			s.t.Fatalf("engine did not evaluate at %s within 30s", now)
		}
		time.Sleep(time.Millisecond)
	}
}

// traffic gives, for a sample at ts covering the dt before it, the
// increments of every series.
type traffic func(ts time.Time, dt time.Duration) []increment

type increment struct {
	labels labels.Labels
	n      float64
}

// write appends samples every sampleEvery in (from, to].
func (s *sim) write(from, to time.Time, tr traffic) {
	s.t.Helper()
	app := s.db.DB().Appender(context.Background())
	first := from.Truncate(s.sampleEvery).Add(s.sampleEvery)
	if !s.lastSample.IsZero() && !first.After(s.lastSample) {
		first = s.lastSample.Add(s.sampleEvery)
	}
	for ts := first; !ts.After(to); ts = ts.Add(s.sampleEvery) {
		for _, inc := range tr(ts, s.sampleEvery) {
			k := inc.labels.String()
			s.counters[k] += inc.n
			if _, err := app.Append(0, inc.labels, ts.UnixMilli(), s.counters[k]); err != nil {
				s.t.Fatalf("append %s at %s: %v", inc.labels, ts, err)
			}
		}
		s.lastSample = ts
	}
	if err := app.Commit(); err != nil {
		s.t.Fatal(err)
	}
}

// advance moves the clock to the end of d in steps of step, writing the
// telemetry of each step before the clock reaches it, and waits for the
// engine at each step; after is called after each step.
func (s *sim) advance(d, step time.Duration, tr traffic, after func(now time.Time)) {
	s.t.Helper()
	end := s.clk.Now().Add(d)
	for now := s.clk.Now(); now.Before(end); {
		next := now.Add(step)
		if tr != nil {
			s.write(now, next, tr)
		}
		s.clk.set(next)
		s.settle()
		if after != nil {
			after(next)
		}
		now = next
	}
}

// requests returns the traffic of one service at perSecond requests a
// second (good on code 200, bad on code 500); bad(ts, dt) is the share of
// the requests in (ts-dt, ts] that fail.
func requests(base labels.Labels, perSecond float64, bad func(ts time.Time, dt time.Duration) float64) traffic {
	b := labels.NewBuilder(base)
	good := b.Set("code", "200").Labels()
	b = labels.NewBuilder(base)
	fail := b.Set("code", "500").Labels()
	return func(ts time.Time, dt time.Duration) []increment {
		n := perSecond * dt.Seconds()
		f := bad(ts, dt)
		return []increment{{good, n * (1 - f)}, {fail, n * f}}
	}
}

// failing is the share of (ts-dt, ts] inside the outage [from, to).
func failing(from, to time.Time) func(ts time.Time, dt time.Duration) float64 {
	return func(ts time.Time, dt time.Duration) float64 {
		lo, hi := ts.Add(-dt), ts
		if lo.Before(from) {
			lo = from
		}
		if !to.IsZero() && hi.After(to) {
			hi = to
		}
		if !hi.After(lo) {
			return 0
		}
		return float64(hi.Sub(lo)) / float64(dt)
	}
}

func combine(ts ...traffic) traffic {
	return func(at time.Time, dt time.Duration) []increment {
		var out []increment
		for _, t := range ts {
			out = append(out, t(at, dt)...)
		}
		return out
	}
}

// webhookSink is a webhook receiver that records each message with the
// simulation time it arrived at.
type webhookSink struct {
	t      testing.TB
	secret []byte
	clk    *simClock
	mu     sync.Mutex
	got    []received
	srv    *httptest.Server
}

type received struct {
	msg alert.Message
	at  time.Time // simulation time of arrival
}

func newWebhookSink(t testing.TB, secret string, clk *simClock) *webhookSink {
	w := &webhookSink{t: t, secret: []byte(secret), clk: clk}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if len(w.secret) > 0 && !alert.Verify(w.secret, body, r.Header.Get(alert.SignatureHeader)) {
			http.Error(rw, "bad signature", http.StatusUnauthorized)
			w.t.Errorf("webhook: bad signature %q", r.Header.Get(alert.SignatureHeader))
			return
		}
		var m alert.Message
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.got = append(w.got, received{m, w.clk.Now()})
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookSink) messages() []received {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]received(nil), w.got...)
}

// first returns the first message matching key, severity and status.
func (w *webhookSink) first(key, severity, status string) (received, bool) {
	for _, r := range w.messages() {
		if r.msg.Transition.Key == key && r.msg.Transition.Severity == severity && r.msg.Status == status {
			return r, true
		}
	}
	return received{}, false
}

// waitDrained waits until no notification is pending in the store.
func waitDrained(t testing.TB, st *store.Store, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ns, err := st.Notifications(context.Background(), store.NotificationFilter{State: store.NotificationPending})
		if err == nil && len(ns) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d notifications still pending after %s (err %v)", len(ns), timeout, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func seriesLabels(kv ...string) labels.Labels {
	return labels.FromStrings(append([]string{"__name__", "req_total"}, kv...)...)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.0fs", d.Seconds()) }

func writeSecret(t testing.TB, secret string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(p, []byte(secret+"\n"), 0o600))
	return p
}
