package alert

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"

	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/slo"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// DispatcherOptions configure a Dispatcher. Store is required.
type DispatcherOptions struct {
	Store *store.Store
	// Notifiers are the receivers; each gets every notification.
	Notifiers []Notifier
	// Specs returns the current spec set, for labels and annotations.
	Specs func() *spec.Set
	// ExternalURL is how users reach QSP: generatorURL and dashboard links
	// point at ExternalURL/slos/<slo>.
	ExternalURL string
	// ResendInterval is how often firing alerts are re-sent to receivers
	// that want it (Alertmanager). Default 1m.
	ResendInterval time.Duration
	// Expiry is how long a notification is retried before it is given
	// up. Default 24h: a receiver down for hours still gets everything.
	Expiry time.Duration
	// Retention is how long delivered, failed and expired rows are kept
	// for the API. Default 7d.
	Retention time.Duration
	// Backoff paces retries of a receiver that is down.
	Backoff Backoff
	// BatchSize bounds the notifications sent in one attempt. Default 64.
	BatchSize int
	// SweepInterval is how often expired rows are marked and old ones
	// pruned. Default 1m.
	SweepInterval time.Duration
	// Replica, set when several replicas share a PostgreSQL store, makes
	// delivery claim notifications with a lease so each is delivered by
	// one replica; a claim of a replica that dies lapses after ClaimLease
	// (default 2m), or as soon as its heartbeat is older than ReplicaTTL
	// (the cluster's lease), and another replica delivers it.
	Replica    string
	ClaimLease time.Duration
	ReplicaTTL time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Now is the clock of outbox timestamps and expiry. Retry waits use
	// real timers.
	Now func() time.Time
	// Traces, if set, looks up example traces of the burning window of
	// every firing burn-rate alert; they become the example_traces and
	// trace_url annotations. Each look-up is bounded by TraceTimeout
	// (default 2s), so a slow trace backend delays a page by at most
	// that much and never drops it.
	Traces       TraceFinder
	TraceTimeout time.Duration
}

// TraceFinder finds example traces of an SLO's bad events in [start,
// end], newest first; *tracelink.Finder implements it. It must be safe
// for concurrent use.
type TraceFinder interface {
	ForSLO(ctx context.Context, slo string, start, end time.Time) ([]tracelink.Example, error)
}

// Dispatcher turns alert transitions into notifications and delivers
// them at least once: OnTransitions writes them to the store's outbox,
// Run delivers them, one worker per receiver.
type Dispatcher struct {
	opts    DispatcherOptions
	logger  *slog.Logger
	m       *dispatchMetrics
	targets []*target
	stages  []stage

	// mu guards known, loaded and unsaved, which OnTransitions (the
	// engine's goroutine) and Run's retry of unsaved batches share.
	mu sync.Mutex
	// known is what receivers were last told per alert (key|severity).
	known  map[string]store.NotifiedAlert
	loaded bool
	// unsaved are outbox writes the store refused, retried in order.
	unsaved []outboxBatch
}

type outboxBatch struct {
	alerts []store.NotifiedAlert
	rows   []store.Notification
}

// target is one receiver and its worker's state.
type target struct {
	n       Notifier
	name    string
	timeout time.Duration
	wake    chan struct{}
	// Owned by the worker goroutine.
	failures int
	// singleLeft > 0 sends one notification at a time, to find the one a
	// receiver refuses in a batch it refused as a whole.
	singleLeft int
}

// timeouter is a Notifier that says how long one attempt may take.
type timeouter interface{ Timeout() time.Duration }

