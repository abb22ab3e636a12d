// Package engine is the evaluation loop of qsp serve: it reads new whole
// minutes of telemetry from a Source, folds them into per-SLO rollups, and
// answers every window (5m to the SLO window and the calendar period) from
// prefix sums, so a cycle's cost does not grow with window length. It
// judges budgets, burn rates and no-data, steps the alert state machines,
// persists what a restart needs, and hands alert transitions to whoever
// acts on them (notifiers, incidents, playbooks).
package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

// Store is the persistence the engine needs; *store.Store implements it.
// Methods are called from the engine's goroutine only.
type Store interface {
	LoadRollupsOf(ctx context.Context, slos ...string) ([]store.Rollup, error)
	LoadRollup(ctx context.Context, key string) (store.Rollup, error)
	SaveRollups(ctx context.Context, rs []store.Rollup) error
	DeleteRollups(ctx context.Context, keys []string) error
	LoadAlertStates(ctx context.Context) ([]store.AlertState, error)
	RecordTransitions(ctx context.Context, ts []store.Transition, states []store.AlertState) error
}

// Options configure an Engine. Source, Store and Specs are required.
type Options struct {
	Source Source
	Store  Store
	Specs  *spec.Set
	// Interval between cycles. Default 15s.
	Interval time.Duration
	// Settle is how long after a minute ends before it is folded, so
	// samples in flight (remote_write batches) arrive first. Default 30s.
	Settle time.Duration
	// PartialSettle is how old samples of the newest, unfinished minute
	// must be for alert windows to count them before the minute is folded,
	// so a full outage pages within two minutes. Default 10s; negative
	// counts whole minutes only.
	PartialSettle time.Duration
	// LateData is how long the engine waits for a whole SLO's telemetry to
	// come back before it folds the missing minutes as no data; late
	// samples within it are folded exactly. Default 10m.
	LateData time.Duration
	// LateWindow is how far behind the engine's folded minutes a late
	// sample may arrive and still be counted in its own minute: the
	// source's out-of-order window (the embedded TSDB's
	// outOfOrderWindow). Folded minutes are revised for late samples up
	// to LateWindow plus two minutes back (the settle margin); later ones
	// are counted in qsp_samples_late_dropped_total. Revisions need a
	// source that reports late appends (telemetry.Embedded). Default 10m.
	LateWindow time.Duration
	// LateReadBack, for a source that does not report late appends (a
	// remote Prometheus), reads the folded minutes of the revision
	// horizon (LateWindow plus two minutes) and lateReadBackDrops more
	// again every cycle, so late samples in them revise their minutes and
	// those just beyond are counted as dropped. Each cycle then reads
	// LateWindow+7m of samples instead of about a minute. Off by default:
	// a remote source's late samples are then not seen at all.
	LateReadBack bool
	// PersistInterval between rollup snapshots. Default 5m.
	PersistInterval time.Duration
	// Chunk bounds one fetch during backfill and catch-up. Default 6h.
	Chunk time.Duration
	// Concurrency is how many SLOs are fetched at once. Default
	// 2*GOMAXPROCS.
	Concurrency int
	// BatchMin is how many raw-sample selectors on one metric name are
	// fetched together with one query. Default 4; 0 uses the default,
	// negative disables batching.
	BatchMin int
	// OnTransitions receives alert transitions after they are persisted.
	// It is called from the engine's goroutine and must not block.
	OnTransitions func(ctx context.Context, ts []Transition)
	// Progress receives backfill progress.
	Progress func(BackfillProgress)
	// Shard, when set, limits the engine to the SLOs it owns among several
	// replicas; ownership is checked every cycle and SLOs move with their
	// persisted rollups and alert states.
	Shard Shard
	// Publish receives the statuses of the SLOs this engine evaluated,
	// after every cycle; replicas share them through the store.
	Publish    func(ctx context.Context, statuses []*Status)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Shard says which SLOs a replica evaluates. Implementations are safe for
// concurrent use.
type Shard interface {
	// Owns reports whether this replica evaluates the SLOs of shard key
	// (composites and their children share one key).
	Owns(key string) bool
	// Epoch changes whenever ownership may have changed.
	Epoch() uint64
}

// BackfillProgress reports the start-up backfill.
type BackfillProgress struct {
	SLOs, DoneSLOs int
	// Minutes is the total number of SLO-minutes to fold; Done how many
	// are folded.
	Minutes, Done int64
	Elapsed       time.Duration
	Finished      bool
}

// Engine evaluates SLOs continuously. Create it with New and run it with
// Run; Statuses, Status and Reload are safe to call from other goroutines.
type Engine struct {
	opts   Options
	logger *slog.Logger
	m      *metrics

	// mu guards runtimes, set and order, which only the Run goroutine
	// changes (during Reload and cycles).
	mu       sync.Mutex
	set      *spec.Set
	runtimes map[string]*sloRuntime
	order    []string
	// ordered are the runtimes in order; plain and composites split them
	// for evaluation (see setOrder).
	ordered, plain, composites []*sloRuntime
	// plans holds every SLO of the set, owned or not, and shardKeys their
	// shard keys; shardEpoch is the ownership last applied.
	plans      map[string]*plan
	shardKeys  map[string]string
	shardEpoch uint64

	snapshot atomic.Pointer[Snapshot]
	reload   chan reloadRequest
	ready    atomic.Bool

	sourceAlert slo.Alert
	sourceErr   error
	// dispatchers are the batches' dispatchers by metric name, kept while
	// the batches stay the same (see dispatcherFor).
	dispatchers   map[string]*dispatcher
	pendingAlerts map[string]map[string]slo.Alert // restored states of groups not seen yet
	lastPersist   time.Time
}

// Snapshot is the state of every SLO after a cycle. It is immutable;
// NewSnapshot builds one, with the indexes Status and SLO read.
type Snapshot struct {
	At       time.Time
	Statuses []*Status // sorted by key
	// SourceDown is set while the telemetry source is unavailable.
	SourceDown *AlertStatus
	byKey      map[string]*Status
	bySLO      map[string][]*Status
}

// Status returns the status of a key, or nil.
func (s *Snapshot) Status(key string) *Status { return s.byKey[key] }

// SLO returns the statuses of an SLO's groups (one for an ungrouped SLO).
func (s *Snapshot) SLO(name string) []*Status { return s.bySLO[name] }

type reloadRequest struct {
	set  *spec.Set
	done chan error
}

// New checks the options and builds an engine; it reads nothing yet.
func New(opts Options) (*Engine, error) {
	switch {
	case opts.Source == nil:
		return nil, errors.New("engine: no source")
	case opts.Store == nil:
		return nil, errors.New("engine: no store")
	case opts.Specs == nil:
		return nil, errors.New("engine: no specs")
	}
	opts.Interval = cmp.Or(opts.Interval, 15*time.Second)
	opts.Settle = cmp.Or(opts.Settle, 30*time.Second)
	opts.PartialSettle = cmp.Or(opts.PartialSettle, 10*time.Second)
	opts.LateData = cmp.Or(opts.LateData, 10*time.Minute)
	opts.LateWindow = cmp.Or(opts.LateWindow, defaultHorizon*time.Minute)
	opts.PersistInterval = cmp.Or(opts.PersistInterval, 5*time.Minute)
	opts.Chunk = cmp.Or(opts.Chunk, 6*time.Hour)
	opts.Concurrency = cmp.Or(opts.Concurrency, 2*runtime.GOMAXPROCS(0))
	opts.BatchMin = cmp.Or(opts.BatchMin, 4)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnTransitions == nil {
		opts.OnTransitions = func(context.Context, []Transition) {}
	}
	e := &Engine{
		opts:          opts,
		logger:        opts.Logger.With("component", "engine"),
		runtimes:      map[string]*sloRuntime{},
		reload:        make(chan reloadRequest),
		pendingAlerts: map[string]map[string]slo.Alert{},
	}
	e.m = newMetrics(e, opts.Registerer)
	e.snapshot.Store(&Snapshot{byKey: map[string]*Status{}, bySLO: map[string][]*Status{}})
	return e, nil
}

// Snapshot returns the statuses after the last cycle.
func (e *Engine) Snapshot() *Snapshot { return e.snapshot.Load() }

// Ready reports whether the start-up backfill is done.
func (e *Engine) Ready() bool { return e.ready.Load() }

// Specs returns the spec set the engine evaluates.
func (e *Engine) Specs() *spec.Set {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.set
}

// Reload replaces the spec set. Rollups of SLOs whose indicator, budgeting,
// grouping, window and corrections did not change are kept; others are
// rebuilt from telemetry. It waits until the engine has applied the set.
func (e *Engine) Reload(ctx context.Context, set *spec.Set) error {
	req := reloadRequest{set: set, done: make(chan error, 1)}
	select {
	case e.reload <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run restores persisted state, backfills the SLO windows and evaluates
// every Interval until ctx ends; then it persists the rollups once more.
func (e *Engine) Run(ctx context.Context) error {
	if err := e.Prepare(ctx); err != nil {
		if ctx.Err() != nil {
			return e.shutdown()
		}
		return err
	}
	t := time.NewTicker(e.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return e.shutdown()
		case req := <-e.reload:
			err := e.apply(ctx, req.set, false)
			if err == nil {
				e.cycle(ctx)
			}
			req.done <- err
		case <-t.C:
			e.cycle(ctx)
		}
	}
}

// Prepare restores persisted state and backfills the SLO windows: what Run
// does before its first cycle. Tools and tests that drive the engine
// themselves call Prepare once, then Cycle.
func (e *Engine) Prepare(ctx context.Context) error {
	if err := e.apply(ctx, e.opts.Specs, true); err != nil {
		return err
	}
	if err := e.backfill(ctx); err != nil {
		return err
	}
	e.ready.Store(true)
	return nil
}

// Cycle runs one evaluation cycle now (Run calls it every Interval).
func (e *Engine) Cycle(ctx context.Context) { e.cycle(ctx) }

// Persist snapshots every rollup now (Run does it every PersistInterval
// and at shutdown).
func (e *Engine) Persist(ctx context.Context) error { return e.persist(ctx) }

func (e *Engine) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return e.persist(ctx)
}

// apply builds runtimes for a spec set, keeping those whose plan is
// unchanged. At start-up (restore) it loads persisted rollups and alerts.
func (e *Engine) apply(ctx context.Context, set *spec.Set, restore bool) error {
	plans := map[string]*plan{}
	for _, s := range set.SLOs {
		p, err := compile(s, set)
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
		plans[s.Name()] = p
	}
	keys := shardKeys(plans)
	var saved map[string][]store.Rollup
	if restore {
		// Only the rollups of SLOs this replica evaluates: with replicas,
		// the others' are theirs.
		var owned []string
		for name := range plans {
			if e.owns(keys[name]) {
				owned = append(owned, name)
			}
		}
		rs, err := e.opts.Store.LoadRollupsOf(ctx, owned...)
		if err != nil {
			return fmt.Errorf("engine: load rollups: %w", err)
		}
		saved = map[string][]store.Rollup{}
		for _, r := range rs {
			saved[r.SLO] = append(saved[r.SLO], r)
		}
		states, err := e.opts.Store.LoadAlertStates(ctx)
		if err != nil {
			return fmt.Errorf("engine: load alert states: %w", err)
		}
		for _, a := range states {
			e.restoreAlert(a)
		}
		if sa, ok := e.pendingAlerts[""][SeverityNoData]; ok {
			e.sourceAlert = sa
		}
	}
	target := e.target()
	var epoch uint64
	if e.opts.Shard != nil {
		epoch = e.opts.Shard.Epoch()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	next := map[string]*sloRuntime{}
	for name, p := range plans {
		if !e.owns(keys[name]) {
			continue
		}
		if old := e.runtimes[name]; old != nil && old.plan.hash == p.hash {
			old.plan = p // alerting and objectives may have changed
			next[name] = old
			continue
		}
		start := target - slo.Minute(p.span)
		rt := e.newRuntime(p, start)
		if restore {
			e.restoreRollups(rt, saved[name], start)
		}
		next[name] = rt
	}
	// Rollups of SLOs removed from the specs, or rebuilt under a new plan,
	// are deleted; those of SLOs another replica owns are not.
	var gone []string
	for name, rt := range e.runtimes {
		if p := plans[name]; p == nil || p.hash != rt.plan.hash {
			for _, g := range rt.groups {
				gone = append(gone, g.statusKey)
			}
		}
	}
	e.runtimes, e.set, e.plans, e.shardKeys, e.shardEpoch = next, set, plans, keys, epoch
	e.setOrder()
	if len(gone) > 0 && !restore {
		if err := e.opts.Store.DeleteRollups(ctx, gone); err != nil {
			e.logger.Warn("delete old rollups", "err", err)
		}
	}
	e.m.slos.Set(float64(len(next)))
	return nil
}

// newRuntime builds the runtime of plan p whose rollups start at start,
// with the engine's revision horizon: the late window plus two minutes of
// settling, so every sample the source took out of order is in it.
func (e *Engine) newRuntime(p *plan, start slo.Minute) *sloRuntime {
	rt := newRuntime(p, start)
	h := slo.Minute((e.opts.LateWindow+time.Minute-1)/time.Minute) + 2
	for _, c := range counterOf(rt.feeder) {
		c.horizon = h
	}
	return rt
}

// restoreAlert keeps a persisted alert state until its group is
// evaluated, so a restart or a takeover resumes instead of re-alerting.
func (e *Engine) restoreAlert(a store.AlertState) {
	if e.pendingAlerts[a.Key] == nil {
		e.pendingAlerts[a.Key] = map[string]slo.Alert{}
	}
	e.pendingAlerts[a.Key][a.Severity] = slo.Alert{State: slo.AlertState(a.State), ActiveSince: a.ActiveSince, FiredAt: a.FiredAt, ResolvedAt: a.ResolvedAt}
}

// restoreRollups puts persisted rollups back into a fresh runtime when they
// were built by the same plan. A corrupt rollup is dropped and rebuilt.
func (e *Engine) restoreRollups(rt *sloRuntime, saved []store.Rollup, start slo.Minute) {
	restored := false
	next := slo.Minute(0)
	for _, r := range saved {
		if r.PlanHash != rt.plan.hash {
			e.logger.Info("spec changed since the rollup was saved: rebuilding from telemetry", "slo", r.SLO)
			continue
		}
		roll, err := unmarshalRollup(r.Data)
		if err != nil {
			e.logger.Warn("corrupt rollup: rebuilding from telemetry", "slo", r.SLO, "key", r.Key, "err", err)
			e.m.corrupt.Inc()
			continue
		}
		ls, err := groupLabels(r.Key, r.SLO)
		if err != nil {
			e.logger.Warn("unreadable rollup key: rebuilding from telemetry", "key", r.Key, "err", err)
			continue
		}
		key, _ := groupKey(ls, rt.plan.slo.Spec.GroupBy)
		if roll.next <= start {
			continue // too old to be of use
		}
		rt.addGroup(rt.newGroup(key, ls, roll, slo.Minute(r.LastSampled)))
		if !restored || roll.next < next {
			next = roll.next
		}
		restored = true
	}
	if restored {
		rt.next = next
		// Groups that started later than others catch up from there.
		for _, g := range rt.groups {
			if g.roll.next < next {
				g.roll = newRollup(next, sizeFor(rt.plan.span))
			}
		}
	}
}

// groupLabels parses the labels out of a status key: name{a="b"}.
func groupLabels(key, name string) (labelsT, error) {
	rest := strings.TrimPrefix(key, name)
	if rest == "" {
		return emptyLabels(), nil
	}
	return parser.NewParser(parser.Options{}).ParseMetric(rest)
}

func (e *Engine) owns(key string) bool {
	return e.opts.Shard == nil || e.opts.Shard.Owns(key)
}

func ownedPlans(plans map[string]*plan, rts map[string]*sloRuntime) map[string]*plan {
	out := make(map[string]*plan, len(rts))
	for name := range rts {
		out[name] = plans[name]
	}
	return out
}

// shardKeys gives every SLO the key of its composite family: a composite
// and the SLOs it combines are evaluated on the same replica, under the
// smallest name of the family.
func shardKeys(plans map[string]*plan) map[string]string {
	parent := map[string]string{}
	find := func(x string) string {
		for parent[x] != "" && parent[x] != x {
			x = parent[x]
		}
		return x
	}
	union := func(a, b string) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		if rb < ra {
			ra, rb = rb, ra
		}
		parent[rb] = ra
	}
	for name, p := range plans {
		if parent[name] == "" {
			parent[name] = name
		}
		for _, c := range p.composite {
			if parent[c.name] == "" {
				parent[c.name] = c.name
			}
			union(name, c.name)
		}
	}
	keys := make(map[string]string, len(plans))
	for name := range plans {
		keys[name] = find(name)
	}
	return keys
}

// rebalance applies a change of ownership: SLOs this replica gained are
// restored from the store (rollups and alert states, so nothing re-alerts)
// and catch up from telemetry; SLOs it lost are persisted and dropped.
func (e *Engine) rebalance(ctx context.Context) {
	if e.opts.Shard == nil {
		return
	}
	epoch := e.opts.Shard.Epoch()
	e.mu.Lock()
	if epoch == e.shardEpoch {
		e.mu.Unlock()
		return
	}
	e.shardEpoch = epoch
	var lost []*sloRuntime
	var gained []*plan
	for name, p := range e.plans {
		owned := e.owns(e.shardKeys[name])
		rt := e.runtimes[name]
		switch {
		case owned && rt == nil:
			gained = append(gained, p)
		case !owned && rt != nil:
			lost = append(lost, rt)
			delete(e.runtimes, name)
		}
	}
	e.mu.Unlock()
	if len(lost) > 0 {
		var rs []store.Rollup
		now := e.opts.Now()
		for _, rt := range lost {
			rs = append(rs, rt.rollupRecords(now)...)
		}
		if err := e.opts.Store.SaveRollups(ctx, rs); err != nil {
			e.logger.Error("persist rollups of SLOs handed over", "err", err)
		}
	}
	var states []store.AlertState
	if len(gained) > 0 {
		var err error
		if states, err = e.opts.Store.LoadAlertStates(ctx); err != nil {
			e.logger.Error("load alert states of SLOs taken over", "err", err)
		}
	}
	target := e.target()
	added := map[string]*sloRuntime{}
	names := make([]string, len(gained))
	for i, p := range gained {
		names[i] = p.slo.Name()
	}
	saved := map[string][]store.Rollup{}
	if len(names) > 0 {
		rs, err := e.opts.Store.LoadRollupsOf(ctx, names...)
		if err != nil {
			e.logger.Error("load rollups of SLOs taken over: rebuilding them from telemetry", "slos", len(names), "err", err)
		}
		for _, r := range rs {
			saved[r.SLO] = append(saved[r.SLO], r)
		}
	}
	for _, p := range gained {
		start := target - slo.Minute(p.span)
		rt := e.newRuntime(p, start)
		e.restoreRollups(rt, saved[p.slo.Name()], start)
		added[p.slo.Name()] = rt
	}
	e.mu.Lock()
	for _, a := range states {
		if added[sloOfKey(a.Key)] != nil {
			e.restoreAlert(a)
		}
	}
	maps.Copy(e.runtimes, added)
	e.setOrder()
	e.m.slos.Set(float64(len(e.runtimes)))
	e.mu.Unlock()
	if len(lost)+len(gained) > 0 {
		e.logger.Info("SLO ownership changed", "gained", len(gained), "handed_over", len(lost), "owned", len(e.runtimes))
	}
}

// setOrder sets the evaluation order of the runtimes after they changed.
// The caller holds e.mu.
func (e *Engine) setOrder() {
	e.order = evaluationOrder(ownedPlans(e.plans, e.runtimes))
	e.ordered, e.plain, e.composites = nil, nil, nil
	for _, name := range e.order {
		rt := e.runtimes[name]
		e.ordered = append(e.ordered, rt)
		if rt.plan.composite != nil {
			e.composites = append(e.composites, rt)
		} else {
			e.plain = append(e.plain, rt)
		}
	}
}

// evaluationOrder puts composites after the SLOs they combine.
func evaluationOrder(plans map[string]*plan) []string {
	var order []string
	done := map[string]bool{}
	var visit func(name string, depth int)
	visit = func(name string, depth int) {
		p := plans[name]
		if p == nil || done[name] || depth > 32 {
			return
		}
		for _, c := range p.composite {
			visit(c.name, depth+1)
		}
		done[name] = true
		order = append(order, name)
	}
	for _, name := range slices.Sorted(maps.Keys(plans)) {
		visit(name, 0)
	}
	return order
}

// target is the minute before which minutes are complete.
func (e *Engine) target() slo.Minute { return e.targetAt(e.opts.Now()) }

// targetAt is the minute an evaluation at now folds up to.
func (e *Engine) targetAt(now time.Time) slo.Minute {
	return slo.MinuteOf(now.Add(-e.opts.Settle))
}

// backfill folds every SLO up to the target minute, in chunks, reporting
// progress. Minutes of persisted rollups are not read again.
func (e *Engine) backfill(ctx context.Context) error {
	start := e.opts.Now()
	target := e.target()
	e.mu.Lock()
	rts := slices.Collect(maps.Values(e.runtimes))
	e.mu.Unlock()
	var total int64
	var done, doneSLOs atomic.Int64
	for _, rt := range rts {
		switch {
		case rt.plan.composite != nil:
			doneSLOs.Add(1) // composites keep no rollups of their own
		case rt.next < target:
			total += int64(target - rt.next)
			rt.backfilling = true
		default:
			doneSLOs.Add(1)
		}
	}
	report := func(finished bool) {
		if e.opts.Progress != nil {
			e.opts.Progress(BackfillProgress{SLOs: len(rts), DoneSLOs: int(doneSLOs.Load()), Minutes: total, Done: done.Load(), Elapsed: e.opts.Now().Sub(start), Finished: finished})
		}
	}
	e.logger.Info("backfill started", "slos", len(rts), "minutes", total)
	report(false)
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				report(false)
			}
		}
	}()
	chunk := slo.Minute(e.opts.Chunk / time.Minute)
	for {
		var work []*sloRuntime
		for _, rt := range rts {
			if rt.plan.composite == nil && rt.next < target && rt.lastErr == nil {
				work = append(work, rt)
			} else if rt.backfilling {
				rt.backfilling = false
				doneSLOs.Add(1)
			}
		}
		if len(work) == 0 {
			break
		}
		before := map[*sloRuntime]slo.Minute{}
		for _, rt := range work {
			before[rt] = rt.next
		}
		e.fetchAndFold(ctx, work, func(rt *sloRuntime) slo.Minute { return min(rt.next+chunk, target) }, target, true, time.Time{})
		if ctx.Err() != nil {
			close(stop)
			return ctx.Err()
		}
		progressed := false
		for _, rt := range work {
			done.Add(int64(rt.next - before[rt]))
			if rt.next > before[rt] {
				progressed = true
			}
		}
		if !progressed {
			// Every remaining SLO failed (source down): give up the
			// backfill; cycles catch up when the source returns.
			break
		}
	}
	close(stop)
	for _, rt := range rts {
		rt.backfilling = false
	}
	// The first evaluation sees the newest, partial minute too, as every
	// cycle does: otherwise a restart during an outage would resolve the
	// page it is firing and fire it again.
	now := e.opts.Now()
	if e.opts.PartialSettle > 0 {
		var peekers []*sloRuntime
		for _, rt := range rts {
			if _, ok := rt.feeder.(peeker); ok && rt.plan.composite == nil && rt.next >= target && rt.lastErr == nil {
				peekers = append(peekers, rt)
			}
		}
		e.fetchAndFold(ctx, peekers, func(rt *sloRuntime) slo.Minute { return rt.next }, target, true, now.Add(-e.opts.PartialSettle))
	}
	e.readStarts(ctx, rts)
	if ctx.Err() != nil {
		return ctx.Err() // as in cycle: a cut-short read is not evaluated
	}
	e.evaluateAll(ctx, now, target)
	report(true)
	e.logger.Info("backfill done", "slos", len(rts), "minutes", done.Load(), "duration", e.opts.Now().Sub(start).Round(time.Millisecond))
	e.m.backfillSeconds.Set(e.opts.Now().Sub(start).Seconds())
	if err := e.persist(ctx); err != nil {
		// The backfill is in memory and cycles persist again every
		// PersistInterval: a store hiccup must not stop the start.
		e.logger.Error("persist rollups after the backfill", "err", err)
	}
	return nil
}

