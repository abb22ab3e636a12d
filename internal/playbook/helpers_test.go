package playbook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// t0 is the start of every timeline, on a whole hour.
var t0 = time.Date(2026, 3, 6, 10, 0, 0, 0, time.UTC)

// testClock is a settable clock, read from execution goroutines too.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// recorded is one request a receiver got.
type recorded struct {
	Method, Path, Key, Auth, Body string
	Header                        http.Header
}

// receiver stands in for a rollback or scaling API. It honours the
// Idempotency-Key the way such APIs do: a key it has acted on gets the
// first answer again without acting twice.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []recorded
	executed map[string]int // key → times acted on
	done     map[string]string
	// fail answers the next fail requests with failStatus.
	fail       int
	failStatus int
	// echo answers with the request's Authorization header (a careless
	// API echoing credentials).
	echo bool
	// onAct runs after acting on a request and before answering.
	onAct func(r recorded)
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{executed: map[string]int{}, done: map[string]string{}, failStatus: http.StatusServiceUnavailable}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := recorded{Method: r.Method, Path: r.URL.Path, Key: r.Header.Get("Idempotency-Key"), Auth: r.Header.Get("Authorization"), Body: string(body), Header: r.Header.Clone()}
	rc.mu.Lock()
	rc.requests = append(rc.requests, rec)
	if answer, ok := rc.done[rec.Key]; ok && rec.Key != "" {
		rc.mu.Unlock()
		w.Write([]byte(answer))
		return
	}
	if rc.fail > 0 {
		rc.fail--
		status := rc.failStatus
		rc.mu.Unlock()
		http.Error(w, "try later", status)
		return
	}
	rc.executed[rec.Key]++
	answer := `{"ok":true}`
	if rc.echo {
		answer = `{"ok":true,"auth":"` + rec.Auth + `"}`
	}
	rc.done[rec.Key] = answer
	onAct := rc.onAct
	rc.mu.Unlock()
	if onAct != nil {
		onAct(rec)
	}
	w.Write([]byte(answer))
}

func (rc *receiver) URL() string { return rc.srv.URL }

// calls returns the requests so far.
func (rc *receiver) calls() []recorded {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]recorded(nil), rc.requests...)
}

// actions returns how many times the receiver acted, over all keys.
func (rc *receiver) actions() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	n := 0
	for _, c := range rc.executed {
		n += c
	}
	return n
}

func (rc *receiver) setFail(n, status int) {
	rc.mu.Lock()
	rc.fail, rc.failStatus = n, status
	rc.mu.Unlock()
}

// snapshots serves a settable engine snapshot.
type snapshots struct {
	p atomic.Pointer[engine.Snapshot]
}

func (s *snapshots) Snapshot() *engine.Snapshot {
	if sn := s.p.Load(); sn != nil {
		return sn
	}
	return &engine.Snapshot{}
}

func (s *snapshots) set(sn *engine.Snapshot) { s.p.Store(sn) }

// harness is a runner over a real SQLite store, a real policy engine, a
// settable snapshot, a test clock and a receiver.
type harness struct {
	t    *testing.T
	clk  *testClock
	path string
	set  *spec.Set
	snap *snapshots
	recv *receiver
	mods []func(*Options)
	st   *store.Store
	r    *Runner
	ctx  context.Context
}

const baseSpecs = `
apiVersion: qsp/v1
kind: Service
metadata: {name: search}
spec: {owner: team-search, tier: 1}
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: search-availability}
spec:
  service: search
  category: quality
  objective: 99.9
  window: 30d
  indicator:
    ratio:
      bad: sum(rate(req_total{service="search",code="500"}[{{.window}}]))
      total: sum(rate(req_total{service="search"}[{{.window}}]))
---
apiVersion: qsp/v1
kind: SLO
metadata: {name: search-efficiency}
spec:
  service: search
  category: performance
  objective: 90
  window: 30d
  indicator:
    ratio:
      bad: sum(rate(idle_total{service="search"}[{{.window}}]))
      total: sum(rate(slots_total{service="search"}[{{.window}}]))
`