// NewDispatcher checks the options and builds a dispatcher. It reads
// nothing until the first transition or Run.
func NewDispatcher(opts DispatcherOptions) (*Dispatcher, error) {
	if opts.Store == nil {
		return nil, errors.New("alert: no store")
	}
	opts.ResendInterval = cmp.Or(opts.ResendInterval, time.Minute)
	opts.Expiry = cmp.Or(opts.Expiry, 24*time.Hour)
	opts.Retention = cmp.Or(opts.Retention, 7*24*time.Hour)
	opts.BatchSize = cmp.Or(opts.BatchSize, 64)
	opts.SweepInterval = cmp.Or(opts.SweepInterval, time.Minute)
	opts.Backoff = opts.Backoff.withDefaults()
	if opts.Specs == nil {
		opts.Specs = func() *spec.Set { return nil }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	d := &Dispatcher{opts: opts, logger: opts.Logger.With("component", "alert"), known: map[string]store.NotifiedAlert{}}
	seen := map[string]bool{}
	for _, n := range opts.Notifiers {
		if n == nil {
			return nil, errors.New("alert: nil notifier")
		}
		if seen[n.Name()] {
			return nil, fmt.Errorf("alert: two receivers are named %q", n.Name())
		}
		seen[n.Name()] = true
		tg := &target{n: n, name: n.Name(), timeout: 10 * time.Second, wake: make(chan struct{}, 1)}
		if t, ok := n.(timeouter); ok && t.Timeout() > 0 {
			tg.timeout = t.Timeout()
		}
		d.targets = append(d.targets, tg)
	}
	d.m = newDispatchMetrics(opts.Registerer)
	d.stages = []stage{expireStage{d}, decodeStage{d}, retryStage{d, sendStage{d}}}
	return d, nil
}

// OnTransitions records the notifications the transitions call for: a
// firing alert or a resolution, for every receiver, in one transaction.
// Pending and inactive transitions notify nobody. A transition receivers
// were already told about (same fingerprint, same state) is dropped, so
// a replayed transition is not notified twice. It is called from the
// engine's goroutine, must be quick and never blocks on a receiver.
func (d *Dispatcher) OnTransitions(ctx context.Context, ts []engine.Transition) {
	var relevant []engine.Transition
	for _, t := range ts {
		if t.To == slo.Firing || (t.To == slo.Resolved && t.From == slo.Firing) {
			relevant = append(relevant, t)
		}
	}
	if len(relevant) == 0 {
		return
	}
	traces := d.exampleTraces(ctx, relevant)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.loadKnown(ctx)
	b := d.build(relevant, traces)
	if len(b.rows) == 0 && len(b.alerts) == 0 {
		return
	}
	d.unsaved = append(d.unsaved, b)
	d.flushLocked(ctx)
	d.wakeAll()
}

// Annotations with example traces of a firing burn-rate alert.
const (
	// AnnotationExampleTraces lists up to 5 trace links (or trace IDs
	// without traces.urlTemplate) of bad events in the alert's long
	// window, newest first, separated by spaces.
	AnnotationExampleTraces = "example_traces"
	// AnnotationTraceURL is the newest of them, for a one-click link.
	AnnotationTraceURL = "trace_url"
)

// exampleTraces looks up, before the outbox lock is taken, example traces
// of each firing burn-rate alert's long window, keyed by key|severity. A
// failed look-up only logs: the alert goes out without them.
func (d *Dispatcher) exampleTraces(ctx context.Context, ts []engine.Transition) map[string]map[string]string {
	if d.opts.Traces == nil {
		return nil
	}
	out := map[string]map[string]string{}
	for _, t := range ts {
		if t.To != slo.Firing || (t.Severity != spec.SeverityPage && t.Severity != spec.SeverityTicket) {
			continue
		}
		long, _, _ := strings.Cut(t.Condition, "/")
		window, err := model.ParseDuration(long)
		if err != nil || window <= 0 {
			window = model.Duration(time.Hour)
		}
		lctx, cancel := context.WithTimeout(ctx, cmp.Or(d.opts.TraceTimeout, 2*time.Second))
		exs, err := d.opts.Traces.ForSLO(lctx, t.SLO, t.At.Add(-time.Duration(window)), t.At)
		cancel()
		if err != nil {
			d.logger.Warn("example traces of a firing alert", "slo", t.SLO, "err", err)
			continue
		}
		if len(exs) == 0 {
			continue
		}
		refs := make([]string, 0, len(exs))
		for _, ex := range exs {
			refs = append(refs, cmp.Or(ex.URL, ex.TraceID))
		}
		an := map[string]string{AnnotationExampleTraces: strings.Join(refs, " ")}
		if exs[0].URL != "" {
			an[AnnotationTraceURL] = exs[0].URL
		}
		out[t.Key+"|"+t.Severity] = an
	}
	return out
}

// loadKnown reads what receivers were told before a restart, once.
func (d *Dispatcher) loadKnown(ctx context.Context) {
	if d.loaded {
		return
	}
	as, err := d.opts.Store.NotifiedAlerts(ctx, store.NotifiedAlertFilter{})
	if err != nil {
		// Go on with what is known in memory: a resolution of an alert
		// fired before the restart is then built from the transition.
		d.logger.Error("load notified alerts", "err", err)
		return
	}
	for _, a := range as {
		if _, ok := d.known[a.Key+"|"+a.Severity]; !ok {
			d.known[a.Key+"|"+a.Severity] = a
		}
	}
	d.loaded = true
}

// build is the first stage of the enqueue side: alerts and messages from
// transitions, deduplicated against what receivers were told.
func (d *Dispatcher) build(ts []engine.Transition, traces map[string]map[string]string) outboxBatch {
	set := d.opts.Specs()
	now := d.opts.Now()
	var b outboxBatch
	emit := func(rec store.NotifiedAlert, msg *Message) {
		d.known[rec.Key+"|"+rec.Severity] = rec
		b.alerts = append(b.alerts, rec)
		payload, err := json.Marshal(msg)
		if err != nil {
			d.logger.Error("encode notification", "key", rec.Key, "err", err)
			return
		}
		for _, tg := range d.targets {
			b.rows = append(b.rows, store.Notification{
				Target: tg.name, Key: rec.Key, Severity: rec.Severity, Fingerprint: rec.Fingerprint, Status: msg.Status,
				DedupeKey: tg.name + "|" + msg.ID, Payload: payload, CreatedAt: now, NextAttemptAt: now, ExpiresAt: now.Add(d.opts.Expiry),
			})
			d.m.enqueued.WithLabelValues(tg.name, msg.Status).Inc()
		}
	}
	for _, t := range ts {
		id := t.Key + "|" + t.Severity
		prev, had := d.known[id]
		switch t.To {
		case slo.Firing:
			a := Build(t, set, d.opts.ExternalURL, "")
			a.StartsAt = t.At
			for k, v := range traces[t.Key+"|"+t.Severity] {
				a.Annotations[k] = v
			}
			fp := Fingerprint(a.Labels)
			if had && prev.State == store.AlertFiring {
				if prev.Fingerprint == fp {
					d.m.deduped.Inc()
					continue
				}
				// Receivers believe the alert fires under other labels
				// (the engine's state was lost): resolve that one first,
				// so it does not linger until it times out.
				old := resolution(prev, t, set, d.opts.ExternalURL, now)
				emit(old.rec, old.msg)
			}
			rec := store.NotifiedAlert{Key: t.Key, Severity: t.Severity, Fingerprint: fp, Name: t.Alert, SLO: t.SLO, Service: t.Service,
				Labels: a.Labels, Annotations: a.Annotations, State: store.AlertFiring, StartsAt: t.At, GeneratorURL: a.GeneratorURL, UpdatedAt: now}
			emit(rec, newMessage(StatusFiring, fp, a, t))
		case slo.Resolved:
			if !had && d.loaded {
				d.m.deduped.Inc() // receivers were never told it fires
				continue
			}
			if !had {
				// Nothing known (the store was unreadable at start): resolve
				// the label set the transition describes.
				a := Build(t, set, d.opts.ExternalURL, "")
				prev = store.NotifiedAlert{Key: t.Key, Severity: t.Severity, Fingerprint: Fingerprint(a.Labels), Name: t.Alert, SLO: t.SLO,
					Service: t.Service, Labels: a.Labels, State: store.AlertFiring, StartsAt: t.At, GeneratorURL: a.GeneratorURL}
			} else if prev.State != store.AlertFiring {
				d.m.deduped.Inc()
				continue
			}
			r := resolution(prev, t, set, d.opts.ExternalURL, now)
			emit(r.rec, r.msg)
		}
	}
	return b
}

type built struct {
	rec store.NotifiedAlert
	msg *Message
}

// resolution resolves what receivers were told fires, with the same
// labels, so the fingerprint matches, and fresh annotations.
func resolution(prev store.NotifiedAlert, t engine.Transition, set *spec.Set, externalURL string, now time.Time) built {
	rt := t
	rt.To = slo.Resolved
	a := Build(rt, set, externalURL, prev.Labels[LabelWindow])
	a.Labels = prev.Labels
	a.StartsAt = prev.StartsAt
	a.EndsAt = t.At
	if a.EndsAt.Before(a.StartsAt) {
		a.EndsAt = a.StartsAt
	}
	rec := prev
	rec.Annotations, rec.State, rec.EndsAt, rec.UpdatedAt = a.Annotations, store.AlertResolved, a.EndsAt, now
	return built{rec, newMessage(StatusResolved, prev.Fingerprint, a, rt)}
}

func newMessage(status, fp string, a Alert, t engine.Transition) *Message {
	at := a.StartsAt
	if status == StatusResolved {
		at = a.EndsAt
	}
	return &Message{
		Version: MessageVersion, ID: eventID(fp, status, at), Status: status, Fingerprint: fp, Alert: a,
		Transition: TransitionInfo{Key: t.Key, SLO: t.SLO, Service: t.Service, Severity: t.Severity, Alert: t.Alert,
			From: string(t.From), To: string(t.To), At: t.At, Condition: t.Condition},
		Summary: summarize(t.Status),
	}
}

// flushLocked writes unsaved batches in order and stops at the first
// failure, so notifications of one alert are never stored out of order.
func (d *Dispatcher) flushLocked(ctx context.Context) {
	for len(d.unsaved) > 0 {
		b := d.unsaved[0]
		if _, err := d.opts.Store.EnqueueAlerts(ctx, b.alerts, b.rows); err != nil {
			d.m.outboxFailures.Inc()
			d.logger.Error("write notifications to the outbox; will retry", "err", err, "notifications", len(b.rows), "waiting_batches", len(d.unsaved))
			return
		}
		d.unsaved = d.unsaved[1:]
	}
	d.unsaved = nil
}

func (d *Dispatcher) wakeAll() {
	for _, tg := range d.targets {
		select {
		case tg.wake <- struct{}{}:
		default:
		}
	}
}

// Run delivers notifications until ctx ends: one worker per receiver,
// plus a sweeper that expires and prunes rows and retries outbox writes
// the store refused.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, tg := range d.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.work(ctx, tg)
		}()
	}
	d.sweep(ctx)
	t := time.NewTicker(d.opts.SweepInterval)
	defer t.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			d.sweep(ctx)
		case <-retry.C:
			d.mu.Lock()
			if len(d.unsaved) > 0 {
				d.flushLocked(ctx)
				if len(d.unsaved) == 0 {
					d.wakeAll()
				}
			}
			d.mu.Unlock()
		}
	}
}