// cycle is one evaluation: fetch the new minutes, fold, evaluate, persist
// transitions, notify.
func (e *Engine) cycle(ctx context.Context) {
	start := time.Now()
	e.rebalance(ctx)
	// One clock reading for the whole cycle: a target, partial read and
	// evaluation time taken at different moments would, on a cycle that
	// straddles a minute, skip the partial read and evaluate windows that
	// end a minute earlier than the last cycle's (an alert resolved by
	// one cycle fired again by the next).
	now := e.opts.Now()
	target := e.targetAt(now)
	e.mu.Lock()
	rts := e.plain
	e.mu.Unlock()
	chunk := slo.Minute(e.opts.Chunk / time.Minute)
	e.markRevisions(rts)
	// Usually every SLO needs the one new minute; an SLO added or changed
	// by a reload, or one behind after the source was down, catches up
	// chunk by chunk within this cycle.
	var peekEnd time.Time
	if e.opts.PartialSettle > 0 {
		peekEnd = now.Add(-e.opts.PartialSettle)
	}
	for first := true; ; first = false {
		var work []*sloRuntime
		before := map[*sloRuntime]slo.Minute{}
		for _, rt := range rts {
			if !first && rt.lastErr != nil {
				continue
			}
			// The first round also reads the newest, partial minute of
			// SLOs that are up to date.
			if rt.next < target || (first && rt.canPeek && !peekEnd.IsZero()) || (first && !rt.reviseFrom.IsZero()) {
				work = append(work, rt)
				before[rt] = rt.next
			}
		}
		if len(work) == 0 || ctx.Err() != nil {
			break
		}
		e.fetchAndFold(ctx, work, func(rt *sloRuntime) slo.Minute { return min(rt.next+chunk, target) }, target, !first, peekEnd)
		progressed := false
		for _, rt := range work {
			if rt.next > before[rt] && rt.next < target {
				progressed = true
			}
		}
		if !progressed {
			break
		}
	}
	e.readStarts(ctx, rts)
	if ctx.Err() != nil {
		// Shutting down mid-read: what this cycle read is cut short, and
		// evaluating it would resolve pages (or raise no-data) that the
		// next start fires again. The last snapshot stands.
		return
	}
	e.evaluateAll(ctx, now, target)
	if e.opts.Now().Sub(e.lastPersist) >= e.opts.PersistInterval {
		if err := e.persist(ctx); err != nil {
			e.logger.Error("persist rollups", "err", err)
		}
	}
	e.m.cycleSeconds.Observe(time.Since(start).Seconds())
	e.m.lastCycle.Set(float64(e.opts.Now().Unix()))
}

