// Package app is the composition root of qsp serve: it builds every
// component from the configuration, wires them (telemetry → engine →
// alerting, policy, gates, playbooks → API, UI, /metrics), owns every
// goroutine, reloads specs, and shuts down in reverse order even after a
// partial start.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/qsp-dev/qsp/internal/cluster"
	"github.com/qsp-dev/qsp/internal/engine"
	"github.com/qsp-dev/qsp/internal/kube"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// Options configure an App.
type Options struct {
	Config *Config
	// Specs is the loaded spec set; nil loads Config.Specs.
	Specs  *spec.Set
	Logger *slog.Logger
	// Progress receives the engine's backfill progress.
	Progress func(engine.BackfillProgress)
	Now      func() time.Time
	// Listener, if set, is served instead of listening on Config.Listen
	// (tests pass 127.0.0.1:0).
	Listener net.Listener
}

// App is a running QSP.
type App struct {
	cfg      *Config
	logger   *slog.Logger
	now      func() time.Time
	registry *prometheus.Registry

	store    *store.Store
	embedded *telemetry.Embedded // nil in remote mode
	source   engine.Source
	engine   *engine.Engine
	// traces finds example traces of bad events (traces.go).
	traces *tracelink.Finder
	// members is set when replicas share a PostgreSQL store.
	members *cluster.Membership
	// snapshots serves SLO statuses to the API and UI: the engine's own,
	// or with replicas, all of them from the store.
	snapshots interface{ Snapshot() *engine.Snapshot }
	server    *http.Server
	listener  net.Listener

	// closers run in reverse order at shutdown.
	closers []func() error
	// runners are the components' loops, started by Run after the HTTP
	// server and the engine, and stopped with them.
	runners []runner
	// onTransitions fan the engine's alert transitions out to the
	// components that act on them (alerting, incidents, playbooks).
	onTransitions []func(ctx context.Context, ts []engine.Transition)
	// onCycle run after every evaluation cycle, the snapshot stored.
	onCycle []func(ctx context.Context)
	// mounts add the components' HTTP routes.
	mounts []func(mux *http.ServeMux)
	// apiExtra holds dependencies for the API's route sets.
	apiExtra map[string]any
	// deploySink receives deploy markers from the events API.
	deploySink telemetry.DeploySink
	// onReload tell components that the spec set changed.
	onReload []func(set *spec.Set)
	// policy is the policy engine gates and playbooks decide with; Reload
	// replaces it with the new specs' policies.
	policy *livePolicy
	// loadSpecs loads the spec set for Reload: the spec files, and in
	// controller mode the cluster's resources with them (kubernetes.go).
	loadSpecs func() (*spec.Set, spec.Diagnostics)
	kube      *kube.Controller
	specsMu   sync.Mutex
	specs     *spec.Set
}

// runner is a component loop owned by the App.
type runner struct {
	name string
	run  func(ctx context.Context) error
}

// component builders, one file each (alerting.go, gates.go, playbooks.go,
// ui.go): they run in this order after the engine exists and register
// runners, transition handlers, routes and closers on the App.
var componentBuilders []func(ctx context.Context, a *App) error

