package gate

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/ids"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// Snapshotter is the engine as the budget check and the policy stage see
// it; *engine.Engine implements it. Both methods are safe for concurrent
// use.
type Snapshotter interface {
	// Snapshot returns the statuses of every SLO after the last cycle.
	Snapshot() *engine.Snapshot
	// Ready reports whether the start-up backfill is done; before it,
	// budgets are not known and the budget check is an error.
	Ready() bool
}

// Decider decides under the policies; *policy.Engine implements it. It is
// called from many evaluations at once. An error means no decision and is
// never an allow.
type Decider interface {
	Evaluate(ctx context.Context, in policy.Input) (*policy.Decision, error)
}

// TraceFinder finds example traces among the exemplars of the series a
// query selects in [start, end], newest first; *tracelink.Finder
// implements it. It must be safe for concurrent use.
type TraceFinder interface {
	ForQuery(ctx context.Context, query, exclude string, keep func(float64) bool, start, end time.Time) ([]tracelink.Example, error)
}

// Querier evaluates the canary metrics' PromQL; telemetry.Source (the
// embedded TSDB or a remote Prometheus) implements it. It is safe for
// concurrent use and honours ctx.
type Querier interface {
	Instant(ctx context.Context, query string, ts time.Time) (promql.Vector, error)
	Range(ctx context.Context, query string, start, end time.Time, step time.Duration) (promql.Matrix, error)
}

// EvaluationStore keeps evaluations; *store.Store implements it. Save
// replaces the stored evaluation with the same ID. It is safe for
// concurrent use.
type EvaluationStore interface {
	SaveGateEvaluation(ctx context.Context, e store.GateEvaluation) error
	GateEvaluation(ctx context.Context, id string) (store.GateEvaluation, error)
	GateEvaluations(ctx context.Context, f store.GateEvaluationFilter) ([]store.GateEvaluation, int, error)
}

// FirstSeenStore remembers when each vulnerability finding was first
// seen; *store.Store implements it. FirstSeenAll returns the first-seen
// time of every key, recording now for new keys; it must be durable and
// safe for concurrent use.
type FirstSeenStore interface {
	FirstSeenAll(ctx context.Context, keys []string, now time.Time) (map[string]time.Time, error)
}

// DeployRecorder writes deploy markers; *store.Store implements it. A
// marker with the key of a stored one updates it.
type DeployRecorder interface {
	RecordDeploy(ctx context.Context, d store.Deploy) error
}

// LastDeployFunc returns the service's last deploy before now with the
// budget each of its SLOs consumed after it, or nil when there is none.
// It is safe for concurrent use.
type LastDeployFunc func(ctx context.Context, service string, now time.Time) (*engine.DeployReport, error)

// Errors of Start, Evaluate and the look-ups, for callers to map (the API
// to status codes, the CLI to exit codes).
var (
	// ErrUnknownGate: no gate of that name in the spec.
	ErrUnknownGate = errors.New("unknown gate")
	// ErrInvalidRequest: the request cannot be evaluated as given.
	ErrInvalidRequest = errors.New("invalid gate request")
	// ErrBusy: too many evaluations are running.
	ErrBusy = errors.New("too many gate evaluations running")
	// ErrNotFound: no evaluation with that ID.
	ErrNotFound = errors.New("gate evaluation not found")
)

// Options configure a Runner. Specs, Engine, Policy, Evaluations,
// FirstSeen and Deploys are required.
type Options struct {
	Specs       *spec.Set
	Engine      Snapshotter
	Policy      Decider
	Evaluations EvaluationStore
	FirstSeen   FirstSeenStore
	Deploys     DeployRecorder
	// LastDeploy, when set, lets the budget check cite the impact of the
	// service's last deploy.
	LastDeploy LastDeployFunc
	// Source answers the canary metrics' queries; without one, a canary
	// without JSON samples is an error.
	Source Querier
	// Traces, if set, lists example traces of the failed canary metrics
	// in the verdict.
	Traces TraceFinder
	// ReadFile reads the report paths of spec.security.reports that a
	// request did not upload. Default os.ReadFile (paths relative to the
	// working directory).
	ReadFile func(name string) ([]byte, error)
	// QueryTimeout bounds each canary query. Default 30s.
	QueryTimeout time.Duration
	// Timeout bounds the work of one evaluation besides the canary's
	// waits. Default 5m.
	Timeout time.Duration
	// MaxRunning bounds the evaluations Start runs at once. Default 32.
	MaxRunning int
	// MaxListedFindings bounds the findings an evaluation lists (all are
	// counted and judged). Default 500.
	MaxListedFindings int
	Logger            *slog.Logger
	Registerer        prometheus.Registerer
	Now               func() time.Time
	// Sleep waits d or until ctx ends, for the canary's intervals.
	// Default a timer; tests advance a fake clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// Exclusive says this Runner is the only one using the store (SQLite):
	// at start, every evaluation still running in the store was
	// interrupted. Runners sharing a store (PostgreSQL replicas) only
	// finish evaluations past their deadline.
	Exclusive bool
}

