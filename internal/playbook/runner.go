package playbook

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
)

// Snapshotter returns the engine's latest statuses; *engine.Engine
// implements it. Snapshot is called from the runner's goroutine and must
// not block; the snapshot is not modified.
type Snapshotter interface {
	Snapshot() *engine.Snapshot
}

// Decider decides under the policies whether an action may run; the
// policy engine implements it. Evaluate may be called from several
// goroutines. An error means no decision was made, and the action does
// not run.
type Decider interface {
	Evaluate(ctx context.Context, in policy.Input) (*policy.Decision, error)
}

// Options configure a Runner. Specs, Engine, Store and Policy are
// required.
type Options struct {
	Specs  *spec.Set
	Engine Snapshotter
	// Store keeps the runs, the hysteresis states and the kill switch,
	// and answers the gate evaluations and open incidents the runner
	// reads. The runner's state is the store's tables, so that a restart
	// or a second replica continues where the first stopped; tests use a
	// real SQLite store.
	Store  *store.Store
	Policy Decider
	// Notifier sends notify actions; default LogNotifier.
	Notifier Notifier
	// Allowlist holds the URL prefixes webhooks may call; empty refuses
	// every webhook.
	Allowlist []string
	// Exec allows exec actions.
	Exec bool
	// KillSwitch forces the kill switch on (the server config); the API
	// cannot turn it off.
	KillSwitch bool
	// Secrets resolves {{ secret "NAME" }}.
	Secrets Secrets
	// ExternalURL is how users reach QSP, for RunURL in templates.
	ExternalURL string
	// Transport sends webhooks; default a transport without proxy.
	Transport http.RoundTripper
	// Interval between cycles (triggers, due runs). Default 5s; the
	// runner also wakes on transitions and approvals.
	Interval time.Duration
	// RetryBase is the wait before the first retry of an action; each
	// further retry waits twice as long, at most RetryMax. Defaults 5s and
	// 5m.
	RetryBase time.Duration
	RetryMax  time.Duration
	// SettleWindow is how far back reversals of an actuator are counted,
	// and the longest a settling wait gets. Default 24h.
	SettleWindow time.Duration
	// Lease is how long a claim on a run lasts beyond the action's
	// timeout; a runner that dies mid-run leaves it to another after.
	// Default 1m.
	Lease time.Duration
	// MaxParallel bounds the runs executing at once. Default 4.
	MaxParallel int
	// Owner names this runner in claims; default random.
	Owner      string
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
}

// Runner runs playbooks: it turns triggers into runs, takes each run
// through the guards, policies and approval, and executes the admitted
// ones. Its methods are safe for concurrent use; Run owns the loop.
type Runner struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	store   *store.Store
	allow   *Allowlist
	client  *http.Client
	now     func() time.Time
	set     atomic.Pointer[spec.Set]
	// problems are what keeps each playbook of a set from running, worked
	// out when the set is loaded (checkSpecs): they depend on the specs
	// and the server config only.
	checked atomic.Pointer[setProblems]

	queue chan engine.Transition
	wake  chan struct{}

	armsMu sync.Mutex
	arms   map[string]*arm
	// armsLoaded is set once the stored hysteresis states are read.
	armsLoaded bool
	// armsGone names playbooks whose stored hysteresis states a reload
	// made stale (the playbook or its burn-rate trigger is gone).
	armsGone []string

	// The fields below belong to the cycle's goroutine.
	schedLast map[string]time.Time
	seen      map[string]time.Time

	// Executions: the claimed runs in flight, their goroutines, and the
	// context that ends them.
	execMu   sync.Mutex
	inflight map[string]bool
	execWG   sync.WaitGroup
	execCtx  context.Context
	stopExec context.CancelFunc
}

// Errors of the runner's API.
var (
	// ErrNotFound: no run with that ID.
	ErrNotFound = errors.New("playbook run not found")
	// ErrNotPending: the run does not wait for an approval (any more).
	ErrNotPending = errors.New("playbook run is not pending approval")
	// ErrInvalid: the request is malformed (no approver named).
	ErrInvalid = errors.New("invalid playbook request")
	// ErrKillSwitchForced: the server config holds the kill switch on.
	ErrKillSwitchForced = errors.New("the kill switch is on in the server config (playbooks.killSwitch)")
)

