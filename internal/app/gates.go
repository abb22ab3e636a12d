package app

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/policy"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/store"
	"github.com/qsp-dev/qsp/internal/telemetry"
)

func init() { componentBuilders = append(componentBuilders, buildGates) }

// buildGates builds the policy engine (the store keeps its decision log)
// and the gate runner, and wires them: the runner's background
// evaluations are an App runner, the API gets both (apiExtra "gates" and
// "policy"), the events API's deploy markers land in the deploys table,
// and a reload hands the new specs to the runner (Reload swaps the
// policies).
func buildGates(_ context.Context, a *App) error {
	set := a.Specs()
	live := &livePolicy{}
	a.policy = live
	pe, err := a.newPolicyEngine(set)
	if err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	live.swap(pe)
	// Both sources (embedded TSDB, remote API) answer instant and range
	// queries; the engine's narrower interface hides it.
	q, _ := a.source.(gate.Querier)
	gopts := gate.Options{
		Specs: set, Engine: a.engine, Policy: live, Evaluations: a.store, FirstSeen: a.store, Deploys: a.store,
		LastDeploy: lastDeploy(a),
		Source:     q, Logger: a.logger, Registerer: a.registry, Now: a.now,
		// SQLite is one server's; PostgreSQL may be shared by replicas.
		Exclusive: a.store.Driver() == "sqlite",
	}
	traces, err := a.traceFinder()
	if err != nil {
		return err
	}
	if traces != nil {
		gopts.Traces = traces
	}
	gr, err := gate.New(gopts)
	if err != nil {
		return err
	}
	a.runners = append(a.runners, runner{name: "gates", run: gr.Run})
	a.closers = append(a.closers, func() error { gr.Close(); return nil })
	a.apiExtra["gates"] = gr
	a.apiExtra["policy"] = live

	next := a.deploySink
	a.deploySink = func(ctx context.Context, d telemetry.Deploy) error {
		if err := a.store.RecordDeploy(ctx, eventsDeploy(d)); err != nil {
			return err
		}
		if next != nil {
			return next(ctx, d)
		}
		return nil
	}

	a.onReload = append(a.onReload, gr.Reload)
	return nil
}

func (a *App) newPolicyEngine(set *spec.Set) (*policy.Engine, error) {
	return policy.New(policy.Options{Policies: set.Policies, Recorder: a.store, Logger: a.logger, Registerer: a.registry, Now: a.now})
}

// eventsDeploy is the stored form of a deploy marker from the events API.
func eventsDeploy(d telemetry.Deploy) store.Deploy {
	return store.Deploy{At: d.Time, Service: d.Service, Version: d.Version, Source: store.DeploySourceEvents, Description: d.Description, Labels: d.Labels}
}

// livePolicy is the current policy engine, swapped atomically at reload;
// decisions in flight finish on the engine they started with. A reload
// whose policies do not compile is refused (App.Reload), so no decision is
// ever taken on policies other than the live specs'.
type livePolicy struct {
	engine atomic.Pointer[policy.Engine]
}

func (l *livePolicy) swap(e *policy.Engine) { l.engine.Store(e) }

// Evaluate decides with the current policy engine.
func (l *livePolicy) Evaluate(ctx context.Context, in policy.Input) (*policy.Decision, error) {
	e := l.engine.Load()
	if e == nil {
		return nil, errors.New("policy decision: no policy engine")
	}
	return e.Evaluate(ctx, in)
}