// Runner evaluates gates. Start, Evaluate and the look-ups are safe for
// concurrent use. Background evaluations (Start) belong to the Runner:
// Run stops them when its context ends and waits until they are
// recorded.
type Runner struct {
	opts    Options
	logger  *slog.Logger
	metrics *metrics
	set     atomic.Pointer[spec.Set]

	// base is the context of background evaluations, cancelled by Run's
	// end or Close.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	// live holds the latest JSON of running evaluations and of the
	// recently finished ones (recent, oldest first), so polls do not hit
	// the store and a result survives a failed final write.
	live   map[string]*liveEval
	recent []string
	// closed is set by Close; no background evaluation starts after it.
	closed bool
	// onFinish are the listeners of finished evaluations.
	onFinish []func(ctx context.Context, ev *Evaluation)
}

// OnFinish adds a listener of finished evaluations, e.g. the playbooks
// whose trigger is a gate. It is called once per evaluation, after the
// verdict is recorded, from the goroutine that ran the evaluation, with a
// copy of the evaluation; it must not block. Evaluations interrupted by a
// restart are not reported.
func (r *Runner) OnFinish(f func(ctx context.Context, ev *Evaluation)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onFinish = append(r.onFinish, f)
}

type liveEval struct {
	data []byte
	done chan struct{}
}

// maxRecent is how many finished evaluations stay in memory.
const maxRecent = 256

// New checks the options and builds a Runner.
func New(opts Options) (*Runner, error) {
	switch {
	case opts.Specs == nil:
		return nil, errors.New("gate runner: no specs")
	case opts.Engine == nil:
		return nil, errors.New("gate runner: no engine")
	case opts.Policy == nil:
		return nil, errors.New("gate runner: no policy engine")
	case opts.Evaluations == nil:
		return nil, errors.New("gate runner: no evaluation store")
	case opts.FirstSeen == nil:
		return nil, errors.New("gate runner: no first-seen store")
	case opts.Deploys == nil:
		return nil, errors.New("gate runner: no deploy recorder")
	}
	if opts.ReadFile == nil {
		opts.ReadFile = os.ReadFile
	}
	opts.QueryTimeout = cmp.Or(opts.QueryTimeout, 30*time.Second)
	opts.Timeout = cmp.Or(opts.Timeout, 5*time.Minute)
	opts.MaxRunning = cmp.Or(opts.MaxRunning, 32)
	opts.MaxListedFindings = cmp.Or(opts.MaxListedFindings, 500)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sleep == nil {
		opts.Sleep = sleep
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("gate runner: %w", err)
	}
	r := &Runner{opts: opts, logger: opts.Logger.With("component", "gate"), metrics: m, live: map[string]*liveEval{}}
	r.set.Store(opts.Specs)
	r.base, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// now is the runner's clock at the store's resolution (milliseconds),
// so that an evaluation's times and first-seen times read back equal.
func (r *Runner) now() time.Time { return r.opts.Now().UTC().Truncate(time.Millisecond) }

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Reload makes set the spec set of evaluations started from now on;
// running ones finish on the set they started with.
func (r *Runner) Reload(set *spec.Set) {
	if set != nil {
		r.set.Store(set)
	}
}

// Gates returns the gates of the current spec set.
func (r *Runner) Gates() []*spec.Gate { return r.set.Load().Gates }

// Gate returns the gate named name, or nil.
func (r *Runner) Gate(name string) *spec.Gate { return r.set.Load().Gate(name) }

// Background reports whether evaluating gate name with req waits for
// canary intervals, so that a server should run it in the background
// (Start) and answer at once. ErrUnknownGate for an unknown gate.
func (r *Runner) Background(name string, req Request) (bool, error) {
	g := r.Gate(name)
	if g == nil {
		return false, fmt.Errorf("gate %q: %w", name, ErrUnknownGate)
	}
	c := g.Spec.Canary
	return c != nil && req.Samples == nil && c.Interval > 0, nil
}

// Run finishes as interrupted the evaluations a stopped process left
// running (at start when Exclusive, else once past their deadline, checked
// every minute), then waits until ctx ends, stops the background
// evaluations and waits until they are recorded.
func (r *Runner) Run(ctx context.Context) error {
	r.recoverInterrupted(ctx, r.opts.Exclusive)
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Close()
			return nil
		case <-t.C:
			r.recoverInterrupted(ctx, false)
		}
	}
}

