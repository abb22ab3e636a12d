package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/gate"
	"github.com/qsp-dev/qsp/internal/playbook"
	"github.com/qsp-dev/qsp/internal/policy"
)

func init() { componentBuilders = append(componentBuilders, buildPlaybooks) }

// buildPlaybooks builds the playbook runner over the engine, the policy
// engine the gates builder made (apiExtra "policy"), the store and the
// playbooks section of the config. The engine's transitions reach it
// after alerting's (so an incident it names exists), a failed gate
// evaluation wakes it (it reads the failure from the store), a reload
// hands it the new specs, and the API and UI get it as "playbooks".
func buildPlaybooks(_ context.Context, a *App) error {
	cfg := a.cfg.Playbooks
	decider, _ := a.apiExtra["policy"].(playbook.Decider)
	if decider == nil {
		pe, err := a.newPolicyEngine(a.Specs())
		if err != nil {
			return fmt.Errorf("policies: %w", err)
		}
		decider = pe
	}
	notifier, err := a.playbookNotifier()
	if err != nil {
		return err
	}
	// The runner looks at triggers at least as often as the engine
	// evaluates (a faster clock, as in the demo, shortens both).
	interval := min(5*time.Second, a.cfg.Evaluation.Interval.D())
	if interval <= 0 {
		interval = 5 * time.Second
	}
	r, err := playbook.New(playbook.Options{
		Interval: interval,
		Specs:    a.Specs(), Engine: a.engine, Store: a.store, Policy: decider, Notifier: notifier,
		Allowlist: cfg.Allowlist, Exec: cfg.Exec, KillSwitch: cfg.KillSwitch,
		Secrets:     playbook.Secrets{Dir: cfg.SecretsDir},
		ExternalURL: a.cfg.ExternalURL,
		Logger:      a.logger, Registerer: a.registry, Now: a.now,
	})
	if err != nil {
		return fmt.Errorf("config: playbooks: %w", err)
	}
	a.onTransitions = append(a.onTransitions, r.OnTransitions)
	a.onReload = append(a.onReload, r.Reload)
	if gr, ok := a.apiExtra["gates"].(*gate.Runner); ok {
		gr.OnFinish(func(_ context.Context, ev *gate.Evaluation) {
			if ev.State == gate.StateFail {
				r.Wake()
			}
		})
	}
	a.runners = append(a.runners, runner{name: "playbooks", run: r.Run})
	a.closers = append(a.closers, func() error { r.Close(); return nil })
	a.apiExtra["playbooks"] = r
	return nil
}

// playbookNotifier sends notify actions to the alerting receivers of the
// config (Alertmanagers and webhooks), or only logs them when there are
// none.
func (a *App) playbookNotifier() (playbook.Notifier, error) {
	ns, err := a.notifiers()
	if err != nil {
		return nil, err
	}
	if len(ns) == 0 {
		return playbook.LogNotifier(a.logger), nil
	}
	return &alertNotifier{receivers: ns}, nil
}

// alertNotifier delivers a playbook notification to the alerting
// receivers as a short-lived alert, QSPPlaybookNotification, so that
// Alertmanager routes it like any other (to chat, to the on-call) and a
// webhook receives it in the format it knows. The message ID is the
// notification's idempotency key: a retry is the same message.
type alertNotifier struct {
	receivers []alert.Notifier
}

// playbookAlertTTL is how long the notification alert lasts before it
// resolves itself.
const playbookAlertTTL = 5 * time.Minute

func (n *alertNotifier) Notify(ctx context.Context, x playbook.Notification) error {
	labels := map[string]string{
		"alertname": "QSPPlaybookNotification", "playbook": x.Playbook, "action": x.Action, "service": x.Service, "run": x.RunID,
	}
	if x.Severity != "" {
		labels["severity"] = x.Severity
	}
	if x.Trigger.SLO != "" {
		labels["slo"] = x.Trigger.SLO
	}
	m := &alert.Message{
		Version: alert.MessageVersion, ID: x.IdempotencyKey, Status: alert.StatusFiring, Fingerprint: alert.Fingerprint(labels),
		Alert: alert.Alert{
			Labels:      labels,
			Annotations: map[string]string{"summary": x.Title, "description": x.Message},
			StartsAt:    x.At, EndsAt: x.At.Add(playbookAlertTTL), GeneratorURL: x.RunURL,
		},
		Transition: alert.TransitionInfo{Key: x.Trigger.Key, SLO: x.Trigger.SLO, Service: x.Service, Severity: x.Severity,
			Alert: x.Trigger.Alert, To: x.Trigger.Event, At: x.Trigger.At},
	}
	var errs []error
	permanent := true
	for _, r := range n.receivers {
		msg := *m
		msg.Labels = maps.Clone(m.Labels)
		if _, err := r.Notify(ctx, []*alert.Message{&msg}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", r.Name(), err))
			permanent = permanent && !alert.Retryable(err)
		}
	}
	err := errors.Join(errs...)
	if err != nil && permanent {
		return playbook.Permanent(err)
	}
	return err
}

var _ playbook.Decider = (*policy.Engine)(nil)
