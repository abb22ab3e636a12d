package app

import (
	"context"

	"github.com/qsp-dev/qsp/internal/api"

	"github.com/qsp-dev/qsp/internal/ui"
)

func init() { componentBuilders = append(componentBuilders, buildUI) }

// buildUI builds the access control and the web UI over what the other
// builders registered (incidents, gates, playbooks), and runs the UI's
// cost queries with the app. It runs last: its file sorts after the
// other builders'.
func buildUI(ctx context.Context, a *App) error {
	auth, err := a.newAuth(ctx)
	if err != nil {
		return err
	}
	a.apiExtra["auth"] = auth
	opts := ui.Options{Engine: a.snapshots, History: a.engine, Specs: a.Specs, Auth: auth, Records: a.store, Logger: a.logger, Now: a.now}
	opts.Incidents, _ = a.apiExtra["incidents"].(ui.Incidents)
	if f, err := a.traceFinder(); err != nil {
		return err
	} else if f != nil {
		opts.Traces = f
	}
	opts.Gates, _ = a.apiExtra["gates"].(ui.Gates)
	opts.Playbooks, _ = a.apiExtra["playbooks"].(ui.Playbooks)
	opts.Reports, _ = a.apiExtra["reports"].(api.Reporter)
	opts.Cost, _ = a.source.(ui.Querier)
	opts.DeployImpact, _ = a.apiExtra["deployImpact"].(ui.DeployImpacts)
	u, err := ui.New(opts)
	if err != nil {
		return err
	}
	a.apiExtra["ui"] = u
	a.runners = append(a.runners, runner{name: "ui", run: u.Run})
	return nil
}
