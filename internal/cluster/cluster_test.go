package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/externaltest"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

var (
	pg        *externaltest.Postgres
	pgErr     error
	pgMissing bool
	dbSeq     atomic.Int64
)

func TestMain(m *testing.M) {
	var stop func()
	pg, stop, pgMissing, pgErr = externaltest.StartPostgresMain()
	code := m.Run()
	if stop != nil {
		stop()
	}
	os.Exit(code)
}

func postgresDSN(t testing.TB) string {
	t.Helper()
	if pg == nil {
		if pgMissing {
			externaltest.Missing(t, "PostgreSQL: %v", pgErr)
		}
		t.Fatalf("PostgreSQL did not start: %v", pgErr)
	}
	return pg.CreateDB(t, fmt.Sprintf("qsp_cluster_%d", dbSeq.Add(1)))
}

func TestOwnerSpreadAndMinimalMovement(t *testing.T) {
	members := []string{"r1", "r2", "r3"}
	count := map[string]int{}
	owner := map[string]string{}
	for i := range 3000 {
		k := fmt.Sprintf("slo-%d", i)
		o := Owner(members, k)
		count[o]++
		owner[k] = o
	}
	for _, m := range members {
		if count[m] < 850 || count[m] > 1150 {
			t.Errorf("%s owns %d of 3000 keys, want about 1000", m, count[m])
		}
	}
	// When r3 leaves, only r3's keys move.
	moved := 0
	for k, o := range owner {
		n := Owner([]string{"r1", "r2"}, k)
		if o != "r3" && n != o {
			t.Fatalf("%s moved from %s to %s though %s stayed", k, o, n, o)
		}
		if o == "r3" {
			moved++
		}
	}
	if moved != count["r3"] {
		t.Errorf("moved %d, want %d", moved, count["r3"])
	}
	if Owner(nil, "x") != "" {
		t.Error("no members, no owner")
	}
}

// clock is shared by the replicas of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func clusterSpecs(t testing.TB, n int) *spec.Set {
	var b strings.Builder
	b.WriteString("apiVersion: qsp/v1\nkind: Service\nmetadata: {name: shop}\nspec: {owner: team}\n")
	for i := range n {
		fmt.Fprintf(&b, `---
apiVersion: qsp/v1
kind: SLO
metadata: {name: slo-%d}
spec:
  service: shop
  category: quality
  objective: 99
  window: 1d
  indicator:
    ratio:
      bad: sum(rate(req_total{slo="%d",code="500"}[{{.window}}]))
      total: sum(rate(req_total{slo="%d"}[{{.window}}]))
`, i, i, i)
	}
	set, diags := spec.LoadBytes("cluster.yaml", []byte(b.String()))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return set
}

// writer appends per-SLO counters every 15s; bad SLOs fail half their
// requests.
type writer struct {
	db   *telemetry.Embedded
	n    int
	vals map[string]float64
}