// appendWatcher is implemented by sources that know where samples were
// written: telemetry.Embedded. It is what makes revisions cheap: only a
// cycle after late samples reads back, and only for their metrics.
type appendWatcher interface {
	// OldestAppended returns, by metric name, the oldest timestamp (ms)
	// of the samples committed since the previous call.
	OldestAppended() map[string]int64
}

// dropSpan is how far behind the revision horizon a read for late
// samples reaches, to count (not fold) those too late: the embedded
// TSDB takes a new series' samples up to an hour behind its newest.
const dropSpan = time.Hour

// markRevisions asks every counter SLO whose metrics had samples
// appended in minutes it already folded to read back to them.
func (e *Engine) markRevisions(rts []*sloRuntime) {
	w, ok := e.opts.Source.(appendWatcher)
	if !ok {
		if e.opts.LateReadBack {
			e.readBack(rts)
		}
		return
	}
	oldest := w.OldestAppended()
	if len(oldest) == 0 {
		return
	}
	anyOldest := int64(math.MaxInt64)
	for _, t := range oldest {
		anyOldest = min(anyOldest, t)
	}
	for _, rt := range rts {
		cs := counterOf(rt.feeder)
		if len(cs) == 0 {
			continue
		}
		folded := minuteMs(rt.next)
		t := int64(math.MaxInt64)
		for k := range rt.reqs {
			name := rt.reqs[k].name
			if name == "" {
				t = min(t, anyOldest)
			} else if ot, ok := oldest[name]; ok {
				t = min(t, ot)
			}
		}
		if t > folded {
			continue // nothing landed in folded minutes
		}
		floor := minuteMs(rt.next-cs[0].horizon) - dropSpan.Milliseconds()
		rt.reviseFrom = msTime(max(t-1, floor))
	}
}

