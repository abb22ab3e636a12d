package app

import (
	"context"
	"fmt"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
)

func init() { componentBuilders = append(componentBuilders, buildAlerting) }

// notifiers returns the alerting receivers of the config: its
// Alertmanagers, then its webhooks.
func (a *App) notifiers() ([]alert.Notifier, error) {
	cfg := a.cfg.Alerting
	var ns []alert.Notifier
	for i, am := range cfg.Alertmanagers {
		n, err := alert.NewAlertmanager(alert.AlertmanagerOptions{
			URL: am.URL, Timeout: am.Timeout.D(), BearerTokenFile: am.BearerTokenFile, TLS: alertTLS(am.TLS),
			ResendInterval: cfg.ResendInterval.D(), Now: a.now,
		})
		if err != nil {
			return nil, fmt.Errorf("config: alerting.alertmanagers[%d]: %w", i, err)
		}
		ns = append(ns, n)
	}
	for i, w := range cfg.Webhooks {
		name := w.Name
		if name == "" {
			name = fmt.Sprintf("webhook-%d", i)
		}
		n, err := alert.NewWebhook(alert.WebhookOptions{Name: name, URL: w.URL, SecretFile: w.SecretFile, Timeout: w.Timeout.D()})
		if err != nil {
			return nil, fmt.Errorf("config: alerting.webhooks[%d]: %w", i, err)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

// buildAlerting wires the alerting component: the engine's transitions go
// to the dispatcher (outbox, then Alertmanagers and webhooks) and then to
// the incident keeper; the dispatcher's workers run with the app; the API
// serves alerts and incidents.
func buildAlerting(_ context.Context, a *App) error {
	cfg := a.cfg.Alerting
	resend := cfg.ResendInterval.D()
	notifiers, err := a.notifiers()
	if err != nil {
		return err
	}
	replica, replicaTTL := "", time.Duration(0)
	if a.members != nil {
		// Replicas share the outbox: each notification is claimed by one.
		replica, replicaTTL = a.members.ID(), a.members.TTL()
	}
	traces, err := a.traceFinder()
	if err != nil {
		return err
	}
	opts := alert.DispatcherOptions{
		Store: a.store, Notifiers: notifiers, Specs: a.Specs, ExternalURL: a.cfg.ExternalURL, ResendInterval: resend,
		Replica: replica, ReplicaTTL: replicaTTL, Logger: a.logger, Registerer: a.registry, Now: a.now,
	}
	if traces != nil {
		opts.Traces = traces
	}
	d, err := alert.NewDispatcher(opts)
	if err != nil {
		return err
	}
	inc, err := alert.NewIncidents(alert.IncidentOptions{
		Store: a.store, Engine: a.engine, Specs: a.Specs, ExternalURL: a.cfg.ExternalURL,
		Logger: a.logger, Registerer: a.registry, Now: a.now, ResolveHold: cfg.ResolveHold.D(), ReopenWithin: cfg.ReopenWithin.D(),
	})
	if err != nil {
		return err
	}
	a.onCycle = append(a.onCycle, inc.OnCycle)
	// The outbox first: a notification must be stored before anything
	// else reacts to the transition.
	a.onTransitions = append(a.onTransitions, d.OnTransitions, inc.OnTransitions)
	a.runners = append(a.runners, runner{name: "alerting", run: d.Run})
	a.apiExtra["incidents"] = inc
	a.apiExtra["alerts"] = d
	return nil
}

func alertTLS(t TLSConfig) alert.TLSOptions {
	return alert.TLSOptions{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
}