func (w *writer) write(t testing.TB, from, to time.Time, bad func(i int) bool) {
	app := w.db.DB().Appender(context.Background())
	for ts := from; ts.Before(to); ts = ts.Add(15 * time.Second) {
		for i := range w.n {
			for _, code := range []string{"200", "500"} {
				inc := 100.0
				if code == "500" {
					inc = 0
					if bad(i) {
						inc = 100
					}
				}
				k := fmt.Sprintf("%d/%s", i, code)
				w.vals[k] += inc
				ls := labels.FromStrings("__name__", "req_total", "slo", fmt.Sprint(i), "code", code)
				if _, err := app.Append(0, ls, ts.UnixMilli(), w.vals[k]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

type replica struct {
	id      string
	store   *store.Store
	members *Membership
	engine  *engine.Engine
	mu      sync.Mutex
	fired   []engine.Transition
}

func startReplica(t *testing.T, id, dsn string, src engine.Source, set *spec.Set, clk *clock) *replica {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{Driver: "postgres", DSN: dsn, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	m, err := New(Options{Store: s, ID: id, TTL: 10 * time.Second, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	r := &replica{id: id, store: s, members: m}
	e, err := engine.New(engine.Options{Source: src, Store: s, Specs: set, Now: clk.now, Shard: m,
		Publish: Publisher(s, id, nil2()), PersistInterval: time.Minute,
		OnTransitions: func(_ context.Context, ts []engine.Transition) {
			r.mu.Lock()
			r.fired = append(r.fired, ts...)
			r.mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.engine = e
	return r
}

func (r *replica) transitions() []engine.Transition {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.fired
	r.fired = nil
	return out
}

// TestTakeOver runs three replicas on one PostgreSQL: each evaluates its
// share, any of them serves all statuses, and when one dies (its lease
// lapses, no goodbye) the others take its SLOs over with their rollups
// and alert states: nothing re-alerts and nothing is lost.
func TestTakeOver(t *testing.T) {
	const n = 60
	dsn := postgresDSN(t)
	db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	w := &writer{db: db, n: n, vals: map[string]float64{}}
	w.write(t, t0.Add(-2*time.Hour), t0, func(int) bool { return false })
	clk := &clock{t: t0.Add(30 * time.Second)}
	set := clusterSpecs(t, n)
	ctx := context.Background()

	rs := []*replica{
		startReplica(t, "r1", dsn, db, set, clk),
		startReplica(t, "r2", dsn, db, set, clk),
		startReplica(t, "r3", dsn, db, set, clk),
	}
	for _, r := range rs {
		// Everyone sees everyone before evaluating.
		if err := r.members.beat(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range rs {
		if err := r.engine.Prepare(ctx); err != nil {
			t.Fatal(err)
		}
	}
	owned := map[string]string{}
	for _, r := range rs {
		for _, st := range r.engine.Snapshot().Statuses {
			if prev, dup := owned[st.Key]; dup {
				t.Errorf("%s evaluated by %s and %s", st.Key, prev, r.id)
			}
			owned[st.Key] = r.id
		}
	}
	if len(owned) != n {
		t.Fatalf("%d SLOs evaluated in all, want %d", len(owned), n)
	}
	for _, r := range rs {
		t.Logf("%s evaluates %d SLOs", r.id, len(r.engine.Snapshot().Statuses))
	}
	// Any replica serves all of them.
	shared := NewSharedSnapshot(rs[0].store, rs[0].engine.Snapshot, time.Nanosecond, clk.now, nil2())
	if got := len(shared.Snapshot().Statuses); got != n {
		t.Errorf("shared snapshot has %d statuses, want %d", got, n)
	}

	// step advances every live replica by 15s: data, heartbeat, cycle.
	bad := func(i int) bool { return i%2 == 0 }
	now := t0
	step := func(live []*replica) {
		w.write(t, now, now.Add(15*time.Second), bad)
		now = now.Add(15 * time.Second)
		clk.add(15 * time.Second)
		// Heartbeats run every TTL/4 in real life, more often than this
		// 15s step: renew every lease first, then read the members.
		for pass := range 2 {
			for _, r := range live {
				if err := r.members.beat(ctx); err != nil {
					t.Fatal(err)
				}
				if pass == 1 {
					r.engine.Cycle(ctx)
				}
			}
		}
	}
	// An outage of the even SLOs: pages fire on their owners.
	for range 12 {
		step(rs)
	}
	firing := map[string]bool{}
	for _, r := range rs {
		for _, tr := range r.transitions() {
			if tr.Severity == "page" && tr.To == slo.Firing {
				if firing[tr.Key] {
					t.Errorf("%s fired twice", tr.Key)
				}
				firing[tr.Key] = true
			}
		}
	}
	if len(firing) != n/2 {
		t.Fatalf("%d pages fired, want %d", len(firing), n/2)
	}
	// r3 dies: no more heartbeats, no goodbye. Its rollups were persisted
	// by the last cycle at most a minute ago.
	for _, r := range rs {
		if err := r.engine.Persist(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dead := rs[2]
	var deadKeys []string
	for _, st := range dead.engine.Snapshot().Statuses {
		deadKeys = append(deadKeys, st.Key)
	}
	live := rs[:2]
	start := now
	took := time.Duration(0)
	for took == 0 && now.Sub(start) < time.Minute {
		step(live)
		got := 0
		for _, r := range live {
			for _, k := range deadKeys {
				if r.engine.Snapshot().Status(k) != nil {
					got++
				}
			}
		}
		if got == len(deadKeys) {
			took = now.Sub(start)
		}
	}
	if took == 0 || took > 30*time.Second {
		t.Fatalf("the dead replica's %d SLOs were not taken over within 30s (took %s)", len(deadKeys), took)
	}
	t.Logf("%d SLOs of the dead replica taken over %s after its last heartbeat", len(deadKeys), took)
	// Taken-over SLOs keep their state: still firing, no second page.
	for range 4 {
		step(live)
	}
	for _, r := range live {
		for _, tr := range r.transitions() {
			if tr.Severity == "page" && tr.To == slo.Firing && firing[tr.Key] {
				t.Errorf("%s paged again after the take-over (%s->%s on %s)", tr.Key, tr.From, tr.To, r.id)
			}
		}
	}
	for _, k := range deadKeys {
		var st *engine.Status
		for _, r := range live {
			if s := r.engine.Snapshot().Status(k); s != nil {
				st = s
			}
		}
		w5 := st.WindowStat(5 * time.Minute)
		if w5 == nil || w5.Coverage != 1 || w5.Total == 0 {
			t.Errorf("%s after take-over: 5m window %+v", k, w5)
		}
		if firing[k] && st.Alert("page").State != slo.Firing {
			t.Errorf("%s: page %s after take-over, want firing", k, st.Alert("page").State)
		}
	}
	if got := len(NewSharedSnapshot(rs[0].store, rs[0].engine.Snapshot, time.Nanosecond, clk.now, nil2()).Snapshot().Statuses); got != n {
		t.Errorf("after take-over the shared snapshot has %d statuses, want %d", got, n)
	}
}

func nil2() *slog.Logger { return slog.New(slog.DiscardHandler) }

// staticShard is a fixed membership, for benchmarks.
type staticShard struct {
	members []string
	id      string
}

func (s staticShard) Owns(key string) bool { return Owner(s.members, key) == s.id }
func (s staticShard) Epoch() uint64        { return 1 }

// BenchmarkReplicas measures how evaluation scales with replicas: the same
// SLOs split over 1, 2 and 3 engines sharing one PostgreSQL store and one
// telemetry source. "alone" is one replica's cycle run by itself (what a
// replica on its own machine spends); "together" is all replicas cycling
// at once on this machine.
func BenchmarkReplicas(b *testing.B) {
	const n = 3000
	for _, replicas := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			dsn := postgresDSN(b)
			db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
			w := &writer{db: db, n: n, vals: map[string]float64{}}
			w.write(b, t0.Add(-20*time.Minute), t0, func(int) bool { return false })
			clk := &clock{t: t0.Add(30 * time.Second)}
			set := clusterSpecs(b, n)
			ctx := context.Background()
			var ids []string
			for i := range replicas {
				ids = append(ids, fmt.Sprintf("r%d", i+1))
			}
			var engines []*engine.Engine
			for _, id := range ids {
				s, err := store.Open(ctx, store.Options{Driver: "postgres", DSN: dsn, Now: clk.now})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				e, err := engine.New(engine.Options{Source: db, Store: s, Specs: set, Now: clk.now,
					Shard: staticShard{ids, id}, Publish: Publisher(s, id, nil2()), PersistInterval: 1000 * time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				if err := e.Prepare(ctx); err != nil {
					b.Fatal(err)
				}
				engines = append(engines, e)
			}
			now := t0
			var alone, together time.Duration
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				w.write(b, now, now.Add(time.Minute), func(int) bool { return false })
				now = now.Add(time.Minute)
				clk.add(time.Minute)
				// The first replica alone, on the new minute.
				start := time.Now()
				engines[0].Cycle(ctx)
				alone += time.Since(start)
				// Then every replica at once (the first has nothing new).
				b.StartTimer()
				start = time.Now()
				var wg sync.WaitGroup
				for _, e := range engines[1:] {
					wg.Add(1)
					go func() { defer wg.Done(); e.Cycle(ctx) }()
				}
				wg.Wait()
				together += time.Since(start)
			}
			b.StopTimer()
			per := float64(alone.Microseconds()) / float64(b.N) / 1000
			b.ReportMetric(per, "ms/cycle-alone")
			// Each replica evaluates n/replicas SLOs in per ms; replicas on
			// their own machines together evaluate n SLOs in that time.
			b.ReportMetric(float64(n)*1000/per, "SLOs/s-cluster")
			if replicas > 1 {
				b.ReportMetric(float64(together.Microseconds())/float64(b.N)/1000, "ms/cycle-others-together")
			}
		})
	}
}

// countingStatuses counts full reads of the published statuses.
type countingStatuses struct {
	StatusStore
	reads int
}

func (c *countingStatuses) Statuses(ctx context.Context) ([]store.StatusRow, error) {
	c.reads++
	return c.StatusStore.Statuses(ctx)
}

// The shared snapshot reads and decodes the statuses again only when a
// replica published: an unchanged store keeps the same snapshot.
func TestSharedSnapshotReadsOnlyChanges(t *testing.T) {
	ctx := context.Background()
	s, err := store.Open(ctx, store.Options{Driver: "postgres", DSN: postgresDSN(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	clk := &clock{t: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)}
	publish := Publisher(s, "r1", nil2())
	st := &engine.Status{Key: "a", SLO: "a", State: engine.StateOK, EvaluatedAt: clk.now()}
	publish(ctx, []*engine.Status{st})

	cs := &countingStatuses{StatusStore: s}
	local := engine.NewSnapshot(clk.now(), nil, nil)
	shared := NewSharedSnapshot(cs, func() *engine.Snapshot { return local }, time.Nanosecond, clk.now, nil2())
	first := shared.Snapshot()
	clk.add(time.Second)
	if again := shared.Snapshot(); again != first || cs.reads != 1 {
		t.Fatalf("unchanged statuses: new snapshot %v, %d reads; want the same snapshot, 1 read", again != first, cs.reads)
	}
	st2 := *st
	st2.State, st2.EvaluatedAt = engine.StateFiring, clk.now()
	publish(ctx, []*engine.Status{&st2})
	clk.add(time.Second)
	got := shared.Snapshot()
	if got == first || cs.reads != 2 || got.Status("a").State != engine.StateFiring {
		t.Errorf("after a publish: %d reads, state %v; want 2 reads and firing", cs.reads, got.Status("a").State)
	}
}