// Close stops the background evaluations and waits until they are
// recorded (as errors: "stopped"). Safe to call more than once.
func (r *Runner) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// recoverGrace is how long past its deadline an evaluation another
// process runs may take to record its result.
const recoverGrace = time.Minute

// recoverInterrupted finishes stored evaluations still running that this
// Runner does not run: all of them when all is set (nobody else runs
// any), else those past their deadline, which no process still runs.
func (r *Runner) recoverInterrupted(ctx context.Context, all bool) {
	stored, _, err := r.opts.Evaluations.GateEvaluations(ctx, store.GateEvaluationFilter{State: string(StateRunning), Limit: 10000})
	if err != nil {
		r.logger.Error("list interrupted evaluations", "err", err)
		return
	}
	for _, s := range stored {
		r.mu.Lock()
		_, mine := r.live[s.ID]
		r.mu.Unlock()
		if mine {
			continue
		}
		var ev Evaluation
		if err := json.Unmarshal(s.Data, &ev); err != nil {
			r.logger.Error("decode interrupted evaluation", "id", s.ID, "err", err)
			continue
		}
		deadline := ev.Deadline
		if deadline.IsZero() {
			deadline = ev.CreatedAt.Add(r.opts.Timeout)
		}
		if !all && r.now().Before(deadline.Add(recoverGrace)) {
			continue
		}
		ev.State = StateError
		ev.Reasons = append(ev.Reasons, Reason{Check: CheckGate, Level: LevelError,
			Message: "interrupted: qsp stopped while the evaluation was running; evaluate the gate again"})
		ev.FinishedAt = r.now()
		ev.UpdatedAt = ev.FinishedAt
		ev.Progress.Stage = stageDone
		ev.summarize()
		// The marker first: an evaluation seen finished has its marker.
		if err := recordDeploy(ctx, r.opts.Deploys, &ev); err != nil {
			r.logger.Error("record deploy", "id", s.ID, "err", err)
		}
		if err := r.save(ctx, &ev); err != nil {
			r.logger.Error("finish interrupted evaluation", "id", s.ID, "err", err)
			continue
		}
		r.logger.Warn("evaluation interrupted by a restart", "id", s.ID, "gate", ev.Gate)
	}
}

// Evaluate runs one evaluation of gate name to its verdict, in the
// calling goroutine. The error reports an unknown gate, an invalid request
// or a store that cannot record the start; everything that goes wrong
// during the evaluation is in its state (error) and reasons.
func (r *Runner) Evaluate(ctx context.Context, name string, req Request) (*Evaluation, error) {
	x, err := r.prepare(name, req)
	if err != nil {
		return nil, err
	}
	if err := r.begin(ctx, x); err != nil {
		return nil, err
	}
	r.execute(ctx, x)
	return x.ev, nil
}

// Start begins an evaluation of gate name in the background and returns
// it as it starts (state running). Poll it with Evaluation or wait for it
// with Wait.
func (r *Runner) Start(ctx context.Context, name string, req Request) (*Evaluation, error) {
	x, err := r.prepare(name, req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	running := 0
	for _, l := range r.live {
		select {
		case <-l.done:
		default:
			running++
		}
	}
	r.mu.Unlock()
	if running >= r.opts.MaxRunning {
		return nil, fmt.Errorf("%w: %d, the limit", ErrBusy, running)
	}
	// Count the evaluation in before Close can start waiting.
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.New("gate runner: stopped")
	}
	r.wg.Add(1)
	r.mu.Unlock()
	if err := r.begin(ctx, x); err != nil {
		r.wg.Done()
		return nil, err
	}
	first := x.snapshot()
	go func() {
		defer r.wg.Done()
		r.execute(r.base, x)
	}()
	return first, nil
}