// resolveOrphans resolves alerts receivers believe fire for SLOs no
// longer declared: the engine stopped evaluating them and will never
// resolve them, and the resend loop would keep them firing forever.
func (d *Dispatcher) resolveOrphans(ctx context.Context) {
	set := d.opts.Specs()
	if set == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.loadKnown(ctx)
	if !d.loaded {
		return
	}
	now := d.opts.Now()
	var ts []engine.Transition
	for _, rec := range d.known {
		if rec.State != store.AlertFiring || rec.SLO == "" || set.SLO(rec.SLO) != nil {
			continue
		}
		ts = append(ts, engine.Transition{Key: rec.Key, SLO: rec.SLO, Service: rec.Service, Severity: rec.Severity, Alert: rec.Name,
			From: slo.Firing, To: slo.Resolved, At: now})
	}
	if len(ts) == 0 {
		return
	}
	slices.SortFunc(ts, func(a, b engine.Transition) int { return cmp.Compare(a.Key+"|"+a.Severity, b.Key+"|"+b.Severity) })
	d.logger.Info("resolving alerts of SLOs no longer declared", "alerts", len(ts))
	d.unsaved = append(d.unsaved, d.build(ts, nil))
	d.flushLocked(ctx)
	d.wakeAll()
}

func (d *Dispatcher) sweep(ctx context.Context) {
	d.resolveOrphans(ctx)
	now := d.opts.Now()
	expired, err := d.opts.Store.ExpireNotifications(ctx, now)
	if err != nil {
		d.logger.Warn("expire notifications", "err", err)
	}
	for target, n := range expired {
		d.m.results.WithLabelValues(target, "expired").Add(float64(n))
		d.logger.Warn("notifications expired undelivered", "target", target, "count", n, "expiry", d.opts.Expiry)
	}
	if _, err := d.opts.Store.PruneNotifications(ctx, now.Add(-d.opts.Retention)); err != nil {
		d.logger.Warn("prune notifications", "err", err)
	}
	counts, err := d.opts.Store.NotificationCounts(ctx)
	if err != nil {
		return
	}
	for _, tg := range d.targets {
		d.m.pending.WithLabelValues(tg.name).Set(float64(counts[tg.name][store.NotificationPending]))
	}
}