// lateReadBackDrops is how far behind the revision horizon LateReadBack
// reads, to count the samples that arrive that much too late.
const lateReadBackDrops = 5

// readBack asks every counter SLO to read its revision horizon again: a
// source that cannot say where samples landed is asked every cycle.
func (e *Engine) readBack(rts []*sloRuntime) {
	for _, rt := range rts {
		if cs := counterOf(rt.feeder); len(cs) > 0 && cs[0].warm {
			rt.reviseFrom = (rt.next - cs[0].horizon - lateReadBackDrops).Time()
		}
	}
}

// evaluateAll evaluates every SLO at now, folded up to target, persists
// and hands out transitions, and publishes a new snapshot.
func (e *Engine) evaluateAll(ctx context.Context, now time.Time, target slo.Minute) {
	e.mu.Lock()
	rts, ordered, plain, composites := e.runtimes, e.ordered, e.plain, e.composites
	e.mu.Unlock()
	sourceDown := e.sourceErr != nil
	ec := evalContext{now: now, target: target, sourceDown: sourceDown, children: func(name string) *sloRuntime { return rts[name] }}
	snap := &Snapshot{At: now, Statuses: make([]*Status, 0, len(ordered)), byKey: make(map[string]*Status, len(ordered)), bySLO: make(map[string][]*Status, len(ordered))}
	if len(e.pendingAlerts) > 0 {
		for _, rt := range ordered {
			e.applyPendingAlerts(rt)
		}
	}
	// SLOs are independent, so they are evaluated in parallel; composites
	// read their children's rollups and come after them. Each runtime
	// keeps its statuses and transitions for the snapshot.
	parallel(plain, runtime.GOMAXPROCS(0), func(rt *sloRuntime) { rt.evaluate(ec) })
	for _, rt := range composites {
		rt.evaluate(ec)
	}
	var ts []Transition
	for _, rt := range ordered {
		ts = append(ts, rt.transitions...)
		if len(rt.published) == 0 {
			continue
		}
		snap.Statuses = append(snap.Statuses, rt.published...)
		snap.bySLO[rt.plan.slo.Name()] = rt.published
		for _, st := range rt.published {
			snap.byKey[st.Key] = st
		}
	}
	// One alert for a source that is down, instead of one per SLO.
	prev := e.sourceAlert
	next, changed := prev.Step(now, sourceDown, max(e.opts.Interval, time.Minute))
	e.sourceAlert = next
	if next.State != slo.Inactive {
		as := AlertStatus{Severity: SeverityNoData, Name: AlertSourceDown, State: next.State, Since: next.ActiveSince, FiredAt: next.FiredAt, ResolvedAt: next.ResolvedAt}
		snap.SourceDown = &as
	}
	if changed {
		from := cmp.Or(prev.State, slo.Inactive)
		ts = append(ts, Transition{Key: "", SLO: "", Service: "", Severity: SeverityNoData, Alert: AlertSourceDown, From: from, To: next.State, At: now, Condition: errString(e.sourceErr)})
	}
	slices.SortFunc(snap.Statuses, func(a, b *Status) int { return strings.Compare(a.Key, b.Key) })
	e.snapshot.Store(snap)
	if e.opts.Publish != nil {
		e.opts.Publish(ctx, snap.Statuses)
	}
	if len(ts) == 0 {
		return
	}
	if err := e.recordTransitions(ctx, ts); err != nil {
		// The transitions still go out: alerting must not depend on the
		// database being writable. The next restart may re-send them.
		e.logger.Error("record transitions", "err", err, "transitions", len(ts))
	}
	for _, t := range ts {
		e.m.transitions.WithLabelValues(t.Severity, string(t.To)).Inc()
		e.logger.Info("alert transition", "key", t.Key, "severity", t.Severity, "from", t.From, "to", t.To, "condition", t.Condition)
	}
	e.opts.OnTransitions(ctx, ts)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// applyPendingAlerts hands restored alert states to groups that now exist.
func (e *Engine) applyPendingAlerts(rt *sloRuntime) {
	if len(e.pendingAlerts) == 0 {
		return
	}
	for _, g := range rt.list {
		if st, ok := e.pendingAlerts[g.statusKey]; ok {
			for sev, a := range st {
				if i, ok := severityIndex(sev); ok {
					g.alerts[i] = a
				}
			}
			delete(e.pendingAlerts, g.statusKey)
		}
	}
}

func (e *Engine) recordTransitions(ctx context.Context, ts []Transition) error {
	rows := make([]store.Transition, 0, len(ts))
	states := make([]store.AlertState, 0, len(ts))
	for _, t := range ts {
		var status []byte
		if t.Status != nil {
			status, _ = json.Marshal(t.Status)
		}
		rows = append(rows, store.Transition{At: t.At, Key: t.Key, SLO: t.SLO, Service: t.Service, Severity: t.Severity, Alert: t.Alert,
			From: string(t.From), To: string(t.To), Condition: t.Condition, Status: status})
		a := store.AlertState{Key: t.Key, Severity: t.Severity, State: string(t.To)}
		if t.Status != nil {
			if as := t.Status.Alert(t.Severity); as != nil {
				a.ActiveSince, a.FiredAt, a.ResolvedAt = as.Since, as.FiredAt, as.ResolvedAt
			}
		} else {
			a.ActiveSince, a.FiredAt, a.ResolvedAt = e.sourceAlert.ActiveSince, e.sourceAlert.FiredAt, e.sourceAlert.ResolvedAt
		}
		states = append(states, a)
	}
	return e.opts.Store.RecordTransitions(ctx, rows, states)
}

// persist snapshots every rollup.
func (e *Engine) persist(ctx context.Context) error {
	e.mu.Lock()
	var rs []store.Rollup
	now := e.opts.Now()
	for _, rt := range e.runtimes {
		rs = append(rs, rt.rollupRecords(now)...)
	}
	e.mu.Unlock()
	start := time.Now()
	err := e.opts.Store.SaveRollups(ctx, rs)
	e.m.persistSeconds.Observe(time.Since(start).Seconds())
	if err != nil {
		e.m.persistFailures.Inc()
		return fmt.Errorf("persist rollups: %w", err)
	}
	e.lastPersist = now
	return nil
}

// fetchAndFold brings the given runtimes up to until(rt): raw samples are
// fetched in batches across SLOs, range queries per SLO, concurrently.
// With peekEnd set, SLOs whose range reaches target also read the
// newest, partial minute up to peekEnd, counted provisionally.
func (e *Engine) fetchAndFold(ctx context.Context, work []*sloRuntime, until func(*sloRuntime) slo.Minute, target slo.Minute, backfill bool, peekEnd time.Time) {
	if len(work) == 0 {
		// Nothing asked, nothing learnt: the source keeps the state the
		// last fetch saw (a backfill that found it down must not be
		// cleared by an empty follow-up).
		return
	}
	jobs := make([]foldJob, len(work))
	var reqs []*selectorRequest
	for i, rt := range work {
		j := &jobs[i]
		j.rt, j.from, j.to = rt, rt.next, until(rt)
		if j.to < j.from {
			// Folded past the target (the clock went back, or a replica
			// restored newer rollups): nothing to fold, revisions only.
			j.to = j.from
		}
		end := j.to.Time()
		rt.peekTo = edge{}
		// The partial read ends on a half minute (see subSteps) when the
		// feeder splits minutes so, else on a minute: every window,
		// (end-d, end], is exactly as long as declared, its start inside
		// a folded minute whose steps the rollup knows. It reaches at
		// most the shortest window past the folded minutes, so every window
		// still starts in them.
		if !peekEnd.IsZero() && rt.canPeek && j.to >= target {
			pe := edgeOf(peekEnd, rt.subMinute)
			if limit := (edge{m: j.to + rt.plan.shortest()}); pe.after(limit) {
				pe = limit
			}
			if pe.after(edge{m: j.to}) {
				j.peek, end, j.peekTo = true, pe.time(), pe
			}
		}
		// Samples reads (start, end], and minute m holds (m, m+1]: the
		// minutes [from, to) are the samples in (from, to].
		start := j.from.Time().Add(-rt.feeder.lookback())
		if !rt.reviseFrom.IsZero() && rt.reviseFrom.Before(start) {
			start = rt.reviseFrom
		}
		rt.reviseFrom = time.Time{}
		j.readStart = start.UnixMilli()
		for k := range rt.reqs {
			r := &rt.reqs[k]
			r.start, r.end = start, end
			reqs = append(reqs, r)
		}
	}
	fetchCtx, cancel := context.WithTimeout(ctx, e.fetchTimeout(backfill))
	defer cancel()
	e.fetchSamples(fetchCtx, reqs)

	// A fixed set of workers takes the jobs in turn: a goroutine per SLO
	// costs more than folding a minute does. There are Concurrency of
	// them, not one per core, because some feeders wait on queries.
	var (
		unavailable     atomic.Int64
		lastUnavailable atomic.Value
		next            atomic.Int64
		wg              sync.WaitGroup
	)
	for range min(e.opts.Concurrency, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				if err := e.feedJob(fetchCtx, &jobs[i], target); err != nil && jobs[i].rt.sourceDown {
					unavailable.Add(1)
					lastUnavailable.Store(err)
				}
			}
		}()
	}
	wg.Wait()
	if n := unavailable.Load(); n > 0 {
		err, _ := lastUnavailable.Load().(error)
		if e.sourceErr == nil {
			e.logger.Warn("telemetry source unavailable", "failed_slos", n, "err", err)
		}
		e.sourceErr = err
	} else {
		e.sourceErr = nil
	}
}