// Wait waits until evaluation id is done or ctx ends, and returns its
// latest state.
func (r *Runner) Wait(ctx context.Context, id string) (*Evaluation, error) {
	r.mu.Lock()
	l := r.live[id]
	r.mu.Unlock()
	if l != nil {
		select {
		case <-l.done:
		case <-ctx.Done():
		}
	}
	return r.Evaluation(ctx, id)
}

// Evaluation returns evaluation id: its latest state while it runs, else
// the stored one. ErrNotFound when there is none.
func (r *Runner) Evaluation(ctx context.Context, id string) (*Evaluation, error) {
	r.mu.Lock()
	l := r.live[id]
	var data []byte
	if l != nil {
		data = l.data
	}
	r.mu.Unlock()
	if data == nil {
		s, err := r.opts.Evaluations.GateEvaluation(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("evaluation %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		data = s.Data
	}
	var ev Evaluation
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, fmt.Errorf("evaluation %s: decode: %w", id, err)
	}
	return &ev, nil
}

// Filter selects evaluations for Evaluations.
type Filter struct {
	Gate, Service string
	State         State
	From, To      time.Time
	Limit, Offset int
}

// Evaluations returns the stored evaluations matching f, newest first, and
// how many match. Running evaluations are returned in their latest state.
func (r *Runner) Evaluations(ctx context.Context, f Filter) ([]*Evaluation, int, error) {
	stored, total, err := r.opts.Evaluations.GateEvaluations(ctx, store.GateEvaluationFilter{
		Gate: f.Gate, Service: f.Service, State: string(f.State), From: f.From, To: f.To, Limit: f.Limit, Offset: f.Offset,
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]*Evaluation, 0, len(stored))
	for _, s := range stored {
		data := s.Data
		r.mu.Lock()
		if l := r.live[s.ID]; l != nil {
			data = l.data
		}
		r.mu.Unlock()
		var ev Evaluation
		if err := json.Unmarshal(data, &ev); err != nil {
			return nil, 0, fmt.Errorf("evaluation %s: decode: %w", s.ID, err)
		}
		out = append(out, &ev)
	}
	return out, total, nil
}

// run is one evaluation in progress. Only the goroutine executing it
// touches it; others see the JSON it publishes.
type run struct {
	r      *Runner
	set    *spec.Set
	gate   *spec.Gate
	req    Request
	ev     *Evaluation
	stages []stage
	// stopped is set when a stage failed or decided early; the stages
	// after it, but record, are skipped.
	stopped bool
	// checks are the facts for the policies, filled by the check stages.
	checks policy.Checks
}

// prepare validates the request and builds the evaluation and its
// pipeline.
func (r *Runner) prepare(name string, req Request) (*run, error) {
	set := r.set.Load()
	g := set.Gate(name)
	if g == nil {
		return nil, fmt.Errorf("gate %q: %w", name, ErrUnknownGate)
	}
	if err := validateRequest(g, &req); err != nil {
		return nil, err
	}
	now := r.now()
	x := &run{r: r, set: set, gate: g, req: req}
	x.ev = &Evaluation{
		ID: ids.New(now), Gate: g.Name(), Service: g.Spec.Service, State: StateRunning, Change: req.Change,
		CreatedAt: now, UpdatedAt: now, Reasons: []Reason{},
	}
	if g.Spec.Budget != nil {
		x.stages = append(x.stages, budgetStage{})
	}
	if g.Spec.Security != nil {
		x.stages = append(x.stages, securityStage{})
	}
	if g.Spec.Canary != nil {
		x.stages = append(x.stages, canaryStage{})
	}
	x.stages = append(x.stages, policyStage{}, recordStage{})
	x.ev.Progress.Stage = x.stages[0].name()
	x.ev.Deadline = now.Add(r.opts.Timeout + x.waitBudget())
	return x, nil
}

// validateRequest checks req against gate g and applies defaults.
func validateRequest(g *spec.Gate, req *Request) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	c := &req.Change
	if c.Kind == "" {
		c.Kind = policy.ChangeFeature
	}
	if !slices.Contains(policy.ChangeKinds, c.Kind) {
		return bad("change kind %q is not one of %v", c.Kind, policy.ChangeKinds)
	}
	if c.Category != "" && !slices.Contains(spec.Categories, c.Category) {
		return bad("change category %q is not one of %v", c.Category, spec.Categories)
	}
	if c.Kind == policy.ChangeMitigation && c.Category == "" {
		return bad("a mitigation needs the category it mitigates (quality, security or performance)")
	}
	if req.Runs < 0 {
		return bad("runs %d must not be negative", req.Runs)
	}
	if req.Runs > 0 && g.Spec.Canary == nil {
		return bad("gate %s has no canary check: runs does not apply", g.Name())
	}
	if req.Runs > 1 && g.Spec.Canary.Interval == 0 {
		return bad("runs %d needs spec.canary.interval in gate %s (one-shot analyses have one run)", req.Runs, g.Name())
	}
	if req.Samples != nil && g.Spec.Canary == nil {
		return bad("gate %s has no canary check: samples do not apply", g.Name())
	}
	if len(req.Reports) > 0 && g.Spec.Security == nil {
		return bad("gate %s has no security check: reports do not apply", g.Name())
	}
	seen := map[string]bool{}
	for i, rep := range req.Reports {
		switch {
		case rep.Name == "":
			return bad("reports[%d]: no name", i)
		case seen[rep.Name]:
			return bad("reports[%d]: report %q uploaded twice", i, rep.Name)
		}
		seen[rep.Name] = true
	}
	return nil
}