// work is one receiver's worker: it delivers pending notifications oldest
// first, waits with backoff while the receiver fails, and re-sends firing
// alerts to receivers that want it when nothing is pending.
func (d *Dispatcher) work(ctx context.Context, tg *target) {
	var resend <-chan time.Time
	resender, wantsResend := tg.n.(Resender)
	if wantsResend {
		t := time.NewTicker(d.opts.ResendInterval)
		defer t.Stop()
		resend = t.C
	}
	// Among replicas, a claim lapses when its holder's heartbeat does;
	// nothing else wakes this worker then, so it looks again every
	// ReplicaTTL instead of waiting for the next sweep or notification.
	var lapsed <-chan time.Time
	if d.opts.Replica != "" && d.opts.ReplicaTTL > 0 {
		t := time.NewTicker(d.opts.ReplicaTTL)
		defer t.Stop()
		lapsed = t.C
	}
	var retryAt time.Time // zero: not backing off
	idle := false
	for ctx.Err() == nil {
		if retryAt.IsZero() || !time.Now().Before(retryAt) {
			retryAt = time.Time{}
			more, delay := d.deliver(ctx, tg)
			switch {
			case delay > 0:
				retryAt = time.Now().Add(delay)
				idle = false
			case more:
				continue
			default:
				idle = true
			}
		}
		var timer <-chan time.Time
		var tm *time.Timer
		if !retryAt.IsZero() {
			tm = time.NewTimer(time.Until(retryAt))
			timer = tm.C
		}
		select {
		case <-ctx.Done():
		case <-tg.wake:
			// A new notification: delivered now unless backing off, when
			// it waits for the retry with the others.
		case <-timer:
		case <-lapsed:
		case <-resend:
			if idle && retryAt.IsZero() {
				d.resend(ctx, tg, resender)
			}
		}
		if tm != nil {
			tm.Stop()
		}
	}
}

