package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/qsp-dev/qsp/internal/alert"
	"github.com/qsp-dev/qsp/internal/spec"
	"github.com/qsp-dev/qsp/internal/tracelink"
)

func init() { routeSets = append(routeSets, traceRoutes) }

// TraceFinder finds example traces of SLOs' bad events in [start, end],
// newest first (Options.Extra["traces"]); *tracelink.Finder implements
// it. Methods are safe for concurrent use.
type TraceFinder interface {
	ForSLO(ctx context.Context, slo string, start, end time.Time) ([]tracelink.Example, error)
	ForSLOs(ctx context.Context, slos []string, start, end time.Time) ([]tracelink.Example, error)
}

// maxTraceWindow bounds the window of a trace look-up: exemplar storage
// is a ring of recent exemplars, and a remote backend's query_exemplars
// scans the whole range.
const maxTraceWindow = 31 * 24 * time.Hour

// sloTraces is the answer of /api/v1/slos/{name}/traces.
type sloTraces struct {
	SLO    string              `json:"slo"`
	From   time.Time           `json:"from"`
	To     time.Time           `json:"to"`
	Traces []tracelink.Example `json:"traces"`
}

// incidentWithTraces is an incident with example traces of its SLOs' bad
// events from its first bad minute to its resolution (or now).
type incidentWithTraces struct {
	alert.Incident
	ExampleTraces []tracelink.Example `json:"exampleTraces"`
}

func traceRoutes(a *API) {
	finder, _ := a.opts.Extra["traces"].(TraceFinder)
	if finder == nil {
		return
	}
	a.handle("GET /api/v1/slos/{name}/traces", func(r *http.Request) (any, error) {
		name := r.PathValue("name")
		if a.opts.Specs().SLO(name) == nil {
			return nil, notFound(fmt.Sprintf("SLO %q not found", name))
		}
		window := time.Hour
		if v := r.URL.Query().Get("window"); v != "" {
			var d spec.Duration
			if err := d.UnmarshalText([]byte(v)); err != nil || d.D() <= 0 || d.D() > maxTraceWindow {
				return nil, badRequest(fmt.Sprintf("window %q: want a duration from 1s to 31d, such as 1h", v))
			}
			window = d.D()
		}
		to := a.opts.Now()
		from := to.Add(-window)
		exs, err := finder.ForSLO(r.Context(), name, from, to)
		if err != nil {
			return nil, &statusError{http.StatusBadGateway, "example traces: " + err.Error()}
		}
		if exs == nil {
			exs = []tracelink.Example{}
		}
		return sloTraces{SLO: name, From: from, To: to, Traces: exs}, nil
	})
}

// IncidentTraces returns example traces of inc's SLOs from its first bad
// minute (less a minute) to its resolution, or now while it is open. A
// failed look-up yields none: the incident is shown all the same.
func IncidentTraces(ctx context.Context, finder TraceFinder, inc alert.Incident, now time.Time) []tracelink.Example {
	if finder == nil {
		return nil
	}
	var slos []string
	for _, al := range inc.Alerts {
		if al.SLO != "" {
			slos = append(slos, al.SLO)
		}
	}
	start := inc.FirstBadAt
	if start.IsZero() {
		start = inc.OpenedAt
	}
	end := now
	if !inc.ResolvedAt.IsZero() {
		end = inc.ResolvedAt
	}
	exs, err := finder.ForSLOs(ctx, slos, start.Add(-time.Minute), end)
	if err != nil {
		return nil
	}
	return exs
}