// foldJob is one SLO's part of fetchAndFold.
type foldJob struct {
	rt        *sloRuntime
	from, to  slo.Minute
	readStart int64 // ms: the samples are of (readStart, to]
	peek      bool
	peekTo    edge // with peek, the partial minutes end here
}

// feedJob feeds and folds what was fetched for one SLO, and reads its
// partial minute. It returns the error that stopped it.
func (e *Engine) feedJob(ctx context.Context, j *foldJob, target slo.Minute) error {
	rt := j.rt
	// A provisional partial minute never outlives the cycle that read
	// it: it is read again, or folded.
	rt.mu.Lock()
	for _, g := range rt.list {
		g.partial = partialCounts{}
	}
	rt.mu.Unlock()
	raw := make([]promqlMatrix, 0, len(rt.reqs))
	var err error
	for k := range rt.reqs {
		r := &rt.reqs[k]
		raw = append(raw, r.result)
		if r.err != nil {
			err = r.err
		}
	}
	// The samples are not needed after this job: let them go.
	defer rt.releaseResults()
	var groups map[string]*groupMinutes
	var commit func()
	revising := j.readStart < minuteMs(j.from)
	if err == nil && (j.from < j.to || revising) {
		groups, commit, err = rt.feeder.feed(ctx, e.opts.Source, raw, j.readStart, j.from, j.to, rt.admit)
	}
	if err != nil {
		rt.lastErr = err
		rt.sourceDown = errors.Is(err, telemetry.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
		e.m.fetchFailures.Inc()
		return err
	}
	rt.lastErr, rt.sourceDown = nil, false
	rt.mu.Lock()
	defer rt.mu.Unlock()
	// Corrections first: they are relative to from, which folding moves.
	rt.revise(j.from, groups)
	if lf, ok := rt.feeder.(interface{ lateDropped() int64 }); ok {
		if n := lf.lateDropped(); n > rt.lateDropped {
			e.m.lateDropped.WithLabelValues(rt.plan.slo.Name()).Add(float64(n - rt.lateDropped))
			rt.lateDropped = n
		}
	}
	if j.from < j.to {
		e.fold(rt, groups, commit, j.from, j.to, target)
	}
	// Only a peek that starts where folding ended counts: folding may
	// have been held back for late data.
	if j.peek && rt.next == j.to {
		rt.peekTo = j.peekTo
		for key, pc := range rt.feeder.(peeker).peek(raw, minuteMs(rt.next), j.peekTo.ms(), rt.known) {
			rt.groups[key].partial = pc
		}
	}
	return nil
}

// fold folds what a feeder produced for [from, to), or its sampled prefix,
// or nothing yet (see foldUntil).
func (e *Engine) fold(rt *sloRuntime, groups map[string]*groupMinutes, commit func(), from, to, target slo.Minute) {
	cut := e.foldUntil(rt, groups, from, to, target)
	if cut == from {
		return // wait for late samples
	}
	if cut < to {
		// Only the sampled prefix is folded; the tail is read again next
		// cycle, when late samples may have arrived.
		for _, g := range groups {
			g.counts, g.sampled = g.counts[:cut-from], g.sampled[:cut-from]
		}
	}
	commit()
	rt.fold(from, cut, groups)
	rt.expireGroups()
	for _, c := range counterOf(rt.feeder) {
		c.expire(to.Time().Add(-groupExpiry).UnixMilli())
	}
}

func (e *Engine) fetchTimeout(backfill bool) time.Duration {
	if backfill {
		return 5 * time.Minute
	}
	return max(e.opts.Interval, 10*time.Second)
}

// foldUntil decides how much of [from, to) to fold now. Minutes at the
// tail of the range (up to the target) without any sample are held back
// for LateData when the SLO had telemetry recently: its samples may be in
// flight (a remote_write backlog after a partition or a restart), and
// folding them later keeps counts and slices exact. Feeders that keep
// per-slice state fold all or nothing; the others may fold the sampled
// prefix and read the tail again. After LateData the gap is folded as
// minutes without data.
func (e *Engine) foldUntil(rt *sloRuntime, groups map[string]*groupMinutes, from, to, target slo.Minute) slo.Minute {
	if to < target {
		return to // not the tail: later minutes exist, nothing to wait for
	}
	last := slo.Minute(-1 << 62) // last sampled minute, in this range or before
	for _, g := range rt.list {
		last = max(last, g.lastSampled)
	}
	lastInRange := slo.Minute(-1 << 62)
	for _, g := range groups {
		for i := len(g.sampled) - 1; i >= 0; i-- {
			if g.sampled[i] {
				lastInRange = max(lastInRange, from+slo.Minute(i))
				break
			}
		}
	}
	last = max(last, lastInRange)
	if last < from-staleMinutes-1 || to-last > slo.Minute(e.opts.LateData/time.Minute) {
		return to // no recent telemetry to wait for, or waited long enough
	}
	if lastInRange >= to-1 {
		return to // the range is sampled to its end
	}
	if !splittable(rt.feeder) || lastInRange < from {
		return from // hold the whole range
	}
	return lastInRange + 1
}

// splittable reports whether a feeder's results may be folded in part:
// feeders that keep time-slice state across calls may not.
func splittable(f feeder) bool {
	switch f.(type) {
	case *ratioFeeder, *sampleFeeder, *rangeRatioFeeder, *errorRatioFeeder:
		return true
	}
	return false
}

func counterOf(f feeder) []*counter {
	switch f := f.(type) {
	case *ratioFeeder:
		return f.counters()
	case *eventSlices:
		return counterOf(f.inner)
	}
	return nil
}

// sloOfKey returns the SLO name of a status key, name{labels}.
func sloOfKey(key string) string {
	name, _, _ := strings.Cut(key, "{")
	return name
}

// readGroup calls f with the runtime and group of status key under the
// locks that keep a reader outside the cycle apart from folding: e.mu,
// then the runtime's mu shared. It reports false, without calling f, when
// this replica does not evaluate the group or it has no rollup
// (composites).
func (e *Engine) readGroup(key string, f func(rt *sloRuntime, g *groupRuntime)) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	rt := e.runtimes[sloOfKey(key)]
	if rt == nil {
		return false
	}
	rt.mu.RLock()
	defer rt.mu.RUnlock()
	for _, g := range rt.list {
		if g.roll != nil && g.statusKey == key {
			f(rt, g)
			return true
		}
	}
	return false
}

