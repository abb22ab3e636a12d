package app

import (
	"context"

	"github.com/qsp-dev/qsp/internal/api"
	"github.com/qsp-dev/qsp/internal/report"
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
	return nil
}
