package app

import (
	"github.com/qsp-dev/qsp/internal/tracelink"
)

// traceFinder returns the example-trace finder over the telemetry source
// (the embedded exemplar storage, or the remote backend's
// query_exemplars), built on first use by whichever component needs it
// first (alerting, gates, API, UI), or nil if the source has no
// exemplars.
func (a *App) traceFinder() (*tracelink.Finder, error) {
	if a.traces != nil {
		return a.traces, nil
	}
	src, ok := a.source.(tracelink.Source)
	if !ok {
		return nil, nil
	}
	f, err := tracelink.New(tracelink.Options{
		Source: src, URLTemplate: a.cfg.Traces.URLTemplate, Max: a.cfg.Traces.MaxExamples,
		Specs: a.Specs, Logger: a.logger,
	})
	if err != nil {
		return nil, err
	}
	a.traces = f
	a.apiExtra["traces"] = f
	return f, nil
}
