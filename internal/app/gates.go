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
// and a reload rebuilds the policies and hands the new specs to the
// runner.
func buildGates(_ context.Context, a *App) error {
	set := a.Specs()
	live := &livePolicy{}
	pe, err := a.newPolicyEngine(set)
	if err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	live.swap(pe, nil)
	// Both sources (embedded TSDB, remote API) answer instant and range
	// queries; the engine's narrower interface hides it.
	q, _ := a.source.(gate.Querier)
	gr, err := gate.New(gate.Options{
		Specs: set, Engine: a.engine, Policy: live, Evaluations: a.store, FirstSeen: a.store, Deploys: a.store,
		Source: q, Logger: a.logger, Registerer: a.registry, Now: a.now,
		// SQLite is one server's; PostgreSQL may be shared by replicas.
		Exclusive: a.store.Driver() == "sqlite",
	})
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

	a.onReload = append(a.onReload, func(set *spec.Set) {
		pe, err := a.newPolicyEngine(set)
		if err != nil {
			// The specs are already live for the engine: keep no policy
			// rather than the old one, so that gates and playbooks answer
			// with this error instead of deciding on stale policies.
			a.logger.Error("policies failed to load at reload: gates and playbooks refuse to decide until they load", "err", err)
			live.swap(nil, err)
		} else {
			live.swap(pe, nil)
		}
		gr.Reload(set)
	})
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
// decisions in flight finish on the engine they started with. After a
// reload whose policies did not load, Evaluate returns that error: no
// decision is ever taken on policies other than the spec's.
type livePolicy struct {
	state atomic.Pointer[policyState]
}

type policyState struct {
	engine *policy.Engine
	err    error
}

func (l *livePolicy) swap(e *policy.Engine, err error) {
	l.state.Store(&policyState{engine: e, err: err})
}

// Evaluate decides with the current policy engine.
func (l *livePolicy) Evaluate(ctx context.Context, in policy.Input) (*policy.Decision, error) {
	s := l.state.Load()
	switch {
	case s == nil:
		return nil, errors.New("policy decision: no policy engine")
	case s.err != nil:
		return nil, fmt.Errorf("policy decision: the policies of the current specs did not load: %w", s.err)
	}
	return s.engine.Evaluate(ctx, in)
}