// New checks the options and builds a Runner.
func New(opts Options) (*Runner, error) {
	switch {
	case opts.Specs == nil:
		return nil, errors.New("playbook runner: no specs")
	case opts.Engine == nil:
		return nil, errors.New("playbook runner: no engine")
	case opts.Store == nil:
		return nil, errors.New("playbook runner: no store")
	case opts.Policy == nil:
		return nil, errors.New("playbook runner: no policy engine")
	}
	allow, err := NewAllowlist(opts.Allowlist)
	if err != nil {
		return nil, fmt.Errorf("playbook runner: %w", err)
	}
	opts.Interval = cmp.Or(opts.Interval, 5*time.Second)
	opts.RetryBase = cmp.Or(opts.RetryBase, 5*time.Second)
	opts.RetryMax = cmp.Or(opts.RetryMax, 5*time.Minute)
	opts.SettleWindow = cmp.Or(opts.SettleWindow, 24*time.Hour)
	opts.Lease = cmp.Or(opts.Lease, time.Minute)
	opts.MaxParallel = cmp.Or(opts.MaxParallel, 4)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Notifier == nil {
		opts.Notifier = LogNotifier(opts.Logger)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Owner == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		opts.Owner = hex.EncodeToString(b[:])
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("playbook runner: %w", err)
	}
	r := &Runner{
		opts: opts, log: opts.Logger.With("component", "playbook"), metrics: m, store: opts.Store, allow: allow,
		now: opts.Now, queue: make(chan engine.Transition, 4096), wake: make(chan struct{}, 1),
		arms: map[string]*arm{}, schedLast: map[string]time.Time{}, seen: map[string]time.Time{}, inflight: map[string]bool{},
	}
	r.execCtx, r.stopExec = context.WithCancel(context.Background())
	transport := opts.Transport
	if transport == nil {
		// No proxy from the environment: the allowlist names the hosts
		// QSP talks to, and a proxy would be another.
		transport = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConns:        16,
			IdleConnTimeout:     90 * time.Second,
		}
	}
	r.client = &http.Client{Transport: transport, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("more than %d redirects", maxRedirects)
		}
		if _, err := r.allow.Check(req.URL.String()); err != nil {
			return fmt.Errorf("redirect refused: %w", err)
		}
		return nil
	}}
	r.set.Store(opts.Specs)
	r.checkSpecs(opts.Specs)
	m.killSwitch.Set(boolGauge(opts.KillSwitch))
	return r, nil
}

// setProblems are the problems of the playbooks of one spec set.
type setProblems struct {
	set        *spec.Set
	byPlaybook map[string][]string
}

// checkSpecs works out and logs what keeps each playbook of set from ever
// running.
func (r *Runner) checkSpecs(set *spec.Set) {
	ps := &setProblems{set: set, byPlaybook: map[string][]string{}}
	for _, pb := range set.Playbooks {
		ps.byPlaybook[pb.Name()] = r.problems(pb)
		for _, p := range ps.byPlaybook[pb.Name()] {
			r.log.Warn("playbook cannot run as written", "playbook", pb.Name(), "problem", p)
		}
	}
	r.checked.Store(ps)
}

// Reload replaces the spec set. Runs already triggered keep the plan
// they were triggered with; hysteresis states of changed burn-rate
// triggers start afresh.
func (r *Runner) Reload(set *spec.Set) {
	r.set.Store(set)
	r.checkSpecs(set)
	r.armsMu.Lock()
	gone := map[string]bool{}
	for k, a := range r.arms {
		if pb := set.Playbook(a.Playbook); pb == nil || pb.Spec.Trigger.BurnRate == nil {
			delete(r.arms, k)
			gone[a.Playbook] = true
		}
	}
	for p := range gone {
		r.armsGone = append(r.armsGone, p)
	}
	r.armsMu.Unlock()
	r.signal()
}

// OnTransitions queues the engine's alert transitions for the runner's
// next cycle and wakes it. It never blocks: when the queue is full the
// transitions are dropped, and the next cycle's reconciliation with the
// engine's snapshot finds the alerts' states anyway.
func (r *Runner) OnTransitions(_ context.Context, ts []engine.Transition) {
	for _, t := range ts {
		select {
		case r.queue <- t:
		default:
			r.metrics.dropped.Inc()
		}
	}
	r.signal()
}

// Wake makes the runner run a cycle soon: something that may trigger a
// playbook happened (a gate evaluation failed). It never blocks.
func (r *Runner) Wake() { r.signal() }

func (r *Runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run runs cycles every Interval (and when woken) until ctx ends; then it
// waits for the executions in flight, which ctx's end interrupts (an
// interrupted action is retried, with the same idempotency key, by the
// next runner).
func (r *Runner) Run(ctx context.Context) error {
	defer func() {
		r.stopExec()
		r.execWG.Wait()
	}()
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		r.cycle(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-r.wake:
		}
	}
}

// Close interrupts executions in flight and waits for them; for a runner
// whose Run never started or has returned.
func (r *Runner) Close() {
	r.stopExec()
	r.execWG.Wait()
}