// begin records the start: the evaluation (running) and its deploy
// marker.
func (r *Runner) begin(ctx context.Context, x *run) error {
	x.ev.summarize()
	data, err := json.Marshal(x.ev)
	if err != nil {
		return fmt.Errorf("encode evaluation: %w", err)
	}
	if err := r.opts.Evaluations.SaveGateEvaluation(ctx, storedEvaluation(x.ev, data)); err != nil {
		return fmt.Errorf("start evaluation: %w", err)
	}
	if err := recordDeploy(ctx, r.opts.Deploys, x.ev); err != nil {
		return fmt.Errorf("start evaluation: %w", err)
	}
	r.mu.Lock()
	r.live[x.ev.ID] = &liveEval{data: data, done: make(chan struct{})}
	r.mu.Unlock()
	r.metrics.running.Inc()
	r.logger.Info("evaluation started", "id", x.ev.ID, "gate", x.ev.Gate, "service", x.ev.Service,
		"kind", x.ev.Change.Kind, "version", x.ev.Change.Version)
	return nil
}

// execute runs the pipeline. A failing stage stops it; record always
// runs, on a context that outlives a cancelled evaluation so that the
// cancellation itself is recorded.
func (r *Runner) execute(ctx context.Context, x *run) {
	start := time.Now()
	// The deadline on the wall clock, whatever Options.Now says.
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout+x.waitBudget())
	defer cancel()
	for _, st := range x.stages {
		name := st.name()
		if name == stageRecord {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			_ = st.exec(rctx, x) // record reports its own failures in the evaluation
			rcancel()
			break
		}
		if x.stopped {
			continue
		}
		x.ev.Progress.Stage = name
		x.publish(ctx)
		if err := st.exec(ctx, x); err != nil {
			if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
				err = fmt.Errorf("%w (%v)", err, context.Cause(ctx))
			}
			x.addError(name, err)
			r.metrics.stageErrors.WithLabelValues(name).Inc()
		}
	}
	r.metrics.running.Dec()
	r.metrics.evaluations.WithLabelValues(string(x.ev.State)).Inc()
	r.metrics.duration.Observe(time.Since(start).Seconds())
	r.mu.Lock()
	if l := r.live[x.ev.ID]; l != nil {
		close(l.done)
	}
	r.recent = append(r.recent, x.ev.ID)
	if len(r.recent) > maxRecent {
		delete(r.live, r.recent[0])
		r.recent = r.recent[1:]
	}
	listeners := slices.Clone(r.onFinish)
	r.mu.Unlock()
	for _, f := range listeners {
		f(context.WithoutCancel(ctx), x.snapshot())
	}
	r.logger.Info("evaluation done", "id", x.ev.ID, "gate", x.ev.Gate, "state", x.ev.State, "summary", x.ev.Summary)
}