func loadSpecs(t testing.TB, yaml string) *spec.Set {
	t.Helper()
	set, diags := spec.LoadBytes("test.yaml", []byte(yaml))
	if diags.HasErrors() {
		t.Fatalf("specs: %s", diags.Error())
	}
	return set
}

// newHarness loads baseSpecs and the playbooks (RECEIVER in them is the
// receiver's URL) and starts a runner that allows the receiver.
func newHarness(t *testing.T, playbooks string, mods ...func(*Options)) *harness {
	t.Helper()
	h := &harness{t: t, clk: &testClock{t: t0}, path: filepath.Join(t.TempDir(), "qsp.db"), snap: &snapshots{}, recv: newReceiver(t), ctx: context.Background()}
	h.set = loadSpecs(t, baseSpecs+strings.ReplaceAll(playbooks, "RECEIVER", h.recv.URL()))
	h.mods = mods
	h.start()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) start() {
	h.t.Helper()
	st, err := store.Open(h.ctx, store.Options{Path: h.path, Now: h.clk.now})
	if err != nil {
		h.t.Fatal(err)
	}
	h.st = st
	pe, err := policy.New(policy.Options{Policies: h.set.Policies, Recorder: st, Now: h.clk.now})
	if err != nil {
		h.t.Fatal(err)
	}
	opts := Options{
		Specs: h.set, Engine: h.snap, Store: st, Policy: pe, Allowlist: []string{h.recv.URL() + "/api/"},
		Now: h.clk.now, Interval: 15 * time.Second, RetryBase: 10 * time.Second, RetryMax: 2 * time.Minute,
		ExternalURL: "http://qsp.test",
	}
	for _, m := range h.mods {
		m(&opts)
	}
	r, err := New(opts)
	if err != nil {
		h.t.Fatal(err)
	}
	h.r = r
}

func (h *harness) stop() {
	if h.r != nil {
		h.r.Close()
		h.r = nil
	}
	if h.st != nil {
		h.st.Close()
		h.st = nil
	}
}

// restart stops the runner and the store and starts new ones on the same
// database, as a restarted qsp would.
func (h *harness) restart() {
	h.t.Helper()
	h.stop()
	h.start()
}

// step runs one cycle and waits for the executions it started.
func (h *harness) step() {
	h.r.cycle(h.ctx)
	h.r.wait()
}

// runs returns every run of playbook (all runs if empty), oldest first.
func (h *harness) runs(playbook string) []*Run {
	h.t.Helper()
	runs, _, err := h.r.Runs(h.ctx, RunFilter{Playbook: playbook, Limit: 10000})
	if err != nil {
		h.t.Fatal(err)
	}
	for i, j := 0, len(runs)-1; i < j; i, j = i+1, j-1 {
		runs[i], runs[j] = runs[j], runs[i]
	}
	return runs
}

// byState counts runs by state.
func byState(runs []*Run) map[State]int {
	m := map[State]int{}
	for _, r := range runs {
		m[r.State]++
	}
	return m
}

// status is one SLO's status with a 5m burn rate and alerts.
func status(sloName, service string, burn5m float64, alerts ...engine.AlertStatus) *engine.Status {
	b := burn5m
	return &engine.Status{
		Key: sloName, SLO: sloName, Service: service, Category: spec.Quality, Objective: 0.999, State: engine.StateOK,
		Budget:  slo.Budget{RemainingRatio: 0.6, ConsumedRatio: 0.4},
		Windows: []engine.WindowStat{{Window: 5 * time.Minute, Name: "5m", BurnRate: &b}, {Window: time.Hour, Name: "1h", BurnRate: &b}},
		Alerts:  alerts,
	}
}

func snapshotAt(at time.Time, sts ...*engine.Status) *engine.Snapshot {
	return engine.NewSnapshot(at, sts, nil)
}

// events returns the run's events as "stage:outcome" strings.
func events(r *Run) []string {
	var out []string
	for _, e := range r.Events {
		out = append(out, e.Stage+":"+e.Outcome)
	}
	return out
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