// readRollup calls f with the plan and rollup of status key: the live
// rollup (see readGroup), or the one persisted by the replica that
// evaluates the group. what names the caller in errors, which wrap
// ErrUnknownSLO for an unknown key or a composite SLO.
func (e *Engine) readRollup(ctx context.Context, key, what string, f func(p *plan, roll *rollup)) error {
	if e.readGroup(key, func(rt *sloRuntime, g *groupRuntime) { f(rt.plan, g.roll) }) {
		return nil
	}
	e.mu.Lock()
	p := e.plans[sloOfKey(key)]
	e.mu.Unlock()
	if p == nil || p.composite != nil {
		return fmt.Errorf("%s of %q: %w", what, key, ErrUnknownSLO)
	}
	r, err := e.opts.Store.LoadRollup(ctx, key)
	if errors.Is(err, store.ErrNotFound) || err == nil && r.PlanHash != p.hash {
		return fmt.Errorf("%s of %q: %w", what, key, ErrUnknownSLO)
	}
	if err != nil {
		return fmt.Errorf("%s of %q: %w", what, key, err)
	}
	roll, err := unmarshalRollup(r.Data)
	if err != nil {
		return fmt.Errorf("%s of %q: persisted rollup: %w", what, key, err)
	}
	f(p, roll)
	return nil
}