// waitBudget is how long the canary may wait for its intervals.
func (x *run) waitBudget() time.Duration {
	c := x.gate.Spec.Canary
	if c == nil || x.req.Samples != nil || c.Interval == 0 {
		return 0
	}
	return time.Duration(x.plannedRuns()) * c.Interval.D()
}

// addError records err as the reason stage could not complete, and stops
// the pipeline.
func (x *run) addError(stage string, err error) {
	x.ev.Reasons = append(x.ev.Reasons, Reason{Check: stage, Level: LevelError, Message: err.Error()})
	x.stopped = true
}

// addReason appends a reason.
func (x *run) addReason(check, level, source, msg string) {
	x.ev.Reasons = append(x.ev.Reasons, Reason{Check: check, Level: level, Source: source, Message: msg})
}

// snapshot returns a deep copy of the evaluation.
func (x *run) snapshot() *Evaluation {
	data, err := json.Marshal(x.ev)
	if err != nil {
		c := *x.ev
		return &c
	}
	var ev Evaluation
	_ = json.Unmarshal(data, &ev)
	return &ev
}

// publish makes the evaluation's progress visible to polls and stores it.
// A failed store write is logged: the result is written again at the
// end, and polls are answered from memory.
func (x *run) publish(ctx context.Context) {
	x.ev.UpdatedAt = x.r.now()
	x.ev.summarize()
	if err := x.r.save(ctx, x.ev); err != nil {
		x.r.logger.Warn("store evaluation progress", "id", x.ev.ID, "err", err)
	}
}

// save writes ev to memory (when live) and the store.
func (r *Runner) save(ctx context.Context, ev *Evaluation) error {
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode evaluation %s: %w", ev.ID, err)
	}
	r.mu.Lock()
	if l := r.live[ev.ID]; l != nil {
		l.data = data
	}
	r.mu.Unlock()
	return r.opts.Evaluations.SaveGateEvaluation(ctx, storedEvaluation(ev, data))
}

func storedEvaluation(ev *Evaluation, data []byte) store.GateEvaluation {
	s := store.GateEvaluation{
		ID: ev.ID, Gate: ev.Gate, Service: ev.Service, State: string(ev.State), ChangeKind: ev.Change.Kind,
		Version: ev.Change.Version, CreatedAt: ev.CreatedAt, UpdatedAt: ev.UpdatedAt, FinishedAt: ev.FinishedAt, Data: data,
	}
	if ev.Decision != nil {
		s.DecisionID = ev.Decision.ID
	}
	return s
}

// deployMarker is the deploy marker of an evaluation: one per
// evaluation, its verdict updated as the evaluation ends.
// recordDeploy records the evaluation's deploy marker when its change
// says it is deployed (Change.Deploy), and nothing otherwise.
func recordDeploy(ctx context.Context, d DeployRecorder, ev *Evaluation) error {
	if !ev.Change.Deploy {
		return nil
	}
	return d.RecordDeploy(ctx, deployMarker(ev))
}

func deployMarker(ev *Evaluation) store.Deploy {
	return store.Deploy{
		Key: "gate|" + ev.ID, At: ev.CreatedAt, Service: ev.Service, Version: ev.Change.Version,
		Source: store.DeploySourceGate, Gate: ev.Gate, EvaluationID: ev.ID, Verdict: string(ev.State),
		Description: ev.Change.Description, Labels: ev.Change.Labels,
	}
}

// metrics are the runner's Prometheus metrics.
type metrics struct {
	evaluations *prometheus.CounterVec
	stageErrors *prometheus.CounterVec
	running     prometheus.Gauge
	duration    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		evaluations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_gate_evaluations_total",
			Help: "Gate evaluations finished, by verdict.",
		}, []string{"state"}),
		stageErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "qsp_gate_stage_errors_total",
			Help: "Gate evaluation stages that could not complete, by stage.",
		}, []string{"stage"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "qsp_gate_evaluations_running",
			Help: "Gate evaluations in progress.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "qsp_gate_evaluation_duration_seconds",
			Help:    "Wall time of gate evaluations, canary waits included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
	}
	for _, c := range []prometheus.Collector{m.evaluations, m.stageErrors, m.running, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, s := range States {
		if s != StateRunning {
			m.evaluations.WithLabelValues(string(s))
		}
	}
	return m, nil
}