// New builds every component. On error, what was built is closed.
func New(ctx context.Context, opts Options) (_ *App, err error) {
	if opts.Config == nil {
		return nil, errors.New("app: no config")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg := opts.Config
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, logger: opts.Logger, now: opts.Now, registry: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	set := opts.Specs
	if set == nil {
		var diags spec.Diagnostics
		set, diags = spec.Load(cfg.Specs...)
		for _, d := range diags.Warnings() {
			a.logger.Warn("spec warning", "diagnostic", d.String())
		}
		if diags.HasErrors() {
			return nil, fmt.Errorf("specs are invalid:\n%w", diags)
		}
	}
	a.specs = set

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := a.openStore(ctx); err != nil {
		return nil, err
	}
	if err := a.openSource(); err != nil {
		return nil, err
	}
	var shard engine.Shard
	var publish func(context.Context, []*engine.Status)
	persist := cfg.Evaluation.PersistInterval.D()
	if a.store.Driver() == "postgres" {
		if err := a.joinCluster(ctx); err != nil {
			return nil, err
		}
		shard = a.members
		publish = cluster.Publisher(a.store, a.members.ID(), a.logger)
		if persist == 0 {
			// SLOs move between replicas with their last persisted rollups:
			// persist often, so a take-over reads little telemetry again.
			persist = time.Minute
		}
	}
	a.engine, err = engine.New(engine.Options{
		Source:   a.source,
		Store:    a.store,
		Specs:    set,
		Interval: cfg.Evaluation.Interval.D(),
		Settle:   cfg.Evaluation.Settle.D(),
		LateData: cfg.Evaluation.LateData.D(),
		// Late samples revise their minutes as far back as the embedded
		// TSDB takes them out of order, or as the remote backend's
		// window configured says.
		LateWindow:      lateWindow(cfg.Source),
		LateReadBack:    cfg.Source.Mode == ModeRemote && cfg.Source.Remote.OutOfOrderWindow > 0,
		PersistInterval: persist,
		Shard:           shard,
		Publish: func(ctx context.Context, sts []*engine.Status) {
			if publish != nil {
				publish(ctx, sts)
			}
			for _, h := range a.onCycle {
				h(ctx)
			}
		},
		Progress:   opts.Progress,
		Logger:     a.logger,
		Registerer: a.registry,
		Now:        a.now,
		OnTransitions: func(ctx context.Context, ts []engine.Transition) {
			for _, h := range a.onTransitions {
				h(ctx, ts)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	a.snapshots = a.engine
	if a.members != nil {
		a.snapshots = cluster.NewSharedSnapshot(a.store, a.engine.Snapshot, time.Second, a.now, a.logger)
		a.pruneStatuses(ctx, set)
	}
	a.apiExtra = map[string]any{}
	for _, build := range componentBuilders {
		if err := build(ctx, a); err != nil {
			return nil, err
		}
	}
	mux, err := a.routes(ctx)
	if err != nil {
		return nil, err
	}
	a.server = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	a.listener = opts.Listener
	if a.listener == nil {
		a.listener, err = net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	a.closers = append(a.closers, func() error { return a.listener.Close() })
	a.listener = a.limitListener(a.listener)
	if a.listener, err = a.tlsListener(a.listener); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *App) openStore(ctx context.Context) error {
	opts := store.Options{Driver: a.cfg.Store.Driver, Path: filepath.Join(a.cfg.DataDir, "qsp.db"), Logger: a.logger, Now: a.now}
	if opts.Driver == "postgres" {
		dsn := os.Getenv("QSP_POSTGRES_DSN")
		if a.cfg.Store.DSNFile != "" {
			b, err := os.ReadFile(a.cfg.Store.DSNFile)
			if err != nil {
				return fmt.Errorf("store: read dsnFile: %w", err)
			}
			dsn = string(b)
		}
		opts.DSN = dsn
	}
	s, err := store.Open(ctx, opts)
	if err != nil {
		if opts.Driver != "postgres" {
			return fmt.Errorf("store %s: %w (restore it from a backup or move it aside to start afresh)", opts.Path, err)
		}
		return err
	}
	if err := s.Check(ctx); err != nil {
		s.Close()
		return fmt.Errorf("store %s: %w (restore it from a backup or move it aside to start afresh)", opts.Path, err)
	}
	a.store = s
	a.closers = append(a.closers, s.Close)
	return nil
}

// joinCluster makes this process a live replica before the engine starts,
// so it knows which SLOs are its own.
func (a *App) joinCluster(ctx context.Context) error {
	m, err := cluster.New(cluster.Options{
		Store: a.store, ID: a.cfg.Cluster.ReplicaID, Addr: a.cfg.ExternalURL, TTL: a.cfg.Cluster.LeaseTTL.D(),
		Logger: a.logger, Registerer: a.registry, Now: a.now,
	})
	if err != nil {
		return err
	}
	if err := m.Join(ctx); err != nil {
		return fmt.Errorf("join cluster: %w", err)
	}
	if a.cfg.Source.Mode != ModeRemote {
		// Each replica evaluates its share of the SLOs from its own
		// TSDB: unless every replica receives all telemetry, the numbers
		// depend on which replica owns an SLO.
		a.logger.Warn("replicas on a shared store with the embedded source: every replica must receive all telemetry; prefer source.mode: remote (Prometheus, Thanos, Mimir, VictoriaMetrics)", "replica", m.ID())
	}
	a.members = m
	a.runners = append(a.runners, runner{"cluster", m.Run})
	return nil
}

// lateWindow is how far back late samples revise folded minutes.
func lateWindow(sc SourceConfig) time.Duration {
	if sc.Mode == ModeRemote && sc.Remote.OutOfOrderWindow > 0 {
		return sc.Remote.OutOfOrderWindow.D()
	}
	return sc.Embedded.OutOfOrderWindow.D()
}

func (a *App) openSource() error {
	sc := a.cfg.Source
	switch sc.Mode {
	case ModeRemote:
		rc := sc.Remote
		opts := telemetry.RemoteOptions{
			URL: rc.URL, Timeout: rc.Timeout.D(), MaxRetries: rc.MaxRetries, BearerTokenFile: rc.BearerTokenFile,
			TLS:      telemetry.TLSOptions{CAFile: rc.TLS.CAFile, CertFile: rc.TLS.CertFile, KeyFile: rc.TLS.KeyFile, ServerName: rc.TLS.ServerName, InsecureSkipVerify: rc.TLS.InsecureSkipVerify},
			TenantID: rc.TenantID, TenantHeader: rc.TenantHeader, Headers: rc.Headers,
			Logger: a.logger, Registerer: a.registry,
		}
		if rc.BasicAuth != nil {
			opts.BasicAuth = &telemetry.BasicAuth{Username: rc.BasicAuth.Username, PasswordFile: rc.BasicAuth.PasswordFile}
		}
		r, err := telemetry.NewRemote(opts)
		if err != nil {
			return err
		}
		a.source = r
	default:
		ec := sc.Embedded
		db, err := telemetry.OpenEmbedded(telemetry.EmbeddedOptions{
			Dir:                  filepath.Join(a.cfg.DataDir, "tsdb"),
			Retention:            ec.Retention.D(),
			RetentionBytes:       ec.RetentionBytes,
			WALCompression:       ec.WALCompression,
			MinBlockDuration:     ec.MinBlockDuration.D(),
			MaxBlockDuration:     ec.MaxBlockDuration.D(),
			OutOfOrderTimeWindow: ec.OutOfOrderWindow.D(),
			MaxExemplars:         ec.MaxExemplars,
			MaxSamples:           a.cfg.Query.MaxSamples,
			QueryTimeout:         a.cfg.Query.Timeout.D(),
			Logger:               a.logger,
			Registerer:           a.registry,
		})
		if err != nil {
			return err
		}
		a.embedded = db
		a.source = db
		a.closers = append(a.closers, db.Close)
	}
	return nil
}

// Reload reads the spec files again and hands them to the engine. An
// invalid set is refused and the running one kept.
func (a *App) Reload(ctx context.Context) error {
	load := a.loadSpecs
	if load == nil {
		load = func() (*spec.Set, spec.Diagnostics) { return spec.Load(a.cfg.Specs...) }
	}
	set, diags := load()
	if diags.HasErrors() {
		a.logger.Warn("reload refused: specs are invalid", "errors", len(diags.Errors()))
		return fmt.Errorf("specs are invalid:\n%w", diags)
	}
	// Policies that parse may still not compile against the policy input;
	// refuse them here rather than leave gates and playbooks erroring.
	pe, err := a.newPolicyEngine(set)
	if err != nil {
		a.logger.Warn("reload refused: policies do not compile", "err", err)
		return fmt.Errorf("policies do not compile: %w", err)
	}
	if err := a.engine.Reload(ctx, set); err != nil {
		return err
	}
	if a.policy != nil {
		a.policy.swap(pe)
	}
	a.specsMu.Lock()
	a.specs = set
	a.specsMu.Unlock()
	if a.members != nil {
		a.pruneStatuses(ctx, set)
	}
	for _, f := range a.onReload {
		f(set)
	}
	a.logger.Info("specs reloaded", "slos", len(set.SLOs))
	return nil
}

// pruneStatuses removes the published statuses of SLOs set no longer
// declares, which every replica's API and UI would otherwise keep showing.
// Every replica does it when it loads specs: the last to load them clears
// what the others still published before they did.
func (a *App) pruneStatuses(ctx context.Context, set *spec.Set) {
	names := make([]string, len(set.SLOs))
	for i, s := range set.SLOs {
		names[i] = s.Name()
	}
	if err := a.store.DeleteStatuses(ctx, names); err != nil {
		a.logger.Warn("remove the statuses of SLOs no longer declared", "err", err)
	}
}

// Addr returns the address the server listens on.
func (a *App) Addr() string { return a.listener.Addr().String() }

// Snapshots returns the source of SLO statuses for the API and UI: with
// replicas, every replica's statuses.
func (a *App) Snapshots() interface{ Snapshot() *engine.Snapshot } { return a.snapshots }

// Members returns the cluster membership, or nil for a single replica.
func (a *App) Members() *cluster.Membership { return a.members }

// Kube returns the Kubernetes controller, or nil outside controller mode.
func (a *App) Kube() *kube.Controller { return a.kube }

// Engine returns the engine, for tests and the demo.
func (a *App) Engine() *engine.Engine { return a.engine }

// Store returns the store.
func (a *App) Store() *store.Store { return a.store }

// Config returns the normalized configuration.
func (a *App) Config() *Config { return a.cfg }

// Logger returns the app's logger.
func (a *App) Logger() *slog.Logger { return a.logger }

// Registry returns the metrics registry served on /metrics.
func (a *App) Registry() *prometheus.Registry { return a.registry }

// Now returns the app's clock.
func (a *App) Now() time.Time { return a.now() }

// Specs returns the current spec set.
func (a *App) Specs() *spec.Set {
	a.specsMu.Lock()
	defer a.specsMu.Unlock()
	return a.specs
}

// Embedded returns the embedded TSDB, or nil in remote mode.
func (a *App) Embedded() *telemetry.Embedded { return a.embedded }

// Run serves until ctx ends, then shuts everything down in reverse order.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2+len(a.runners))
	var wg sync.WaitGroup
	wg.Add(2 + len(a.runners))
	for _, r := range a.runners {
		go func() {
			defer wg.Done()
			if err := r.run(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", r.name, err)
				cancel()
			}
		}()
	}
	go func() {
		defer wg.Done()
		a.logger.Info("listening", "addr", a.Addr(), "url", a.cfg.ExternalURL)
		if err := a.server.Serve(a.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("http server: %w", err)
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if err := a.engine.Run(ctx); err != nil && ctx.Err() == nil {
			errs <- fmt.Errorf("engine: %w", err)
			cancel()
		}
	}()
	<-ctx.Done()
	shutdownCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	_ = a.server.Shutdown(shutdownCtx)
	wg.Wait()
	close(errs)
	err := <-errs
	if cerr := a.close(); err == nil {
		err = cerr
	}
	return err
}

// close runs the closers in reverse order.
func (a *App) close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}