// BadSince returns the start of the current stretch of bad minutes of an
// SLO group: going back minute by minute from the newest one (the partial
// minute, then the folded ones, at most 6h, the minute-resolution tier),
// the first minute of the run whose
// error ratio is above threshold times the budget (threshold 1: burning
// faster than the budget allows). Incidents use it as "first bad minute";
// ok is false when the newest minute is not bad or the key is unknown.
func (e *Engine) BadSince(key string, threshold float64) (since time.Time, ok bool) {
	e.readGroup(key, func(rt *sloRuntime, g *groupRuntime) { since, ok = badSince(rt, g, threshold) })
	return since, ok
}

func badSince(rt *sloRuntime, g *groupRuntime, threshold float64) (time.Time, bool) {
	limit := rt.plan.budget * threshold
	t := &g.roll.tiers[0]
	first := slo.Minute(-1)
	// The newest, unfolded minute counts when its provisional events are
	// bad: pages can fire on it.
	if e, ok := g.partial.counts.ErrorRatio(); ok && e > limit {
		first = g.roll.next
	} else if g.partial.sampled && g.partial.counts.Total > 0 {
		return time.Time{}, false
	}
	for m := g.roll.next - 1; m > g.roll.next-slo.Minute(t.n); m-- {
		w := g.roll.window(m, m+1)
		e, ok := w.counts.ErrorRatio()
		if !ok || e <= limit {
			break
		}
		first = m
	}
	if first < 0 {
		return time.Time{}, false
	}
	return first.Time(), true
}