// cycle collects the triggers, admits their runs, saves the hysteresis
// states, and starts the due runs.
func (r *Runner) cycle(ctx context.Context) {
	start := time.Now()
	now := r.now()
	set := r.set.Load()
	ok := true
	if err := r.loadArms(ctx); err != nil {
		r.log.Error("load hysteresis states", "err", err)
		ok = false
	} else {
		for _, ev := range r.collect(ctx, set, now) {
			until, err := r.admit(ctx, set, ev, now)
			if err != nil {
				r.log.Error("admit playbook run", "playbook", ev.pb.Name(), "key", ev.key, "err", err)
				ok = false
			}
			if !until.IsZero() {
				r.holdArm(ev, until)
			}
		}
		r.armsMu.Lock()
		gone := r.armsGone
		r.armsGone = nil
		r.armsMu.Unlock()
		for _, p := range gone {
			if err := r.store.DeletePlaybookArms(ctx, p); err != nil {
				r.log.Warn("delete stale hysteresis states", "playbook", p, "err", err)
			}
		}
		if arms := r.dirtyArms(now); len(arms) > 0 {
			if err := r.store.SavePlaybookArms(ctx, arms); err != nil {
				r.log.Error("save hysteresis states", "err", err)
				r.markArmsDirty(arms)
				ok = false
			}
		}
	}
	if err := r.dispatch(ctx, now); err != nil {
		r.log.Error("start due playbook runs", "err", err)
		ok = false
	}
	r.pruneSeen(now)
	r.metrics.cycles.WithLabelValues(resultLabel(ok)).Inc()
	r.metrics.cycleDuration.Observe(time.Since(start).Seconds())
	if ok {
		r.metrics.lastSuccess.Set(float64(now.UnixMilli()) / 1000)
	}
}

func resultLabel(ok bool) string {
	if ok {
		return "success"
	}
	return "failure"
}

// loadArms reads the stored hysteresis states once.
func (r *Runner) loadArms(ctx context.Context) error {
	r.armsMu.Lock()
	loaded := r.armsLoaded
	r.armsMu.Unlock()
	if loaded {
		return nil
	}
	stored, err := r.store.PlaybookArms(ctx)
	if err != nil {
		return err
	}
	set := r.set.Load()
	r.armsMu.Lock()
	defer r.armsMu.Unlock()
	for _, a := range stored {
		pb := set.Playbook(a.Playbook)
		if pb == nil || pb.Spec.Trigger.BurnRate == nil {
			continue
		}
		r.arms[armKey(a.Playbook, a.Key)] = &arm{PlaybookArm: a, sig: burnSig(pb.Spec.Trigger)}
	}
	r.armsLoaded = true
	return nil
}

func (r *Runner) markArmsDirty(arms []store.PlaybookArm) {
	r.armsMu.Lock()
	defer r.armsMu.Unlock()
	for _, a := range arms {
		if x := r.arms[armKey(a.Playbook, a.Key)]; x != nil {
			x.dirty = true
		}
	}
}

// collect returns this cycle's trigger events, deduped in memory.
func (r *Runner) collect(ctx context.Context, set *spec.Set, now time.Time) []event {
	var evs []event
	for drained := false; !drained; {
		select {
		case t := <-r.queue:
			evs = append(evs, transitionEvents(set, t)...)
		default:
			drained = true
		}
	}
	snap := r.opts.Engine.Snapshot()
	if snap != nil {
		evs = append(evs, snapshotEvents(set, snap)...)
		evs = append(evs, r.burnEvents(set, snap)...)
	}
	evs = append(evs, r.gateEvents(ctx, set, now)...)
	evs = append(evs, r.scheduleEvents(set, now)...)
	out := evs[:0]
	for _, ev := range evs {
		if _, dup := r.seen[ev.key]; dup {
			r.seen[ev.key] = now
			continue
		}
		out = append(out, ev)
	}
	return out
}

// seenTTL is how long an idempotency key stays in memory after it was
// last seen; the store's unique key dedupes beyond it.
const seenTTL = time.Hour

func (r *Runner) pruneSeen(now time.Time) {
	for k, t := range r.seen {
		if now.Sub(t) > seenTTL {
			delete(r.seen, k)
		}
	}
}

// dispatch claims the due runs and executes each in its own goroutine,
// at most MaxParallel at once.
func (r *Runner) dispatch(ctx context.Context, now time.Time) error {
	r.execMu.Lock()
	busy := len(r.inflight)
	r.execMu.Unlock()
	room := r.opts.MaxParallel - busy
	if room <= 0 {
		return nil
	}
	// Runs in flight hold a lease and are not due; one whose attempt
	// outlasted its lease is skipped below rather than run twice here.
	ids, err := r.store.DuePlaybookRuns(ctx, now, room+busy)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if room <= 0 {
			break
		}
		r.execMu.Lock()
		busy := r.inflight[id]
		r.execMu.Unlock()
		if busy {
			continue
		}
		row, err := r.store.ClaimPlaybookRun(ctx, id, r.opts.Owner, now, now.Add(r.opts.Lease))
		if errors.Is(err, store.ErrConflict) {
			continue // another runner was first
		}
		if err != nil {
			return err
		}
		room--
		r.execMu.Lock()
		r.inflight[id] = true
		r.execMu.Unlock()
		r.execWG.Add(1)
		go func() {
			defer r.execWG.Done()
			defer func() {
				r.execMu.Lock()
				delete(r.inflight, id)
				r.execMu.Unlock()
			}()
			if err := r.execute(r.execCtx, row); err != nil {
				r.log.Error("execute playbook run", "run", id, "err", err)
			}
		}()
	}
	return nil
}

// wait waits until the executions in flight end; for tests that step
// cycles.
func (r *Runner) wait() { r.execWG.Wait() }

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