// deliver runs one batch through the delivery stages. It reports whether
// more notifications may be waiting, or how long to wait before retrying.
func (d *Dispatcher) deliver(ctx context.Context, tg *target) (more bool, retryIn time.Duration) {
	limit := d.opts.BatchSize
	if tg.singleLeft > 0 {
		limit = 1
		tg.singleLeft--
	}
	var rows []store.Notification
	var err error
	if d.opts.Replica != "" {
		rows, err = d.opts.Store.ClaimNotifications(ctx, tg.name, d.opts.Replica, cmp.Or(d.opts.ClaimLease, 2*time.Minute), d.opts.ReplicaTTL, limit)
	} else {
		rows, err = d.opts.Store.PendingNotifications(ctx, tg.name, limit)
	}
	if err != nil {
		if ctx.Err() != nil {
			return false, 0
		}
		d.logger.Warn("read pending notifications", "target", tg.name, "err", err)
		return false, d.backoff(tg)
	}
	if len(rows) == 0 {
		tg.singleLeft = 0
		d.m.pending.WithLabelValues(tg.name).Set(0)
		return false, 0
	}
	b := make([]*item, len(rows))
	for i := range rows {
		b[i] = &item{row: rows[i]}
	}
	for _, s := range d.stages {
		b, err = s.Exec(ctx, tg, b)
		var ra retryAfter
		if errors.As(err, &ra) {
			return false, ra.d
		}
		if err != nil {
			if ctx.Err() != nil {
				return false, 0
			}
			d.logger.Warn("deliver notifications", "target", tg.name, "err", err)
			return false, d.backoff(tg)
		}
		if len(b) == 0 {
			break
		}
	}
	// Something was sent or settled: look again.
	return true, 0
}

func (d *Dispatcher) backoff(tg *target) time.Duration {
	tg.failures++
	return d.opts.Backoff.Delay(tg.failures, jitterRand())
}

// resend gives a receiver every firing alert again.
func (d *Dispatcher) resend(ctx context.Context, tg *target, r Resender) {
	firing, err := d.opts.Store.NotifiedAlerts(ctx, store.NotifiedAlertFilter{State: store.AlertFiring})
	if err != nil || len(firing) == 0 {
		return
	}
	alerts := make([]Alert, len(firing))
	for i, a := range firing {
		alerts[i] = Alert{Labels: a.Labels, Annotations: a.Annotations, StartsAt: a.StartsAt, GeneratorURL: a.GeneratorURL}
	}
	actx, cancel := context.WithTimeout(ctx, tg.timeout)
	defer cancel()
	if err := r.Resend(actx, alerts); err != nil {
		d.m.resends.WithLabelValues(tg.name, "failure").Inc()
		d.logger.Debug("resend firing alerts", "target", tg.name, "alerts", len(alerts), "err", err)
		return
	}
	d.m.resends.WithLabelValues(tg.name, "success").Inc()
}