// parallel calls f for every item on up to n goroutines. They take the
// items in small runs as they go, so one slowed down (by the garbage
// collector, by another process) does not hold up the end.
func parallel[T any](items []T, n int, f func(T)) {
	if n <= 1 || len(items) < 64 {
		for _, it := range items {
			f(it)
		}
		return
	}
	const run = 32
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(run)) - run
				if i >= len(items) {
					return
				}
				for _, it := range items[i:min(i+run, len(items))] {
					f(it)
				}
			}
		}()
	}
	wg.Wait()
}

// HistoryPoint is an SLO group's state at one past time.
type HistoryPoint struct {
	At time.Time `json:"at"`
	// SLI is the good ratio over the SLO window ending at At; nil without
	// events.
	SLI *float64 `json:"sli"`
	// BudgetRemaining is the share of the error budget left at At.
	BudgetRemaining *float64 `json:"budgetRemaining"`
	// ErrorRatio is the error ratio of the step ending at At.
	ErrorRatio *float64 `json:"errorRatio"`
	// Coverage is the share of the step's minutes with telemetry.
	Coverage float64 `json:"coverage"`
}

// ErrUnknownSLO is returned for an SLO or group the engine does not know.
var ErrUnknownSLO = errors.New("unknown SLO")

// History returns an SLO group's SLI, remaining budget and per-step error
// ratio at every step in [from, to], from its rollups (minute precision for
// the last 6h, 5-minute for 3 days, hourly beyond). Composite SLOs have no
// history of their own. A group another replica evaluates is read from the
// rollups it persists, so every replica serves every SLO's history, as of
// the owner's last persist.
func (e *Engine) History(ctx context.Context, key string, from, to time.Time, step time.Duration) ([]HistoryPoint, error) {
	if step < time.Minute {
		step = time.Minute
	}
	if to.Before(from) {
		return nil, fmt.Errorf("history: to %s is before from %s", to, from)
	}
	if n := to.Sub(from) / step; n > 11000 {
		return nil, fmt.Errorf("history: %d points: use a larger step (at most 11000 points)", n)
	}
	var out []HistoryPoint
	err := e.readRollup(ctx, key, "history", func(p *plan, roll *rollup) { out = history(p, roll, from, to, step) })
	return out, err
}

// history computes the points of History from one group's rollup.
func history(p *plan, roll *rollup, from, to time.Time, step time.Duration) []HistoryPoint {
	stepMin := slo.Minute(step / time.Minute)
	var out []HistoryPoint
	for t := slo.CeilMinute(from); t <= slo.MinuteOf(to) && t <= roll.next; t += stepMin {
		hp := HistoryPoint{At: t.Time()}
		var wfrom slo.Minute
		if p.calendar != "" {
			start, _ := slo.CalendarPeriod((t - 1).Time(), p.calendar, p.loc)
			wfrom = slo.CeilMinute(start)
		} else {
			wfrom = t - slo.Minute(p.window/time.Minute)
		}
		w := roll.window(wfrom, t)
		if r, ok := w.counts.Ratio(); ok {
			b := slo.ComputeBudget(w.counts, p.budget)
			vals := []float64{r, b.RemainingRatio}
			hp.SLI, hp.BudgetRemaining = &vals[0], &vals[1]
		}
		sw := roll.window(t-stepMin, t)
		if er, ok := sw.counts.ErrorRatio(); ok {
			hp.ErrorRatio = &er
		}
		if mins := int64(sw.to - sw.from); mins > 0 {
			hp.Coverage = float64(sw.data) / float64(mins)
		}
		out = append(out, hp)
	}
	return out
}

// rollupRecords returns the runtime's rollups as store records.
func (rt *sloRuntime) rollupRecords(now time.Time) []store.Rollup {
	var rs []store.Rollup
	name := rt.plan.slo.Name()
	for _, g := range rt.groups {
		if g.roll == nil {
			continue // composites keep no rollup
		}
		rs = append(rs, store.Rollup{Key: g.statusKey, SLO: name, PlanHash: rt.plan.hash, Data: g.roll.marshal(), LastSampled: int64(g.lastSampled), UpdatedAt: now})
	}
	return rs
}

// NewSnapshot builds a snapshot from statuses, such as those the replicas
// of a cluster published to the store.
func NewSnapshot(at time.Time, statuses []*Status, sourceDown *AlertStatus) *Snapshot {
	snap := &Snapshot{At: at, Statuses: statuses, SourceDown: sourceDown, byKey: make(map[string]*Status, len(statuses)), bySLO: map[string][]*Status{}}
	slices.SortFunc(snap.Statuses, func(a, b *Status) int { return strings.Compare(a.Key, b.Key) })
	for _, st := range snap.Statuses {
		snap.byKey[st.Key] = st
		snap.bySLO[st.SLO] = append(snap.bySLO[st.SLO], st)
	}
	return snap
}
