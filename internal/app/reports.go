package app

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/report"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/ui"
)

func init() { componentBuilders = append(componentBuilders, buildReports) }

// buildReports builds the SLO reports and postmortem drafts over the
// engine's rollups and the store, for the API (/api/v1/reports,
// /api/v1/incidents/{id}/postmortem) and the UI (/reports); the UI's
// renderer writes the HTML (and so the PDF) form. It runs before
// buildUI: its file sorts before ui.go.
func buildReports(_ context.Context, a *App) error {
	b, err := report.NewBuilder(report.Options{Counter: a.engine, Snapshots: a.snapshots, Records: a.store, Now: a.now})
	if err != nil {
		return err
	}
	a.apiExtra["reports"] = b
	a.apiExtra["reportHTML"] = api.ReportRenderer(ui.RenderReport)
	rc := a.cfg.Reports
	if len(rc.Webhooks) == 0 {
		return nil
	}
	var targets []string
	for _, name := range rc.Webhooks {
		// The outbox names a webhook receiver as alert.Webhook does.
		targets = append(targets, "webhook "+name)
	}
	var wake func()
	if d, ok := a.apiExtra["alerts"].(*alert.Dispatcher); ok {
		wake = d.Wake
	}
	d, err := report.NewDelivery(report.DeliveryOptions{Builder: b, Outbox: a.store, Targets: targets, Delay: rc.Delay.D(),
		Wake: wake, Logger: a.logger, Registerer: a.registry})
	if err != nil {
		return err
	}
	a.runners = append(a.runners, runner{name: "reports", run: d.Run})
	return nil
}

// ReportsConfig schedules the delivery of each month's SLO report.
type ReportsConfig struct {
	// Webhooks name alerting.webhooks entries (their name, or
	// webhook-<index> for one without) that receive the report of each
	// month once it has ended, through the alerting outbox.
	Webhooks []string `yaml:"webhooks"`
	// Delay is how long after the month's end the report is sent, so
	// that its last minutes are folded. Default 1h.
	Delay spec.Duration `yaml:"delay"`
}

// check refuses a report webhook that alerting does not declare.
func (r ReportsConfig) check(al AlertingConfig) error {
	for i, name := range r.Webhooks {
		if !slices.Contains(webhookNames(al), name) {
			return fmt.Errorf("config: reports.webhooks[%d]: %q is not the name of an alerting.webhooks entry (%s)", i, name, strings.Join(webhookNames(al), ", "))
		}
	}
	if r.Delay < 0 {
		return fmt.Errorf("config: reports.delay: %s must not be negative", r.Delay)
	}
	return nil
}

// webhookNames are the names of the alerting webhooks, as notifiers()
// gives them.
func webhookNames(al AlertingConfig) []string {
	var names []string
	for i, w := range al.Webhooks {
		names = append(names, cmp.Or(w.Name, fmt.Sprintf("webhook-%d", i)))
	}
	return names
}