// Receiver names the configured receivers, in order.
func (d *Dispatcher) Receivers() []string {
	out := make([]string, len(d.targets))
	for i, tg := range d.targets {
		out[i] = tg.name
	}
	return out
}

// Delivery is how the notifications of one alert to one receiver went:
// the newest of them.
type Delivery struct {
	Target        string    `json:"target"`
	Status        string    `json:"status"` // firing or resolved
	State         string    `json:"state"`  // pending, delivered, failed, expired
	Attempts      int       `json:"attempts"`
	LastError     string    `json:"lastError,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
	NextAttemptAt time.Time `json:"nextAttemptAt,omitzero"`
	DeliveredAt   time.Time `json:"deliveredAt,omitzero"`
}

// Notified is what receivers were last told about an alert, and how the
// delivery of that went.
type Notified struct {
	Key          string            `json:"key"`
	Severity     string            `json:"severity"`
	Fingerprint  string            `json:"fingerprint"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	State        string            `json:"state"` // firing or resolved
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL"`
	Deliveries   []Delivery        `json:"deliveries"`
}

// Notified returns every alert receivers were told about, keyed by
// "key|severity", with its newest delivery per receiver.
func (d *Dispatcher) Notified(ctx context.Context) (map[string]*Notified, error) {
	as, err := d.opts.Store.NotifiedAlerts(ctx, store.NotifiedAlertFilter{})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*Notified, len(as))
	for _, a := range as {
		out[a.Key+"|"+a.Severity] = &Notified{Key: a.Key, Severity: a.Severity, Fingerprint: a.Fingerprint, Labels: a.Labels,
			Annotations: a.Annotations, State: a.State, StartsAt: a.StartsAt, EndsAt: a.EndsAt, GeneratorURL: a.GeneratorURL, Deliveries: []Delivery{}}
	}
	ns, err := d.opts.Store.LatestNotifications(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		if v := out[n.Key+"|"+n.Severity]; v != nil {
			dl := Delivery{Target: n.Target, Status: n.Status, State: n.State, Attempts: n.Attempts, LastError: n.LastError, CreatedAt: n.CreatedAt, DeliveredAt: n.DeliveredAt}
			if n.State == store.NotificationPending && n.Attempts > 0 {
				dl.NextAttemptAt = n.NextAttemptAt
			}
			v.Deliveries = append(v.Deliveries, dl)
		}
	}
	return out, nil
}

type dispatchMetrics struct {
	enqueued       *prometheus.CounterVec
	deduped        prometheus.Counter
	outboxFailures prometheus.Counter
	results        *prometheus.CounterVec
	attempts       *prometheus.HistogramVec
	pending        *prometheus.GaugeVec
	lastSuccess    *prometheus.GaugeVec
	resends        *prometheus.CounterVec
}

func newDispatchMetrics(r prometheus.Registerer) *dispatchMetrics {
	m := &dispatchMetrics{
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_alert_notifications_enqueued_total",
			Help: "Notifications written to the outbox, by receiver and status (firing, resolved)."}, []string{"target", "status"}),
		deduped: prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_alert_notifications_deduplicated_total",
			Help: "Transitions not notified because receivers already had the same alert in the same state."}),
		outboxFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "qsp_alert_outbox_write_failures_total",
			Help: "Outbox writes the store refused; they are retried in order."}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_alert_notifications_total",
			Help: "Notification outcomes by receiver: delivered, retry (an attempt failed), failed (refused for good), expired."}, []string{"target", "result"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "qsp_alert_notification_attempt_duration_seconds",
			Help: "Duration of one delivery attempt by receiver.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 8)}, []string{"target"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "qsp_alert_notifications_pending",
			Help: "Notifications waiting for delivery, by receiver."}, []string{"target"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "qsp_alert_notification_last_success_timestamp_seconds",
			Help: "When a receiver last accepted a notification."}, []string{"target"}),
		resends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "qsp_alert_resends_total",
			Help: "Re-sends of the firing alerts to Alertmanager, by receiver and result."}, []string{"target", "result"}),
	}
	r.MustRegister(m.enqueued, m.deduped, m.outboxFailures, m.results, m.attempts, m.pending, m.lastSuccess, m.resends)
	return m
}
